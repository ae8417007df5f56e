//! nginx access-log throughput: parse, and parse + detect + respond
//! (lines/s, one core), against the split-lines baseline of the same run.

#[path = "../tests/support/authgen.rs"]
mod authgen;
#[path = "../tests/support/nginxgen.rs"]
mod nginxgen;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil::config::Config;
use vigil::engine::Pipeline;
use vigil::event::Event;
use vigil::parse::{ParseOptions, Parser, SourceKind};

fn bench_web(c: &mut Criterion) {
    let text = nginxgen::generate(20_000, 7);
    let lines: Vec<&str> = text.lines().collect();
    let reference = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let cfg = Config::default();
    let mut g = c.benchmark_group("web");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("baseline_split_lines", |b| {
        b.iter(|| authgen::baseline_split_lines(&text))
    });
    g.bench_function("nginx_parse", |b| {
        b.iter(|| {
            let mut p = Parser::new(ParseOptions::new(SourceKind::Auto, reference, "bench"));
            let mut ev = Event::new(String::new(), reference, String::new());
            lines
                .iter()
                .enumerate()
                .filter(|(i, l)| p.parse_line_into(l, *i as u64 + 1, &mut ev).is_ok())
                .count()
        })
    });
    g.bench_function("nginx_parse_and_detect", |b| {
        b.iter(|| {
            let mut p = Parser::new(ParseOptions::new(SourceKind::Auto, reference, "bench"));
            let mut pipe = Pipeline::new(&cfg, None);
            let mut ev = Event::new(String::new(), reference, String::new());
            for (i, l) in lines.iter().enumerate() {
                if p.parse_line_into(l, i as u64 + 1, &mut ev).is_ok() {
                    let _ = pipe.process(&ev, reference);
                }
            }
            pipe.finish().map(|(a, _, _)| a.len()).unwrap_or(0)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_web);
criterion_main!(benches);

//! Parse throughput on a synthetic auth.log (lines/s).

#[path = "../tests/support/authgen.rs"]
mod authgen;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil::parse::{ParseOptions, Parser, SourceKind};

fn bench_parse(c: &mut Criterion) {
    let text = authgen::generate(20_000, 7, 5_000);
    let lines: Vec<&str> = text.lines().collect();
    let reference = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("baseline_split_lines", |b| {
        b.iter(|| authgen::baseline_split_lines(&text))
    });
    // What `vigil scan` does: one event buffer, refilled line after line.
    g.bench_function("auth_lines", |b| {
        b.iter(|| {
            let mut p = Parser::new(ParseOptions::new(SourceKind::Auto, reference, "bench"));
            let mut ev = vigil::event::Event::new(String::new(), reference, String::new());
            let mut failures = 0u32;
            for (i, l) in lines.iter().enumerate() {
                if p.parse_line_into(l, i as u64 + 1, &mut ev).is_ok() {
                    failures += ev.is_failure() as u32;
                }
            }
            failures
        })
    });
    // A fresh event per line (the library's convenience API).
    g.bench_function("auth_lines_allocating", |b| {
        b.iter(|| {
            let mut p = Parser::new(ParseOptions::new(SourceKind::Auto, reference, "bench"));
            let mut failures = 0u32;
            for (i, l) in lines.iter().enumerate() {
                if let Ok(ev) = p.parse_line(l, i as u64 + 1) {
                    failures += ev.is_failure() as u32;
                }
            }
            failures
        })
    });
    g.bench_function("syslog_envelope_only", |b| {
        let opts = vigil::parse::syslog::SyslogOptions::new(reference);
        b.iter(|| {
            lines
                .iter()
                .filter(|l| vigil::parse::syslog::parse_envelope(l, &opts).is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);

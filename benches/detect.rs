//! Parse + detect + respond throughput on a synthetic auth.log (lines/s).

#[path = "../tests/support/authgen.rs"]
mod authgen;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil::config::Config;
use vigil::engine::Pipeline;
use vigil::event::Event;
use vigil::parse::{ParseOptions, Parser, SourceKind};

fn bench_detect(c: &mut Criterion) {
    let text = authgen::generate(20_000, 7, 5_000);
    let lines: Vec<&str> = text.lines().collect();
    let reference = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let mut p = Parser::new(ParseOptions::new(SourceKind::Auto, reference, "bench"));
    let events: Vec<Event> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| p.parse_line(l, i as u64 + 1).ok())
        .collect();
    let cfg = Config::default();
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("baseline_split_lines", |b| {
        b.iter(|| authgen::baseline_split_lines(&text))
    });
    g.bench_function("parse_and_detect", |b| {
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
    g.bench_function("detect_only", |b| {
        b.iter(|| {
            let mut pipe = Pipeline::new(&cfg, None);
            for ev in &events {
                let _ = pipe.process(ev, reference);
            }
            pipe.finish().map(|(a, _, _)| a.len()).unwrap_or(0)
        })
    });
    g.finish();

    // What the gateway's engine sees under `load_gateway --fail-every 0`:
    // a fleet of 4 000 hosts reporting sessions at ~300 000 events/s of
    // event time, 100 each: a host passes the storm threshold (50 in 30 s)
    // half-way, and from there each of its events folds into its open storm
    // alert. Per-key state is spread over far more memory than the
    // detect_only input touches.
    let fleet = fleet_events(400_000, 4_000, reference);
    let mut g = c.benchmark_group("detect");
    g.sample_size(10);
    g.throughput(Throughput::Elements(fleet.len() as u64));
    g.bench_function("fleet_storm", |b| {
        b.iter(|| {
            let mut pipe = Pipeline::new(&cfg, None);
            for ev in &fleet {
                let _ = pipe.process(ev, reference);
            }
            pipe.finish().map(|(a, _, _)| a.len()).unwrap_or(0)
        })
    });
    g.finish();
}

fn fleet_events(n: usize, hosts: usize, start: chrono::DateTime<Utc>) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let host = i % hosts;
            let at = start + chrono::Duration::microseconds(i as i64 * 3);
            let mut ev = Event::new(format!("fleet-{i:012}"), at, format!("node-{host}"));
            ev.source = "auth".into();
            ev.category = vigil::event::Category::Auth;
            ev.action = vigil::event::Action::SessionOpened;
            ev.severity = 5;
            ev.user = Some(format!("svc{}", host % 50));
            ev.src_ip = Some(std::net::IpAddr::from([
                10,
                0,
                (host / 250) as u8,
                (host % 250) as u8,
            ]));
            ev
        })
        .collect()
}

criterion_group!(benches, bench_detect);
criterion_main!(benches);

//! The ingest path without HTTP, per event, on 1 000 `sec.event.v1` lines:
//! validation (JSON → schema → replay window), the audit records (one per
//! event, as `/ingest` writes them, and a batch's one record), and the
//! live engine (idempotency, rate limit, detection, policy) up to the fsynced
//! group commit. Baseline, in the same run: parsing the lines as JSON
//! without keeping anything.

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil::config::Config;
use vigil::engine::{LiveConfig, spawn_live};
use vigil::sources::gateway::{
    AuditRecord, BatchRecord, audit_ids, serialise_audit, validate_event,
};
use vigil::store::audit_log::{AuditLog, sha256_hex_array};

// The allocator `vigil` itself runs with (see main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 1000;

fn lines(start: usize, now: chrono::DateTime<Utc>) -> Vec<Vec<u8>> {
    (start..start + N)
        .map(|i| {
            serde_json::to_vec(&serde_json::json!({
                "event_type": "sec.event.v1",
                "event_id": format!("bench-{i:012}"),
                "source": "auth",
                "host": format!("host-{}", i % 1000),
                "timestamp_utc": now.to_rfc3339(),
                "category": "auth",
                "action": if i % 4 == 0 { "login_failed" } else { "login_success" },
                "severity": 5,
                "user": format!("user{}", i % 50),
                "src_ip": format!("198.51.{}.{}", (i / 250) % 250, i % 250),
                "attributes": {"port": 40000 + i % 20000},
            }))
            .unwrap()
        })
        .collect()
}

/// The next `N` events, validated, stamped now; `next` moves past them
/// so every iteration stores new ids.
fn fresh_events(next: &mut usize) -> (chrono::DateTime<Utc>, Vec<vigil::event::Event>) {
    let now = Utc::now();
    let events = lines(*next, now)
        .iter()
        .filter_map(|l| validate_event(l, now, 120).ok())
        .collect();
    *next += N;
    (now, events)
}

fn bench_ingest(c: &mut Criterion) {
    let now = Utc::now();
    let batch = lines(0, now);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("baseline_json_syntax_only", |b| {
        b.iter(|| {
            batch
                .iter()
                .filter(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok())
                .count()
        })
    });
    g.bench_function("validate", |b| {
        b.iter(|| {
            batch
                .iter()
                .filter(|l| validate_event(l, now, 120).is_ok())
                .count()
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let mut audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
    let client: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let events: Vec<_> = batch
        .iter()
        .map(|l| validate_event(l, now, 120).unwrap())
        .collect();
    g.bench_function("audit_record_per_event", |b| {
        // A record per event, as `/ingest` writes them (and `/ingest/batch`
        // did for each line): hash it, write the event's ids, build the
        // record, then chain and append them.
        b.iter(|| {
            let mut ids = Vec::new();
            let mut ends = Vec::with_capacity(N);
            let shas: Vec<_> = batch.iter().map(|l| sha256_hex_array(l)).collect();
            for ev in &events {
                audit_ids(&mut ids, ev, Some("default"));
                ends.push(ids.len());
            }
            let records: Vec<_> = (0..N)
                .map(|i| {
                    let from = if i == 0 { 0 } else { ends[i - 1] };
                    AuditRecord::accept("/ingest/batch", shas[i], &ids[from..ends[i]])
                })
                .collect();
            let pending = serialise_audit(&client, Utc::now(), &records);
            audit.append_pending(&pending).unwrap()
        })
    });
    let body = batch.join(&b'\n');
    g.bench_function("audit_batch_record", |b| {
        // What `/ingest/batch` does: the body's hash, each event's ids, one
        // record for the request, chained and appended.
        b.iter(|| {
            let mut ids = Vec::new();
            let mut record = BatchRecord::with_capacity(N);
            for (i, ev) in events.iter().enumerate() {
                ids.clear();
                audit_ids(&mut ids, ev, None);
                record.accepted(i + 1, &ids);
            }
            let pending =
                record.serialise(&client, Utc::now(), &sha256_hex_array(&body), "default");
            audit.append_pending(&pending).unwrap()
        })
    });

    // The engine with a real store (fsync per group commit), fed 1 000
    // fresh events per iteration with one message, answered after commit.
    let cfg = Config::default();
    let (engine, thread) = spawn_live(
        &cfg,
        LiveConfig {
            rate_limit_per_min: u32::MAX,
            ..LiveConfig::default()
        },
        &dir.path().join("vigil.db"),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut next = N;
    // Making and validating the events is outside the timing (it is
    // `validate` above).
    g.bench_function("engine_and_commit", |b| {
        b.iter_batched(
            || fresh_events(&mut next).1,
            |events| {
                rt.block_on(async {
                    let answers = engine
                        .submit_many(events, vigil::engine::Origin::Producer)
                        .await
                        .unwrap();
                    let mut ok = 0;
                    for a in answers.answers().await {
                        if matches!(a, Some(Ok(_))) {
                            ok += 1;
                        }
                    }
                    assert_eq!(ok, N);
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });

    // The store writer alone: 1 000 events with their idempotency keys as
    // one fsynced transaction, what the engine hands it per batch.
    let writer = vigil::store::StoreWriter::spawn_with(
        &dir.path().join("writer.db"),
        vigil::store::Retention {
            max_events: u64::MAX,
            max_alerts: u64::MAX,
            ..Default::default()
        },
        true,
        None,
    )
    .unwrap();
    let mut next = 0;
    g.bench_function("store_commit", |b| {
        b.iter_batched(
            || {
                let (now, events) = fresh_events(&mut next);
                let mut ops = Vec::with_capacity(2 * N);
                for ev in events {
                    ops.push(vigil::store::WriteOp::Idempotency {
                        key: vigil::store::idempotency_key(&ev.event_id),
                        expires_at: now,
                        tag: 0,
                    });
                    ops.push(vigil::store::WriteOp::Event(Box::new(ev)));
                }
                ops
            },
            |ops| {
                writer.send(vigil::store::WriteOp::Batch(ops)).unwrap();
                writer.flush().unwrap();
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
    drop(writer);
    drop(engine);
    let _ = thread.join();
}

criterion_group!(benches, bench_ingest);
criterion_main!(benches);

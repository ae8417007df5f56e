//! The live engine driven by many tasks at once (its state sits behind a
//! lock and callers run it themselves): every answer comes after the
//! commit, every accepted event is stored exactly once, duplicates are
//! refused however the producers interleave, and batch answers keep order.

use chrono::Utc;
use vigil::config::Config;
use vigil::engine::{EngineHandle, LiveConfig, Refusal, spawn_live};
use vigil::event::Event;

fn failure(id: String, host: &str, ip: &str) -> Event {
    Event::login_failed(id, Utc::now(), host, "root", ip.parse().ok())
}

/// The live engine on `db` with no rate limit.
fn unlimited_engine(db: &std::path::Path) -> (EngineHandle, std::thread::JoinHandle<()>) {
    spawn_live(
        &Config::default(),
        LiveConfig {
            rate_limit_per_min: u32::MAX,
            ..LiveConfig::default()
        },
        db,
    )
    .unwrap()
}

#[test]
fn concurrent_producers_get_committed_answers_and_no_event_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vigil.db");
    let (engine, thread) = unlimited_engine(&db);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (singles, batched, duplicates) = rt.block_on(async {
        let mut tasks = Vec::new();
        // Eight producers sending one event at a time, each also repeating
        // an id another producer sends: exactly one of the two may win.
        for t in 0..8 {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut dup) = (0, 0);
                for i in 0..100 {
                    let host = format!("single-{t}");
                    match engine
                        .ingest(failure(format!("s-{t}-{i}"), &host, "198.51.100.7"))
                        .await
                    {
                        Ok(Ok(_)) => ok += 1,
                        other => panic!("single event not accepted: {other:?}"),
                    }
                    if i % 10 == 0 {
                        let shared = format!("shared-{}-{i}", t / 2);
                        match engine.ingest(failure(shared, &host, "198.51.100.7")).await {
                            Ok(Ok(_)) => ok += 1,
                            Ok(Err(Refusal::DuplicateEventId)) => dup += 1,
                            other => panic!("unexpected answer: {other:?}"),
                        }
                    }
                }
                (ok, 0, dup)
            }));
        }
        // Two producers sending batches that the lock splits into chunks.
        for t in 0..2 {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let events = (0..300)
                    .map(|i| {
                        // A source of its own, so its alert is its own.
                        failure(
                            format!("b-{t}-{i:03}"),
                            &format!("batch-{t}"),
                            &format!("203.0.113.{t}"),
                        )
                    })
                    .collect();
                let answers = engine
                    .submit_many(events, vigil::engine::Origin::Producer)
                    .await
                    .unwrap();
                let mut ok = 0;
                for a in answers.answers().await {
                    let acc = a.unwrap().unwrap();
                    // Answers come back in the order sent: the 8th failure
                    // from this source is the first to carry the alert.
                    ok += 1;
                    if ok == 8 {
                        assert_eq!(acc.verdict.alerts.len(), 1, "8th failure opens the alert");
                    }
                }
                (0, ok, 0)
            }));
        }
        let mut sums = (0, 0, 0);
        for t in tasks {
            let (s, b, d) = t.await.unwrap();
            sums = (sums.0 + s, sums.1 + b, sums.2 + d);
        }
        sums
    });
    drop(engine);
    thread.join().unwrap();
    // 8 x 100 own ids, 4 pairs x 10 shared ids accepted once each.
    assert_eq!(singles, 800 + 40);
    assert_eq!(duplicates, 40);
    assert_eq!(batched, 600);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let distinct: i64 = conn
        .query_row("SELECT COUNT(DISTINCT event_id) FROM events", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!((stored, distinct), (1440, 1440));
}

/// A disk that stalls (here: another connection holding SQLite's write
/// lock for 1.5 s) fills the writer's queue. Producers must then wait
/// without holding the runtime's thread, so everything else on the runtime
/// (the gateway's `/health`, here a ticker) keeps running; once the disk
/// is back, every event is answered and stored.
#[test]
fn a_stalled_store_makes_producers_wait_without_freezing_the_runtime() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vigil.db");
    let (engine, thread) = unlimited_engine(&db);
    // Hold the write lock well inside the writer's 5 s busy timeout.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let blocker = {
        let db = db.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    locked_rx.recv().unwrap();
    // One runtime thread: if a producer blocks it, nothing else runs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    // Watches the ticker from outside the runtime, in real time.
    let watcher = {
        let ticks = ticks.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let before = ticks.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(700));
            ticks.load(Ordering::Relaxed) - before
        })
    };
    let accepted = rt.block_on(async {
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // 12 x 100 single-event calls: more messages than the writer's
        // queue holds (1 024) while its commit waits for the lock.
        let mut tasks = Vec::new();
        for t in 0..12 {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..100 {
                    let ev = failure(format!("stall-{t}-{i}"), &format!("h{t}"), "198.51.100.9");
                    answers.push(
                        engine
                            .submit(ev, vigil::engine::Origin::Producer)
                            .await
                            .unwrap(),
                    );
                }
                let mut ok = 0u32;
                for a in answers {
                    if matches!(a.await, Ok(Ok(_))) {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            accepted += t.await.unwrap();
        }
        ticker.abort();
        accepted
    });
    let ticks_while_stalled = watcher.join().unwrap();
    blocker.join().unwrap();
    drop(engine);
    thread.join().unwrap();
    // 700 ms at one tick per 10 ms: ~70 when the runtime is free, 0 when
    // its thread is stuck behind the full queue.
    assert!(
        ticks_while_stalled >= 20,
        "the runtime froze while the store stalled: {ticks_while_stalled} ticks in 700 ms"
    );
    assert_eq!(accepted, 1200);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 1200);
}

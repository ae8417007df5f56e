//! The console feed from the live engine: every accepted event and each
//! alert's current form, lossy under pressure but never silent about it.

use chrono::Utc;
use vigil::config::Config;
use vigil::engine::{Feed, LiveConfig, feed, spawn_live};
use vigil::event::Event;

fn failure(i: usize) -> Event {
    Event::login_failed(
        format!("evt-feed-{i:04}"),
        Utc::now(),
        "web-f",
        "root",
        "203.0.113.50".parse().ok(),
    )
}

/// A live engine on a fresh store with a feed of `capacity`; ingests
/// `n` failed logins from one source, stops the engine and returns the
/// feed's receiving end and the data dir.
fn run_failures(capacity: usize, n: usize) -> (vigil::engine::FeedReceiver, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = feed(capacity);
    let (engine, thread) = spawn_live(
        &Config::default(),
        LiveConfig {
            feed: Some(tx),
            ..LiveConfig::default()
        },
        &dir.path().join("vigil.db"),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..n {
            assert!(matches!(engine.ingest(failure(i)).await, Ok(Ok(_))));
        }
    });
    drop(engine);
    thread.join().unwrap();
    (rx, dir)
}

#[test]
fn feed_carries_events_and_alert_updates() {
    let (mut rx, _dir) = run_failures(1024, 10);
    let mut events = 0;
    let mut counts = Vec::new();
    while let Ok(f) = rx.rx.try_recv() {
        match f {
            Feed::Event(e) => {
                assert_eq!(e.event.host, "web-f");
                events += 1;
            }
            Feed::Alert(a) => {
                assert_eq!(a.rule_id, "BRUTE_FORCE_V1");
                counts.push(a.count);
            }
        }
    }
    assert_eq!(events, 10);
    // Opened at the 8th failure, then grew with the 9th and 10th (one
    // update per engine batch; these arrive one by one).
    assert_eq!(counts, [8, 9, 10]);
    let dropped = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (dropped(&rx.dropped_events), dropped(&rx.dropped_alerts)),
        (0, 0)
    );
}

#[test]
fn a_full_feed_drops_and_counts_without_slowing_ingest() {
    let (rx, dir) = run_failures(2, 20);
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (ev, al) = (load(&rx.dropped_events), load(&rx.dropped_alerts));
    // Nobody read: two messages fit, the rest were counted.
    assert_eq!(
        ev + al + 2,
        20 + 13,
        "20 events and 13 alert updates (8th to 20th failure)"
    );
    assert!(ev >= 18, "{ev}");
    let conn = vigil::store::open(&dir.path().join("vigil.db")).unwrap();
    assert_eq!(
        vigil::store::count_events(&conn).unwrap(),
        20,
        "the store has them all"
    );
}

/// `GET /alerts/recent`'s list: an alert is listed with its final count
/// once its de-duplication window closes, and the list outlives a restart.
#[test]
fn recent_alerts_show_final_counts_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vigil.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (engine, thread) = spawn_live(&Config::default(), LiveConfig::default(), &db).unwrap();
    let start = Utc::now();
    let listed = rt.block_on(async {
        for i in 0..10 {
            let mut ev = failure(i);
            ev.timestamp_utc = start;
            assert!(matches!(engine.ingest(ev).await, Ok(Ok(_))));
        }
        let opened = engine.recent_alerts(10).await.unwrap();
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].count, 8, "listed as it opened");
        // Event time moves past the 300 s de-duplication window.
        let later = Event::login_failed(
            "evt-feed-later",
            start + chrono::Duration::seconds(400),
            "web-other",
            "alice",
            "198.51.100.9".parse().ok(),
        );
        assert!(matches!(engine.ingest(later).await, Ok(Ok(_))));
        engine.recent_alerts(10).await.unwrap()
    });
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].count, 10, "listed with its final count");
    drop(engine);
    thread.join().unwrap();

    let (engine, thread) = spawn_live(&Config::default(), LiveConfig::default(), &db).unwrap();
    let after = rt.block_on(engine.recent_alerts(10)).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (&after[0].alert_id, after[0].count),
        (&listed[0].alert_id, 10)
    );
    drop(engine);
    thread.join().unwrap();
}

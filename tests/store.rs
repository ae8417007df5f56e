//! The SQLite store on real files: what `vigil scan --data-dir` keeps, state
//! surviving a reopen, audited release/unban, retention and migrations.

mod common;

use std::io::Write;

use chrono::{TimeZone, Utc};
use vigil::respond::policy::{Policy, PolicyConfig};
use vigil::store::{self, Retention, StoreError, StoreWriter, WriteOp};

/// 43 cron lines then 8 failed logins on one host within 30 s: the 8th
/// failure is also the 51st event, so storm and brute force coincide on one
/// event outside any cooldown, which the policy answers with quarantine (seed
/// semantics: a cooldown set earlier would answer `cooldown_active` first).
fn storm_and_brute_force() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for i in 0..43 {
        writeln!(
            f,
            "Mar 14 13:00:{:02} web-9 CRON[{}]: (root) CMD (true)",
            i / 5,
            100 + i
        )
        .unwrap();
    }
    for i in 0..8 {
        writeln!(f, "Mar 14 13:00:{:02} web-9 sshd[{}]: Failed password for root from 203.0.113.66 port {} ssh2", 10 + i, 900 + i, 5000 + i).unwrap();
    }
    f.flush().unwrap();
    f
}

/// A scan into a store with a small bound says in its summary how many
/// events retention deleted (and nothing about retention when it deleted
/// none).
#[test]
fn scan_summary_counts_what_retention_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, "[store]\nmax_events = 20\n").unwrap();
    let log = storm_and_brute_force();
    let data = dir.path().join("data");
    let scan = |extra: &[&str]| {
        let mut args = vec![
            "--reference-time",
            "2026-06-01T00:00:00Z",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(log.path().to_str().unwrap());
        common::vigil_scan(&args).1
    };
    let stderr = scan(&["--config", cfg.to_str().unwrap()]);
    assert!(
        stderr.contains("\n  retention deleted 31 older events to keep within max_events\n"),
        "{stderr}"
    );
    // Only the summary says it: no log line in the middle of a scan.
    assert!(!stderr.contains("at its bound"), "{stderr}");
    let conn = store::open(&data.join("vigil.db")).unwrap();
    assert_eq!(store::count_events(&conn).unwrap(), 20);
    let fresh = tempfile::tempdir().unwrap();
    let stderr = common::vigil_scan(&[
        "--reference-time",
        "2026-06-01T00:00:00Z",
        "--data-dir",
        fresh.path().to_str().unwrap(),
        log.path().to_str().unwrap(),
    ])
    .1;
    assert!(!stderr.contains("retention"), "{stderr}");
}

#[test]
fn scan_with_data_dir_persists_events_alerts_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = storm_and_brute_force();
    let (alerts, stderr) = common::vigil_scan(&[
        "--reference-time",
        "2026-06-01T00:00:00Z",
        "--data-dir",
        dir.path().to_str().unwrap(),
        log.path().to_str().unwrap(),
    ]);
    assert!(stderr.contains("quarantined hosts: web-9"), "{stderr}");
    let conn = store::open(&dir.path().join("vigil.db")).unwrap();
    assert_eq!(store::count_events(&conn).unwrap(), 51);
    let stored = store::recent_alerts(&conn, 50).unwrap();
    assert_eq!(stored.len(), alerts.len());
    assert!(
        stored
            .iter()
            .any(|a| a.rule_id == "BRUTE_FORCE_V1" && a.user.as_deref() == Some("root"))
    );
    let st = store::host_state(&conn, "web-9")
        .unwrap()
        .expect("host state stored");
    let q = st.quarantine.expect("quarantined");
    assert!(q.reason.contains("brute_force_suspected"));
    let bans = store::bans(&conn).unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].ip.to_string(), "203.0.113.66");
    // The journal mode is WAL.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn state_survives_reopen_and_release_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vigil.db");
    let log = storm_and_brute_force();
    common::vigil_scan(&[
        "--reference-time",
        "2026-06-01T00:00:00Z",
        "--data-dir",
        dir.path().to_str().unwrap(),
        log.path().to_str().unwrap(),
    ]);

    // A new process: restore the policy from the store, release, unban.
    let conn = store::open(&db).unwrap();
    let mut policy = Policy::new(PolicyConfig::default());
    policy.restore(
        store::host_states(&conn).unwrap(),
        store::bans(&conn).unwrap(),
    );
    assert_eq!(policy.quarantined_hosts().len(), 1);
    let at = Utc.with_ymd_and_hms(2026, 3, 14, 14, 0, 0).unwrap();
    policy
        .release("web-9", "owner confirmed the logins", "alice", at)
        .unwrap();
    policy
        .unban(
            "203.0.113.66".parse().unwrap(),
            "partner office NAT",
            "alice",
            at,
        )
        .unwrap();
    let writer = StoreWriter::spawn(&db, Retention::default()).unwrap();
    for c in policy.take_changes() {
        writer.send(WriteOp::State(c)).unwrap();
    }
    writer.close().unwrap();

    let conn = store::open(&db).unwrap();
    let st = store::host_state(&conn, "web-9").unwrap().unwrap();
    assert!(st.quarantine.is_none());
    assert_eq!(st.released_through_utc, Some(at));
    assert!(store::bans(&conn).unwrap().is_empty());
    let audit = store::audit_log(&conn).unwrap();
    let actions: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str(), a.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("alice", "release_host", "web-9"),
            ("alice", "unban_ip", "203.0.113.66")
        ]
    );
    assert_eq!(audit[0].reason, "owner confirmed the logins");
}

#[test]
fn expired_bans_and_idle_hosts_leave_the_store_and_quarantines_stay() {
    use vigil::respond::policy::{Ban, HostState, Quarantine, StateChange};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vigil.db");
    let now = Utc::now();
    let hours = |h: i64| now - chrono::Duration::hours(h);
    // State left by an earlier run: a ban that ran out two hours ago, a
    // host whose cooldown ended then, and a quarantine (never expires).
    let writer = StoreWriter::spawn(&db, Retention::default()).unwrap();
    let ban = |ip: &str, until| Ban {
        ip: ip.parse().unwrap(),
        since_utc: hours(3),
        until_utc: until,
        reason: "BRUTE_FORCE_V1".into(),
        alert_id: None,
    };
    let host = |name: &str, state| StateChange::Host {
        host: name.into(),
        state,
    };
    for change in [
        StateChange::Ban(ban("203.0.113.1", hours(2))),
        StateChange::Ban(ban("203.0.113.2", now + chrono::Duration::hours(1))),
        host(
            "idle-1",
            HostState {
                cooldown_until_utc: Some(hours(2)),
                ..HostState::default()
            },
        ),
        host(
            "held-1",
            HostState {
                quarantine: Some(Quarantine {
                    since_utc: hours(3),
                    reason: "brute_force_suspected".into(),
                    alert_id: None,
                }),
                ..HostState::default()
            },
        ),
    ] {
        writer.send(WriteOp::State(change)).unwrap();
    }
    writer.close().unwrap();

    // The live engine restores all of it; its first event (now) prunes
    // what ran out over an hour ago, in memory and in the store.
    let (engine, thread) = vigil::engine::spawn_live(
        &vigil::config::Config::default(),
        vigil::engine::LiveConfig::default(),
        &db,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ev = vigil::event::Event::login_failed("prune-1".to_string(), now, "web-2", "root", None);
    assert!(matches!(rt.block_on(engine.ingest(ev)), Ok(Ok(_))));
    drop(engine);
    thread.join().unwrap();

    let conn = store::open(&db).unwrap();
    let bans: Vec<String> = store::bans(&conn)
        .unwrap()
        .iter()
        .map(|b| b.ip.to_string())
        .collect();
    assert_eq!(bans, ["203.0.113.2"], "the running ban stays");
    assert_eq!(store::host_state(&conn, "idle-1").unwrap(), None);
    assert!(
        store::host_state(&conn, "held-1")
            .unwrap()
            .and_then(|s| s.quarantine)
            .is_some()
    );
}

/// A writer on a fresh database with these bounds (the directory lives
/// as long as the first value).
fn bounded_writer(r: Retention) -> (tempfile::TempDir, std::path::PathBuf, StoreWriter) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let writer = StoreWriter::spawn(&db, r).unwrap();
    (dir, db, writer)
}

#[test]
fn events_table_is_bounded() {
    let (_dir, db, writer) = bounded_writer(Retention {
        max_events: 100,
        ..Retention::default()
    });
    let text: String = (0..250)
        .map(|i| format!("Mar 14 13:{:02}:{:02} h sshd[1]: Failed password for root from 192.0.2.1 port {i} ssh2\n", i / 60, i % 60))
        .collect();
    let mut parser = vigil::parse::Parser::new(vigil::parse::ParseOptions::new(
        vigil::parse::SourceKind::Auto,
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
        "t",
    ));
    for (i, line) in text.lines().enumerate() {
        writer
            .send(WriteOp::Event(Box::new(
                parser.parse_line(line, i as u64 + 1).unwrap(),
            )))
            .unwrap();
    }
    writer.flush().unwrap();
    let stats = writer.close().unwrap();
    assert_eq!(stats.events, 250);
    let conn = store::open(&db).unwrap();
    assert_eq!(store::count_events(&conn).unwrap(), 100);
    // The newest events are the ones kept.
    let oldest: i64 = conn
        .query_row("SELECT MIN(ts) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        oldest,
        Utc.with_ymd_and_hms(2026, 3, 14, 13, 2, 30)
            .unwrap()
            .timestamp_micros()
    );
}

#[test]
fn retention_keeps_the_newest_by_event_time_with_ties_and_late_arrivals() {
    let (_dir, db, writer) = bounded_writer(Retention {
        max_events: 100,
        ..Retention::default()
    });
    let base = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    // 300 events over 40 distinct seconds (so many share a time), sent out
    // of time order, in three groups so retention runs more than once.
    let mut all = Vec::new();
    for group in 0..3 {
        for i in 0..100 {
            let n = group * 100 + i;
            let ts = base + chrono::Duration::seconds((n * 17 % 40) as i64);
            let id = format!("ev-{:03}", (n * 131) % 300);
            all.push((ts.timestamp_micros(), id.clone()));
            writer
                .send(WriteOp::Event(Box::new(vigil::event::Event::new(
                    id, ts, "h",
                ))))
                .unwrap();
        }
        writer.flush().unwrap();
    }
    writer.close().unwrap();
    all.sort();
    let want: Vec<(i64, String)> = all[200..].to_vec();
    let conn = store::open(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT ts, event_id FROM events ORDER BY ts, event_id")
        .unwrap();
    let kept: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kept, want);
    // The delete walks the index, not the table.
    let plan: Vec<String> = conn
        .prepare("EXPLAIN QUERY PLAN DELETE FROM events WHERE (ts, event_id) <= (?1, ?2)")
        .unwrap()
        .query_map(rusqlite::params![0, ""], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter().any(|p| p.contains("USING INDEX events_ts_id")),
        "{plan:?}"
    );
}

/// Parsed events with most columns set: structured data, IPv6, a repeat,
/// sudo, an nginx line (http), a line with no time.
fn sample_events() -> Vec<vigil::event::Event> {
    let mut parser = vigil::parse::Parser::new(vigil::parse::ParseOptions::new(
        vigil::parse::SourceKind::Auto,
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
        "t",
    ));
    let lines = [
        "<38>1 2019-07-08T17:40:17.954167-04:00 h.example.com sshd 55555 - [x@1 a=\"b\"] Failed unknown for invalid user redmond from 192.0.2.2 port 55555 ssh2",
        "Mar 14 13:00:00 h sshd[1]: message repeated 3 times: [ Failed password for root from 2001:db8::1 port 22 ssh2]",
        "Mar 14 13:00:01 h sudo: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id",
        "203.0.113.7 - - [14/Mar/2026:13:00:02 +0000] \"GET /wp-login.php HTTP/1.1\" 404 162 \"-\" \"curl/8\"",
        "srv cron[2]: journal line without a time",
    ];
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| parser.parse_line(l, i as u64 + 1).unwrap())
        .collect()
}

#[test]
fn stored_events_read_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let events = sample_events();
    let writer = StoreWriter::spawn(&db, Retention::default()).unwrap();
    for ev in &events {
        writer.send(WriteOp::Event(Box::new(ev.clone()))).unwrap();
    }
    writer.close().unwrap();
    let conn = store::open(&db).unwrap();
    for ev in &events {
        assert_eq!(
            store::event(&conn, &ev.event_id).unwrap().as_ref(),
            Some(ev)
        );
    }
    assert_eq!(store::event(&conn, "ev-missing").unwrap(), None);
}

/// The live engine hands the writer a batch of keys and events (and the
/// alerts and state they caused); events go in by runs, many rows to a
/// statement. Whatever the runs (full, cut by an alert, the rest at the
/// end), every event reads back unchanged, in the order sent, and one
/// already stored is still ignored and not counted.
#[test]
fn batched_events_go_in_by_runs_read_back_unchanged_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let base = sample_events();
    // 40 events: two full runs, a run cut by an alert, the rest at the end.
    let events: Vec<vigil::event::Event> = (0..40)
        .map(|i| {
            let mut ev = base[i % base.len()].clone();
            ev.event_id = format!("run-{i:03}");
            ev
        })
        .collect();
    let mut ops = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        ops.push(WriteOp::Idempotency {
            key: store::idempotency_key(&ev.event_id),
            expires_at: Utc::now() + chrono::Duration::days(7),
            tag: 0,
        });
        ops.push(WriteOp::Event(Box::new(ev.clone())));
        if i == 20 {
            ops.push(WriteOp::Alert(std::sync::Arc::new(brute_force_alert(
                "al-run",
                ev.timestamp_utc,
                8,
            ))));
        }
        if i == 35 {
            // Already stored (same time and id): ignored.
            ops.push(WriteOp::Event(Box::new(events[3].clone())));
        }
    }
    let writer = StoreWriter::spawn(&db, Retention::default()).unwrap();
    writer.send(WriteOp::Batch(ops)).unwrap();
    let stats = writer.close().unwrap();
    assert_eq!((stats.events, stats.alerts), (40, 1));
    let conn = store::open(&db).unwrap();
    let order: Vec<String> = conn
        .prepare("SELECT event_id FROM events ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let sent: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(order, sent);
    for ev in &events {
        assert_eq!(
            store::event(&conn, &ev.event_id).unwrap().as_ref(),
            Some(ev)
        );
    }
}

#[test]
fn new_stores_use_8k_pages_and_existing_ones_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |c: &rusqlite::Connection| -> i64 {
        c.pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap()
    };
    let fresh = dir.path().join("fresh.db");
    assert_eq!(page_size(&store::open(&fresh).unwrap()), store::PAGE_SIZE);
    // A store made by an earlier build (4 KiB pages) opens unchanged.
    let old = dir.path().join("old.db");
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x);")
        .unwrap();
    let conn = store::open(&old).unwrap();
    assert_eq!(page_size(&conn), 4096);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "migrated as usual");
}

#[test]
fn migrations_are_idempotent_and_refuse_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    drop(store::open(&db).unwrap());
    let conn = store::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    match store::open(&db) {
        Err(StoreError::TooNew { found: 99, .. }) => {}
        other => panic!("expected TooNew, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn hostile_text_is_stored_verbatim_through_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let writer = StoreWriter::spawn(&db, Retention::default()).unwrap();
    let mut parser = vigil::parse::Parser::new(vigil::parse::ParseOptions::new(
        vigil::parse::SourceKind::Auto,
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
        "t",
    ));
    let line =
        "Mar 14 13:00:00 h sshd[1]: Invalid user x');DROP TABLE events;-- from 192.0.2.1 port 1";
    writer
        .send(WriteOp::Event(Box::new(
            parser.parse_line(line, 1).unwrap(),
        )))
        .unwrap();
    writer.close().unwrap();
    let conn = store::open(&db).unwrap();
    let user: String = conn
        .query_row("SELECT user FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(user, "x');DROP TABLE events;--");
}

#[test]
fn rescanning_a_file_into_the_same_store_adds_no_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = storm_and_brute_force();
    let args = [
        "--reference-time",
        "2026-06-01T00:00:00Z",
        "--data-dir",
        dir.path().to_str().unwrap(),
        log.path().to_str().unwrap(),
    ];
    common::vigil_scan(&args);
    common::vigil_scan(&args);
    let conn = store::open(&dir.path().join("vigil.db")).unwrap();
    assert_eq!(store::count_events(&conn).unwrap(), 51);
}

#[test]
fn expired_idempotency_keys_are_dropped_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let now = Utc::now();
    let writer = StoreWriter::spawn(&db, Retention::default()).unwrap();
    // A flush writes the keys so far as a block: one block wholly expired,
    // one in force with a key that has expired.
    for group in [
        &[("old-1", -7200), ("old-2", -10)][..],
        &[("old-3", -5), ("live-1", 3600), ("live-2", 7200)][..],
    ] {
        for (id, secs) in group {
            writer
                .send(WriteOp::Idempotency {
                    key: store::idempotency_key(id),
                    expires_at: now + chrono::Duration::seconds(*secs),
                    tag: 0,
                })
                .unwrap();
        }
        writer.flush().unwrap();
    }
    writer.close().unwrap();
    let conn = store::open(&db).unwrap();
    let mut keys = Vec::new();
    store::for_each_idempotency_key(&conn, now, |k, exp| keys.push((k, exp.timestamp()))).unwrap();
    assert_eq!(
        keys,
        [
            (
                store::idempotency_key("live-1"),
                (now + chrono::Duration::seconds(3600)).timestamp()
            ),
            (
                store::idempotency_key("live-2"),
                (now + chrono::Duration::seconds(7200)).timestamp()
            ),
        ]
    );
    // (How the writer splits the sends into commits depends on timing, so
    // the blocks are counted by expiry, not by number.)
    let (expired, live): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*) FILTER (WHERE expires_at <= ?1), COUNT(*) FILTER (WHERE expires_at > ?1)
               FROM idempotency_blocks",
            [Utc::now().timestamp_millis()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        expired, 0,
        "a block whose keys have all expired is deleted, not only skipped"
    );
    assert!((1..=3).contains(&live), "{live}");
}

#[test]
fn evidence_lookup_reads_only_the_asked_ids_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let writer = StoreWriter::spawn(&db, Retention::default()).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    for i in 0..1000i64 {
        let ev = vigil::event::Event::login_failed(
            format!("ev-{i:04}"),
            t0 + chrono::Duration::seconds(i),
            "h",
            "root",
            None,
        );
        writer.send(WriteOp::Event(Box::new(ev))).unwrap();
    }
    writer.close().unwrap();
    let conn = store::open(&db).unwrap();
    let ids: Vec<String> = ["ev-0500", "ev-0100", "ev-0900", "ev-0999", "missing"]
        .map(String::from)
        .to_vec();
    let got = store::events_in_range(
        &conn,
        &ids,
        t0 + chrono::Duration::seconds(100),
        t0 + chrono::Duration::seconds(900),
    )
    .unwrap();
    let got: Vec<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
    // In time order; ev-0999 is outside the window, "missing" is not stored.
    assert_eq!(got, ["ev-0100", "ev-0500", "ev-0900"]);
    assert!(
        store::events_in_range(&conn, &[], t0, t0)
            .unwrap()
            .is_empty()
    );
}

/// A brute-force alert with this id, seen once at `at`, `count` events.
fn brute_force_alert(id: &str, at: chrono::DateTime<Utc>, count: u64) -> vigil::detect::Alert {
    vigil::detect::Alert {
        alert_id: id.into(),
        rule_id: "BRUTE_FORCE_V1".into(),
        host: "h".into(),
        severity: 7,
        confidence: 0.75,
        risk_score: 70.0,
        created_time_utc: at,
        first_seen_utc: at,
        last_seen_utc: at,
        count,
        user: Some("root".into()),
        src_ip: "192.0.2.9".parse().ok(),
        reasons: vec!["brute_force_suspected".into()],
        context: Default::default(),
        evidence: Vec::new(),
        recommended_action: "BLOCK_IP".into(),
        mitre: Vec::new(),
        status: vigil::detect::AlertStatus::Open,
    }
}

/// `[store] max_alerts`: the alerts that opened first go once there are
/// more; an update to a kept alert keeps it (its row stays), and the
/// newest alerts are the ones left.
#[test]
fn alerts_table_is_bounded_oldest_opened_first() {
    let (_dir, db, writer) = bounded_writer(Retention {
        max_alerts: 3,
        ..Retention::default()
    });
    let at = |s: i64| Utc.timestamp_opt(1_780_000_000 + s, 0).unwrap();
    let alert = |n: i64, count: u64| brute_force_alert(&format!("al-{n:04}"), at(n), count);
    for n in 1..=5 {
        writer
            .send(WriteOp::Alert(std::sync::Arc::new(alert(n, 1))))
            .unwrap();
        writer.flush().unwrap();
    }
    // An update to the newest: still one row, still kept.
    writer
        .send(WriteOp::Alert(std::sync::Arc::new(alert(5, 9))))
        .unwrap();
    writer.flush().unwrap();
    writer.close().unwrap();
    let conn = store::open(&db).unwrap();
    let kept: Vec<(String, i64)> = conn
        .prepare("SELECT alert_id, count FROM alerts ORDER BY alert_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kept,
        [
            ("al-0003".to_string(), 1),
            ("al-0004".to_string(), 1),
            ("al-0005".to_string(), 9)
        ]
    );
}

/// The bundled SQLite is built with the options in `.cargo/config.toml`
/// (they measured +2–3 % on the gateway): a build without them is caught
/// here rather than by a slower benchmark.
#[test]
fn sqlite_is_built_with_the_projects_options() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let options: Vec<String> = conn
        .prepare("PRAGMA compile_options")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for want in ["DEFAULT_MEMSTATUS=0", "USE_ALLOCA", "THREADSAFE=1"] {
        assert!(
            options.iter().any(|o| o == want),
            "{want} not in {options:?}"
        );
    }
}

/// The live writer's records (the gateway's accept records) go to its sink
/// once per group commit: after the commit (another connection already
/// sees the group's events) and before the group's replies run, so an
/// answer never goes out ahead of its record.
#[test]
fn a_groups_records_are_appended_once_after_its_commit_and_before_its_replies() {
    use std::sync::{Arc, Mutex};
    use vigil::store::audit_log::Pending;
    use vigil::store::{AfterCommit, RecordSink, RecordSinkSlot};

    struct Sink {
        db: std::path::PathBuf,
        /// Per append: its records, and the events stored when it came.
        appends: Mutex<Vec<(usize, i64)>>,
    }
    impl RecordSink for Sink {
        fn append(&self, records: &Pending) {
            let conn = rusqlite::Connection::open(&self.db).unwrap();
            let stored: i64 = conn
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .unwrap();
            self.appends.lock().unwrap().push((records.len(), stored));
        }
    }
    fn record(id: &str) -> Pending {
        let mut p = Pending::default();
        p.push(&serde_json::json!({ "type": "gateway_accept", "event_id": id }))
            .unwrap();
        p
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vigil.db");
    let sink = Arc::new(Sink {
        db: db.clone(),
        appends: Mutex::default(),
    });
    let slot: RecordSinkSlot = Arc::default();
    let weak: std::sync::Weak<dyn RecordSink> = Arc::downgrade(&sink) as _;
    assert!(slot.set(weak).is_ok());
    let writer = StoreWriter::spawn_with(&db, Retention::default(), true, Some(slot)).unwrap();
    let at = Utc.with_ymd_and_hms(2026, 11, 22, 1, 0, 0).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut ops = Vec::new();
    for id in ["rec-1", "rec-2", "rec-3"] {
        ops.push(WriteOp::Event(Box::new(vigil::event::Event::new(
            id, at, "h1",
        ))));
        ops.push(WriteOp::Records(record(id)));
    }
    let seen = sink.clone();
    ops.push(WriteOp::AfterCommit(AfterCommit(Box::new(move || {
        let _ = tx.send(seen.appends.lock().unwrap().clone());
    }))));
    writer.send(WriteOp::Batch(ops)).unwrap();
    let at_reply = rx.recv().unwrap();
    assert_eq!(
        at_reply,
        [(3, 3)],
        "one append of the three records, after the commit, before the reply"
    );
    // A group without records appends nothing.
    writer
        .send(WriteOp::Event(Box::new(vigil::event::Event::new(
            "rec-4", at, "h1",
        ))))
        .unwrap();
    writer.flush().unwrap();
    assert_eq!(sink.appends.lock().unwrap().len(), 1);
    writer.close().unwrap();
}

/// A live writer (fsync per commit, as `vigil serve` runs it) on a fresh
/// database.
fn live_writer(r: Retention) -> (tempfile::TempDir, std::path::PathBuf, StoreWriter) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let writer = StoreWriter::spawn_with(&db, r, true, None).unwrap();
    (dir, db, writer)
}

/// Commits `ops` as one group and waits for it.
fn commit(writer: &StoreWriter, mut ops: Vec<WriteOp>) {
    let (tx, rx) = std::sync::mpsc::channel();
    ops.push(WriteOp::AfterCommit(store::AfterCommit(Box::new(
        move || {
            let _ = tx.send(());
        },
    ))));
    writer.send(WriteOp::Batch(ops)).unwrap();
    rx.recv().unwrap();
}

/// An event with its idempotency key, as the live engine queues them.
fn keyed_event(id: &str, at: chrono::DateTime<Utc>) -> Vec<WriteOp> {
    vec![
        WriteOp::Idempotency {
            key: store::idempotency_key(id),
            expires_at: Utc::now() + chrono::Duration::days(7),
            tag: 0,
        },
        WriteOp::Event(Box::new(vigil::event::Event::new(id, at, "h1"))),
    ]
}

/// The keys a restart would load, as a set.
fn keys_on_restart(db: &std::path::Path) -> std::collections::BTreeSet<u64> {
    let conn = store::open(db).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    store::for_each_idempotency_key(&conn, Utc::now(), |k, _| {
        keys.insert(k);
    })
    .unwrap();
    keys
}

/// Keys go to blocks a second (or 4 096 keys) at a time; until then a
/// crash loses none of them: a restart reads them from their events' rows.
#[test]
fn committed_keys_not_yet_in_a_block_are_read_back_from_their_events() {
    let (_dir, db, writer) = live_writer(Retention::default());
    let at = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
    for i in 0..3 {
        commit(&writer, keyed_event(&format!("k-{i}"), at));
    }
    let blocks = |db: &std::path::Path| -> i64 {
        store::open(db)
            .unwrap()
            .query_row("SELECT count(*) FROM idempotency_blocks", [], |r| r.get(0))
            .unwrap()
    };
    let want: std::collections::BTreeSet<u64> = (0..3)
        .map(|i| store::idempotency_key(&format!("k-{i}")))
        .collect();
    // (Read while the writer runs, as after a kill: nothing flushed them.)
    if blocks(&db) == 0 {
        assert_eq!(keys_on_restart(&db), want, "read back from the rows");
    } else {
        eprintln!("note: a block was written already (a slow machine passed a second)");
    }
    writer.flush().unwrap();
    assert!(blocks(&db) >= 1, "a flush writes them as a block");
    assert_eq!(keys_on_restart(&db), want, "and reads each once");
    writer.close().unwrap();
}

/// Retention deletes the oldest events; keys that were only in their rows
/// go to a block first. An event that took the highest rowid and was
/// deleted at once (the oldest event time) frees that rowid for the next
/// event, whose key must still be read back.
#[test]
fn retention_keeps_the_keys_of_the_events_it_deletes() {
    let (_dir, db, writer) = live_writer(Retention {
        max_events: 50,
        ..Retention::default()
    });
    let base = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
    let mut ids = Vec::new();
    // Retention runs every 64 commits: 63 in time order, then one older
    // than all of them (it gets the highest rowid and is deleted first),
    // then the 65th.
    for i in 0..63 {
        let id = format!("r-{i:03}");
        commit(
            &writer,
            keyed_event(&id, base + chrono::Duration::seconds(i)),
        );
        ids.push(id);
    }
    commit(
        &writer,
        keyed_event("r-oldest", base - chrono::Duration::days(1)),
    );
    ids.push("r-oldest".into());
    commit(
        &writer,
        keyed_event("r-next", base + chrono::Duration::seconds(100)),
    );
    ids.push("r-next".into());
    let conn = store::open(&db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let oldest: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE event_id = 'r-oldest'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((stored, oldest), (51, 0), "retention ran and took r-oldest");
    let want: std::collections::BTreeSet<u64> =
        ids.iter().map(|id| store::idempotency_key(id)).collect();
    assert_eq!(keys_on_restart(&db), want, "every key, deleted events' too");
    writer.close().unwrap();
}

/// At the bound, retention runs as soon as `RETENTION_STEP` events are
/// past it, not only every 64th commit: with big groups the 64 commits'
/// worth of deletes stalled every request at once. Groups of 500 over a
/// bound of 1 000: the count read after each group follows the step, and
/// what is kept is the newest.
#[test]
fn retention_runs_once_a_step_past_the_bound() {
    let max = 1000u64;
    let (_dir, db, writer) = live_writer(Retention {
        max_events: max,
        ..Retention::default()
    });
    let base = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
    let group = 500u64;
    let groups = (max + store::RETENTION_STEP) / group + 3;
    assert!(groups < 64, "the 64-commit rule must not be what runs it");
    let count = |db: &std::path::Path| -> u64 {
        store::open(db)
            .unwrap()
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    };
    // What the writer is expected to hold once group `g` is committed: the
    // retention a group may start runs after its reply, so it shows in the
    // count read after the next group.
    let mut expected = 0u64;
    let mut ran = 0;
    for g in 0..groups {
        let ops: Vec<WriteOp> = (0..group)
            .flat_map(|i| {
                let n = g * group + i;
                keyed_event(
                    &format!("s-{n:06}"),
                    base + chrono::Duration::milliseconds(n as i64),
                )
            })
            .collect();
        commit(&writer, ops);
        if g == 0 {
            // Nothing deleted yet: the console shows no retention line.
            assert_eq!(writer.health().unwrap().retention(), None);
        }
        expected += group;
        assert_eq!(count(&db), expected, "after group {g}");
        if expected >= max + store::RETENTION_STEP {
            expected = max;
            ran += 1;
        }
    }
    assert!(ran >= 1, "retention ran {ran} times");
    writer.flush().unwrap();
    let conn = store::open(&db).unwrap();
    let oldest: String = conn
        .query_row(
            "SELECT event_id FROM events ORDER BY ts, event_id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let total = groups * group;
    assert_eq!(count(&db), max);
    assert_eq!(oldest, format!("s-{:06}", total - max));
    // What the console's header shows, read while the writer runs.
    let seen = writer.health().unwrap().retention().unwrap();
    assert_eq!(
        (seen.stored, seen.max_events, seen.deleted_over_bound),
        (max, max, total - max)
    );
    assert_eq!((seen.deleted_aged, seen.max_age_days), (0, None));
    let since = seen.at_bound_since.unwrap();
    assert!((Utc::now() - since).num_seconds() < 60, "{since}");
    let stats = writer.close().unwrap();
    assert_eq!(
        (stats.events, stats.deleted_over_bound, stats.deleted_aged),
        (total, total - max, 0)
    );
}

/// A group holding 4 096 keys or more writes them as blocks in its own
/// commit, so batches cost no extra transaction.
#[test]
fn a_big_group_writes_its_keys_in_its_own_commit() {
    let (_dir, db, writer) = live_writer(Retention::default());
    let at = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
    let ops: Vec<WriteOp> = (0..5000)
        .flat_map(|i| keyed_event(&format!("big-{i}"), at))
        .collect();
    commit(&writer, ops);
    let conn = store::open(&db).unwrap();
    let (blocks, keys, through): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), COALESCE(sum(length(keys)) / 16, 0),
                    (SELECT through_rowid FROM idempotency_meta)
               FROM idempotency_blocks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((blocks, keys, through), (1, 5000, 5000));
    writer.close().unwrap();
}

/// With an age bound, events whose event time and alerts whose last
/// sighting are older go, the next time retention runs, which the writer
/// does when it has been idle that long too; their idempotency keys stay.
#[test]
fn events_and_alerts_past_the_age_bound_go_even_while_idle() {
    let (_dir, db, writer) = live_writer(Retention {
        max_age: Some(std::time::Duration::from_secs(86_400)),
        idle_check: std::time::Duration::from_millis(50),
        ..Retention::default()
    });
    let now = Utc::now();
    let alert = |id: &str, last| brute_force_alert(id, last, 8);
    let mut ops = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        for (tag, at) in [
            ("old", now - chrono::Duration::days(2)),
            ("new", now - chrono::Duration::hours(1)),
        ] {
            let id = format!("age-{tag}-{i}");
            ops.extend(keyed_event(&id, at + chrono::Duration::seconds(i)));
            ids.push(id);
        }
    }
    ops.push(WriteOp::Alert(std::sync::Arc::new(alert(
        "al-old",
        now - chrono::Duration::days(3),
    ))));
    ops.push(WriteOp::Alert(std::sync::Arc::new(alert(
        "al-new",
        now - chrono::Duration::minutes(5),
    ))));
    commit(&writer, ops);
    // No more writes: the idle writer applies the bound by itself.
    let conn = store::open(&db).unwrap();
    let left = || -> (Vec<String>, Vec<String>) {
        let col = |sql: &str| -> Vec<String> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        (
            col("SELECT event_id FROM events ORDER BY event_id"),
            col("SELECT alert_id FROM alerts ORDER BY alert_id"),
        )
    };
    let started = std::time::Instant::now();
    while left().0.len() > 5 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            left()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (events, alerts) = left();
    assert_eq!(
        events,
        (0..5).map(|i| format!("age-new-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(alerts, ["al-new"]);
    let want: std::collections::BTreeSet<u64> =
        ids.iter().map(|id| store::idempotency_key(id)).collect();
    assert_eq!(keys_on_restart(&db), want, "the deleted events' keys too");
    // Writes that never leave the writer idle for the interval, far fewer
    // than 64 commits: the bound is still applied on time.
    commit(
        &writer,
        keyed_event("age-old-late", now - chrono::Duration::days(2)),
    );
    let started = std::time::Instant::now();
    for i in 0..40 {
        commit(&writer, keyed_event(&format!("age-busy-{i}"), Utc::now()));
        std::thread::sleep(std::time::Duration::from_millis(10));
        if !left().0.iter().any(|id| id == "age-old-late") {
            break;
        }
        assert!(
            i < 39,
            "still there after 40 commits over {:?}",
            started.elapsed()
        );
    }
    // Six went for their age (the store is far below its count bound),
    // and the console is told so.
    let seen = writer.health().unwrap().retention().unwrap();
    assert_eq!(
        (
            seen.deleted_aged,
            seen.max_age_days,
            seen.deleted_over_bound
        ),
        (6, Some(1), 0)
    );
    assert_eq!(
        (seen.stored, seen.at_bound_since),
        (left().0.len() as u64, None)
    );
    let stats = writer.close().unwrap();
    assert_eq!((stats.deleted_aged, stats.deleted_over_bound), (6, 0));
}

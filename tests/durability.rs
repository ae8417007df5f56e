//! `kill -9` under load loses no acknowledged event: many clients post to a
//! real `vigil serve`, the process is killed without warning, and every
//! event that got a 200 is in the SQLite store and still refused as a
//! duplicate after a restart; host state survives too.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use vigil::sources::gateway::sign;

const SECRET: &str = "durability-secret";

fn event(id: &str, host: &str, action: &str, src_ip: &str) -> Vec<u8> {
    serde_json::to_vec(&common::wire_event(
        id,
        host,
        action,
        Some("root"),
        Some(src_ip),
    ))
    .unwrap()
}

/// One signed POST to `/ingest`; `None` when the server is gone mid-request.
fn post(addr: &str, body: &[u8]) -> Option<(u16, String)> {
    post_to(addr, "/ingest", body)
}

fn post_to(addr: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    let sig = sign(SECRET.as_bytes(), body);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nX-ARES-SIGNATURE: {sig}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event() {
    let env = [
        ("ARES_SHARED_SECRET", SECRET),
        ("SEC_RATE_LIMIT_PER_MIN", "1000000"),
    ];
    let mut server = common::Server::start(&env);
    let addr = server.addr.clone();

    // Host state worth keeping: a brute force puts host-victim in cooldown.
    for i in 0..9 {
        let (s, _) = post(
            &addr,
            &event(
                &format!("bruteforce-{i:04}"),
                "host-victim",
                "login_failed",
                "198.51.100.7",
            ),
        )
        .unwrap();
        assert_eq!(s, 200);
    }
    let state_before = {
        let (s, b) = server.request("GET", "/hosts/host-victim/state", &[], b"");
        assert_eq!(s, 200);
        serde_json::from_str::<Value>(&b).unwrap()
    };
    assert!(
        !state_before["cooldown_until_utc"].is_null(),
        "{state_before}"
    );

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (addr, acked, stop) = (addr.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = format!("load-{w}-{n}");
                    let host = format!("load-host-{w}");
                    // Two workers send batches of 50: a line is acknowledged
                    // by its 200 in a batch answered 200.
                    if w < 2 {
                        let batch = (0..50)
                            .map(|k| {
                                event(&format!("{id}-{k}"), &host, "session_opened", "10.1.2.3")
                            })
                            .collect::<Vec<_>>()
                            .join(&b'\n');
                        match post_to(&addr, "/ingest/batch", &batch) {
                            Some((200, b)) => {
                                let v: Value = serde_json::from_str(&b).unwrap();
                                let mut acked = acked.lock().unwrap();
                                for line in v["results"].as_array().unwrap() {
                                    assert_eq!(line["status"], 200, "{b}");
                                    acked.push(line["event_id"].as_str().unwrap().to_string());
                                }
                            }
                            Some((code, b)) => panic!("unexpected {code}: {b}"),
                            None => break,
                        }
                        continue;
                    }
                    let body = event(&id, &host, "session_opened", "10.1.2.3");
                    match post(&addr, &body) {
                        Some((200, _)) => acked.lock().unwrap().push(id),
                        Some((code, b)) => panic!("unexpected {code}: {b}"),
                        None => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    // Until 3 000 single events are acknowledged (batches run beside them).
    let singles = |acked: &[String]| {
        acked
            .iter()
            .filter(|id| id.matches('-').count() == 2)
            .count()
    };
    while singles(&acked.lock().unwrap()) < 3000 && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    server.child.kill().unwrap(); // SIGKILL: no drain, no shutdown hook
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 500,
        "load too small to mean anything: {}",
        acked.len()
    );
    // Batch lines are `load-W-N-K`, single events `load-W-N`.
    let acked_in_batches = acked
        .iter()
        .filter(|id| id.matches('-').count() == 3)
        .count();
    println!(
        "kill -9: {} acknowledged single events, {acked_in_batches} acknowledged batch lines",
        singles(&acked)
    );
    assert!(
        singles(&acked) >= 500 && acked_in_batches >= 500,
        "load too small to mean anything: {} single, {acked_in_batches} batched",
        singles(&acked)
    );

    // Every acknowledged event is in the store.
    let db = rusqlite::Connection::open(server.dir.path().join("vigil.db")).unwrap();
    // Each stored id, counted (events have no index by id: one read of
    // the table, not one per acknowledged event).
    let mut times_stored = std::collections::HashMap::<String, u32>::new();
    db.prepare("SELECT event_id FROM events WHERE event_id LIKE 'load-%'")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .for_each(|id| *times_stored.entry(id.unwrap()).or_default() += 1);
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| times_stored.get(id.as_str()) != Some(&1))
        .collect();
    let stored: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE event_id LIKE 'load-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    println!(
        "kill -9 after {} acknowledged events: {} stored, {} acknowledged but missing",
        acked.len(),
        stored,
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    drop(db);

    // Every acknowledged event has its accept record: the record is written
    // (by the store writer, with its group's) before the answer goes out,
    // so a kill -9 after the answer cannot take it.
    // (A batch's record names each accepted line.)
    let records = common::audit_records(&server.dir.path().join("audit.jsonl"));
    let batched: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "gateway_batch")
        .flat_map(|r| r["events"].as_array().unwrap())
        .collect();
    let accepted: std::collections::HashSet<String> = records
        .iter()
        .filter(|r| r["type"] == "gateway_accept")
        .chain(batched.iter().copied())
        .filter_map(|r| r["event_id"].as_str().map(str::to_string))
        .collect();
    let acked_in_batches = acked
        .iter()
        .filter(|id| id.matches('-').count() == 3)
        .count();
    assert!(
        acked_in_batches >= 100,
        "batches too few to mean anything: {acked_in_batches}"
    );
    let unrecorded: Vec<&String> = acked.iter().filter(|id| !accepted.contains(*id)).collect();
    println!(
        "kill -9: {} accept records of load events, {} acknowledged without one",
        accepted.iter().filter(|id| id.starts_with("load-")).count(),
        unrecorded.len()
    );
    assert!(
        unrecorded.is_empty(),
        "acknowledged without an accept record: {:?}",
        &unrecorded[..unrecorded.len().min(10)]
    );

    // After a restart: acknowledged ids are still duplicates, host state kept.
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    drop(server);
    let server = common::Server::start_in(dir, &env);
    // Every stored event is named as accepted once the restart has written
    // the records the kill kept out (those stored but never answered).
    let records = common::audit_records(&server.dir.path().join("audit.jsonl"));
    let recovered: std::collections::HashSet<String> = records
        .iter()
        .filter(|r| r["type"] == "gateway_accept_recovered")
        .flat_map(|r| r["events"].as_array().unwrap())
        .filter_map(|e| e["event_id"].as_str().map(str::to_string))
        .collect();
    let unnamed = times_stored
        .keys()
        .filter(|id| !accepted.contains(*id) && !recovered.contains(*id))
        .count();
    println!(
        "kill -9: {} stored without an accept record before the restart, {} recovered at \
         start, {unnamed} stored without one after",
        times_stored
            .keys()
            .filter(|id| !accepted.contains(*id))
            .count(),
        recovered.len()
    );
    assert_eq!(unnamed, 0, "{:?}", server.banner);
    let twice: Vec<&String> = recovered.intersection(&accepted).collect();
    assert!(twice.is_empty(), "named as accepted twice: {twice:?}");
    for id in [&acked[0], &acked[acked.len() / 2], &acked[acked.len() - 1]] {
        // Same id, fresh timestamp: only idempotency can refuse it.
        let (s, b) = post(
            &server.addr,
            &event(id, "load-host-0", "session_opened", "10.1.2.3"),
        )
        .unwrap();
        assert_eq!(
            (s, b.as_str()),
            (409, r#"{"detail":"duplicate_event_id"}"#),
            "{id}"
        );
    }
    let (s, b) = server.request("GET", "/hosts/host-victim/state", &[], b"");
    assert_eq!(s, 200);
    let state_after: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        state_after["cooldown_until_utc"],
        state_before["cooldown_until_utc"]
    );
    assert_eq!(state_after["quarantine"], state_before["quarantine"]);
    // The chain is whole across the kill (a last line the kill cut short
    // is set aside when the log is opened again).
    common::assert_audit_verifies(&server.dir.path().join("audit.jsonl"));
}

/// A commit that fails (here: another process holds the database's write
/// lock past the busy timeout) answers 503 and leaves the gateway working:
/// once the lock is gone the same event is accepted (not refused as a
/// duplicate of an event that was never stored), later events are stored,
/// and the refused attempt is not in the store.
#[test]
fn failed_commit_answers_503_and_the_gateway_recovers() {
    let env = [
        ("ARES_SHARED_SECRET", SECRET),
        ("SEC_RATE_LIMIT_PER_MIN", "1000000"),
    ];
    let mut server = common::Server::start(&env);
    let addr = server.addr.clone();
    let body = |id: &str| event(id, "host-locked", "session_opened", "10.1.2.3");
    assert_eq!(post(&addr, &body("before-lock-0001")).unwrap().0, 200);

    let db_path = server.dir.path().join("vigil.db");
    let locker = rusqlite::Connection::open(&db_path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = std::time::Instant::now();
    // With two quiet events: five failed logins on one host (below the
    // brute-force threshold of 8) and eight on another (an alert, a ban).
    let fail = |id: String, host: &str, ip: &str| event(&id, host, "login_failed", ip);
    let mut lines = vec![body("during-lock-0002"), body("during-lock-0003")];
    lines.extend((0..5).map(|i| fail(format!("near-{i:04}"), "host-near", "198.51.100.60")));
    lines.extend((0..8).map(|i| fail(format!("bfhost-{i:04}"), "host-bf", "198.51.100.61")));
    let batch = lines.join(&b'\n');
    let batch_addr = addr.clone();
    let resend = batch.clone();
    let in_batch = std::thread::spawn(move || post_to(&batch_addr, "/ingest/batch", &batch));
    let (s, b) = post(&addr, &body("during-lock-0001")).unwrap();
    let (bs, bb) = in_batch.join().unwrap().unwrap();
    println!(
        "commits under another process's lock: {s} {b}; batch {bs} {bb}; after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((s, b.as_str()), (503, r#"{"detail":"store_unavailable"}"#));
    let answer: Value = serde_json::from_str(&bb).unwrap();
    assert_eq!((bs, &answer["accepted"]), (200, &Value::from(0)), "{bb}");
    for line in answer["results"].as_array().unwrap() {
        assert_eq!(line["status"], 503, "{bb}");
        assert_eq!(line["detail"], "store_unavailable", "{bb}");
    }
    // Monitoring sees it too.
    let (hs, hb) = server.request("GET", "/health", &[], b"");
    let health: Value = serde_json::from_str(&hb).unwrap();
    assert_eq!((hs, &health["status"]), (503, &json!("degraded")), "{hb}");
    assert!(
        health["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("locked")),
        "{hb}"
    );
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);

    // The refused events were never stored, so they are not duplicates.
    let (s, b) = post(&addr, &body("during-lock-0001")).unwrap();
    assert_eq!(s, 200, "retry after the lock: {b}");
    let (bs, bb) = post_to(&addr, "/ingest/batch", &resend).unwrap();
    let answer: Value = serde_json::from_str(&bb).unwrap();
    assert_eq!((bs, &answer["accepted"]), (200, &Value::from(15)), "{bb}");
    // Stored now, with the decisions made when they first came (the eighth
    // failure on host-bf was not allowed), and not correlated a second time.
    let last = &answer["results"][14];
    assert_eq!(
        last["correlation_reasons"],
        json!(["stored_after_failed_commit"]),
        "{bb}"
    );
    assert_ne!(last["final_decision"], "ALLOW", "{bb}");
    assert_eq!(post(&addr, &body("after-lock-0001")).unwrap().0, 200);
    // Two more failures make seven on host-near: still no alert. Counted
    // twice, the resent five would have made twelve.
    for i in 5..7 {
        let (s, b) = post(
            &addr,
            &fail(format!("near-{i:04}"), "host-near", "198.51.100.60"),
        )
        .unwrap();
        assert_eq!(s, 200, "{b}");
    }
    let (_, recent) = server.request("GET", "/alerts/recent?limit=50", &[], b"");
    let recent: Value = serde_json::from_str(&recent).unwrap();
    let hosts: Vec<&str> = recent["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["host"].as_str())
        .collect();
    assert_eq!(hosts, ["host-bf"], "{recent}");
    let (hs, hb) = server.request("GET", "/health", &[], b"");
    assert_eq!(
        (hs, hb.as_str()),
        (200, r#"{"service":"vigil","status":"ok"}"#)
    );
    // Keep the data dir past the server.
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let (stopped, log) = server.stop_and_log();
    assert!(stopped, "{log}");
    assert!(log.contains("commit failed"), "{log}");

    let db = rusqlite::Connection::open(dir.path().join("vigil.db")).unwrap();
    let ids: Vec<String> = db
        .prepare("SELECT event_id FROM events WHERE host = 'host-locked' ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        ids,
        [
            "before-lock-0001",
            "during-lock-0001",
            "during-lock-0002",
            "during-lock-0003",
            "after-lock-0001"
        ]
    );
    assert_eq!(common::stored_events(dir.path(), "host-near"), 7);
    assert_eq!(common::stored_events(dir.path(), "host-bf"), 8);
    // The alert and the ban of the failed group reached the store with the
    // next commit.
    let alerts: i64 = db
        .query_row(
            "SELECT count(*) FROM alerts WHERE host = 'host-bf' AND rule_id = 'BRUTE_FORCE_V1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let bans: i64 = db
        .query_row(
            "SELECT count(*) FROM ip_bans WHERE ip = '198.51.100.61'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((alerts, bans), (1, 1));
    // The audit trail says what each answer said: for the event refused
    // under the lock, its refusal, then one accept (the retry); the accept
    // record that went with the failed commit was dropped with it.
    assert_eq!(
        common::audit_trail(&dir.path().join("audit.jsonl"), "during-lock-0001"),
        [
            r#""gateway_reject" "store_unavailable""#,
            r#""gateway_accept" "ok""#
        ]
    );
    // The batch's two records: every line refused under the lock, then
    // every line taken when it came again.
    let batches: Vec<(u64, u64, Vec<String>)> =
        common::audit_records(&dir.path().join("audit.jsonl"))
            .into_iter()
            .filter(|r| r["type"] == "gateway_batch")
            .map(|r| {
                let mut reasons: Vec<String> = r["refusals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["reason"].as_str().unwrap().to_string())
                    .collect();
                reasons.dedup();
                (
                    r["accepted"].as_u64().unwrap(),
                    r["refused"].as_u64().unwrap(),
                    reasons,
                )
            })
            .collect();
    assert_eq!(
        batches,
        [
            (0, 15, vec!["store_unavailable".to_string()]),
            (15, 0, vec![])
        ]
    );
    common::assert_audit_verifies(&dir.path().join("audit.jsonl"));
}

/// `vigil serve` with admin routes on (token `admin-token-123`), after 8
/// failed logins on `host` from `ip` have banned it.
fn server_with_a_ban(ids: &str, host: &str, ip: &str) -> common::Server {
    let env = [
        ("ARES_SHARED_SECRET", SECRET),
        ("VIGIL_ADMIN_TOKEN", "admin-token-123"),
    ];
    let server = common::Server::start(&env);
    for i in 0..8 {
        let id = format!("{ids}-{i:04}");
        let (s, b) = post(&server.addr, &event(&id, host, "login_failed", ip)).unwrap();
        assert_eq!(s, 200, "{b}");
    }
    let (_, d) = server.request("GET", "/api/v1/decisions", &[], b"");
    assert!(d.contains(ip), "banned: {d}");
    server
}

/// An analyst's action whose commit fails is in force at once and says so
/// (503 `in_effect`), and reaches the store once it recovers, with no event
/// or other action to carry it (the engine retries once a second).
#[test]
fn an_admin_action_whose_commit_fails_is_in_force_and_stored_later() {
    let server = server_with_a_ban("admin-fail", "host-admin", "198.51.100.80");

    let db_path = server.dir.path().join("vigil.db");
    let locker = rusqlite::Connection::open(&db_path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (s, b) = server.request(
        "DELETE",
        "/bans/198.51.100.80",
        &[("Authorization", "Bearer admin-token-123")],
        br#"{"reason":"our scanner","by":"alice"}"#,
    );
    let answer: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (s, &answer["detail"], &answer["in_effect"]),
        (503, &json!("store_unavailable"), &json!(true)),
        "{b}"
    );
    let (_, d) = server.request("GET", "/api/v1/decisions", &[], b"");
    assert!(
        !d.contains("198.51.100.80"),
        "the ban is lifted in memory: {d}"
    );
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);

    // Nothing else is sent: the retry alone stores the unban and its row.
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let stored = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap_or(-1) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audited = stored("SELECT count(*) FROM audit WHERE action = 'unban_ip'");
        let banned = stored("SELECT count(*) FROM ip_bans WHERE ip = '198.51.100.80'");
        if (audited, banned) == (1, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not stored: audit rows {audited}, ban rows {banned}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (stopped, log, dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    // The gateway's audit trail says what the analyst was told.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let unban = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["type"] == "admin_action" && r["action"] == "unban_ip")
        .expect("the unban is audited");
    assert_eq!(unban["outcome"], "in_effect_not_stored", "{unban}");
}

/// The gateway refuses what it could not audit. Its audit log is
/// `/dev/full` here (every write fails with "no space left"): the event
/// whose accept record met the failure is stored and answered 200, its
/// record held; from then on events and admin actions get 503
/// `audit_unavailable` and are not taken, `/health` says why and how much
/// is held, and the stop says what is lost. (Writing the held records once
/// the file takes writes again is pinned in `store::audit_log`'s tests.)
#[test]
fn an_audit_log_that_refuses_writes_stops_ingestion_and_nothing_is_taken_unaudited() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("SKIP: no /dev/full to stand in for a full disk");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("audit.jsonl")).unwrap();
    let env = [
        ("ARES_SHARED_SECRET", SECRET),
        ("VIGIL_ADMIN_TOKEN", "admin-token-123"),
    ];
    let server = common::Server::start_in(dir, &env);
    let addr = server.addr.clone();
    let (s, b) = post(
        &addr,
        &event("audit-full-1", "host-af", "login_failed", "198.51.100.90"),
    )
    .unwrap();
    assert_eq!(s, 200, "stored before the audit write failed: {b}");
    let (s, b) = post(
        &addr,
        &event("audit-full-2", "host-af", "login_failed", "198.51.100.90"),
    )
    .unwrap();
    assert_eq!((s, b.as_str()), (503, r#"{"detail":"audit_unavailable"}"#));
    let batch = [
        event("audit-full-3", "host-af", "login_success", "198.51.100.91"),
        event("audit-full-4", "host-af", "login_success", "198.51.100.91"),
    ]
    .join(&b'\n');
    let (s, b) = post_to(&addr, "/ingest/batch", &batch).unwrap();
    assert_eq!((s, b.as_str()), (503, r#"{"detail":"audit_unavailable"}"#));
    // An unsigned request is still refused for what it is.
    let (s, _) = server.request("POST", "/ingest", &[], b"{}");
    assert_eq!(s, 401);
    let (s, b) = server.request(
        "POST",
        "/hosts/host-af/release",
        &[("Authorization", "Bearer admin-token-123")],
        br#"{"reason":"test","by":"alice"}"#,
    );
    assert_eq!((s, b.as_str()), (503, r#"{"detail":"audit_unavailable"}"#));

    let (s, b) = server.request("GET", "/health", &[], b"");
    let health: Value = serde_json::from_str(&b).unwrap();
    assert_eq!((s, &health["status"]), (503, &json!("degraded")), "{b}");
    let audit = &health["audit"];
    assert_eq!(audit["failing"], true, "{b}");
    assert!(
        audit["error"].as_str().unwrap().contains("No space left"),
        "{b}"
    );
    // The accept, two refused events, the unsigned request, the admin refusal.
    assert_eq!(audit["records_held"], 5, "{b}");
    assert_eq!(audit["records_lost"], 0, "{b}");

    let (stopped, log, dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    assert!(
        log.contains("audit log: 5 records could not be written and are lost with this stop"),
        "{log}"
    );
    // Only the first event was taken.
    let db = rusqlite::Connection::open(dir.path().join("vigil.db")).unwrap();
    let ids: Vec<String> = db
        .prepare("SELECT event_id FROM events ORDER BY event_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, ["audit-full-1"]);
}

/// An analyst's action whose commits keep failing until vigil stops is
/// named in the log at stop (it is in force only in memory, and a restart
/// undoes it), not dropped silently.
#[test]
fn writes_never_stored_by_the_stop_are_named_in_the_log() {
    let server = server_with_a_ban("stop-fail", "host-stop", "198.51.100.81");
    let locker = rusqlite::Connection::open(server.dir.path().join("vigil.db")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (s, b) = server.request(
        "DELETE",
        "/bans/198.51.100.81",
        &[("Authorization", "Bearer admin-token-123")],
        br#"{"reason":"our scanner","by":"alice"}"#,
    );
    assert_eq!(s, 503, "{b}");
    assert!(b.contains("\"in_effect\":true"), "{b}");
    // Stopped with the lock still held: the last retry fails too.
    let (stopped, log) = server.stop_and_log();
    drop(locker);
    assert!(stopped, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("stopping with writes the store never took"))
        .unwrap_or_else(|| panic!("no such line: {log}"));
    eprintln!("{line}");
    assert!(line.contains("1 ban changes"), "{line}");
    assert!(
        line.contains("analyst actions: unban_ip 198.51.100.81 by alice"),
        "{line}"
    );
}

/// Unmounts (lazily) when dropped, so a failing test leaves no mount.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A real full disk under `vigil serve`, then room again: every event
/// answered 200 is in the store and has its accept record, the audit chain
/// verifies, and the gateway took events again by itself. Needs a tmpfs it
/// can mount (root); skipped with a note otherwise.
#[test]
fn a_full_disk_and_its_recovery_lose_no_acknowledged_event_or_record() {
    let outer = tempfile::tempdir().unwrap();
    let mp = outer.path().join("fs");
    std::fs::create_dir(&mp).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mp)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIP: cannot mount a tmpfs here (needs root) to fill a disk");
        return;
    }
    let _mount = Mount(mp.clone());
    let server = common::Server::start_in(
        tempfile::tempdir_in(&mp).unwrap(),
        &[("ARES_SHARED_SECRET", SECRET)],
    );
    let addr = server.addr.clone();
    let mut acked = std::collections::BTreeSet::new();
    let mut refused = std::collections::BTreeMap::<String, u32>::new();
    let mut n = 0;
    let mut send = |acked: &mut std::collections::BTreeSet<String>| {
        n += 1;
        let id = format!("full-{n:06}");
        let host = format!("full-host-{}", n % 20);
        let (s, b) = post(&addr, &event(&id, &host, "login_success", "192.0.2.7")).unwrap();
        if s == 200 {
            acked.insert(id);
        } else {
            let reason = serde_json::from_str::<Value>(&b)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_string))
                .unwrap_or(b);
            *refused.entry(format!("{s} {reason}")).or_default() += 1;
        }
        s
    };
    for _ in 0..50 {
        assert_eq!(send(&mut acked), 200);
    }
    // Fill the disk to the last byte.
    let filler = mp.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let one = [0u8; 1];
        while f.write_all(&one).is_ok() {}
    }
    let mut failed = 0;
    for _ in 0..300 {
        if send(&mut acked) != 200 {
            failed += 1;
        }
    }
    assert!(failed > 0, "a full disk refused nothing: {refused:?}");
    std::fs::remove_file(&filler).unwrap();
    // Room again: the gateway takes events by itself (the audit log's
    // back-off is at most 4 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while send(&mut acked) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {refused:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for _ in 0..50 {
        assert_eq!(send(&mut acked), 200, "{refused:?}");
    }
    let (stopped, log, dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    let data = dir.path();

    let db = rusqlite::Connection::open(data.join("vigil.db")).unwrap();
    let stored: std::collections::BTreeSet<String> = db
        .prepare("SELECT event_id FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let audit = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let accepted: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|r| r["type"] == "gateway_accept")
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    eprintln!(
        "full disk: {} acknowledged, {} stored, {} accept records; refused {refused:?}; \
         audit_resumed records: {}",
        acked.len(),
        stored.len(),
        accepted.len(),
        records
            .iter()
            .filter(|r| r["type"] == "audit_resumed")
            .count()
    );
    assert!(acked.is_subset(&stored), "acknowledged but not stored");
    assert_eq!(
        accepted, acked,
        "accept records are exactly the acknowledged events"
    );
    common::assert_audit_verifies(&data.join("audit.jsonl"));
}

/// A stop between commits and their accept records: at the next start the
/// events the gateway stored that no accept record names get one
/// (`gateway_accept_recovered`), in the order stored, naming none the log
/// already had and none vigil read itself; the chain verifies, `vigil
/// audit event` shows it, and a further start writes nothing more. Records
/// are not in commit order (a batch appends its own after its commit, the
/// writer a group's of single events), so the log here, as a kill can leave
/// it, lacks a batch's record while a later event's is there.
#[test]
fn accept_records_a_crash_lost_are_written_at_the_next_start() {
    let env = [
        ("ARES_SHARED_SECRET", SECRET),
        ("SEC_RATE_LIMIT_PER_MIN", "1000000"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let tailed = dir.path().join("auth.log");
    std::fs::write(&tailed, "").unwrap();
    let tail_arg = tailed.to_str().unwrap().to_string();
    let server = common::Server::start_with(dir, &env, &["--tail", &tail_arg]);
    let addr = server.addr.clone();
    let single = |id: &str| {
        let (status, body) =
            post(&addr, &event(id, "host-rec", "login_success", "192.0.2.1")).unwrap();
        assert_eq!(status, 200, "{body}");
    };
    let singles: Vec<String> = (0..4).map(|i| format!("rec-single-{i:04}")).collect();
    single(&singles[0]);
    single(&singles[1]);
    let batch: Vec<String> = (0..3).map(|i| format!("rec-batch-{i:04}")).collect();
    let body: Vec<u8> = batch
        .iter()
        .map(|id| event(id, "host-rec", "login_success", "192.0.2.2"))
        .collect::<Vec<_>>()
        .join(&b'\n');
    let (status, answer) = post_to(&addr, "/ingest/batch", &body).unwrap();
    assert_eq!(status, 200, "{answer}");
    single(&singles[2]);
    single(&singles[3]);
    // A line vigil reads itself, stored after them: no accept record is due.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&tailed)
        .unwrap()
        .write_all(b"Nov 22 10:00:00 tailhost sshd[1]: Failed password for root from 198.51.100.9 port 22 ssh2\n")
        .unwrap();
    common::wait_for_stored(server.dir.path(), "tailhost", 1, "the tailed line");
    let (ok, _, dir) = server.stop_keeping_data();
    assert!(ok);

    // The log as a kill leaves it after the third single event's record
    // and before the batch's (and the fourth's): the batch's record taken
    // out, the records after it chained anew, the rest cut off.
    let audit = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |pred: &dyn Fn(&str) -> bool| lines.iter().position(|l| pred(l)).unwrap();
    let batch_at = at(&|l| l.starts_with(r#"{"type":"gateway_batch","#));
    let third_at =
        at(&|l| l.starts_with(r#"{"type":"gateway_accept","#) && l.contains(&singles[2]));
    assert!(batch_at < third_at);
    let mut kept: Vec<String> = lines[..batch_at].iter().map(|l| l.to_string()).collect();
    for l in &lines[batch_at + 1..=third_at] {
        let prev = vigil::store::audit_log::sha256_hex(kept.last().unwrap().as_bytes());
        let cut = l.rfind(r#""prev":""#).unwrap() + r#""prev":""#.len();
        kept.push(format!("{}{prev}{}", &l[..cut], &l[cut + 64..]));
    }
    std::fs::write(&audit, kept.join("\n") + "\n").unwrap();
    common::assert_audit_verifies(&audit);

    let recovered = |audit: &std::path::Path| -> Vec<Value> {
        common::audit_records(audit)
            .into_iter()
            .filter(|r| r["type"] == "gateway_accept_recovered")
            .collect()
    };
    let server = common::Server::start_with(dir, &env, &["--tail", &tail_arg]);
    let records = recovered(&audit);
    assert_eq!(records.len(), 1, "{records:?}");
    let named: Vec<&str> = records[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = batch
        .iter()
        .chain(&singles[3..])
        .map(String::as_str)
        .collect();
    assert_eq!(named, want);
    assert_eq!(records[0]["count"], 4);
    assert_eq!(records[0]["events"][0]["host"], "host-rec");
    common::assert_audit_verifies(&audit);
    let (found, out, err) = common::audit_event(&audit, &batch[1]);
    assert!(found, "{err}");
    assert!(out.contains("accepted, recorded at start"), "{out}");
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok);
    assert!(
        log.contains("4 events the gateway stored had no accept record"),
        "{log}"
    );

    // Nothing more at the next start.
    let server = common::Server::start_with(dir, &env, &["--tail", &tail_arg]);
    assert_eq!(recovered(&audit).len(), 1);
    assert!(server.stop());
}

/// A log whose older files are gone (here: started anew after the events)
/// holds no record of events received before its first: vigil cannot tell
/// whether they had one, so it writes none for them, and says so.
#[test]
fn events_older_than_the_log_are_not_taken_for_lost_records() {
    let env = [
        ("ARES_SHARED_SECRET", SECRET),
        ("SEC_RATE_LIMIT_PER_MIN", "1000000"),
    ];
    let server = common::Server::start(&env);
    for i in 0..3 {
        let id = format!("old-event-{i:04}");
        let (status, body) = post(
            &server.addr,
            &event(&id, "host-old", "login_success", "192.0.2.1"),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (ok, _, dir) = server.stop_keeping_data();
    assert!(ok);
    let audit = dir.path().join("audit.jsonl");
    let later = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    let first = json!({"type": "gateway_reject", "ts": later, "path": "/ingest",
        "verification_reason": "missing_signature",
        "prev": vigil::store::audit_log::GENESIS});
    std::fs::write(&audit, format!("{first}\n")).unwrap();
    let server = common::Server::start_in(dir, &env);
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok);
    let records = common::audit_records(&dir.path().join("audit.jsonl"));
    assert!(
        records
            .iter()
            .all(|r| r["type"] != "gateway_accept_recovered"),
        "{records:?}"
    );
    assert!(
        log.contains("audit log: 3 of the newest events the gateway stored were received before the oldest record"),
        "{log}"
    );
}

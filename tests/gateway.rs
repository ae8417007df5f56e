//! `vigil serve` over real HTTP on an ephemeral port, through the MiniSIEM
//! seed client's whole sequence: every answer has the seed's status code and
//! reason string.

mod common;

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use vigil::sources::gateway::sign;

const SECRET: &str = "dev-secret-change-me";

fn event(id: &str, host: &str, action: &str, user: Option<&str>, src_ip: Option<&str>) -> Value {
    common::wire_event(id, host, action, user, src_ip)
}

struct Client {
    server: common::Server,
    n: std::cell::Cell<u64>,
}

impl Client {
    fn post_raw(&self, body: &[u8], sig: Option<String>) -> (u16, Value) {
        self.post_raw_to("/ingest", body, sig)
    }

    fn post_raw_to(&self, path: &str, body: &[u8], sig: Option<String>) -> (u16, Value) {
        let mut headers = vec![("Content-Type", "application/json")];
        let sig_s;
        if let Some(s) = sig {
            sig_s = s;
            headers.push(("X-ARES-SIGNATURE", sig_s.as_str()));
        }
        let (status, body) = self.server.request("POST", path, &headers, body);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn post(&self, e: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(e).unwrap();
        self.post_raw(&body, Some(sign(SECRET.as_bytes(), &body)))
    }

    fn id(&self) -> String {
        self.n.set(self.n.get() + 1);
        format!("evt-{:08}", self.n.get())
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.server.request("GET", path, &[], b"");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

fn reasons(v: &Value) -> Vec<String> {
    v["correlation"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn seed_client_sequence_gets_the_seeds_answers() {
    let server = common::Server::start(&[
        ("ARES_SHARED_SECRET", SECRET),
        ("SEC_RATE_LIMIT_PER_MIN", "100"),
        ("SEC_COOLDOWN_SECONDS", "10"),
    ]);
    let c = Client {
        server,
        n: 0.into(),
    };
    assert_eq!(c.get("/health").0, 200);

    // 1) valid event
    let first_id = c.id();
    let (s, v) = c.post(&event(
        &first_id,
        "host-1",
        "login_failed",
        Some("alice"),
        Some("10.0.0.5"),
    ));
    assert_eq!(s, 200, "{v}");
    for key in [
        "accepted",
        "event_id",
        "gateway_reason",
        "correlation",
        "policy",
        "final_decision",
    ] {
        assert!(!v[key].is_null(), "missing {key}: {v}");
    }
    assert_eq!(
        (
            v["accepted"].clone(),
            v["gateway_reason"].clone(),
            v["final_decision"].clone()
        ),
        (json!(true), json!("ok"), json!("ALLOW"))
    );

    // 2) tampered signature, missing signature, signature without sha256=
    let body = serde_json::to_vec(&event(
        &c.id(),
        "host-1",
        "login_failed",
        Some("alice"),
        None,
    ))
    .unwrap();
    let good = sign(SECRET.as_bytes(), &body);
    let hex = &good[7..];
    let flipped = if hex.starts_with('0') { "1" } else { "0" };
    let tampered = format!("sha256={flipped}{}", &hex[1..]);
    assert_eq!(
        c.post_raw(&body, Some(tampered)),
        (401, json!({"detail": "signature_mismatch"}))
    );
    assert_eq!(
        c.post_raw(&body, None),
        (401, json!({"detail": "missing_signature"}))
    );
    assert_eq!(
        c.post_raw(&body, Some(good[7..].to_string())),
        (401, json!({"detail": "bad_signature_format"}))
    );

    // 3) stale timestamp
    let mut stale = event(&c.id(), "host-1", "login_failed", Some("alice"), None);
    stale["timestamp_utc"] = json!((Utc::now() - Duration::seconds(9999)).to_rfc3339());
    assert_eq!(
        c.post(&stale),
        (400, json!({"detail": "replay_window_exceeded"}))
    );

    // 4) duplicate event_id
    assert_eq!(
        c.post(&event(
            &first_id,
            "host-1",
            "login_failed",
            Some("alice"),
            None
        )),
        (409, json!({"detail": "duplicate_event_id"}))
    );

    // broken JSON, schema violations
    let junk = b"{not json".to_vec();
    assert_eq!(
        c.post_raw(&junk, Some(sign(SECRET.as_bytes(), &junk))),
        (400, json!({"detail": "invalid_json"}))
    );
    for bad in [
        {
            let mut e = event(&c.id(), "host-1", "x", None, None);
            e["severity"] = json!(11);
            e
        },
        {
            let mut e = event(&c.id(), "host-1", "x", None, None);
            e["unexpected"] = json!(1);
            e
        },
        {
            let mut e = event(&c.id(), "host-1", "x", None, None);
            e["timestamp_utc"] = json!(
                Utc::now()
                    .naive_utc()
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string()
            );
            e
        },
    ] {
        let (s, v) = c.post(&bad);
        assert_eq!(
            (s, v["detail"].clone()),
            (400, json!("schema_validation_failed")),
            "{bad}"
        );
    }

    // 5) rate-limit burst (per host)
    let mut limited_at = None;
    for i in 0..150 {
        let refused = event(&c.id(), "host-ratelimit", "proc_start", None, None);
        let (s, v) = c.post(&refused);
        if s == 429 {
            assert_eq!(v, json!({"detail": "rate_limited"}));
            limited_at = Some(i + 1);
            // A refused event's id is not remembered: sent again it is
            // judged again (still limited), not called a duplicate.
            let (s, v) = c.post(&refused);
            assert_eq!((s, v), (429, json!({"detail": "rate_limited"})));
            break;
        }
        assert_eq!(s, 200);
    }
    assert_eq!(
        limited_at,
        Some(101),
        "the 101st event in a minute is refused"
    );

    // 6) brute force: 8 failed logins for one user on one host
    let mut last = Value::Null;
    for _ in 0..8 {
        let (s, v) = c.post(&event(
            &c.id(),
            "host-bruteforce",
            "login_failed",
            Some("alice"),
            Some("10.0.0.5"),
        ));
        assert_eq!(s, 200);
        last = v;
    }
    assert!(
        reasons(&last).contains(&"brute_force_suspected".to_string()),
        "{last}"
    );
    assert_eq!(last["correlation"]["decision"], "THROTTLE");
    assert_eq!(
        last["policy"]["reasons"],
        json!(["suspicious_cooldown_set"])
    );
    // 7) post-detection suppression
    let (_, v) = c.post(&event(
        &c.id(),
        "host-bruteforce",
        "login_failed",
        Some("alice"),
        Some("10.0.0.5"),
    ));
    assert_eq!(
        (
            v["policy"]["decision"].clone(),
            v["policy"]["reasons"].clone()
        ),
        (json!("BLOCK"), json!(["cooldown_active"]))
    );

    // 8) ingest storm
    let mut storm_seen = None;
    for i in 0..60 {
        let (s, v) = c.post(&event(&c.id(), "host-storm", "proc_start", None, None));
        assert_eq!(s, 200);
        if storm_seen.is_none() && reasons(&v).contains(&"ingest_storm".to_string()) {
            storm_seen = Some(i + 1);
        }
    }
    assert_eq!(storm_seen, Some(51), "more than 50 events in 30 s");

    // 9) password spray: 12 failures cycling 7 users from one address
    let users = ["alice", "bob", "charlie", "dana", "eve", "frank", "grace"];
    let mut spray_at = None;
    for i in 0..12 {
        let (_, v) = c.post(&event(
            &c.id(),
            "host-spray",
            "login_failed",
            Some(users[i % 7]),
            Some("203.0.113.9"),
        ));
        if spray_at.is_none() && reasons(&v).contains(&"password_spray_suspected".to_string()) {
            spray_at = Some(i + 1);
            assert_eq!(v["correlation"]["context"]["spray_unique_users"], 7);
        }
    }
    assert_eq!(spray_at, Some(8));

    // 10) success after failures
    for _ in 0..6 {
        c.post(&event(
            &c.id(),
            "host-success",
            "login_failed",
            Some("alice"),
            Some("198.51.100.10"),
        ));
    }
    let (s, v) = c.post(&event(
        &c.id(),
        "host-success",
        "login_success",
        Some("alice"),
        Some("198.51.100.10"),
    ));
    assert_eq!(s, 200);
    assert!(
        reasons(&v).contains(&"success_after_failures".to_string()),
        "{v}"
    );

    // Then /alerts/recent and /hosts/{host}/state
    let (s, v) = c.get("/alerts/recent?limit=10");
    assert_eq!(s, 200);
    let rules: Vec<&str> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule_id"].as_str().unwrap())
        .collect();
    // Scores read as the alert has them (f32), not widened to f64 digits.
    let brute = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule_id"] == "BRUTE_FORCE_V1")
        .unwrap();
    assert_eq!(brute["risk_score"].to_string(), "0.525", "{brute}");
    assert_eq!(brute["confidence"].to_string(), "0.75", "{brute}");
    for r in [
        "BRUTE_FORCE_V1",
        "INGEST_STORM_V1",
        "PASSWORD_SPRAY_V1",
        "SUCCESS_AFTER_FAILURES_V1",
    ] {
        assert!(rules.contains(&r), "{r} missing from {rules:?}");
    }
    let (s, v) = c.get("/hosts/host-bruteforce/state");
    assert_eq!(s, 200);
    assert_eq!(v["host"], "host-bruteforce");
    assert!(!v["cooldown_until_utc"].is_null());
    assert_eq!(v["quarantine"], false);
    assert_eq!(c.get("/alerts/recent?limit=0").0, 200);

    // Every accept and reject is in the audit chain, and it verifies.
    let audit = c.server.dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(text.lines().count() >= 190, "one audit record per request");
    assert!(text.contains("\"verification_reason\":\"signature_mismatch\""));
    // The first event's id: accepted once, then refused as a duplicate
    // (no accept record for the refusal).
    assert_eq!(
        common::audit_trail(&audit, &first_id),
        [
            r#""gateway_accept" "ok""#,
            r#""gateway_reject" "duplicate_event_id""#
        ]
    );
    // `vigil audit event` tells the same, record by record.
    let (ok, said, _) = common::audit_event(&audit, &first_id);
    assert!(ok, "{said}");
    let told: Vec<&str> = said
        .lines()
        .map(|l| l.split_once(" /ingest from ").unwrap().1)
        .collect();
    assert_eq!(told.len(), 2, "{said}");
    assert!(
        told[0].ends_with(": accepted (host host-1, source auth)"),
        "{said}"
    );
    assert!(
        told[1].ends_with(": refused, duplicate_event_id (host host-1, source auth)"),
        "{said}"
    );
    // The rate-limited ones: refused, never accepted.
    let records = common::audit_records(&audit);
    let limited: Vec<&Value> = records
        .iter()
        .filter(|r| r["verification_reason"] == "rate_limited")
        .map(|r| &r["event_id"])
        .collect();
    assert!(!limited.is_empty());
    for id in limited {
        assert!(
            !records
                .iter()
                .any(|r| r["type"] == "gateway_accept" && &r["event_id"] == id),
            "{id} was refused (429) yet has an accept record"
        );
    }
    common::assert_audit_verifies(&audit);
    assert!(c.server.stop(), "graceful shutdown exits 0");
}

#[test]
fn idempotency_and_host_state_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("ARES_SHARED_SECRET", SECRET)];
    let server = common::Server::start_in(dir, &env);
    let c = Client {
        server,
        n: 0.into(),
    };
    let ids: Vec<String> = (0..9).map(|_| c.id()).collect();
    for id in &ids {
        assert_eq!(
            c.post(&event(
                id,
                "host-r",
                "login_failed",
                Some("root"),
                Some("10.9.9.9")
            ))
            .0,
            200
        );
    }
    // A second alert, on another host, after the first.
    for _ in 0..8 {
        let id = c.id();
        let answer = c.post(&event(
            &id,
            "host-s",
            "login_failed",
            Some("root"),
            Some("10.9.9.8"),
        ));
        assert_eq!(answer.0, 200, "{answer:?}");
    }
    let (_, before) = c.get("/hosts/host-r/state");
    assert!(!before["cooldown_until_utc"].is_null());
    let (_, alerts_before) = c.get("/alerts/recent?limit=10");
    let hosts = |v: &serde_json::Value| -> Vec<String> {
        v["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["host"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        hosts(&alerts_before),
        ["host-r", "host-s"],
        "{alerts_before}"
    );
    let Client { server, .. } = c;
    let dir = {
        let mut s = server;
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(s.child.id().to_string())
            .status();
        assert!(s.child.wait().unwrap().success());
        std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap())
    };
    let server = common::Server::start_in(dir, &env);
    let c = Client {
        server,
        n: 100.into(),
    };
    assert_eq!(
        c.post(&event(
            &ids[0],
            "host-r",
            "login_failed",
            Some("root"),
            None
        )),
        (409, json!({"detail": "duplicate_event_id"}))
    );
    let (_, after) = c.get("/hosts/host-r/state");
    assert_eq!(after["cooldown_until_utc"], before["cooldown_until_utc"]);
    // The alert the seed would still list (its alerts.jsonl outlives it).
    let (_, alerts_after) = c.get("/alerts/recent?limit=10");
    assert_eq!(
        alerts_after["alerts"][0]["alert_id"], alerts_before["alerts"][0]["alert_id"],
        "{alerts_after}"
    );
    // Oldest first after the restart too.
    assert_eq!(hosts(&alerts_after), ["host-r", "host-s"], "{alerts_after}");
    assert_eq!(alerts_after["alerts"][0]["rule_id"], "BRUTE_FORCE_V1");
}

#[test]
fn serve_refuses_to_run_open() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::vigil()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("ARES_SHARED_SECRET")
        .env_remove("VIGIL_SHARED_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no shared secret configured"));
}

#[test]
fn oversized_body_is_413() {
    let server = common::Server::start(&[("ARES_SHARED_SECRET", SECRET)]);
    let body = vec![b'x'; 2 * 1024 * 1024];
    let sig = sign(SECRET.as_bytes(), &body);
    let (status, answer) = server.request("POST", "/ingest", &[("X-ARES-SIGNATURE", &sig)], &body);
    assert_eq!(status, 413);
    // The body is read and thrown away after the answer, so the client
    // sending it sees the answer, not a reset.
    assert_eq!(answer, r#"{"detail":"body_too_large"}"#);
}

#[test]
fn quarantine_release_and_unban_are_token_guarded_and_audited() {
    let server = common::Server::start(&[
        ("ARES_SHARED_SECRET", SECRET),
        ("VIGIL_ADMIN_TOKEN", "admin-token-123"),
    ]);
    let c = Client {
        server,
        n: 0.into(),
    };
    // 43 events, then 8 failures: the 51st event is both a storm and a brute force.
    for _ in 0..43 {
        assert_eq!(
            c.post(&event(&c.id(), "host-q", "proc_start", None, None))
                .0,
            200
        );
    }
    let mut last = Value::Null;
    for _ in 0..8 {
        last = c
            .post(&event(
                &c.id(),
                "host-q",
                "login_failed",
                Some("root"),
                Some("203.0.113.66"),
            ))
            .1;
    }
    assert_eq!(
        last["policy"]["reasons"],
        json!(["quarantine_activated"]),
        "{last}"
    );
    assert_eq!(c.get("/hosts/host-q/state").1["quarantine"], true);
    let (s, d) = c.get("/api/v1/decisions");
    assert_eq!(s, 200);
    assert_eq!(d["quarantined_hosts"][0][0], "host-q");
    assert_eq!(d["bans"][0]["ip"], "203.0.113.66");

    let body = br#"{"reason":"owner confirmed the logins","by":"alice"}"#;
    let (s, _) = c.server.request(
        "POST",
        "/hosts/host-q/release",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(s, 401, "no token");
    let (s, _) = c.server.request(
        "POST",
        "/hosts/host-q/release",
        &[("Authorization", "Bearer wrong")],
        body,
    );
    assert_eq!(s, 401, "wrong token");
    let (s, v) = c.server.request(
        "POST",
        "/hosts/host-q/release",
        &[("Authorization", "Bearer admin-token-123")],
        b"{}",
    );
    assert_eq!(s, 400, "reason and by are required: {v}");
    let (s, v) = c.server.request(
        "POST",
        "/hosts/host-q/release",
        &[("Authorization", "Bearer admin-token-123")],
        body,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(c.get("/hosts/host-q/state").1["quarantine"], false);
    let (s, v) = c.server.request(
        "POST",
        "/hosts/host-q/release",
        &[("Authorization", "Bearer admin-token-123")],
        body,
    );
    assert_eq!(s, 409, "released already: {v}");
    assert!(
        v.contains("host host-q is neither quarantined nor in a cooldown"),
        "{v}"
    );
    // A host in a cooldown alone (success after failures throttles it) is
    // released too: the console lists it beside the quarantined ones.
    for _ in 0..6 {
        c.post(&event(
            &c.id(),
            "host-c",
            "login_failed",
            Some("alice"),
            Some("198.51.100.10"),
        ));
    }
    let (_, v) = c.post(&event(
        &c.id(),
        "host-c",
        "login_success",
        Some("alice"),
        Some("198.51.100.10"),
    ));
    assert_eq!(
        v["policy"]["reasons"],
        json!(["suspicious_cooldown_set"]),
        "{v}"
    );
    let st = c.get("/hosts/host-c/state").1;
    assert_eq!(st["quarantine"], false);
    assert!(st["cooldown_until_utc"].is_string(), "{st}");
    let (s, v) = c.server.request(
        "POST",
        "/hosts/host-c/release",
        &[("Authorization", "Bearer admin-token-123")],
        br#"{"reason":"alice back from holiday, typed her old password","by":"bob"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert!(c.get("/hosts/host-c/state").1["cooldown_until_utc"].is_null());
    let (_, v) = c.post(&event(&c.id(), "host-c", "proc_start", None, None));
    assert_eq!(v["policy"]["reasons"], json!(["ok"]), "{v}");
    let (s, _) = c.server.request(
        "DELETE",
        "/bans/203.0.113.66",
        &[("Authorization", "Bearer admin-token-123")],
        body,
    );
    assert_eq!(s, 200);
    assert_eq!(c.get("/api/v1/decisions").1["bans"], json!([]));

    let audit = std::fs::read_to_string(c.server.dir.path().join("audit.jsonl")).unwrap();
    let admin: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] == "admin_action")
        .collect();
    let seen: Vec<(String, String, String)> = admin
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().into(),
                r["by"].as_str().unwrap().into(),
                r["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        seen.contains(&("release_host".into(), "alice".into(), "ok".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("unban_ip".into(), "alice".into(), "ok".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("release_host".into(), "bob".into(), "ok".into())),
        "{seen:?}"
    );
    assert!(seen.iter().filter(|s| s.2 == "unauthorised").count() >= 2);
}

#[test]
fn admin_routes_are_off_without_a_token() {
    let server = common::Server::start(&[("ARES_SHARED_SECRET", SECRET)]);
    let (s, v) = server.request(
        "POST",
        "/hosts/h/release",
        &[("Authorization", "Bearer x")],
        br#"{"reason":"r","by":"b"}"#,
    );
    assert_eq!((s, v.contains("admin_disabled")), (403, true));
}

#[test]
fn batch_answers_per_line_and_keeps_order() {
    let server = common::Server::start(&[
        ("ARES_SHARED_SECRET", SECRET),
        ("SEC_RATE_LIMIT_PER_MIN", "1000"),
    ]);
    let c = Client {
        server,
        n: 0.into(),
    };
    let post_batch = |body: &[u8], sig| c.post_raw_to("/ingest/batch", body, sig);

    // Six failures then a success from one IP against one host, in order:
    // the success must see the failures before it (success-after-failures).
    let mut lines = Vec::new();
    for _ in 0..6 {
        lines.push(event(
            &c.id(),
            "host-batch",
            "login_failed",
            Some("root"),
            Some("203.0.113.9"),
        ));
    }
    lines.push(event(
        &c.id(),
        "host-batch",
        "login_success",
        Some("root"),
        Some("203.0.113.9"),
    ));
    let dup_id = lines[0]["event_id"].as_str().unwrap().to_string();
    let mut stale = event(&c.id(), "host-batch", "login_failed", Some("bob"), None);
    stale["timestamp_utc"] = json!((Utc::now() - Duration::hours(2)).to_rfc3339());
    let mut body = Vec::new();
    for l in &lines {
        body.extend(serde_json::to_vec(l).unwrap());
        body.push(b'\n');
    }
    body.extend(b"{not json\n\n");
    body.extend(serde_json::to_vec(&stale).unwrap());
    body.push(b'\n');
    body.extend(
        serde_json::to_vec(&event(&dup_id, "host-batch", "login_failed", None, None)).unwrap(),
    );

    // Unsigned or tampered batches are refused whole.
    assert_eq!(
        post_batch(&body, None),
        (401, json!({"detail": "missing_signature"}))
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        post_batch(&tampered, Some(sign(SECRET.as_bytes(), &body))),
        (401, json!({"detail": "signature_mismatch"}))
    );

    let (s, v) = post_batch(&body, Some(sign(SECRET.as_bytes(), &body)));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["accepted"].clone(), v["rejected"].clone()),
        (json!(7), json!(3)),
        "{v}"
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        10,
        "blank lines are skipped, every other line answered"
    );
    let statuses: Vec<(u64, u64)> = results
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (1, 200),
            (2, 200),
            (3, 200),
            (4, 200),
            (5, 200),
            (6, 200),
            (7, 200),
            (8, 400),
            (9, 400),
            (10, 409)
        ]
    );
    assert_eq!(results[7]["detail"], "invalid_json");
    assert_eq!(results[8]["detail"], "replay_window_exceeded");
    assert_eq!(results[9]["detail"], "duplicate_event_id");
    let last_reasons: Vec<&str> = results[6]["correlation_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        last_reasons
            .iter()
            .any(|r| r.contains("success_after_failures")),
        "the success came after the failures: {last_reasons:?}"
    );

    // Re-sending the same batch is idempotent: nothing new accepted.
    let (s, v) = post_batch(&body, Some(sign(SECRET.as_bytes(), &body)));
    assert_eq!(s, 200);
    assert_eq!(v["accepted"], 0, "{v}");

    // Each signed batch is one audit record holding every line's outcome;
    // the chain verifies.
    let audit = c.server.dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        text.lines().count(),
        2 + 1 + 1,
        "two whole-batch rejects, then one record per signed batch"
    );
    let sent: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let raw = text.lines().nth(2).unwrap();
    let r: Value = serde_json::from_str(raw).unwrap();
    let want = [
        "type",
        "ts",
        "path",
        "client_ip",
        "verification_status",
        "verification_reason",
        "body_sha256",
        "key_id",
        "lines",
        "accepted",
        "refused",
        "events",
        "refusals",
        "prev",
    ];
    // Exactly these keys, in this order.
    assert_eq!(r.as_object().unwrap().len(), want.len(), "{raw}");
    let at: Vec<usize> = want
        .iter()
        .map(|k| raw.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{raw}");
    assert_eq!(
        (
            &r["type"],
            &r["path"],
            &r["verification_status"],
            &r["verification_reason"],
            &r["key_id"]
        ),
        (
            &json!("gateway_batch"),
            &json!("/ingest/batch"),
            &json!("pass"),
            &json!("ok"),
            &json!("default")
        )
    );
    assert_eq!(r["body_sha256"], vigil::store::audit_log::sha256_hex(&body));
    assert_eq!(
        (&r["lines"], &r["accepted"], &r["refused"]),
        (&json!(10), &json!(7), &json!(3))
    );
    // The accepted lines in order, each naming its event.
    let events = r["events"].as_array().unwrap();
    assert_eq!(events.len(), 7);
    for (e, line) in events.iter().zip(1..) {
        let ev: Value = serde_json::from_slice(sent[line - 1]).unwrap();
        assert_eq!(
            e,
            &json!({"line": line, "event_id": ev["event_id"], "host": ev["host"], "source": ev["source"]})
        );
    }
    // The refused lines in order: why, the line's own hash, and the event
    // when the line held one.
    let sha = |line: usize| vigil::store::audit_log::sha256_hex(sent[line - 1]);
    let named = |line: usize, reason: &str| {
        let ev: Value = serde_json::from_slice(sent[line - 1]).unwrap();
        json!({"line": line, "reason": reason, "line_sha256": sha(line),
               "event_id": ev["event_id"], "host": ev["host"], "source": ev["source"]})
    };
    assert_eq!(
        r["refusals"],
        json!([
            {"line": 8, "reason": "invalid_json", "line_sha256": sha(8)},
            named(9, "replay_window_exceeded"),
            named(10, "duplicate_event_id"),
        ])
    );
    // The same batch again: nothing accepted, every line refused.
    let again: Value = serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
    assert_eq!(
        (&again["accepted"], &again["refused"], &again["events"]),
        (&json!(0), &json!(10), &json!([]))
    );
    let reasons: Vec<&str> = again["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "duplicate_event_id",
            "duplicate_event_id",
            "duplicate_event_id",
            "duplicate_event_id",
            "duplicate_event_id",
            "duplicate_event_id",
            "duplicate_event_id",
            "invalid_json",
            "replay_window_exceeded",
            "duplicate_event_id"
        ]
    );
    // `vigil audit event` tells where each record names an event: the
    // first line's id was accepted at line 1, refused at line 10 (its
    // duplicate), and refused twice when the batch came again.
    let (ok, said, err) = common::audit_event(&audit, &dup_id);
    assert!(ok, "{said}{err}");
    let told: Vec<String> = said
        .lines()
        .map(|l| {
            l.split_once(" /ingest/batch ")
                .map_or(l, |(_, rest)| rest)
                .to_string()
        })
        .collect();
    let file_lines: Vec<&str> = said.lines().map(|l| &l[..l.find(": ").unwrap()]).collect();
    let (first, again) = (
        format!("{} line 3", audit.display()),
        format!("{} line 4", audit.display()),
    );
    assert_eq!(file_lines, [&first, &first, &again, &again]);
    assert_eq!(
        told,
        [
            "(line 1 of 10) from 127.0.0.1, key default: accepted (host host-batch, source auth)",
            "(line 10 of 10) from 127.0.0.1, key default: refused, duplicate_event_id (host host-batch, source auth)",
            "(line 1 of 10) from 127.0.0.1, key default: refused, duplicate_event_id (host host-batch, source auth)",
            "(line 10 of 10) from 127.0.0.1, key default: refused, duplicate_event_id (host host-batch, source auth)",
        ]
    );
    let (ok, _, err) = common::audit_event(&audit, "never-sent-0001");
    assert!(!ok);
    assert!(
        err.contains("no audit record names event never-sent-0001 in")
            && err.contains("(1 file read)"),
        "{err}"
    );
    common::assert_audit_verifies(&audit);
    // The stop summary counts the same decisions, line by line.
    let (ok, log) = c.server.stop_and_log();
    assert!(ok, "{log}");
    assert!(
        log.contains(
            "gateway: 7 accepted, 15 refused (duplicate_event_id 9, invalid_json 2, \
             replay_window_exceeded 2, missing_signature 1, signature_mismatch 1)"
        ),
        "{log}"
    );
}

/// A signed batch of more than 10 000 lines is refused whole (413
/// `batch_too_large`) and audited with its body's hash; blank lines do
/// not count, and a batch at the limit gets an answer for every line.
#[test]
fn a_batch_over_the_line_limit_is_refused_whole_and_audited() {
    let server = common::Server::start(&[("ARES_SHARED_SECRET", SECRET)]);
    let c = Client {
        server,
        n: 0.into(),
    };
    let post_batch =
        |body: &[u8]| c.post_raw_to("/ingest/batch", body, Some(sign(SECRET.as_bytes(), body)));
    let over = "{}\n".repeat(10_001).into_bytes();
    assert_eq!(
        post_batch(&over),
        (413, json!({"detail": "batch_too_large"}))
    );
    // At the limit, with blank lines besides: every line is answered (each
    // a schema error here), nothing refused whole.
    let at = "{}\n\n".repeat(10_000).into_bytes();
    let (s, v) = post_batch(&at);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["accepted"], &v["rejected"]),
        (&json!(0), &json!(10_000))
    );
    assert_eq!(v["results"].as_array().unwrap().len(), 10_000);
    assert_eq!(v["results"][9_999]["detail"], "schema_validation_failed");

    let audit = std::fs::read_to_string(c.server.dir.path().join("audit.jsonl")).unwrap();
    let first: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            &first["type"],
            &first["path"],
            &first["verification_reason"],
            &first["body_sha256"]
        ),
        (
            &json!("gateway_reject"),
            &json!("/ingest/batch"),
            &json!("batch_too_large"),
            &json!(vigil::store::audit_log::sha256_hex(&over))
        ),
        "{first}"
    );
    assert_eq!(audit.lines().count(), 2, "{audit}");
    common::assert_audit_verifies(&c.server.dir.path().join("audit.jsonl"));
}

#[test]
fn producer_keys_rotate_without_downtime() {
    let server = common::Server::start(&[
        ("ARES_SHARED_SECRET", SECRET),
        ("VIGIL_PRODUCER_KEYS", "k2026:fresh-secret-2026"),
    ]);
    let c = Client {
        server,
        n: 0.into(),
    };
    let send = |key_id: Option<&str>, secret: &str| {
        let body =
            serde_json::to_vec(&event(&c.id(), "host-rot", "login_failed", None, None)).unwrap();
        let sig = sign(secret.as_bytes(), &body);
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("X-ARES-SIGNATURE", sig.as_str()),
        ];
        if let Some(k) = key_id {
            headers.push(("X-ARES-KEY-ID", k));
        }
        let (status, body) = c.server.request("POST", "/ingest", &headers, &body);
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    // Old producers (seed header only) keep working on the default key...
    assert_eq!(send(None, SECRET).0, 200);
    assert_eq!(send(Some("default"), SECRET).0, 200);
    // ...while new ones move to the named key.
    assert_eq!(send(Some("k2026"), "fresh-secret-2026").0, 200);
    // Each key signs only for itself.
    assert_eq!(
        send(None, "fresh-secret-2026"),
        (401, json!({"detail": "signature_mismatch"}))
    );
    assert_eq!(
        send(Some("k2026"), SECRET),
        (401, json!({"detail": "signature_mismatch"}))
    );
    assert_eq!(
        send(Some("k1999"), SECRET),
        (401, json!({"detail": "unknown_key_id"}))
    );
    // A batch signed with the new key counts for it line by line.
    let lines: Vec<String> = (0..2)
        .map(|_| event(&c.id(), "host-rot", "login_success", None, None).to_string())
        .collect();
    let body = lines.join("\n");
    let sig = sign(b"fresh-secret-2026", body.as_bytes());
    let (status, answer) = c.server.request(
        "POST",
        "/ingest/batch",
        &[
            ("X-ARES-SIGNATURE", sig.as_str()),
            ("X-ARES-KEY-ID", "k2026"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let audit = std::fs::read_to_string(c.server.dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"key_id\":\"k2026\""), "{audit}");
    assert!(
        !audit.contains("fresh-secret-2026"),
        "secrets never reach the audit log"
    );
    // What a rotation needs to know before the old key goes: who still
    // signs with which key (refusals are not uses), while it runs...
    let (status, body) = c.server.request("GET", "/api/v1/producer-keys", &[], b"");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<(&str, u64, bool)> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap(),
                k["accepted"].as_u64().unwrap(),
                k["last_used_utc"].is_string(),
            )
        })
        .collect();
    assert_eq!(keys, [("default", 2, true), ("k2026", 3, true)], "{v}");
    assert!(v["counted_since_utc"].is_string(), "{v}");
    assert!(!body.contains("fresh-secret-2026"), "no secret: {body}");
    // ...and when it stops.
    let (ok, log) = c.server.stop_and_log();
    assert!(ok, "{log}");
    let summary = log
        .lines()
        .find(|l| l.contains("INFO gateway: "))
        .unwrap_or_else(|| panic!("no summary: {log}"));
    assert!(
        summary.contains("gateway: 5 accepted, 3 refused"),
        "{summary}"
    );
    let by_key = summary
        .split_once("; accepted by key: ")
        .map(|(_, k)| k)
        .unwrap_or_else(|| panic!("{summary}"));
    let counts: Vec<(&str, &str)> = by_key
        .split(", ")
        .map(|k| k.split_once(" (").map(|(n, _)| n).unwrap_or(k))
        .map(|k| k.split_once(' ').unwrap())
        .collect();
    assert_eq!(counts, [("default", "2"), ("k2026", "3")], "{summary}");
    assert!(!summary.contains("unused"), "{summary}");
}

#[test]
fn log_names_each_refusal_counts_them_at_stop_and_never_a_secret() {
    let server = common::Server::start(&[
        ("ARES_SHARED_SECRET", SECRET),
        ("VIGIL_PRODUCER_KEYS", "k2026:fresh-secret-2026"),
        ("VIGIL_LOG", "debug"),
    ]);
    let body = br#"{"event_type":"sec.event.v1"}"#;
    let (status, _) = server.request(
        "POST",
        "/ingest",
        &[("X-ARES-SIGNATURE", "sha256=00")],
        body,
    );
    assert_eq!(status, 401);
    let (status, _) = server.request("POST", "/ingest", &[], body);
    assert_eq!(status, 401);
    let (ok, log) = server.stop_and_log();
    assert!(ok, "graceful shutdown exits 0: {log}");
    assert!(log.contains(" INFO listening on 127.0.0.1:"), "{log}");
    assert!(
        log.contains("DEBUG gateway_reject from 127.0.0.1: signature_mismatch"),
        "{log}"
    );
    assert!(
        log.contains("DEBUG gateway_reject from 127.0.0.1: missing_signature"),
        "{log}"
    );
    assert!(
        log.contains(
            " INFO gateway: 0 accepted, 2 refused (missing_signature 1, signature_mismatch 1)"
        ),
        "{log}"
    );
    assert!(log.contains(" INFO stopped cleanly"), "{log}");
    assert!(
        !log.contains(SECRET) && !log.contains("fresh-secret-2026"),
        "{log}"
    );
}

#[test]
fn an_unknown_log_level_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::vigil()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("ARES_SHARED_SECRET", SECRET)
        .env("VIGIL_LOG", "loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VIGIL_LOG=loud: expected error, warn, info, debug, trace or off"),
        "{err}"
    );
}

#[test]
fn json_errors_are_classified_as_the_seed_does() {
    let c = Client {
        server: common::Server::start(&[("ARES_SHARED_SECRET", SECRET)]),
        n: 0.into(),
    };
    let signed = |body: &str| {
        let body = body.as_bytes().to_vec();
        let sig = sign(SECRET.as_bytes(), &body);
        c.post_raw(&body, Some(sig))
    };
    let valid =
        serde_json::to_string(&event(&c.id(), "host-j", "login_success", None, None)).unwrap();
    // An unknown field, then broken syntax: json.loads fails first.
    let broken = format!("{{\"bogus\": 1, {}", &valid[1..valid.len() - 1]);
    let (s, v) = signed(&broken);
    assert_eq!(
        (s, v["detail"].as_str()),
        (400, Some("invalid_json")),
        "{v}"
    );
    // Valid JSON that is not an object: a schema failure.
    let (s, v) = signed("[1, 2]");
    assert_eq!(
        (s, v["detail"].as_str()),
        (400, Some("schema_validation_failed")),
        "{v}"
    );
    // A repeated key resolves as in json.loads: the last one wins.
    let dup = format!("{{\"host\": \"ignored\", {}", &valid[1..]);
    let (s, v) = signed(&dup);
    assert_eq!(s, 200, "{v}");
    assert_eq!(c.get("/hosts/host-j/state").0, 200);
}

/// SIGTERM the moment `vigil serve` says it is listening is a graceful stop
/// (exit 0, "stopped cleanly"): the handlers are in place before that line.
/// (They were set up when the server first waited on them, and 74 of 100
/// such stops killed the process instead.)
#[cfg(unix)]
#[test]
fn sigterm_right_after_the_ready_line_stops_gracefully() {
    use std::io::Read;
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let (mut child, mut log, mut err) = common::spawn_serve(
            &["--listen", "127.0.0.1:0", "--data-dir", data],
            &[("ARES_SHARED_SECRET", "s")],
        );
        // At once, not through a `kill` process that takes a while to start.
        let pid = i32::try_from(child.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        err.read_to_string(&mut log).unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success() && log.contains("stopped cleanly"),
            "{status:?}\n{log}"
        );
    }
}

/// The store's bound deletes events with no request refused and nothing in
/// any answer: whoever runs the server hears it once when it starts and in
/// the stop summary, with the count.
#[test]
fn a_full_store_says_when_retention_starts_and_how_much_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, "[store]\nmax_events = 20\n").unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let server =
        common::Server::start_with(dir, &[("ARES_SHARED_SECRET", SECRET)], &["--config", &cfg]);
    let body: String = (0..60)
        .map(|i| {
            let e = event(
                &format!("full-{i:03}"),
                &format!("h{}", i % 3),
                "session_opened",
                Some("u"),
                None,
            );
            format!("{e}\n")
        })
        .collect();
    let sig = sign(SECRET.as_bytes(), body.as_bytes());
    let (status, answer) = server.request(
        "POST",
        "/ingest/batch",
        &[("X-ARES-SIGNATURE", sig.as_str())],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "{log}");
    assert!(
        log.contains(" INFO store: at its bound of 20 events ([store] max_events)"),
        "{log}"
    );
    assert!(
        log.contains(" INFO store: 60 events and ")
            && log.contains("; retention deleted 40 older events to keep within max_events"),
        "{log}"
    );
    let kept: i64 = vigil::store::open(&dir.path().join("vigil.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 20);
}

/// The seed's environment names the sequence above does not set, end to
/// end: the replay window, the severity floor, the alert dedup window and
/// the SQLite path each change what the running gateway does.
#[test]
fn the_seeds_other_env_names_reach_the_running_gateway() {
    let elsewhere = tempfile::tempdir().unwrap();
    let db = elsewhere.path().join("nested").join("seed.db");
    let server = common::Server::start(&[
        ("ARES_SHARED_SECRET", SECRET),
        ("SEC_REPLAY_WINDOW_SECONDS", "30"),
        ("SEC_SEVERITY_FLOOR", "9"),
        ("SEC_ALERT_DEDUP_SECONDS", "77"),
        ("SEC_SQLITE_PATH", db.to_str().unwrap()),
    ]);
    let c = Client {
        server,
        n: 0.into(),
    };
    // 60 s old: inside the default window of 120, outside 30.
    let mut old = event(&c.id(), "env-1", "login_failed", Some("bob"), None);
    old["timestamp_utc"] = json!((Utc::now() - Duration::seconds(60)).to_rfc3339());
    assert_eq!(
        c.post(&old),
        (400, json!({"detail": "replay_window_exceeded"}))
    );
    // Severity 6 is under a floor of 9: throttled by the policy.
    let (s, v) = c.post(&event(&c.id(), "env-1", "proc_start", None, None));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["policy"]["reasons"].clone(), v["final_decision"].clone()),
        (json!(["below_severity_floor"]), json!("THROTTLE")),
        "{v}"
    );
    // Eight failures for one user open a brute force whose dedup window is
    // the one set.
    let mut ids = Vec::new();
    for _ in 0..8 {
        let id = c.id();
        let (s, v) = c.post(&event(&id, "env-2", "login_failed", Some("carol"), None));
        assert_eq!(s, 200, "{v}");
        ids.push(id);
    }
    let alert = c.server.wait_for_alert("BRUTE_FORCE_V1", "env-2");
    assert_eq!(
        alert["context"]["dedup_window_seconds"],
        json!(77),
        "{alert}"
    );
    let (ok, log, dir) = c.server.stop_keeping_data();
    assert!(ok, "{log}");
    // The store is where SEC_SQLITE_PATH says, with every accepted event.
    let conn = vigil::store::open(&db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 9);
    assert!(
        !dir.path().join("vigil.db").exists(),
        "nothing stored in the data dir's default place"
    );
}

/// SIGINT (Ctrl-C at a terminal) stops `vigil serve` as SIGTERM does:
/// exit 0 after committing what it accepted.
#[test]
fn sigint_stops_gracefully_with_everything_accepted_stored() {
    let server = common::Server::start(&[("ARES_SHARED_SECRET", SECRET)]);
    let c = Client {
        server,
        n: 0.into(),
    };
    for _ in 0..3 {
        let (s, v) = c.post(&event(&c.id(), "int-1", "proc_start", None, None));
        assert_eq!(s, 200, "{v}");
    }
    let mut server = c.server;
    let pid = i32::try_from(server.child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("stopped cleanly"))
    {
        assert!(std::time::Instant::now() < deadline, "no 'stopped cleanly'");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let stored: i64 = vigil::store::open(&server.dir.path().join("vigil.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 3);
}

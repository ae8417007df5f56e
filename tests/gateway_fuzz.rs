//! Random bodies and headers against a live `vigil serve`: the gateway never
//! panics and answers every malformed request with a 4xx.

mod common;

use proptest::prelude::*;
use vigil::sources::gateway::sign;

const SECRET: &str = "fuzz-secret";

const SEEDS: &[&str] = &[
    r#"{"event_type":"sec.event.v1","event_id":"evt-00000001","source":"a","host":"h","timestamp_utc":"2026-01-01T00:00:00Z","category":"auth","action":"login_failed","severity":5}"#,
    r#"{"event_type":"sec.event.v1","event_id":"x","source":"","host":"h","timestamp_utc":"nope","category":"","action":"","severity":-1,"attributes":[]}"#,
    "[]",
    "null",
    "{\"event_type\":1e999}",
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        (
            0..SEEDS.len(),
            proptest::collection::vec(any::<u8>(), 0..4),
            any::<usize>()
        )
            .prop_map(|(i, junk, at)| {
                let mut b = SEEDS[i].as_bytes().to_vec();
                let at = at % (b.len() + 1);
                b.splice(at..at, junk);
                b
            }),
    ]
}

// The server is owned by the test (not a static) so it is stopped when the
// test ends.
#[test]
fn random_bodies_signed_or_not_get_4xx() {
    let s = common::Server::start(&[("ARES_SHARED_SECRET", SECRET)]);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(
            &(body_strategy(), 0u8..4, "[ -~]{0,80}"),
            |(body, sig_kind, header_junk)| {
                let sig = match sig_kind {
                    0 => sign(SECRET.as_bytes(), &body),
                    1 => format!("sha256={header_junk}"),
                    2 => header_junk.clone(),
                    _ => String::new(),
                };
                let headers: Vec<(&str, &str)> = if sig.is_empty() {
                    vec![]
                } else {
                    vec![("X-ARES-SIGNATURE", sig.as_str())]
                };
                let (status, _) = s.request("POST", "/ingest", &headers, &body);
                // A validly signed body that happens to be a valid event is a 200.
                prop_assert!(
                    (400..500).contains(&status) || status == 200,
                    "status {}",
                    status
                );
                if sig_kind != 0 {
                    prop_assert_eq!(status, 401);
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn random_paths_and_methods_never_5xx() {
    let s = common::Server::start(&[("ARES_SHARED_SECRET", SECRET)]);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(
            &(
                "/[a-z/{}%.]{0,40}",
                prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("PUT")],
            ),
            |(path, method)| {
                let (status, _) = s.request(method, &path, &[], b"");
                prop_assert!(status < 500, "{} {} -> {}", method, path, status);
                Ok(())
            },
        )
        .unwrap();
}

fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
    // Any characters, controls, quotes and backslashes included.
    proptest::collection::vec(any::<char>(), min..max).prop_map(|c| c.into_iter().collect())
}

/// The audit records are written by hand, not by serde: whatever a
/// producer puts in the fields they repeat (ids, host, source), each record
/// must still be one line of JSON that names the event exactly, on
/// `/ingest` and `/ingest/batch`, and the chain must verify.
#[test]
fn audit_records_of_any_event_text_are_json_and_name_it() {
    let s = common::Server::start(&[
        ("ARES_SHARED_SECRET", SECRET),
        ("SEC_RATE_LIMIT_PER_MIN", "1000000"),
    ]);
    let audit = s.dir.path().join("audit.jsonl");
    let last_records = |n: usize| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&audit).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    };
    let n = std::sync::atomic::AtomicU32::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 100,
        ..config()
    });
    runner
        .run(
            &(text(1, 40), text(1, 40), text(1, 20)),
            |(id_tail, host, source)| {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let event = |k: u32| {
                    serde_json::json!({
                        "event_type": "sec.event.v1",
                        // Unique, 8 characters or more, then anything.
                        "event_id": format!("fz{i:05}-{k}{id_tail}"),
                        "source": source,
                        "host": host,
                        "timestamp_utc": chrono::Utc::now().to_rfc3339(),
                        "category": "auth",
                        "action": "login_failed",
                        "severity": 5,
                    })
                };
                let one = serde_json::to_vec(&event(0)).unwrap();
                let sig = sign(SECRET.as_bytes(), &one);
                let (status, answer) =
                    s.request("POST", "/ingest", &[("X-ARES-SIGNATURE", &sig)], &one);
                prop_assert_eq!(status, 200, "{}", answer);
                let mut batch = serde_json::to_vec(&event(1)).unwrap();
                batch.push(b'\n');
                batch.extend(serde_json::to_vec(&event(2)).unwrap());
                let sig = sign(SECRET.as_bytes(), &batch);
                let (status, answer) = s.request(
                    "POST",
                    "/ingest/batch",
                    &[("X-ARES-SIGNATURE", &sig)],
                    &batch,
                );
                prop_assert_eq!(status, 200, "{}", answer);
                let records = last_records(2);
                let single = &records[0];
                let sent = event(0);
                prop_assert_eq!(&single["type"], "gateway_accept", "{}", single);
                prop_assert_eq!(&single["event_id"], &sent["event_id"]);
                prop_assert_eq!(&single["host"], &sent["host"]);
                prop_assert_eq!(&single["source"], &sent["source"]);
                let batch = &records[1];
                prop_assert_eq!(&batch["type"], "gateway_batch", "{}", batch);
                let named = batch["events"].as_array().cloned().unwrap_or_default();
                prop_assert_eq!(named.len(), 2, "{}", batch);
                for (r, k) in named.iter().zip(1..) {
                    let sent = event(k);
                    prop_assert_eq!(&r["event_id"], &sent["event_id"]);
                    prop_assert_eq!(&r["host"], &sent["host"]);
                    prop_assert_eq!(&r["source"], &sent["source"]);
                }
                Ok(())
            },
        )
        .unwrap();
    common::assert_audit_verifies(&audit);
}

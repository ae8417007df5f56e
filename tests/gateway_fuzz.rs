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

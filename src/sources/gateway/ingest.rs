//! `POST /ingest` and `POST /ingest/batch`: the checks after the signature
//! (JSON, schema, replay window) and the hand-over to the engine.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::answer::{BatchAnswer, LineResult, ingest_answer, json_response};
use super::audit::{ACCEPT, AuditRecord, BatchRecord, audit_ids, serialise_audit};
use super::{GatewayState, reject};
use crate::engine::Refusal;
use crate::event::WireEvent;
use crate::store::audit_log::sha256_hex_array;

pub(super) async fn ingest(
    State(st): State<Arc<GatewayState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key_id = match st.authenticate(&client, &headers, &body, "/ingest") {
        Ok(key_id) => key_id,
        Err(reason) => return reject(StatusCode::UNAUTHORIZED, reason),
    };
    if let Some(refused) = st.audit_unavailable(&client, &body, "/ingest") {
        return refused;
    }
    let body_sha = sha256_hex_array(&body);
    let now = Utc::now();
    let ev = match check_event(&st, &body, now) {
        Ok(ev) => ev,
        Err(Rejected::Schema(e)) => {
            let r = AuditRecord::reject("schema_validation_failed", "/ingest", Some(body_sha));
            st.write_audit(&client, &[r.with_error(&e)]);
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "detail": "schema_validation_failed", "error": e })),
            )
                .into_response();
        }
        Err(r) => {
            let mut ids = Vec::new();
            if let Rejected::Replay(ev) = &r {
                audit_ids(&mut ids, ev, Some(&key_id));
            }
            let record = AuditRecord::reject(r.reason(), "/ingest", Some(body_sha));
            st.write_audit(&client, &[record.with_ids(&ids)]);
            return reject(StatusCode::BAD_REQUEST, r.reason());
        }
    };
    let mut ids = Vec::with_capacity(128);
    audit_ids(&mut ids, &ev, Some(&key_id));
    let event_id = ev.event_id.clone();
    let refused = |reason| AuditRecord::reject(reason, "/ingest", Some(body_sha)).with_ids(&ids);
    // The accept record goes with the event: if it is stored, the store
    // writer appends the record with its group's before the answer comes.
    let accept = [AuditRecord::accept("/ingest", body_sha, &ids)];
    let record = serialise_audit(&client, Utc::now(), &accept);
    match st.engine.ingest_recorded(ev, record).await {
        Ok((Ok(acc), recorded)) => {
            st.stats.count_key(&key_id, 1, now);
            if recorded {
                tracing::trace!("{ACCEPT} from {}: {}", client.ip(), accept[0].reason);
            } else {
                st.write_audit(&client, &accept);
            }
            json_response(ingest_answer(&event_id, &acc))
        }
        Ok((Err(r), _)) => {
            let (code, reason) = refusal(r);
            st.write_audit(&client, &[refused(reason)]);
            reject(code, reason)
        }
        Err(_) => {
            let (code, reason) = refusal(Refusal::StoreFailed);
            st.write_audit(&client, &[refused(reason)]);
            reject(code, reason)
        }
    }
}

/// The seed's status and reason for an event the engine refused.
fn refusal(r: Refusal) -> (StatusCode, &'static str) {
    match r {
        Refusal::DuplicateEventId => (StatusCode::CONFLICT, "duplicate_event_id"),
        Refusal::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        Refusal::StoreFailed => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
    }
}

const BATCH: &str = "/ingest/batch";

/// Largest number of lines in one batch.
pub const MAX_BATCH_LINES: usize = 10_000;

/// Why a signed body was refused before it reached the engine.
#[derive(Debug)]
pub enum Rejected {
    InvalidJson,
    Schema(String),
    /// Valid, but `timestamp_utc` is outside the replay window.
    Replay(Box<crate::event::Event>),
}

impl Rejected {
    /// The seed's reason string.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::InvalidJson => "invalid_json",
            Rejected::Schema(_) => "schema_validation_failed",
            Rejected::Replay(_) => "replay_window_exceeded",
        }
    }
}

/// The checks after the signature, in the seed's order: JSON, then the
/// `sec.event.v1` schema, then the replay window. Shared by `/ingest` and
/// each line of `/ingest/batch`.
fn check_event(
    st: &GatewayState,
    body: &[u8],
    now: chrono::DateTime<Utc>,
) -> Result<crate::event::Event, Rejected> {
    validate_event(body, now, st.replay_window_secs)
}

/// JSON, then the `sec.event.v1` schema, then the replay window (seconds
/// either side of `now`), on one signed body or batch line.
pub fn validate_event(
    body: &[u8],
    now: chrono::DateTime<Utc>,
    replay_window_secs: i64,
) -> Result<crate::event::Event, Rejected> {
    // Straight into the typed event; only a refusal takes the seed's two
    // steps (parse as JSON, then check the schema), which decide between
    // invalid_json and schema_validation_failed and let a repeated key
    // resolve as Python's json.loads does (the last one wins).
    // The read-only fields borrowed from the body; a field with escapes
    // in it (it cannot be borrowed) takes the slow path too, owned.
    // Checked as UTF-8 once, whole, the body is parsed as text: from bytes
    // serde_json checks each string again as it borrows it (`validate`
    // bench: 608 -> 482 µs per 1 000 events, same run's baseline 154).
    // Bytes that are not UTF-8 take the byte parser, which refuses them
    // exactly as before.
    let fast = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<WireEvent<&str>>(text),
        Err(_) => serde_json::from_slice::<WireEvent<&str>>(body),
    };
    let ev = match fast {
        Ok(w) => w.into_event(now),
        Err(_) => {
            let value: Value = serde_json::from_slice(body).map_err(|_| Rejected::InvalidJson)?;
            serde_json::from_value::<WireEvent>(value)
                .map_err(|e| Rejected::Schema(e.to_string()))?
                .into_event(now)
        }
    }
    .map_err(|e| Rejected::Schema(e.to_string()))?;
    if (now - ev.timestamp_utc).num_seconds().abs() > replay_window_secs {
        return Err(Rejected::Replay(Box::new(ev)));
    }
    Ok(ev)
}

/// A batch body's lines, blank ones left out. Found with `memchr`: a
/// byte-by-byte `split` was ~2 % of the gateway's CPU on batches.
fn batch_lines(body: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut lines = Vec::with_capacity(body.len() / 200 + 1);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len())) {
        let line = start..end;
        start = end + 1;
        if !body[line.clone()].iter().all(u8::is_ascii_whitespace) {
            lines.push(line);
        }
    }
    lines
}

/// `POST /ingest/batch`: newline-delimited `sec.event.v1` events signed as
/// one body. Each line gets its own result; one bad line does not sink the
/// batch. The answer comes after every accepted line is committed.
///
/// The work over the whole body (the signature, each line's checks, the
/// audit record and the answer) runs on the blocking pool, so a batch does
/// not hold the async worker that single events and other connections
/// share; only the hand-over to the engine runs on it.
pub(super) async fn ingest_batch(
    State(st): State<Arc<GatewayState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let prepared = {
        let (st, body) = (st.clone(), body.clone());
        tokio::task::spawn_blocking(move || {
            as_bulk_work();
            prepare_batch(&st, &client, &headers, &body)
        })
        .await
    };
    let mut batch = match prepared {
        Ok(Ok(batch)) => batch,
        Ok(Err(refused)) => return *refused,
        Err(_) => return internal_error(),
    };
    let events = std::mem::take(&mut batch.events);
    let answers = match st
        .engine
        .submit_many(events, crate::engine::Origin::Producer)
        .await
    {
        Ok(receipt) => receipt.answers().await,
        Err(_) => Vec::new(),
    };
    tokio::task::spawn_blocking(move || {
        as_bulk_work();
        finish_batch(&st, &client, &body, batch, answers)
    })
    .await
    .unwrap_or_else(|_| internal_error())
}

/// How much lower (in nice steps) the blocking pool runs than the rest.
///
/// A batch's work over its body runs on several blocking-pool threads at
/// once, and on two cores they took the CPU from the two stages every event
/// passes one at a time: the async worker (correlation) and the store
/// writer, each runnable but waiting for a core ~⅓ of the time under a
/// batch load (`/proc/PID/task/TID/schedstat`). Yielding to them is also
/// what an analyst wants of the bulk path: single events, the sources and
/// the console's thread keep their share while batches pour in. Measured
/// with `scripts/gateway-ab.sh` (README "Gateway").
pub const BULK_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority by [`BULK_NICE`], once per
/// thread (a blocking-pool thread serves many batches). Only batches use the
/// blocking pool, so nothing else runs lowered. Linux keeps the nice value
/// per thread; elsewhere it is per process, so nothing is done there.
pub fn as_bulk_work() {
    #[cfg(target_os = "linux")]
    {
        thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        LOWERED.with(|lowered| {
            if !lowered.replace(true) {
                // SAFETY: nice(2) only changes the calling thread's nice value
                // (relative, so a service started niced stays below the rest);
                // a failure leaves the thread as it was, which is harmless.
                unsafe {
                    libc::nice(BULK_NICE);
                }
            }
        });
    }
}

/// The answer when a batch's work on the blocking pool did not finish (it
/// panicked, or the runtime is shutting down): no line is acknowledged.
fn internal_error() -> Response {
    tracing::error!("a batch's work on the blocking pool did not finish; answered 500");
    reject(StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
}

/// A batch checked line by line, before the engine.
struct CheckedBatch {
    key_id: String,
    now: chrono::DateTime<Utc>,
    /// Where each (not blank) line is in the body.
    lines: Vec<std::ops::Range<usize>>,
    results: Vec<LineResult>,
    /// Each line's audit ids, one after the other; `ids_end[i]` is where
    /// line `i`'s ids end.
    ids: Vec<u8>,
    ids_end: Vec<usize>,
    /// Schema errors by line.
    errors: Vec<(usize, String)>,
    /// The lines whose events go to the engine, with their ids.
    pending: Vec<(usize, String)>,
    events: Vec<crate::event::Event>,
}

fn prepare_batch(
    st: &GatewayState,
    client: &SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CheckedBatch, Box<Response>> {
    let key_id = match st.authenticate(client, headers, body, BATCH) {
        Ok(key_id) => key_id,
        Err(reason) => return Err(Box::new(reject(StatusCode::UNAUTHORIZED, reason))),
    };
    if let Some(refused) = st.audit_unavailable(client, body, BATCH) {
        return Err(Box::new(refused));
    }
    let lines = batch_lines(body);
    if lines.len() > MAX_BATCH_LINES {
        let r = AuditRecord::reject("batch_too_large", BATCH, Some(sha256_hex_array(body)));
        st.write_audit(client, &[r]);
        return Err(Box::new(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
        )));
    }
    let now = Utc::now();
    let mut results: Vec<LineResult> = Vec::with_capacity(lines.len());
    // Each line's audit ids and schema error, taken while the line and its
    // event are at hand (the events go to the engine); the request's record
    // is built once the engine has answered.
    let mut ids = Vec::with_capacity(lines.len() * 96);
    let mut ids_end = Vec::with_capacity(lines.len());
    let mut errors: Vec<(usize, String)> = Vec::new();
    // Room for every line up front: an event is a few hundred bytes, and
    // doubling a vector of 1 000 of them copied ~300 KB a batch.
    let mut pending = Vec::with_capacity(lines.len());
    let mut events = Vec::with_capacity(lines.len());
    for (i, span) in lines.iter().enumerate() {
        match check_event(st, &body[span.clone()], now) {
            Ok(ev) => {
                audit_ids(&mut ids, &ev, None);
                pending.push((i, ev.event_id.clone()));
                events.push(ev);
                results.push(LineResult::new(i, 0));
            }
            Err(r) => {
                match r {
                    // A valid event outside the window: named, as on /ingest.
                    Rejected::Replay(ref ev) => audit_ids(&mut ids, ev, None),
                    Rejected::Schema(ref e) => errors.push((i, e.clone())),
                    Rejected::InvalidJson => {}
                }
                results.push(LineResult {
                    detail: Some(r.reason()),
                    ..LineResult::new(i, 400)
                });
            }
        }
        ids_end.push(ids.len());
    }
    Ok(CheckedBatch {
        key_id,
        now,
        lines,
        results,
        ids,
        ids_end,
        errors,
        pending,
        events,
    })
}

/// The engine's answers into each line's result, the request's audit
/// record, and the answer.
fn finish_batch(
    st: &GatewayState,
    client: &SocketAddr,
    body: &[u8],
    batch: CheckedBatch,
    answers: Vec<Option<Result<crate::engine::Accepted, Refusal>>>,
) -> Response {
    let CheckedBatch {
        key_id,
        now,
        lines,
        mut results,
        ids,
        ids_end,
        errors,
        pending,
        ..
    } = batch;
    let mut answers = answers.into_iter();
    for (i, id) in pending {
        let answer = answers.next().flatten();
        let result = match answer {
            Some(Ok(acc)) => LineResult {
                final_decision: Some(acc.policy.decision),
                correlation_reasons: Some(acc.verdict.reasons),
                ..LineResult::new(i, 200)
            },
            Some(Err(r)) => {
                let (code, reason) = refusal(r);
                LineResult {
                    detail: Some(reason),
                    ..LineResult::new(i, code.as_u16())
                }
            }
            // Not committed (the store failed, or the engine stopped): the
            // answer `/ingest` gives for the same.
            None => LineResult {
                detail: Some("store_unavailable"),
                ..LineResult::new(i, 503)
            },
        };
        results[i] = LineResult {
            event_id: Some(id),
            ..result
        };
    }
    let mut record = BatchRecord::with_capacity(lines.len());
    let mut errors = errors.iter().peekable();
    for (i, result) in results.iter().enumerate() {
        let line_ids = &ids[if i == 0 { 0 } else { ids_end[i - 1] }..ids_end[i]];
        match result.detail {
            None => record.accepted(i + 1, line_ids),
            Some(reason) => {
                let error = errors.next_if(|(at, _)| *at == i).map(|(_, e)| e.as_str());
                record.refused(i + 1, reason, &body[lines[i].clone()], line_ids, error);
            }
        }
    }
    let ok = record.accepted_count();
    st.write_batch_audit(client, &record, &sha256_hex_array(body), &key_id);
    st.stats.count_key(&key_id, ok, now);
    let bad = results.len() as u64 - ok;
    tracing::debug!("batch from {}: {ok} accepted, {bad} refused", client.ip());
    let answer = BatchAnswer {
        accepted: ok,
        rejected: bad,
        results,
    };
    json_response(answer.to_json())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn bulk_work_runs_lowered_once_per_thread_and_only_there() {
        // SAFETY: reads the calling thread's nice value.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        // On threads of their own: the nice value is per thread on Linux
        // (and a new thread starts with its creator's).
        let (before, first, second) = std::thread::spawn(move || {
            let before = nice();
            as_bulk_work();
            let first = nice();
            as_bulk_work();
            (before, first, nice())
        })
        .join()
        .unwrap();
        let other = std::thread::spawn(nice).join().unwrap();
        assert_eq!(first, (before + BULK_NICE).min(19));
        assert_eq!(second, first, "lowered again on the same thread");
        assert_eq!(other, before, "a thread that did no bulk work was lowered");
    }

    #[test]
    fn batch_lines_are_split_on_newlines_leaving_blank_ones_out() {
        let naive = |b: &[u8]| -> Vec<Vec<u8>> {
            b.split(|c| *c == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .map(<[u8]>::to_vec)
                .collect()
        };
        for body in [
            &b""[..],
            b"\n",
            b"{}",
            b"{}\n",
            b"\n\n{}\n \t\r\n{\"a\":1}\r\n",
            b"a\nb\nc",
            b" \n",
        ] {
            let got: Vec<Vec<u8>> = batch_lines(body)
                .into_iter()
                .map(|span| body[span].to_vec())
                .collect();
            assert_eq!(got, naive(body), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn escaped_fields_validate_as_their_plain_form() {
        // Borrowed fields cannot hold escapes: such an event takes the
        // owned path and must come out the same.
        let now = Utc::now();
        let plain = format!(
            r#"{{"event_type":"sec.event.v1","event_id":"evt-0000001","source":"auth","host":"h1","timestamp_utc":"{}","category":"auth","action":"login_failed","severity":5,"src_ip":"198.51.100.7"}}"#,
            now.to_rfc3339()
        );
        let escaped = plain
            .replace("sec.event.v1", r"sec\u002eevent.v1")
            .replace("login_failed", r"login\u005ffailed")
            .replace(r#""auth","action""#, r#""au\u0074h","action""#)
            .replace("198.51.100.7", r"198.51.100\u002e7")
            .replace(
                &now.to_rfc3339()[..4],
                &format!(
                    r"\u00{:x}{}",
                    now.to_rfc3339().as_bytes()[0],
                    &now.to_rfc3339()[1..4]
                ),
            );
        assert!(serde_json::from_slice::<WireEvent<&str>>(plain.as_bytes()).is_ok());
        assert!(serde_json::from_slice::<WireEvent<&str>>(escaped.as_bytes()).is_err());
        let a = validate_event(plain.as_bytes(), now, 120).unwrap();
        let b = validate_event(escaped.as_bytes(), now, 120).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(a.action.as_str(), "login_failed");
    }

    #[test]
    fn text_and_bytes_that_are_not_utf8_are_judged_as_before() {
        let now = Utc::now();
        let event = |user: &str| {
            format!(
                r#"{{"event_type":"sec.event.v1","event_id":"evt-0000002","source":"auth","host":"h1","timestamp_utc":"{}","category":"auth","action":"login_failed","severity":5,"user":"{user}"}}"#,
                now.to_rfc3339()
            )
            .into_bytes()
        };
        // Non-ASCII text: parsed as text, the same event as from bytes.
        let text = event("jos\u{e9}-\u{4e2d}");
        let ev = validate_event(&text, now, 120).unwrap();
        assert_eq!(ev.user.as_deref(), Some("jos\u{e9}-\u{4e2d}"));
        let from_bytes = serde_json::from_slice::<WireEvent<&str>>(&text)
            .unwrap()
            .into_event(now)
            .unwrap();
        assert_eq!(format!("{ev:?}"), format!("{from_bytes:?}"));
        // A byte that is not UTF-8, in a string or outside one: invalid JSON
        // (Python's json.loads refuses both), never a schema error.
        let mut in_string = event("ab");
        let at = in_string.windows(2).position(|w| w == b"ab").unwrap();
        in_string[at] = 0xff;
        let mut outside = event("ab");
        outside.insert(1, 0xc3);
        for body in [in_string, outside] {
            assert!(matches!(
                validate_event(&body, now, 120),
                Err(Rejected::InvalidJson)
            ));
        }
    }

    #[test]
    fn attributes_come_out_in_key_order_a_later_duplicate_winning_on_either_path() {
        let now = Utc::now();
        let body = |host: &str, attributes: &str| {
            format!(
                r#"{{"event_type":"sec.event.v1","event_id":"evt-0000002","source":"auth","host":"{host}","timestamp_utc":"{}","category":"auth","action":"login_failed","severity":5,"attributes":{attributes}}}"#,
                now.to_rfc3339()
            )
        };
        let attrs = r#"{"port":22,"b":1,"a":{"x":[1,2]},"b":"last"}"#;
        // A plain host reads borrowed; an escaped one takes the owned path.
        for host in ["h1", r"h1"] {
            let ev = validate_event(body(host, attrs).as_bytes(), now, 120).unwrap();
            let keys: Vec<&str> = ev.attributes.iter().map(|(k, _)| k).collect();
            assert_eq!(keys, ["a", "b", "port"], "{host}");
            assert_eq!(ev.attributes.get("b"), Some(&Value::from("last")), "{host}");
            assert_eq!(
                ev.attributes.get("a"),
                Some(&json!({"x": [1, 2]})),
                "{host}"
            );
        }
        for bad in ["[1]", "\"x\"", "7"] {
            assert!(
                matches!(
                    validate_event(body("h1", bad).as_bytes(), now, 120),
                    Err(Rejected::Schema(_))
                ),
                "{bad}"
            );
        }
        let ev = validate_event(body("h1", "null").as_bytes(), now, 120).unwrap();
        assert!(ev.attributes.is_empty());
    }
}

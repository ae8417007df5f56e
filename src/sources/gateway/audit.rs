//! The gateway's audit records: how accepts and refusals are written to the
//! hash-chained audit log, and what happens while it refuses writes.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::{GatewayState, reject};
use crate::store::audit_log::{Pending, json_str, sha256_hex_array};

impl GatewayState {
    pub(super) fn audit_failed(&self, e: &std::io::Error) {
        self.audit_failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut c) = self.audit_failures.lock() {
            c.say(&format!(
                "audit log write failed (records held in memory, ingestion and admin actions \
                 refused until it takes writes again): {e}"
            ));
        }
    }

    /// Whether the audit log takes writes. While it does not, the gateway
    /// refuses what it could not audit: events and admin actions get 503
    /// `audit_unavailable` (their refusals are held with the other records,
    /// see [`AuditLog`](crate::store::audit_log::AuditLog)). Events already accepted when the write failed are
    /// stored, their records held and written on recovery.
    pub(super) fn audit_ready(&self) -> bool {
        !self
            .audit_failing
            .load(std::sync::atomic::Ordering::Relaxed)
            || self.retry_audit()
    }

    /// Writes what the audit log holds, if it takes writes again (tried at
    /// most as often as [`crate::store::audit_log::RETRY_EVERY`], backing
    /// off to [`crate::store::audit_log::RETRY_MAX`]); `true` when
    /// nothing is held.
    pub fn retry_audit(&self) -> bool {
        let Ok(mut log) = self.audit.lock() else {
            return false;
        };
        match log.retry() {
            Ok(()) => {
                self.audit_failing
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Why the audit log refuses writes, if it does.
    pub fn audit_outage(&self) -> Option<crate::store::audit_log::OutageReport> {
        if !self
            .audit_failing
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        self.audit.lock().ok().and_then(|log| log.outage())
    }

    /// At stop: one last try to write what the audit log holds (back-off or
    /// not); says what is lost if that fails.
    pub fn close_audit(&self) {
        self.flush_refusals(true);
        let written = match self.audit.lock() {
            Ok(mut log) => {
                let ok = log.retry_now().is_ok();
                let (head, records) = log.head();
                // The anchor for `vigil audit verify FILE --head HASH`.
                tracing::info!("audit log: {records} records, chain head {head}");
                ok
            }
            Err(_) => false,
        };
        if written {
            return;
        }
        if let Some(o) = self.audit_outage() {
            tracing::error!(
                "audit log: {} records could not be written and are lost with this stop \
                 ({} more were dropped earlier); it refuses writes since {}: {}",
                o.held,
                o.lost,
                o.since.to_rfc3339(),
                o.error
            );
        }
    }

    /// Refuses a request the audit log could not record (see
    /// [`GatewayState::audit_ready`]); `None` when it can.
    pub(super) fn audit_unavailable(
        &self,
        client: &SocketAddr,
        body: &[u8],
        path: &'static str,
    ) -> Option<Response> {
        if self.audit_ready() {
            return None;
        }
        let r = AuditRecord::reject(AUDIT_UNAVAILABLE, path, Some(sha256_hex_array(body)));
        self.write_audit(client, &[r]);
        Some(reject(StatusCode::SERVICE_UNAVAILABLE, AUDIT_UNAVAILABLE))
    }

    /// Counts and appends one request's records. The JSON is built before
    /// the log's lock is taken; under it only the chain is hashed.
    pub(super) fn write_audit(&self, client: &SocketAddr, records: &[AuditRecord<'_>]) {
        self.stats.count(client.ip(), records);
        if let [one] = records {
            // Reason strings are the gateway's own, never producer text.
            if one.kind == ACCEPT {
                tracing::trace!("{} from {}: {}", one.kind, client.ip(), one.reason);
            } else {
                tracing::debug!("{} from {}: {}", one.kind, client.ip(), one.reason);
            }
        }
        let now = Utc::now();
        let kept;
        let records = if records.iter().all(|r| r.kind == ACCEPT) {
            records
        } else {
            kept = self
                .with_refusal_budget(now, |budget| {
                    records
                        .iter()
                        .filter(|r| r.kind == ACCEPT || budget.admit(client.ip(), r.reason, now))
                        .copied()
                        .collect::<Vec<_>>()
                })
                .unwrap_or_else(|| records.to_vec());
            &kept[..]
        };
        if records.is_empty() {
            return;
        }
        let pending = serialise_audit(client, now, records);
        self.append_audit(&pending);
    }

    /// Counts and appends a batch request's record. A batch none of whose
    /// lines was accepted is a refusal, and takes its place in the refusal
    /// budget like any other (held back, each of its lines is counted in the
    /// minute's summary).
    pub(super) fn write_batch_audit(
        &self,
        client: &SocketAddr,
        record: &BatchRecord,
        body_sha: &[u8; 64],
        key_id: &str,
    ) {
        self.stats
            .count_outcomes(client.ip(), record.accepted, record.reasons.iter().copied());
        let now = Utc::now();
        if record.accepted == 0 {
            let admitted = self
                .with_refusal_budget(now, |budget| {
                    budget.admit_all(client.ip(), &record.reasons, now)
                })
                .unwrap_or(true);
            if !admitted {
                return;
            }
        }
        self.append_audit(&record.serialise(client, now, body_sha, key_id));
    }

    /// Ends the refusal budget's minute if it is over (writing its summary,
    /// ahead of whatever the caller writes next) and lets `decide` use the
    /// budget; `None` if its lock is poisoned (then everything is written).
    pub(super) fn with_refusal_budget<T>(
        &self,
        now: DateTime<Utc>,
        decide: impl FnOnce(&mut crate::sources::refusals::RefusalBudget) -> T,
    ) -> Option<T> {
        let (summary, out) = match self.refusals.lock() {
            Ok(mut budget) => (budget.roll(now), Some(decide(&mut budget))),
            Err(_) => (None, None),
        };
        if let Some(s) = summary {
            self.append_summary(&s);
        }
        out
    }

    /// Appends the summary of a minute's refusals that had no record of
    /// their own.
    fn append_summary(&self, summary: &crate::sources::refusals::Summary) {
        let mut pending = Pending::with_capacity(1);
        match pending.push(summary) {
            Ok(()) => self.append_audit(&pending),
            Err(e) => tracing::error!("audit: cannot write a refusals summary: {e}"),
        }
    }

    /// Writes the summary of the last minute's held-back refusals once the
    /// minute is over, whether or not another refusal comes to carry it
    /// (called every second); with `stopping`, whatever the minute's age.
    pub fn flush_refusals(&self, stopping: bool) {
        let summary = self.refusals.lock().ok().and_then(|mut b| {
            if stopping {
                b.close(Utc::now())
            } else {
                b.roll(Utc::now())
            }
        });
        if let Some(s) = summary {
            self.append_summary(&s);
        }
    }

    /// Appends serialised records (already counted). An audit write
    /// failure must not take the gateway down; it is logged instead, and
    /// the records are held (see [`GatewayState::audit_ready`]).
    fn append_audit(&self, pending: &Pending) {
        match self.audit.lock() {
            Ok(mut log) => match log.append_pending(pending) {
                Ok(()) => {
                    if self
                        .audit_failing
                        .load(std::sync::atomic::Ordering::Relaxed)
                    {
                        self.audit_failing
                            .store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Err(e) => self.audit_failed(&e),
            },
            Err(_) => tracing::error!("audit log lock poisoned"),
        }
    }
}

/// The accept records of `/ingest` events, which the store writer appends
/// once their group has committed (see [`EngineHandle::ingest_recorded`]).
///
/// [`EngineHandle::ingest_recorded`]: crate::engine::EngineHandle::ingest_recorded
impl crate::store::RecordSink for GatewayState {
    fn append(&self, records: &Pending) {
        self.stats.count_accepted(records.len() as u64);
        self.append_audit(records);
    }
}

/// The reason (and 503 `detail`) for a request refused because the audit
/// log does not take writes.
pub const AUDIT_UNAVAILABLE: &str = "audit_unavailable";

pub(super) const ACCEPT: &str = "gateway_accept";
pub(super) const REJECT: &str = "gateway_reject";

/// One audit record for an accept or reject of a whole request (an
/// `/ingest` event, or a batch refused whole; a signed batch gets a
/// [`BatchRecord`]), as the gateway builds it; [`serialise_audit`] writes
/// it with the request's time and client. Keys, in this order: `type`,
/// `ts`, `path`, `client_ip`, `verification_status`,
/// `verification_reason`, `body_sha256`, then the event's ids when it had
/// them (`event_id`, `host`, `source`, `key_id`; see [`audit_ids`]), then a
/// schema `error`; `prev` last (added by the log).
#[derive(Clone, Copy)]
pub struct AuditRecord<'a> {
    pub(super) kind: &'static str,
    pub(super) reason: &'static str,
    path: &'a str,
    /// Hex SHA-256 of the body; `None` when the body was
    /// refused unread (written as "").
    body_sha: Option<[u8; 64]>,
    /// Members written by [`audit_ids`] (may be empty).
    ids: &'a [u8],
    error: Option<&'a str>,
}

impl<'a> AuditRecord<'a> {
    pub fn accept(path: &'a str, body_sha: [u8; 64], ids: &'a [u8]) -> Self {
        AuditRecord {
            kind: ACCEPT,
            reason: "ok",
            path,
            body_sha: Some(body_sha),
            ids,
            error: None,
        }
    }

    pub fn reject(reason: &'static str, path: &'a str, body_sha: Option<[u8; 64]>) -> Self {
        AuditRecord {
            kind: REJECT,
            reason,
            path,
            body_sha,
            ids: &[],
            error: None,
        }
    }

    pub fn with_ids(self, ids: &'a [u8]) -> Self {
        AuditRecord { ids, ..self }
    }

    pub(super) fn with_error(self, error: &'a str) -> Self {
        AuditRecord {
            error: Some(error),
            ..self
        }
    }

    /// `{` and the members, without the closing brace (see [`Pending`]).
    fn write_open(&self, out: &mut Vec<u8>, ts: &str, client_ip: &str) {
        out.extend_from_slice(b"{\"type\":");
        json_str(out, self.kind);
        out.extend_from_slice(b",\"ts\":");
        json_str(out, ts);
        out.extend_from_slice(b",\"path\":");
        json_str(out, self.path);
        out.extend_from_slice(b",\"client_ip\":");
        json_str(out, client_ip);
        out.extend_from_slice(if self.kind == ACCEPT {
            b",\"verification_status\":\"pass\",\"verification_reason\":"
        } else {
            b",\"verification_status\":\"fail\",\"verification_reason\":"
        });
        json_str(out, self.reason);
        out.extend_from_slice(b",\"body_sha256\":\"");
        if let Some(sha) = &self.body_sha {
            out.extend_from_slice(sha);
        }
        out.push(b'"');
        if !self.ids.is_empty() {
            out.push(b',');
            out.extend_from_slice(self.ids);
        }
        if let Some(e) = self.error {
            out.extend_from_slice(b",\"error\":");
            json_str(out, e);
        }
    }
}

/// The members that name an event in its audit records, appended to
/// `out`: `"event_id":…,"host":…,"source":…`, then `"key_id":…` (the
/// producer key that signed it) when given (a batch names its key once, in
/// its request's record). Written once per event, before the event goes to
/// the engine.
pub fn audit_ids(out: &mut Vec<u8>, ev: &crate::event::Event, key_id: Option<&str>) {
    out.extend_from_slice(b"\"event_id\":");
    json_str(out, &ev.event_id);
    out.extend_from_slice(b",\"host\":");
    json_str(out, &ev.host);
    out.extend_from_slice(b",\"source\":");
    json_str(out, &ev.source);
    if let Some(key_id) = key_id {
        out.extend_from_slice(b",\"key_id\":");
        json_str(out, key_id);
    }
}

/// The type of a `/ingest/batch` request's record ([`BatchRecord`]).
pub const BATCH_RECORD: &str = "gateway_batch";

/// Longest schema error kept in a batch line's refusal (serde names the
/// offending key, which is producer text of any length).
const BATCH_ERROR_MAX: usize = 240;

/// The audit record of one `/ingest/batch` request whose signature passed:
/// one record per request, as for `/ingest`, with every line's outcome in
/// it. Keys, in this order: `type` (`gateway_batch`), `ts`, `path`,
/// `client_ip`, `verification_status` (`pass`), `verification_reason`
/// (`ok`), `body_sha256` (of the whole signed body), `key_id`, `lines`,
/// `accepted`, `refused`, `events` (the accepted lines in order, each
/// `{"line","event_id","host","source"}`), `refusals` (the refused lines in
/// order, each `{"line","reason","line_sha256"}` plus the event's ids when
/// it had them and a schema `error`), then `prev`.
///
/// A record per line repeated the request's members (time, client, path,
/// key, verification) and a hash for every line: ~440 bytes per event, the
/// largest share of what a batch wrote, and a SHA-256 per line. Here an
/// accepted event costs ~75 bytes; a refused line keeps its own hash, so a
/// line shown later can still be matched to its refusal.
#[derive(Debug, Default)]
pub struct BatchRecord {
    events: Vec<u8>,
    refusals: Vec<u8>,
    accepted: u64,
    reasons: Vec<&'static str>,
}

impl BatchRecord {
    /// Room for a batch of `lines` lines, most of them accepted.
    pub fn with_capacity(lines: usize) -> Self {
        BatchRecord {
            events: Vec::with_capacity(lines.saturating_mul(80)),
            ..BatchRecord::default()
        }
    }

    /// Line `line` (from 1) was accepted; `ids` are its event's
    /// [`audit_ids`] without a key.
    pub fn accepted(&mut self, line: usize, ids: &[u8]) {
        use std::io::Write as _;
        let sep = if self.events.is_empty() { "" } else { "," };
        // Writing into a Vec cannot fail.
        let _ = write!(self.events, "{sep}{{\"line\":{line},");
        self.events.extend_from_slice(ids);
        self.events.push(b'}');
        self.accepted += 1;
    }

    /// Line `line` (from 1), whose bytes were `text`, was refused for
    /// `reason`; `ids` name its event if it had one (may be empty).
    pub fn refused(
        &mut self,
        line: usize,
        reason: &'static str,
        text: &[u8],
        ids: &[u8],
        error: Option<&str>,
    ) {
        use std::io::Write as _;
        let out = &mut self.refusals;
        let sep = if out.is_empty() { "" } else { "," };
        let _ = write!(out, "{sep}{{\"line\":{line},\"reason\":");
        json_str(out, reason);
        out.extend_from_slice(b",\"line_sha256\":\"");
        out.extend_from_slice(&sha256_hex_array(text));
        out.push(b'"');
        if !ids.is_empty() {
            out.push(b',');
            out.extend_from_slice(ids);
        }
        if let Some(e) = error {
            out.extend_from_slice(b",\"error\":");
            json_str(
                out,
                crate::util::truncate_at_char_boundary(e, BATCH_ERROR_MAX),
            );
        }
        out.push(b'}');
        self.reasons.push(reason);
    }

    /// Lines accepted so far.
    pub fn accepted_count(&self) -> u64 {
        self.accepted
    }

    /// `{` and the members, without the closing brace (see [`Pending`]).
    fn write_open(
        &self,
        out: &mut Vec<u8>,
        ts: &str,
        client_ip: &str,
        body_sha: &[u8; 64],
        key_id: &str,
    ) {
        use std::io::Write as _;
        out.extend_from_slice(b"{\"type\":");
        json_str(out, BATCH_RECORD);
        out.extend_from_slice(b",\"ts\":");
        json_str(out, ts);
        out.extend_from_slice(b",\"path\":\"/ingest/batch\",\"client_ip\":");
        json_str(out, client_ip);
        out.extend_from_slice(
            b",\"verification_status\":\"pass\",\"verification_reason\":\"ok\",\"body_sha256\":\"",
        );
        out.extend_from_slice(body_sha);
        out.extend_from_slice(b"\",\"key_id\":");
        json_str(out, key_id);
        let refused = self.reasons.len();
        let lines = self.accepted as usize + refused;
        let _ = write!(
            out,
            ",\"lines\":{lines},\"accepted\":{},\"refused\":{refused},\"events\":[",
            self.accepted
        );
        out.extend_from_slice(&self.events);
        out.extend_from_slice(b"],\"refusals\":[");
        out.extend_from_slice(&self.refusals);
        out.push(b']');
    }

    /// The record, serialised at `at` for `client` (see [`serialise_audit`]).
    pub fn serialise(
        &self,
        client: &SocketAddr,
        at: DateTime<Utc>,
        body_sha: &[u8; 64],
        key_id: &str,
    ) -> Pending {
        let ts = audit_ts(at);
        let ip = client.ip().to_string();
        let mut pending = Pending::with_capacity(1);
        pending.taken = self.accepted > 0;
        // `write_open` always opens an object: this cannot be refused.
        let _ = pending.push_open(|out| self.write_open(out, &ts, &ip, body_sha, key_id));
        pending
    }
}

/// One request's records as JSON, ready for [`AuditLog::append_pending`](crate::store::audit_log::AuditLog::append_pending):
/// they share the time they are written at and the client's address
/// (each formatted once).
pub fn serialise_audit(
    client: &SocketAddr,
    at: DateTime<Utc>,
    records: &[AuditRecord<'_>],
) -> Pending {
    let ts = audit_ts(at);
    let ip = client.ip().to_string();
    let mut pending = Pending::with_capacity(records.len());
    pending.taken = records.iter().any(|r| r.kind == ACCEPT);
    for r in records {
        // `write_open` always opens an object: this cannot be refused.
        let _ = pending.push_open(|out| r.write_open(out, &ts, &ip));
    }
    pending
}

/// An audit timestamp: RFC 3339 with as many sub-second digits (0, 3, 6
/// or 9) as it needs and `+00:00` (what the seed's `isoformat()` gives).
/// Same text as `format("%Y-%m-%dT%H:%M:%S%.f+00:00")` without parsing a
/// format string per record.
fn audit_ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_record_is_one_json_object_naming_every_line() {
        let mut r = BatchRecord::with_capacity(4);
        r.accepted(1, br#""event_id":"e-1","host":"h\"1","source":"auth""#);
        // A schema error names producer text of any length: it is cut at a
        // character boundary and escaped.
        let long = format!("unknown field `{}\u{7}`", "é".repeat(400));
        r.refused(
            2,
            "schema_validation_failed",
            b"{\"x\":1}",
            &[],
            Some(&long),
        );
        r.accepted(3, br#""event_id":"e-3","host":"h3","source":"auth""#);
        r.refused(4, "invalid_json", b"{not json", &[], None);
        assert_eq!(r.accepted_count(), 2);
        let client: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let pending = r.serialise(&client, Utc::now(), &[b'a'; 64], "k2026");
        assert!(pending.taken);
        let mut text = pending.buf_for_test().to_vec();
        text.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["type"], BATCH_RECORD);
        assert_eq!(v["client_ip"], "192.0.2.7");
        assert_eq!(v["body_sha256"], "a".repeat(64));
        assert_eq!(v["key_id"], "k2026");
        assert_eq!(
            (&v["lines"], &v["accepted"], &v["refused"]),
            (&4.into(), &2.into(), &2.into())
        );
        assert_eq!(v["events"][0]["host"], "h\"1");
        assert_eq!(v["events"][1]["line"], 3);
        let refusals = v["refusals"].as_array().unwrap();
        assert_eq!(refusals[0]["line"], 2);
        assert_eq!(
            refusals[0]["line_sha256"],
            crate::store::audit_log::sha256_hex(b"{\"x\":1}")
        );
        let error = refusals[0]["error"].as_str().unwrap();
        assert!(
            error.len() <= BATCH_ERROR_MAX && error.starts_with("unknown field `éé"),
            "{error}"
        );
        assert_eq!(refusals[1]["reason"], "invalid_json");
        assert!(refusals[1].get("error").is_none());
        // Nothing accepted: the record is a refusal's.
        let mut none = BatchRecord::default();
        none.refused(1, "invalid_json", b"x", &[], None);
        assert!(
            !none
                .serialise(&client, Utc::now(), &[b'a'; 64], "default")
                .taken
        );
    }

    #[test]
    fn audit_timestamps_keep_the_seed_form() {
        use chrono::{TimeZone, Timelike};
        for (nanos, text) in [
            (0, "2026-11-21T09:57:32+00:00"),
            (684_000_000, "2026-11-21T09:57:32.684+00:00"),
            (684_634_000, "2026-11-21T09:57:32.684634+00:00"),
            (684_634_086, "2026-11-21T09:57:32.684634086+00:00"),
            (1, "2026-11-21T09:57:32.000000001+00:00"),
        ] {
            let at = Utc
                .with_ymd_and_hms(2026, 11, 21, 9, 57, 32)
                .unwrap()
                .with_nanosecond(nanos)
                .unwrap();
            assert_eq!(audit_ts(at), text);
            assert_eq!(
                audit_ts(at),
                at.format("%Y-%m-%dT%H:%M:%S%.f+00:00").to_string()
            );
        }
    }
}

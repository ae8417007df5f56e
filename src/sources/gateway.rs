//! The signed HTTP gateway, wire-compatible with the MiniSIEM seed:
//! `POST /ingest` checks, in the seed's order, the HMAC-SHA256 signature over
//! the raw body (`X-ARES-SIGNATURE: sha256=<hex>`, constant-time compare),
//! JSON, the `sec.event.v1` schema, the replay window, then (in the engine)
//! idempotency and the per-host rate limit. Rejections use the seed's status
//! codes and `{"detail": reason}` bodies; every accept and reject is audited.
//!
//! Admin routes (`POST /hosts/{host}/release`, `DELETE /bans/{ip}`) need the
//! bearer token from config and are audited with who and why;
//! `GET /api/v1/decisions` lists bans and quarantines in force.
//!
//! `POST /ingest/batch` takes newline-delimited events signed as one body and
//! answers per line.
//!
//! Several producer keys may be configured; `X-ARES-KEY-ID` names the one
//! that signed the body, and without it the default (seed) key is used.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::engine::{AdminOutcome, EngineHandle, Refusal};
use crate::event::WireEvent;
use crate::store::audit_log::{AuditLog, Pending, json_str, sha256_hex_array};

pub const SIGNATURE_HEADER: &str = "x-ares-signature";
/// Names the producer key that signed the body; absent = the default key.
pub const KEY_ID_HEADER: &str = "x-ares-key-id";
/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the gateway needs to run.
pub struct GatewayState {
    /// The default key: used when a request names no key id (the seed).
    pub secret: Vec<u8>,
    /// Named producer keys, chosen by `X-ARES-KEY-ID`.
    pub producer_keys: std::collections::HashMap<String, Vec<u8>>,
    /// Bearer token for admin routes; `None` disables them.
    pub admin_token: Option<Vec<u8>>,
    /// Bearer token the read routes require; `None` leaves them open.
    pub read_token: Option<Vec<u8>>,
    pub replay_window_secs: i64,
    pub engine: EngineHandle,
    pub audit: Mutex<AuditLog>,
    /// Audit write failures, logged at most once a second.
    pub audit_failures: Mutex<crate::util::Complaints>,
    /// Whether the last audit write failed (for `GET /health`).
    pub audit_failing: std::sync::atomic::AtomicBool,
    /// What the gateway decided, for the summary `vigil serve` logs at stop.
    pub stats: Arc<GatewayStats>,
    pub limits: ConnectionLimits,
    /// Which refusals get an audit record each (the rest are summarised).
    pub refusals: Mutex<super::refusals::RefusalBudget>,
}

/// Bounds on connections and on slow clients (`[gateway]` in the config).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// To send a request's headers; also the longest idle time between
    /// requests on a kept-alive connection.
    pub header_timeout: std::time::Duration,
    /// To send a request's body once its headers are in.
    pub body_timeout: std::time::Duration,
}

impl ConnectionLimits {
    pub fn from_config(g: &crate::config::GatewayConfig) -> Self {
        ConnectionLimits {
            max_connections: g.max_connections as usize,
            max_connections_per_ip: g.max_connections_per_ip as usize,
            header_timeout: std::time::Duration::from_secs(g.header_timeout_secs.into()),
            body_timeout: std::time::Duration::from_secs(g.body_timeout_secs.into()),
        }
    }
}

/// Accepts and refusals (by reason and by client) since start; counted
/// from the audit records, so the summary and `audit.jsonl` always agree.
#[derive(Debug, Default)]
pub struct GatewayStats {
    accepted: std::sync::atomic::AtomicU64,
    refused: Mutex<Refused>,
    /// Connections turned away at the connection limits (never reached
    /// HTTP, so not in the audit log).
    connections_refused: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct Refused {
    by_reason: std::collections::BTreeMap<String, u64>,
    /// By [`super::client_key`], at most [`CLIENTS_COUNTED`] of them.
    by_client: std::collections::HashMap<std::net::IpAddr, u64>,
    /// From clients past that bound.
    other_clients: u64,
}

/// Clients whose refusals are counted one by one since start (a flood from
/// a whole IPv6 range cannot grow the map further).
pub const CLIENTS_COUNTED: usize = 4096;

impl GatewayStats {
    fn count(&self, client: std::net::IpAddr, records: &[AuditRecord<'_>]) {
        let accepted = records.iter().filter(|r| r.kind == ACCEPT).count() as u64;
        self.accepted
            .fetch_add(accepted, std::sync::atomic::Ordering::Relaxed);
        let refusals = (records.len() - accepted as usize) as u64;
        if refusals == 0 {
            return;
        }
        if let Ok(mut refused) = self.refused.lock() {
            for r in records.iter().filter(|r| r.kind != ACCEPT) {
                match refused.by_reason.get_mut(r.reason) {
                    Some(n) => *n += 1,
                    None => {
                        refused.by_reason.insert(r.reason.to_string(), 1);
                    }
                }
            }
            let key = super::client_key(client);
            let room = refused.by_client.len() < CLIENTS_COUNTED;
            match refused.by_client.get_mut(&key) {
                Some(n) => *n += refusals,
                None if room => {
                    refused.by_client.insert(key, refusals);
                }
                None => refused.other_clients += refusals,
            }
        }
    }

    /// Counts accept records written without [`GatewayStats::count`].
    fn count_accepted(&self, n: u64) {
        self.accepted
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn counts(&self) -> IngestCounts {
        let (mut refused, mut refused_by_client) = self
            .refused
            .lock()
            .map(|m| {
                let reasons: Vec<(String, u64)> =
                    m.by_reason.iter().map(|(k, n)| (k.clone(), *n)).collect();
                let mut clients: Vec<(String, u64)> = m
                    .by_client
                    .iter()
                    .map(|(k, n)| (super::client_name(*k), *n))
                    .collect();
                if m.other_clients > 0 {
                    clients.push(("others".into(), m.other_clients));
                }
                (reasons, clients)
            })
            .unwrap_or_default();
        sort_most_first(&mut refused);
        sort_most_first(&mut refused_by_client);
        IngestCounts {
            accepted: self.accepted.load(std::sync::atomic::Ordering::Relaxed),
            refused,
            refused_by_client,
            connections_refused: self
                .connections_refused
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// `gateway: 1200 accepted, 7 refused (signature_mismatch 5, ...)`.
    pub fn summary(&self) -> String {
        let c = self.counts();
        let mut s = format!(
            "gateway: {} accepted, {} refused",
            c.accepted,
            c.refused_total()
        );
        if !c.refused.is_empty() {
            s.push_str(&format!(" ({})", c.reasons(usize::MAX)));
        }
        if c.connections_refused > 0 {
            s.push_str(&format!(
                "; {} connections turned away at the connection limits",
                c.connections_refused
            ));
        }
        s
    }
}

/// `a 5, b 3, 4 other`: the first `max` of a list sorted most first, then
/// what the rest add up to.
fn top(counts: &[(String, u64)], max: usize) -> String {
    let mut parts: Vec<String> = counts
        .iter()
        .take(max)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let rest: u64 = counts.iter().skip(max).map(|(_, n)| n).sum();
    if rest > 0 {
        parts.push(format!("{rest} other"));
    }
    parts.join(", ")
}

fn sort_most_first(v: &mut [(String, u64)]) {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// The gateway's accepts and refusals at one moment (or, from
/// [`IngestCounts::since`], between two): what shows a producer being
/// turned away (a rotated secret, a clock drifting out of the replay
/// window) while the event stream merely goes quiet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestCounts {
    pub accepted: u64,
    /// Refusals by reason (the audit log's), most frequent first.
    pub refused: Vec<(String, u64)>,
    /// The same refusals by client (an IPv4 address or an IPv6 /64; past
    /// [`CLIENTS_COUNTED`] clients, "others"), most first.
    pub refused_by_client: Vec<(String, u64)>,
    /// Connections turned away at the connection limits (never audited:
    /// they did not reach HTTP).
    pub connections_refused: u64,
}

impl IngestCounts {
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|(_, n)| n).sum()
    }

    /// What came between `earlier` and these counts: reasons and clients
    /// that did not grow are left out.
    pub fn since(&self, earlier: &IngestCounts) -> IngestCounts {
        fn grown(now: &[(String, u64)], before: &[(String, u64)]) -> Vec<(String, u64)> {
            let before: std::collections::HashMap<&str, u64> =
                before.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            let mut v: Vec<(String, u64)> = now
                .iter()
                .map(|(k, n)| {
                    let was = before.get(k.as_str()).copied().unwrap_or(0);
                    (k.clone(), n.saturating_sub(was))
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            sort_most_first(&mut v);
            v
        }
        IngestCounts {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            refused: grown(&self.refused, &earlier.refused),
            refused_by_client: grown(&self.refused_by_client, &earlier.refused_by_client),
            connections_refused: self
                .connections_refused
                .saturating_sub(earlier.connections_refused),
        }
    }

    /// `stale_timestamp 50, signature_mismatch 7`: the `max` most frequent
    /// reasons, then how many refusals the others add up to.
    pub fn reasons(&self, max: usize) -> String {
        top(&self.refused, max)
    }

    /// `203.0.113.9 50, 192.0.2.7 7`: the clients refused most, as
    /// [`IngestCounts::reasons`].
    pub fn clients(&self, max: usize) -> String {
        top(&self.refused_by_client, max)
    }

    /// The line `vigil serve` logs for a minute in which something was
    /// turned away; `None` for a minute without.
    pub fn minute_report(&self) -> Option<String> {
        let refused = self.refused_total();
        if refused == 0 && self.connections_refused == 0 {
            return None;
        }
        let mut s = format!(
            "gateway, last minute: {refused} refused{}, {} accepted",
            if refused > 0 {
                format!(" ({}; from {})", self.reasons(usize::MAX), self.clients(5))
            } else {
                String::new()
            },
            self.accepted
        );
        if self.connections_refused > 0 {
            s.push_str(&format!(
                "; {} connections turned away at the connection limits",
                self.connections_refused
            ));
        }
        Some(s)
    }
}

pub fn router(state: Arc<GatewayState>) -> Router {
    // Alerts, host states and decisions say which addresses are banned and
    // which hosts are watched: with a read token set, only its holders (and
    // the admin's) may read them.
    let reads = Router::new()
        .route("/alerts/recent", get(alerts_recent))
        .route("/hosts/{host}/state", get(host_state))
        .route("/api/v1/decisions", get(decisions))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_read_token,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ingest", post(ingest))
        .route("/ingest/batch", post(ingest_batch))
        .route("/hosts/{host}/release", post(release_host))
        .route("/bans/{ip}", axum::routing::delete(unban_ip))
        .merge(reads)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_body_in_time,
        ))
        .with_state(state)
}

/// Reads every request's body before its handler runs, within
/// [`ConnectionLimits::body_timeout`] and [`MAX_BODY_BYTES`]: a client that
/// trickles its body gets 408 instead of holding a connection, and one that
/// sends too much gets 413 as soon as that is known (from its declared
/// length, or once the limit is passed). Both are audited.
///
/// After a 413 the rest of the body is read and thrown away in the
/// background (at most [`DISCARD_BYTES`], within the body timeout), as
/// nginx's lingering close does: closing on a client still sending makes
/// its socket reset, and it would see a broken pipe instead of the answer.
async fn read_body_in_time(
    State(st): State<Arc<GatewayState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body_util::BodyExt;
    let (parts, mut body) = req.into_parts();
    let deadline = tokio::time::Instant::now() + st.limits.body_timeout;
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let refuse = |code: StatusCode, reason: &'static str| {
        if let Some(ConnectInfo(client)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            let path = sanitize_path(parts.uri.path());
            st.write_audit(client, &[AuditRecord::reject(reason, &path, None)]);
        }
        reject(code, reason)
    };
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        tokio::spawn(discard(body, deadline));
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    }
    // One chunk (the usual case) is passed on as it is, without a copy.
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return refuse(StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            Ok(None) => break,
            // The client went away or sent a malformed body.
            Ok(Some(Err(_))) => return refuse(StatusCode::BAD_REQUEST, "body_unreadable"),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let held = first.as_ref().map_or(0, Bytes::len) + more.len();
        if held + data.len() > MAX_BODY_BYTES {
            tokio::spawn(discard(body, deadline));
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        }
        match &first {
            None => first = Some(data),
            Some(f) => {
                if more.is_empty() {
                    // Room for the declared length at once (within the
                    // bound), not a doubling per frame.
                    let want = declared.map_or(0, |n| n.min(MAX_BODY_BYTES as u64) as usize);
                    more.reserve(want.max(f.len() + data.len()));
                    more.extend_from_slice(f);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    let bytes = if more.is_empty() {
        first.unwrap_or_default()
    } else {
        Bytes::from(more)
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Most of a refused body read and thrown away so the client sees the 413.
pub const DISCARD_BYTES: usize = 16 * 1024 * 1024;

async fn discard(mut body: axum::body::Body, deadline: tokio::time::Instant) {
    use http_body_util::BodyExt;
    let mut left = DISCARD_BYTES;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        let n = frame.data_ref().map_or(0, Bytes::len);
        if n >= left {
            return;
        }
        left -= n;
    }
}

/// A request path for the audit log: at most 200 characters, control
/// characters replaced (it is client text).
fn sanitize_path(path: &str) -> String {
    crate::util::sanitize_for_terminal(path)
        .chars()
        .take(200)
        .collect()
}

/// `{"status": "ok"}` as the seed's, or 503 `degraded` with what fails:
/// the store's commits (since when, the latest error) or audit writes, so
/// monitoring notices a full disk before the producers' retries pile up.
async fn health(State(st): State<Arc<GatewayState>>) -> Response {
    let store = st.engine.store_problem();
    let audit = st.audit_outage();
    if store.is_none() && audit.is_none() {
        return axum::Json(json!({ "status": "ok", "service": "vigil" })).into_response();
    }
    let mut body = json!({ "status": "degraded", "service": "vigil" });
    if let Some((since, error)) = store {
        body["store"] = json!({ "failing_since_utc": since, "error": error });
    }
    if let Some(o) = audit {
        body["audit"] = json!({
            "failing": true,
            "failing_since_utc": o.since,
            "error": o.error,
            "records_held": o.held,
            "records_lost": o.lost,
        });
    }
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

fn reject(code: StatusCode, reason: &str) -> Response {
    (code, axum::Json(json!({ "detail": reason }))).into_response()
}

/// HMAC-SHA256 over the raw body, compared in constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), &'static str> {
    let header = header.ok_or("missing_signature")?;
    let hex = header
        .strip_prefix("sha256=")
        .ok_or("bad_signature_format")?
        .trim();
    let provided = decode_hex(hex).ok_or("signature_mismatch")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "signature_mismatch")?;
    mac.update(body);
    mac.verify_slice(&provided)
        .map_err(|_| "signature_mismatch")
}

/// `sha256=<hex>` for `body` (producers and tests sign with this).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut s = String::from("sha256=");
    for b in tag.iter() {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(val(p[0])? << 4 | val(p[1])?))
        .collect()
}

impl GatewayState {
    /// Checks the body's signature with the key the request names. On
    /// success returns the key id used (`None` for the default key).
    fn check_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<String>, &'static str> {
        let header = headers
            .get(SIGNATURE_HEADER)
            .map(|v| v.to_str().unwrap_or(""))
            .filter(|h| !h.is_empty());
        let key_id = match headers.get(KEY_ID_HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| "unknown_key_id")?.trim()),
        };
        match key_id {
            None | Some("default") => verify_signature(&self.secret, body, header).map(|_| None),
            Some(id) => {
                // Unknown ids and bad signatures cost the same HMAC, so timing
                // does not tell which key ids exist.
                let (secret, known) = match self.producer_keys.get(id) {
                    Some(k) => (k.as_slice(), true),
                    None => (self.secret.as_slice(), false),
                };
                let verdict = verify_signature(secret, body, header);
                match (known, verdict) {
                    (true, Ok(())) => Ok(Some(id.to_string())),
                    (_, Err(r @ ("missing_signature" | "bad_signature_format"))) => Err(r),
                    (false, _) => Err("unknown_key_id"),
                    (true, Err(r)) => Err(r),
                }
            }
        }
    }

    /// The signature check both ingest routes start with: the id of the key
    /// that signed the body, or the (audited) reason for a 401. The body's
    /// hash is left to the caller: a batch's accepted lines are audited
    /// with their own hashes, so hashing the whole body would be wasted.
    fn authenticate(
        &self,
        client: &SocketAddr,
        headers: &HeaderMap,
        body: &[u8],
        path: &'static str,
    ) -> Result<String, &'static str> {
        match self.check_signature(headers, body) {
            Ok(k) => Ok(k.unwrap_or_else(|| "default".into())),
            Err(reason) => {
                let sha = sha256_hex_array(body);
                self.write_audit(client, &[AuditRecord::reject(reason, path, Some(sha))]);
                Err(reason)
            }
        }
    }

    fn audit_failed(&self, e: &std::io::Error) {
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
    /// see [`AuditLog`]). Events already accepted when the write failed are
    /// stored, their records held and written on recovery.
    fn audit_ready(&self) -> bool {
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
    fn audit_unavailable(
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
    fn write_audit(&self, client: &SocketAddr, records: &[AuditRecord<'_>]) {
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

    /// Ends the refusal budget's minute if it is over (writing its summary,
    /// ahead of whatever the caller writes next) and lets `decide` use the
    /// budget; `None` if its lock is poisoned (then everything is written).
    fn with_refusal_budget<T>(
        &self,
        now: DateTime<Utc>,
        decide: impl FnOnce(&mut super::refusals::RefusalBudget) -> T,
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
    fn append_summary(&self, summary: &super::refusals::Summary) {
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

const ACCEPT: &str = "gateway_accept";
const REJECT: &str = "gateway_reject";

/// One audit record for an accept or reject, as the gateway builds it;
/// [`serialise_audit`] writes it with the request's time and client.
/// Keys, in this order: `type`, `ts`, `path`, `client_ip`,
/// `verification_status`, `verification_reason`, `body_sha256`, then the
/// event's ids when it had them (`event_id`, `host`, `source`, a batch's
/// `line`, `key_id`; see [`audit_ids`]), then a schema `error`; `prev`
/// last (added by the log).
#[derive(Clone, Copy)]
pub struct AuditRecord<'a> {
    kind: &'static str,
    reason: &'static str,
    path: &'a str,
    /// Hex SHA-256 of the body or batch line; `None` when the body was
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

    fn with_error(self, error: &'a str) -> Self {
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
/// `out`: `"event_id":…,"host":…,"source":…`, a batch's `"line":N` (from
/// 1), `"key_id":…` (the producer key that signed it). Written once per
/// event, before the event goes to the engine.
pub fn audit_ids(out: &mut Vec<u8>, ev: &crate::event::Event, line: Option<usize>, key_id: &str) {
    out.extend_from_slice(b"\"event_id\":");
    json_str(out, &ev.event_id);
    out.extend_from_slice(b",\"host\":");
    json_str(out, &ev.host);
    out.extend_from_slice(b",\"source\":");
    json_str(out, &ev.source);
    if let Some(line) = line {
        audit_line(out, line, true);
    }
    out.extend_from_slice(b",\"key_id\":");
    json_str(out, key_id);
}

/// `"line":N`, with a leading comma when it follows other members.
fn audit_line(out: &mut Vec<u8>, line: usize, comma: bool) {
    use std::io::Write as _;
    let sep = if comma { "," } else { "" };
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{sep}\"line\":{line}");
}

/// One request's records as JSON, ready for [`AuditLog::append_pending`]:
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

async fn ingest(
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
                audit_ids(&mut ids, ev, None, &key_id);
            }
            let record = AuditRecord::reject(r.reason(), "/ingest", Some(body_sha));
            st.write_audit(&client, &[record.with_ids(&ids)]);
            return reject(StatusCode::BAD_REQUEST, r.reason());
        }
    };
    let mut ids = Vec::with_capacity(128);
    audit_ids(&mut ids, &ev, None, &key_id);
    let event_id = ev.event_id.clone();
    let refused = |reason| AuditRecord::reject(reason, "/ingest", Some(body_sha)).with_ids(&ids);
    // The accept record goes with the event: if it is stored, the store
    // writer appends the record with its group's before the answer comes.
    let accept = [AuditRecord::accept("/ingest", body_sha, &ids)];
    let record = serialise_audit(&client, Utc::now(), &accept);
    match st.engine.ingest_recorded(ev, record).await {
        Ok((Ok(acc), recorded)) => {
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
    let ev = match serde_json::from_slice::<WireEvent<&str>>(body) {
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

/// Audit fields naming an event and the key that signed it.
/// `POST /ingest/batch`: newline-delimited `sec.event.v1` events signed as
/// one body. Each line gets its own result; one bad line does not sink the
/// batch. The answer comes after every accepted line is committed.
async fn ingest_batch(
    State(st): State<Arc<GatewayState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key_id = match st.authenticate(&client, &headers, &body, "/ingest/batch") {
        Ok(key_id) => key_id,
        Err(reason) => return reject(StatusCode::UNAUTHORIZED, reason),
    };
    if let Some(refused) = st.audit_unavailable(&client, &body, BATCH) {
        return refused;
    }
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.len() > MAX_BATCH_LINES {
        let r = AuditRecord::reject("batch_too_large", BATCH, Some(sha256_hex_array(&body)));
        st.write_audit(&client, &[r]);
        return reject(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large");
    }
    let now = Utc::now();
    let mut results: Vec<LineResult> = Vec::with_capacity(lines.len());
    // Each line's hash and audit ids, taken while the line and its event
    // are at hand (the events go to the engine); the records are built
    // once the engine has answered.
    let mut shas = Vec::with_capacity(lines.len());
    let mut ids = Vec::with_capacity(lines.len() * 112);
    let mut ids_end = Vec::with_capacity(lines.len());
    let mut pending = Vec::new();
    let mut refused_early = Vec::new();
    let mut events = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        shas.push(sha256_hex_array(line));
        match check_event(&st, line, now) {
            Ok(ev) => {
                audit_ids(&mut ids, &ev, Some(i + 1), &key_id);
                pending.push((i, ev.event_id.clone()));
                events.push(ev);
                results.push(LineResult::new(i, 0));
            }
            Err(r) => {
                match &r {
                    // A valid event outside the window: named, as on /ingest.
                    Rejected::Replay(ev) => audit_ids(&mut ids, ev, Some(i + 1), &key_id),
                    _ => audit_line(&mut ids, i + 1, false),
                }
                refused_early.push(i);
                results.push(LineResult {
                    detail: Some(r.reason()),
                    ..LineResult::new(i, 400)
                });
            }
        }
        ids_end.push(ids.len());
    }
    // Audited in this order: refused lines, then the engine's answers.
    let order: Vec<usize> = refused_early
        .into_iter()
        .chain(pending.iter().map(|(i, _)| *i))
        .collect();
    let mut ok = 0u64;
    let mut answers = match st
        .engine
        .submit_many(events, crate::engine::Origin::Producer)
        .await
    {
        Ok(receipt) => receipt.answers().await,
        Err(_) => Vec::new(),
    }
    .into_iter();
    for (i, id) in pending {
        let answer = answers.next().flatten();
        let result = match answer {
            Some(Ok(acc)) => {
                ok += 1;
                LineResult {
                    final_decision: Some(acc.policy.decision),
                    correlation_reasons: Some(acc.verdict.reasons),
                    ..LineResult::new(i, 200)
                }
            }
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
    let records: Vec<AuditRecord<'_>> = order
        .into_iter()
        .map(|i| {
            let line_ids = &ids[if i == 0 { 0 } else { ids_end[i - 1] }..ids_end[i]];
            match results[i].detail {
                None => AuditRecord::accept(BATCH, shas[i], line_ids),
                Some(reason) => {
                    AuditRecord::reject(reason, BATCH, Some(shas[i])).with_ids(line_ids)
                }
            }
        })
        .collect();
    st.write_audit(&client, &records);
    let bad = results.len() as u64 - ok;
    tracing::debug!("batch from {}: {ok} accepted, {bad} refused", client.ip());
    let answer = BatchAnswer {
        accepted: ok,
        rejected: bad,
        results,
    };
    json_response(answer.to_json())
}

/// 200 with a JSON body written beforehand.
fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `/ingest`'s answer to an accepted event, as the seed shapes it (keys in
/// the order serde_json's map gives them):
/// `{"accepted":true,"correlation":{"context","decision","reasons"},
/// "event_id","final_decision","gateway_reason":"ok","policy":{"context",
/// "decision","reasons"}}`, the policy context carrying the correlation
/// reasons too. Written directly: building it as `serde_json::Value`s took
/// ~5 % of the gateway's CPU at concurrency 16. A unit test pins it to
/// what that built.
fn ingest_answer(event_id: &str, acc: &crate::engine::Accepted) -> Vec<u8> {
    use std::io::Write as _;
    fn reasons(out: &mut Vec<u8>, rs: &[&str]) {
        out.push(b'[');
        for (i, r) in rs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, r);
        }
        out.push(b']');
    }
    fn number(out: &mut Vec<u8>, comma: &mut bool, key: &str, v: Option<u32>) {
        if let Some(v) = v {
            if std::mem::replace(comma, true) {
                out.push(b',');
            }
            let _ = write!(out, "\"{key}\":{v}");
        }
    }
    fn time(out: &mut Vec<u8>, key: &str, t: Option<DateTime<Utc>>) {
        if let Some(t) = t {
            let _ = write!(out, "\"{key}\":");
            // A timestamp serialises as a plain string: this cannot fail.
            let _ = serde_json::to_writer(&mut *out, &t);
            out.push(b',');
        }
    }
    let (v, p) = (&acc.verdict, &acc.policy);
    let c = &v.context;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"accepted\":true,\"correlation\":{\"context\":{");
    let mut comma = false;
    number(
        &mut out,
        &mut comma,
        "brute_window_seconds",
        c.brute_window_seconds,
    );
    number(
        &mut out,
        &mut comma,
        "login_failed_count",
        c.login_failed_count,
    );
    number(&mut out, &mut comma, "spray_fail_count", c.spray_fail_count);
    number(
        &mut out,
        &mut comma,
        "spray_unique_users",
        c.spray_unique_users,
    );
    number(
        &mut out,
        &mut comma,
        "spray_window_seconds",
        c.spray_window_seconds,
    );
    number(&mut out, &mut comma, "storm_count", Some(c.storm_count));
    number(
        &mut out,
        &mut comma,
        "storm_window_seconds",
        Some(c.storm_window_seconds),
    );
    number(
        &mut out,
        &mut comma,
        "success_prior_fail_count",
        c.success_prior_fail_count,
    );
    number(
        &mut out,
        &mut comma,
        "success_window_seconds",
        c.success_window_seconds,
    );
    out.extend_from_slice(b"},\"decision\":");
    json_str(&mut out, v.decision.as_str());
    out.extend_from_slice(b",\"reasons\":");
    reasons(&mut out, &v.reasons);
    out.extend_from_slice(b"},\"event_id\":");
    json_str(&mut out, event_id);
    out.extend_from_slice(b",\"final_decision\":");
    json_str(&mut out, p.decision.as_str());
    out.extend_from_slice(b",\"gateway_reason\":\"ok\",\"policy\":{\"context\":{");
    let pc = &p.context;
    time(
        &mut out,
        "cooldown_set_until_utc",
        pc.cooldown_set_until_utc,
    );
    time(&mut out, "cooldown_until_utc", pc.cooldown_until_utc);
    out.extend_from_slice(b"\"correlation_decision\":");
    json_str(&mut out, pc.correlation_decision.as_str());
    out.extend_from_slice(b",\"correlation_reasons\":");
    reasons(&mut out, &v.reasons);
    let _ = write!(out, ",\"severity\":{}", pc.severity);
    if let Some(t) = pc.src_ip_banned_until_utc {
        out.push(b',');
        time(&mut out, "src_ip_banned_until_utc", Some(t));
        out.pop();
    }
    out.extend_from_slice(b"},\"decision\":");
    json_str(&mut out, p.decision.as_str());
    out.extend_from_slice(b",\"reasons\":");
    reasons(&mut out, &p.reasons);
    out.extend_from_slice(b"}}");
    out
}

#[derive(Serialize)]
struct BatchAnswer {
    accepted: u64,
    rejected: u64,
    results: Vec<LineResult>,
}

/// One line's answer in `/ingest/batch`.
#[derive(Serialize)]
struct LineResult {
    line: usize,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    final_decision: Option<crate::detect::Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_reasons: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'static str>,
}

impl BatchAnswer {
    /// The same JSON as its `Serialize` form, written directly: a batch's
    /// answer is ~100 bytes per line, and serde's generic path cost ~5 %
    /// of a batch's time.
    fn to_json(&self) -> Vec<u8> {
        use std::io::Write as _;
        let mut out = Vec::with_capacity(48 + self.results.len() * 112);
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"accepted\":{},\"rejected\":{},\"results\":[",
            self.accepted, self.rejected
        );
        for (n, r) in self.results.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{{\"line\":{},\"status\":{}", r.line, r.status);
            if let Some(id) = &r.event_id {
                out.extend_from_slice(b",\"event_id\":");
                json_str(&mut out, id);
            }
            if let Some(d) = r.final_decision {
                out.extend_from_slice(b",\"final_decision\":");
                json_str(&mut out, d.as_str());
            }
            if let Some(reasons) = &r.correlation_reasons {
                out.extend_from_slice(b",\"correlation_reasons\":[");
                for (i, reason) in reasons.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json_str(&mut out, reason);
                }
                out.push(b']');
            }
            if let Some(d) = r.detail {
                out.extend_from_slice(b",\"detail\":");
                json_str(&mut out, d);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        out
    }
}

impl LineResult {
    fn new(index: usize, status: u16) -> Self {
        LineResult {
            line: index + 1,
            status,
            event_id: None,
            final_decision: None,
            correlation_reasons: None,
            detail: None,
        }
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn alerts_recent(State(st): State<Arc<GatewayState>>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, 200) as usize;
    match st.engine.recent_alerts(limit).await {
        Ok(alerts) => axum::Json(json!({ "alerts": alerts })).into_response(),
        Err(_) => reject(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
    }
}

async fn host_state(State(st): State<Arc<GatewayState>>, Path(host): Path<String>) -> Response {
    match st.engine.host_state(host.clone()).await {
        Ok(s) => axum::Json(json!({
            "host": host,
            "cooldown_until_utc": s.cooldown_until_utc,
            "quarantine": s.quarantine.is_some(),
            "quarantine_detail": s.quarantine,
            "released_through_utc": s.released_through_utc,
        }))
        .into_response(),
        Err(_) => reject(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
    }
}

#[derive(Deserialize)]
struct AdminBody {
    reason: String,
    by: String,
}

/// Whether the request's `Authorization: Bearer …` is `token`, compared
/// in constant time.
fn bearer_is(token: &[u8], headers: &HeaderMap) -> bool {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // HMAC both sides with a fixed key: equal-length digests compared in constant time.
    let digest = |b: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(b"vigil-admin-token").ok()?;
        m.update(b);
        Some(m.finalize().into_bytes())
    };
    matches!((digest(token), digest(given.as_bytes())), (Some(a), Some(b)) if a == b)
}

/// The admin routes' check: a token must be configured and sent.
fn authorised(st: &GatewayState, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let Some(token) = st.admin_token.as_deref() else {
        return Err((StatusCode::FORBIDDEN, "admin_disabled"));
    };
    if bearer_is(token, headers) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "bad_admin_token"))
    }
}

/// The read routes' check, when a read token is set: it, or the admin
/// token, as the bearer. A refusal is audited like the gateway's others
/// (within the client's share of the minute).
async fn require_read_token(
    State(st): State<Arc<GatewayState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = st.read_token.as_deref() else {
        return next.run(req).await;
    };
    let headers = req.headers();
    if bearer_is(token, headers)
        || st
            .admin_token
            .as_deref()
            .is_some_and(|a| bearer_is(a, headers))
    {
        return next.run(req).await;
    }
    const REASON: &str = "bad_read_token";
    if let Some(ConnectInfo(client)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        let path = sanitize_path(req.uri().path());
        st.write_audit(client, &[AuditRecord::reject(REASON, &path, None)]);
    }
    reject(StatusCode::UNAUTHORIZED, REASON)
}

impl GatewayState {
    fn audit_admin(
        &self,
        client: &SocketAddr,
        action: &str,
        target: &str,
        by: &str,
        reason: &str,
        outcome: &str,
    ) {
        let mut m = Map::new();
        m.insert("type".into(), "admin_action".into());
        m.insert("ts".into(), Utc::now().to_rfc3339().into());
        m.insert("client_ip".into(), client.ip().to_string().into());
        m.insert("action".into(), action.into());
        m.insert("target".into(), target.into());
        m.insert("by".into(), by.into());
        m.insert("reason".into(), reason.into());
        m.insert("outcome".into(), outcome.into());
        if let Ok(mut log) = self.audit.lock() {
            if let Err(e) = log.append(m) {
                self.audit_failed(&e);
            }
        }
    }
}

async fn admin(
    st: Arc<GatewayState>,
    client: SocketAddr,
    headers: HeaderMap,
    body: Bytes,
    req: impl FnOnce(AdminBody) -> crate::engine::AdminRequest,
    action: &str,
    target: &str,
) -> Response {
    if let Err((code, reason)) = authorised(&st, &headers) {
        // Anyone can send these: audited like the gateway's refusals,
        // within the client's share of the minute.
        let now = Utc::now();
        if st
            .with_refusal_budget(now, |b| b.admit(client.ip(), reason, now))
            .unwrap_or(true)
        {
            st.audit_admin(&client, action, target, "", "", "unauthorised");
        }
        return reject(code, reason);
    }
    let parsed: AdminBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => return reject(StatusCode::BAD_REQUEST, "reason_and_by_required"),
    };
    let (by, reason) = (parsed.by.clone(), parsed.reason.clone());
    // An admin action must be audited: none is taken while it cannot be.
    if !st.audit_ready() {
        st.audit_admin(&client, action, target, &by, &reason, AUDIT_UNAVAILABLE);
        return reject(StatusCode::SERVICE_UNAVAILABLE, AUDIT_UNAVAILABLE);
    }
    let request = req(parsed);
    match st.engine.admin(request).await {
        Ok(AdminOutcome::Done(done)) => {
            st.audit_admin(&client, action, target, &by, &reason, "ok");
            axum::Json(json!({ "ok": true, "action": done })).into_response()
        }
        Ok(AdminOutcome::Refused(e)) => {
            st.audit_admin(&client, action, target, &by, &reason, &e);
            (StatusCode::CONFLICT, axum::Json(json!({ "detail": e }))).into_response()
        }
        Ok(AdminOutcome::NotStored(done)) => {
            // It took effect: saying only "failed" would invite a second,
            // different action on a false premise.
            st.audit_admin(
                &client,
                action,
                target,
                &by,
                &reason,
                "in_effect_not_stored",
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({
                    "detail": "store_unavailable",
                    "in_effect": true,
                    "action": done,
                    "note": "in force now; written to the store once it recovers (retried every second), lost if vigil stops first",
                })),
            )
                .into_response()
        }
        Err(_) => reject(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
    }
}

async fn release_host(
    State(st): State<Arc<GatewayState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(host): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = host.clone();
    admin(
        st,
        client,
        headers,
        body,
        move |b| crate::engine::AdminRequest::Release {
            host: h,
            reason: b.reason,
            by: b.by,
        },
        "release_host",
        &host,
    )
    .await
}

async fn unban_ip(
    State(st): State<Arc<GatewayState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(ip): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(addr) = crate::event::parse_ip(&ip) else {
        return reject(StatusCode::BAD_REQUEST, "not_an_ip_address");
    };
    admin(
        st,
        client,
        headers,
        body,
        move |b| crate::engine::AdminRequest::Unban {
            ip: addr,
            reason: b.reason,
            by: b.by,
        },
        "unban_ip",
        &ip,
    )
    .await
}

async fn decisions(State(st): State<Arc<GatewayState>>) -> Response {
    match st.engine.decisions().await {
        Ok(d) => axum::Json(d).into_response(),
        Err(_) => reject(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(accepted: u64, refused: &[(&str, u64)], turned_away: u64) -> IngestCounts {
        IngestCounts {
            accepted,
            refused: refused.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            refused_by_client: Vec::new(),
            connections_refused: turned_away,
        }
    }

    #[test]
    fn a_minute_reports_only_the_refusals_that_grew_most_first() {
        let before = counts(100, &[("signature_mismatch", 7), ("stale_timestamp", 3)], 0);
        let after = counts(
            160,
            &[
                ("stale_timestamp", 53),
                ("signature_mismatch", 7),
                ("invalid_json", 1),
            ],
            2,
        );
        let (mut before, mut after) = (before, after);
        before.refused_by_client = vec![("192.0.2.7".into(), 10)];
        after.refused_by_client = vec![("192.0.2.7".into(), 60), ("2001:db8::/64".into(), 1)];
        let minute = after.since(&before);
        let mut want = counts(60, &[("stale_timestamp", 50), ("invalid_json", 1)], 2);
        want.refused_by_client = vec![("192.0.2.7".into(), 50), ("2001:db8::/64".into(), 1)];
        assert_eq!(minute, want);
        assert_eq!(
            minute.minute_report().as_deref(),
            Some(
                "gateway, last minute: 51 refused (stale_timestamp 50, invalid_json 1; \
                 from 192.0.2.7 50, 2001:db8::/64 1), 60 accepted; \
                 2 connections turned away at the connection limits"
            )
        );
        // Nothing turned away: nothing to say, however much was accepted.
        assert_eq!(after.since(&after).minute_report(), None);
        assert_eq!(counts(9, &[], 0).minute_report(), None);
        assert_eq!(
            counts(0, &[], 1).minute_report().as_deref(),
            Some(
                "gateway, last minute: 0 refused, 0 accepted; \
                 1 connections turned away at the connection limits"
            )
        );
    }

    #[test]
    fn refusals_are_counted_by_client_within_a_bound() {
        let stats = GatewayStats::default();
        let no = |reason| AuditRecord::reject(reason, "/ingest", None);
        let ok = AuditRecord {
            kind: ACCEPT,
            ..no("ok")
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        stats.count(ip("192.0.2.7"), &[no("signature_mismatch")]);
        // A batch: its refused lines count for its client, its accepts not.
        stats.count(ip("192.0.2.7"), &[ok, no("invalid_json"), ok]);
        stats.count(ip("2001:db8:1:2::5"), &[no("missing_signature")]);
        stats.count(ip("2001:db8:1:2::6"), &[no("missing_signature")]);
        let c = stats.counts();
        assert_eq!(c.accepted, 2);
        assert_eq!(c.clients(9), "192.0.2.7 2, 2001:db8:1:2::/64 2");
        for i in 0..CLIENTS_COUNTED as u32 {
            stats.count(
                std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
                &[no("x")],
            );
        }
        let c = stats.counts();
        assert_eq!(c.refused_by_client.len(), CLIENTS_COUNTED + 1);
        assert!(c.refused_by_client.contains(&("others".into(), 2)));
        assert_eq!(
            c.refused_by_client.iter().map(|(_, n)| n).sum::<u64>(),
            c.refused_total()
        );
    }

    #[test]
    fn reasons_past_the_first_few_are_summed() {
        let c = counts(0, &[("a", 5), ("b", 3), ("c", 2), ("d", 1)], 0);
        assert_eq!(c.reasons(2), "a 5, b 3, 3 other");
        assert_eq!(c.reasons(usize::MAX), "a 5, b 3, c 2, d 1");
        assert_eq!(c.refused_total(), 11);
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

    #[test]
    fn batch_answers_are_written_as_serde_would() {
        use crate::detect::Decision;
        let line = |i, status, id: Option<&str>, d, reasons: Option<Vec<&'static str>>, detail| {
            LineResult {
                event_id: id.map(String::from),
                final_decision: d,
                correlation_reasons: reasons,
                detail,
                ..LineResult::new(i, status)
            }
        };
        for results in [
            vec![],
            vec![
                line(0, 200, Some("a"), Some(Decision::Allow), Some(vec![]), None),
                line(
                    1,
                    200,
                    Some("id \"q\"\n\u{1}"),
                    Some(Decision::Block),
                    Some(vec!["x", "y\\z"]),
                    None,
                ),
                line(2, 400, None, None, None, Some("invalid_json")),
                line(3, 409, Some("é"), None, None, Some("duplicate_event_id")),
                line(
                    4,
                    200,
                    Some(""),
                    Some(Decision::Throttle),
                    Some(vec!["r"]),
                    None,
                ),
            ],
        ] {
            let answer = BatchAnswer {
                accepted: 3,
                rejected: results.len() as u64,
                results,
            };
            assert_eq!(
                String::from_utf8(answer.to_json()).unwrap(),
                serde_json::to_string(&answer).unwrap()
            );
        }
    }

    #[test]
    fn ingest_answers_are_written_as_the_value_tree_gave_them() {
        use crate::detect::Decision;
        use crate::detect::rules::CorrelationContext;
        use crate::engine::Accepted;
        use crate::respond::policy::{PolicyContext, PolicyDecision};
        use chrono::TimeZone;
        // What the handler built before (serde_json `Value`s).
        let reference = |event_id: &str, acc: &Accepted| {
            let p = &acc.policy;
            let mut policy_context = serde_json::to_value(&p.context).unwrap();
            policy_context
                .as_object_mut()
                .unwrap()
                .insert("correlation_reasons".into(), json!(acc.verdict.reasons));
            serde_json::to_string(&json!({
                "accepted": true,
                "event_id": event_id,
                "gateway_reason": "ok",
                "correlation": {
                    "decision": acc.verdict.decision,
                    "reasons": acc.verdict.reasons,
                    "context": acc.verdict.context,
                },
                "policy": { "decision": p.decision, "reasons": p.reasons, "context": policy_context },
                "final_decision": p.decision,
            }))
            .unwrap()
        };
        let t = |s: i64| Utc.timestamp_opt(1_780_000_000 + s, 123_456_789).unwrap();
        let all = CorrelationContext {
            storm_count: 51,
            storm_window_seconds: 30,
            login_failed_count: Some(8),
            brute_window_seconds: Some(60),
            spray_fail_count: Some(9),
            spray_unique_users: Some(7),
            spray_window_seconds: Some(120),
            success_prior_fail_count: Some(6),
            success_window_seconds: Some(600),
        };
        let cases = [
            (
                Decision::Allow,
                vec![],
                CorrelationContext::default(),
                Decision::Allow,
                vec!["ok"],
                PolicyContext::default(),
            ),
            (
                Decision::Block,
                vec!["brute_force_suspected", "ingest_storm"],
                all,
                Decision::Block,
                vec!["quarantine_activated"],
                PolicyContext {
                    correlation_decision: Decision::Block,
                    severity: 10,
                    cooldown_until_utc: Some(t(1)),
                    cooldown_set_until_utc: Some(t(2)),
                    src_ip_banned_until_utc: Some(t(3)),
                },
            ),
            (
                Decision::Throttle,
                vec!["a\"b\\c"],
                CorrelationContext {
                    login_failed_count: Some(2),
                    ..CorrelationContext::default()
                },
                Decision::Block,
                vec!["cooldown_active"],
                PolicyContext {
                    correlation_decision: Decision::Throttle,
                    severity: 0,
                    src_ip_banned_until_utc: Some(t(4)),
                    ..PolicyContext::default()
                },
            ),
        ];
        for (cd, creasons, context, pd, preasons, pcontext) in cases {
            let acc = Accepted {
                verdict: crate::detect::Verdict {
                    decision: cd,
                    reasons: creasons,
                    context,
                    alerts: Vec::new(),
                },
                policy: PolicyDecision {
                    decision: pd,
                    reasons: preasons,
                    context: pcontext,
                },
            };
            for id in ["evt-0001", "quote\"and\\slash\u{1}"] {
                assert_eq!(
                    String::from_utf8(ingest_answer(id, &acc)).unwrap(),
                    reference(id, &acc)
                );
            }
        }
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

    #[test]
    fn signatures() {
        let s = sign(b"k", b"body");
        assert!(verify_signature(b"k", b"body", Some(&s)).is_ok());
        assert_eq!(
            verify_signature(b"k", b"body", None),
            Err("missing_signature")
        );
        assert_eq!(
            verify_signature(b"k", b"body", Some(&s[7..])),
            Err("bad_signature_format")
        );
        assert_eq!(
            verify_signature(b"k", b"bodY", Some(&s)),
            Err("signature_mismatch")
        );
        assert_eq!(
            verify_signature(b"k", b"body", Some("sha256=zz")),
            Err("signature_mismatch")
        );
        assert_eq!(
            verify_signature(b"other", b"body", Some(&s)),
            Err("signature_mismatch")
        );
    }
}

//! The signed HTTP gateway, wire-compatible with the MiniSIEM seed:
//! `POST /ingest` checks, in the seed's order, the HMAC-SHA256 signature over
//! the raw body (`X-ARES-SIGNATURE: sha256=<hex>`, constant-time compare),
//! JSON, the `sec.event.v1` schema, the replay window, then (in the engine)
//! idempotency and the per-host rate limit. Rejections use the seed's status
//! codes and `{"detail": reason}` bodies; every accept and reject is audited.
//!
//! Admin routes (`POST /hosts/{host}/release`, `DELETE /bans/{ip}`) need the
//! bearer token from config and are audited with who and why;
//! `GET /api/v1/decisions` lists bans and quarantines in force, `GET
//! /api/v1/producer-keys` what each producer key signed since start.
//!
//! `POST /ingest/batch` takes newline-delimited events signed as one body and
//! answers per line.
//!
//! Several producer keys may be configured; `X-ARES-KEY-ID` names the one
//! that signed the body, and without it the default (seed) key is used.
//!
//! This module holds the state, the router and what every request goes
//! through first (its body read in time and within bounds); the routes and
//! their parts live in:
//! `signature.rs` (HMAC check, key choice), `ingest.rs` (`/ingest`,
//! `/ingest/batch`: JSON, schema, replay window, the engine), `answer.rs`
//! (the answers to accepted events), `audit.rs` (accept and reject records,
//! the audit log's outages), `stats.rs` (counts for the summaries and the
//! console), `reads.rs` (alerts, host state, decisions, key use; the read token) and
//! `admin.rs` (release, unban; the admin token).

mod admin;
mod answer;
mod audit;
mod ingest;
mod reads;
mod recover;
mod signature;
mod stats;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::engine::EngineHandle;
use crate::store::audit_log::AuditLog;

pub use audit::{
    AUDIT_UNAVAILABLE, AuditRecord, BATCH_RECORD, BatchRecord, audit_ids, serialise_audit,
};
pub use ingest::{MAX_BATCH_LINES, Rejected, validate_event};
pub use recover::{RECOVERED, RecoverError, Recovery, recover_accept_records};
pub use signature::{sign, verify_signature};
pub use stats::{CLIENTS_COUNTED, GatewayStats, IngestCounts, KeyCount};

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
    pub refusals: Mutex<crate::sources::refusals::RefusalBudget>,
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

pub fn router(state: Arc<GatewayState>) -> Router {
    // Alerts, host states and decisions say which addresses are banned and
    // which hosts are watched: with a read token set, only its holders (and
    // the admin's) may read them.
    let reads = Router::new()
        .route("/alerts/recent", get(reads::alerts_recent))
        .route("/hosts/{host}/state", get(reads::host_state))
        .route("/api/v1/decisions", get(reads::decisions))
        .route("/api/v1/producer-keys", get(reads::producer_keys))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            reads::require_read_token,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ingest", post(ingest::ingest))
        .route("/ingest/batch", post(ingest::ingest_batch))
        .route("/hosts/{host}/release", post(admin::release_host))
        .route("/bans/{ip}", axum::routing::delete(admin::unban_ip))
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

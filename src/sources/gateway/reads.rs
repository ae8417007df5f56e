//! The read routes (recent alerts, a host's state, decisions in force, the
//! producer keys' use) and the read token that may guard them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin::bearer_is;
use super::{AuditRecord, GatewayState, reject, sanitize_path};

#[derive(serde::Serialize)]
struct RecentAlerts<'a> {
    alerts: &'a [crate::detect::alert::Alert],
}

#[derive(Deserialize)]
pub(super) struct Limit {
    limit: Option<i64>,
}

pub(super) async fn alerts_recent(
    State(st): State<Arc<GatewayState>>,
    Query(q): Query<Limit>,
) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, 200) as usize;
    match st.engine.recent_alerts(limit).await {
        // Serialised as they are, not through `json!`: a `Value` holds
        // numbers as f64, and a score of 0.525 (an f32) came out as
        // 0.5249999761581421.
        Ok(alerts) => axum::Json(RecentAlerts { alerts: &alerts }).into_response(),
        Err(_) => reject(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
    }
}

pub(super) async fn host_state(
    State(st): State<Arc<GatewayState>>,
    Path(host): Path<String>,
) -> Response {
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

/// `GET /api/v1/producer-keys`: accepted events by producer key since
/// start, with each key's last use, for retiring a rotated key (no secret,
/// only the configured ids).
pub(super) async fn producer_keys(State(st): State<Arc<GatewayState>>) -> Response {
    let keys: Vec<serde_json::Value> = st
        .stats
        .counts()
        .by_key
        .into_iter()
        .map(|k| {
            json!({
                "id": k.id,
                "accepted": k.accepted,
                "last_used_utc": k.last_used,
            })
        })
        .collect();
    axum::Json(json!({
        "counted_since_utc": st.stats.keys_since(),
        "keys": keys,
    }))
    .into_response()
}

/// The read routes' check, when a read token is set: it, or the admin
/// token, as the bearer. A refusal is audited like the gateway's others
/// (within the client's share of the minute).
pub(super) async fn require_read_token(
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

pub(super) async fn decisions(State(st): State<Arc<GatewayState>>) -> Response {
    match st.engine.decisions().await {
        Ok(d) => axum::Json(d).into_response(),
        Err(_) => reject(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
    }
}

//! The admin routes (release a host, lift a ban): bearer token, audited
//! with who and why.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Map, json};
use sha2::Sha256;

use super::{AUDIT_UNAVAILABLE, GatewayState, reject};
use crate::engine::AdminOutcome;

#[derive(Deserialize)]
struct AdminBody {
    reason: String,
    by: String,
}

/// Whether the request's `Authorization: Bearer …` is `token`, compared
/// in constant time.
pub(super) fn bearer_is(token: &[u8], headers: &HeaderMap) -> bool {
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

pub(super) async fn release_host(
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

pub(super) async fn unban_ip(
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

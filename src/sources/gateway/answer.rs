//! The answers to accepted events, written directly as the seed shapes them.

use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::audit_log::json_str;

/// 200 with a JSON body written beforehand.
pub(super) fn json_response(body: Vec<u8>) -> Response {
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
pub(super) fn ingest_answer(event_id: &str, acc: &crate::engine::Accepted) -> Vec<u8> {
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
pub(super) struct BatchAnswer {
    pub(super) accepted: u64,
    pub(super) rejected: u64,
    pub(super) results: Vec<LineResult>,
}

/// One line's answer in `/ingest/batch`.
#[derive(Serialize)]
pub(super) struct LineResult {
    pub(super) line: usize,
    pub(super) status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) final_decision: Option<crate::detect::Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) correlation_reasons: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) detail: Option<&'static str>,
}

impl BatchAnswer {
    /// The same JSON as its `Serialize` form, written directly: a batch's
    /// answer is ~100 bytes per line, and serde's generic path cost ~5 %
    /// of a batch's time.
    pub(super) fn to_json(&self) -> Vec<u8> {
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
    pub(super) fn new(index: usize, status: u16) -> Self {
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
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}

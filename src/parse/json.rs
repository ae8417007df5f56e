//! JSON lines: `sec.event.v1` events (validated exactly as the gateway
//! validates them) and other JSON logs through a configurable field mapping
//! (TOML section `[json]`). Field names may be dotted paths into nested
//! objects (`source.ip`).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{
    Action, Attributes, Category, Event, Outcome, SchemaError, WIRE_EVENT_TYPE, WireEvent,
    parse_ip, parse_zoned_timestamp,
};

/// Which fields of a foreign JSON log mean what. Each entry lists candidate
/// paths, tried in order; the defaults cover ECS, nginx/Caddy/Traefik JSON
/// and common application loggers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonMapping {
    pub timestamp: Vec<String>,
    pub host: Vec<String>,
    pub src_ip: Vec<String>,
    pub user: Vec<String>,
    pub action: Vec<String>,
    pub category: Vec<String>,
    pub outcome: Vec<String>,
    pub message: Vec<String>,
    pub http_method: Vec<String>,
    pub http_path: Vec<String>,
    pub http_status: Vec<String>,
    pub user_agent: Vec<String>,
}

fn v(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

impl Default for JsonMapping {
    fn default() -> Self {
        JsonMapping {
            timestamp: v(&["@timestamp", "timestamp", "time", "ts", "date"]),
            host: v(&["host.name", "host", "hostname"]),
            src_ip: v(&[
                "source.ip",
                "client.ip",
                "src_ip",
                "client_ip",
                "remote_addr",
                "remote_ip",
                "ip",
            ]),
            user: v(&["user.name", "user", "username", "remote_user"]),
            action: v(&["event.action", "action"]),
            category: v(&["event.category", "category"]),
            outcome: v(&["event.outcome", "outcome"]),
            message: v(&["message", "msg", "log"]),
            http_method: v(&["http.request.method", "request_method", "method"]),
            http_path: v(&["url.original", "request_uri", "uri", "path"]),
            http_status: v(&["http.response.status_code", "status", "status_code"]),
            user_agent: v(&["user_agent.original", "http_user_agent", "user_agent"]),
        }
    }
}

/// Why a JSON line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonLineError {
    #[error("not JSON: {0}")]
    Syntax(String),
    #[error("JSON line is not an object")]
    NotObject,
    #[error("sec.event.v1: {0}")]
    Schema(#[from] SchemaError),
    #[error("no usable timestamp in fields {0:?}")]
    NoTime(Vec<String>),
}

fn lookup<'a>(obj: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = obj.get(path) {
        return Some(v);
    }
    let mut cur = obj;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let v = cur.get(p)?;
        if parts.peek().is_none() {
            return Some(v);
        }
        cur = v.as_object()?;
    }
    None
}

fn first<'a>(obj: &'a Map<String, Value>, paths: &[String]) -> Option<&'a Value> {
    paths
        .iter()
        .find_map(|p| lookup(obj, p).filter(|v| !v.is_null()))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => parse_zoned_timestamp(s).ok(),
        // Epoch seconds (or milliseconds, when the number is that large).
        Value::Number(n) => {
            let f = n.as_f64()?;
            let secs = if f > 1e11 { f / 1000.0 } else { f };
            DateTime::from_timestamp(secs.trunc() as i64, ((secs.fract()) * 1e9) as u32)
        }
        _ => None,
    }
}

/// Parses one JSON line into an event. `id` is used unless the line is a
/// `sec.event.v1` event, which carries its own.
pub fn parse_json_line(
    line: &str,
    mapping: &JsonMapping,
    default_host: &str,
    id: String,
) -> Result<Event, JsonLineError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| JsonLineError::Syntax(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(JsonLineError::NotObject);
    };
    if obj.get("event_type").and_then(Value::as_str) == Some(WIRE_EVENT_TYPE) {
        let wire: WireEvent = serde_json::from_value(Value::Object(obj))
            .map_err(|e| SchemaError::Json(e.to_string()))?;
        // Offline there is no receipt time; the event's own time stands in.
        let ts = wire.validate()?;
        let mut ev = wire.into_event(ts)?;
        ev.received_time_utc = None;
        return Ok(ev);
    }
    let ts = first(&obj, &mapping.timestamp)
        .and_then(time_of)
        .ok_or_else(|| JsonLineError::NoTime(mapping.timestamp.clone()))?;
    let host = first(&obj, &mapping.host)
        .and_then(text)
        .unwrap_or_else(|| default_host.to_string());
    let mut ev = Event::new(id, ts, host);
    ev.source = Cow::Borrowed("json");
    ev.src_ip = first(&obj, &mapping.src_ip)
        .and_then(text)
        .and_then(|s| parse_ip(&s));
    ev.user = first(&obj, &mapping.user)
        .and_then(text)
        .filter(|u| !u.is_empty() && u != "-");
    ev.message = first(&obj, &mapping.message)
        .and_then(text)
        .unwrap_or_default();
    let status = first(&obj, &mapping.http_status).and_then(|v| text(v)?.parse::<u16>().ok());
    let method = first(&obj, &mapping.http_method).and_then(text);
    let path = first(&obj, &mapping.http_path).and_then(text);
    if method.is_some() || path.is_some() || status.is_some() {
        ev.category = Category::Web;
        ev.action = Action::HttpRequest;
        ev.outcome = match status {
            Some(s) if s >= 400 => Outcome::Failure,
            Some(_) => Outcome::Success,
            None => Outcome::Unknown,
        };
        ev.http = Some(Box::new(crate::event::Http {
            method,
            path,
            status,
            bytes: None,
            user_agent: first(&obj, &mapping.user_agent).and_then(text),
            referrer: None,
        }));
    }
    if let Some(a) = first(&obj, &mapping.action).and_then(text) {
        ev.outcome = match first(&obj, &mapping.outcome).and_then(text).as_deref() {
            Some("success") => Outcome::Success,
            Some("failure") => Outcome::Failure,
            _ if a.ends_with("_failed") || a.ends_with("_failure") => Outcome::Failure,
            _ if a.ends_with("_success") => Outcome::Success,
            _ => ev.outcome,
        };
        ev.action = Action::from_text(&a);
        // Vigil's own auth vocabulary implies the category the rules expect.
        if matches!(
            ev.action,
            Action::LoginFailed
                | Action::LoginSuccess
                | Action::InvalidUser
                | Action::LoginDenied
                | Action::AuthFailed
        ) {
            ev.category = Category::Auth;
        }
    }
    if let Some(c) = first(&obj, &mapping.category).and_then(|v| match v {
        // ECS lists categories: take the first.
        Value::Array(xs) => xs.first().and_then(text),
        other => text(other),
    }) {
        ev.category = match c.as_str() {
            "authentication" | "auth" => Category::Auth,
            "web" => Category::Web,
            "network" => Category::Network,
            "session" => Category::Session,
            "iam" | "account" => Category::Account,
            other => Category::from_text(other),
        };
    }
    let mut attributes = Attributes::new();
    attributes.insert("log_format", "json");
    ev.attributes = attributes;
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec_event_v1_lines_keep_their_id_and_are_validated() {
        let line = r#"{"event_type":"sec.event.v1","event_id":"evt-00000001","source":"linux","host":"web-1","timestamp_utc":"2026-01-13T12:00:00Z","category":"auth","action":"login_failed","severity":5,"user":"root","src_ip":"203.0.113.9"}"#;
        let ev = parse_json_line(line, &JsonMapping::default(), "x", "ignored".into()).unwrap();
        assert_eq!(
            (ev.event_id.as_str(), ev.action),
            ("evt-00000001", Action::LoginFailed)
        );
        let bad = line.replace("\"severity\":5", "\"severity\":11");
        assert!(matches!(
            parse_json_line(&bad, &JsonMapping::default(), "x", "i".into()),
            Err(JsonLineError::Schema(_))
        ));
    }

    #[test]
    fn mapped_ecs_and_nginx_json() {
        let ecs = r#"{"@timestamp":"2026-03-14T10:00:00Z","host":{"name":"gw"},"source":{"ip":"198.51.100.7"},"user":{"name":"bob"},"event":{"action":"login_failed"}}"#;
        let ev = parse_json_line(ecs, &JsonMapping::default(), "x", "id1".into()).unwrap();
        assert_eq!(
            (ev.host.as_str(), ev.user.as_deref(), ev.action, ev.outcome),
            ("gw", Some("bob"), Action::LoginFailed, Outcome::Failure)
        );
        assert_eq!(ev.src_ip, parse_ip("198.51.100.7"));
        let nginx = r#"{"time":1773482400,"remote_addr":"192.0.2.1","request_method":"GET","request_uri":"/.env","status":"404","http_user_agent":"curl"}"#;
        let ev = parse_json_line(nginx, &JsonMapping::default(), "web", "id2".into()).unwrap();
        assert_eq!(
            (ev.action, ev.http.as_ref().unwrap().status),
            (Action::HttpRequest, Some(404))
        );
        assert_eq!(ev.timestamp_utc.to_rfc3339(), "2026-03-14T10:00:00+00:00");
    }

    #[test]
    fn bad_json_is_a_clear_error() {
        let m = JsonMapping::default();
        assert!(matches!(
            parse_json_line("{", &m, "x", "i".into()),
            Err(JsonLineError::Syntax(_))
        ));
        assert!(matches!(
            parse_json_line("[1]", &m, "x", "i".into()),
            Err(JsonLineError::NotObject)
        ));
        assert!(matches!(
            parse_json_line("{\"a\":1}", &m, "x", "i".into()),
            Err(JsonLineError::NoTime(_))
        ));
    }
}

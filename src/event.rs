//! The normalised [`Event`] every source produces, its small vocabularies
//! ([`Action`], [`Category`], [`Outcome`]), and the `sec.event.v1` wire schema
//! accepted from producers (MiniSIEM-compatible), with validation that names
//! the offending field.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Whether the thing the event records worked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    #[default]
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }

    pub fn from_text(s: &str) -> Option<Outcome> {
        Some(match s {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "unknown" => Outcome::Unknown,
            _ => return None,
        })
    }
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value outside the built-in vocabulary (e.g. from a producer).
            Other(Box<str>),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }

            /// Maps a string to the vocabulary; unknown values are kept verbatim.
            pub fn from_text(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.into()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = Cow::<'de, str>::deserialize(d)?;
                Ok(Self::from_text(&s))
            }
        }
    };
}

vocabulary! {
    /// What kind of activity an event belongs to. `auth` matches the seed's
    /// producers (`auth/login_failed`).
    Category {
        Auth => "auth",
        Session => "session",
        Privilege => "privilege",
        Account => "account",
        Network => "network",
        System => "system",
        Web => "web",
    }
}

vocabulary! {
    /// What happened. Failure-type actions carry `Outcome::Failure`.
    Action {
        LoginFailed => "login_failed",
        LoginSuccess => "login_success",
        InvalidUser => "invalid_user",
        LoginDenied => "login_denied",
        AuthFailed => "auth_failed",
        MaxAuthAttempts => "max_auth_attempts",
        PreauthDisconnect => "preauth_disconnect",
        ProtocolError => "protocol_error",
        AuthTimeout => "auth_timeout",
        ConnectionRefused => "connection_refused",
        Connection => "connection",
        AuthPostponed => "auth_postponed",
        AuthRequest => "auth_request",
        ReverseMappingMismatch => "reverse_mapping_mismatch",
        SessionOpened => "session_opened",
        SessionClosed => "session_closed",
        Disconnect => "disconnect",
        SudoCommand => "sudo_command",
        SudoFailed => "sudo_failed",
        SudoDenied => "sudo_denied",
        SuFailed => "su_failed",
        SuSuccess => "su_success",
        UserCreated => "user_created",
        UserDeleted => "user_deleted",
        UserModified => "user_modified",
        GroupCreated => "group_created",
        PasswordChanged => "password_changed",
        CronCommand => "cron_command",
        HttpRequest => "http_request",
        HttpError => "http_error",
        HttpAuthFailed => "http_auth_failed",
        HttpRateLimited => "http_rate_limited",
        FirewallBlock => "firewall_block",
        FirewallAllow => "firewall_allow",
        FirewallLog => "firewall_log",
        PortScanDetected => "port_scan_detected",
        Message => "message",
    }
}

/// Extra key/value details of an event. A small vector rather than a map:
/// events carry a handful of attributes, and parser keys are static strings,
/// so the common case allocates only the values. Serialised as a JSON object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes(Vec<(Cow<'static, str>, Value)>);

impl Attributes {
    pub fn new() -> Self {
        Attributes(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Attributes(Vec::with_capacity(n))
    }

    /// Sets `key`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every attribute, keeping the allocation.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl From<Map<String, Value>> for Attributes {
    fn from(m: Map<String, Value>) -> Self {
        Attributes(m.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_ref(), v)?;
        }
        m.end()
    }
}

/// Keys up to which [`Attributes`] are read back with a linear search.
const LINEAR_KEYS: usize = 32;

impl<'de> Deserialize<'de> for Attributes {
    /// Keeps the document's key order (a later duplicate key wins).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of attributes")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Attributes, A::Error> {
                let mut out = Attributes::with_capacity(map.size_hint().unwrap_or(0).min(64));
                // A linear search is fastest for the handful of keys events
                // carry; past that an index keeps a hostile object linear
                // (a 1 MiB body holds ~100k keys: 40k took 0.8 s to read
                // back, quadratically, before the index).
                let mut index: Option<std::collections::HashMap<String, usize>> = None;
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if index.is_none() && out.0.len() >= LINEAR_KEYS {
                        index = Some(
                            out.0
                                .iter()
                                .enumerate()
                                .map(|(i, (k, _))| (k.to_string(), i))
                                .collect(),
                        );
                    }
                    match &mut index {
                        None => out.insert(k, v),
                        Some(ix) => match ix.get(&k) {
                            Some(&i) => out.0[i].1 = v,
                            None => {
                                ix.insert(k.clone(), out.0.len());
                                out.0.push((Cow::Owned(k), v));
                            }
                        },
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// HTTP details of a web event (filled by the web parsers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Http {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
}

/// The normalised record every parser and the gateway produce.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub event_id: String,
    pub timestamp_utc: DateTime<Utc>,
    /// When Vigil received the event; `None` for offline parsing of files.
    pub received_time_utc: Option<DateTime<Utc>>,
    pub source: Cow<'static, str>,
    pub host: String,
    pub category: Category,
    pub action: Action,
    pub outcome: Outcome,
    pub severity: u8,
    pub user: Option<String>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dest_ip: Option<IpAddr>,
    pub dest_port: Option<u16>,
    pub process: Option<Cow<'static, str>>,
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<Http>>,
    pub message: String,
    #[serde(skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// How many identical occurrences this record stands for
    /// (`message repeated N times`); 1 for ordinary lines.
    #[serde(skip_serializing_if = "is_one")]
    pub repeat: u32,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl Event {
    /// An event with the given identity and time and neutral defaults
    /// (`system`/`message`, outcome unknown, severity 0); set the rest.
    pub fn new(
        event_id: impl Into<String>,
        timestamp_utc: DateTime<Utc>,
        host: impl Into<String>,
    ) -> Event {
        Event {
            event_id: event_id.into(),
            timestamp_utc,
            received_time_utc: None,
            source: Cow::Borrowed("vigil"),
            host: host.into(),
            category: Category::System,
            action: Action::Message,
            outcome: Outcome::Unknown,
            severity: 0,
            user: None,
            src_ip: None,
            src_port: None,
            dest_ip: None,
            dest_port: None,
            process: None,
            pid: None,
            http: None,
            message: String::new(),
            attributes: Attributes::new(),
            repeat: 1,
        }
    }

    /// A failed login (the shape most detection tests need).
    pub fn login_failed(
        event_id: impl Into<String>,
        timestamp_utc: DateTime<Utc>,
        host: impl Into<String>,
        user: &str,
        src_ip: Option<IpAddr>,
    ) -> Event {
        Event {
            category: Category::Auth,
            action: Action::LoginFailed,
            outcome: Outcome::Failure,
            severity: 5,
            user: Some(user.to_string()),
            src_ip,
            ..Event::new(event_id, timestamp_utc, host)
        }
    }

    /// A failure-type event: the attempt it records did not succeed.
    pub fn is_failure(&self) -> bool {
        self.outcome == Outcome::Failure
    }

    /// The source gave no time (journald short format): `timestamp_utc` is
    /// only the reference time, so time-window rules must not use it.
    pub fn time_is_inferred(&self) -> bool {
        !self.attributes.is_empty()
            && self.attributes.get(TIME_INFERRED) == Some(&Value::Bool(true))
    }
}

/// Attribute set on events whose source line carried no timestamp.
pub const TIME_INFERRED: &str = "time_inferred";

/// Normalises an address: strips brackets and an IPv4-mapped IPv6 prefix,
/// accepts leading-zero IPv4 octets (`192.030.0.6` → `192.30.0.6`, decimal,
/// as fail2ban and most log producers mean it).
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(text);
    if t.is_empty() || t.len() > 64 {
        return None;
    }
    // Dotted decimal is by far the most common form: parse it by hand (this
    // also accepts leading zeros, which the standard parser refuses).
    if t.as_bytes()[0].is_ascii_digit() && t.len() <= 15 {
        if let Some(v4) = parse_ipv4_lenient(t) {
            return Some(IpAddr::V4(v4));
        }
        if !t.contains(':') {
            return None;
        }
    }
    t.parse::<IpAddr>().ok().map(unmap)
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `a.b.c.d` with 1–3 decimal digits per octet, each ≤ 255.
fn parse_ipv4_lenient(t: &str) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut n, mut digits, mut acc) = (0usize, 0u32, 0u32);
    for &b in t.as_bytes() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                acc = acc * 10 + (b - b'0') as u32;
                if digits > 3 || acc > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && n < 3 => {
                octets[n] = acc as u8;
                n += 1;
                digits = 0;
                acc = 0;
            }
            _ => return None,
        }
    }
    if n != 3 || digits == 0 {
        return None;
    }
    octets[3] = acc as u8;
    Some(std::net::Ipv4Addr::from(octets))
}

// ---------------------------------------------------------------------------
// Wire schema: sec.event.v1
// ---------------------------------------------------------------------------

pub const WIRE_EVENT_TYPE: &str = "sec.event.v1";

/// A producer's event as it arrives on the wire (`POST /ingest`).
///
/// `S` holds the fields that are only read while the event is normalised
/// (type, timestamp, category, action, addresses): `&str` borrows them from
/// the body when it can (no escapes in them), which saves five allocations
/// an event on the gateway's path; `String` (the default) always can.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireEvent<S = String> {
    pub event_type: S,
    pub event_id: String,
    pub source: String,
    pub host: String,
    pub timestamp_utc: S,
    pub category: S,
    pub action: S,
    pub severity: i64,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub src_ip: Option<S>,
    #[serde(default)]
    pub dest_ip: Option<S>,
    #[serde(default)]
    pub process_name: Option<String>,
    /// Read straight into [`Attributes`] (a later duplicate key wins),
    /// then put in key order by [`into_event`](Self::into_event), as a map
    /// would give them; a map first cost an allocation and a tree per event.
    #[serde(default)]
    pub attributes: Option<Attributes>,
}

/// Why a wire event was refused. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("invalid JSON or unknown field: {0}")]
    Json(String),
    #[error("event_type must be \"sec.event.v1\"")]
    EventType,
    #[error("{field}: length {len} outside {min}..={max}")]
    Length {
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    #[error("timestamp_utc: {0}")]
    Timestamp(String),
    #[error("severity: {0} outside 0..=10")]
    Severity(i64),
}

impl SchemaError {
    /// The field the error is about (`None` for whole-document errors).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SchemaError::Json(_) => None,
            SchemaError::EventType => Some("event_type"),
            SchemaError::Length { field, .. } => Some(field),
            SchemaError::Timestamp(_) => Some("timestamp_utc"),
            SchemaError::Severity(_) => Some("severity"),
        }
    }
}

fn check_len(field: &'static str, v: &str, min: usize, max: usize) -> Result<(), SchemaError> {
    let len = v.chars().count();
    if len < min || len > max {
        return Err(SchemaError::Length {
            field,
            len,
            min,
            max,
        });
    }
    Ok(())
}

/// Parses an ISO 8601 timestamp that carries a zone (`Z` or `±hh:mm`).
/// Naive timestamps are refused: a SIEM cannot guess a producer's zone.
pub fn parse_zoned_timestamp(s: &str) -> Result<DateTime<Utc>, SchemaError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            if chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
                SchemaError::Timestamp(
                    "naive timestamp: a time zone (Z or ±hh:mm) is required".into(),
                )
            } else {
                SchemaError::Timestamp(format!("not ISO 8601 with a zone: {e}"))
            }
        })
}

impl WireEvent {
    /// Parses and validates one JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<WireEvent, SchemaError> {
        let ev: WireEvent =
            serde_json::from_slice(bytes).map_err(|e| SchemaError::Json(e.to_string()))?;
        ev.validate()?;
        Ok(ev)
    }
}

impl<S: AsRef<str>> WireEvent<S> {
    /// Checks the MiniSIEM seed's constraints, first failing field first.
    pub fn validate(&self) -> Result<DateTime<Utc>, SchemaError> {
        if self.event_type.as_ref() != WIRE_EVENT_TYPE {
            return Err(SchemaError::EventType);
        }
        check_len("event_id", &self.event_id, 8, 128)?;
        check_len("source", &self.source, 1, 64)?;
        check_len("host", &self.host, 1, 128)?;
        let ts = parse_zoned_timestamp(self.timestamp_utc.as_ref())?;
        check_len("category", self.category.as_ref(), 1, 64)?;
        check_len("action", self.action.as_ref(), 1, 64)?;
        if !(0..=10).contains(&self.severity) {
            return Err(SchemaError::Severity(self.severity));
        }
        if let Some(u) = &self.user {
            check_len("user", u, 0, 128)?;
        }
        if let Some(v) = &self.src_ip {
            check_len("src_ip", v.as_ref(), 0, 64)?;
        }
        if let Some(v) = &self.dest_ip {
            check_len("dest_ip", v.as_ref(), 0, 64)?;
        }
        if let Some(v) = &self.process_name {
            check_len("process_name", v, 0, 256)?;
        }
        Ok(ts)
    }

    /// Normalises a validated wire event. Outcome is inferred from the action
    /// name (`*_failed`, `*_success`); address fields that are not IPs are kept
    /// in `attributes` rather than dropped.
    pub fn into_event(self, received: DateTime<Utc>) -> Result<Event, SchemaError> {
        let ts = self.validate()?;
        let mut attributes = self.attributes.unwrap_or_default();
        // Keys are unique, so any sort gives the one order.
        attributes.0.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let src_ip = self.src_ip.as_ref().map(AsRef::as_ref).and_then(|s: &str| {
            let ip = parse_ip(s);
            if ip.is_none() && !s.is_empty() {
                attributes.insert("src_ip_raw", s.to_string());
            }
            ip
        });
        let dest_ip = self
            .dest_ip
            .as_ref()
            .map(AsRef::as_ref)
            .and_then(|s: &str| {
                let ip = parse_ip(s);
                if ip.is_none() && !s.is_empty() {
                    attributes.insert("dest_ip_raw", s.to_string());
                }
                ip
            });
        let action = self.action.as_ref();
        let outcome = if action.ends_with("_failed") || action.ends_with("_failure") {
            Outcome::Failure
        } else if action.ends_with("_success") {
            Outcome::Success
        } else {
            Outcome::Unknown
        };
        Ok(Event {
            event_id: self.event_id,
            timestamp_utc: ts,
            received_time_utc: Some(received),
            source: Cow::Owned(self.source),
            host: self.host,
            category: Category::from_text(self.category.as_ref()),
            action: Action::from_text(action),
            outcome,
            severity: self.severity as u8,
            user: self.user.filter(|u| !u.is_empty()),
            src_ip,
            src_port: None,
            dest_ip,
            dest_port: None,
            process: self.process_name.map(Cow::Owned),
            pid: None,
            http: None,
            message: String::new(),
            attributes,
            repeat: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_read_back_in_order_later_duplicates_winning_at_any_size() {
        for n in [3usize, LINEAR_KEYS - 1, LINEAR_KEYS, LINEAR_KEYS + 1, 200] {
            // Keys k0..kn, then k1 and k{n-1} again.
            let mut text: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            text.push("\"k1\":\"again\"".into());
            text.push(format!("\"k{}\":\"last\"", n - 1));
            let a: Attributes = serde_json::from_str(&format!("{{{}}}", text.join(","))).unwrap();
            assert_eq!(a.len(), n, "{n}");
            let keys: Vec<String> = a.iter().map(|(k, _)| k.to_string()).collect();
            let want: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
            assert_eq!(keys, want, "{n}");
            assert_eq!(a.get("k1"), Some(&Value::from("again")), "{n}");
            assert_eq!(
                a.get(&format!("k{}", n - 1)),
                Some(&Value::from("last")),
                "{n}"
            );
            assert_eq!(a.get("k0"), Some(&Value::from(0)), "{n}");
        }
    }

    #[test]
    fn a_huge_attributes_object_reads_back_in_linear_time() {
        // ~100k keys, as a 1 MiB body can hold. Quadratically this took
        // minutes in a debug build (40k keys: 0.8 s in release).
        let n = 100_000;
        let text: Vec<String> = (0..n).map(|i| format!("\"k{i}\":1")).collect();
        let text = format!("{{{}}}", text.join(","));
        let started = std::time::Instant::now();
        let a: Attributes = serde_json::from_str(&text).unwrap();
        assert_eq!(a.len(), n);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "event_type": "sec.event.v1",
            "event_id": "evt-00000001",
            "source": "linux",
            "host": "web-1",
            "timestamp_utc": "2026-01-13T12:00:00Z",
            "category": "auth",
            "action": "login_failed",
            "severity": 5,
            "user": "root",
            "src_ip": "203.0.113.9"
        })
    }

    fn check(v: serde_json::Value) -> Result<WireEvent, SchemaError> {
        WireEvent::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn valid_wire_event_normalises() {
        let ev = check(valid()).unwrap().into_event(Utc::now()).unwrap();
        assert_eq!(ev.action, Action::LoginFailed);
        assert_eq!(ev.category, Category::Auth);
        assert_eq!(ev.outcome, Outcome::Failure);
        assert_eq!(ev.src_ip, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn schema_errors_name_the_field() {
        let cases: Vec<(&str, serde_json::Value, Option<&str>)> = vec![
            (
                "event_type",
                serde_json::json!("sec.event.v2"),
                Some("event_type"),
            ),
            ("event_id", serde_json::json!("short"), Some("event_id")),
            ("source", serde_json::json!(""), Some("source")),
            ("host", serde_json::json!("h".repeat(129)), Some("host")),
            (
                "timestamp_utc",
                serde_json::json!("2026-01-13T12:00:00"),
                Some("timestamp_utc"),
            ),
            (
                "category",
                serde_json::json!("c".repeat(65)),
                Some("category"),
            ),
            ("action", serde_json::json!(""), Some("action")),
            ("severity", serde_json::json!(11), Some("severity")),
            ("user", serde_json::json!("u".repeat(129)), Some("user")),
            ("src_ip", serde_json::json!("1".repeat(65)), Some("src_ip")),
            (
                "process_name",
                serde_json::json!("p".repeat(257)),
                Some("process_name"),
            ),
        ];
        for (field, value, expect) in cases {
            let mut v = valid();
            v[field] = value;
            let err = check(v).unwrap_err();
            assert_eq!(err.field(), expect, "{field}: {err}");
        }
    }

    #[test]
    fn naive_timestamp_is_rejected_with_reason() {
        let mut v = valid();
        v["timestamp_utc"] = serde_json::json!("2026-01-13T12:00:00");
        let err = check(v).unwrap_err();
        assert!(err.to_string().contains("naive"), "{err}");
        let mut v = valid();
        v["timestamp_utc"] = serde_json::json!("2026-01-13T12:00:00+02:00");
        assert!(check(v).is_ok());
    }

    #[test]
    fn unknown_field_is_rejected() {
        let mut v = valid();
        v["extra"] = serde_json::json!(1);
        assert!(matches!(check(v), Err(SchemaError::Json(_))));
    }

    #[test]
    fn ip_normalisation() {
        assert_eq!(parse_ip("192.030.0.6"), Some("192.30.0.6".parse().unwrap()));
        assert_eq!(parse_ip("::ffff:1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(
            parse_ip("[2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_ip("example.com"), None);
        assert_eq!(parse_ip("1.2.3.256"), None);
        assert_eq!(parse_ip("1.2.3"), None);
        assert_eq!(parse_ip("1.2.3.4."), None);
        assert_eq!(parse_ip(".1.2.3.4"), None);
        assert_eq!(parse_ip("1..2.3"), None);
        assert_eq!(parse_ip("1.2.3.4.5"), None);
        assert_eq!(parse_ip("0001.2.3.4"), None);
        assert_eq!(
            parse_ip("255.255.255.255"),
            Some("255.255.255.255".parse().unwrap())
        );
        assert_eq!(parse_ip("1.2.3.4'"), None);
        assert_eq!(
            parse_ip("2606:2800:220:1:248:1893:25c8:1946"),
            Some("2606:2800:220:1:248:1893:25c8:1946".parse().unwrap())
        );
        assert_eq!(parse_ip("1::2"), Some("1::2".parse().unwrap()));
    }
}

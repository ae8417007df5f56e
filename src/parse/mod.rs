//! Turning raw log lines into [`Event`]s. Pure: no I/O and no clock — the
//! reference time for year-less dates comes in through [`ParseOptions`].
//!
//! [`Parser`] holds the only state parsing needs (sshd's per-connection
//! memory), so feeding a file's lines in order through one `Parser` is
//! deterministic: the same file always yields the same events and ids.

pub mod auth;
pub mod firewall;
pub mod json;
pub mod nginx;
pub mod syslog;

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, Utc};

use crate::event::{Action, Category, Event, Http, Outcome};
use crate::util::{fnv1a, stable_hash64, truncate_at_char_boundary};
use auth::{AuthInfo, SshState};
use syslog::{Envelope, SyslogError, SyslogOptions};

/// Lines longer than this many bytes are cut (on a character boundary) and
/// marked `"truncated": true`. 16 KiB is well above any real auth line and
/// bounds the work one hostile line can cause.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Which parser a source's lines go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// Syslog envelope, then the auth parser when the program is one it knows.
    #[default]
    Auto,
    /// Linux auth log (same pipeline as `Auto` for now).
    Auth,
    /// Syslog envelope only: every line becomes a generic `message` event.
    Syslog,
    /// nginx / Apache access and error logs (bare or inside syslog).
    Web,
    /// netfilter kernel lines and pfSense/OPNsense filterlog.
    Firewall,
    /// JSON lines: `sec.event.v1`, or other logs through `[json]` mapping.
    Json,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Auto => "auto",
            SourceKind::Auth => "auth",
            SourceKind::Syslog => "syslog",
            SourceKind::Web => "web",
            SourceKind::Firewall => "firewall",
            SourceKind::Json => "json",
        }
    }

    fn json(self) -> bool {
        matches!(self, SourceKind::Auto | SourceKind::Json)
    }

    fn auth(self) -> bool {
        matches!(self, SourceKind::Auto | SourceKind::Auth)
    }

    fn web(self) -> bool {
        matches!(self, SourceKind::Auto | SourceKind::Web)
    }

    fn firewall(self) -> bool {
        matches!(self, SourceKind::Auto | SourceKind::Firewall)
    }
}

/// HTTP details a parser found, borrowed from the line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpInfo<'a> {
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub status: Option<u16>,
    pub bytes: Option<u64>,
    pub referrer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// What a message parser understood, borrowed from the line; the parser
/// turns it into an [`Event`].
#[derive(Clone, Debug, PartialEq)]
pub struct Info<'a> {
    pub category: Category,
    pub action: Action,
    pub outcome: Outcome,
    pub severity: u8,
    pub user: Option<&'a str>,
    pub src_ip: Option<std::net::IpAddr>,
    pub src_port: Option<u16>,
    pub dest_ip: Option<std::net::IpAddr>,
    pub dest_port: Option<u16>,
    pub http: Option<HttpInfo<'a>>,
    pub attrs: Vec<(Cow<'static, str>, &'a str)>,
    pub repeat: u32,
    /// `source` of the resulting event.
    pub source: &'static str,
}

impl Info<'_> {
    pub fn new(category: Category, action: Action, outcome: Outcome, severity: u8) -> Self {
        let source = match category {
            Category::Web => "web",
            Category::Network => "firewall",
            _ => "syslog",
        };
        Info {
            category,
            action,
            outcome,
            severity,
            user: None,
            src_ip: None,
            src_port: None,
            dest_ip: None,
            dest_port: None,
            http: None,
            attrs: Vec::new(),
            repeat: 1,
            source,
        }
    }
}

impl<'a> From<AuthInfo<'a>> for Info<'a> {
    fn from(a: AuthInfo<'a>) -> Self {
        Info {
            category: a.category,
            action: a.action,
            outcome: a.outcome,
            severity: a.severity,
            user: a.user,
            src_ip: a.src_ip,
            src_port: a.src_port,
            dest_ip: None,
            dest_port: None,
            http: None,
            attrs: a
                .attrs
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
            repeat: a.repeat,
            source: "linux_auth",
        }
    }
}

/// Why a line did not become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error(transparent)]
    Syslog(#[from] SyslogError),
    #[error(transparent)]
    Json(#[from] json::JsonLineError),
}

/// Everything parsing needs from outside.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    pub kind: SourceKind,
    /// Anchor for year-less timestamps and for lines with no time at all.
    pub reference: DateTime<Utc>,
    /// Zone that BSD syslog timestamps were written in.
    pub local_offset: FixedOffset,
    /// Host used when the line names none.
    pub default_host: String,
    /// Name of the input (file name); part of every event id.
    pub origin: String,
    /// How fields of foreign JSON logs map onto events.
    pub json_mapping: json::JsonMapping,
}

impl ParseOptions {
    pub fn new(kind: SourceKind, reference: DateTime<Utc>, origin: impl Into<String>) -> Self {
        ParseOptions {
            kind,
            reference,
            local_offset: FixedOffset::east_opt(0).expect("zero offset is valid"),
            default_host: "unknown".into(),
            origin: origin.into(),
            json_mapping: json::JsonMapping::default(),
        }
    }
}

/// A stateful line parser for one input stream.
#[derive(Debug)]
pub struct Parser {
    opts: ParseOptions,
    syslog_opts: SyslogOptions,
    origin_hash: u64,
    ssh: SshState,
    ts_cache: syslog::TimestampCache,
}

impl Parser {
    pub fn new(opts: ParseOptions) -> Self {
        let syslog_opts = SyslogOptions::with_offset(opts.reference, opts.local_offset);
        let origin_hash = fnv1a(opts.origin.as_bytes());
        Parser {
            opts,
            syslog_opts,
            origin_hash,
            ssh: SshState::default(),
            ts_cache: Default::default(),
        }
    }

    pub fn options(&self) -> &ParseOptions {
        &self.opts
    }

    /// Moves the anchor for year-less timestamps (a live source calls this
    /// as time passes). sshd session state is kept.
    pub fn set_reference(&mut self, reference: DateTime<Utc>) {
        self.opts.reference = reference;
        self.syslog_opts = SyslogOptions::with_offset(reference, self.opts.local_offset);
        // Cached stamps were resolved against the old anchor.
        self.ts_cache = Default::default();
    }

    /// Parses line number `line_no` (1-based) of the input.
    pub fn parse_line(&mut self, raw: &str, line_no: u64) -> Result<Event, LineError> {
        let mut ev = Event::new(String::new(), self.opts.reference, String::new());
        self.parse_line_into(raw, line_no, &mut ev)?;
        Ok(ev)
    }

    /// [`Parser::parse_line`] into an existing event, reusing its buffers (a
    /// scan recycles events instead of allocating a fresh set per line).
    /// On error `out` is left in an unspecified state.
    pub fn parse_line_into(
        &mut self,
        raw: &str,
        line_no: u64,
        out: &mut Event,
    ) -> Result<(), LineError> {
        let truncated = raw.len() > MAX_LINE_BYTES;
        let line = truncate_at_char_boundary(raw, MAX_LINE_BYTES);
        if self.opts.kind.json() && line.trim_start().starts_with('{') {
            let mut id = std::mem::take(&mut out.event_id);
            self.write_event_id(line, line_no, &mut id);
            *out = json::parse_json_line(
                line.trim(),
                &self.opts.json_mapping,
                &self.opts.default_host,
                id,
            )?;
            if truncated {
                out.attributes.insert("truncated", true);
            }
            return Ok(());
        }
        let (env, info) =
            match syslog::parse_envelope_cached(line, &self.syslog_opts, &mut self.ts_cache) {
                Ok(env) => {
                    let info = self.message_info(&env);
                    (env, info)
                }
                Err(e) => match self.bare_line(line) {
                    Some((env, info)) => (env, Some(info)),
                    None => return Err(e.into()),
                },
            };
        self.fill(&env, info, line, line_no, out);
        if truncated {
            out.attributes.insert("truncated", true);
        }
        Ok(())
    }

    /// Understands the message of a syslog record by its program.
    fn message_info<'a>(&mut self, env: &Envelope<'a>) -> Option<Info<'a>> {
        let kind = self.opts.kind;
        let host = env.hostname.unwrap_or(&self.opts.default_host);
        let program = env.app.unwrap_or("");
        let msg = env.message;
        if kind.auth() && auth::is_auth_program(program) {
            return auth::parse_auth(program, env.pid_number(), host, msg, &mut self.ssh)
                .map(Info::from);
        }
        if kind.firewall() {
            if program == "filterlog" {
                if let Some(i) = firewall::parse_filterlog(msg) {
                    return Some(i);
                }
            }
            if program == "scanlogd" {
                if let Some(i) = firewall::parse_scanlogd(msg) {
                    return Some(i);
                }
            }
            if program == "kernel" || kind == SourceKind::Firewall {
                if let Some(i) = firewall::parse_netfilter(msg) {
                    return Some(i);
                }
            }
        }
        // `httpd/backend1` names an Apache instance.
        let web_program = program.split('/').next().unwrap_or(program);
        let is_web_program = matches!(web_program, "nginx" | "apache" | "apache2" | "httpd");
        if kind.web() && (is_web_program || kind == SourceKind::Web) {
            let off = self.opts.local_offset;
            if let Some(i) = nginx::parse_nginx_error(msg, off)
                .or_else(|| nginx::parse_access(msg))
                .or_else(|| nginx::parse_apache_error(msg, off))
                .map(|(_, i)| i)
                .or_else(|| nginx::apache_error_body(msg))
            {
                return Some(i);
            }
        }
        if kind.auth() {
            // PAM lines can come from any program.
            return auth::parse_auth(program, env.pid_number(), host, msg, &mut self.ssh)
                .map(Info::from);
        }
        None
    }

    /// A line with no syslog header: web servers' and PortSentry's own formats.
    fn bare_line<'a>(&self, line: &'a str) -> Option<(Envelope<'a>, Info<'a>)> {
        let kind = self.opts.kind;
        let off = self.opts.local_offset;
        let found = if kind.web() {
            nginx::parse_access(line)
                .or_else(|| nginx::parse_nginx_error(line, off))
                .or_else(|| nginx::parse_apache_error(line, off))
                .or_else(|| nginx::parse_w3c(line))
        } else {
            None
        };
        let found = found.or_else(|| {
            if !kind.firewall() {
                return None;
            }
            let (epoch, info) = firewall::parse_portsentry(line)?;
            let t = chrono::DateTime::from_timestamp(epoch, 0)?;
            Some((t.fixed_offset(), info))
        });
        let (time, info) = found?;
        let env = Envelope {
            format: syslog::SyslogFormat::NotSyslog,
            pri: None,
            timestamp: Some(time),
            hostname: None,
            app: None,
            pid: None,
            msgid: None,
            structured_data: None,
            message: line,
        };
        Some((env, info))
    }

    fn write_event_id(&self, line: &str, line_no: u64, id: &mut String) {
        let h = stable_hash64(
            self.origin_hash ^ line_no.wrapping_mul(0x2545_f491_4f6c_dd1d),
            line.as_bytes(),
        );
        id.clear();
        id.push_str("ev-");
        for shift in (0..16).rev() {
            id.push(char::from(
                b"0123456789abcdef"[((h >> (shift * 4)) & 0xf) as usize],
            ));
        }
    }

    /// Overwrites every field of `out`.
    fn fill(
        &self,
        env: &Envelope<'_>,
        info: Option<Info<'_>>,
        line: &str,
        line_no: u64,
        out: &mut Event,
    ) {
        out.attributes.clear();
        out.timestamp_utc = match env.timestamp {
            Some(t) => t.with_timezone(&Utc),
            None => {
                out.attributes.insert(crate::event::TIME_INFERRED, true);
                self.opts.reference
            }
        };
        if let Some(f) = env.facility() {
            out.attributes.insert("syslog_facility", f);
        }
        if let Some(sev) = env.severity() {
            out.attributes.insert("syslog_severity", sev);
        }
        if let Some(msgid) = env.msgid {
            out.attributes.insert("msgid", msgid);
        }
        if let Some(sd) = env.structured_data {
            out.attributes.insert("structured_data", sd);
        }
        self.write_event_id(line, line_no, &mut out.event_id);
        out.received_time_utc = None;
        set_str(
            &mut out.host,
            env.hostname.unwrap_or(&self.opts.default_host),
        );
        set_str(&mut out.message, env.message);
        out.process = env.app.map(intern_program);
        out.pid = env.pid_number();
        match info {
            Some(a) => {
                for (k, v) in a.attrs {
                    out.attributes.insert(k, v);
                }
                out.source = Cow::Borrowed(a.source);
                out.category = a.category;
                out.action = a.action;
                out.outcome = a.outcome;
                out.severity = a.severity;
                set_opt_str(&mut out.user, a.user);
                out.src_ip = a.src_ip;
                out.src_port = a.src_port;
                out.dest_ip = a.dest_ip;
                out.dest_port = a.dest_port;
                out.repeat = a.repeat;
                out.http = a.http.map(|h| {
                    if let Some(p) = h.protocol {
                        out.attributes.insert("http_protocol", p);
                    }
                    Box::new(Http {
                        method: h.method.map(str::to_string),
                        path: h.path.map(str::to_string),
                        status: h.status,
                        bytes: h.bytes,
                        user_agent: h.user_agent.map(str::to_string),
                        referrer: h.referrer.map(str::to_string),
                    })
                });
            }
            None => {
                out.source = Cow::Borrowed("syslog");
                out.category = Category::System;
                out.action = Action::Message;
                out.outcome = Outcome::Unknown;
                out.severity = env.pri.map_or(1, |p| syslog_severity_to_score(p & 7));
                out.user = None;
                out.src_ip = None;
                out.src_port = None;
                out.dest_ip = None;
                out.dest_port = None;
                out.http = None;
                out.repeat = 1;
            }
        }
    }
}

/// `dst = src`, keeping `dst`'s allocation.
fn set_str(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

/// `dst = src.map(to_string)`, keeping an existing allocation.
fn set_opt_str(dst: &mut Option<String>, src: Option<&str>) {
    match (dst.as_mut(), src) {
        (Some(d), Some(s)) => set_str(d, s),
        (None, Some(s)) => *dst = Some(s.to_string()),
        (_, None) => *dst = None,
    }
}

/// Common program names are shared, not copied, into every event.
fn intern_program(name: &str) -> Cow<'static, str> {
    const KNOWN: &[&str] = &[
        "sshd",
        "sshd-session",
        "sshd-auth",
        "sudo",
        "su",
        "CRON",
        "cron",
        "crond",
        "systemd",
        "systemd-logind",
        "kernel",
        "useradd",
        "usermod",
        "userdel",
        "groupadd",
        "passwd",
        "chpasswd",
        "login",
        "nginx",
        "postfix",
    ];
    match KNOWN.iter().find(|k| **k == name) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(name.to_string()),
    }
}

/// Syslog severity (0 = emerg … 7 = debug) on Vigil's 0–10 scale.
fn syslog_severity_to_score(s: u8) -> u8 {
    [10, 9, 8, 6, 4, 2, 1, 0][(s & 7) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};
    use serde_json::Value;

    #[test]
    fn set_reference_moves_the_year_anchor() {
        let line = "Dec 31 23:00:00 h sshd[9]: Failed password for root from 192.0.2.1 port 1 ssh2";
        let jan = Utc.with_ymd_and_hms(2027, 1, 2, 0, 0, 0).unwrap();
        let mut p = Parser::new(ParseOptions::new(SourceKind::Auto, jan, "live"));
        assert_eq!(p.parse_line(line, 1).unwrap().timestamp_utc.year(), 2026);
        // Same stamp again after the anchor moved: the cache must not answer.
        p.set_reference(Utc.with_ymd_and_hms(2028, 1, 2, 0, 0, 0).unwrap());
        assert_eq!(p.parse_line(line, 2).unwrap().timestamp_utc.year(), 2027);
    }

    fn parser() -> Parser {
        Parser::new(ParseOptions::new(
            SourceKind::Auto,
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
            "t.log",
        ))
    }

    #[test]
    fn ids_are_deterministic_and_distinct_per_line() {
        let line = "Feb 12 14:10:21 h sshd[1]: Invalid user a from 192.0.2.1 port 1";
        let a = parser().parse_line(line, 1).unwrap();
        let b = parser().parse_line(line, 1).unwrap();
        let c = parser().parse_line(line, 2).unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert_ne!(a.event_id, c.event_id);
    }

    #[test]
    fn reused_event_is_fully_overwritten() {
        let mut p = parser();
        let mut ev = p
            .parse_line("<38>1 2026-01-01T00:00:00Z h sshd 1 ID7 [x@1 a=\"b\"] Failed password for root from 192.0.2.1 port 2 ssh2", 1)
            .unwrap();
        p.parse_line_into("Feb 12 14:10:21 other cron[2]: hello", 2, &mut ev)
            .unwrap();
        let fresh = parser()
            .parse_line("Feb 12 14:10:21 other cron[2]: hello", 2)
            .unwrap();
        assert_eq!(ev, fresh);
    }

    #[test]
    fn over_long_line_is_cut_and_marked() {
        let line = format!("Feb 12 14:10:21 h sshd[1]: {}", "é".repeat(MAX_LINE_BYTES));
        let ev = parser().parse_line(&line, 1).unwrap();
        assert!(ev.message.len() <= MAX_LINE_BYTES);
        assert_eq!(ev.attributes.get("truncated"), Some(&Value::Bool(true)));
    }

    #[test]
    fn journal_line_without_time_is_marked_inferred() {
        let ev = parser()
            .parse_line("srv sshd[1]: Invalid user a from 192.0.2.1", 1)
            .unwrap();
        assert_eq!(ev.attributes.get("time_inferred"), Some(&Value::Bool(true)));
        assert_eq!(ev.action, Action::InvalidUser);
    }
}

//! Web server logs: nginx and Apache access logs (combined and common
//! formats, with an optional `vhost[:port]` in front) and their error logs.
//!
//! The request line is kept whole: scanners send binary junk and SQL with
//! spaces, and cutting at the first space (as the ML seed did) hides exactly
//! what an analyst needs to see. Time-zone offsets are honoured.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};

use super::Info;
use crate::event::{Action, Category, Outcome, parse_ip};
use crate::util::{find_byte, find_str};

/// What a request line splits into. Unparseable requests keep `target` as
/// the whole raw text and no method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Option<&'a str>,
    pub target: &'a str,
    pub protocol: Option<&'a str>,
}

/// `GET /a b HTTP/1.1` → method, target (spaces kept), protocol.
pub fn split_request(raw: &str) -> Request<'_> {
    let Some(sp) = find_byte(raw, b' ') else {
        return Request {
            method: None,
            target: raw,
            protocol: None,
        };
    };
    let method = &raw[..sp];
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Request {
            method: None,
            target: raw,
            protocol: None,
        };
    }
    let rest = &raw[sp + 1..];
    match rest.rfind(" HTTP/") {
        Some(p) => Request {
            method: Some(method),
            target: &rest[..p],
            protocol: Some(&rest[p + 1..]),
        },
        None => Request {
            method: Some(method),
            target: rest,
            protocol: None,
        },
    }
}

/// Index just past a double-quoted field starting at `start` (which must be
/// a `"`), honouring backslash escapes.
fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.strip_prefix('"')?;
    let s = s.strip_suffix('"').unwrap_or(s);
    (s != "-").then_some(s)
}

/// `[10/Oct/2000:13:55:36 -0700]`; a time without a zone (custom log
/// formats) is read as UTC. Parsed by hand: it is on every access line.
fn access_time(s: &str) -> Option<DateTime<FixedOffset>> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let b = s.trim().as_bytes();
    let num = |r: &[u8]| -> Option<u32> {
        // At most 9 digits, so the fold cannot overflow on hostile input.
        ((1..=9).contains(&r.len()) && r.iter().all(u8::is_ascii_digit))
            .then(|| r.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32))
    };
    let slash = b.iter().position(|&c| c == b'/')?;
    let day = num(&b[..slash])?;
    let mon = b.get(slash + 1..slash + 4)?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as u32 + 1;
    let r = b.get(slash + 4..)?;
    if r.len() < 14 || r[0] != b'/' || r[5] != b':' || r[8] != b':' || r[11] != b':' {
        return None;
    }
    let year = num(&r[1..5])? as i32;
    let (hh, mm, ss) = (num(&r[6..8])?, num(&r[9..11])?, num(&r[12..14])?);
    let offset = match r.get(14..) {
        None | Some([]) => FixedOffset::east_opt(0)?,
        Some(z) => {
            let z = z.strip_prefix(b" ")?;
            if z.len() != 5 || !(z[0] == b'+' || z[0] == b'-') {
                return None;
            }
            let secs = (num(&z[1..3])? * 3600 + num(&z[3..5])? * 60) as i32;
            FixedOffset::east_opt(if z[0] == b'-' { -secs } else { secs })?
        }
    };
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    let time = chrono::NaiveTime::from_hms_opt(hh, mm, ss)?;
    offset
        .from_local_datetime(&NaiveDateTime::new(date, time))
        .single()
}

/// An access-log line: `[vhost[:port] ]client ident user [time] "request" status bytes ["referrer" "agent"]`.
/// Returns the line's own time and what it says.
pub fn parse_access(line: &str) -> Option<(DateTime<FixedOffset>, Info<'_>)> {
    let open = find_byte(line, b'[')?;
    let head: Vec<&str> = line[..open].split_ascii_whitespace().collect();
    // client [ident [user]], optionally preceded by the virtual host.
    let (vhost, client, user) = match head.as_slice() {
        [c, _, u] if parse_ip(c).is_some() => (None, *c, Some(*u)),
        [c, _] if parse_ip(c).is_some() => (None, *c, None),
        [c] if parse_ip(c).is_some() => (None, *c, None),
        [v, c, _, u] if parse_ip(c).is_some() => (Some(*v), *c, Some(*u)),
        [v, c, _] if parse_ip(c).is_some() => (Some(*v), *c, None),
        // Custom formats with an extra field before the time.
        [c, _, u, _] if parse_ip(c).is_some() => (None, *c, Some(*u)),
        _ => return None,
    };
    let close = open + find_byte(&line[open..], b']')?;
    let time = access_time(&line[open + 1..close])?;
    let b = line.as_bytes();
    let mut i = close + 1;
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if b.get(i) != Some(&b'"') {
        // One unquoted field (a virtual host) may sit between time and request.
        while i < b.len() && b[i] != b' ' && b[i] != b'"' {
            i += 1;
        }
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return None;
        }
    }
    let req_end = quoted_end(b, i)?;
    let raw_request = &line[i + 1..req_end - 1];
    let mut rest = line[req_end..].split_ascii_whitespace();
    let status: u16 = rest
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..=999).contains(s))?;
    let bytes = rest.next().and_then(|t| t.parse::<u64>().ok());
    // Quoted referrer and user agent, when present (combined format).
    let tail = line[req_end..].trim_start();
    let mut quoted = Vec::with_capacity(2);
    let tb = tail.as_bytes();
    let mut j = 0;
    while quoted.len() < 2 {
        let Some(q) = find_byte(&tail[j..], b'"') else {
            break;
        };
        let start = j + q;
        let Some(end) = quoted_end(tb, start) else {
            // A last field cut before its closing quote (truncated line).
            quoted.push(&tail[start..]);
            break;
        };
        quoted.push(&tail[start..end]);
        j = end;
    }
    let req = split_request(raw_request);
    let mut info = Info::new(
        Category::Web,
        Action::HttpRequest,
        if status >= 400 {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        match status {
            500..=599 => 4,
            400..=499 => 3,
            _ => 1,
        },
    );
    info.src_ip = parse_ip(client);
    info.user = user.filter(|u| *u != "-");
    info.http = Some(super::HttpInfo {
        method: req.method,
        path: Some(req.target),
        protocol: req.protocol,
        status: Some(status),
        bytes,
        referrer: quoted.first().copied().and_then(unquote),
        user_agent: quoted.get(1).copied().and_then(unquote),
    });
    if let Some(v) = vhost {
        let (name, port) = match v.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|c| c.is_ascii_digit()) => (n, p.parse().ok()),
            _ => (v, None),
        };
        info.attrs.push((Cow::Borrowed("vhost"), name));
        info.dest_port = port;
    }
    Some((time, info))
}

/// Fields of an nginx error message: `…, client: X, server: Y, request: "…", host: "…"`.
fn nginx_field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let at = find_str(msg, key)?;
    let v = &msg[at + key.len()..];
    let v = if let Some(q) = v.strip_prefix('"') {
        &q[..find_byte(q, b'"').unwrap_or(q.len())]
    } else {
        &v[..find_byte(v, b',').unwrap_or(v.len())]
    };
    (!v.is_empty()).then_some(v)
}

/// nginx appends `, client: IP, server: …, request: "…"` after a message
/// that may quote attacker text (a user name); the real client field is the
/// last one before the last `, request: "` (quotes inside the request are
/// escaped by nginx, so that marker cannot be forged after it).
fn nginx_client(msg: &str) -> Option<&str> {
    let limit = msg.rfind(", request: \"").unwrap_or(msg.len());
    let at = msg[..limit].rfind("client: ")?;
    let v = &msg[at + 8..];
    let v = &v[..find_byte(v, b',').unwrap_or(v.len())];
    (!v.is_empty()).then_some(v)
}

/// What an error message says about the request, the same for nginx and Apache.
fn classify_error<'a>(msg: &'a str, info: &mut Info<'a>) {
    let lower_has = |needle: &str| {
        msg.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    // nginx: user "x" was not found in "…" / user "x": password mismatch
    if let Some(r) = msg
        .strip_prefix("user \"")
        .or_else(|| find_str(msg, " user \"").map(|i| &msg[i + 7..]))
    {
        if let Some(end) = find_byte(r, b'"') {
            info.user = Some(&r[..end]);
        }
    }
    if lower_has("was not found in")
        || lower_has("password mismatch")
        || lower_has("authentication failure")
        || (lower_has("user ") && lower_has(" not found"))
    {
        info.action = Action::HttpAuthFailed;
        info.outcome = Outcome::Failure;
        info.severity = 5;
        if info.http.is_none() {
            // Apache names the protected path: `user sss not found: /admin`
            if let Some(i) = find_str(msg, "not found: ") {
                let path = msg[i + 11..].trim();
                if path.starts_with('/') {
                    info.http = Some(super::HttpInfo {
                        path: Some(path),
                        ..Default::default()
                    });
                }
            }
        }
        if info.user.is_none() {
            // Apache: `AH01618: user sss not found: /`
            if let Some(i) = find_str(msg, "user ") {
                let r = &msg[i + 5..];
                let end = r.find([' ', ':']).unwrap_or(r.len());
                if end > 0 {
                    info.user = Some(&r[..end]);
                }
            }
        }
    } else if lower_has("limiting requests") || lower_has("limiting connections") {
        info.action = Action::HttpRateLimited;
        info.outcome = Outcome::Failure;
        info.severity = 4;
    }
}

/// nginx: `2021/12/01 13:53:33 [error] 31#31: *46 message, client: …`.
/// The time has no zone; it is read in `offset`.
pub fn parse_nginx_error(
    line: &str,
    offset: FixedOffset,
) -> Option<(DateTime<FixedOffset>, Info<'_>)> {
    let b = line.as_bytes();
    if b.len() < 22
        || b[4] != b'/'
        || b[7] != b'/'
        || b[10] != b' '
        || b[19] != b' '
        || b[20] != b'['
    {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(&line[..19], "%Y/%m/%d %H:%M:%S").ok()?;
    let time = offset.from_local_datetime(&naive).single()?;
    let level_end = 21 + find_byte(&line[21..], b']')?;
    let level = &line[21..level_end];
    let rest = line[level_end + 1..].trim_start();
    // `pid#tid: *cid message`
    let msg = match find_str(rest, ": ") {
        Some(i) if rest[..i].contains('#') => &rest[i + 2..],
        _ => rest,
    };
    let msg = match msg.strip_prefix('*') {
        Some(r) => r.split_once(' ').map_or(r, |(_, m)| m),
        None => msg,
    };
    let mut info = Info::new(
        Category::Web,
        Action::HttpError,
        Outcome::Failure,
        error_severity(level),
    );
    info.attrs.push((Cow::Borrowed("level"), level));
    if let Some(c) = nginx_client(msg) {
        info.src_ip = parse_ip(c);
    }
    if let Some(s) = nginx_field(msg, "server: ") {
        info.attrs.push((Cow::Borrowed("server"), s));
    }
    if let Some(h) = nginx_field(msg, "host: ") {
        info.attrs.push((Cow::Borrowed("http_host"), h));
    }
    if let Some(u) = nginx_field(msg, "upstream: ") {
        info.attrs.push((Cow::Borrowed("upstream"), u));
    }
    if let Some(r) = nginx_field(msg, "request: ") {
        let req = split_request(r);
        info.http = Some(super::HttpInfo {
            method: req.method,
            path: Some(req.target),
            protocol: req.protocol,
            ..Default::default()
        });
    }
    classify_error(msg, &mut info);
    Some((time, info))
}

fn error_severity(level: &str) -> u8 {
    match level.rsplit(':').next().unwrap_or(level) {
        "emerg" => 9,
        "alert" => 8,
        "crit" => 7,
        "error" => 4,
        "warn" | "warning" => 3,
        _ => 1,
    }
}

/// Apache: `[Thu Oct 13 12:24:49.880562 2022] [module:level] [pid N:tid M] [client IP:port] AH…: msg`.
pub fn parse_apache_error(
    line: &str,
    offset: FixedOffset,
) -> Option<(DateTime<FixedOffset>, Info<'_>)> {
    let inner = line.strip_prefix('[')?;
    let close = find_byte(inner, b']')?;
    // `Thu Oct 13 12:24:49.880562 2022`: the weekday is skipped, not checked
    // (hand-made samples and some generators get it wrong).
    let stamp = &inner[..close];
    let stamp = stamp.split_once(' ').map_or(stamp, |(_, rest)| rest);
    let naive = NaiveDateTime::parse_from_str(stamp, "%b %d %H:%M:%S%.f %Y").ok()?;
    let time = offset.from_local_datetime(&naive).single()?;
    Some((time, apache_error_body(inner[close + 1..].trim_start())?))
}

/// The part of an Apache error line after its timestamp (also what Apache
/// sends to syslog): `[module:level] [pid …] [client IP:port] message`.
pub fn apache_error_body(rest: &str) -> Option<Info<'_>> {
    if !rest.starts_with('[') {
        return None;
    }
    let level = rest
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map(|(l, _)| l)
        .unwrap_or("");
    let mut info = Info::new(
        Category::Web,
        Action::HttpError,
        Outcome::Failure,
        error_severity(level),
    );
    if !level.is_empty() {
        info.attrs.push((Cow::Borrowed("level"), level));
    }
    // The message starts after the first `[client …]` (text after it may
    // itself contain a forged `[client …]`), else after the last header field.
    // Behind a proxy Apache 2.4 names the peer `[remote …]` instead.
    let client_at = find_str(rest, "[client ")
        .map(|i| (i, 8))
        .or_else(|| find_str(rest, "[remote ").map(|i| (i, 8)));
    let msg_start = match client_at {
        Some((i, _)) => find_str(&rest[i..], "] ").map_or(rest.len(), |j| i + j + 2),
        None => rest.rfind("] ").map_or(0, |i| i + 2),
    };
    let msg = &rest[msg_start.min(rest.len())..];
    if let Some((i, skip)) = client_at {
        let c = &rest[i + skip..];
        // `1.2.3.4:5678`, `[2001:db8::1]:5678`, or a bare address (Apache 2.2).
        let c = match c.strip_prefix('[') {
            Some(v6) => {
                let end = find_byte(v6, b']')?;
                let port = v6[end + 1..]
                    .strip_prefix(':')
                    .and_then(|p| p[..p.find(']').unwrap_or(p.len())].parse().ok());
                info.src_ip = parse_ip(&v6[..end]);
                info.src_port = port;
                ""
            }
            None => &c[..find_byte(c, b']').unwrap_or(c.len())],
        };
        if !c.is_empty() {
            let (host, port) = match c.rsplit_once(':') {
                Some((h, p)) if parse_ip(h).is_some() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    (h, p.parse().ok())
                }
                _ => (c, None),
            };
            info.src_ip = parse_ip(host);
            info.src_port = port;
        }
    }
    classify_error(msg, &mut info);
    Some(info)
}

const METHODS: &[&str] = &[
    "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "TRACE", "CONNECT",
];

/// IIS / W3C extended log lines: `date time [server fields] method stem query
/// [port] [user] [client-ip] [agent] [referrer] status …`. The field list is
/// configurable in IIS, so fields after the query are recognised by shape:
/// the first address is the client, the first 3-digit code after the port is
/// the status. Times are UTC, as the W3C format specifies.
pub fn parse_w3c(line: &str) -> Option<(DateTime<FixedOffset>, Info<'_>)> {
    let b = line.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(&line[..19], "%Y-%m-%d %H:%M:%S").ok()?;
    let time = FixedOffset::east_opt(0)?
        .from_local_datetime(&naive)
        .single()?;
    let toks: Vec<&str> = line[20..].split_ascii_whitespace().collect();
    let m = toks.iter().position(|t| METHODS.contains(t))?;
    let stem = toks.get(m + 1)?;
    let query = toks.get(m + 2).copied().filter(|q| *q != "-");
    let mut rest = toks.iter().skip(m + 3).peekable();
    // s-port comes first when logged.
    if rest
        .peek()
        .is_some_and(|t| t.len() <= 5 && t.bytes().all(|c| c.is_ascii_digit()) && t.len() != 3)
    {
        rest.next();
    }
    let (mut client, mut agent, mut status) = (None, None, None);
    for t in rest {
        if client.is_none() {
            if let Some(ip) = parse_ip(t) {
                client = Some(ip);
                continue;
            }
        }
        if status.is_none() && t.len() == 3 {
            if let Ok(code) = t.parse::<u16>() {
                if (100..600).contains(&code) {
                    status = Some(code);
                    continue;
                }
            }
        }
        if client.is_some()
            && agent.is_none()
            && status.is_none()
            && t.bytes().any(|c| c.is_ascii_alphabetic())
        {
            agent = Some(*t);
        }
    }
    // The path is the stem plus the query; both are slices of the line.
    let path = match query {
        Some(q) => {
            let start = stem.as_ptr() as usize - line.as_ptr() as usize;
            let end = q.as_ptr() as usize - line.as_ptr() as usize + q.len();
            &line[start..end]
        }
        None => stem,
    };
    let status_outcome = match status {
        Some(s) if s >= 400 => Outcome::Failure,
        Some(_) => Outcome::Success,
        None => Outcome::Unknown,
    };
    let mut info = Info::new(
        Category::Web,
        Action::HttpRequest,
        status_outcome,
        if status.is_some_and(|s| s >= 400) {
            3
        } else {
            1
        },
    );
    info.src_ip = client;
    info.http = Some(super::HttpInfo {
        method: Some(toks[m]),
        // W3C writes a space between stem and query; keep what was logged.
        path: Some(path),
        protocol: None,
        status,
        bytes: None,
        referrer: None,
        user_agent: agent,
    });
    info.attrs.push((Cow::Borrowed("log_format"), "w3c"));
    Some((time, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_time_with_a_huge_day_number_is_rejected_not_a_panic() {
        assert!(access_time("99999999999999/Oct/2000:13:55:36 -0700").is_none());
        assert!(access_time("10/Oct/2000:13:55:36 -0700").is_some());
    }

    #[test]
    fn combined_line_with_vhost_and_offset() {
        let (t, i) = parse_access(
            r#"website.com:443 1.2.3.4 - - [25/Oct/2021:11:05:52 +0200] "GET /web/.well-known HTTP/1.1" 403 6963 "abc.com" "User-agent-string""#,
        )
        .unwrap();
        assert_eq!(t.to_rfc3339(), "2021-10-25T11:05:52+02:00");
        let h = i.http.unwrap();
        assert_eq!(
            (h.method, h.path, h.status, h.bytes),
            (Some("GET"), Some("/web/.well-known"), Some(403), Some(6963))
        );
        assert_eq!(
            (h.referrer, h.user_agent),
            (Some("abc.com"), Some("User-agent-string"))
        );
        assert_eq!(i.src_ip, parse_ip("1.2.3.4"));
        assert_eq!(i.dest_port, Some(443));
        assert_eq!(i.outcome, Outcome::Failure);
    }

    #[test]
    fn access_times() {
        assert_eq!(
            access_time("1/Apr/2014:00:00:01 -0500")
                .unwrap()
                .to_rfc3339(),
            "2014-04-01T00:00:01-05:00"
        );
        assert_eq!(
            access_time("27/Jun/2013:11:55:44").unwrap().to_rfc3339(),
            "2013-06-27T11:55:44+00:00"
        );
        assert_eq!(
            access_time("31/Jan/2015:14:29:44 ").unwrap().to_rfc3339(),
            "2015-01-31T14:29:44+00:00"
        );
        for bad in [
            "",
            "32/Jan/2015:14:29:44 +0000",
            "1/Foo/2015:14:29:44 +0000",
            "1/Jan/2015 14:29:44",
            "1/Jan/2015:14:29:44 +00",
        ] {
            assert!(access_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn request_with_spaces_and_escaped_quotes_is_kept_whole() {
        let (_, i) = parse_access(r#"10.0.0.1 - - [01/Jan/2026:00:00:00 +0000] "GET /admin' OR 1=1-- \"x\" HTTP/1.1" 403 1 "-" "-""#).unwrap();
        assert_eq!(i.http.unwrap().path, Some(r#"/admin' OR 1=1-- \"x\""#));
    }

    #[test]
    fn common_format_and_missing_user() {
        let (_, i) = parse_access(
            r#"116.203.1.1 - - [05/Mar/2021:09:01:38 +0100] "GET /x HTTP/1.0" 200 1513"#,
        )
        .unwrap();
        assert_eq!(i.http.unwrap().user_agent, None);
        let (_, i) = parse_access(r#"192.168.1.1 - [08/Jun/2020:08:04:43 +0000] "GET /api/test HTTP/1.1" 200 100 "-" "curl/7.68.0""#).unwrap();
        assert_eq!(i.user, None);
        let (_, i) = parse_access(r#"192.168.1.1 - user123 [08/Jun/2020:08:04:43 +0000] "GET /api/login HTTP/1.1" 200 150 "-" "curl""#).unwrap();
        assert_eq!(i.user, Some("user123"));
    }

    #[test]
    fn binary_request_has_no_method() {
        let (_, i) = parse_access(
            r#"1.2.3.4 - - [29/Jul/2023:10:26:06 -0700] "H\x00\x00\x00tj\xA8" 400 157 "-" "-""#,
        )
        .unwrap();
        let h = i.http.unwrap();
        assert_eq!((h.method, h.path), (None, Some(r"H\x00\x00\x00tj\xA8")));
    }

    #[test]
    fn iis_w3c_lines() {
        let (_, i) = parse_w3c("2015-03-11 21:59:09 1.2.3.4 GET /console/faces/com_sun_web_ui/jsp/version/version_30.jsp - 80 - 31.3.3.7 Sun+Web+Console+Fingerprinter/7.15 - 404 0 2 0").unwrap();
        let h = i.http.unwrap();
        assert_eq!(
            (i.src_ip, h.status, h.user_agent),
            (
                parse_ip("31.3.3.7"),
                Some(404),
                Some("Sun+Web+Console+Fingerprinter/7.15")
            )
        );
        let (_, i) = parse_w3c("2015-07-28 15:07:26 1.2.3.4 GET /QOsa/Default.aspx UISessionId=SN1 80 - 31.3.3.7 Open/1.0 302 0 0 624").unwrap();
        assert_eq!(
            i.http.unwrap().path,
            Some("/QOsa/Default.aspx UISessionId=SN1")
        );
    }

    #[test]
    fn nginx_error_auth_and_rate_limit() {
        let off = FixedOffset::east_opt(0).unwrap();
        let (_, i) = parse_nginx_error(
            r#"2021/12/02 11:53:15 [error] 406#406: *429 limiting requests, excess: 5.428 by zone "z", client: ::1, server: , request: "GET / HTTP/1.1", host: "la03""#,
            off,
        )
        .unwrap();
        assert_eq!(
            (i.action, i.src_ip),
            (Action::HttpRateLimited, parse_ip("::1"))
        );
        let (_, i) = parse_nginx_error(
            r#"2012/04/09 11:53:29 [error] 2865#0: *66647 user "xyz" was not found in "/var/www/.htpasswd", client: 192.0.2.1, server: www.myhost.com, request: "GET / HTTP/1.1", host: "www.myhost.com""#,
            off,
        )
        .unwrap();
        assert_eq!(
            (i.action, i.user, i.src_ip),
            (Action::HttpAuthFailed, Some("xyz"), parse_ip("192.0.2.1"))
        );
    }

    #[test]
    fn apache_error_client_and_auth() {
        let off = FixedOffset::east_opt(0).unwrap();
        let (_, i) = parse_apache_error(
            "[Thu Oct 13 12:24:49.880562 2022] [auth_basic:error] [pid 10:tid 1401] [client 31.33.58.75:50229] AH01618: user sss not found: /",
            off,
        )
        .unwrap();
        assert_eq!(
            (i.action, i.user, i.src_ip, i.src_port),
            (
                Action::HttpAuthFailed,
                Some("sss"),
                parse_ip("31.33.58.75"),
                Some(50229)
            )
        );
    }
}

//! The syslog envelope: RFC 3164 (BSD), RFC 5424, the RFC 3339-timestamped
//! BSD variant rsyslog writes by default, and journald's short format without
//! a timestamp. Pure and allocation-free: the result borrows from the line.
//!
//! Tolerated deviations (all seen in real logs and in rsyslog's test vectors):
//! leading spaces, upper-case months, a single-digit day with one space,
//! a year or a colon after the BSD timestamp, a missing hostname, a tag with
//! no colon, CR line endings.

use crate::util::find_byte;
use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};

/// Which envelope the line carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc3164,
    /// BSD layout with an RFC 3339 timestamp (rsyslog's high-precision format).
    Rfc3339,
    Rfc5424,
    /// `host proc[pid]: msg` with no timestamp (journald short output).
    JournalShort,
    /// Not syslog: a format with its own time (web server logs).
    NotSyslog,
}

/// A parsed syslog envelope; every string borrows from the input line.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<'a> {
    pub format: SyslogFormat,
    pub pri: Option<u8>,
    /// Time as written (with its offset); `None` when the line had none.
    pub timestamp: Option<DateTime<FixedOffset>>,
    pub hostname: Option<&'a str>,
    pub app: Option<&'a str>,
    pub pid: Option<&'a str>,
    pub msgid: Option<&'a str>,
    pub structured_data: Option<&'a str>,
    pub message: &'a str,
}

impl Envelope<'_> {
    pub fn facility(&self) -> Option<&'static str> {
        self.pri.map(|p| facility_name(p >> 3))
    }
    pub fn severity(&self) -> Option<&'static str> {
        self.pri.map(|p| severity_name(p & 7))
    }
    pub fn pid_number(&self) -> Option<u32> {
        self.pid.and_then(|p| p.parse().ok())
    }
}

/// Why a line is not a syslog record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    #[error("empty line")]
    Empty,
    #[error("no syslog timestamp or `host program[pid]:` header")]
    NoHeader,
    #[error("malformed RFC 5424 header: {0}")]
    Rfc5424(&'static str),
}

/// What the envelope parser needs from outside: the time against which a
/// year-less BSD date is placed, and the zone BSD timestamps are written in.
#[derive(Clone, Copy, Debug)]
pub struct SyslogOptions {
    reference: DateTime<Utc>,
    local_offset: FixedOffset,
    /// Latest local time a year-less date may fall on (reference + 1 day).
    limit: NaiveDateTime,
}

impl SyslogOptions {
    /// BSD timestamps read as UTC.
    pub fn new(reference: DateTime<Utc>) -> Self {
        Self::with_offset(
            reference,
            FixedOffset::east_opt(0).expect("zero offset is valid"),
        )
    }

    /// BSD timestamps read in the zone `local_offset`.
    pub fn with_offset(reference: DateTime<Utc>, local_offset: FixedOffset) -> Self {
        let limit = reference.with_timezone(&local_offset).naive_local() + Duration::days(1);
        SyslogOptions {
            reference,
            local_offset,
            limit,
        }
    }

    pub fn reference(&self) -> DateTime<Utc> {
        self.reference
    }

    pub fn local_offset(&self) -> FixedOffset {
        self.local_offset
    }
}

pub fn facility_name(f: u8) -> &'static str {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    NAMES.get(f as usize).copied().unwrap_or("invalid")
}

pub fn severity_name(s: u8) -> &'static str {
    const NAMES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    NAMES.get(s as usize).copied().unwrap_or("invalid")
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// Parses one line's envelope.
pub fn parse_envelope<'a>(
    line: &'a str,
    opts: &SyslogOptions,
) -> Result<Envelope<'a>, SyslogError> {
    parse_envelope_cached(line, opts, &mut TimestampCache::default())
}

/// The last BSD/RFC 3339 timestamp text and what it parsed to. Consecutive
/// log lines usually share their second, and building the date is the
/// dearest part of the envelope; a hit skips it. Holds no borrowed data.
#[derive(Clone, Debug, Default)]
pub struct TimestampCache {
    text: [u8; 32],
    len: usize,
    value: Option<(DateTime<FixedOffset>, SyslogFormat)>,
}

impl TimestampCache {
    fn lookup<'a>(&self, s: &'a str) -> Option<(DateTime<FixedOffset>, &'a str, SyslogFormat)> {
        let (ts, format) = self.value?;
        let b = s.as_bytes();
        let key = &self.text[..self.len];
        (b.starts_with(key) && matches!(b.get(self.len), None | Some(b' ')))
            .then(|| (ts, &s[self.len..], format))
    }

    fn store(&mut self, s: &str, rest: &str, ts: DateTime<FixedOffset>, format: SyslogFormat) {
        let used = s.len() - rest.len();
        if used <= self.text.len() {
            self.text[..used].copy_from_slice(&s.as_bytes()[..used]);
            self.len = used;
            self.value = Some((ts, format));
        }
    }
}

/// [`parse_envelope`] with a timestamp cache carried from line to line.
pub fn parse_envelope_cached<'a>(
    line: &'a str,
    opts: &SyslogOptions,
    cache: &mut TimestampCache,
) -> Result<Envelope<'a>, SyslogError> {
    let line = line.trim_end_matches(['\r', '\n']).trim_start_matches(' ');
    if line.is_empty() {
        return Err(SyslogError::Empty);
    }
    let (pri, rest) = split_pri(line);
    if pri.is_some() {
        if let Some(after) = rest.strip_prefix("1 ") {
            return parse_5424(pri, after);
        }
    }
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let stamped = cache.lookup(rest).or_else(|| {
        let parsed = bsd_timestamp(rest, opts).or_else(|| iso_timestamp(rest, opts));
        if let Some((ts, after, format)) = parsed {
            cache.store(rest, after, ts, format);
        }
        parsed
    });
    if let Some((ts, after, format)) = stamped {
        let mut env = bsd_body(after);
        env.pri = pri;
        env.timestamp = Some(ts);
        env.format = format;
        return Ok(env);
    }
    journal_short(rest).map(|mut env| {
        env.pri = pri;
        env
    })
}

fn split_pri(line: &str) -> (Option<u8>, &str) {
    let b = line.as_bytes();
    if b.first() != Some(&b'<') {
        return (None, line);
    }
    let Some(close) = b.iter().take(5).position(|&c| c == b'>') else {
        return (None, line);
    };
    let digits = &line[1..close];
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return (None, line);
    }
    match digits.parse::<u16>() {
        Ok(v) if v <= 191 => (Some(v as u8), &line[close + 1..]),
        _ => (None, line),
    }
}

fn take_digits(s: &[u8], i: &mut usize, min: usize, max: usize) -> Option<u32> {
    let start = *i;
    let mut v: u32 = 0;
    while *i < s.len() && *i - start < max && s[*i].is_ascii_digit() {
        v = v * 10 + (s[*i] - b'0') as u32;
        *i += 1;
    }
    (*i - start >= min).then_some(v)
}

/// `Mmm dd [yyyy ]HH:MM:SS[.frac][:]`
fn bsd_timestamp<'a>(
    s: &'a str,
    opts: &SyslogOptions,
) -> Option<(DateTime<FixedOffset>, &'a str, SyslogFormat)> {
    let b = s.as_bytes();
    if b.len() < 14 {
        return None;
    }
    let mon = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    let month = MONTHS.iter().position(|m| **m == mon)? as u32 + 1;
    let mut i = 3;
    if b[i] != b' ' {
        return None;
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    let day = take_digits(b, &mut i, 1, 2)?;
    if b.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    // Optional year (`Mar 7 2008 19:06:53`): four digits then a space.
    let mut year = None;
    if b.len() > i + 5 && b[i..i + 4].iter().all(u8::is_ascii_digit) && b[i + 4] == b' ' {
        year = Some(take_digits(b, &mut i, 4, 4)? as i32);
        i += 1;
    }
    let hh = take_digits(b, &mut i, 2, 2)?;
    (b.get(i) == Some(&b':')).then_some(())?;
    i += 1;
    let mm = take_digits(b, &mut i, 2, 2)?;
    (b.get(i) == Some(&b':')).then_some(())?;
    i += 1;
    let ss = take_digits(b, &mut i, 2, 2)?;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let frac = take_digits(b, &mut i, 1, 9)?;
        nanos = frac * 10u32.pow(9 - (i - start) as u32);
    }
    if b.get(i) == Some(&b':') {
        i += 1;
    }
    if i < b.len() && b[i] != b' ' {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(hh, mm, ss.min(59), nanos)?;
    let date = match year {
        Some(y) => NaiveDate::from_ymd_opt(y, month, day)?,
        None => infer_year(month, day, time, opts)?,
    };
    let ts = opts
        .local_offset
        .from_local_datetime(&NaiveDateTime::new(date, time))
        .single()?;
    Some((ts, &s[i..], SyslogFormat::Rfc3164))
}

/// Places a year-less date in the year that puts it at most one day after
/// the reference time: a December line read in January belongs to last year.
pub fn infer_year(
    month: u32,
    day: u32,
    time: NaiveTime,
    opts: &SyslogOptions,
) -> Option<NaiveDate> {
    let year = opts.limit.year();
    // Feb 29 exists only in leap years: walk back until the date is valid.
    (0..9).map(|back| year - back).find_map(|y| {
        NaiveDate::from_ymd_opt(y, month, day)
            .filter(|d| NaiveDateTime::new(*d, time) <= opts.limit)
    })
}

/// `2010-08-30T23:00:05[.frac](Z|±hh:mm)` as the first token.
fn iso_timestamp<'a>(
    s: &'a str,
    opts: &SyslogOptions,
) -> Option<(DateTime<FixedOffset>, &'a str, SyslogFormat)> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[10] != b'T' || !b[0].is_ascii_digit() {
        return None;
    }
    let end = find_byte(s, b' ').unwrap_or(s.len());
    let tok = &s[..end];
    let ts = match DateTime::parse_from_rfc3339(tok) {
        Ok(t) => t,
        Err(_) => {
            let naive = NaiveDateTime::parse_from_str(tok, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
            opts.local_offset.from_local_datetime(&naive).single()?
        }
    };
    Some((ts, &s[end..], SyslogFormat::Rfc3339))
}

/// Does this token look like a syslog tag rather than a hostname?
fn looks_like_tag(tok: &str) -> bool {
    tok.starts_with('[') || tok.ends_with(':') || (tok.contains('[') && tok.ends_with(']'))
}

/// `[host ]tag[[pid]][:] msg` after the timestamp.
fn bsd_body(s: &str) -> Envelope<'_> {
    let s = s.trim_start_matches(' ');
    let mut env = Envelope {
        format: SyslogFormat::Rfc3164,
        pri: None,
        timestamp: None,
        hostname: None,
        app: None,
        pid: None,
        msgid: None,
        structured_data: None,
        message: "",
    };
    if s.is_empty() {
        return env;
    }
    let (first, rest) = split_token(s);
    let tag_part = if looks_like_tag(first) {
        s
    } else {
        env.hostname = Some(first);
        rest.trim_start_matches(' ')
    };
    if tag_part.is_empty() {
        return env;
    }
    let (app, pid, msg) = split_tag(tag_part);
    env.app = (!app.is_empty()).then_some(app);
    env.pid = pid;
    env.message = msg;
    env
}

fn split_token(s: &str) -> (&str, &str) {
    match find_byte(s, b' ') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Splits `prog[pid]: msg`, `[prog]: msg`, `prog: msg`, `prog msg`.
fn split_tag(s: &str) -> (&str, Option<&str>, &str) {
    if let Some(inner) = s.strip_prefix('[') {
        // `[sshd]: msg` / `[sshd] msg`
        if let Some(close) = find_byte(inner, b']') {
            let name = &inner[..close];
            if !name.contains(' ') {
                let rest = &inner[close + 1..];
                let rest = rest.strip_prefix(':').unwrap_or(rest);
                return (name, None, rest.strip_prefix(' ').unwrap_or(rest));
            }
        }
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] != b' ' && b[i] != b':' && b[i] != b'[' {
        i += 1;
    }
    let app = &s[..i];
    let mut pid = None;
    let mut j = i;
    if b.get(i) == Some(&b'[') {
        if let Some(close) = find_byte(&s[i..], b']') {
            let inner = &s[i + 1..i + close];
            if !inner.contains(' ') {
                pid = Some(inner);
                j = i + close + 1;
            }
        }
        if pid.is_none() {
            // `[` that is not a pid: the tag ends at the next space or colon.
            while j < b.len() && b[j] != b' ' && b[j] != b':' {
                j += 1;
            }
            return finish_tag(s, &s[..j], None, j);
        }
    }
    finish_tag(s, app, pid, j)
}

fn finish_tag<'a>(
    s: &'a str,
    app: &'a str,
    pid: Option<&'a str>,
    mut j: usize,
) -> (&'a str, Option<&'a str>, &'a str) {
    let b = s.as_bytes();
    if b.get(j) == Some(&b':') {
        j += 1;
    }
    if b.get(j) == Some(&b' ') {
        j += 1;
    }
    (app, pid, &s[j.min(s.len())..])
}

/// journald short output without a timestamp: `host proc[pid]: msg`.
fn journal_short(s: &str) -> Result<Envelope<'_>, SyslogError> {
    let (host, rest) = split_token(s);
    let rest = rest.trim_start_matches(' ');
    let (tag, _) = split_token(rest);
    let is_tag = tag.ends_with(':') && tag.len() > 1 && is_hostname(host);
    if !is_tag {
        return Err(SyslogError::NoHeader);
    }
    let (app, pid, msg) = split_tag(rest);
    Ok(Envelope {
        format: SyslogFormat::JournalShort,
        pri: None,
        timestamp: None,
        hostname: Some(host),
        app: (!app.is_empty()).then_some(app),
        pid,
        msgid: None,
        structured_data: None,
        message: msg,
    })
}

/// Host names and address literals: letters, digits, `.`, `-`, `_`, `:`.
fn is_hostname(tok: &str) -> bool {
    !tok.is_empty()
        && tok.len() <= 255
        && tok
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        && !tok.ends_with(':')
}

fn nil(tok: &str) -> Option<&str> {
    (tok != "-" && !tok.is_empty()).then_some(tok)
}

/// `TIMESTAMP HOST APP PROCID MSGID SD [MSG]` after `<PRI>1 `.
fn parse_5424(pri: Option<u8>, s: &str) -> Result<Envelope<'_>, SyslogError> {
    let mut rest = s;
    let mut fields = [""; 5];
    for f in fields.iter_mut() {
        let (tok, r) = split_token(rest);
        if tok.is_empty() {
            return Err(SyslogError::Rfc5424("missing header field"));
        }
        *f = tok;
        rest = r.strip_prefix(' ').unwrap_or(r);
    }
    let [ts_tok, host, app, procid, msgid] = fields;
    let timestamp = match ts_tok {
        "-" => None,
        t => Some(
            DateTime::parse_from_rfc3339(t).map_err(|_| SyslogError::Rfc5424("bad timestamp"))?,
        ),
    };
    let (sd, msg) = if let Some(r) = rest.strip_prefix('-') {
        (None, r)
    } else if rest.starts_with('[') {
        let end = structured_data_end(rest)
            .ok_or(SyslogError::Rfc5424("unterminated structured data"))?;
        (Some(&rest[..end]), &rest[end..])
    } else if rest.is_empty() {
        (None, rest)
    } else {
        return Err(SyslogError::Rfc5424(
            "structured data must be '-' or '[...]'",
        ));
    };
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Ok(Envelope {
        format: SyslogFormat::Rfc5424,
        pri,
        timestamp,
        hostname: nil(host),
        app: nil(app),
        pid: nil(procid),
        msgid: nil(msgid),
        structured_data: sd,
        message: msg,
    })
}

/// Byte offset just past the last `[...]` element (quotes and `\` escapes honoured).
fn structured_data_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        let mut in_quotes = false;
        i += 1;
        loop {
            match *b.get(i)? {
                b'\\' => i += 1,
                b'"' => in_quotes = !in_quotes,
                b']' if !in_quotes => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SyslogOptions {
        SyslogOptions::new(Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap())
    }

    #[test]
    fn bsd_line_with_pid() {
        let e = parse_envelope(
            "Feb 12 14:10:21 sd-126005 sshd[16378]: Invalid user pascal",
            &opts(),
        )
        .unwrap();
        assert_eq!(e.hostname, Some("sd-126005"));
        assert_eq!(e.app, Some("sshd"));
        assert_eq!(e.pid, Some("16378"));
        assert_eq!(e.message, "Invalid user pascal");
        assert_eq!(
            e.timestamp.unwrap().to_rfc3339(),
            "2025-02-12T14:10:21+00:00"
        );
    }

    #[test]
    fn december_line_read_in_january_is_last_year() {
        let e = parse_envelope("Dec 31 23:59:59 h cron[1]: x", &opts()).unwrap();
        assert_eq!(e.timestamp.unwrap().year(), 2025);
        let e = parse_envelope("Jan 10 12:30:00 h cron[1]: x", &opts()).unwrap();
        assert_eq!(e.timestamp.unwrap().year(), 2026);
        let e = parse_envelope("Jan 11 11:00:00 h cron[1]: x", &opts()).unwrap();
        assert_eq!(
            e.timestamp.unwrap().year(),
            2026,
            "up to a day ahead is clock skew, not last year"
        );
    }

    #[test]
    fn tolerated_deviations() {
        let o = opts();
        for line in [
            " Mar  7 19:06:53 example tag: m",
            "<38> Mar  7 19:06:53 example tag: m",
            "MAR 7 19:06:53 example tag: m",
            "Mar 7 2008 19:06:53: example tag: m",
            "Mar 7 19:06:53: example tag: m\r\n",
        ] {
            let e = parse_envelope(line, &o).unwrap();
            assert_eq!(
                (e.hostname, e.app, e.message),
                (Some("example"), Some("tag"), "m"),
                "{line}"
            );
        }
    }

    #[test]
    fn missing_hostname_and_bracketed_daemon() {
        let e = parse_envelope(
            "Mar  3 00:17:22 [sshd]: User root from 1.2.3.4 not allowed",
            &opts(),
        )
        .unwrap();
        assert_eq!((e.hostname, e.app), (None, Some("sshd")));
        let e = parse_envelope(
            "Feb 17 17:40:17 sshd[19725]: Connection from 192.0.2.10",
            &opts(),
        )
        .unwrap();
        assert_eq!(
            (e.hostname, e.app, e.pid),
            (None, Some("sshd"), Some("19725"))
        );
    }

    #[test]
    fn rfc5424_with_structured_data_and_offset() {
        let line = r#"<38>1 2019-07-08T17:40:17.954167-04:00 hostname.example.com sshd 55555 - [timeQuality tzKnown="1"][x@1 t="[b\]]"] Failed x"#;
        let e = parse_envelope(line, &opts()).unwrap();
        assert_eq!(e.format, SyslogFormat::Rfc5424);
        assert_eq!(e.facility(), Some("auth"));
        assert_eq!(e.severity(), Some("info"));
        assert_eq!(e.app, Some("sshd"));
        assert_eq!(e.pid, Some("55555"));
        assert_eq!(e.message, "Failed x");
        assert_eq!(
            e.timestamp.unwrap().with_timezone(&Utc).to_rfc3339(),
            "2019-07-08T21:40:17.954167+00:00"
        );
    }

    #[test]
    fn rfc5424_all_nil() {
        let e = parse_envelope("<1>1 - - - - - -", &opts()).unwrap();
        assert_eq!(
            (e.timestamp, e.hostname, e.app, e.message),
            (None, None, None, "")
        );
    }

    #[test]
    fn timestamp_cache_hits_only_on_identical_stamp() {
        let o = opts();
        let mut cache = TimestampCache::default();
        let a = parse_envelope_cached("Mar  7 19:06:53 h a: x", &o, &mut cache).unwrap();
        let b = parse_envelope_cached("Mar  7 19:06:53 h b: y", &o, &mut cache).unwrap();
        let c = parse_envelope_cached("Mar  7 19:06:539 h b: y", &o, &mut cache);
        let d = parse_envelope_cached("Mar  7 19:06:54 h b: y", &o, &mut cache).unwrap();
        assert_eq!(a.timestamp, b.timestamp);
        assert_eq!((b.hostname, b.app, b.message), (Some("h"), Some("b"), "y"));
        assert!(c.is_err() || c.unwrap().timestamp != a.timestamp);
        assert_eq!(
            d.timestamp.unwrap() - a.timestamp.unwrap(),
            chrono::Duration::seconds(1)
        );
    }

    #[test]
    fn journal_short_format() {
        let e = parse_envelope("srv sshd[13709]: error: PAM: x", &opts()).unwrap();
        assert_eq!(e.format, SyslogFormat::JournalShort);
        assert_eq!(
            (e.hostname, e.app, e.pid, e.message),
            (Some("srv"), Some("sshd"), Some("13709"), "error: PAM: x")
        );
        assert!(parse_envelope("hello world", &opts()).is_err());
    }
}

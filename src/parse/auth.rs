//! Linux authentication messages: OpenSSH (`sshd`, `sshd-session`,
//! `sshd-auth`), PAM modules, sudo, su, systemd-logind, cron sessions and
//! account changes (useradd/usermod/userdel/passwd).
//!
//! Text in these lines is partly attacker-controlled (user names, the client
//! ident string). Every extraction anchors on the parts sshd writes itself:
//! for `for USER from HOST port N ssh2`, a candidate host is accepted only if
//! what follows it matches sshd's own tail grammar, so a user name such as
//! `x from 10.0.0.1` cannot move `src_ip`.
//!
//! sshd spreads one connection over several lines and some failures carry no
//! address (`Disconnecting: Too many authentication failures`, kex errors).
//! [`SshState`] remembers, per (host, pid), the client address and whether a
//! failure is still waiting for one, bounded in size.

use std::net::IpAddr;

use crate::event::{Action, Category, Outcome, parse_ip};
use crate::util::{find_byte, find_str, rfind_byte, rfind_str, split_once_str};

/// What the auth parser understood of one message.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthInfo<'a> {
    pub category: Category,
    pub action: Action,
    pub outcome: Outcome,
    pub severity: u8,
    pub user: Option<&'a str>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub attrs: Vec<(&'static str, &'a str)>,
    /// `message repeated N times: [...]` stands for N occurrences.
    pub repeat: u32,
}

impl<'a> AuthInfo<'a> {
    fn new(category: Category, action: Action, outcome: Outcome, severity: u8) -> Self {
        AuthInfo {
            category,
            action,
            outcome,
            severity,
            user: None,
            src_ip: None,
            src_port: None,
            attrs: Vec::new(),
            repeat: 1,
        }
    }
    fn auth(action: Action, outcome: Outcome, severity: u8) -> Self {
        Self::new(Category::Auth, action, outcome, severity)
    }
    fn user(mut self, u: &'a str) -> Self {
        self.user = Some(u);
        self
    }
    fn attr(mut self, k: &'static str, v: &'a str) -> Self {
        self.attrs.push((k, v));
        self
    }
    /// Sets the client from a host token: an IP goes to `src_ip`, a DNS name to
    /// the `src_host` attribute.
    fn host(mut self, token: &'a str) -> Self {
        match parse_ip(token) {
            Some(ip) => self.src_ip = Some(ip),
            None if !token.is_empty() => self.attrs.push(("src_host", token)),
            None => {}
        }
        self
    }
    fn port(mut self, p: Option<u16>) -> Self {
        self.src_port = p;
        self
    }
    fn message(category: Category, severity: u8) -> Self {
        Self::new(category, Action::Message, Outcome::Unknown, severity)
    }
}

/// Largest `message repeated N times` count honoured; bigger claims are
/// clamped so one forged line cannot flood detection.
pub const MAX_REPEAT: u32 = 10_000;

// ---------------------------------------------------------------------------
// Per-connection memory for sshd
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
struct Conn {
    /// Hash of (syslog host, pid); 0 marks an empty slot.
    key: u64,
    ip: Option<IpAddr>,
    unattributed_failure: bool,
    authenticated: bool,
}

/// Bounded memory of sshd connections, keyed by (syslog host, pid).
///
/// A direct-mapped table: each connection hashes to one slot and a newer
/// connection that lands on an occupied slot replaces it. Memory is fixed,
/// lookups never allocate, and an evicted entry only costs the attribution
/// of a later address-less line of a long-gone connection.
#[derive(Debug)]
pub struct SshState {
    slots: Vec<Conn>,
}

impl Default for SshState {
    fn default() -> Self {
        Self::with_capacity(65_536)
    }
}

impl SshState {
    /// `cap` is rounded up to a power of two.
    pub fn with_capacity(cap: usize) -> Self {
        SshState {
            slots: vec![Conn::default(); cap.max(1).next_power_of_two()],
        }
    }

    /// Connections currently remembered.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|c| c.key != 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry(&mut self, key: u64) -> &mut Conn {
        let key = key.max(1);
        let mask = self.slots.len() - 1;
        let slot = &mut self.slots[(key ^ (key >> 29)) as usize & mask];
        if slot.key != key {
            *slot = Conn {
                key,
                ..Conn::default()
            };
        }
        slot
    }
}

fn conn_key(host: &str, pid: u32) -> u64 {
    crate::util::fnv1a_extend(crate::util::fnv1a(host.as_bytes()), &pid.to_le_bytes())
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

/// Is this program one whose messages the auth parser understands?
pub fn is_auth_program(program: &str) -> bool {
    matches!(
        base_program(program),
        "sshd"
            | "sshd-session"
            | "sshd-auth"
            | "sudo"
            | "su"
            | "systemd-logind"
            | "useradd"
            | "usermod"
            | "userdel"
            | "groupadd"
            | "groupdel"
            | "passwd"
            | "chpasswd"
            | "chage"
            | "cron"
            | "CRON"
            | "crond"
            | "login"
    )
}

/// `sshd(pam_unix)` → `sshd`.
fn base_program(program: &str) -> &str {
    match find_byte(program, b'(') {
        Some(i) => &program[..i],
        None => program,
    }
}

/// Understands one message of `program` (pid and syslog host give the
/// connection identity). Returns `None` for a program this parser does not
/// cover; covered programs always yield something (`message` at worst).
pub fn parse_auth<'a>(
    program: &str,
    pid: Option<u32>,
    syslog_host: &str,
    message: &'a str,
    state: &mut SshState,
) -> Option<AuthInfo<'a>> {
    let base = base_program(program);
    if !is_auth_program(base) {
        // PAM lines can come from any service's program name.
        return pam_message(message);
    }
    let (message, repeat) = unwrap_repeated(message);
    let mut info = match base {
        "sshd" | "sshd-session" | "sshd-auth" => {
            sshd(message, pid.map(|p| conn_key(syslog_host, p)), state)
        }
        "sudo" => sudo(message),
        "su" => su(message),
        "systemd-logind" => logind(message),
        "useradd" | "usermod" | "userdel" | "groupadd" | "groupdel" | "passwd" | "chpasswd"
        | "chage" => account(message),
        "cron" | "CRON" | "crond" => cron(message),
        _ => pam_message(message).unwrap_or_else(|| AuthInfo::message(Category::Auth, 1)),
    };
    info.repeat = repeat;
    Some(info)
}

/// `message repeated 3 times: [ inner]` → (`inner`, 3).
fn unwrap_repeated(m: &str) -> (&str, u32) {
    if let Some(rest) = m.strip_prefix("message repeated ") {
        if let Some((n, tail)) = split_once_str(rest, " times: [") {
            if let Ok(n) = n.parse::<u32>() {
                let inner = tail.strip_suffix(']').unwrap_or(tail).trim_start();
                return (inner, n.clamp(1, MAX_REPEAT));
            }
        }
    }
    (m, 1)
}

// ---------------------------------------------------------------------------
// sshd
// ---------------------------------------------------------------------------

/// Strips prefixes that wrap sshd's own text: Solaris `[ID n fac.pri]`, a
/// kernel-uptime stamp, and `error:` / `fatal:` levels.
fn strip_sshd_prefixes(mut m: &str) -> &str {
    loop {
        let before = m.len();
        if let Some(r) = m.strip_prefix("[ID ") {
            if let Some(close) = find_str(r, "] ") {
                m = &r[close + 2..];
            }
        }
        if let Some(r) = m.strip_prefix("kernel:") {
            let r = r.trim_start();
            if let Some(inner) = r.strip_prefix('[') {
                if let Some(close) = find_byte(inner, b']') {
                    let r = &inner[close + 1..];
                    m = r.strip_prefix(':').unwrap_or(r).trim_start();
                }
            }
        }
        for p in ["error: ", "fatal: "] {
            if let Some(r) = m.strip_prefix(p) {
                m = r;
            }
        }
        if m.len() == before {
            return m;
        }
    }
}

fn sshd<'a>(raw: &'a str, key: Option<u64>, state: &mut SshState) -> AuthInfo<'a> {
    let m = strip_sshd_prefixes(raw);
    let mut info = sshd_message(m);
    let Some(key) = key else {
        return info;
    };
    let conn = state.entry(key);
    if let Some(ip) = info.src_ip {
        conn.ip = Some(ip);
    } else if let Some(ip) = conn.ip {
        if info.outcome == Outcome::Failure || info.action == Action::Connection {
            info.src_ip = Some(ip);
        }
    }
    match info.action {
        Action::LoginSuccess => {
            conn.authenticated = true;
            conn.unattributed_failure = false;
        }
        // A close without `[preauth]` is only a failure when it finally names
        // the client of an earlier failure that could not be attributed.
        Action::Disconnect
            if conn.unattributed_failure && !conn.authenticated && info.src_ip.is_some() =>
        {
            conn.unattributed_failure = false;
            info.action = Action::PreauthDisconnect;
            info.outcome = Outcome::Failure;
            info.category = Category::Auth;
            info.severity = 3;
            info.attrs
                .push(("attributed_from", "earlier failure on this connection"));
        }
        _ if info.outcome == Outcome::Failure && info.src_ip.is_none() => {
            conn.unattributed_failure = true
        }
        _ => {}
    }
    info
}

/// Parses ` port N` at the start of `s`, returning the port and the rest.
fn take_port(s: &str) -> (Option<u16>, &str) {
    if let Some(r) = s.strip_prefix(" port ") {
        let end = r
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(r.len());
        if end > 0 {
            return (r[..end].parse().ok(), &r[end..]);
        }
    }
    (None, s)
}

/// sshd's tail after `from HOST` in Failed/Accepted lines:
/// `[ port N][ on ADDR[ port N]][ sshN][: info][ [preauth]]`.
fn auth_tail_ok(tail: &str) -> Option<Option<u16>> {
    let (port, mut t) = take_port(tail);
    if let Some(r) = t.strip_prefix(" on ") {
        let end = find_byte(r, b' ').unwrap_or(r.len());
        t = take_port(&r[end..]).1;
    }
    if let Some(r) = t.strip_prefix(" ssh") {
        t = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    (t.is_empty() || t.starts_with(": ") || t == " [preauth]").then_some(port)
}

/// `[ port N][ [preauth]]` and nothing else.
fn port_tail_ok(tail: &str) -> Option<Option<u16>> {
    let (port, t) = take_port(tail);
    (t.is_empty() || t == " [preauth]").then_some(port)
}

/// A token that can stand for a client: an IP, or a DNS name.
fn plausible_host(tok: &str) -> bool {
    !tok.is_empty()
        && tok.len() <= 255
        && (parse_ip(tok).is_some()
            || tok
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
                && tok.bytes().any(|b| b == b'.'))
}

/// Finds `USER from HOST<tail>` scanning `from` candidates left to right;
/// the first whose tail satisfies `tail_ok` wins.
fn user_from<'a, T>(
    s: &'a str,
    tail_ok: impl Fn(&'a str) -> Option<T>,
) -> Option<(&'a str, &'a str, T)> {
    let mut search = 0;
    while let Some(off) = find_str(&s[search..], "from ") {
        let at = search + off;
        search = at + 5;
        if at > 0 && s.as_bytes()[at - 1] != b' ' {
            continue;
        }
        let host_start = at + 5;
        let host_end = s[host_start..]
            .find(' ')
            .map_or(s.len(), |i| host_start + i);
        let host = &s[host_start..host_end];
        if !plausible_host(host) {
            continue;
        }
        if let Some(t) = tail_ok(&s[host_end..]) {
            let user = if at == 0 { "" } else { &s[..at - 1] };
            return Some((user, host, t));
        }
    }
    None
}

/// `[invalid |authenticating ]user NAME IP port N` read from the right, so a
/// user name containing spaces or addresses cannot move the client.
/// `rest` is what follows the port (`: reason`, ` [preauth]`, empty).
fn user_ip_port(s: &str) -> Option<(Option<&str>, &str, Option<u16>, &str)> {
    let body = s.strip_suffix(" [preauth]").unwrap_or(s);
    let mut search_end = body.len();
    while let Some(p) = rfind_str(&body[..search_end], " port ") {
        search_end = p;
        let after = &body[p + 6..];
        let digits = after
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(after.len());
        let rest = &after[digits..];
        if digits == 0 || !(rest.is_empty() || rest.starts_with(':')) {
            continue;
        }
        let head = &body[..p];
        let (who, ip) = match rfind_byte(head, b' ') {
            Some(sp) => (Some(&head[..sp]), &head[sp + 1..]),
            None => (None, head),
        };
        if parse_ip(ip).is_none() {
            continue;
        }
        let user = who.and_then(|w| {
            let w = w
                .strip_prefix("invalid ")
                .or_else(|| w.strip_prefix("authenticating "))
                .unwrap_or(w);
            w.strip_prefix("user ")
        });
        if who.is_some() && user.is_none() {
            return None;
        }
        return Some((user, ip, after[..digits].parse().ok(), rest));
    }
    None
}

fn strip_invalid_user(s: &str) -> (&str, bool) {
    for p in ["invalid user ", "illegal user "] {
        if let Some(r) = s.strip_prefix(p) {
            return (r, true);
        }
    }
    (s, false)
}

/// Everything after `Failed `/`Accepted `: `METHOD for [invalid user ]USER from HOST...`.
fn method_for_user(s: &str) -> Option<(&str, &str, bool, &str, Option<u16>)> {
    let (method, rest) = split_once_str(s, " for ")?;
    let (rest, invalid) = strip_invalid_user(rest);
    let (user, host, port) = user_from(rest, auth_tail_ok)?;
    Some((method, user, invalid, host, port))
}

fn sshd_message(m: &str) -> AuthInfo<'_> {
    use Action as A;
    use Outcome::{Failure as F, Success as S, Unknown as U};

    // PAM module lines are the most common sshd lines after failures; they
    // never match the sshd-specific prefixes below.
    if m.starts_with("pam_") {
        return pam_message(m).unwrap_or_else(|| AuthInfo::message(Category::Auth, 1));
    }

    if let Some(r) = m.strip_prefix("Failed ") {
        if let Some((method, user, invalid, host, port)) = method_for_user(r) {
            let mut i = AuthInfo::auth(A::LoginFailed, F, 5)
                .user(user)
                .host(host)
                .port(port)
                .attr("method", method);
            if invalid || user == "<invalid username>" {
                i = i.attr("invalid_user", "true");
            }
            return i;
        }
    }
    if let Some(r) = m.strip_prefix("Accepted ") {
        if let Some((method, user, _, host, port)) = method_for_user(r) {
            return AuthInfo::auth(A::LoginSuccess, S, 2)
                .user(user)
                .host(host)
                .port(port)
                .attr("method", method);
        }
    }
    if let Some(r) = m.strip_prefix("Postponed ") {
        if let Some((method, user, _, host, port)) = method_for_user(r) {
            return AuthInfo::auth(A::AuthPostponed, U, 1)
                .user(user)
                .host(host)
                .port(port)
                .attr("method", method);
        }
    }
    for p in ["Invalid user ", "Illegal user "] {
        if let Some(r) = m.strip_prefix(p) {
            if let Some((user, host, port)) = user_from(r, port_tail_ok) {
                return AuthInfo::auth(A::InvalidUser, F, 5)
                    .user(user)
                    .host(host)
                    .port(port);
            }
        }
    }
    if let Some(r) = m.strip_prefix("User ") {
        if let Some((user, host, _)) =
            user_from(r, |t: &str| t.strip_prefix(" not allowed because "))
        {
            let reason = &r[rfind_str(r, " not allowed because ").map_or(0, |i| i + 21)..];
            return AuthInfo::auth(A::LoginDenied, F, 5)
                .user(user)
                .host(host)
                .attr("reason", reason);
        }
        if let Some((user, reason)) = split_once_str(r, " not allowed because ") {
            return AuthInfo::auth(A::LoginDenied, F, 5)
                .user(user)
                .attr("reason", reason);
        }
    }
    if let Some(r) = m.strip_prefix("ROOT LOGIN REFUSED FROM ") {
        let end = find_byte(r, b' ').unwrap_or(r.len());
        let (port, _) = take_port(&r[end..]);
        return AuthInfo::auth(A::LoginDenied, F, 6)
            .user("root")
            .host(&r[..end])
            .port(port)
            .attr("reason", "root login refused");
    }
    if let Some(r) = m.strip_prefix("refused connect from ") {
        // tcpwrappers: `NAME (IP)`; the parenthesised address is sshd's own.
        let ip = r
            .rfind('(')
            .and_then(|o| r[o + 1..].strip_suffix(')'))
            .unwrap_or(r);
        return AuthInfo::new(Category::Network, A::ConnectionRefused, F, 4).host(ip);
    }
    if let Some(r) = m.strip_prefix("PAM: ") {
        return sshd_pam_error(r);
    }
    if let Some(r) = m.strip_prefix("maximum authentication attempts exceeded for ") {
        let (r, invalid) = strip_invalid_user(r);
        if let Some((user, host, port)) = user_from(r, auth_tail_ok) {
            let i = AuthInfo::auth(A::MaxAuthAttempts, F, 6)
                .user(user)
                .host(host)
                .port(port);
            return if invalid {
                i.attr("invalid_user", "true")
            } else {
                i
            };
        }
    }
    if let Some(r) = m.strip_prefix("Disconnecting: Too many authentication failures") {
        let user = r
            .strip_prefix(" for ")
            .map(|u| u.strip_suffix(" [preauth]").unwrap_or(u));
        let mut i = AuthInfo::auth(A::MaxAuthAttempts, F, 6);
        if let Some(u) = user {
            let (u, _) = strip_invalid_user(u);
            i = i.user(u);
        }
        return i;
    }
    for (p, preauth_only) in [
        ("Disconnecting ", false),
        ("Connection closed by ", true),
        ("Connection reset by ", true),
        ("Disconnected from ", true),
    ] {
        if let Some(r) = m.strip_prefix(p) {
            if let Some(i) = connection_end(r, m.ends_with("[preauth]"), preauth_only) {
                return i;
            }
        }
    }
    if let Some(r) = m.strip_prefix("Received disconnect from ") {
        return received_disconnect(r, m.ends_with("[preauth]"));
    }
    if let Some(r) = m.strip_prefix("Connection from ") {
        let end = find_byte(r, b' ').unwrap_or(r.len());
        let (port, _) = take_port(&r[end..]);
        return AuthInfo::new(Category::Network, A::Connection, U, 1)
            .host(&r[..end])
            .port(port);
    }
    if let Some(r) = m.strip_prefix("Close session: user ") {
        if let Some((user, host, _)) = user_from(r, |t: &str| take_port(t).0.map(|_| ())) {
            return AuthInfo::new(Category::Session, A::SessionClosed, U, 1)
                .user(user)
                .host(host);
        }
    }
    for p in [
        "Did not receive identification string from ",
        "Bad protocol version identification ",
    ] {
        if let Some(r) = m.strip_prefix(p) {
            let found = user_from(r, port_tail_ok)
                .map(|(_, h, port)| (h, port))
                .or_else(|| {
                    let end = find_byte(r, b' ').unwrap_or(r.len());
                    parse_ip(&r[..end]).map(|_| (&r[..end], take_port(&r[end..]).0))
                });
            let mut i = AuthInfo::auth(A::ProtocolError, F, 3)
                .attr("reason", "no or bad SSH identification");
            if let Some((h, port)) = found {
                i = i.host(h).port(port);
            }
            return i;
        }
    }
    for p in [
        "banner exchange: Connection from ",
        "ssh_dispatch_run_fatal: Connection from ",
    ] {
        if let Some(r) = m.strip_prefix(p) {
            let end = find_byte(r, b' ').unwrap_or(r.len());
            let (port, rest) = take_port(&r[end..]);
            let reason = rest
                .trim_start_matches(':')
                .trim()
                .trim_end_matches(" [preauth]");
            return AuthInfo::auth(A::ProtocolError, F, 3)
                .host(&r[..end])
                .port(port)
                .attr("reason", reason);
        }
    }
    if let Some(r) = m.strip_prefix("Unable to negotiate with ") {
        let end = find_byte(r, b' ').unwrap_or(r.len());
        let (port, rest) = take_port(&r[end..]);
        let reason = rest.trim_start_matches(':').trim();
        let reason = reason.split(". Their offer").next().unwrap_or(reason);
        return AuthInfo::auth(A::ProtocolError, F, 3)
            .host(&r[..end])
            .port(port)
            .attr("reason", reason);
    }
    if m.starts_with("Unable to negotiate a key exchange method") || m.starts_with("no matching ") {
        return AuthInfo::auth(A::ProtocolError, F, 3)
            .attr("reason", "key exchange negotiation failed");
    }
    if let Some(r) = m.strip_prefix("kex_exchange_identification: ") {
        return AuthInfo::auth(A::ProtocolError, F, 3).attr("reason", r);
    }
    if let Some(r) = m.strip_prefix("Magic value check failed (") {
        if let Some((_, tail)) = split_once_str(r, " from ") {
            let end = find_byte(tail, b' ').unwrap_or(tail.len());
            let (port, _) = take_port(&tail[end..]);
            return AuthInfo::auth(A::ProtocolError, F, 3)
                .host(&tail[..end])
                .port(port)
                .attr("reason", "obfuscated handshake");
        }
    }
    if let Some(r) = m.strip_prefix("Timeout before authentication for ") {
        let r = r.strip_prefix("connection from ").unwrap_or(r);
        let end = find_byte(r, b' ').unwrap_or(r.len());
        let (port, _) = take_port(&r[end..]);
        return AuthInfo::auth(A::AuthTimeout, F, 3)
            .host(&r[..end])
            .port(port);
    }
    if m.starts_with("Read from socket failed: Connection reset by peer")
        && m.ends_with("[preauth]")
    {
        return AuthInfo::auth(A::PreauthDisconnect, F, 3)
            .attr("reason", "connection reset by peer");
    }
    if let Some(r) = m.strip_prefix("SSH: Server;Ltype: ") {
        // `...;Remote: 127.0.0.1-1780;...` (some distributions' verbose logging)
        if let Some(remote) = r.split(';').find_map(|f| f.strip_prefix("Remote: ")) {
            let ip = remote.rsplit_once('-').map_or(remote, |(ip, _)| ip);
            return AuthInfo::new(Category::Network, A::Connection, U, 1).host(ip);
        }
    }
    if let Some(r) = m.strip_prefix("input_userauth_request: invalid user ") {
        // sshd repeats the earlier `Invalid user` line here; not a new attempt.
        return AuthInfo::auth(A::AuthRequest, U, 1)
            .user(r.strip_suffix(" [preauth]").unwrap_or(r));
    }
    if let Some(r) = m.strip_prefix("Address ") {
        if m.contains("POSSIBLE BREAK-IN ATTEMPT") {
            let end = find_byte(r, b' ').unwrap_or(r.len());
            return AuthInfo::auth(A::ReverseMappingMismatch, U, 3).host(&r[..end]);
        }
    }
    if let Some(p) = pam_message(m) {
        return p;
    }
    AuthInfo::message(Category::Auth, 1)
}

/// `Disconnecting|Connection closed by|Connection reset by|Disconnected from ...`
fn connection_end(r: &str, preauth: bool, preauth_only: bool) -> Option<AuthInfo<'_>> {
    use Action as A;
    let (user, ip, port, rest) = user_ip_port(r).or_else(|| {
        // `Connection closed by 192.0.2.1 [preauth]`: no port (older sshd).
        let ip = r.strip_suffix(" [preauth]").unwrap_or(r);
        parse_ip(ip).map(|_| (None, ip, None, ""))
    })?;
    let reason = rest.trim_start_matches(':').trim();
    let mut i = if preauth || !preauth_only {
        AuthInfo::auth(A::PreauthDisconnect, Outcome::Failure, 3)
    } else {
        AuthInfo::new(Category::Session, A::Disconnect, Outcome::Unknown, 1)
    };
    if let Some(u) = user {
        i = i.user(u);
    }
    if !reason.is_empty() {
        i = i.attr("reason", reason);
    }
    Some(i.host(ip).port(port))
}

/// `Received disconnect from IP[ port N]:CODE: reason[ [preauth]]`
fn received_disconnect(r: &str, preauth: bool) -> AuthInfo<'_> {
    let end = r.find([' ', ':']).unwrap_or(r.len());
    let host = &r[..end];
    let (port, rest) = take_port(&r[end..]);
    let reason = rest.trim_start_matches(':').trim_start();
    let reason = reason.split_once(':').map_or(reason, |(_, t)| t.trim());
    let reason = reason.strip_suffix("[preauth]").unwrap_or(reason).trim();
    let auth_failure =
        reason.contains("Auth fail") || reason.contains("authentication methods available");
    let i = if preauth || auth_failure {
        AuthInfo::auth(Action::PreauthDisconnect, Outcome::Failure, 3)
    } else {
        AuthInfo::new(Category::Session, Action::Disconnect, Outcome::Unknown, 1)
    };
    i.host(host).port(port).attr("reason", reason)
}

/// OpenSSH's own PAM errors: `PAM: Authentication failure for USER from HOST[ via IP]`.
fn sshd_pam_error(r: &str) -> AuthInfo<'_> {
    let lower_ok = |p: &str| r.len() >= p.len() && r[..p.len()].eq_ignore_ascii_case(p);
    let body = [
        "Authentication failure for ",
        "Authentication error for ",
        "User not known to the underlying authentication module for ",
    ]
    .into_iter()
    .find(|p| lower_ok(p))
    .map(|p| &r[p.len()..]);
    let Some(body) = body else {
        return AuthInfo::message(Category::Auth, 2);
    };
    let (body, invalid) = strip_invalid_user(body);
    let tail_ok = |t: &str| {
        let t = t.trim_end();
        (t.is_empty() || t.starts_with(" via ")).then_some(())
    };
    let mut i = AuthInfo::auth(Action::AuthFailed, Outcome::Failure, 4).attr("pam_service", "sshd");
    if let Some((user, host, _)) = user_from(body, tail_ok) {
        i = i.user(user).host(host);
    }
    if invalid {
        i = i.attr("invalid_user", "true");
    }
    i
}

// ---------------------------------------------------------------------------
// PAM module lines: `pam_unix(service:type): text`
// ---------------------------------------------------------------------------

fn kv<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let mut search = 0;
    while let Some(off) = s[search..].find(key) {
        let at = search + off;
        search = at + key.len();
        if at > 0 && !matches!(s.as_bytes()[at - 1], b' ' | b';') {
            continue;
        }
        let v = &s[at + key.len()..];
        let v = &v[..v.find([' ', ';']).unwrap_or(v.len())];
        return (!v.is_empty()).then_some(v);
    }
    None
}

/// `root(uid=0)` → `root`.
fn strip_uid(u: &str) -> &str {
    find_byte(u, b'(').map_or(u, |i| &u[..i])
}

fn pam_message(m: &str) -> Option<AuthInfo<'_>> {
    let (service, text) = if m.starts_with("pam_") {
        let open = find_byte(m, b'(')?;
        let close = find_str(&m[open..], "): ")? + open;
        let inner = &m[open + 1..close];
        (inner.split(':').next().unwrap_or(inner), &m[close + 3..])
    } else {
        // Old `sshd(pam_unix)[pid]: text` lines carry the module in the program.
        ("", m)
    };
    pam_text(service, text)
}

fn pam_text<'a>(service: &'a str, text: &'a str) -> Option<AuthInfo<'a>> {
    use Action as A;
    let svc_attr = |i: AuthInfo<'a>| {
        if service.is_empty() {
            i
        } else {
            i.attr("pam_service", service)
        }
    };
    if text.starts_with("authentication failure;") {
        let user = kv(text, "user=").or_else(|| kv(text, "ruser="));
        let mut i = AuthInfo::auth(A::AuthFailed, Outcome::Failure, 4);
        if let Some(h) = kv(text, "rhost=") {
            i = i.host(h);
        }
        if let Some(u) = user {
            i = i.user(u);
        }
        if let Some(l) = kv(text, "logname=") {
            i = i.attr("logname", l);
        }
        return Some(svc_attr(i));
    }
    if let Some(r) = text.strip_prefix("session opened for user ") {
        let (user, by) = split_once_str(r, " by ").unwrap_or((r, ""));
        let mut i = AuthInfo::new(Category::Session, A::SessionOpened, Outcome::Success, 1)
            .user(strip_uid(user));
        let by = strip_uid(by.trim());
        if !by.is_empty() {
            i = i.attr("by", by);
        }
        return Some(svc_attr(i));
    }
    if let Some(r) = text.strip_prefix("session closed for user ") {
        return Some(svc_attr(
            AuthInfo::new(Category::Session, A::SessionClosed, Outcome::Success, 1)
                .user(strip_uid(r.trim())),
        ));
    }
    if let Some(r) = text.strip_prefix("password changed for ") {
        return Some(svc_attr(
            AuthInfo::new(Category::Account, A::PasswordChanged, Outcome::Success, 5)
                .user(r.trim()),
        ));
    }
    if let Some(r) = text.strip_prefix("auth could not identify password for [") {
        let user = r.strip_suffix(']').unwrap_or(r);
        return Some(svc_attr(
            AuthInfo::auth(A::AuthFailed, Outcome::Failure, 3)
                .user(user)
                .attr("reason", "no password given"),
        ));
    }
    if service.is_empty() {
        return None;
    }
    Some(svc_attr(AuthInfo::message(Category::Auth, 1)))
}

// ---------------------------------------------------------------------------
// sudo, su, logind, account changes, cron
// ---------------------------------------------------------------------------

fn sudo(m: &str) -> AuthInfo<'_> {
    use Action as A;
    if let Some(p) = pam_message(m) {
        return p;
    }
    let Some((user, rest)) = split_once_str(m, " : ") else {
        return AuthInfo::message(Category::Privilege, 1);
    };
    let user = user.trim();
    let mut fields = rest.split(" ; ");
    let first = fields.next().unwrap_or("");
    let (mut info, kv_first) = if first.contains('=') {
        (
            AuthInfo::new(Category::Privilege, A::SudoCommand, Outcome::Success, 3),
            true,
        )
    } else if first.contains("incorrect password attempt") {
        let n = first.split(' ').next().unwrap_or("");
        (
            AuthInfo::new(Category::Privilege, A::SudoFailed, Outcome::Failure, 6)
                .attr("attempts", n),
            false,
        )
    } else if first.contains("NOT in sudoers")
        || first.contains("NOT authorized")
        || first.contains("command not allowed")
    {
        (
            AuthInfo::new(Category::Privilege, A::SudoDenied, Outcome::Failure, 7)
                .attr("reason", first.trim()),
            false,
        )
    } else {
        (
            AuthInfo::new(Category::Privilege, A::SudoFailed, Outcome::Failure, 5)
                .attr("reason", first.trim()),
            false,
        )
    };
    info = info.user(user);
    let kvs = if kv_first { Some(first) } else { None }
        .into_iter()
        .chain(fields);
    for f in kvs {
        if let Some((k, v)) = f.split_once('=') {
            let key = match k.trim() {
                "TTY" => "tty",
                "PWD" => "pwd",
                "USER" => "target_user",
                "COMMAND" => "command",
                _ => continue,
            };
            info = info.attr(key, v.trim());
        }
    }
    info
}

fn su(m: &str) -> AuthInfo<'_> {
    use Action as A;
    if let Some(mut p) = pam_message(m) {
        // For su, a PAM authentication failure is the failed su itself.
        if p.action == A::AuthFailed {
            p.category = Category::Privilege;
            p.action = A::SuFailed;
            p.severity = 6;
        }
        return p;
    }
    let failed = |u: &'static str| {
        AuthInfo::new(Category::Privilege, A::SuFailed, Outcome::Failure, 6).attr("reason", u)
    };
    let ok = || AuthInfo::new(Category::Privilege, A::SuSuccess, Outcome::Success, 3);
    // `FAILED SU (to root) alice on pts/0`
    if let Some(r) = m
        .strip_prefix("FAILED SU (to ")
        .or_else(|| m.strip_prefix("FAILED su (to "))
    {
        if let Some((target, rest)) = split_once_str(r, ") ") {
            let user = rest.split(" on ").next().unwrap_or(rest);
            return failed("FAILED SU").user(user).attr("target_user", target);
        }
    }
    // `BAD SU alice to root on /dev/pts/0`
    if let Some(r) = m.strip_prefix("BAD SU ") {
        if let Some((user, rest)) = split_once_str(r, " to ") {
            let target = rest.split(" on ").next().unwrap_or(rest);
            return failed("BAD SU").user(user).attr("target_user", target);
        }
    }
    // `'su root' failed for lonvick on /dev/pts/8`
    if let Some(r) = m.strip_prefix("'su ") {
        if let Some((target, rest)) = split_once_str(r, "' failed for ") {
            let user = rest.split(" on ").next().unwrap_or(rest);
            return failed("su failed").user(user).attr("target_user", target);
        }
    }
    // `(to root) alice on pts/0`
    if let Some(r) = m.strip_prefix("(to ") {
        if let Some((target, rest)) = split_once_str(r, ") ") {
            let user = rest.split(" on ").next().unwrap_or(rest);
            return ok().user(user).attr("target_user", target);
        }
    }
    // `Successful su for root by alice`
    if let Some(r) = m.strip_prefix("Successful su for ") {
        if let Some((target, user)) = split_once_str(r, " by ") {
            return ok().user(user).attr("target_user", target);
        }
    }
    // `+ pts/0 alice:root` / `- pts/0 alice:root`
    if let Some((sign, r)) = m.split_at_checked(2) {
        if sign == "+ " || sign == "- " {
            if let Some((_, pair)) = r.split_once(' ') {
                if let Some((user, target)) = pair.split_once(':') {
                    let base = if sign == "+ " {
                        ok()
                    } else {
                        failed("su failed")
                    };
                    return base.user(user).attr("target_user", target);
                }
            }
        }
    }
    // `failed: ttyq4 changing from ldap to root` (older util-linux su)
    if let Some(r) = m.strip_prefix("failed: ") {
        if let Some((_, rest)) = r.split_once(" changing from ") {
            if let Some((user, target)) = rest.split_once(" to ") {
                return failed("su failed")
                    .user(user)
                    .attr("target_user", target.trim());
            }
        }
    }
    // `dcid to root on /dev/ttyp1` (BSD su)
    if let Some((user, rest)) = m.split_once(" to ") {
        if !user.contains(' ') && !user.is_empty() {
            if let Some((target, _)) = rest.split_once(" on ") {
                return ok().user(user).attr("target_user", target);
            }
        }
    }
    AuthInfo::message(Category::Privilege, 1)
}

fn logind(m: &str) -> AuthInfo<'_> {
    use Action as A;
    if let Some(r) = m.strip_prefix("New session ") {
        if let Some((id, rest)) = split_once_str(r, " of user ") {
            let user = rest.trim_end_matches('.');
            return AuthInfo::new(Category::Session, A::SessionOpened, Outcome::Success, 1)
                .user(user)
                .attr("session_id", id);
        }
    }
    if let Some(r) = m.strip_prefix("Removed session ") {
        return AuthInfo::new(Category::Session, A::SessionClosed, Outcome::Success, 1)
            .attr("session_id", r.trim_end_matches('.'));
    }
    AuthInfo::message(Category::Session, 1)
}

/// `'bob'` → `bob`
fn quoted(s: &str) -> &str {
    s.trim().trim_matches('\'')
}

fn account(m: &str) -> AuthInfo<'_> {
    use Action as A;
    if let Some(p) = pam_message(m) {
        return p;
    }
    let acct = |a: Action, sev: u8| AuthInfo::new(Category::Account, a, Outcome::Success, sev);
    let field = |s: &'static str| kv(m.trim_end_matches(','), s).map(|v| v.trim_end_matches(','));
    if m.starts_with("new user: ") {
        let mut i = acct(A::UserCreated, 6);
        if let Some(n) = field("name=") {
            i = i.user(n);
        }
        return i;
    }
    if m.starts_with("new group: ") {
        let mut i = acct(A::GroupCreated, 4);
        if let Some(n) = field("name=") {
            i = i.attr("group", n);
        }
        return i;
    }
    if let Some(r) = m.strip_prefix("add ") {
        if let Some((user, group)) = split_once_str(r, " to ") {
            let group = group.rsplit(' ').next().unwrap_or(group);
            let group = quoted(group);
            let sev = if matches!(group, "sudo" | "wheel" | "admin" | "root") {
                8
            } else {
                5
            };
            return acct(A::UserModified, sev)
                .user(quoted(user))
                .attr("group", group);
        }
    }
    if let Some(r) = m.strip_prefix("delete user ") {
        return acct(A::UserDeleted, 6).user(quoted(r));
    }
    if let Some(r) = m.strip_prefix("change user ") {
        let user = r.split(' ').next().unwrap_or(r);
        let action = if r.ends_with(" password") {
            A::PasswordChanged
        } else {
            A::UserModified
        };
        return acct(action, 5).user(quoted(user));
    }
    if let Some(r) = m.strip_prefix("password for ") {
        let user = r.split(' ').next().unwrap_or(r);
        return acct(A::PasswordChanged, 5).user(quoted(user));
    }
    if let Some(r) = m
        .strip_prefix("lock user ")
        .or_else(|| m.strip_prefix("unlock user "))
    {
        let user = r.split(' ').next().unwrap_or(r);
        return acct(A::UserModified, 5).user(quoted(user));
    }
    AuthInfo::message(Category::Account, 2)
}

fn cron(m: &str) -> AuthInfo<'_> {
    if let Some(p) = pam_message(m) {
        return p;
    }
    // `(root) CMD (command)`
    if let Some(r) = m.strip_prefix('(') {
        if let Some((user, rest)) = split_once_str(r, ") CMD (") {
            return AuthInfo::new(Category::System, Action::CronCommand, Outcome::Unknown, 0)
                .user(user)
                .attr("command", rest.strip_suffix(')').unwrap_or(rest));
        }
    }
    AuthInfo::message(Category::System, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(program: &str, msg: &str) -> AuthInfo<'static> {
        let msg: &'static str = Box::leak(msg.to_string().into_boxed_str());
        parse_auth(program, Some(1), "h", msg, &mut SshState::default()).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn failed_password_basic() {
        let i = p(
            "sshd",
            "Failed password for root from 203.0.113.9 port 22 ssh2",
        );
        assert_eq!(
            (i.action, i.outcome, i.user, i.src_ip, i.src_port),
            (
                Action::LoginFailed,
                Outcome::Failure,
                Some("root"),
                ip("203.0.113.9"),
                Some(22)
            )
        );
    }

    #[test]
    fn user_name_injection_does_not_move_src_ip() {
        for (line, user) in [
            (
                "Failed password for invalid user from 10.10.1.1 from 127.0.0.1 port 58946 ssh2",
                "from 10.10.1.1",
            ),
            (
                "Failed password for invalid user test from 10.10.1.2 port 55555 ssh2 from 127.0.0.1 port 58946 ssh2",
                "test from 10.10.1.2 port 55555 ssh2",
            ),
            (
                "Failed password for invalid user test from 127.0.0.1 port 58946 ssh2: from 10.10.1.2 port 55555 ssh2",
                "test",
            ),
        ] {
            let i = p("sshd", line);
            assert_eq!(i.src_ip, ip("127.0.0.1"), "{line}");
            assert_eq!(i.user, Some(user), "{line}");
        }
        let i = p(
            "sshd",
            "Connection closed by authenticating user test 127.0.0.1 port 12345 192.0.2.11 port 46039 [preauth]",
        );
        assert_eq!(
            (i.src_ip, i.user),
            (ip("192.0.2.11"), Some("test 127.0.0.1 port 12345"))
        );
    }

    #[test]
    fn sshd_session_and_auth_process_names() {
        for prog in ["sshd-session", "sshd-auth", "sshd"] {
            let i = p(
                prog,
                "Failed password for root from 192.0.2.1 port 56502 ssh2",
            );
            assert_eq!(i.action, Action::LoginFailed, "{prog}");
        }
    }

    #[test]
    fn message_repeated_counts_as_n() {
        let i = p(
            "sshd",
            "message repeated 5 times: [ Failed password for root from 192.0.2.1 port 22 ssh2]",
        );
        assert_eq!((i.action, i.repeat), (Action::LoginFailed, 5));
        let i = p(
            "sshd",
            "message repeated 4294967295 times: [ Failed password for root from 192.0.2.1 port 22 ssh2]",
        );
        assert_eq!(i.repeat, MAX_REPEAT);
    }

    #[test]
    fn failure_without_address_is_attributed_by_connection() {
        let mut st = SshState::default();
        let a = parse_auth(
            "sshd",
            Some(7),
            "h",
            "Connection from 192.0.2.3 port 39678 on 192.168.1.9 port 22",
            &mut st,
        )
        .unwrap();
        assert_eq!(a.outcome, Outcome::Unknown);
        let b = parse_auth(
            "sshd",
            Some(7),
            "h",
            "fatal: Unable to negotiate a key exchange method [preauth]",
            &mut st,
        )
        .unwrap();
        assert_eq!(
            (b.action, b.src_ip),
            (Action::ProtocolError, ip("192.0.2.3"))
        );
        // Another host with the same pid is a different connection.
        let c = parse_auth(
            "sshd",
            Some(7),
            "other",
            "fatal: Unable to negotiate a key exchange method [preauth]",
            &mut st,
        )
        .unwrap();
        assert_eq!(c.src_ip, None);
    }

    #[test]
    fn sudo_variants() {
        let i = p(
            "sudo",
            "  alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
        );
        assert_eq!((i.action, i.user), (Action::SudoCommand, Some("alice")));
        assert!(i.attrs.contains(&("command", "/usr/bin/id")));
        assert!(i.attrs.contains(&("target_user", "root")));
        let i = p(
            "sudo",
            "alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
        );
        assert_eq!(
            (i.action, i.outcome),
            (Action::SudoFailed, Outcome::Failure)
        );
        let i = p(
            "sudo",
            "mallory : user NOT in sudoers ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/bash",
        );
        assert_eq!(i.action, Action::SudoDenied);
        let i = p(
            "sudo",
            "pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice",
        );
        assert_eq!(
            (i.action, i.user, i.src_ip),
            (Action::AuthFailed, Some("alice"), None)
        );
    }

    #[test]
    fn su_variants() {
        assert_eq!(
            p("su", "FAILED SU (to root) alice on pts/0").action,
            Action::SuFailed
        );
        assert_eq!(
            p("su", "BAD SU alice to root on /dev/pts/0").user,
            Some("alice")
        );
        assert_eq!(
            p("su", "'su root' failed for lonvick on /dev/pts/8").user,
            Some("lonvick")
        );
        assert_eq!(
            p("su", "(to root) alice on pts/0").action,
            Action::SuSuccess
        );
        let i = p(
            "su",
            "pam_unix(su:session): session opened for user root(uid=0) by alice(uid=1000)",
        );
        assert_eq!((i.action, i.user), (Action::SessionOpened, Some("root")));
    }

    #[test]
    fn logind_and_accounts() {
        let i = p("systemd-logind", "New session 12 of user alice.");
        assert_eq!((i.action, i.user), (Action::SessionOpened, Some("alice")));
        assert_eq!(
            p("systemd-logind", "Removed session 12.").action,
            Action::SessionClosed
        );
        let i = p(
            "useradd",
            "new user: name=bob, UID=1001, GID=1001, home=/home/bob, shell=/bin/bash, from=/dev/pts/0",
        );
        assert_eq!((i.action, i.user), (Action::UserCreated, Some("bob")));
        let i = p("usermod", "add 'bob' to group 'sudo'");
        assert_eq!(
            (i.action, i.user, i.severity),
            (Action::UserModified, Some("bob"), 8)
        );
        assert_eq!(
            p(
                "passwd",
                "pam_unix(passwd:chauthtok): password changed for bob"
            )
            .action,
            Action::PasswordChanged
        );
    }

    #[test]
    fn pam_session_user_is_the_user_not_the_word_user() {
        let i = p(
            "sshd",
            "pam_unix(sshd:session): session opened for user known by (uid=0)",
        );
        assert_eq!(i.user, Some("known"));
    }
}

//! OpenSSH's messages (`sshd`, `sshd-session`, `sshd-auth`): logins,
//! failures, disconnects, and the state that ties one connection's lines
//! together.

use super::*;

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

pub(super) fn sshd<'a>(raw: &'a str, key: Option<u64>, state: &mut SshState) -> AuthInfo<'a> {
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

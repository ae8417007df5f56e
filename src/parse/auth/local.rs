//! Local authentication and account messages: PAM modules, sudo, su,
//! systemd-logind, account changes and cron sessions.

use super::*;

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

pub(super) fn pam_message(m: &str) -> Option<AuthInfo<'_>> {
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

pub(super) fn sudo(m: &str) -> AuthInfo<'_> {
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

pub(super) fn su(m: &str) -> AuthInfo<'_> {
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

pub(super) fn logind(m: &str) -> AuthInfo<'_> {
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

pub(super) fn account(m: &str) -> AuthInfo<'_> {
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

pub(super) fn cron(m: &str) -> AuthInfo<'_> {
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

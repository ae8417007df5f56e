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
//!
//! Here: what a message yields ([`AuthInfo`]), the connection state and the
//! dispatch by program; `openssh.rs` reads sshd's messages, `local.rs` the
//! PAM, sudo, su, logind, account and cron ones.

use std::net::IpAddr;

use crate::event::{Action, Category, Outcome, parse_ip};
use crate::util::{find_byte, find_str, rfind_byte, rfind_str, split_once_str};

mod local;
mod openssh;

use local::*;
use openssh::*;

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

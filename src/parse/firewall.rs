//! Firewall logs: Linux netfilter kernel lines (`KEY=VALUE`, with any
//! prefix such as `[UFW BLOCK]`, `IPTABLES-DROP:`, `DROP(src wan)`) and the
//! pfSense / OPNsense `filterlog` CSV (Netgate's raw filter log format).
//!
//! The verdict comes from what the line says, never from a default: a
//! netfilter line whose prefix names no action is a `firewall_log`, not a drop
//! (the ML seed called UFW ALLOW a drop).

use std::borrow::Cow;

use super::Info;
use crate::event::{Action, Category, Outcome, parse_ip};
use crate::util::find_str;

fn verdict(action: &Action) -> (Outcome, u8) {
    match action {
        Action::FirewallBlock => (Outcome::Failure, 3),
        Action::FirewallAllow => (Outcome::Success, 1),
        _ => (Outcome::Unknown, 2),
    }
}

/// The action a netfilter log prefix names.
fn prefix_action(prefix: &str) -> Action {
    let up = prefix.to_ascii_uppercase();
    let has = |w: &str| up.contains(w);
    // UFW's AUDIT level logs packets it let through.
    if has("ALLOW") || has("ACCEPT") || has("PASS") || has("AUDIT") {
        Action::FirewallAllow
    } else if has("BLOCK") || has("DROP") || has("REJECT") || has("DENY") {
        Action::FirewallBlock
    } else {
        Action::FirewallLog
    }
}

/// A netfilter line (the message after the syslog header). `None` unless it
/// carries the `IN=` and `SRC=` fields every netfilter log line has.
pub fn parse_netfilter(msg: &str) -> Option<Info<'_>> {
    // Skip a kernel uptime stamp: `[50028442.088484] `.
    let msg = match msg.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((stamp, rest))
            if stamp
                .trim()
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.') =>
        {
            rest
        }
        _ => msg,
    };
    // `IN=` starts the fields; a prefix may run straight into it
    // (`DROP(src wan)IN=eth0`), but `MAIN=` or `XIN=` is not it.
    let in_at = {
        let b = msg.as_bytes();
        let mut from = 0;
        loop {
            let at = from + find_str(&msg[from..], "IN=")?;
            if at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
                break at;
            }
            from = at + 3;
        }
    };
    let prefix = msg[..in_at].trim();
    let action = prefix_action(prefix);
    let (outcome, severity) = verdict(&action);
    let mut info = Info::new(Category::Network, action, outcome, severity);
    let mut saw_src = false;
    let mut flags = Vec::new();
    for tok in msg[in_at..].split_ascii_whitespace() {
        match tok.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                match k {
                    "SRC" => {
                        info.src_ip = parse_ip(v);
                        saw_src = true;
                    }
                    "DST" => info.dest_ip = parse_ip(v),
                    "SPT" => info.src_port = v.parse().ok(),
                    "DPT" => info.dest_port = v.parse().ok(),
                    _ => {}
                }
                if !v.is_empty() {
                    info.attrs.push((Cow::Owned(k.to_ascii_lowercase()), v));
                }
            }
            // Bare words are TCP flags and options: SYN, ACK, DF, …
            None if tok.bytes().all(|b| b.is_ascii_uppercase()) => flags.push(tok),
            _ => {}
        }
    }
    if !saw_src {
        return None;
    }
    if !prefix.is_empty() {
        info.attrs.push((Cow::Borrowed("prefix"), prefix));
    }
    if let (Some(first), Some(last)) = (flags.first(), flags.last()) {
        // Flags are contiguous words in the message; keep them as one slice.
        let start = first.as_ptr() as usize - msg.as_ptr() as usize;
        let end = last.as_ptr() as usize - msg.as_ptr() as usize + last.len();
        info.attrs.push((Cow::Borrowed("flags"), &msg[start..end]));
    }
    Some(info)
}

/// A pfSense/OPNsense `filterlog` CSV record.
pub fn parse_filterlog(msg: &str) -> Option<Info<'_>> {
    let f: Vec<&str> = msg.trim_end().split(',').collect();
    if f.len() < 10 {
        return None;
    }
    let action = match f[6] {
        "block" | "reject" => Action::FirewallBlock,
        "pass" => Action::FirewallAllow,
        _ => Action::FirewallLog,
    };
    // Per IP version: index of the protocol name, source and destination.
    let (proto_at, src_at) = match f[8] {
        "4" => (16, 18),
        "6" => (12, 15),
        _ => return None,
    };
    let (outcome, severity) = verdict(&action);
    let mut info = Info::new(Category::Network, action, outcome, severity);
    info.src_ip = parse_ip(f.get(src_at)?);
    info.dest_ip = parse_ip(f.get(src_at + 1)?);
    info.src_ip?;
    let proto = f.get(proto_at).copied().unwrap_or("");
    if matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp") {
        info.src_port = f.get(src_at + 2).and_then(|p| p.parse().ok());
        info.dest_port = f.get(src_at + 3).and_then(|p| p.parse().ok());
    }
    for (k, i) in [
        ("rule", 0),
        ("tracker", 3),
        ("interface", 4),
        ("reason", 5),
        ("pf_action", 6),
        ("direction", 7),
        ("ip_version", 8),
    ] {
        if let Some(v) = f.get(i).filter(|v| !v.is_empty()) {
            info.attrs.push((Cow::Borrowed(k), v));
        }
    }
    if !proto.is_empty() {
        info.attrs.push((Cow::Borrowed("proto"), proto));
    }
    if proto.eq_ignore_ascii_case("tcp") {
        if let Some(flags) = f.get(src_at + 5).filter(|v| !v.is_empty()) {
            info.attrs.push((Cow::Borrowed("tcp_flags"), flags));
        }
    }
    Some(info)
}

/// scanlogd: `192.0.2.123 to 192.0.2.1 ports 80, 81, …, flags, TOS 00, TTL 49 @20:44:43`.
pub fn parse_scanlogd(msg: &str) -> Option<Info<'_>> {
    let (src, rest) = msg.split_once(" to ")?;
    let (dst, rest) = rest.split_once(" ports ")?;
    let mut info = Info::new(
        Category::Network,
        Action::PortScanDetected,
        Outcome::Failure,
        5,
    );
    info.src_ip = Some(parse_ip(src)?);
    info.dest_ip = parse_ip(dst);
    let ports = rest
        .split(", ")
        .take_while(|p| p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty());
    let end = ports.map(|p| p.len() + 2).sum::<usize>().saturating_sub(2);
    info.attrs
        .push((Cow::Borrowed("ports"), &rest[..end.min(rest.len())]));
    info.source = "scanlogd";
    Some(info)
}

/// PortSentry's blocked-history lines:
/// `1403884279 - 06/27/2014 17:51:19 Host: 192.168.56.1/192.168.56.1 Port: 1 TCP Blocked`.
/// Returns the epoch time the line starts with.
pub fn parse_portsentry(line: &str) -> Option<(i64, Info<'_>)> {
    let (epoch, rest) = line.split_once(" - ")?;
    let epoch: i64 = epoch.trim().parse().ok()?;
    let host = &rest[find_str(rest, "Host: ")? + 6..];
    let host = &host[..host.find(' ')?];
    let ip = host.rsplit('/').next()?;
    let port_at = find_str(rest, "Port: ")? + 6;
    let mut words = rest[port_at..].split_ascii_whitespace();
    let port = words.next()?.parse().ok();
    let proto = words.next().unwrap_or("");
    let blocked = rest.contains("Blocked");
    let action = if blocked {
        Action::FirewallBlock
    } else {
        Action::PortScanDetected
    };
    let mut info = Info::new(Category::Network, action, Outcome::Failure, 5);
    info.src_ip = Some(parse_ip(ip)?);
    info.dest_port = port;
    if !proto.is_empty() {
        info.attrs.push((Cow::Borrowed("proto"), proto));
    }
    info.source = "portsentry";
    Some((epoch, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netfilter_with_prefixes() {
        let i = parse_netfilter("[  203.842973] IPTABLES-DROP: IN=lo OUT= MAC=00 SRC=127.0.0.1 DST=127.0.0.53 LEN=76 DF PROTO=UDP SPT=49007 DPT=53 LEN=56 ").unwrap();
        assert_eq!(
            (i.action, i.src_ip, i.dest_port),
            (Action::FirewallBlock, parse_ip("127.0.0.1"), Some(53))
        );
        let i = parse_netfilter(
            "[UFW ALLOW] IN=eth0 OUT= SRC=192.0.2.7 DST=198.51.100.1 PROTO=TCP SPT=5555 DPT=22 SYN",
        )
        .unwrap();
        assert_eq!(
            (i.action, i.outcome),
            (Action::FirewallAllow, Outcome::Success)
        );
        let i = parse_netfilter(
            "DROP(src wan) IN=eth0 SRC=2001:db8::1 DST=2001:db8::2 PROTO=TCP SPT=1 DPT=2",
        )
        .unwrap();
        assert_eq!(
            (i.action, i.src_ip),
            (Action::FirewallBlock, parse_ip("2001:db8::1"))
        );
        let i = parse_netfilter(
            "IN=eth0 OUT= SRC=192.0.2.7 DST=198.51.100.1 PROTO=TCP SPT=5555 DPT=22",
        )
        .unwrap();
        assert_eq!(
            i.action,
            Action::FirewallLog,
            "no prefix: no verdict is invented"
        );
        assert!(parse_netfilter("XX=enp1s0 OUT= SRC=1.2.3.4 DST=5.6.7.8").is_none());
    }

    #[test]
    fn scanlogd_and_portsentry() {
        let i = parse_scanlogd("192.0.2.123 to 192.0.2.1 ports 80, 81, 83, 88, ..., f????uxy, TOS 00, TTL 49 @20:44:43").unwrap();
        assert_eq!(
            (i.action, i.src_ip),
            (Action::PortScanDetected, parse_ip("192.0.2.123"))
        );
        assert!(
            i.attrs
                .contains(&(Cow::Borrowed("ports"), "80, 81, 83, 88"))
        );
        let (t, i) = parse_portsentry(
            "1403884279 - 06/27/2014 17:51:19 Host: 192.168.56.1/192.168.56.1 Port: 1 TCP Blocked",
        )
        .unwrap();
        assert_eq!(
            (t, i.action, i.src_ip, i.dest_port),
            (
                1403884279,
                Action::FirewallBlock,
                parse_ip("192.168.56.1"),
                Some(1)
            )
        );
    }

    #[test]
    fn filterlog_v4_and_v6() {
        let i = parse_filterlog("53,,,1000000301,em0,match,block,in,4,0x0,,64,420,0,none,6,tcp,460,10.0.2.2,10.0.2.15,53742,22,420,PA,29633380:29633800,3617062173,65535,,").unwrap();
        assert_eq!(
            (i.action, i.src_ip, i.dest_ip, i.dest_port),
            (
                Action::FirewallBlock,
                parse_ip("10.0.2.2"),
                parse_ip("10.0.2.15"),
                Some(22)
            )
        );
        let i = parse_filterlog("621,,,1644355515,vtnet0.10,match,block,in,6,0x00,0x07c63,64,TCP,6,44,fdfd:ace:ace:10:d8:cdbf:f6f8:6d69,fdfd:ace:ace:5::6,65382,443,0,S,1927530165,,0,,mss").unwrap();
        assert_eq!(
            (i.src_ip, i.dest_port),
            (parse_ip("fdfd:ace:ace:10:d8:cdbf:f6f8:6d69"), Some(443))
        );
        let i = parse_filterlog("103,,,40b9,re0,match,pass,in,4,0x0,,116,11172,0,none,17,udp,48,68.41.165.77,10.0.0.200,64752,51918,28").unwrap();
        assert_eq!(
            (i.action, i.dest_port),
            (Action::FirewallAllow, Some(51918))
        );
        assert!(parse_filterlog("not,a,filter,log").is_none());
    }
}

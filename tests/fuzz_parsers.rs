//! No input may panic a parser: random bytes and mutated real lines go
//! through the envelope parser, the auth parser under every program it knows,
//! the full line parser, the wire-schema validator and detection.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use vigil::config::Config;
use vigil::engine::Pipeline;
use vigil::event::WireEvent;
use vigil::parse::auth::{SshState, parse_auth};
use vigil::parse::syslog::{SyslogOptions, parse_envelope};
use vigil::parse::{ParseOptions, Parser, SourceKind};
use vigil::sources::replay::LineReader;

const SEEDS: &[&str] = &[
    "Feb 12 14:10:21 sd-126005 sshd[16378]: Invalid user pascal from 35.188.49.176 port 53502",
    "Nov 2 15:40:14 workshop sshd[28179]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=5.33.63.160 user=workshop",
    "Dec 22 14:53:37 ip-172-31-20-90 sshd[4177]: Connection closed by authenticating user root 206.81.24.125 port 45362 [preauth]",
    "Nov 11 08:04:52 redbamboo sshd[2737]: Failed password for invalid user test from 10.10.1.2 port 55555 ssh2 from 127.0.0.1 port 58946 ssh2",
    "<38>1 2019-07-08T17:40:17.954167-04:00 hostname.example.com sshd 55555 - [timeQuality tzKnown=\"1\"][xxx@123 test=\"[brackets]\"] Failed unknown for invalid user redmond from 192.0.2.2 port 55555 ssh2",
    "2015-04-16T18:02:50.568798+00:00 host sshd[2716]: Connection closed by 192.0.2.112 [preauth]",
    "srv sshd[20879]: kernel: [  970.699397] Failed password for user admin from 192.0.2.10 port 42745 ssh2",
    "Mar 29 05:59:23 dusky sshd[20878]: [ID 800047 auth.info] Failed keyboard-interactive for <invalid username> from 205.186.180.55 port 42742 ssh2",
    "Jan 14 04:10:45 server sudo: john : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/bash",
    "Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    "Mar  1 10:00:00 h systemd-logind[500]: New session 12 of user alice.",
    "Mar  1 10:00:00 h useradd[9]: new user: name=bob, UID=1001, GID=1001, home=/home/bob, shell=/bin/bash",
    "Mar  1 10:00:00 h sshd[7]: message repeated 3 times: [ Failed password for root from 192.0.2.1 port 22 ssh2]",
    "Mar  1 10:00:00 h sshd[7]: refused connect from _U2F=_@::ffff:218.249.210.161 (::ffff:218.249.210.161)",
    "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource= \"Application\"]",
    "<14>Aug 30 23:00:05 ",
    "www.crowdsec11.net:80 192.168.1.1 - - [08/Jun/2020:08:04:43 +0000] \"GET /test/uppercase/extensions.JPG HTTP/1.1\" 301 0 \"-\" \"Mozilla/5.0\"",
    "1.2.3.4 - - [29/Jul/2023:10:26:06 -0700] \"H\\x00\\x00\\\"x\" 400 157 \"-\" \"-\"",
    "2021/12/01 13:53:33 [error] 31#31: *46 \"/usr/share/nginx/html/market/index.html\" is not found (2: No such file or directory), client: 172.17.0.1, server: localhost, request: \"GET /market/ HTTP/1.1\", host: \"localhost\"",
    "[Thu Oct 13 12:24:49.880562 2022] [auth_basic:error] [pid 10:tid 140120579262208] [client 31.33.58.75:50229] AH01618: user sss not found: /",
    "Jun  8 14:34:33 sd-126005 kernel: [50028442.088484] [UFW BLOCK] IN=enp1s0 OUT= MAC=00:08 SRC=195.54.160.107 DST=51.15.166.67 LEN=40 PROTO=TCP SPT=8080 DPT=8123 SYN URGP=0",
    "Sep 28 10:38:09 pfSense filterlog: 53,,,1000000301,em0,match,block,in,4,0x0,,64,420,0,none,6,tcp,460,10.0.2.2,10.0.2.15,53742,22,420,PA,29633380:29633800,3617062173,65535,,",
    "<134>1 2022-09-06T19:00:06+02:00 opnsense filterlog 57126 - [meta sequenceId=\"2667099\"] 98,,,881d,re0,match,pass,in,6,0x00,0x0ea87,51,udp,17,73,2008:8a0::2f8a,2c02:2454:ada:d900::1738,6881,51918,73",
    "{\"event_type\":\"sec.event.v1\",\"event_id\":\"evt-00000001\",\"source\":\"l\",\"host\":\"h\",\"timestamp_utc\":\"2026-01-13T12:00:00Z\",\"category\":\"auth\",\"action\":\"login_failed\",\"severity\":5}",
    "{\"@timestamp\":\"2026-03-14T10:00:00Z\",\"source\":{\"ip\":\"198.51.100.7\"},\"user\":{\"name\":\"bob\"},\"event\":{\"action\":\"login_failed\"}}",
];

const PROGRAMS: &[&str] = &[
    "sshd",
    "sshd-session",
    "sudo",
    "su",
    "systemd-logind",
    "useradd",
    "usermod",
    "passwd",
    "CRON",
    "login",
    "other",
];

const SPICE: &[&str] = &[
    " ",
    ":",
    "[",
    "]",
    "(",
    ")",
    " from ",
    " port ",
    " user ",
    "=",
    ";",
    " : ",
    "\u{feff}",
    "é",
    "\x1b[2J",
    "\"",
    "\\",
    "-",
    "0",
    "::ffff:",
    "999999999999",
];

fn opts() -> ParseOptions {
    ParseOptions::new(
        SourceKind::Auto,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        "fuzz",
    )
}

fn exercise(line: &str) {
    let sopts = SyslogOptions::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let _ = parse_envelope(line, &sopts);
    let mut st = SshState::with_capacity(16);
    for p in PROGRAMS {
        let _ = parse_auth(p, Some(1), "h", line, &mut st);
        let _ = parse_auth(p, None, "h", line, &mut st);
    }
    let off = chrono::FixedOffset::east_opt(0).unwrap();
    let _ = vigil::parse::nginx::parse_access(line);
    let _ = vigil::parse::nginx::parse_nginx_error(line, off);
    let _ = vigil::parse::nginx::parse_apache_error(line, off);
    let _ = vigil::parse::nginx::split_request(line);
    let _ = vigil::parse::firewall::parse_netfilter(line);
    let _ = vigil::parse::firewall::parse_filterlog(line);
    let _ = vigil::parse::json::parse_json_line(line, &Default::default(), "h", "id".into());
    for kind in [
        SourceKind::Auto,
        SourceKind::Syslog,
        SourceKind::Web,
        SourceKind::Firewall,
    ] {
        let mut o = opts();
        o.kind = kind;
        let mut parser = Parser::new(o);
        let mut pipe = Pipeline::new(&Config::default(), None);
        for n in 1..=3 {
            if let Ok(ev) = parser.parse_line(line, n) {
                let _ = pipe.process(&ev, Utc::now());
            }
        }
        let _ = pipe.finish();
    }
    let _ = WireEvent::from_json(line.as_bytes());
}

fn mutate(seed: &str, ops: &[(u8, usize, usize)]) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for &(op, a, b) in ops {
        let len = s.len().max(1);
        let i = a % len;
        match op % 4 {
            0 => {
                let spice: Vec<char> = SPICE[b % SPICE.len()].chars().collect();
                let i = i.min(s.len());
                s.splice(i..i, spice);
            }
            1 => {
                let j = (i + b % 8).min(s.len());
                if i < j {
                    s.drain(i..j);
                }
            }
            2 => {
                let j = (i + b % 12).min(s.len());
                let seg: Vec<char> = s[i.min(s.len())..j].to_vec();
                s.splice(j..j, seg);
            }
            _ => {
                if i < s.len() {
                    s[i] = char::from_u32((b % 0x250) as u32).unwrap_or('x');
                }
            }
        }
    }
    s.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_real_lines_never_panic(
        seed in 0..SEEDS.len(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 0..12),
    ) {
        exercise(&mutate(SEEDS[seed], &ops));
    }

    #[test]
    fn line_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut r = LineReader::new(std::io::BufReader::with_capacity(16, &bytes[..]));
        let mut n = 0;
        while let Ok(Some(_)) = r.next_line() {
            n += 1;
            prop_assert!(n <= bytes.len() + 1);
        }
    }
}

#[test]
fn seeds_parse_cleanly() {
    for s in SEEDS {
        exercise(s);
    }
}

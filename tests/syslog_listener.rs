//! `vigil serve --syslog-udp/--syslog-tcp` over real sockets: sshd lines sent
//! as datagrams and as TCP frames (octet counting and newline framing) are
//! parsed, stored and correlated like the same lines in a file.

mod common;

use std::io::Write;

fn listener(server: &common::Server, proto: &str) -> String {
    let marker = format!(" syslog {proto} on ");
    server
        .banner
        .iter()
        .find_map(|l| l.split_once(&marker).map(|(_, addr)| addr))
        .unwrap_or_else(|| panic!("no {proto} listener in {:?}", server.banner))
        .to_string()
}

/// A server with these `[syslog]` settings and these arguments.
fn server_with(syslog: &str, args: &[&str]) -> common::Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, format!("[syslog]\n{syslog}")).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let mut all = vec!["--config", &cfg];
    all.extend_from_slice(args);
    common::Server::start_with(dir, &[("ARES_SHARED_SECRET", "unused-here")], &all)
}

/// A server with a TCP listener and these `[syslog]` settings; its address.
fn tcp_server_with(syslog: &str) -> (common::Server, String) {
    let server = server_with(syslog, &["--syslog-tcp", "127.0.0.1:0"]);
    let tcp_addr = listener(&server, "tcp");
    (server, tcp_addr)
}

fn sshd_fail(host: &str, i: u32, ip: &str) -> String {
    // RFC 5424 with a full timestamp: event time is exact.
    let ts = (chrono::Utc::now() + chrono::Duration::milliseconds(i as i64))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!(
        "<38>1 {ts} {host} sshd 4242 - - Failed password for root from {ip} port {} ssh2",
        40000 + i
    )
}

#[test]
fn syslog_over_udp_and_tcp_is_parsed_stored_and_correlated() {
    let server = common::Server::start_with(
        tempfile::tempdir().unwrap(),
        &[("ARES_SHARED_SECRET", "unused-here")],
        &["--syslog-udp", "127.0.0.1:0", "--syslog-tcp", "127.0.0.1:0"],
    );
    let udp_addr = listener(&server, "udp");
    let tcp_addr = listener(&server, "tcp");

    // UDP: one message per datagram.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..8 {
        // Half RFC 5424, half BSD (RFC 3164, as most senders still write).
        let line = if i % 2 == 0 {
            sshd_fail("udp-host", i, "198.51.100.20")
        } else {
            format!(
                "<38>{} udp-host sshd[4242]: Failed password for root from 198.51.100.20 port {} ssh2",
                chrono::Utc::now().format("%b %e %H:%M:%S"),
                40000 + i
            )
        };
        sock.send_to(line.as_bytes(), &udp_addr).unwrap();
    }
    let a = server.wait_for_alert("BRUTE_FORCE_V1", "udp-host");
    assert_eq!(a["src_ip"], "198.51.100.20", "{a}");

    // TCP: octet-counted frames and newline frames on the same connection.
    let mut tcp = std::net::TcpStream::connect(&tcp_addr).unwrap();
    let mut stream = Vec::new();
    for i in 0..8 {
        let line = sshd_fail("tcp-host", i, "192.0.2.77");
        if i % 2 == 0 {
            stream.extend(format!("{} {line}", line.len()).as_bytes());
        } else {
            stream.extend(format!("{line}\n").as_bytes());
        }
    }
    tcp.write_all(&stream).unwrap();
    tcp.flush().unwrap();
    let a = server.wait_for_alert("BRUTE_FORCE_V1", "tcp-host");
    assert_eq!(a["src_ip"], "192.0.2.77", "{a}");
    drop(tcp);

    // Bytes that are not UTF-8 (an attacker's choice of user name) do not
    // hide the message: it is read with U+FFFD in their place.
    for i in 0..8 {
        let mut line = format!(
            "<38>1 {} bad-utf8-host sshd 4242 - - Failed password for invalid user ad",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
        .into_bytes();
        line.extend_from_slice(b"\xff\xfemin");
        line.extend(format!(" from 203.0.113.66 port {} ssh2", 41000 + i).as_bytes());
        sock.send_to(&line, &udp_addr).unwrap();
    }
    let a = server.wait_for_alert("BRUTE_FORCE_V1", "bad-utf8-host");
    assert_eq!(a["src_ip"], "203.0.113.66", "{a}");

    // Every message is an event in the store.
    let mut server = server;
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    assert!(server.stop(), "graceful shutdown exits 0");
    let db = rusqlite::Connection::open(dir.path().join("vigil.db")).unwrap();
    for host in ["udp-host", "tcp-host"] {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM events WHERE host = ?1 AND action = 'login_failed'",
                [host],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 8, "{host}");
    }
    let users: Vec<String> = db
        .prepare("SELECT DISTINCT user FROM events WHERE host = 'bad-utf8-host'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(users, ["ad\u{fffd}\u{fffd}min"]);
}

/// Messages that arrive while the store cannot commit (another process
/// holds its write lock past the 5 s busy timeout) are submitted again
/// until stored: the sender will not send them twice.
#[test]
fn messages_that_arrive_while_the_store_fails_are_stored_once_it_recovers() {
    let server = common::Server::start_with(
        tempfile::tempdir().unwrap(),
        &[("ARES_SHARED_SECRET", "unused-here")],
        &["--syslog-tcp", "127.0.0.1:0"],
    );
    let tcp_addr = listener(&server, "tcp");
    let mut tcp = std::net::TcpStream::connect(&tcp_addr).unwrap();
    common::with_store_failing(server.dir.path(), || {
        for i in 0..8 {
            tcp.write_all(format!("{}\n", sshd_fail("locked-host", i, "192.0.2.90")).as_bytes())
                .unwrap();
        }
        tcp.flush().unwrap();
    });
    server.wait_for_alert("BRUTE_FORCE_V1", "locked-host");
    drop(tcp);
    let (stopped, log, dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    assert!(log.contains("commit failed"), "{log}");
    assert_eq!(common::stored_events(dir.path(), "locked-host"), 8);
}

/// One address gets at most `max_connections_per_ip` TCP connections, so
/// a single sender cannot take every place; the others still connect.
#[test]
fn tcp_connections_per_address_are_capped() {
    let (server, tcp_addr) = tcp_server_with("max_connections_per_ip = 2\n");
    let held: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(&tcp_addr).unwrap())
        .collect();
    // The third from the same address is closed at once: reading it ends.
    let mut third = std::net::TcpStream::connect(&tcp_addr).unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut third, &mut buf).unwrap(), 0);
    // The two held ones still deliver.
    for (n, mut c) in held.into_iter().enumerate() {
        for i in 0..4 {
            let line = sshd_fail("capped-host", n as u32 * 4 + i, "192.0.2.91");
            c.write_all(format!("{line}\n").as_bytes()).unwrap();
        }
    }
    server.wait_for_alert("BRUTE_FORCE_V1", "capped-host");
    let (stopped, log, _dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    assert!(log.contains("1 connections refused"), "{log}");
}

/// When a connection finds no place, the one that has gone longest without
/// a whole message (and at least `idle_evict_secs`) is closed for it: idle
/// connections cannot lock senders out, and one that keeps sending stays.
#[test]
fn an_idle_connection_makes_room_for_a_new_one() {
    let (server, tcp_addr) = tcp_server_with("max_connections_per_ip = 2\nidle_evict_secs = 1\n");
    let mut active = std::net::TcpStream::connect(&tcp_addr).unwrap();
    let mut idle = std::net::TcpStream::connect(&tcp_addr).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1300));
    // The first one sends (it is no longer idle); the second stays quiet.
    let line = sshd_fail("evict-host", 0, "192.0.2.77");
    active.write_all(format!("{line}\n").as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut newcomer = std::net::TcpStream::connect(&tcp_addr).unwrap();
    // The quiet one is closed: reading it ends.
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut idle, &mut buf).unwrap(), 0);
    // The newcomer and the sender both deliver: 8 failures make an alert.
    for i in 1..5 {
        let line = sshd_fail("evict-host", i, "192.0.2.77");
        newcomer.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    for i in 5..8 {
        let line = sshd_fail("evict-host", i, "192.0.2.77");
        active.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    server.wait_for_alert("BRUTE_FORCE_V1", "evict-host");
    let (stopped, log, _dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    assert!(log.contains("0 connections refused"), "{log}");
    assert!(
        log.contains("1 idle connections closed for new ones"),
        "{log}"
    );
}

/// A server with UDP and TCP listeners and these `[syslog]` settings.
fn both_with(syslog: &str) -> (common::Server, String, String) {
    let server = server_with(
        syslog,
        &["--syslog-udp", "127.0.0.1:0", "--syslog-tcp", "127.0.0.1:0"],
    );
    let (udp, tcp) = (listener(&server, "udp"), listener(&server, "tcp"));
    (server, udp, tcp)
}

/// With `allowed_senders`, messages from other addresses are dropped
/// unread, over UDP and TCP: a forged "Failed password … from X" cannot
/// raise an alert, or a ban of X. The listed senders still get through.
#[test]
fn senders_outside_the_allowed_networks_are_not_heard() {
    let send = |udp: &str, tcp: &str, host: &str| {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..8 {
            sock.send_to(sshd_fail(host, i, "192.0.2.50").as_bytes(), udp)
                .unwrap();
        }
        // A refused connection is closed at once, so writing may fail.
        if let Ok(mut c) = std::net::TcpStream::connect(tcp) {
            for i in 0..8 {
                let line = sshd_fail(&format!("{host}-tcp"), i, "192.0.2.51");
                if c.write_all(format!("{line}\n").as_bytes()).is_err() {
                    break;
                }
            }
        }
    };
    let (server, udp, tcp) = both_with("allowed_senders = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n");
    send(&udp, &tcp, "forged");
    // Let anything that got in be committed before looking.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (stopped, log, dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    assert_eq!(common::stored_events(dir.path(), "forged"), 0);
    assert_eq!(common::stored_events(dir.path(), "forged-tcp"), 0);
    assert!(
        log.contains("syslog: 0 received")
            && log.contains(", 9 datagrams or connections from senders not allowed"),
        "{log}"
    );

    // The same traffic from a listed address is heard.
    let (server, udp, tcp) = both_with("allowed_senders = [\"127.0.0.1\"]\n");
    send(&udp, &tcp, "listed");
    server.wait_for_alert("BRUTE_FORCE_V1", "listed");
    server.wait_for_alert("BRUTE_FORCE_V1", "listed-tcp");
    let (stopped, log, _dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    assert!(
        log.contains(", 0 datagrams or connections from senders not allowed"),
        "{log}"
    );
}

/// A bad entry stops the start with the entry and what is wrong with it.
#[test]
fn a_bad_allowed_sender_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, "[syslog]\nallowed_senders = [\"10.0.0.1/8\"]\n").unwrap();
    let out = common::vigil()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&cfg)
        .env("ARES_SHARED_SECRET", "unused-here")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "syslog.allowed_senders: \"10.0.0.1/8\" has bits set past /8: the network is 10.0.0.0/8"
        ),
        "{err}"
    );
}

/// A listener facing the network that takes any sender says so at start;
/// one on loopback, or with a list, does not.
#[test]
fn a_listener_open_to_any_sender_on_the_network_is_warned_about() {
    let warning = "takes messages from any address, and a forged line can raise alerts and bans";
    let server = common::Server::start_with(
        tempfile::tempdir().unwrap(),
        &[("ARES_SHARED_SECRET", "unused-here")],
        &["--syslog-udp", "0.0.0.0:0", "--syslog-tcp", "127.0.0.1:0"],
    );
    let warned: Vec<&String> = server
        .banner
        .iter()
        .filter(|l| l.contains(warning))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", server.banner);
    assert!(
        warned[0].contains("WARN syslog udp on 0.0.0.0:"),
        "{warned:?}"
    );
    assert!(server.stop());
    let server = server_with(
        "allowed_senders = [\"127.0.0.1\"]\n",
        &["--syslog-udp", "0.0.0.0:0"],
    );
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains(" syslog udp on 0.0.0.0:"))
    );
    assert!(
        !server.banner.iter().any(|l| l.contains(warning)),
        "{:?}",
        server.banner
    );
    assert!(server.stop());
}

/// A UDP burst larger than the receive buffer loses datagrams in the
/// kernel: they are counted, so every datagram sent is either received or
/// counted lost, and the summary says so (Linux, where the kernel's count
/// can be read).
#[test]
fn udp_datagrams_lost_to_a_full_buffer_are_counted() {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIP: the kernel's UDP drop count is read from /proc (Linux)");
        return;
    }
    let server = server_with(
        "udp_receive_buffer_bytes = 4096\n",
        &["--syslog-udp", "127.0.0.1:0"],
    );
    let udp = listener(&server, "udp");
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("syslog udp: receive buffer")),
        "{:?}",
        server.banner
    );
    let sent = 20_000u64;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..sent {
        sock.send_to(sshd_fail("burst", i as u32, "192.0.2.60").as_bytes(), &udp)
            .unwrap();
    }
    // What got into the buffer is read and committed before the stop.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (stopped, log, _dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    let figure = |after: &str, before: &str| -> u64 {
        let tail =
            &log[log.find(after).unwrap_or_else(|| panic!("{after}: {log}")) + after.len()..];
        tail[..tail.find(before).unwrap()].trim().parse().unwrap()
    };
    let received = figure("syslog: ", " received");
    let lost = figure(" received, ", " UDP datagrams lost (receive buffer full)");
    assert!(lost > 0, "a 4 KiB buffer held the whole burst? {log}");
    assert_eq!(received + lost, sent, "{log}");
}

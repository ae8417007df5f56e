//! The gateway's connection limits and slow-client timeouts, over real
//! sockets against `vigil serve`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECRET: &str = "limits-secret";

/// Starts `vigil serve` with `[gateway]` settings from `toml`.
fn serve_with(toml: &str) -> common::Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, toml).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    common::Server::start_with(dir, &[("ARES_SHARED_SECRET", SECRET)], &["--config", &cfg])
}

/// Everything the server sends until it closes (or `within` passes), and
/// how long that took.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open after {within:?}: {e}"),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

fn health(server: &common::Server) -> u16 {
    server.request("GET", "/health", &[], b"").0
}

/// `GET /health` that tolerates being turned away mid-request (the server
/// closes a refused connection without reading it, which may reset it).
fn health_or_refused(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).ok()?;
    String::from_utf8_lossy(&got)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A connection that has sent one request and keeps the connection open.
fn kept_alive(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s
}

#[test]
fn connections_over_the_limits_are_turned_away_and_their_places_come_back() {
    let server = serve_with("[gateway]\nmax_connections = 3\nmax_connections_per_ip = 3\n");
    let held: Vec<TcpStream> = (0..3).map(|_| kept_alive(&server.addr)).collect();
    // The fourth is answered at once and closed, not left hanging.
    let mut fourth = TcpStream::connect(&server.addr).unwrap();
    let (answer, took) = read_until_closed(&mut fourth, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.ends_with(r#"{"detail":"too_many_connections"}"#),
        "{answer}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A place frees when a connection closes.
    drop(held);
    // (Until the server has seen the closes, a request may still be
    // turned away; those are counted too.)
    let started = Instant::now();
    let mut turned_away = 1;
    while health_or_refused(&server.addr) != Some(200) {
        turned_away += 1;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no place came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, log) = server.stop_and_log();
    assert!(ok, "{log}");
    let logged: u32 = log
        .split(" connections turned away at the connection limits")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of turned-away connections in {log}"));
    assert!(
        (1..=turned_away).contains(&logged),
        "{logged} of {turned_away}: {log}"
    );

    // Per address: the fourth from one address is turned away while
    // there is room overall.
    let server = serve_with("[gateway]\nmax_connections = 100\nmax_connections_per_ip = 3\n");
    let _held: Vec<TcpStream> = (0..3).map(|_| kept_alive(&server.addr)).collect();
    let mut fourth = TcpStream::connect(&server.addr).unwrap();
    let (answer, _) = read_until_closed(&mut fourth, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

#[test]
fn idle_slow_header_and_slow_body_clients_are_cut_off() {
    let server = serve_with("[gateway]\nheader_timeout_secs = 1\nbody_timeout_secs = 1\n");

    // Connected, never sends a byte.
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    // Half a request head (slowloris).
    let mut slow_head = TcpStream::connect(&server.addr).unwrap();
    slow_head
        .write_all(b"POST /ingest HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    // A kept-alive connection gone quiet after one request.
    let mut quiet = kept_alive(&server.addr);
    for (name, s) in [
        ("idle", &mut idle),
        ("slow head", &mut slow_head),
        ("quiet", &mut quiet),
    ] {
        let (_, took) = read_until_closed(s, Duration::from_secs(5));
        assert!(took < Duration::from_secs(4), "{name}: open for {took:?}");
    }

    // Headers in time, then a body that never finishes: 408, audited.
    let mut slow_body = TcpStream::connect(&server.addr).unwrap();
    slow_body
        .write_all(
            b"POST /ingest HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nX-ARES-SIGNATURE: sha256=00\r\n\r\n{\"event",
        )
        .unwrap();
    let (answer, took) = read_until_closed(&mut slow_body, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#"{"detail":"body_timeout"}"#), "{answer}");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    // A declared body over 1 MiB is refused before it is read.
    let mut big = TcpStream::connect(&server.addr).unwrap();
    big.write_all(b"POST /ingest HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n")
        .unwrap();
    let (answer, _) = read_until_closed(&mut big, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#"{"detail":"body_too_large"}"#),
        "{answer}"
    );

    // Without a declared length (chunked), refused once 1 MiB is passed;
    // the client can send the rest and still reads the answer.
    let mut chunked = TcpStream::connect(&server.addr).unwrap();
    chunked
        .write_all(b"POST /ingest HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        chunked
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        chunked.write_all(&chunk).unwrap();
        chunked.write_all(b"\r\n").unwrap();
    }
    chunked.write_all(b"0\r\n\r\n").unwrap();
    let (answer, _) = read_until_closed(&mut chunked, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Prompt clients are served as before.
    assert_eq!(health(&server), 200);
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).unwrap();
    let reasons: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| format!("{} {} {}", v["type"], v["verification_reason"], v["path"]))
        .collect();
    assert_eq!(
        reasons,
        [
            r#""gateway_reject" "body_timeout" "/ingest""#,
            r#""gateway_reject" "body_too_large" "/ingest""#,
            r#""gateway_reject" "body_too_large" "/ingest""#,
        ]
    );
}

#[test]
fn limits_out_of_range_are_refused_at_start() {
    for (toml, name) in [
        (
            "[gateway]\nmax_connections = 0\n",
            "gateway.max_connections",
        ),
        (
            "[gateway]\nmax_connections = 10\nmax_connections_per_ip = 11\n",
            "gateway.max_connections_per_ip",
        ),
        (
            "[gateway]\nheader_timeout_secs = 0\n",
            "gateway.header_timeout_secs",
        ),
        (
            "[gateway]\nbody_timeout_secs = 99999\n",
            "gateway.body_timeout_secs",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("vigil.toml");
        std::fs::write(&cfg, toml).unwrap();
        let out = common::vigil()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .arg("--config")
            .arg(&cfg)
            .env("ARES_SHARED_SECRET", SECRET)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(name), "{toml}: {err}");
    }
}

/// Start-up errors an operator reads: a TOML syntax error keeps its lines
/// (the caret under the column), indented, with control characters made
/// inert; a cause is said once; a bind error gives a hint only where one
/// is right.
#[test]
fn start_up_errors_read_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = common::vigil()
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env("ARES_SHARED_SECRET", SECRET)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[gateway]\nlisten = [\n").unwrap();
    let err = run(&["--config", bad.to_str().unwrap()]);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].starts_with("vigil: error: config ") && lines[0].contains("TOML parse error"),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim_end().ends_with("|           ^")),
        "{err}"
    );
    assert!(lines[1..].iter().all(|l| l.starts_with("    ")), "{err}");
    assert!(!err.contains('\u{fffd}'), "{err}");

    let missing = dir.path().join("gone\x1b[2J.toml");
    let err = run(&["--config", missing.to_str().unwrap()]);
    assert!(!err.contains('\x1b'), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = run(&["--listen", &addr]);
    assert!(err.contains("is another Vigil or service on it?"), "{err}");
    let err = run(&["--listen", "127.0.0.1:99999"]);
    assert!(err.contains("invalid port"), "{err}");
    assert!(!err.contains("another Vigil"), "{err}");
}

/// `[gateway] audit_max_mib`: the audit log moves to a fresh file before it
/// passes the bound, the chain runs on across files, and `vigil audit
/// verify` follows it back through every file: each accepted event has its
/// record exactly once.
#[test]
fn the_audit_log_rotates_by_size_and_verifies_across_files() {
    const BATCHES: u64 = 30;
    let server =
        serve_with("[gateway]\naudit_max_mib = 1\naudit_keep = 0\nrate_limit_per_min = 1000000\n");
    let mut accepted = 0;
    for b in 0..BATCHES {
        let body = (0..1000)
            .map(|i| {
                let e = common::wire_event(
                    &format!("rot-{b}-{i:04}"),
                    &format!("rot-host-{}", i % 50),
                    "login_success",
                    Some("alice"),
                    Some("192.0.2.10"),
                );
                serde_json::to_string(&e).unwrap()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let sig = vigil::sources::gateway::sign(SECRET.as_bytes(), body.as_bytes());
        let (s, answer) = server.request(
            "POST",
            "/ingest/batch",
            &[("X-ARES-SIGNATURE", &sig)],
            body.as_bytes(),
        );
        assert_eq!(s, 200, "{answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        accepted += v["accepted"].as_u64().unwrap();
    }
    assert_eq!(accepted, BATCHES * 1000);
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "{log}");

    let out = common::vigil()
        .args(["audit", "verify"])
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = said.lines().collect();
    // A batch of 1 000 is one record of ~80 kB (one write): ~13 to a file.
    assert_eq!(lines.len(), 3, "{said}");
    assert!(
        lines[0].contains("/audit-") && !lines[0].contains("continues"),
        "{said}"
    );
    assert!(lines[1].ends_with("continues the file above"), "{said}");
    assert!(
        lines[2].contains("/audit.jsonl: intact") && lines[2].ends_with("continues the file above"),
        "{said}"
    );

    let mut ids = std::collections::BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("audit") && name.ends_with(".jsonl")) {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= (1 << 20) + 600_000, "{name}: {}", text.len());
        for r in text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        {
            assert_eq!(r["type"] == "gateway_batch", r["events"].is_array(), "{r}");
            for e in r["events"].as_array().into_iter().flatten() {
                assert!(
                    ids.insert(e["event_id"].as_str().unwrap().to_string()),
                    "{e}"
                );
            }
        }
    }
    assert_eq!((files, ids.len()), (3, BATCHES as usize * 1000));
    // `vigil audit event` follows the chain back into the rotated files.
    let (ok, said, _) = common::audit_event(&dir.path().join("audit.jsonl"), "rot-0-0005");
    assert!(ok, "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains("/audit-000001-") && said.contains(" line 1: "),
        "{said}"
    );
    assert!(
        said.trim_end().ends_with(
            "(line 6 of 1000) from 127.0.0.1, key default: accepted (host rot-host-5, source auth)"
        ),
        "{said}"
    );

    // The chain head the stop logged anchors the end of the chain: with the
    // last record cut off, the chain alone still verifies, the head does not.
    let head = log
        .lines()
        .rev()
        .filter_map(|l| {
            l.split_once("chain head ")
                .map(|(_, h)| h.trim().to_string())
        })
        .next()
        .expect("the stop logs the chain head");
    let verify_head = || {
        common::vigil()
            .args(["audit", "verify"])
            .arg(dir.path().join("audit.jsonl"))
            .args(["--head", &head])
            .output()
            .unwrap()
    };
    let out = verify_head();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("head {head}: ")) && said.ends_with("0 records after it\n"),
        "{said}"
    );
    let current = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&current).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    std::fs::write(&current, lines.join("\n") + "\n").unwrap();
    common::assert_audit_verifies(&current);
    let out = verify_head();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no record in the chain hashes to it"), "{err}");
}

/// Junk from a client without the key is refused as always, but past the
/// client's share of the minute its refusals are counted into one summary
/// record instead of a record each: a flood cannot push real records out
/// of the rotated files. Accept records are never held back, and every
/// refusal is accounted for in the chain.
#[test]
fn refusals_past_a_clients_share_are_summarised_and_accepts_never_are() {
    let server = serve_with(
        "[gateway]\naudit_refusals_per_client_per_minute = 5\naudit_refusals_per_minute = 50\n",
    );
    for _ in 0..30 {
        let (s, body) = server.request(
            "POST",
            "/ingest",
            &[("X-ARES-SIGNATURE", "sha256=00")],
            b"{}",
        );
        assert_eq!(
            (s, body.as_str()),
            (401, r#"{"detail":"signature_mismatch"}"#)
        );
    }
    for _ in 0..10 {
        let (s, body) = server.request("POST", "/ingest", &[], b"{}");
        assert_eq!(
            (s, body.as_str()),
            (401, r#"{"detail":"missing_signature"}"#)
        );
    }
    for i in 0..3 {
        let e = common::wire_event(
            &format!("after-flood-{i}"),
            "web-1",
            "login_success",
            None,
            None,
        );
        let body = serde_json::to_vec(&e).unwrap();
        let sig = vigil::sources::gateway::sign(SECRET.as_bytes(), &body);
        let (s, answer) = server.request("POST", "/ingest", &[("X-ARES-SIGNATURE", &sig)], &body);
        assert_eq!(s, 200, "{answer}");
    }
    let sig = vigil::sources::gateway::sign(SECRET.as_bytes(), b"{not json");
    let (s, _) = server.request(
        "POST",
        "/ingest",
        &[("X-ARES-SIGNATURE", &sig)],
        b"{not json",
    );
    assert_eq!(s, 400);
    // Admin requests without the token (none is configured here) are
    // refusals anyone can send, held to the same share.
    for _ in 0..10 {
        let (s, _) = server.request("DELETE", "/bans/192.0.2.1", &[], b"{}");
        assert_eq!(s, 403);
    }

    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "{log}");
    // The stop summary counts every refusal, written in full or not.
    assert!(
        log.contains("gateway: 3 accepted, 41 refused (signature_mismatch 30, missing_signature 10, invalid_json 1)"),
        "{log}"
    );
    let audit = dir.path().join("audit.jsonl");
    common::assert_audit_verifies(&audit);
    let records = common::audit_records(&audit);
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["type"] == kind).collect()
    };
    let rejects: Vec<&str> = of("gateway_reject")
        .iter()
        .map(|r| r["verification_reason"].as_str().unwrap())
        .collect();
    assert_eq!(rejects, ["signature_mismatch"; 5]);
    assert_eq!(of("gateway_accept").len(), 3);
    let summaries = of("gateway_refusals_summarized");
    assert_eq!(summaries.len(), 1, "{records:?}");
    let s = summaries[0];
    assert_eq!(s["refused"], 46);
    assert!(
        s["ts"]
            .as_str()
            .is_some_and(|t| t >= s["to"].as_str().unwrap()),
        "{s}"
    );
    assert_eq!(
        s["reasons"],
        serde_json::json!([
            {"reason": "signature_mismatch", "refused": 25},
            {"reason": "admin_disabled", "refused": 10},
            {"reason": "missing_signature", "refused": 10},
            {"reason": "invalid_json", "refused": 1},
        ])
    );
    assert_eq!(
        s["clients"],
        serde_json::json!([{"client": "127.0.0.1", "refused": 46}])
    );
    assert!(of("admin_action").is_empty());
    assert_eq!(s["other_clients_refused"], 0);
    // Written at stop, after everything it counts.
    assert_eq!(
        records.last().unwrap()["type"],
        "gateway_refusals_summarized"
    );
}

/// With a read token, alerts, host states and decisions need it (or the
/// admin token) as the bearer; `/health` and ingest do not. A refused read
/// is audited. Without one they stay open, as in the seed, and a gateway
/// facing the network says so at start.
#[test]
fn a_read_token_guards_the_read_routes() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start_in(
        dir,
        &[
            ("ARES_SHARED_SECRET", SECRET),
            ("VIGIL_READ_TOKEN", "reader-1"),
            ("VIGIL_ADMIN_TOKEN", "admin-1"),
        ],
    );
    for path in [
        "/alerts/recent",
        "/hosts/web-1/state",
        "/api/v1/decisions",
        "/api/v1/producer-keys",
    ] {
        let (s, body) = server.request("GET", path, &[], b"");
        assert_eq!(
            (s, body.as_str()),
            (401, r#"{"detail":"bad_read_token"}"#),
            "{path}"
        );
        let (s, _) = server.request("GET", path, &[("Authorization", "Bearer wrong")], b"");
        assert_eq!(s, 401, "{path}");
        for bearer in ["Bearer reader-1", "Bearer admin-1"] {
            let (s, body) = server.request("GET", path, &[("Authorization", bearer)], b"");
            assert_eq!(s, 200, "{path} {bearer}: {body}");
        }
    }
    assert_eq!(health(&server), 200);
    let e = common::wire_event("read-token-1", "web-1", "login_success", None, None);
    let body = serde_json::to_vec(&e).unwrap();
    let sig = vigil::sources::gateway::sign(SECRET.as_bytes(), &body);
    let (s, _) = server.request("POST", "/ingest", &[("X-ARES-SIGNATURE", &sig)], &body);
    assert_eq!(s, 200);
    // The read token is not the admin's.
    let (s, _) = server.request(
        "DELETE",
        "/bans/192.0.2.1",
        &[("Authorization", "Bearer reader-1")],
        br#"{"by":"x","reason":"y"}"#,
    );
    assert_eq!(s, 401);
    assert!(
        !server
            .banner
            .iter()
            .any(|l| l.contains("to anyone who can reach it")),
        "{:?}",
        server.banner
    );
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "{log}");
    let refused: Vec<String> = common::audit_records(&dir.path().join("audit.jsonl"))
        .iter()
        .filter(|r| r["verification_reason"] == "bad_read_token")
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused.len(), 8, "{refused:?}");
    assert!(log.contains("bad_read_token 8"), "{log}");

    // No token: open, and a gateway on every address says so.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, banner, _err) = common::spawn_serve(
        &["--listen", "0.0.0.0:0", "--data-dir", data],
        &[("ARES_SHARED_SECRET", SECRET)],
    );
    assert!(
        banner.contains("WARN the gateway on 0.0.0.0:")
            && banner.contains("to anyone who can reach it"),
        "{banner}"
    );
    let port = banner
        .rsplit("listening on ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.rsplit(':').next())
        .unwrap()
        .to_string();
    let (s, _) = common::http_request(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/alerts/recent",
        &[],
        b"",
    );
    assert_eq!(s, 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// A signed batch none of whose lines was taken is a refusal: past the
/// client's share of the minute its record is held back and each of its
/// lines counted in the summary. A batch with an accepted line is always
/// written, its refused lines in it.
#[test]
fn batches_that_take_nothing_share_the_refusal_budget_line_by_line() {
    let server = serve_with(
        "[gateway]\naudit_refusals_per_client_per_minute = 2\naudit_refusals_per_minute = 50\n",
    );
    let post = |body: &[u8]| {
        let sig = vigil::sources::gateway::sign(SECRET.as_bytes(), body);
        let (s, answer) =
            server.request("POST", "/ingest/batch", &[("X-ARES-SIGNATURE", &sig)], body);
        assert_eq!(s, 200, "{answer}");
        serde_json::from_str::<serde_json::Value>(&answer).unwrap()
    };
    for _ in 0..5 {
        let v = post(b"{not json\n[1]\n{also not");
        assert_eq!(
            (v["accepted"].as_u64(), v["rejected"].as_u64()),
            (Some(0), Some(3))
        );
    }
    let good = common::wire_event("budget-ok-1", "web-1", "login_success", None, None);
    let mut mixed = serde_json::to_vec(&good).unwrap();
    mixed.extend(b"\n{not json");
    let v = post(&mixed);
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(1))
    );

    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "{log}");
    // Every line is counted, held back or not.
    assert!(
        log.contains(
            "gateway: 1 accepted, 16 refused (invalid_json 11, schema_validation_failed 5)"
        ),
        "{log}"
    );
    let audit = dir.path().join("audit.jsonl");
    common::assert_audit_verifies(&audit);
    let records = common::audit_records(&audit);
    let batches: Vec<(u64, u64)> = records
        .iter()
        .filter(|r| r["type"] == "gateway_batch")
        .map(|r| {
            (
                r["accepted"].as_u64().unwrap(),
                r["refused"].as_u64().unwrap(),
            )
        })
        .collect();
    // Two refused batches in full (the client's share), then the mixed one.
    assert_eq!(batches, [(0, 3), (0, 3), (1, 1)]);
    let summary = records
        .iter()
        .find(|r| r["type"] == "gateway_refusals_summarized")
        .expect("a summary");
    assert_eq!(summary["refused"], 9, "{summary}");
    assert_eq!(
        summary["reasons"],
        serde_json::json!([
            {"reason": "invalid_json", "refused": 6},
            {"reason": "schema_validation_failed", "refused": 3},
        ])
    );
}

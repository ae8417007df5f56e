//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/corpus` beside the repository, if present. Tests that need it
/// print why they skip when it is absent (a user's clone has no corpus).
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if dir.is_dir() {
        Some(dir)
    } else {
        // Written to the stderr handle directly: the test harness captures
        // `eprintln!`, and a skip must be visible in an ordinary `cargo test`.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: corpus not found at {} (it lives beside the repository in the team workspace)",
            dir.display()
        );
        None
    }
}

pub fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

/// Runs `vigil audit event LOG ID`: whether it succeeded, what it printed,
/// and its error output.
#[allow(dead_code)]
pub fn audit_event(log: &Path, id: &str) -> (bool, String, String) {
    let out = vigil()
        .args(["audit", "event"])
        .arg(log)
        .arg(id)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `vigil audit verify` on `path` and fails the test with its message
/// unless the chain is intact.
pub fn assert_audit_verifies(path: &Path) {
    let out = vigil()
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The records of an audit log, in order (a line that is not JSON, such as
/// a last line a kill cut short, is skipped).
pub fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What an audit log says of one event id, in order: each record's
/// `"type" "verification_reason"`.
pub fn audit_trail(path: &Path, event_id: &str) -> Vec<String> {
    audit_records(path)
        .iter()
        .filter(|r| r["event_id"] == event_id)
        .map(|r| format!("{} {}", r["type"], r["verification_reason"]))
        .collect()
}

/// Runs `vigil parse` with `args` and returns one JSON value per input line.
pub fn vigil_parse(args: &[&str]) -> Vec<serde_json::Value> {
    let out = vigil()
        .arg("parse")
        .args(args)
        .output()
        .expect("run vigil parse");
    assert!(
        out.status.success(),
        "vigil parse failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

/// Runs `vigil scan` and returns (alerts, stderr).
pub fn vigil_scan(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = vigil()
        .arg("scan")
        .args(args)
        .output()
        .expect("run vigil scan");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "vigil scan failed: {stderr}");
    let alerts = String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect();
    (alerts, stderr)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One `# failJSON:` expectation of a fail2ban sample file.
pub struct FailJson {
    /// 1-based line number of the log line it applies to.
    pub line: u64,
    pub text: String,
    pub json: serde_json::Value,
}

/// The expectations of a fail2ban sample file, skipping those whose
/// constraint excludes fail2ban's aggressive mode (Vigil records every
/// pre-auth failure, which is what aggressive mode matches).
pub fn fail2ban_expectations(text: &str) -> Vec<FailJson> {
    let mut out = Vec::new();
    let mut pending: Option<serde_json::Value> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(j) = line.strip_prefix("# failJSON:") {
            pending = Some(serde_json::from_str(j.trim()).expect("failJSON is JSON"));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(json) = pending.take() {
            let constraint = json
                .get("constraint")
                .and_then(|c| c.as_str())
                .unwrap_or("");
            if constraint.contains("!= 'aggressive'") {
                continue;
            }
            out.push(FailJson {
                line: i as u64 + 1,
                text: line.to_string(),
                json,
            });
        }
    }
    out
}

/// A running `vigil serve` on an ephemeral port, stopped on drop.
pub struct Server {
    pub child: std::process::Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// Lines `vigil serve` logged up to being ready (listener addresses),
    /// the `listening on` line included.
    pub banner: Vec<String>,
    /// Everything it logged after that, as it arrives.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, env)
    }

    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        Self::start_with(dir, env, &[])
    }

    pub fn start_with(dir: tempfile::TempDir, env: &[(&str, &str)], args: &[&str]) -> Server {
        use std::io::BufRead;
        let data = dir.path().to_str().expect("a UTF-8 temp dir").to_string();
        let mut all = vec!["--listen", "127.0.0.1:0", "--data-dir", &data];
        all.extend_from_slice(args);
        let (child, log, err) = spawn_serve(&all, env);
        let banner: Vec<String> = log.lines().map(str::to_string).collect();
        let addr = banner
            .iter()
            .find_map(|l| l.split_once(" listening on "))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .expect("the listening line names the address")
            .to_string();
        let lines = err.lines();
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Server {
            child,
            addr,
            dir,
            banner,
            log,
        }
    }

    /// One HTTP/1.1 request; returns (status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        http_request(&self.addr, method, path, headers, body)
    }

    /// Polls `/alerts/recent` until it holds `rule` for `host` (10 s at most)
    /// and returns that alert.
    pub fn wait_for_alert(&self, rule: &str, host: &str) -> serde_json::Value {
        let started = std::time::Instant::now();
        loop {
            let (_, body) = self.request("GET", "/alerts/recent?limit=200", &[], b"");
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
            if let Some(a) = v["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["rule_id"] == rule && a["host"] == host)
            {
                return a.clone();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "no {rule} for {host}: {v}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops with SIGTERM and waits; returns whether it exited 0.
    pub fn stop(mut self) -> bool {
        self.terminate()
    }

    /// SIGTERM, then whether it exited 0.
    fn terminate(&mut self) -> bool {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Like [`stop_and_log`](Self::stop_and_log), and keeps the data dir
    /// (the store, the audit log) for the test to read.
    pub fn stop_keeping_data(mut self) -> (bool, String, tempfile::TempDir) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let (ok, log) = self.stop_and_log();
        (ok, log, dir)
    }

    /// Stops the server (SIGTERM) and returns whether it exited 0 and all
    /// it logged, the startup lines included.
    pub fn stop_and_log(mut self) -> (bool, String) {
        let ok = self.terminate();
        // The drain thread sees end of file once the process is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let done = self
                .log
                .lock()
                .map(|l| l.iter().any(|x| x.contains("stopped cleanly")))
                .unwrap_or(true);
            if done || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut all = self.banner.join("\n");
        if let Ok(l) = self.log.lock() {
            for line in l.iter() {
                all.push('\n');
                all.push_str(line);
            }
        }
        (ok, all)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vigil serve` with exactly `args` (unlike [`Server`], no `--listen`
/// of its own), its stderr read through the `listening on` line: the
/// child, what it logged so far, and the rest of its stderr to read on.
#[allow(dead_code)]
pub fn spawn_serve(
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    std::io::BufReader<std::process::ChildStderr>,
) {
    use std::io::BufRead;
    let mut cmd = vigil();
    cmd.arg("serve").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start vigil serve");
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains(" listening on ") {
        assert!(err.read_line(&mut log).unwrap() > 0, "{log}");
    }
    (child, log, err)
}

/// One HTTP/1.1 request to `addr`; returns (status, body).
#[allow(dead_code)]
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A `sec.event.v1` event timestamped now, as producers send it.
#[allow(dead_code)]
pub fn wire_event(
    id: &str,
    host: &str,
    action: &str,
    user: Option<&str>,
    src_ip: Option<&str>,
) -> serde_json::Value {
    let mut e = serde_json::json!({
        "event_type": "sec.event.v1",
        "event_id": id,
        "source": "auth",
        "host": host,
        "timestamp_utc": chrono::Utc::now().to_rfc3339(),
        "category": "auth",
        "action": action,
        "severity": 6,
        "attributes": {"test": true},
    });
    if let Some(u) = user {
        e["user"] = serde_json::json!(u);
    }
    if let Some(ip) = src_ip {
        e["src_ip"] = serde_json::json!(ip);
    }
    e
}

/// Events stored for `host` in the store under `data_dir`.
/// Holds the store in `data_dir` locked while `during` runs and past the
/// writer's busy timeout, so the commits meanwhile fail; then releases it.
#[allow(dead_code)]
pub fn with_store_failing(data_dir: &Path, during: impl FnOnce()) {
    let locker = rusqlite::Connection::open(data_dir.join("vigil.db")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    during();
    // Past the busy timeout: the first commit has failed by now.
    std::thread::sleep(std::time::Duration::from_millis(5600));
    locker.execute_batch("ROLLBACK").unwrap();
}

/// Waits (up to 10 s) until `host` has `n` events stored in `data_dir`,
/// while the server runs; panics saying `what` otherwise.
#[allow(dead_code)]
pub fn wait_for_stored(data_dir: &Path, host: &str, n: i64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stored = stored_events(data_dir, host);
        if stored >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {stored} of {n} events of {host} stored"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn stored_events(data_dir: &Path, host: &str) -> i64 {
    let db = rusqlite::Connection::open(data_dir.join("vigil.db")).unwrap();
    db.query_row("SELECT count(*) FROM events WHERE host = ?1", [host], |r| {
        r.get(0)
    })
    .unwrap()
}

//! The console end to end: `vigil console` in a real terminal (tmux), a
//! brute-force burst over signed HTTP, the screen read back with
//! `capture-pane`, and a release done with keys. Skipped, with the reason
//! printed, where tmux is absent (`.ci/run` installs it).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use vigil::sources::gateway::sign;

const SECRET: &str = "e2e-console-secret";

struct Tmux {
    socket: String,
    target: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", &self.target])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn text(&self, s: &str) {
        self.run(&["send-keys", "-t", &self.target, "-l", s]);
    }

    /// Waits until the screen satisfies `ok` (15 s at most).
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "waited for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn post(addr: &str, id: &str, host: &str, action: &str, msg: &str) -> u16 {
    let failed = action == "login_failed";
    let mut e = common::wire_event(
        id,
        host,
        action,
        failed.then_some("root"),
        failed.then_some("203.0.113.77"),
    );
    e["attributes"] = json!({ "cmd": msg });
    let body = serde_json::to_vec(&e).unwrap();
    let sig = sign(SECRET.as_bytes(), &body);
    common::http_request(
        addr,
        "POST",
        "/ingest",
        &[
            ("Content-Type", "application/json"),
            ("X-ARES-SIGNATURE", &sig),
        ],
        &body,
    )
    .0
}

/// Presses `q` and waits for the console (and its tmux session) to end.
fn quit(tmux: &Tmux) {
    tmux.keys(&["q"]);
    let start = Instant::now();
    while tmux.run(&["list-sessions"]).contains("console") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "console did not quit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `vigil console` in a private tmux server (`cols`×`rows`) with a
/// fresh data dir; `after` runs in the pane's shell once vigil exits.
/// Returns `None` (after printing why) where tmux is absent; otherwise the
/// session, the data dir and the gateway address read off the screen.
fn start_console(
    name: &str,
    cols: u16,
    rows: u16,
    after: &str,
) -> Option<(Tmux, tempfile::TempDir, String)> {
    start_console_with(name, cols, rows, "", after)
}

/// [`start_console`] with `args` added to `vigil console`'s.
fn start_console_with(
    name: &str,
    cols: u16,
    rows: u16,
    args: &str,
    after: &str,
) -> Option<(Tmux, tempfile::TempDir, String)> {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIP: tmux not found; the console end-to-end test needs it");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux {
        socket: format!("vigil-e2e-{name}-{}", std::process::id()),
        target: "console".into(),
    };
    let cmd = format!(
        "env ARES_SHARED_SECRET={SECRET} USER=e2e-analyst TERM=xterm-256color {} console --listen 127.0.0.1:0 --data-dir {} {args} 2>{}; {after}",
        env!("CARGO_BIN_EXE_vigil"),
        dir.path().display(),
        dir.path().join("stderr.txt").display(),
    );
    let (cols, rows) = (cols.to_string(), rows.to_string());
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "console",
        "-x",
        &cols,
        "-y",
        &rows,
        &cmd,
    ]);
    let screen = tmux.wait_for("the header with the listen address", |s| {
        s.contains("vigil · 127.0.0.1:")
    });
    let addr = screen
        .split("vigil · ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("listen address on screen")
        .to_string();
    Some((tmux, dir, addr))
}

#[test]
fn console_shows_a_brute_force_and_releases_the_host_with_keys() {
    let Some((tmux, dir, addr)) = start_console("keys", 120, 40, "true") else {
        return;
    };

    // A hostile line first: it must not clear or recolour the screen.
    assert_eq!(
        post(
            &addr,
            "evt-e2e-esc",
            "web-e2e",
            "proc_start",
            "pwn\u{1b}[2J\u{1b}[31mRED\u{1b}]0;title\u{7}end"
        ),
        200
    );
    // 42 more events, then 8 failures: the 51st event is both a storm and a
    // brute force, which the policy answers with quarantine.
    for i in 0..42 {
        assert_eq!(
            post(
                &addr,
                &format!("evt-e2e-{i:04}"),
                "web-e2e",
                "proc_start",
                "cron"
            ),
            200
        );
    }
    for i in 0..8 {
        assert_eq!(
            post(
                &addr,
                &format!("evt-e2e-f{i}"),
                "web-e2e",
                "login_failed",
                "Failed password for root"
            ),
            200
        );
    }
    tmux.wait_for("the failed logins, the quarantine and the ban", |s| {
        s.contains("login_failed")
            && s.contains("web-e2e")
            && s.contains("events 51")
            && s.contains("quarantined 1")
            && s.contains("bans 1")
    });

    // The hostile line is on screen, inert, and the header survived it.
    tmux.keys(&["/"]);
    tmux.text("pwn");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the filtered hostile line", |s| s.contains("pwn"));
    assert!(screen.contains("Overview"), "{screen}");
    assert!(
        screen.contains("cmd=pwn�[2J�[31mRED�]0;title�end"),
        "{screen}"
    );
    tmux.keys(&["Escape"]);

    tmux.keys(&["2"]);
    tmux.wait_for("the brute-force alert", |s| {
        s.contains("BRUTE_FORCE_V1") && s.contains("web-e2e")
    });
    tmux.keys(&["3"]);
    tmux.wait_for("the quarantined host", |s| {
        s.contains("web-e2e") && s.contains("QUARANTINED")
    });

    // r, a reason, Enter: released, persisted and audited as the local user.
    tmux.keys(&["r"]);
    tmux.wait_for("the release confirmation", |s| {
        s.contains("Release host web-e2e?")
    });
    tmux.text("checked the box");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the release to be done", |s| {
        s.contains("Release host web-e2e: done")
    });
    let (status, body) = common::http_request(&addr, "GET", "/hosts/web-e2e/state", &[], b"");
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["quarantine"], false, "{state}");

    quit(&tmux);
    let conn = vigil::store::open(&dir.path().join("vigil.db")).unwrap();
    let audit = vigil::store::audit_log(&conn).unwrap();
    assert!(
        audit.iter().any(|a| a.action == "release_host"
            && a.target == "web-e2e"
            && a.actor == "e2e-analyst"
            && a.reason == "checked the box"),
        "{audit:?}"
    );
    assert_eq!(vigil::store::count_events(&conn).unwrap(), 51);
}

/// The console follows a log file itself (`--tail`): a brute force written
/// to it shows in the stream and the alert queue, with the file's figures
/// in the header.
#[test]
fn console_follows_a_log_file_and_raises_its_alerts() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    std::fs::write(&log, "").unwrap();
    let args = format!("--tail {}", log.display());
    let Some((tmux, dir, _addr)) = start_console_with("tail", 120, 40, &args, "true") else {
        return;
    };
    tmux.wait_for("the file's figures in the header", |s| {
        s.contains("files 1: 0 lines")
    });
    let ts = chrono::Utc::now().format("%b %e %H:%M:%S");
    let lines: String = (0..8)
        .map(|i| {
            format!(
                "{ts} tail-e2e sshd[77]: Failed password for root from 192.0.2.44 port {} ssh2\n",
                40000 + i
            )
        })
        .collect();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, lines.as_bytes()).unwrap();
    drop(f);
    tmux.wait_for("the lines, the failed logins and the ban", |s| {
        s.contains("files 1: 8 lines")
            && s.contains("tail-e2e")
            && s.contains("login_failed")
            && s.contains("bans 1")
    });
    tmux.keys(&["2"]);
    tmux.wait_for("the brute-force alert", |s| {
        s.contains("BRUTE_FORCE") && s.contains("tail-e2e")
    });
    quit(&tmux);
    let conn = vigil::store::open(&dir.path().join("vigil.db")).unwrap();
    assert_eq!(vigil::store::count_events(&conn).unwrap(), 8);
}

#[test]
fn sigterm_ends_the_console_cleanly() {
    let status = std::env::temp_dir().join(format!("vigil-e2e-term-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&status);
    let after = format!("echo \"exit=$?\" > {}; sleep 5", status.display());
    let Some((tmux, dir, addr)) = start_console("term", 100, 30, &after) else {
        return;
    };
    assert_eq!(post(&addr, "evt-term-1", "web-t", "proc_start", "x"), 200);
    let pid = console_pid(dir.path());
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(&status) {
            assert_eq!(s.trim(), "exit=0", "{s}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "console did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The screen is given back: the shell's own line is visible again.
    tmux.wait_for("the terminal restored", |s| {
        !s.contains("vigil · 127.0.0.1:")
    });
    let conn = vigil::store::open(&dir.path().join("vigil.db")).unwrap();
    assert_eq!(vigil::store::count_events(&conn).unwrap(), 1);
    let _ = std::fs::remove_file(&status);
}

/// The console process started by a test: named vigil, with its data dir.
fn console_pid(data_dir: &std::path::Path) -> String {
    let needle = data_dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if comm.trim() == "vigil" && String::from_utf8_lossy(&cmdline).contains(&needle) {
            found.push(pid);
        }
    }
    assert_eq!(found.len(), 1, "one console process: {found:?}");
    found.remove(0)
}

#[test]
fn console_exits_when_its_terminal_goes_away() {
    let Some((tmux, dir, _addr)) = start_console("hup", 100, 30, "true") else {
        return;
    };
    let pid = console_pid(dir.path());
    // The terminal disappears under it (as when a window or ssh session closes).
    tmux.run(&["kill-server"]);
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the console outlived its terminal (it would spin: crossterm#793)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! `vigil serve --journald` with a stand-in `journalctl` first on PATH that
//! prints journal JSON entries the way `journalctl -o json` does, then
//! waits like `--follow`.

mod common;

use serde_json::json;

/// Serves `vigil serve --journald` with a stand-in `journalctl` (a shell
/// script whose `{dir}` is replaced by `bin`'s path) first on the PATH.
#[cfg(unix)]
fn serve_with_journalctl(bin: &std::path::Path, script: &str) -> common::Server {
    serve_with_journalctl_in(tempfile::tempdir().unwrap(), bin, script)
}

/// [`serve_with_journalctl`] on the data dir `data`.
#[cfg(unix)]
fn serve_with_journalctl_in(
    data: tempfile::TempDir,
    bin: &std::path::Path,
    script: &str,
) -> common::Server {
    use std::os::unix::fs::PermissionsExt;
    let file = bin.join("journalctl");
    std::fs::write(&file, script.replace("{dir}", &bin.display().to_string())).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    common::Server::start_with(
        data,
        &[("ARES_SHARED_SECRET", "unused-here"), ("PATH", &path)],
        &["--journald"],
    )
}

/// Eight sshd failures from `ip` on `host` as `journalctl -o json` prints
/// them, cursors `{cursor};i=N`, ports from `port`.
fn failures(cursor: &str, host: &str, ip: &str, port: i64) -> String {
    let now = chrono::Utc::now().timestamp_micros();
    (0..8)
        .map(|i| {
            json!({
                "__CURSOR": format!("{cursor};i={i}"),
                "__REALTIME_TIMESTAMP": (now + i).to_string(),
                "PRIORITY": "6",
                "SYSLOG_FACILITY": "10",
                "_HOSTNAME": host,
                "SYSLOG_IDENTIFIER": "sshd",
                "_PID": "901",
                "MESSAGE": format!("Failed password for root from {ip} port {} ssh2", port + i),
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn journal_entries_are_parsed_stored_and_correlated() {
    let bin = tempfile::tempdir().unwrap();
    let entries = failures("s=abc", "journal-host", "203.0.113.44", 41000);
    // A broken entry in the middle is counted, not fatal.
    let entries = entries.replacen('\n', "\n{not json\n", 1);
    std::fs::write(bin.path().join("entries.json"), entries).unwrap();
    let mut server = serve_with_journalctl(
        bin.path(),
        "#!/bin/sh\necho \"$@\" > '{dir}/args'\ncat '{dir}/entries.json'\nexec sleep 60\n",
    );
    let a = server.wait_for_alert("BRUTE_FORCE_V1", "journal-host");
    assert_eq!(a["src_ip"], "203.0.113.44", "{a}");
    let args = std::fs::read_to_string(bin.path().join("args")).unwrap();
    assert_eq!(args.trim(), "-o json --follow --lines=0");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let (ok, log) = server.stop_and_log();
    assert!(ok, "graceful shutdown stops journalctl and exits 0: {log}");
    // The broken entry is counted and shown with why.
    assert!(
        log.contains("journald: 9 entries, 8 accepted, 0 already stored, 1 unparsed; last unparsed: journal: \"{not json\" (not JSON: "),
        "{log}"
    );
    let db = rusqlite::Connection::open(dir.path().join("vigil.db")).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE host = 'journal-host' AND process = 'sshd'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 8);
}

#[test]
fn journald_without_journalctl_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let out = common::vigil()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--journald",
            "--data-dir",
        ])
        .arg(empty.path().join("data"))
        .env("ARES_SHARED_SECRET", "x")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("journalctl"), "{err}");
}

/// A `journalctl` that ends is started again after the last entry read:
/// the stand-in prints four failures and exits; started again with
/// `--after-cursor`, it prints the next four, and the brute force spanning
/// both runs is found.
#[cfg(unix)]
#[test]
fn journalctl_that_ends_is_restarted_after_the_last_entry() {
    let bin = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let entry = |i: i64| {
        json!({
            "__CURSOR": format!("s=abc;i={i}"),
            "__REALTIME_TIMESTAMP": (now + i).to_string(),
            "_HOSTNAME": "restart-host",
            "SYSLOG_IDENTIFIER": "sshd",
            "_PID": "902",
            "MESSAGE": format!("Failed password for root from 203.0.113.45 port {} ssh2", 42000 + i),
        })
        .to_string()
            + "\n"
    };
    let first: String = (0..4).map(entry).collect();
    let second: String = (4..8).map(entry).collect();
    std::fs::write(bin.path().join("first.json"), first).unwrap();
    std::fs::write(bin.path().join("second.json"), second).unwrap();
    let server = serve_with_journalctl(
        bin.path(),
        "#!/bin/sh\necho \"$@\" >> '{dir}/args'\ncase \"$*\" in\n  *--after-cursor=s=abc\\;i=3*) cat '{dir}/second.json'; exec sleep 60 ;;\n  *--after-cursor*) exit 3 ;;\n  *) cat '{dir}/first.json'; exit 1 ;;\nesac\n",
    );
    let a = server.wait_for_alert("BRUTE_FORCE_V1", "restart-host");
    assert_eq!(a["count"], 8, "{a}");
    let args = std::fs::read_to_string(bin.path().join("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-o json --follow --lines=0",
            "-o json --follow --after-cursor=s=abc;i=3"
        ]
    );
    let (stopped, log, dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    assert!(log.contains("journalctl ended (exit status: 1)"), "{log}");
    assert_eq!(
        common::stored_events(dir.path(), "restart-host"),
        8,
        "each entry once"
    );
}

/// Entries read while the store fails are stored once it recovers, while
/// `journalctl` stays quiet: what was read is answered (and a failed commit
/// submitted again) before the reader waits for more.
#[cfg(unix)]
#[test]
fn entries_read_while_the_store_fails_are_stored_once_it_recovers() {
    let bin = tempfile::tempdir().unwrap();
    let entries = failures("s=lock", "locked-journal", "203.0.113.46", 43000);
    std::fs::write(bin.path().join("entries.json"), entries).unwrap();
    // The entries come once `go` exists, then nothing more.
    let server = serve_with_journalctl(
        bin.path(),
        "#!/bin/sh\nwhile [ ! -e '{dir}/go' ]; do sleep 0.05; done\ncat '{dir}/entries.json'\nexec sleep 60\n",
    );
    common::with_store_failing(server.dir.path(), || {
        std::fs::write(bin.path().join("go"), "").unwrap();
    });
    server.wait_for_alert("BRUTE_FORCE_V1", "locked-journal");
    // Stored while vigil runs and journalctl is quiet, not only at stop.
    common::wait_for_stored(
        server.dir.path(),
        "locked-journal",
        8,
        "the entries were not stored after the store recovered",
    );
    let (stopped, log, dir) = server.stop_keeping_data();
    assert!(stopped, "{log}");
    assert!(log.contains("commit failed"), "{log}");
    assert!(log.contains("journald: 8 entries, 8 accepted"), "{log}");
    assert_eq!(common::stored_events(dir.path(), "locked-journal"), 8);
}

/// A restart resumes after the last entry the last run read (its cursor is
/// saved in the store), so entries written while vigil was stopped are read
/// and none twice; a saved cursor journalctl refuses (it ends at once)
/// falls back to following from now on, and says so.
#[cfg(unix)]
#[test]
fn a_restart_resumes_after_the_saved_cursor_and_falls_back_when_it_is_refused() {
    let bin = tempfile::tempdir().unwrap();
    let all = failures("s=j", "resume-host", "203.0.113.47", 44000);
    let lines: Vec<&str> = all.lines().collect();
    std::fs::write(bin.path().join("first.json"), lines[..4].join("\n") + "\n").unwrap();
    std::fs::write(bin.path().join("second.json"), lines[4..].join("\n") + "\n").unwrap();
    let script = "#!/bin/sh\necho \"$@\" >> '{dir}/args'\ncase \"$*\" in\n  *--after-cursor=s=j\\;i=3*) cat '{dir}/second.json'; exec sleep 60 ;;\n  *--after-cursor*) exit 1 ;;\n  *) if [ ! -e '{dir}/first.done' ]; then touch '{dir}/first.done'; cat '{dir}/first.json'; fi; exec sleep 60 ;;\nesac\n";
    let server = serve_with_journalctl(bin.path(), script);
    common::wait_for_stored(server.dir.path(), "resume-host", 4, "first run");
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "{log}");

    let server = serve_with_journalctl_in(dir, bin.path(), script);
    common::wait_for_stored(
        server.dir.path(),
        "resume-host",
        8,
        "after the saved cursor",
    );
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "{log}");
    assert!(
        log.contains("journal: resuming after the last entry the last run read"),
        "{log}"
    );
    assert!(
        log.contains("journald: 4 entries, 4 accepted, 0 already stored"),
        "{log}"
    );

    // The saved cursor (s=j;i=7) is refused: from now on instead.
    let server = serve_with_journalctl_in(dir, bin.path(), script);
    let args = bin.path().join("args");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&args).unwrap().lines().count() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "journalctl not started again"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "{log}");
    assert!(
        log.contains("journalctl ended at once when asked to resume after the cursor the last run saved; following the journal from now on instead"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&args)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        [
            "-o json --follow --lines=0",
            "-o json --follow --after-cursor=s=j;i=3",
            "-o json --follow --after-cursor=s=j;i=7",
            "-o json --follow --lines=0",
        ]
    );
    assert_eq!(
        common::stored_events(dir.path(), "resume-host"),
        8,
        "each entry once"
    );
}

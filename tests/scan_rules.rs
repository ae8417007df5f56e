//! Each rule fires at its threshold and not one event below it, on its own
//! fixtures, through the real `vigil scan` command; replaying a file gives
//! the same alerts.

mod common;

use std::io::Write;

use serde_json::Value;

const REF: &str = "2026-06-01T00:00:00Z";

fn scan_file(path: &std::path::Path) -> Vec<Value> {
    common::vigil_scan(&["--reference-time", REF, path.to_str().unwrap()]).0
}

/// Scans the first `n` lines of a fixture.
fn scan_prefix(name: &str, n: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(common::fixture(name)).unwrap();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for line in text.lines().take(n) {
        writeln!(f, "{line}").unwrap();
    }
    f.flush().unwrap();
    scan_file(f.path())
}

fn lines(name: &str) -> usize {
    std::fs::read_to_string(common::fixture(name))
        .unwrap()
        .lines()
        .count()
}

fn rules(alerts: &[Value]) -> Vec<&str> {
    alerts
        .iter()
        .map(|a| a["rule_id"].as_str().unwrap())
        .collect()
}

#[test]
fn brute_force_fires_on_eighth_failure_within_60s() {
    let alerts = scan_file(&common::fixture("brute_force.log"));
    assert_eq!(rules(&alerts), ["BRUTE_FORCE_V1"]);
    let a = &alerts[0];
    assert_eq!(a["host"], "web-1");
    assert_eq!(a["user"], "root");
    assert_eq!(a["src_ip"], "203.0.113.10");
    assert_eq!(a["count"], 8);
    assert_eq!(a["evidence"].as_array().unwrap().len(), 8);
    assert_eq!(a["mitre"], serde_json::json!(["T1110.001"]));
    assert_eq!(a["recommended_action"], "BLOCK_IP");
    assert_eq!(a["severity"], 7);
    assert_eq!(a["first_seen_utc"], "2026-03-14T10:00:00Z");
    assert_eq!(a["last_seen_utc"], "2026-03-14T10:00:56Z");
    assert!(
        a["reasons"][0]
            .as_str()
            .unwrap()
            .contains("8 failed logins for user 'root'")
    );
    assert_eq!(a["context"]["login_failed_count"], 8);
    for field in [
        "alert_id",
        "confidence",
        "risk_score",
        "created_time_utc",
        "status",
    ] {
        assert!(!a[field].is_null(), "{field} missing");
    }
}

#[test]
fn brute_force_silent_one_failure_below_threshold() {
    assert!(scan_prefix("brute_force.log", lines("brute_force.log") - 1).is_empty());
}

#[test]
fn brute_force_silent_when_failures_span_more_than_60s() {
    assert!(scan_file(&common::fixture("brute_force_slow.log")).is_empty());
}

#[test]
fn password_spray_fires_on_eighth_failure_over_five_users() {
    let alerts = scan_file(&common::fixture("password_spray.log"));
    assert_eq!(rules(&alerts), ["PASSWORD_SPRAY_V1"]);
    let a = &alerts[0];
    assert_eq!(a["src_ip"], "198.51.100.7");
    assert_eq!(a["user"], Value::Null);
    assert_eq!(a["count"], 8);
    assert_eq!(a["mitre"], serde_json::json!(["T1110.003"]));
    assert_eq!(a["context"]["spray_unique_users"], 5);
}

#[test]
fn password_spray_silent_below_thresholds() {
    assert!(scan_prefix("password_spray.log", lines("password_spray.log") - 1).is_empty());
    assert!(scan_file(&common::fixture("password_spray_four_users.log")).is_empty());
}

#[test]
fn success_after_six_failures_fires() {
    let alerts = scan_file(&common::fixture("success_after_failures.log"));
    assert_eq!(rules(&alerts), ["SUCCESS_AFTER_FAILURES_V1"]);
    let a = &alerts[0];
    assert_eq!(a["user"], "deploy");
    assert_eq!(a["src_ip"], "192.0.2.50");
    assert_eq!(a["mitre"], serde_json::json!(["T1078"]));
    assert_eq!(
        a["evidence"].as_array().unwrap().len(),
        7,
        "six failures and the success"
    );
}

#[test]
fn success_after_five_failures_is_silent() {
    assert!(scan_file(&common::fixture("success_after_five_failures.log")).is_empty());
}

#[test]
fn ingest_storm_fires_above_fifty_events_in_30s() {
    let alerts = scan_file(&common::fixture("ingest_storm.log"));
    assert_eq!(rules(&alerts), ["INGEST_STORM_V1"]);
    assert_eq!(alerts[0]["host"], "noisy-1");
    assert_eq!(alerts[0]["mitre"], serde_json::json!(["T1499"]));
    assert_eq!(alerts[0]["context"]["storm_count"], 51);
}

#[test]
fn ingest_storm_silent_at_fifty_events() {
    assert!(scan_prefix("ingest_storm.log", 50).is_empty());
}

fn strip_volatile(alerts: Vec<Value>) -> Vec<Value> {
    alerts
        .into_iter()
        .map(|mut a| {
            let o = a.as_object_mut().unwrap();
            o.remove("alert_id");
            o.remove("created_time_utc");
            a
        })
        .collect()
}

#[test]
fn replaying_a_file_gives_the_same_alerts() {
    let fixtures = [
        "brute_force.log",
        "password_spray.log",
        "success_after_failures.log",
        "ingest_storm.log",
    ];
    let paths: Vec<String> = fixtures
        .iter()
        .map(|f| common::fixture(f).to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["--reference-time", REF];
    args.extend(paths.iter().map(String::as_str));
    let first = strip_volatile(common::vigil_scan(&args).0);
    let second = strip_volatile(common::vigil_scan(&args).0);
    assert_eq!(first.len(), 4);
    assert_eq!(first, second);
}

#[test]
fn replay_of_generated_log_is_deterministic() {
    let text = authgen::generate(30_000, 11, 2_000);
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
    let first = strip_volatile(scan_file(f.path()));
    let second = strip_volatile(scan_file(f.path()));
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

#[path = "support/authgen.rs"]
mod authgen;

#[test]
fn scan_without_data_dir_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::vigil()
        .current_dir(dir.path())
        .args(["scan", "--reference-time", REF])
        .arg(common::fixture("brute_force.log"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn unreadable_input_is_a_clear_error() {
    let out = common::vigil()
        .args(["scan", "/nonexistent/auth.log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /nonexistent/auth.log"), "{err}");
    let out = common::vigil()
        .args(["scan", "--reference-time", "yesterday", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reference-time"));
}

#[test]
fn summary_goes_to_stderr() {
    let (_, stderr) = common::vigil_scan(&[
        "--reference-time",
        REF,
        common::fixture("brute_force.log").to_str().unwrap(),
    ]);
    assert!(stderr.contains("8 lines"), "{stderr}");
    assert!(stderr.contains("BRUTE_FORCE_V1: 1"), "{stderr}");
}

#[test]
fn no_arguments_without_a_terminal_explains_instead_of_starting_the_console() {
    let out = common::vigil()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the console needs a terminal"), "{err}");
    assert!(err.contains("vigil serve"), "{err}");
    let help = common::vigil().arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("vigil scan"), "{text}");
    assert!(text.contains("console"), "{text}");
}

#[test]
fn parse_prints_one_object_per_line_in_order() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "Mar 14 10:00:00 web-1 sshd[1]: Failed password for root from 203.0.113.10 port 1 ssh2"
    )
    .unwrap();
    writeln!(f).unwrap();
    writeln!(f, "garbage without header").unwrap();
    writeln!(f, "Mar 14 10:00:01 web-1 sshd[1]: Accepted publickey for alice from 192.0.2.1 port 2 ssh2: ED25519 x").unwrap();
    f.flush().unwrap();
    let rows = common::vigil_parse(&["--reference-time", REF, f.path().to_str().unwrap()]);
    assert_eq!(rows.len(), 4);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["line"], i as u64 + 1);
    }
    assert_eq!(rows[0]["parsed"], true);
    assert_eq!(rows[0]["action"], "login_failed");
    assert_eq!(rows[1]["parsed"], false);
    assert!(rows[2]["error"].as_str().unwrap().contains("syslog"));
    assert_eq!(rows[3]["action"], "login_success");
}

#[test]
fn auto_detects_the_format_of_each_line_in_a_mixed_file() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for line in [
        "Mar 14 10:00:00 web-1 sshd[1]: Failed password for root from 203.0.113.10 port 1 ssh2",
        r#"198.51.100.9 - - [14/Mar/2026:10:00:01 +0000] "GET /index.html HTTP/1.1" 200 10 "-" "Mozilla/5.0""#,
        "Mar 14 10:00:02 gw kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=1 DPT=22",
        "Mar 14 10:00:03 fw filterlog: 5,,,1000102433,em0,match,block,in,4,0x0,,128,24677,0,none,17,udp,186,10.9.0.119,10.9.0.255,17500,17600,166",
        "2026/03/14 10:00:04 [error] 31#31: *46 open() \"/x\" failed (2: No such file or directory), client: 192.0.2.4, server: a, request: \"GET /x HTTP/1.1\", host: \"a\"",
        r#"{"@timestamp":"2026-03-14T10:00:05Z","source":{"ip":"192.0.2.5"},"event":{"action":"login_failed"},"user":{"name":"bob"}}"#,
        "Mar 14 10:00:06 db-1 sudo: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/usr/bin/id",
    ] {
        writeln!(f, "{line}").unwrap();
    }
    f.flush().unwrap();
    let rows = common::vigil_parse(&["--reference-time", REF, f.path().to_str().unwrap()]);
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["source"].as_str().unwrap(), r["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("linux_auth", "login_failed"),
            ("web", "http_request"),
            ("firewall", "firewall_block"),
            ("firewall", "firewall_block"),
            ("web", "http_error"),
            ("json", "login_failed"),
            ("linux_auth", "sudo_command"),
        ]
    );
}

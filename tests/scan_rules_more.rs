//! The rules beyond SSH fire at their threshold and not one event below it,
//! through the real `vigil scan` command.

mod common;

use std::io::Write;

use serde_json::Value;

fn scan_lines(lines: &[String]) -> Vec<Value> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    common::vigil_scan(&[
        "--reference-time",
        "2026-06-01T00:00:00Z",
        f.path().to_str().unwrap(),
    ])
    .0
}

fn rules(alerts: &[Value]) -> Vec<String> {
    let mut r: Vec<String> = alerts
        .iter()
        .map(|a| a["rule_id"].as_str().unwrap().to_string())
        .collect();
    r.sort();
    r
}

fn fw(i: usize, port: u16) -> String {
    format!(
        "Mar 14 10:00:{:02} gw kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=40000 DPT={port} SYN",
        i
    )
}

#[test]
fn port_scan_fires_on_tenth_distinct_port() {
    let ten: Vec<String> = (0..10).map(|i| fw(i, 20 + i as u16)).collect();
    let alerts = scan_lines(&ten);
    assert_eq!(rules(&alerts), ["PORT_SCAN_V1"]);
    assert_eq!(alerts[0]["src_ip"], "203.0.113.5");
    assert_eq!(alerts[0]["mitre"], serde_json::json!(["T1046"]));
    assert!(scan_lines(&ten[..9]).is_empty());
    // The same port ten times is not a scan.
    let same: Vec<String> = (0..10).map(|i| fw(i, 22)).collect();
    assert!(scan_lines(&same).is_empty());
}

fn access(i: usize, path: &str, status: u16) -> String {
    format!(
        r#"198.51.100.9 - - [14/Mar/2026:10:00:{i:02} +0000] "GET {path} HTTP/1.1" {status} 10 "-" "Mozilla/5.0""#
    )
}

#[test]
fn web_scan_fires_on_tenth_distinct_4xx_path() {
    let ten: Vec<String> = (0..10)
        .map(|i| access(i, &format!("/page{i}"), 404))
        .collect();
    assert_eq!(rules(&scan_lines(&ten)), ["WEB_SCAN_V1"]);
    assert!(scan_lines(&ten[..9]).is_empty());
}

#[test]
fn web_attack_fires_on_one_injection() {
    let a = scan_lines(&[access(
        0,
        "/item?id=1%20UNION%20SELECT%20password%20FROM%20users",
        200,
    )]);
    assert_eq!(rules(&a), ["WEB_ATTACK_V1"]);
    assert!(
        a[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("sql_injection")
    );
    assert!(scan_lines(&[access(0, "/item?id=12&sort=price", 200)]).is_empty());
}

#[test]
fn http_auth_brute_force_fires_on_fifth_401() {
    let five: Vec<String> =
        (0..5).map(|i| format!(r#"198.51.100.9 - bob [14/Mar/2026:10:00:{i:02} +0000] "POST /login HTTP/1.1" 401 10 "-" "curl""#)).collect();
    assert_eq!(rules(&scan_lines(&five)), ["HTTP_AUTH_BRUTE_FORCE_V1"]);
    assert!(scan_lines(&five[..4]).is_empty());
}

fn sudo_fail(i: usize) -> String {
    format!(
        "Mar 14 10:0{i}:00 db-1 sudo: mallory : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls"
    )
}

#[test]
fn sudo_abuse_on_refusal_repeated_failures_and_shell_after_takeover() {
    let denied = scan_lines(&["Mar 14 10:00:00 db-1 sudo: mallory : user NOT in sudoers ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/bash".into()]);
    assert_eq!(rules(&denied), ["SUDO_ABUSE_V1"]);
    assert_eq!(denied[0]["user"], "mallory");
    let three: Vec<String> = (0..3).map(sudo_fail).collect();
    assert_eq!(rules(&scan_lines(&three)), ["SUDO_ABUSE_V1"]);
    assert!(scan_lines(&three[..2]).is_empty());
    // Six failures, a successful login, then a root shell.
    let mut takeover: Vec<String> = (0..6)
        .map(|i| format!("Mar 14 11:00:{:02} app-1 sshd[{i}]: Failed password for deploy from 192.0.2.50 port {i} ssh2", i * 5))
        .collect();
    takeover.push(
        "Mar 14 11:01:00 app-1 sshd[9]: Accepted password for deploy from 192.0.2.50 port 9 ssh2"
            .into(),
    );
    takeover.push("Mar 14 11:02:00 app-1 sudo: deploy : TTY=pts/1 ; PWD=/home/deploy ; USER=root ; COMMAND=/bin/bash".into());
    assert_eq!(
        rules(&scan_lines(&takeover)),
        ["SUCCESS_AFTER_FAILURES_V1", "SUDO_ABUSE_V1"]
    );
    // The same shell without the takeover is ordinary administration.
    assert!(scan_lines(&takeover[7..]).is_empty());
}

fn login(i: usize, host: &str) -> String {
    format!(
        "Mar 14 12:0{i}:00 {host} sshd[{i}]: Accepted publickey for svc from 10.0.0.{i} port 22 ssh2: ED25519 SHA256:x"
    )
}

#[test]
fn lateral_movement_on_fourth_host_or_after_takeover() {
    let four: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, h)| login(i, h))
        .collect();
    let alerts = scan_lines(&four);
    assert_eq!(rules(&alerts), ["LATERAL_MOVEMENT_V1"]);
    assert_eq!(alerts[0]["mitre"], serde_json::json!(["T1021.004"]));
    assert!(scan_lines(&four[..3]).is_empty());
    let mut hop: Vec<String> = (0..6)
        .map(|i| format!("Mar 14 11:00:{:02} app-1 sshd[{i}]: Failed password for svc from 192.0.2.50 port {i} ssh2", i * 5))
        .collect();
    hop.push(
        "Mar 14 11:01:00 app-1 sshd[9]: Accepted password for svc from 192.0.2.50 port 9 ssh2"
            .into(),
    );
    hop.push("Mar 14 11:03:00 db-1 sshd[10]: Accepted publickey for svc from 10.0.0.7 port 22 ssh2: ED25519 SHA256:x".into());
    assert_eq!(
        rules(&scan_lines(&hop)),
        ["LATERAL_MOVEMENT_V1", "SUCCESS_AFTER_FAILURES_V1"]
    );
}

#[test]
fn json_lines_feed_the_same_rules() {
    // Eight failures for one account as sec.event.v1 lines, and mapped ECS JSON.
    let wire: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"event_type":"sec.event.v1","event_id":"evt-0000000{i}","source":"app","host":"api-1","timestamp_utc":"2026-03-14T10:00:0{i}Z","category":"auth","action":"login_failed","severity":5,"user":"alice","src_ip":"203.0.113.20"}}"#))
        .collect();
    let alerts = scan_lines(&wire);
    assert_eq!(rules(&alerts), ["BRUTE_FORCE_V1"]);
    assert_eq!(alerts[0]["evidence"][0], "evt-00000000");
    let ecs: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"@timestamp":"2026-03-14T10:00:0{i}Z","host":{{"name":"api-2"}},"source":{{"ip":"203.0.113.21"}},"user":{{"name":"bob"}},"event":{{"action":"login_failed","category":"authentication"}}}}"#))
        .collect();
    let alerts = scan_lines(&ecs);
    assert_eq!(rules(&alerts), ["BRUTE_FORCE_V1"]);
    assert_eq!(alerts[0]["host"], "api-2");
}

//! Wazuh ruleset regression cases (nginx, iptables, pfsense, web_rules,
//! web_appsec, sudo, su): the category and action Vigil gives each sample —
//! and, for attack rules, the alert it raises — agree with the meaning of the
//! Wazuh rule the sample must fire (rule ids mapped per SOURCES.md), on ≥ 90%.

mod common;

use std::io::Write;

use serde_json::Value;

const FILES: &[&str] = &[
    "nginx",
    "iptables",
    "pfsense",
    "web_rules",
    "web_appsec",
    "sudo",
    "su",
];

/// What a Wazuh rule means in Vigil's terms.
enum Meaning {
    /// The last sample's action is one of these.
    Action(&'static [&'static str]),
    /// The samples raise one of these alerts.
    Alert(&'static [&'static str]),
}

fn meaning(rule: u32) -> Option<Meaning> {
    use Meaning::*;
    const FW: &[&str] = &["firewall_block", "firewall_allow", "firewall_log"];
    const DROP: &[&str] = &["firewall_block", "firewall_log"];
    const HTTP_ERR: &[&str] = &["http_error"];
    const ATTACK: &[&str] = &["WEB_ATTACK_V1"];
    const PROBE: &[&str] = &["WEB_ATTACK_V1", "WEB_SCAN_V1"];
    Some(match rule {
        4100 | 87700 => Action(FW),
        4101 | 4151 | 87701 => Action(DROP),
        5401 | 5404 => Action(&["sudo_failed"]),
        5403 => Action(&["sudo_command"]),
        5405 => Action(&["sudo_denied"]),
        5301 | 5302 => Action(&["su_failed"]),
        5503 => Action(&["auth_failed"]),
        5305 => Action(&["su_success", "session_opened"]),
        31300..=31303 | 31310 | 31311 | 31312 | 31317 | 31320 => Action(HTTP_ERR),
        31315 => Action(&["http_auth_failed"]),
        31101 => Action(&["http_request", "http_error"]),
        31108 | 31509 | 31511 | 31530 | 31531 => Action(&["http_request"]),
        31103 | 31104 | 31106 | 31170 | 31171 => Alert(ATTACK),
        31501..=31508 | 31512..=31516 => Alert(PROBE),
        _ => return None,
    })
}

struct Section {
    name: String,
    pass: Vec<String>,
    fail: Vec<String>,
    rule: u32,
}

fn sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in text.lines() {
        let l = line.trim_end();
        if l.starts_with(';') || l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            out.push(Section {
                name: name.into(),
                pass: vec![],
                fail: vec![],
                rule: 0,
            });
            continue;
        }
        let Some(s) = out.last_mut() else { continue };
        let Some((k, v)) = l.split_once(" = ") else {
            continue;
        };
        let k = k.trim();
        if k.starts_with("log ") && k.ends_with(" pass") {
            s.pass.push(v.to_string());
        } else if k.starts_with("log ") && k.ends_with(" fail") {
            s.fail.push(v.to_string());
        } else if k == "rule" {
            s.rule = v.trim().parse().unwrap_or(0);
        }
    }
    out
}

fn run(lines: &[String]) -> (Vec<Value>, Vec<Value>) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    let p = f.path().to_str().unwrap();
    let rows = common::vigil_parse(&["--reference-time", "2026-06-01T00:00:00Z", p]);
    let (alerts, _) = common::vigil_scan(&["--reference-time", "2026-06-01T00:00:00Z", p]);
    (rows, alerts)
}

fn holds(m: &Meaning, rows: &[Value], alerts: &[Value]) -> bool {
    match m {
        Meaning::Action(actions) => rows
            .last()
            .and_then(|r| r["action"].as_str())
            .is_some_and(|a| actions.contains(&a)),
        Meaning::Alert(rules) => alerts
            .iter()
            .any(|a| a["rule_id"].as_str().is_some_and(|r| rules.contains(&r))),
    }
}

#[test]
fn wazuh_cases_agree_with_rule_meaning() {
    let Some(dir) = common::corpus_dir() else {
        return;
    };
    let (mut agree, mut total) = (0, 0);
    for file in FILES {
        let text = std::fs::read_to_string(dir.join("wazuh").join(format!("{file}.ini")))
            .expect("read ini");
        for s in sections(&text) {
            let Some(m) = meaning(s.rule) else {
                panic!("{file}: rule {} of [{}] has no mapping", s.rule, s.name);
            };
            if !s.pass.is_empty() {
                total += 1;
                let (rows, alerts) = run(&s.pass);
                if holds(&m, &rows, &alerts) {
                    agree += 1;
                } else {
                    let last = rows.last().cloned().unwrap_or_default();
                    eprintln!(
                        "{file} [{}] rule {}: got action {} / alerts {:?} for: {}",
                        s.name,
                        s.rule,
                        last["action"],
                        alerts
                            .iter()
                            .map(|a| a["rule_id"].clone())
                            .collect::<Vec<_>>(),
                        s.pass.last().unwrap()
                    );
                }
            }
            // A fail line says "not this rule". That is only checkable where the
            // meaning is specific: an alert, or an action narrower than the
            // catch-all `http_request` / firewall verdicts.
            let specific = match &m {
                Meaning::Alert(_) => true,
                Meaning::Action(a) => !a.contains(&"http_request") && !a.contains(&"firewall_log"),
            };
            for line in s.fail.iter().filter(|_| specific) {
                total += 1;
                let (rows, alerts) = run(std::slice::from_ref(line));
                if holds(&m, &rows, &alerts) {
                    eprintln!(
                        "{file} [{}] rule {} must not hold but does for: {line}",
                        s.name, s.rule
                    );
                } else {
                    agree += 1;
                }
            }
        }
    }
    eprintln!(
        "wazuh: {agree}/{total} cases agree ({:.1}%)",
        100.0 * agree as f64 / total.max(1) as f64
    );
    assert!(agree as f64 >= 0.9 * total as f64, "only {agree}/{total}");
}

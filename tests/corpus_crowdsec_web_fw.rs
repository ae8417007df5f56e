//! CrowdSec hub parser cases for web servers and firewalls (nginx, Apache,
//! netfilter, pf, pfSense/OPNsense RFC 5424): source IP, destination IP/port,
//! HTTP method/path/status and firewall action agree on ≥ 95% of asserted
//! lines, and lines the hub's parser rejects are not given that parser's
//! meaning by Vigil.

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use vigil::event::parse_ip;

/// Asserted lines where Vigil deliberately differs, and why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "request: \"POST https://example.com/",
    "absolute-form request target: the hub's pattern drops the scheme (`//example.com/`); Vigil keeps the target as sent (`https://example.com/`)",
)];

#[derive(Default, Debug)]
struct Expect {
    success: Option<bool>,
    fields: Vec<(String, String)>,
}

/// `results["s01-parse"]["<parser>"][i]...` assertions, by line index.
fn expectations(assert_text: &str, parser: &str) -> BTreeMap<usize, Expect> {
    let prefix = format!("results[\"s01-parse\"][\"{parser}\"][");
    let mut out: BTreeMap<usize, Expect> = BTreeMap::new();
    for line in assert_text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((idx, rest)) = rest.split_once(']') else {
            continue;
        };
        let Ok(idx) = idx.parse::<usize>() else {
            continue;
        };
        let Some((lhs, rhs)) = rest.split_once(" == ") else {
            continue;
        };
        // The hub writes expr string literals: unescape \\ and \".
        let value = rhs
            .trim()
            .trim_matches('"')
            .replace("\\\\", "\\")
            .replace("\\\"", "\"");
        let e = out.entry(idx).or_default();
        if lhs == ".Success" {
            e.success = Some(value == "true");
        } else if let Some(k) = lhs
            .strip_prefix(".Evt.Meta[\"")
            .or_else(|| lhs.strip_prefix(".Evt.Parsed[\""))
        {
            e.fields
                .push((k.trim_end_matches("\"]").to_string(), value));
        }
    }
    out
}

fn family_matches(parser: &str, action: &str) -> bool {
    if parser.contains("nginx") || parser.contains("apache") {
        action.starts_with("http_")
    } else if parser.ends_with("pf-logs-drop") {
        action == "firewall_block"
    } else if parser.contains("pf-logs") || parser.contains("iptables") {
        action.starts_with("firewall_")
    } else {
        true
    }
}

/// Compares one asserted field with Vigil's event; `None` = not a field we model.
fn field_agrees(row: &Value, key: &str, want: &str) -> Option<bool> {
    let ip_eq = |v: &Value| v.as_str().and_then(parse_ip) == parse_ip(want);
    Some(match key {
        "source_ip" => ip_eq(&row["src_ip"]),
        "src_ip" => ip_eq(&row["src_ip"]),
        "dst_ip" => ip_eq(&row["dest_ip"]),
        "dst_port" => row["dest_port"].as_u64().map(|p| p.to_string()).as_deref() == Some(want),
        "http_path" | "request" => row["http"]["path"].as_str() == Some(want),
        "http_status" | "status" => {
            row["http"]["status"]
                .as_u64()
                .map(|s| s.to_string())
                .as_deref()
                == Some(want)
        }
        "verb" | "http_verb" => row["http"]["method"].as_str() == Some(want),
        "target_user" => row["user"].as_str() == Some(want),
        "action" => row["attributes"]["pf_action"].as_str() == Some(want),
        _ => return None,
    })
}

fn check(test: &str, parsers: &[&str]) -> (usize, usize) {
    let Some(dir) = common::corpus_dir() else {
        return (0, 0);
    };
    let base = dir.join("crowdsec-hub/tests").join(test);
    let asserts = std::fs::read_to_string(base.join("parser.assert")).expect("read parser.assert");
    let log = std::fs::read_dir(&base)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("test has a .log");
    let rows = common::vigil_parse(&[
        "--reference-time",
        "2026-06-01T00:00:00Z",
        log.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&log).unwrap();
    let non_empty: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, _)| i)
        .collect();
    let (mut agree, mut total) = (0, 0);
    for parser in parsers {
        for (idx, e) in expectations(&asserts, parser) {
            let row = &rows[non_empty[idx]];
            let action = row["action"].as_str().unwrap_or("");
            let mut problems = Vec::new();
            match e.success {
                Some(true) if !family_matches(parser, action) => {
                    problems.push(format!("hub parses it, Vigil says {action}"))
                }
                Some(false) if family_matches(parser, action) && row["parsed"] == true => {
                    problems.push(format!("hub rejects it, Vigil says {action}"))
                }
                _ => {}
            }
            if e.success != Some(false) {
                for (k, v) in &e.fields {
                    if field_agrees(row, k, v) == Some(false) {
                        problems.push(format!("{k}: want {v:?}"));
                    }
                }
            }
            total += 1;
            let line = text.lines().nth(non_empty[idx]).unwrap_or("");
            if problems.is_empty() {
                agree += 1;
            } else if let Some((_, why)) = KNOWN_DIFFERENCES.iter().find(|(k, _)| line.contains(k))
            {
                eprintln!(
                    "{test} [{parser}] line {} differs (listed): {} — {why}",
                    non_empty[idx] + 1,
                    problems.join("; ")
                );
            } else {
                eprintln!(
                    "{test} [{parser}] line {}: {}",
                    non_empty[idx] + 1,
                    problems.join("; ")
                );
            }
        }
    }
    eprintln!("{test}: {agree}/{total} asserted lines agree");
    (agree, total)
}

#[test]
fn crowdsec_web_and_firewall_parser_cases_agree() {
    let cases: &[(&str, &[&str])] = &[
        ("nginx_http-logs", &["crowdsecurity/nginx-logs"]),
        ("nginx-http-malformed", &["crowdsecurity/nginx-logs"]),
        ("nginx_req_limit_exceeded", &["crowdsecurity/nginx-logs"]),
        ("pfsense-rfc5424-nginx", &["crowdsecurity/nginx-logs"]),
        ("apache2-logs", &["crowdsecurity/apache2-logs"]),
        ("apache2-malformed", &["crowdsecurity/apache2-logs"]),
        ("iptables-logs", &["crowdsecurity/iptables-logs"]),
        (
            "pf-logs",
            &["firewallservices/pf-logs", "firewallservices/pf-logs-drop"],
        ),
        ("opnsense-sshd", &["crowdsecurity/sshd-logs"]),
    ];
    let (mut a, mut t) = (0, 0);
    for (test, parsers) in cases {
        let (x, y) = check(test, parsers);
        a += x;
        t += y;
    }
    if t == 0 {
        return;
    }
    eprintln!(
        "crowdsec web+firewall total: {a}/{t} ({:.1}%)",
        100.0 * a as f64 / t as f64
    );
    assert!(a as f64 >= 0.95 * t as f64, "only {a}/{t} agree");
}

/// pfSense RFC 5424 filterlog has no parser assertions upstream; check the
/// fields against the Netgate format by hand.
#[test]
fn pfsense_rfc5424_filterlog_fields() {
    let Some(dir) = common::corpus_dir() else {
        return;
    };
    let log =
        dir.join("crowdsec-hub/tests/pfsense-rfc5424-filterlog/pfsense-rfc5424-filterlog.log");
    let rows = common::vigil_parse(&[log.to_str().unwrap()]);
    let got: Vec<(String, String, u64)> = rows
        .iter()
        .filter(|r| r["parsed"] == true)
        .map(|r| {
            (
                r["action"].as_str().unwrap().into(),
                r["src_ip"].as_str().unwrap().into(),
                r["dest_port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("firewall_block".into(), "192.168.5.6".into(), 80),
            ("firewall_block".into(), "192.168.10.110".into(), 443),
            (
                "firewall_block".into(),
                "fdfd:ace:ace:10:d8:cdbf:f6f8:6d69".into(),
                443
            ),
            ("firewall_block".into(), "192.168.5.6".into(), 80),
        ]
    );
}

//! CrowdSec hub scenario cases: for every alert the hub expects from a port
//! scan or HTTP probing/attack sample, Vigil raises PORT_SCAN_V1 (scans) or
//! WEB_SCAN_V1 / WEB_ATTACK_V1 (web) for the same source address; and the
//! hub's parser samples, which hold ordinary traffic, raise none of these.

mod common;

use std::collections::{BTreeMap, BTreeSet};

/// (test, rules that answer its scenario)
const CASES: &[(&str, &[&str])] = &[
    ("iptables-scan-multi-port", &["PORT_SCAN_V1"]),
    ("pf-scan-multi-port", &["PORT_SCAN_V1"]),
    (
        "nginx-http-sensitive-files",
        &["WEB_SCAN_V1", "WEB_ATTACK_V1"],
    ),
    (
        "apache2-http-sensitive-files",
        &["WEB_SCAN_V1", "WEB_ATTACK_V1"],
    ),
    (
        "nginx-http-path-traversal",
        &["WEB_SCAN_V1", "WEB_ATTACK_V1"],
    ),
    ("nginx-http-sqli-probing", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("nginx-http-xss-probing", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("apache-http-probing", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("nginx-http-malformed", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    (
        "http-admin-interface-probing",
        &["WEB_SCAN_V1", "WEB_ATTACK_V1"],
    ),
    ("http-wordpress-scan", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("http-cve-probing", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("http-technology-probing", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("nginx-http-backdoor", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("nginx-http-w00twoot", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("nginx-http-open-proxy", &["WEB_SCAN_V1", "WEB_ATTACK_V1"]),
    ("nginx-http-generic-bf", &["HTTP_AUTH_BRUTE_FORCE_V1"]),
];

/// Hub samples of ordinary traffic (parser tests with no scenario).
const BENIGN: &[&str] = &[
    "nginx_http-logs",
    "apache2-logs",
    "iptables-logs",
    "pf-logs",
    "pfsense-rfc5424-filterlog",
    "pfsense-rfc5424-nginx",
];

const SCAN_RULES: &[&str] = &["PORT_SCAN_V1", "WEB_SCAN_V1", "WEB_ATTACK_V1"];

/// Source addresses of the alerts a `scenario.assert` expects.
fn expected_sources(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        // `"1.2.3.4" in results[0].Overflow.GetSources()`
        if let Some((ip, rest)) = line.strip_prefix('"').and_then(|l| l.split_once('"')) {
            if rest.contains(".Overflow.GetSources()") {
                out.insert(ip.to_string());
            }
        }
    }
    out
}

fn log_of(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a .log file")
}

/// rule id → source addresses alerted.
fn scan(path: &std::path::Path) -> BTreeMap<String, BTreeSet<String>> {
    let (alerts, _) = common::vigil_scan(&[
        "--reference-time",
        "2026-06-01T00:00:00Z",
        path.to_str().unwrap(),
    ]);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in alerts {
        out.entry(a["rule_id"].as_str().unwrap().to_string())
            .or_default()
            .insert(a["src_ip"].as_str().unwrap_or("").to_string());
    }
    out
}

#[test]
fn hub_scenarios_are_answered_for_the_same_sources() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let mut missing = Vec::new();
    let (mut found, mut total) = (0, 0);
    for (test, rules) in CASES {
        let dir = corpus.join("crowdsec-hub/tests").join(test);
        let want = expected_sources(&std::fs::read_to_string(dir.join("scenario.assert")).unwrap());
        assert!(!want.is_empty(), "{test}: no expected sources read");
        let got = scan(&log_of(&dir));
        for ip in &want {
            total += 1;
            if rules
                .iter()
                .any(|r| got.get(*r).is_some_and(|s| s.contains(ip)))
            {
                found += 1;
            } else {
                missing.push(format!("{test}: no {rules:?} alert for {ip} (got {got:?})"));
            }
        }
    }
    eprintln!("crowdsec scenarios: {found}/{total} expected sources alerted by the matching rule");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn hub_benign_samples_raise_no_scan_or_attack_alerts() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    for test in BENIGN {
        let got = scan(&log_of(&corpus.join("crowdsec-hub/tests").join(test)));
        for r in SCAN_RULES {
            assert!(
                !got.contains_key(*r),
                "{test}: unexpected {r} for {:?}",
                got.get(*r)
            );
        }
    }
}

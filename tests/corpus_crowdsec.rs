//! CrowdSec hub parser tests for sshd: for each asserted line, the source IP,
//! target user and success/failure that `vigil parse` gives must agree with
//! the hub's expectations on ≥ 95% of lines.

mod common;

use std::collections::BTreeMap;

use vigil::event::parse_ip;

#[derive(Default, Debug)]
struct Expect {
    success: Option<bool>,
    log_type: Option<String>,
    source_ip: Option<String>,
    target_user: Option<String>,
}

/// Reads `results["s01-parse"]["crowdsecurity/NAME"][i]...` assertions.
fn expectations(assert_text: &str, parser: &str) -> BTreeMap<usize, Expect> {
    let prefix = format!("results[\"s01-parse\"][\"crowdsecurity/{parser}\"][");
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
        let value = rhs.trim().trim_matches('"').to_string();
        let e = out.entry(idx).or_default();
        match lhs {
            ".Success" => e.success = Some(value == "true"),
            ".Evt.Meta[\"log_type\"]" => e.log_type = Some(value),
            ".Evt.Meta[\"source_ip\"]" => e.source_ip = Some(value),
            ".Evt.Meta[\"target_user\"]" => e.target_user = Some(value),
            _ => {}
        }
    }
    out
}

fn check(test: &str, log: &str, parser: &str) -> (usize, usize) {
    let Some(dir) = common::corpus_dir() else {
        return (0, 0);
    };
    let base = dir.join("crowdsec-hub/tests").join(test);
    let asserts = std::fs::read_to_string(base.join("parser.assert")).expect("read parser.assert");
    let log_path = base.join(log);
    let rows = common::vigil_parse(&[log_path.to_str().unwrap()]);
    // The hub indexes non-empty input lines.
    let text = std::fs::read_to_string(&log_path).expect("read log");
    let line_numbers: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, _)| i)
        .collect();
    let (mut agree, mut total) = (0, 0);
    for (idx, e) in expectations(&asserts, parser) {
        let row = &rows[line_numbers[idx]];
        total += 1;
        let mut problems = Vec::new();
        let failure = row["outcome"] == "failure";
        let success = row["outcome"] == "success";
        match (e.success, e.log_type.as_deref()) {
            (Some(false), _) if failure => {
                problems.push("hub rejects the line, Vigil calls it a failure".to_string())
            }
            (Some(true), Some("auth_success")) if !success => {
                problems.push(format!("want success, got {}", row["outcome"]))
            }
            (Some(true), Some(t)) if t != "auth_success" && !failure => problems.push(format!(
                "want failure ({t}), got {} {}",
                row["action"], row["outcome"]
            )),
            _ => {}
        }
        if let Some(ip) = &e.source_ip {
            let got = row["src_ip"].as_str().and_then(parse_ip);
            if got != parse_ip(ip) {
                problems.push(format!("src_ip: want {ip}, got {got:?}"));
            }
        }
        if let Some(u) = &e.target_user {
            if row["user"].as_str() != Some(u.as_str()) {
                problems.push(format!("user: want {u}, got {}", row["user"]));
            }
        }
        if problems.is_empty() {
            agree += 1;
        } else {
            eprintln!(
                "{test} line {}: {} — {}",
                line_numbers[idx] + 1,
                problems.join("; "),
                row["message"]
            );
        }
    }
    eprintln!("{test}: {agree}/{total} asserted lines agree");
    (agree, total)
}

#[test]
fn crowdsec_sshd_parser_cases_agree() {
    let mut sum = (0, 0);
    for (test, log, parser) in [
        ("sshd-logs", "sshd-logs.log", "sshd-logs"),
        ("sshd-logs-fp", "sshd-logs.log", "sshd-logs"),
        (
            "sshd-success-logs",
            "sshd-success-logs.log",
            "sshd-success-logs",
        ),
    ] {
        let (a, t) = check(test, log, parser);
        sum.0 += a;
        sum.1 += t;
    }
    if sum.1 == 0 {
        return;
    }
    eprintln!(
        "crowdsec sshd total: {}/{} ({:.1}%)",
        sum.0,
        sum.1,
        100.0 * sum.0 as f64 / sum.1 as f64
    );
    assert!(
        sum.0 as f64 >= 0.95 * sum.1 as f64,
        "only {}/{} agree",
        sum.0,
        sum.1
    );
}

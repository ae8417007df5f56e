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

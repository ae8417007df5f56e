//! rsyslog's `parse1` vectors: host, program, pid, message and timestamp of
//! Vigil's envelope parser against rsyslog's own rendering (≥ 90% agree;
//! the rest are listed with the reason).

mod common;

use chrono::{TimeZone, Utc};
use vigil::parse::syslog::{SyslogFormat, SyslogOptions, parse_envelope};

/// Vectors where we read the line differently from rsyslog, and why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[(
    "AUG 10 22:18:24 2009  netips-warden2-p",
    "rsyslog takes the year after the time as the host name and leaves the tag empty; Vigil also reads `2009` as the host but then takes `netips-warden2-p` as the program",
)];

struct Vector {
    file: String,
    input: String,
    expected: String,
}

fn vectors(dir: &std::path::Path) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read parse1 dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read vector");
        let mut pending: Option<String> = None;
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            match pending.take() {
                None => pending = Some(line.to_string()),
                Some(input) => out.push(Vector {
                    file: path.file_name().unwrap().to_string_lossy().into_owned(),
                    input,
                    expected: line.to_string(),
                }),
            }
        }
    }
    out
}

#[test]
fn rsyslog_parse1_vectors_agree() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let opts = SyslogOptions::new(Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap());
    let (mut agree, mut total) = (0, 0);
    let mut unexplained = Vec::new();
    for v in vectors(&corpus.join("rsyslog/parse1")) {
        total += 1;
        // PRI,facility,severity,timestamp,hostname,programname,syslogtag,msg
        // The first five never contain commas; the rest may (a malformed tag
        // can), so the remainder is compared against our own rendering.
        let f: Vec<&str> = v.expected.splitn(6, ',').collect();
        assert_eq!(f.len(), 6, "{}: {}", v.file, v.expected);
        let (want_ts, want_host, want_rest) = (f[3], f[4], f[5]);
        let want_host = (want_host != "~H").then_some(want_host);
        let got = match parse_envelope(&v.input, &opts) {
            Ok(e) => e,
            Err(err) => {
                unexplained.push(format!("{}: not parsed ({err}): {}", v.file, v.input));
                continue;
            }
        };
        let got_ts = got
            .timestamp
            .map(|t| t.format("%b %e %H:%M:%S").to_string())
            .unwrap_or_default();
        let mut diffs = Vec::new();
        if got_ts != want_ts {
            diffs.push(format!("timestamp {got_ts:?} != {want_ts:?}"));
        }
        if got.hostname != want_host {
            diffs.push(format!("host {:?} != {want_host:?}", got.hostname));
        }
        // programname,syslogtag,msg as rsyslog renders them: for RFC 5424 the
        // program name is empty and the tag is APP[PROCID] without a colon;
        // for BSD lines the tag keeps its colon when the line had one.
        let app = got.app.unwrap_or("");
        let with_pid = match got.pid {
            Some(p) => format!("{app}[{p}]"),
            None => app.to_string(),
        };
        let msg = got.message;
        let candidates = if got.format == SyslogFormat::Rfc5424 {
            vec![format!(",{with_pid},{msg}")]
        } else {
            vec![
                format!("{app},{with_pid}:, {msg}"),
                format!("{app},{with_pid},{msg}"),
                format!("{app},{with_pid}, {msg}"),
            ]
        };
        let norm = |s: &str| s.trim_end().to_string();
        if !candidates.iter().any(|c| norm(c) == norm(want_rest)) {
            diffs.push(format!(
                "program/pid/message {:?} != {want_rest:?}",
                candidates[0]
            ));
        }
        if diffs.is_empty() {
            agree += 1;
        } else if let Some((_, why)) = KNOWN_DIFFERENCES.iter().find(|(k, _)| v.input.contains(k)) {
            eprintln!("differs (listed) {}: {} — {why}", v.file, diffs.join("; "));
        } else {
            unexplained.push(format!(
                "{}: {} (input {:?})",
                v.file,
                diffs.join("; "),
                v.input
            ));
        }
    }
    eprintln!(
        "rsyslog parse1: {agree}/{total} vectors agree ({:.1}%)",
        100.0 * agree as f64 / total.max(1) as f64
    );
    assert!(
        unexplained.is_empty(),
        "unexplained differences:\n{}",
        unexplained.join("\n")
    );
    assert!(agree as f64 >= 0.9 * total as f64);
}

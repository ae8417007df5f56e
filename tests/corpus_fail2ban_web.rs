//! fail2ban's web and port-scan samples (`nginx-*`, `apache-*`, `portsentry`,
//! `scanlogd`): the client address Vigil extracts from each `match: true`
//! line must be the host fail2ban expects, on ≥ 95% of those lines.

mod common;

use vigil::event::parse_ip;

const FILES: &[&str] = &[
    "nginx-bad-request",
    "nginx-botsearch",
    "nginx-forbidden",
    "nginx-http-auth",
    "nginx-limit-req",
    "apache-auth",
    "apache-badbots",
    "apache-botsearch",
    "apache-fakegooglebot",
    "apache-modsecurity",
    "apache-nohome",
    "apache-noscript",
    "apache-overflows",
    "apache-pass",
    "apache-shellshock",
    "portsentry",
    "scanlogd",
];

#[test]
fn fail2ban_web_and_scan_samples_give_the_client_address() {
    let Some(dir) = common::corpus_dir() else {
        return;
    };
    let (mut agree, mut total) = (0, 0);
    for name in FILES {
        let path = dir.join("fail2ban/logs").join(name);
        let text = std::fs::read_to_string(&path).expect("read sample");
        let rows = common::vigil_parse(&[
            "--reference-time",
            "2026-06-01T00:00:00Z",
            path.to_str().unwrap(),
        ]);
        let (mut a, mut t) = (0, 0);
        for exp in common::fail2ban_expectations(&text) {
            if exp.json["match"] != true {
                continue;
            }
            let Some(want) = exp
                .json
                .get("host")
                .and_then(|h| h.as_str())
                .and_then(parse_ip)
            else {
                continue;
            };
            t += 1;
            let row = &rows[exp.line as usize - 1];
            let got = row["src_ip"].as_str().and_then(parse_ip);
            if got == Some(want) {
                a += 1;
            } else {
                eprintln!(
                    "{name} line {}: want {want}, got {got:?} ({}): {}",
                    exp.line, row["action"], exp.text
                );
            }
        }
        eprintln!("{name}: {a}/{t}");
        agree += a;
        total += t;
    }
    eprintln!(
        "fail2ban web+scan: {agree}/{total} match:true lines agree ({:.1}%)",
        100.0 * agree as f64 / total.max(1) as f64
    );
    assert!(agree as f64 >= 0.95 * total as f64, "only {agree}/{total}");
}

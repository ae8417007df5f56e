//! Web rules: `WEB_SCAN_V1` (a client collecting errors on many paths, or
//! probing paths and tools that only scanners ask for), `WEB_ATTACK_V1`
//! (SQL injection, path traversal, XSS and shellshock payloads in a request)
//! and `HTTP_AUTH_BRUTE_FORCE_V1` (repeated 401s / basic-auth failures).

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use serde_json::json;

use super::Firing;
use super::alert::{self, recommended};
use super::rules::{FiringDetail, IsOpen, RuleConfig, ctx_map, to_time};
use super::window::{Micros, Recent, secs};
use crate::event::{Action, Event};
use crate::util::{FastMap, fnv1a};

/// Paths only scanners and attack tools ask for (matched on the lower-cased,
/// percent-decoded path).
const SCANNER_PATHS: &[&str] = &[
    "/wp-login.php",
    "/wp-admin",
    "/wp-content/plugins/",
    "/xmlrpc.php",
    "/wp-config",
    "/phpmyadmin",
    "/pma/",
    "/myadmin",
    "/.env",
    "/.git/",
    "/.git",
    "/.svn",
    "/.hg/",
    "/.ds_store",
    "/.htpasswd",
    "/.htaccess",
    "/.bash_history",
    "/.bashrc",
    "/.ssh",
    "/.aws",
    "/.cache",
    "/.config",
    "/.cvs",
    "/server-status",
    "/cgi-bin/",
    "/actuator",
    "/solr/admin",
    "/vendor/phpunit",
    "/_ignition",
    "/setup.cgi",
    ".cgi",
    "/boaform",
    "/hnap1",
    "/manager/html",
    "/admin/config",
    "/adminer",
    "/shell",
    "/w00tw00t",
    "/etc/passwd",
    "/console",
    "/config.json",
    "/backup",
    ".sql",
    ".bak",
    "/id_rsa",
    "/web.config",
    "/sftp-config.json",
    "/owa/",
    "/autodiscover",
    "/administrator",
    "/+cscoe+",
    "/admin.php",
    "/phppgadmin",
    "/mysql/",
    "/sqlite/",
    "/webdav",
    "/remote/login",
];

/// Requests that only exploit kits and vulnerability scanners send: one of
/// them answered with an error is enough (web shells, CVE and technology
/// probes, the DFind scanner's calling card).
const PROBE_SIGNATURES: &[&str] = &[
    "w00tw00t",
    "/core/skin/login.aspx",
    "shell.php",
    "/c99.php",
    "/r57.php",
    "/wso.php",
    "b374k",
    "/crx/packmgr",
    "videoconfiguration.cgi",
    "/_ignition/execute-solution",
    "eval-stdin.php",
    "/hnap1",
    "/boaform",
    "/setup.cgi",
    "networkdiag.cgi",
    "/cgi-bin/luci",
    "/owa/auth/x.js",
    "/.git/config",
    "/.env",
    "/wp-config.php.bak",
    "/actuator/gateway/routes",
    "/solr/admin/cores?action=",
    "/console/login/loginform.jsp",
    "/mgmt/tm/util/bash",
    "thumb.php?src=",
    "timthumb",
    "/cache/external",
    ".php/login.php",
    "/scripts/setup.php",
    "uploadify.php",
    "/cfide/adminapi",
    "com_sun_web_ui",
];

/// User agents of scanning tools (lower-cased substring match).
const SCANNER_AGENTS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nmap",
    "masscan",
    "zgrab",
    "nuclei",
    "wpscan",
    "dirbuster",
    "gobuster",
    "ffuf",
    "acunetix",
    "nessus",
    "openvas",
    "w3af",
    "whatweb",
    "jorgee",
    "morfeus",
    "zmeu",
    "havij",
    "hydra",
    "fimap",
    "feroxbuster",
];

/// Attack payload signatures: (class, needle) on the decoded, lower-cased request.
const ATTACKS: &[(&str, &str)] = &[
    ("sql_injection", "union select"),
    ("sql_injection", "union all select"),
    ("sql_injection", "information_schema"),
    ("sql_injection", "benchmark("),
    ("sql_injection", "sleep("),
    ("sql_injection", "waitfor delay"),
    ("sql_injection", "' or '1'='1"),
    ("sql_injection", "\" or \"1\"=\"1"),
    ("sql_injection", "' or 1=1"),
    ("sql_injection", " or 1=1--"),
    ("sql_injection", ",null,null"),
    ("sql_injection", "concat(0x"),
    ("sql_injection", "extractvalue("),
    ("sql_injection", "updatexml("),
    ("sql_injection", "load_file("),
    ("sql_injection", "into outfile"),
    ("sql_injection", "pg_sleep"),
    ("path_traversal", "../"),
    ("path_traversal", "..\\"),
    ("path_traversal", "/etc/passwd"),
    ("path_traversal", "/etc/shadow"),
    ("path_traversal", "/proc/self/"),
    ("path_traversal", "c:\\windows"),
    ("path_traversal", "win.ini"),
    ("path_traversal", "boot.ini"),
    ("xss", "<script"),
    ("xss", "javascript:"),
    ("xss", "onerror="),
    ("xss", "onload="),
    ("xss", "onmouseover="),
    ("xss", "<svg"),
    ("xss", "<iframe"),
    ("xss", "document.cookie"),
    ("xss", "alert("),
    ("shellshock", "() {"),
    ("command_injection", ";wget "),
    ("command_injection", ";curl "),
    ("command_injection", "|wget "),
    ("command_injection", "$(wget"),
    ("command_injection", "/bin/sh"),
    ("command_injection", "cmd.exe"),
    ("header_injection", "\r\n"),
    ("header_injection", "\nset-cookie"),
    ("remote_file_inclusion", "=http://"),
    ("remote_file_inclusion", "=https://"),
    ("remote_file_inclusion", "=ftp://"),
    ("sql_injection", "declare @"),
    ("sql_injection", "cursor for select"),
    ("sql_injection", "now()=sysdate()"),
];

/// Search engines do not post comments: a POST with their user agent is a
/// spammer or an exploit kit in disguise.
const CRAWLER_AGENTS: &[&str] = &[
    "googlebot",
    "bingbot",
    "msnbot",
    "yandexbot",
    "baiduspider",
    "slurp",
];

/// Longest request text the attack matcher looks at.
const MAX_INSPECT: usize = 8 * 1024;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes (and, in the query, turns `+` into a space), lower-casing ASCII.
fn decode_once(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let mut in_query = false;
    while i < s.len() {
        match s[i] {
            b'?' => {
                in_query = true;
                out.push(b'?');
            }
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4 | l).to_ascii_lowercase());
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if in_query => out.push(b' '),
            c => out.push(c.to_ascii_lowercase()),
        }
        i += 1;
    }
    out
}

/// The request as an attacker meant it: decoded twice (double encoding is a
/// classic evasion), lower-cased, bounded. Plain requests (nothing encoded,
/// nothing upper-case) are returned as they are, without copying.
pub fn normalise_request(raw: &str) -> std::borrow::Cow<'_, str> {
    let cut = crate::util::truncate_at_char_boundary(raw, MAX_INSPECT);
    if !cut
        .bytes()
        .any(|b| b == b'%' || b == b'+' || b.is_ascii_uppercase())
    {
        return std::borrow::Cow::Borrowed(cut);
    }
    let once = decode_once(cut.as_bytes());
    let twice = if once.contains(&b'%') {
        decode_once(&once)
    } else {
        once
    };
    std::borrow::Cow::Owned(String::from_utf8_lossy(&twice).into_owned())
}

fn matcher(needles: impl IntoIterator<Item = &'static str>) -> aho_corasick::AhoCorasick {
    aho_corasick::AhoCorasick::new(needles).expect("static needle lists build")
}

static ATTACK_MATCHER: LazyLock<aho_corasick::AhoCorasick> =
    LazyLock::new(|| matcher(ATTACKS.iter().map(|(_, n)| *n)));
static SCANNER_PATH_MATCHER: LazyLock<aho_corasick::AhoCorasick> =
    LazyLock::new(|| matcher(SCANNER_PATHS.iter().copied()));
static PROBE_MATCHER: LazyLock<aho_corasick::AhoCorasick> =
    LazyLock::new(|| matcher(PROBE_SIGNATURES.iter().copied()));
static AGENT_MATCHER: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(SCANNER_AGENTS.iter().copied())
        .expect("static needle lists build")
});

/// The attack classes a request shows, in `ATTACKS` order, deduplicated.
pub fn attack_classes(normalised: &str) -> Vec<&'static str> {
    let mut hits: Vec<usize> = ATTACK_MATCHER
        .find_overlapping_iter(normalised)
        .map(|m| m.pattern().as_usize())
        .collect();
    if hits.is_empty() {
        return Vec::new();
    }
    hits.sort_unstable();
    let mut found: Vec<&'static str> = Vec::new();
    for i in hits {
        let class = ATTACKS[i].0;
        if !found.contains(&class) {
            found.push(class);
        }
    }
    found
}

/// The first single-shot probe signature in the request, if any.
fn probe_signature(normalised: &str) -> Option<&'static str> {
    PROBE_MATCHER
        .find(normalised)
        .map(|m| PROBE_SIGNATURES[m.pattern().as_usize()])
}

fn is_scanner_path(normalised: &str) -> bool {
    let path = normalised.split(['?', '#']).next().unwrap_or(normalised);
    SCANNER_PATH_MATCHER.is_match(path)
}

fn is_scanner_agent(agent: &str) -> bool {
    AGENT_MATCHER.is_match(agent)
}

#[derive(Debug)]
struct Client {
    /// Recent 4xx responses: (path hash, id).
    errors: Recent<(u64, Arc<str>)>,
    /// Recent requests for scanner-only paths: (path hash, id).
    probes: Recent<(u64, Arc<str>)>,
    /// Recent requests carrying a scanner user agent.
    tools: Recent<Arc<str>>,
    /// Recent authentication failures (401, basic-auth errors).
    auth_failures: Recent<Arc<str>>,
}

impl Client {
    fn new(cap: usize) -> Self {
        Client {
            errors: Recent::new(cap),
            probes: Recent::new(cap),
            tools: Recent::new(8),
            auth_failures: Recent::new(cap),
        }
    }
    fn newest(&self) -> Option<Micros> {
        [
            self.errors.newest(),
            self.probes.newest(),
            self.tools.newest(),
            self.auth_failures.newest(),
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// Distinct first elements within the window.
fn distinct<'a>(
    items: impl Iterator<Item = &'a (Micros, (u64, Arc<str>))>,
) -> (usize, Vec<String>, Micros) {
    let mut seen: Vec<u64> = Vec::new();
    let mut ids = Vec::new();
    let mut first = Micros::MAX;
    for (t, (h, id)) in items {
        first = first.min(*t);
        if !seen.contains(h) {
            seen.push(*h);
        }
        ids.push(id.to_string());
    }
    (seen.len(), ids, first)
}

/// Per-client web state, keyed by (host, client address).
#[derive(Debug, Default)]
pub struct WebRules {
    clients: FastMap<(u64, IpAddr), Client>,
}

impl WebRules {
    pub fn evict_idle(&mut self, horizon: Micros) {
        self.clients
            .retain(|_, c| c.newest().is_some_and(|t| t >= horizon));
    }

    pub fn tracked(&self) -> usize {
        self.clients.len()
    }

    pub fn observe(
        &mut self,
        cfg: &RuleConfig,
        ev: &Event,
        id: &str,
        now: Micros,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let http = ev.http.as_deref();
        let is_web = matches!(
            ev.action,
            Action::HttpRequest
                | Action::HttpError
                | Action::HttpAuthFailed
                | Action::HttpRateLimited
        );
        if !is_web {
            return;
        }
        let status = http.and_then(|h| h.status);
        let raw_path = http.and_then(|h| h.path.as_deref()).unwrap_or("");
        let agent = http.and_then(|h| h.user_agent.as_deref()).unwrap_or("");
        let normalised = normalise_request(raw_path);
        let shared: Arc<str> = Arc::from(id);
        // WEB_ATTACK_V1: one request is enough.
        let mut classes = attack_classes(&normalised);
        // A parameter pointing at a remote URL is only an inclusion attempt
        // when the target is a script and the URL names one too.
        if let Some(pos) = classes.iter().position(|c| *c == "remote_file_inclusion") {
            let script = normalised
                .split('?')
                .next()
                .is_some_and(|p| p.ends_with(".php") || p.ends_with(".cgi"));
            let payload = normalised
                .split('?')
                .nth(1)
                .is_some_and(|q| q.contains(".php") || q.contains(".txt"));
            if !(script && payload) {
                classes.remove(pos);
            }
        }
        let method = http.and_then(|h| h.method.as_deref()).unwrap_or("");
        if method == "POST" && {
            let agent_lc = agent.to_ascii_lowercase();
            CRAWLER_AGENTS.iter().any(|c| agent_lc.contains(c))
        } {
            classes.push("post_from_fake_crawler");
        }
        let shellshock = agent.contains("() {")
            || http
                .and_then(|h| h.referrer.as_deref())
                .is_some_and(|r| r.contains("() {"));
        if !classes.is_empty() || shellshock {
            let rule = alert::WEB_ATTACK;
            let (dedup_key, open) = is_open(&rule, &ev.host, None, ev.src_ip);
            let mut classes: Vec<&str> = classes;
            if shellshock && !classes.contains(&"shellshock") {
                classes.push("shellshock");
            }
            let detail = (!open).then(|| FiringDetail {
                first_seen: ev.timestamp_utc,
                evidence: vec![id.to_string()],
                count: 1,
                reasons: vec![format!(
                    "request from {} to '{}' carries {} payload: {}",
                    ev.src_ip
                        .map_or_else(|| "an unknown client".to_string(), |ip| ip.to_string()),
                    ev.host,
                    classes.join(" and "),
                    crate::util::truncate_at_char_boundary(raw_path, 200)
                )],
                context: ctx_map(json!({ "attack_classes": classes, "status": status })),
            });
            out.push(Firing {
                rule,
                dedup_key,
                user: None,
                src_ip: ev.src_ip,
                recommended_action: if ev.src_ip.is_some() {
                    recommended::BLOCK_IP
                } else {
                    recommended::INVESTIGATE
                },
                detail,
            });
        }

        // The remaining rules follow one client.
        let Some(ip) = ev.src_ip else { return };
        let cap = cfg
            .web_scan_distinct_4xx
            .max(cfg.web_scan_sensitive_paths)
            .max(cfg.http_auth_fail_threshold) as usize
            * 4;
        let client = self
            .clients
            .entry((fnv1a(ev.host.as_bytes()), ip))
            .or_insert_with(|| Client::new(cap.max(16)));
        let path_hash = fnv1a(normalised.as_bytes());
        let w = secs(cfg.web_scan_window_secs);

        // WEB_SCAN_V1: a single unmistakable probe, many 4xx on distinct paths,
        // several scanner-only paths, or a scanning tool's user agent.
        let mut scan_reason = None;
        let refused = status.is_none_or(|s| s >= 400);
        let proxy_attempt = status.is_some_and(|s| s == 400 || s == 405)
            && (method == "CONNECT"
                || normalised.starts_with("http://")
                || normalised.starts_with("https://"));
        let probe = if refused {
            probe_signature(&normalised)
        } else {
            None
        };
        if let Some(sig) = probe {
            scan_reason = Some((
                format!(
                    "{ip} requested '{}', a path only vulnerability scanners ask for ({sig})",
                    crate::util::truncate_at_char_boundary(raw_path, 100)
                ),
                vec![id.to_string()],
                now,
                1,
            ));
        } else if proxy_attempt {
            scan_reason = Some((
                format!(
                    "{ip} tried to use '{}' as an open proxy ({method} {})",
                    ev.host,
                    crate::util::truncate_at_char_boundary(raw_path, 100)
                ),
                vec![id.to_string()],
                now,
                1,
            ));
        }
        if scan_reason.is_none() && status.is_some_and(|s| (400..500).contains(&s)) {
            client.errors.push(now, (path_hash, shared.clone()));
            let (n, ids, first) = distinct(client.errors.within_latest(now, w));
            if n >= cfg.web_scan_distinct_4xx as usize {
                scan_reason = Some((
                    format!(
                        "{n} client errors (4xx) on distinct paths from {ip} within {} s (threshold {})",
                        cfg.web_scan_window_secs, cfg.web_scan_distinct_4xx
                    ),
                    ids,
                    first,
                    n,
                ));
            }
        }
        if scan_reason.is_none() && is_scanner_path(&normalised) {
            client.probes.push(now, (path_hash, shared.clone()));
            let (n, ids, first) = distinct(client.probes.within_latest(now, w));
            if n >= cfg.web_scan_sensitive_paths as usize {
                scan_reason = Some((
                    format!(
                        "{n} requests for paths only scanners ask for (e.g. '{}') from {ip} within {} s (threshold {})",
                        crate::util::truncate_at_char_boundary(raw_path, 100),
                        cfg.web_scan_window_secs,
                        cfg.web_scan_sensitive_paths
                    ),
                    ids,
                    first,
                    n,
                ));
            }
        }
        if scan_reason.is_none() && !agent.is_empty() && is_scanner_agent(agent) {
            client.tools.push(now, shared.clone());
            let ids: Vec<(Micros, String)> = client
                .tools
                .within_latest(now, w)
                .map(|(t, id)| (*t, id.to_string()))
                .collect();
            if ids.len() >= 2 {
                let first = ids[0].0;
                let n = ids.len();
                scan_reason = Some((
                    format!(
                        "{n} requests from {ip} with a scanning tool's user agent ({}) within {} s",
                        crate::util::truncate_at_char_boundary(agent, 80),
                        cfg.web_scan_window_secs
                    ),
                    ids.into_iter().map(|(_, id)| id).collect(),
                    first,
                    n,
                ));
            }
        }
        if let Some((reason, ids, first, n)) = scan_reason {
            let rule = alert::WEB_SCAN;
            let (dedup_key, open) = is_open(&rule, &ev.host, None, Some(ip));
            let detail = (!open).then(|| FiringDetail {
                first_seen: to_time(first),
                evidence: ids,
                count: n as u64,
                reasons: vec![reason],
                context: ctx_map(
                    json!({ "window_seconds": cfg.web_scan_window_secs, "distinct": n }),
                ),
            });
            out.push(Firing {
                rule,
                dedup_key,
                user: None,
                src_ip: Some(ip),
                recommended_action: recommended::BLOCK_IP,
                detail,
            });
        }

        // HTTP_AUTH_BRUTE_FORCE_V1
        if ev.action == Action::HttpAuthFailed || status == Some(401) {
            client.auth_failures.push(now, shared);
            let wa = secs(cfg.http_auth_window_secs);
            let n = client.auth_failures.count_latest(now, wa);
            if n >= cfg.http_auth_fail_threshold as usize {
                let rule = alert::HTTP_AUTH_BRUTE_FORCE;
                let user = ev.user.as_deref();
                let (dedup_key, open) = is_open(&rule, &ev.host, None, Some(ip));
                let detail = (!open).then(|| {
                    let ev_in: Vec<_> = client.auth_failures.within_latest(now, wa).collect();
                    FiringDetail {
                        first_seen: to_time(ev_in.first().map_or(now, |x| x.0)),
                        evidence: ev_in.iter().map(|x| x.1.to_string()).collect(),
                        count: n as u64,
                        reasons: vec![format!(
                            "{n} failed HTTP authentications from {ip} on '{}' within {} s{} (threshold {})",
                            ev.host,
                            cfg.http_auth_window_secs,
                            user.map(|u| format!(", last for user '{u}'")).unwrap_or_default(),
                            cfg.http_auth_fail_threshold
                        )],
                        context: ctx_map(json!({ "auth_fail_count": n, "window_seconds": cfg.http_auth_window_secs })),
                    }
                });
                out.push(Firing {
                    rule,
                    dedup_key,
                    user: None,
                    src_ip: Some(ip),
                    recommended_action: recommended::BLOCK_IP,
                    detail,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_encoded_traversal_and_sqli_are_seen() {
        assert_eq!(
            attack_classes(&normalise_request("/%252E%252E%252Ffoo1")),
            ["path_traversal"]
        );
        assert_eq!(
            attack_classes(&normalise_request("/%2fetc%2fpasswd")),
            ["path_traversal"]
        );
        assert_eq!(
            attack_classes(&normalise_request("/foo?a=%20union%20all%20select%20")),
            ["sql_injection"]
        );
        assert_eq!(
            attack_classes(&normalise_request("/q?x=%3Cscript%3Ealert(1)")),
            ["xss"]
        );
        assert!(attack_classes(&normalise_request("/index.php/nous-contacter/")).is_empty());
        assert!(attack_classes(&normalise_request("/solr/admin/info/system?wt=json")).is_empty());
        assert!(attack_classes(&normalise_request("/blog/my--post?page=2")).is_empty());
        assert_eq!(
            attack_classes(&normalise_request("/injection/%0d%0aSet-Cookie")),
            ["header_injection"]
        );
    }

    #[test]
    fn decoding_is_total() {
        for s in ["%", "%4", "%zz", "a%2", "%%%", "+%2B+"] {
            let _ = normalise_request(s);
        }
        assert_eq!(normalise_request("/%41+b?c+d"), "/a+b?c d");
    }
}

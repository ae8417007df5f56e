//! The correlation rules and their thresholds. Each rule looks at one event
//! and the windows it owns, and says whether it fires and with what evidence.
//! Defaults are the MiniSIEM seed's.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::alert::{self, RuleInfo, recommended};
use super::window::{KeyedWindows, Micros, Recent, secs};
use crate::event::{Action, Category, Event};
use crate::util::{FastMap, fnv1a, fnv1a_extend};

/// Thresholds of every rule (TOML section `[rules]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// ≥ this many `login_failed` for one host+user …
    pub brute_force_threshold: u32,
    /// … within this many seconds → BRUTE_FORCE_V1.
    pub brute_force_window_secs: u32,
    /// One src_ip: ≥ this many failures …
    pub spray_fail_threshold: u32,
    /// … over ≥ this many distinct users …
    pub spray_unique_users: u32,
    /// … within this many seconds → PASSWORD_SPRAY_V1.
    pub spray_window_secs: u32,
    /// `login_success` after ≥ this many failures of that host+user …
    pub success_prior_failures: u32,
    /// … within this many seconds → SUCCESS_AFTER_FAILURES_V1.
    pub success_window_secs: u32,
    /// More than this many events from one host …
    pub storm_threshold: u32,
    /// … within this many seconds → INGEST_STORM_V1.
    pub storm_window_secs: u32,
    /// Repeated firings of one (rule, host, user, src_ip) within this many
    /// seconds of event time update one alert instead of raising another.
    pub dedup_secs: u32,
    /// At most this many evidence ids are kept per alert (`count` stays exact).
    pub max_evidence: usize,
    /// Spray window keeps at most this many failures per source IP.
    pub spray_max_tracked: usize,
    /// One source hitting ≥ this many distinct destination ports …
    pub port_scan_distinct_ports: u32,
    /// … within this many seconds → PORT_SCAN_V1.
    pub port_scan_window_secs: u32,
    /// One client with ≥ this many 4xx on distinct paths …
    pub web_scan_distinct_4xx: u32,
    /// … or ≥ this many distinct scanner-only paths …
    pub web_scan_sensitive_paths: u32,
    /// … within this many seconds → WEB_SCAN_V1.
    pub web_scan_window_secs: u32,
    /// ≥ this many 401s / HTTP auth failures from one client …
    pub http_auth_fail_threshold: u32,
    /// … within this many seconds → HTTP_AUTH_BRUTE_FORCE_V1.
    pub http_auth_window_secs: u32,
    /// ≥ this many sudo authentication failures by one user on a host …
    pub sudo_fail_threshold: u32,
    /// … within this many seconds → SUDO_ABUSE_V1.
    pub sudo_window_secs: u32,
    /// A root shell within this many seconds of a suspicious login → SUDO_ABUSE_V1.
    pub sudo_shell_after_login_secs: u32,
    /// One account logging in to ≥ this many distinct hosts …
    pub lateral_hosts_threshold: u32,
    /// … within this many seconds → LATERAL_MOVEMENT_V1.
    pub lateral_window_secs: u32,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig {
            brute_force_threshold: 8,
            brute_force_window_secs: 60,
            spray_fail_threshold: 8,
            spray_unique_users: 5,
            spray_window_secs: 120,
            success_prior_failures: 6,
            success_window_secs: 600,
            storm_threshold: 50,
            storm_window_secs: 30,
            dedup_secs: 300,
            max_evidence: 100,
            spray_max_tracked: 256,
            port_scan_distinct_ports: 10,
            port_scan_window_secs: 60,
            web_scan_distinct_4xx: 10,
            web_scan_sensitive_paths: 3,
            web_scan_window_secs: 60,
            http_auth_fail_threshold: 5,
            http_auth_window_secs: 60,
            sudo_fail_threshold: 3,
            sudo_window_secs: 600,
            sudo_shell_after_login_secs: 600,
            lateral_hosts_threshold: 4,
            lateral_window_secs: 600,
        }
    }
}

/// Why a [`RuleConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rules.{field}: {problem}")]
pub struct RuleConfigError {
    pub field: &'static str,
    pub problem: &'static str,
}

impl RuleConfig {
    pub fn validate(&self) -> Result<(), RuleConfigError> {
        let checks: [(&'static str, u64, u64, u64); 24] = [
            (
                "brute_force_threshold",
                self.brute_force_threshold as u64,
                1,
                10_000,
            ),
            (
                "brute_force_window_secs",
                self.brute_force_window_secs as u64,
                1,
                86_400,
            ),
            (
                "spray_fail_threshold",
                self.spray_fail_threshold as u64,
                1,
                10_000,
            ),
            (
                "spray_unique_users",
                self.spray_unique_users as u64,
                1,
                10_000,
            ),
            (
                "spray_window_secs",
                self.spray_window_secs as u64,
                1,
                86_400,
            ),
            (
                "success_prior_failures",
                self.success_prior_failures as u64,
                1,
                10_000,
            ),
            (
                "success_window_secs",
                self.success_window_secs as u64,
                1,
                86_400,
            ),
            ("storm_threshold", self.storm_threshold as u64, 1, 1_000_000),
            (
                "storm_window_secs",
                self.storm_window_secs as u64,
                1,
                86_400,
            ),
            ("dedup_secs", self.dedup_secs as u64, 0, 604_800),
            ("max_evidence", self.max_evidence as u64, 1, 100_000),
            (
                "spray_max_tracked",
                self.spray_max_tracked as u64,
                1,
                100_000,
            ),
            (
                "port_scan_distinct_ports",
                self.port_scan_distinct_ports as u64,
                1,
                65_535,
            ),
            (
                "port_scan_window_secs",
                self.port_scan_window_secs as u64,
                1,
                86_400,
            ),
            (
                "web_scan_distinct_4xx",
                self.web_scan_distinct_4xx as u64,
                1,
                10_000,
            ),
            (
                "web_scan_sensitive_paths",
                self.web_scan_sensitive_paths as u64,
                1,
                10_000,
            ),
            (
                "web_scan_window_secs",
                self.web_scan_window_secs as u64,
                1,
                86_400,
            ),
            (
                "http_auth_fail_threshold",
                self.http_auth_fail_threshold as u64,
                1,
                10_000,
            ),
            (
                "http_auth_window_secs",
                self.http_auth_window_secs as u64,
                1,
                86_400,
            ),
            (
                "sudo_fail_threshold",
                self.sudo_fail_threshold as u64,
                1,
                10_000,
            ),
            ("sudo_window_secs", self.sudo_window_secs as u64, 1, 86_400),
            (
                "sudo_shell_after_login_secs",
                self.sudo_shell_after_login_secs as u64,
                1,
                86_400,
            ),
            (
                "lateral_hosts_threshold",
                self.lateral_hosts_threshold as u64,
                2,
                10_000,
            ),
            (
                "lateral_window_secs",
                self.lateral_window_secs as u64,
                1,
                86_400,
            ),
        ];
        for (field, v, lo, hi) in checks {
            if v < lo || v > hi {
                return Err(RuleConfigError {
                    field,
                    problem: "out of range",
                });
            }
        }
        if (self.spray_max_tracked as u64)
            < self.spray_fail_threshold.max(self.spray_unique_users) as u64
        {
            return Err(RuleConfigError {
                field: "spray_max_tracked",
                problem: "must be ≥ the spray thresholds",
            });
        }
        Ok(())
    }

    /// The longest window any rule looks back over.
    pub fn horizon(&self) -> Micros {
        let m = self
            .brute_force_window_secs
            .max(self.spray_window_secs)
            .max(self.success_window_secs)
            .max(self.storm_window_secs)
            .max(self.port_scan_window_secs)
            .max(self.web_scan_window_secs)
            .max(self.http_auth_window_secs)
            .max(self.sudo_window_secs)
            .max(self.sudo_shell_after_login_secs)
            .max(self.lateral_window_secs);
        secs(m)
    }
}

/// How late (behind the newest event time) an event may arrive and still
/// see the window state it would have seen in order: the gateway's replay
/// window.
pub const LATE_SLACK_SECS: u32 = 120;

/// The de-duplication key of an alert's (rule, host, user, src_ip).
///
/// `key` is FNV-1a of them: deterministic, so alert ids (derived from it)
/// are the same in a replay as live. It is 64 bits of a hash whose inputs
/// include text an attacker writes (user names in failed logins), so two
/// identities can be made to share it (a birthday search of ~2^32 FNV
/// hashes, choosing both names). `check` is a hash of the same identity
/// under a key secret to this process: an open alert is updated only by a
/// firing whose `check` matches too, so a collision crafted in `key` cannot
/// fold one host's attack into another's alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupKey {
    pub key: u64,
    pub check: u64,
}

/// One rule's decision to fire on an event.
#[derive(Debug)]
pub struct Firing {
    pub rule: RuleInfo,
    /// De-duplication key of (rule, host, user, src_ip).
    pub dedup_key: DedupKey,
    pub user: Option<String>,
    pub src_ip: Option<IpAddr>,
    pub recommended_action: &'static str,
    /// Built only when the firing opens a new alert; `None` when an alert
    /// for the same key is already open and this firing just updates it.
    pub detail: Option<FiringDetail>,
}

/// The explanation and evidence of a firing that opens an alert.
#[derive(Debug)]
pub struct FiringDetail {
    pub first_seen: DateTime<Utc>,
    pub evidence: Vec<String>,
    pub count: u64,
    pub reasons: Vec<String>,
    pub context: Map<String, Value>,
}

/// Gives a rule the de-duplication key of (rule, host, user, src_ip) and
/// whether an alert is already open for it, so it can skip building evidence.
pub type IsOpen<'a> = &'a dyn Fn(&RuleInfo, &str, Option<&str>, Option<IpAddr>) -> (DedupKey, bool);

/// Numbers the seed reports with each correlation decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CorrelationContext {
    pub storm_count: u32,
    pub storm_window_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_failed_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brute_window_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spray_fail_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spray_unique_users: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spray_window_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_prior_fail_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_window_seconds: Option<u32>,
}

/// The windows the rules own. Keys are 64-bit hashes of the entity so the
/// hot path never allocates to look one up.
#[derive(Debug)]
pub struct RuleState {
    cfg: RuleConfig,
    /// Per host: recent event times (ingest storm).
    storm: KeyedWindows<u64, ()>,
    /// Per host+user: recent `login_failed` ids (brute force, success-after).
    failures: KeyedWindows<u64, (Arc<str>, Option<IpAddr>)>,
    /// Per src_ip: recent failures and the users they named (password spray).
    /// Boxed for the same reason as the policy's bans: one per failing
    /// address, so doublings must not move the states themselves.
    spray: FastMap<IpAddr, Box<SprayState>>,
    web: super::web::WebRules,
    ports: super::network::PortScanRule,
    accounts: super::accounts::AccountRules,
}

pub(super) fn host_user_key(host: &str, user: &str) -> u64 {
    fnv1a_extend(fnv1a_extend(fnv1a(host.as_bytes()), &[0]), user.as_bytes())
}

/// Microseconds back to a timestamp (window times come from real events).
pub(super) fn to_time(m: Micros) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or_default()
}

fn is_login_failed(ev: &Event) -> bool {
    ev.action == Action::LoginFailed && ev.category == Category::Auth
}

fn is_login_success(ev: &Event) -> bool {
    ev.action == Action::LoginSuccess && ev.category == Category::Auth
}

impl RuleState {
    pub fn new(cfg: RuleConfig) -> Self {
        let fail_cap = cfg.brute_force_threshold.max(cfg.success_prior_failures) as usize;
        RuleState {
            storm: KeyedWindows::new(cfg.storm_threshold as usize + 1),
            failures: KeyedWindows::new(fail_cap),
            spray: FastMap::default(),
            web: Default::default(),
            ports: Default::default(),
            accounts: Default::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &RuleConfig {
        &self.cfg
    }

    /// Forgets keys no rule can look back to from event time `now`: the
    /// state of each per-key window once its newest entry is older than
    /// that window plus [`LATE_SLACK_SECS`] (so an event up to that late
    /// still sees what it would have). The web and account rules, whose
    /// state serves windows of several lengths, keep it for the longest.
    ///
    /// Per window, not all for the longest (600 s): an address that fails
    /// one login keeps its spray state for 4 minutes instead of 10, which
    /// is most of the memory a distributed attack costs.
    pub fn evict_idle(&mut self, now: Micros) {
        let c = &self.cfg;
        let past = |window_secs: u32| now - secs(window_secs) - secs(LATE_SLACK_SECS);
        self.storm.evict_idle(past(c.storm_window_secs));
        self.failures
            .evict_idle(past(c.brute_force_window_secs.max(c.success_window_secs)));
        let spray = past(c.spray_window_secs);
        self.spray
            .retain(|_, st| st.fails.newest().is_some_and(|t| t >= spray));
        self.ports.evict_idle(past(c.port_scan_window_secs));
        let longest = now - c.horizon() - secs(LATE_SLACK_SECS);
        self.web.evict_idle(longest);
        self.accounts.evict_idle(longest);
    }

    /// (spray keys, brute-force/success-after keys) held.
    #[cfg(test)]
    pub(crate) fn auth_keys(&self) -> (usize, usize) {
        (self.spray.len(), self.failures.keys())
    }

    /// Number of keys currently tracked (for memory reporting).
    pub fn tracked_keys(&self) -> usize {
        self.storm.keys()
            + self.failures.keys()
            + self.spray.len()
            + self.web.tracked()
            + self.ports.tracked()
            + self.accounts.tracked()
    }

    /// Feeds one occurrence (`id`) of `ev` to every rule.
    pub fn observe(
        &mut self,
        ev: &Event,
        id: &str,
        ctx: &mut CorrelationContext,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let now = ev.timestamp_utc.timestamp_micros();
        self.ingest_storm(ev, id, now, ctx, is_open, out);
        if is_login_failed(ev) {
            // One shared copy of the id serves both windows.
            let shared: Arc<str> = Arc::from(id);
            if let Some(user) = ev.user.as_deref() {
                self.brute_force(ev, user, &shared, now, ctx, is_open, out);
            }
            if let Some(ip) = ev.src_ip {
                self.password_spray(ev, ip, &shared, now, ctx, is_open, out);
            }
        } else if is_login_success(ev) {
            if let Some(user) = ev.user.as_deref() {
                let before = out.len();
                self.success_after_failures(ev, user, id, now, ctx, is_open, out);
                if out.len() > before {
                    self.accounts.mark_taken_over(&ev.host, user, now);
                }
            }
        }
        match ev.category {
            Category::Web => self.web.observe(&self.cfg, ev, id, now, is_open, out),
            Category::Network => self.ports.observe(&self.cfg, ev, id, now, is_open, out),
            _ => self.accounts.observe(&self.cfg, ev, id, now, is_open, out),
        }
    }

    fn ingest_storm(
        &mut self,
        ev: &Event,
        id: &str,
        now: Micros,
        ctx: &mut CorrelationContext,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let c = &self.cfg;
        let w = secs(c.storm_window_secs);
        let r = self.storm.push(fnv1a(ev.host.as_bytes()), now, ());
        let n = r.count_latest(now, w) as u32;
        ctx.storm_count = n;
        ctx.storm_window_seconds = c.storm_window_secs;
        if n > c.storm_threshold {
            let rule = alert::INGEST_STORM;
            let (dedup_key, open) = is_open(&rule, &ev.host, None, None);
            let detail = (!open).then(|| FiringDetail {
                first_seen: to_time(r.within_latest(now, w).next().map_or(now, |x| x.0)),
                evidence: vec![id.to_string()],
                count: n as u64,
                reasons: vec![format!(
                    "{n} events from host '{}' within {} s (more than {} is a storm)",
                    ev.host, c.storm_window_secs, c.storm_threshold
                )],
                context: ctx_map(json!({
                    "storm_count": n, "window_seconds": c.storm_window_secs, "threshold": c.storm_threshold,
                })),
            });
            out.push(Firing {
                rule,
                dedup_key,
                user: None,
                src_ip: None,
                recommended_action: recommended::RATE_LIMIT_HOST,
                detail,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn brute_force(
        &mut self,
        ev: &Event,
        user: &str,
        id: &Arc<str>,
        now: Micros,
        ctx: &mut CorrelationContext,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let c = &self.cfg;
        let w = secs(c.brute_force_window_secs);
        let r = self
            .failures
            .push(host_user_key(&ev.host, user), now, (id.clone(), ev.src_ip));
        let n = r.count_latest(now, w) as u32;
        ctx.login_failed_count = Some(n);
        ctx.brute_window_seconds = Some(c.brute_force_window_secs);
        if n >= c.brute_force_threshold {
            let rule = alert::BRUTE_FORCE;
            let (dedup_key, open) = is_open(&rule, &ev.host, Some(user), ev.src_ip);
            let detail = (!open).then(|| {
                let ev_in: Vec<_> = r.within_latest(now, w).collect();
                // A distributed attack on one account: say so, rather than
                // pin every failure on the address that crossed the line.
                let mut sources: Vec<IpAddr> = ev_in.iter().filter_map(|x| x.1.1).collect();
                sources.sort_unstable();
                sources.dedup();
                let src = match (ev.src_ip, sources.len()) {
                    (Some(ip), 0 | 1) => format!(" from {ip}"),
                    (Some(ip), k) => format!(" from {k} addresses (the latest {ip})"),
                    (None, 0) => String::new(),
                    (None, k) => format!(" from {k} address{}", if k == 1 { "" } else { "es" }),
                };
                FiringDetail {
                    first_seen: to_time(ev_in.first().map_or(now, |x| x.0)),
                    evidence: ev_in.iter().map(|x| x.1.0.to_string()).collect(),
                    count: n as u64,
                    reasons: vec![format!(
                        "{n} failed logins for user '{user}' on host '{}' within {} s{src} (threshold {})",
                        ev.host, c.brute_force_window_secs, c.brute_force_threshold
                    )],
                    context: ctx_map(json!({
                        "login_failed_count": n, "window_seconds": c.brute_force_window_secs,
                        "threshold": c.brute_force_threshold, "distinct_src_ips": sources.len(),
                    })),
                }
            });
            out.push(Firing {
                rule,
                dedup_key,
                user: Some(user.to_string()),
                src_ip: ev.src_ip,
                recommended_action: if ev.src_ip.is_some() {
                    recommended::BLOCK_IP
                } else {
                    recommended::INVESTIGATE
                },
                detail,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn password_spray(
        &mut self,
        ev: &Event,
        ip: IpAddr,
        id: &Arc<str>,
        now: Micros,
        ctx: &mut CorrelationContext,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let c = &self.cfg;
        let w = secs(c.spray_window_secs);
        let user_hash = ev.user.as_deref().map(|u| fnv1a(u.as_bytes()));
        let cap = c.spray_max_tracked;
        let st = self
            .spray
            .entry(ip)
            .or_insert_with(|| Box::new(SprayState::new(cap)));
        st.push(now, id.clone(), user_hash, cap);
        let end = st.fails.end(now);
        let fails = st.fails.count_within(end, w) as u32;
        let distinct = st.distinct_users(end, w) as u32;
        ctx.spray_fail_count = Some(fails);
        ctx.spray_unique_users = Some(distinct);
        ctx.spray_window_seconds = Some(c.spray_window_secs);
        if fails >= c.spray_fail_threshold && distinct >= c.spray_unique_users {
            let rule = alert::PASSWORD_SPRAY;
            let (dedup_key, open) = is_open(&rule, &ev.host, None, Some(ip));
            let detail = (!open).then(|| {
                let in_window: Vec<_> = st.fails.within(end, w).collect();
                FiringDetail {
                    first_seen: to_time(in_window.first().map_or(now, |x| x.0)),
                    evidence: in_window.iter().map(|x| x.1.to_string()).collect(),
                    count: fails as u64,
                    reasons: vec![format!(
                        "{fails} failed logins over {distinct} distinct users from {ip} within {} s (thresholds {} failures, {} users)",
                        c.spray_window_secs, c.spray_fail_threshold, c.spray_unique_users
                    )],
                    context: ctx_map(json!({
                        "spray_fail_count": fails, "spray_unique_users": distinct,
                        "window_seconds": c.spray_window_secs,
                        "fail_threshold": c.spray_fail_threshold, "unique_users_threshold": c.spray_unique_users,
                    })),
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

    #[allow(clippy::too_many_arguments)]
    fn success_after_failures(
        &mut self,
        ev: &Event,
        user: &str,
        id: &str,
        now: Micros,
        ctx: &mut CorrelationContext,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let c = &self.cfg;
        let w = secs(c.success_window_secs);
        let Some(r) = self.failures.get(&host_user_key(&ev.host, user)) else {
            ctx.success_prior_fail_count = Some(0);
            ctx.success_window_seconds = Some(c.success_window_secs);
            return;
        };
        let prior: Vec<_> = r.within(now, w).collect();
        let n = prior.len() as u32;
        ctx.success_prior_fail_count = Some(n);
        ctx.success_window_seconds = Some(c.success_window_secs);
        if n >= c.success_prior_failures {
            let rule = alert::SUCCESS_AFTER_FAILURES;
            let (dedup_key, open) = is_open(&rule, &ev.host, Some(user), ev.src_ip);
            let detail = (!open).then(|| {
                let mut evidence: Vec<String> = prior.iter().map(|x| x.1.0.to_string()).collect();
                evidence.push(id.to_string());
                let src = ev.src_ip.map(|ip| format!(" from {ip}")).unwrap_or_default();
                FiringDetail {
                    first_seen: to_time(prior.first().map_or(now, |x| x.0)),
                    evidence,
                    count: n as u64 + 1,
                    reasons: vec![format!(
                        "successful login for user '{user}' on host '{}'{src} after {n} failed logins within {} s (threshold {}): the account may be compromised",
                        ev.host, c.success_window_secs, c.success_prior_failures
                    )],
                    context: ctx_map(json!({
                        "success_prior_fail_count": n, "window_seconds": c.success_window_secs,
                        "threshold": c.success_prior_failures,
                    })),
                }
            });
            out.push(Firing {
                rule,
                dedup_key,
                user: Some(user.to_string()),
                src_ip: ev.src_ip,
                recommended_action: recommended::INVESTIGATE_ACCOUNT,
                detail,
            });
        }
    }
}

/// Password-spray memory for one source address.
#[derive(Debug)]
struct SprayState {
    fails: Recent<Arc<str>>,
    /// (user hash, newest failure naming that user); bounded like `fails`.
    users: Vec<(u64, Micros)>,
}

impl SprayState {
    fn new(cap: usize) -> Self {
        SprayState {
            fails: Recent::new(cap),
            users: Vec::new(),
        }
    }

    fn push(&mut self, at: Micros, id: Arc<str>, user: Option<u64>, cap: usize) {
        self.fails.push(at, id);
        let Some(user) = user else { return };
        if let Some(entry) = self.users.iter_mut().find(|(u, _)| *u == user) {
            entry.1 = entry.1.max(at);
        } else if self.users.len() < cap {
            self.users.push((user, at));
        } else if let Some(oldest) = self.users.iter_mut().min_by_key(|(_, t)| *t) {
            // Full: the user seen longest ago makes room.
            *oldest = (user, at);
        }
    }

    fn distinct_users(&self, now: Micros, window: Micros) -> usize {
        let cutoff = now - window;
        self.users
            .iter()
            .filter(|(_, t)| *t >= cutoff && *t <= now)
            .count()
    }
}

pub(super) fn ctx_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

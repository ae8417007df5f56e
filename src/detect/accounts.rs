//! Account rules after the credential attack: `SUDO_ABUSE_V1` (refused or
//! repeatedly failing sudo, or a root shell right after a suspicious login)
//! and `LATERAL_MOVEMENT_V1` (one account logging in to many hosts, or an
//! account that was just taken over appearing on other hosts).

use std::sync::Arc;

use serde_json::json;

use super::Firing;
use super::alert::{self, recommended};
use super::rules::{FiringDetail, IsOpen, RuleConfig, ctx_map, host_user_key, to_time};
use super::window::{Micros, Recent, secs};
use crate::event::{Action, Event};
use crate::util::{FastMap, fnv1a};

/// Commands that open a privileged shell.
fn is_shell(command: &str) -> bool {
    let first = command.split_ascii_whitespace().next().unwrap_or("");
    let prog = first.rsplit('/').next().unwrap_or(first);
    matches!(
        prog,
        "bash" | "sh" | "zsh" | "dash" | "ksh" | "fish" | "su" | "tcsh" | "csh"
    )
}

#[derive(Debug, Default)]
pub struct AccountRules {
    /// Per host+user: recent sudo failures.
    sudo_failures: FastMap<u64, Recent<Arc<str>>>,
    /// Per user: recent successful logins as (host hash, id).
    logins: FastMap<u64, Recent<(u64, Arc<str>)>>,
    /// Per user: (host hash, time) of the last success-after-failures.
    taken_over: FastMap<u64, (u64, Micros)>,
    /// Per host+user: time of the last suspicious login.
    suspicious_login: FastMap<u64, Micros>,
}

impl AccountRules {
    pub fn evict_idle(&mut self, horizon: Micros) {
        self.sudo_failures
            .retain(|_, r| r.newest().is_some_and(|t| t >= horizon));
        self.logins
            .retain(|_, r| r.newest().is_some_and(|t| t >= horizon));
        self.taken_over.retain(|_, (_, t)| *t >= horizon);
        self.suspicious_login.retain(|_, t| *t >= horizon);
    }

    pub fn tracked(&self) -> usize {
        self.sudo_failures.len()
            + self.logins.len()
            + self.taken_over.len()
            + self.suspicious_login.len()
    }

    /// Called when SUCCESS_AFTER_FAILURES fired for (host, user): the login is
    /// suspicious and the account may be in an attacker's hands.
    pub fn mark_taken_over(&mut self, host: &str, user: &str, now: Micros) {
        self.taken_over
            .insert(fnv1a(user.as_bytes()), (fnv1a(host.as_bytes()), now));
        self.suspicious_login.insert(host_user_key(host, user), now);
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
        let Some(user) = ev.user.as_deref() else {
            return;
        };
        match ev.action {
            Action::SudoDenied | Action::SudoFailed | Action::SudoCommand => {
                self.sudo(cfg, ev, user, id, now, is_open, out)
            }
            Action::LoginSuccess => self.lateral(cfg, ev, user, id, now, is_open, out),
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sudo(
        &mut self,
        cfg: &RuleConfig,
        ev: &Event,
        user: &str,
        id: &str,
        now: Micros,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let rule = alert::SUDO_ABUSE;
        let key = host_user_key(&ev.host, user);
        let w = secs(cfg.sudo_window_secs);
        let command = ev
            .attributes
            .get("command")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let (reason, evidence, first, count) = match ev.action {
            Action::SudoDenied => (
                format!(
                    "user '{user}' on '{}' tried sudo and was refused ({})",
                    ev.host,
                    ev.attributes
                        .get("reason")
                        .and_then(|v| v.as_str())
                        .unwrap_or("not allowed")
                ),
                vec![id.to_string()],
                now,
                1,
            ),
            Action::SudoFailed => {
                let r = self
                    .sudo_failures
                    .entry(key)
                    .or_insert_with(|| Recent::new(cfg.sudo_fail_threshold as usize * 2));
                r.push(now, Arc::from(id));
                let n = r.count_latest(now, w);
                if n < cfg.sudo_fail_threshold as usize {
                    return;
                }
                let in_w: Vec<_> = r.within_latest(now, w).collect();
                (
                    format!(
                        "{n} failed sudo authentications by '{user}' on '{}' within {} s (threshold {})",
                        ev.host, cfg.sudo_window_secs, cfg.sudo_fail_threshold
                    ),
                    in_w.iter().map(|x| x.1.to_string()).collect(),
                    in_w.first().map_or(now, |x| x.0),
                    n as u64,
                )
            }
            _ => {
                let recent_takeover = self.suspicious_login.get(&key).is_some_and(|t| {
                    now - *t <= secs(cfg.sudo_shell_after_login_secs) && now >= *t
                });
                if !(recent_takeover && is_shell(command)) {
                    return;
                }
                (
                    format!(
                        "'{user}' opened a root shell ({command}) on '{}' right after a suspicious login",
                        ev.host
                    ),
                    vec![id.to_string()],
                    now,
                    1,
                )
            }
        };
        let (dedup_key, open) = is_open(&rule, &ev.host, Some(user), None);
        let detail = (!open).then(|| FiringDetail {
            first_seen: to_time(first),
            evidence,
            count,
            reasons: vec![reason],
            context: ctx_map(json!({ "window_seconds": cfg.sudo_window_secs, "command": command })),
        });
        out.push(Firing {
            rule,
            dedup_key,
            user: Some(user.to_string()),
            src_ip: None,
            recommended_action: recommended::INVESTIGATE_ACCOUNT,
            detail,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn lateral(
        &mut self,
        cfg: &RuleConfig,
        ev: &Event,
        user: &str,
        id: &str,
        now: Micros,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let rule = alert::LATERAL_MOVEMENT;
        let w = secs(cfg.lateral_window_secs);
        let uk = fnv1a(user.as_bytes());
        let hk = fnv1a(ev.host.as_bytes());
        let cap = (cfg.lateral_hosts_threshold as usize * 4).max(16);
        let r = self.logins.entry(uk).or_insert_with(|| Recent::new(cap));
        r.push(now, (hk, Arc::from(id)));
        let in_w: Vec<_> = r.within_latest(now, w).collect();
        let mut hosts: Vec<u64> = in_w.iter().map(|x| x.1.0).collect();
        hosts.sort_unstable();
        hosts.dedup();
        let takeover = self
            .taken_over
            .get(&uk)
            .filter(|(h, t)| *h != hk && now >= *t && now - *t <= w)
            .copied();
        let reason = if hosts.len() >= cfg.lateral_hosts_threshold as usize {
            format!(
                "account '{user}' logged in to {} distinct hosts within {} s (threshold {})",
                hosts.len(),
                cfg.lateral_window_secs,
                cfg.lateral_hosts_threshold
            )
        } else if takeover.is_some() {
            format!(
                "account '{user}', just taken over on another host (success after failures), logged in to '{}'",
                ev.host
            )
        } else {
            return;
        };
        let (dedup_key, open) = is_open(&rule, &ev.host, Some(user), None);
        let detail = (!open).then(|| FiringDetail {
            first_seen: to_time(in_w.first().map_or(now, |x| x.0)),
            evidence: in_w.iter().map(|x| x.1.1.to_string()).collect(),
            count: in_w.len() as u64,
            reasons: vec![reason],
            context: ctx_map(json!({ "distinct_hosts": hosts.len(), "window_seconds": cfg.lateral_window_secs, "after_takeover": takeover.is_some() })),
        });
        out.push(Firing {
            rule,
            dedup_key,
            user: Some(user.to_string()),
            src_ip: ev.src_ip,
            recommended_action: recommended::QUARANTINE_HOST,
            detail,
        });
    }
}

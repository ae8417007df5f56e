//! The response policy (MiniSIEM seed semantics, on event time):
//!
//! 1. severity below the floor → THROTTLE `below_severity_floor`
//! 2. host quarantined → BLOCK `host_quarantined`
//! 3. cooldown running → BLOCK `cooldown_active`
//! 4. correlation BLOCK involving a quarantine reason (brute force) →
//!    quarantine the host, BLOCK `quarantine_activated`
//! 5. other correlation BLOCK → cooldown, BLOCK `correlation_block`
//! 6. correlation THROTTLE → cooldown, THROTTLE `suspicious_cooldown_set`
//! 7. else ALLOW `ok`
//!
//! Beyond the seed: alerts recommending `BLOCK_IP` ban their source address
//! for a set time; quarantine holds until an analyst releases the host, and a
//! released host is not re-quarantined by evidence from before the release.
//! Every change is queued as a [`StateChange`] for the store to persist.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::detect::{Decision, Verdict};
use crate::event::Event;
use crate::util::FastMap;

/// Policy settings (TOML section `[policy]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Events below this severity are throttled without further checks.
    pub severity_floor: u8,
    /// Cooldown set on a host after a THROTTLE or non-quarantine BLOCK.
    pub cooldown_secs: u32,
    /// Correlation reasons that escalate a BLOCK to quarantine.
    pub quarantine_on: Vec<String>,
    /// How long a `BLOCK_IP` recommendation bans the source address.
    pub ban_secs: u32,
    /// How long an analyst's ban from the console lasts.
    pub analyst_ban_secs: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            severity_floor: 0,
            cooldown_secs: 120,
            quarantine_on: vec!["brute_force_suspected".into()],
            ban_secs: 3600,
            analyst_ban_secs: 86_400,
        }
    }
}

/// Why a quarantine is in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quarantine {
    pub since_utc: DateTime<Utc>,
    pub reason: String,
    pub alert_id: Option<String>,
}

/// Response state of one host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    pub cooldown_until_utc: Option<DateTime<Utc>>,
    pub quarantine: Option<Quarantine>,
    /// Evidence at or before this time cannot quarantine the host again.
    pub released_through_utc: Option<DateTime<Utc>>,
}

/// A timed ban of a source address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ban {
    pub ip: IpAddr,
    pub since_utc: DateTime<Utc>,
    pub until_utc: DateTime<Utc>,
    pub reason: String,
    pub alert_id: Option<String>,
}

/// An analyst's (or the system's) administrative action, for the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminAction {
    pub at_utc: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: String,
}

/// A change the store must persist.
#[derive(Clone, Debug, PartialEq)]
pub enum StateChange {
    Host {
        host: String,
        state: HostState,
    },
    Ban(Ban),
    Unban {
        ip: IpAddr,
    },
    /// A host whose state has nothing in force any more (pruned).
    ForgetHost {
        host: String,
    },
    Admin(AdminAction),
}

/// The policy's answer for one event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyDecision {
    pub decision: Decision,
    pub reasons: Vec<&'static str>,
    pub context: PolicyContext,
}

/// The seed's policy context. Its `correlation_reasons` are the verdict's
/// `reasons`; responses that need them take them from the verdict rather
/// than copying them into every decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PolicyContext {
    pub correlation_decision: Decision,
    pub severity: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_until_utc: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_set_until_utc: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_ip_banned_until_utc: Option<DateTime<Utc>>,
}

/// Errors of administrative actions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("host {0} is neither quarantined nor in a cooldown")]
    NothingToRelease(String),
    #[error("{0} is not banned")]
    NotBanned(IpAddr),
    #[error("a reason is required")]
    ReasonRequired,
    #[error("the acting user must be named")]
    ActorRequired,
}

/// A ban request raised by an alert that recommends `BLOCK_IP`.
#[derive(Clone, Debug, PartialEq)]
pub struct BanRequest {
    pub ip: IpAddr,
    pub alert_id: std::sync::Arc<str>,
    pub rule_id: &'static str,
}

/// An active ban is extended only when that moves its expiry by at least
/// this much, so a long attack does not rewrite the ban on every event.
const BAN_EXTEND_GRANULARITY_SECS: i64 = 60;

#[derive(Debug, Default)]
pub struct Policy {
    cfg: PolicyConfig,
    /// Keyed by host name stored inline (up to 24 bytes), so the lookup
    /// every event makes compares it without a miss on a heap string.
    hosts: FastMap<compact_str::CompactString, HostState>,
    /// Boxed: a distributed attack leaves hundreds of thousands, and each
    /// doubling of a map of ~120-byte entries took fresh memory by the
    /// hundred megabytes under the engine's lock (stalls of ~0.3 s).
    bans: FastMap<IpAddr, Box<Ban>>,
    changes: Vec<StateChange>,
    /// Event time of the last prune of expired in-memory state.
    last_prune: Option<DateTime<Utc>>,
}

/// Hosts with nothing in force for this long are dropped from memory and
/// the store. Expired bans go at the first prune after they end: they
/// decide nothing, and a distributed attack leaves one per address (kept
/// an hour, they were a large share of its memory).
const PRUNE_AFTER_SECS: i64 = 3600;

impl Policy {
    pub fn new(cfg: PolicyConfig) -> Self {
        Policy {
            cfg,
            ..Default::default()
        }
    }

    /// Restores persisted state (after a restart).
    pub fn restore(
        &mut self,
        hosts: impl IntoIterator<Item = (String, HostState)>,
        bans: impl IntoIterator<Item = Ban>,
    ) {
        self.hosts
            .extend(hosts.into_iter().map(|(h, s)| (h.into(), s)));
        self.bans
            .extend(bans.into_iter().map(|b| (b.ip, Box::new(b))));
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    pub fn host_state(&self, host: &str) -> HostState {
        self.hosts.get(host).cloned().unwrap_or_default()
    }

    pub fn quarantined_hosts(&self) -> Vec<(&str, &Quarantine)> {
        let mut v: Vec<_> = self
            .hosts
            .iter()
            .filter_map(|(h, s)| s.quarantine.as_ref().map(|q| (h.as_str(), q)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Bans in force at `now`.
    pub fn active_bans(&self, now: DateTime<Utc>) -> Vec<&Ban> {
        let mut v: Vec<&Ban> = self
            .bans
            .values()
            .map(|b| &**b)
            .filter(|b| b.until_utc > now)
            .collect();
        v.sort_by_key(|b| b.ip);
        v
    }

    /// Changes since the last call, for the store.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.changes)
    }

    fn set_host(&mut self, host: &str, state: HostState) {
        self.changes.push(StateChange::Host {
            host: host.to_string(),
            state: state.clone(),
        });
        self.hosts.insert(host.into(), state);
    }

    /// Decides for one event given its correlation verdict, and applies any
    /// bans the event's alerts ask for.
    pub fn evaluate(
        &mut self,
        ev: &Event,
        verdict: &Verdict,
        bans: &[BanRequest],
    ) -> PolicyDecision {
        let now = ev.timestamp_utc;
        self.maybe_prune(now);
        for b in bans {
            self.ban(b, now);
        }
        let mut context = PolicyContext {
            correlation_decision: verdict.decision,
            severity: ev.severity,
            src_ip_banned_until_utc: ev
                .src_ip
                .and_then(|ip| self.bans.get(&ip))
                .filter(|b| b.until_utc > now)
                .map(|b| b.until_utc),
            ..Default::default()
        };
        let decide = |d, r: &'static str, context| PolicyDecision {
            decision: d,
            reasons: vec![r],
            context,
        };
        if ev.severity < self.cfg.severity_floor {
            return decide(Decision::Throttle, "below_severity_floor", context);
        }
        if let Some(current) = self.hosts.get(ev.host.as_str()) {
            if current.quarantine.is_some() {
                return decide(Decision::Block, "host_quarantined", context);
            }
            if let Some(until) = current.cooldown_until_utc.filter(|u| now < *u) {
                context.cooldown_until_utc = Some(until);
                return decide(Decision::Block, "cooldown_active", context);
            }
        }
        if verdict.decision == Decision::Allow {
            return decide(Decision::Allow, "ok", context);
        }
        let mut st = self
            .hosts
            .get(ev.host.as_str())
            .cloned()
            .unwrap_or_default();
        match verdict.decision {
            Decision::Block => {
                let escalate = verdict
                    .reasons
                    .iter()
                    .any(|r| self.cfg.quarantine_on.iter().any(|q| q == r));
                let released_after = st.released_through_utc.is_some_and(|r| now <= r);
                if escalate && !released_after {
                    // Name the credential-attack alert, not the storm that came with it.
                    let alert_id = verdict
                        .alerts
                        .iter()
                        .find(|a| a.rule_id != crate::detect::alert::INGEST_STORM.id)
                        .or(verdict.alerts.first())
                        .map(|a| a.alert_id.to_string());
                    st.quarantine = Some(Quarantine {
                        since_utc: now,
                        reason: verdict.reasons.join(","),
                        alert_id,
                    });
                    self.set_host(&ev.host, st);
                    return decide(Decision::Block, "quarantine_activated", context);
                }
                let until = now + Duration::seconds(self.cfg.cooldown_secs as i64);
                st.cooldown_until_utc = Some(until);
                context.cooldown_set_until_utc = Some(until);
                self.set_host(&ev.host, st);
                decide(Decision::Block, "correlation_block", context)
            }
            Decision::Throttle => {
                let until = now + Duration::seconds(self.cfg.cooldown_secs as i64);
                st.cooldown_until_utc = Some(until);
                context.cooldown_set_until_utc = Some(until);
                self.set_host(&ev.host, st);
                decide(Decision::Throttle, "suspicious_cooldown_set", context)
            }
            Decision::Allow => decide(Decision::Allow, "ok", context),
        }
    }

    /// Keeps memory bounded on long replays: forgets bans that expired and
    /// hosts with nothing in force, an hour (event time) after the fact,
    /// and tells the store to forget them too (else its tables would grow
    /// forever and every restart would load all of it back).
    fn maybe_prune(&mut self, now: DateTime<Utc>) {
        if self
            .last_prune
            .is_some_and(|p| now - p < Duration::seconds(60))
        {
            return;
        }
        self.last_prune = Some(now);
        let horizon = now - Duration::seconds(PRUNE_AFTER_SECS);
        let changes = &mut self.changes;
        self.bans.retain(|ip, b| {
            let keep = b.until_utc > now;
            if !keep {
                changes.push(StateChange::Unban { ip: *ip });
            }
            keep
        });
        self.hosts.retain(|host, h| {
            let keep = h.quarantine.is_some()
                || h.cooldown_until_utc.is_some_and(|c| c > horizon)
                || h.released_through_utc.is_some_and(|r| r > horizon);
            if !keep {
                changes.push(StateChange::ForgetHost {
                    host: host.to_string(),
                });
            }
            keep
        });
    }

    fn ban(&mut self, req: &BanRequest, now: DateTime<Utc>) {
        let until = now + Duration::seconds(self.cfg.ban_secs as i64);
        let ban = match self.bans.get_mut(&req.ip) {
            Some(b) if b.until_utc > now => {
                if until - b.until_utc < Duration::seconds(BAN_EXTEND_GRANULARITY_SECS) {
                    return;
                }
                b.until_utc = until;
                Ban::clone(b)
            }
            _ => {
                let b = Ban {
                    ip: req.ip,
                    since_utc: now,
                    until_utc: until,
                    reason: req.rule_id.to_string(),
                    alert_id: Some(req.alert_id.to_string()),
                };
                self.bans.insert(req.ip, Box::new(b.clone()));
                b
            }
        };
        self.changes.push(StateChange::Ban(ban));
    }

    fn audit(
        &mut self,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        target: String,
        reason: &str,
    ) -> AdminAction {
        let a = AdminAction {
            at_utc: at,
            actor: actor.into(),
            action: action.into(),
            target,
            reason: reason.into(),
        };
        self.changes.push(StateChange::Admin(a.clone()));
        a
    }

    fn check_admin(reason: &str, by: &str) -> Result<(), PolicyError> {
        if reason.trim().is_empty() {
            return Err(PolicyError::ReasonRequired);
        }
        if by.trim().is_empty() {
            return Err(PolicyError::ActorRequired);
        }
        Ok(())
    }

    /// Lifts a host's quarantine and its cooldown (a host in a cooldown
    /// alone is released too: the console lists it beside the quarantined
    /// ones). Evidence up to `at` will not quarantine it again; a new
    /// suspicious event still sets a new cooldown, as any would.
    pub fn release(
        &mut self,
        host: &str,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<AdminAction, PolicyError> {
        Self::check_admin(reason, by)?;
        let mut st = self.hosts.get(host).cloned().unwrap_or_default();
        if st.quarantine.is_none() && st.cooldown_until_utc.is_none() {
            return Err(PolicyError::NothingToRelease(host.to_string()));
        }
        st.quarantine = None;
        st.cooldown_until_utc = None;
        st.released_through_utc = Some(at);
        self.set_host(host, st);
        Ok(self.audit(at, by, "release_host", host.to_string(), reason))
    }

    /// Bans an address on an analyst's word, for `secs` seconds from `at`
    /// (an existing ban is extended, never shortened).
    pub fn ban_ip(
        &mut self,
        ip: IpAddr,
        secs: u32,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
        alert_id: Option<&str>,
    ) -> Result<AdminAction, PolicyError> {
        Self::check_admin(reason, by)?;
        let until = at + Duration::seconds(secs as i64);
        let ban = match self.bans.get(&ip) {
            Some(b) if b.until_utc >= until => Ban::clone(b),
            Some(b) if b.until_utc > at => Ban {
                until_utc: until,
                ..Ban::clone(b)
            },
            _ => Ban {
                ip,
                since_utc: at,
                until_utc: until,
                reason: format!("analyst: {}", reason.trim()),
                alert_id: alert_id.map(str::to_string),
            },
        };
        self.bans.insert(ip, Box::new(ban.clone()));
        self.changes.push(StateChange::Ban(ban));
        Ok(self.audit(at, by, "ban_ip", ip.to_string(), reason))
    }

    /// Quarantines a host on an analyst's word; it stays quarantined until
    /// released.
    pub fn quarantine_host(
        &mut self,
        host: &str,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
        alert_id: Option<&str>,
    ) -> Result<AdminAction, PolicyError> {
        Self::check_admin(reason, by)?;
        let mut st = self.hosts.get(host).cloned().unwrap_or_default();
        if st.quarantine.is_none() {
            st.quarantine = Some(Quarantine {
                since_utc: at,
                reason: format!("analyst: {}", reason.trim()),
                alert_id: alert_id.map(str::to_string),
            });
            self.set_host(host, st);
        }
        Ok(self.audit(at, by, "quarantine_host", host.to_string(), reason))
    }

    /// Every host with state, sorted by name.
    pub fn hosts(&self) -> Vec<(&str, &HostState)> {
        let mut v: Vec<_> = self.hosts.iter().map(|(h, s)| (h.as_str(), s)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Lifts a ban.
    pub fn unban(
        &mut self,
        ip: IpAddr,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<AdminAction, PolicyError> {
        Self::check_admin(reason, by)?;
        if self.bans.remove(&ip).is_none() {
            return Err(PolicyError::NotBanned(ip));
        }
        self.changes.push(StateChange::Unban { ip });
        Ok(self.audit(at, by, "unban_ip", ip.to_string(), reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{AlertRef, Verdict};
    use chrono::TimeZone;
    use std::sync::Arc;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + s, 0).unwrap()
    }

    fn ev(at: i64, severity: u8) -> Event {
        let mut e = Event::login_failed(
            format!("e{at}"),
            t(at),
            "web-1",
            "root",
            "203.0.113.9".parse().ok(),
        );
        e.severity = severity;
        e
    }

    fn verdict(decision: Decision, reasons: &[&'static str]) -> Verdict {
        Verdict {
            decision,
            reasons: reasons.to_vec(),
            alerts: vec![AlertRef {
                alert_id: Arc::from("al-1"),
                rule_id: "BRUTE_FORCE_V1",
                recommended_action: "BLOCK_IP",
                src_ip: None,
                new: true,
                dedup_key: 1,
            }],
            ..Default::default()
        }
    }

    const BLOCK_BF: &[&str] = &["ingest_storm", "brute_force_suspected"];

    #[test]
    fn seed_order_of_decisions() {
        let mut p = Policy::new(PolicyConfig {
            severity_floor: 3,
            ..Default::default()
        });
        let low = p.evaluate(&ev(0, 2), &verdict(Decision::Block, BLOCK_BF), &[]);
        assert_eq!(
            (low.decision, low.reasons[0]),
            (Decision::Throttle, "below_severity_floor")
        );
        let ok = p.evaluate(&ev(1, 5), &Verdict::default(), &[]);
        assert_eq!((ok.decision, ok.reasons[0]), (Decision::Allow, "ok"));
        let thr = p.evaluate(
            &ev(2, 5),
            &verdict(Decision::Throttle, &["brute_force_suspected"]),
            &[],
        );
        assert_eq!(
            (thr.decision, thr.reasons[0]),
            (Decision::Throttle, "suspicious_cooldown_set")
        );
        assert_eq!(thr.context.cooldown_set_until_utc, Some(t(122)));
        let cool = p.evaluate(&ev(3, 5), &Verdict::default(), &[]);
        assert_eq!(
            (cool.decision, cool.reasons[0]),
            (Decision::Block, "cooldown_active")
        );
        assert_eq!(cool.context.cooldown_until_utc, Some(t(122)));
        // After the cooldown, a storm + brute force quarantines.
        let q = p.evaluate(&ev(200, 5), &verdict(Decision::Block, BLOCK_BF), &[]);
        assert_eq!(
            (q.decision, q.reasons[0]),
            (Decision::Block, "quarantine_activated")
        );
        let held = p.evaluate(&ev(10_000, 5), &Verdict::default(), &[]);
        assert_eq!(
            (held.decision, held.reasons[0]),
            (Decision::Block, "host_quarantined")
        );
        assert_eq!(p.quarantined_hosts()[0].1.alert_id.as_deref(), Some("al-1"));
    }

    #[test]
    fn block_without_quarantine_reason_sets_cooldown() {
        let mut p = Policy::new(PolicyConfig::default());
        let d = p.evaluate(
            &ev(0, 5),
            &verdict(
                Decision::Block,
                &["ingest_storm", "password_spray_suspected"],
            ),
            &[],
        );
        assert_eq!(
            (d.decision, d.reasons[0]),
            (Decision::Block, "correlation_block")
        );
        assert!(p.host_state("web-1").quarantine.is_none());
        assert!(p.host_state("web-1").cooldown_until_utc.is_some());
    }

    #[test]
    fn release_lifts_a_cooldown_alone_and_a_new_suspicious_event_sets_one_again() {
        let mut p = Policy::new(PolicyConfig::default());
        let thr = p.evaluate(
            &ev(0, 5),
            &verdict(Decision::Throttle, &["password_spray_suspected"]),
            &[],
        );
        assert_eq!(thr.reasons[0], "suspicious_cooldown_set");
        let cool = p.evaluate(&ev(1, 5), &Verdict::default(), &[]);
        assert_eq!(cool.reasons[0], "cooldown_active");
        p.take_changes();
        let a = p
            .release("web-1", "spray was a password manager sync", "alice", t(2))
            .unwrap();
        assert_eq!(a.action, "release_host");
        assert_eq!(p.host_state("web-1").cooldown_until_utc, None);
        assert!(p
            .take_changes()
            .iter()
            .any(|c| matches!(c, StateChange::Host { host, state } if host == "web-1" && state.cooldown_until_utc.is_none())));
        let ok = p.evaluate(&ev(3, 5), &Verdict::default(), &[]);
        assert_eq!((ok.decision, ok.reasons[0]), (Decision::Allow, "ok"));
        let again = p.evaluate(
            &ev(4, 5),
            &verdict(Decision::Throttle, &["password_spray_suspected"]),
            &[],
        );
        assert_eq!(again.reasons[0], "suspicious_cooldown_set");
        // Released and nothing set since: nothing to release.
        p.release("web-1", "again", "alice", t(5)).unwrap();
        assert_eq!(
            p.release("web-1", "again", "alice", t(6)),
            Err(PolicyError::NothingToRelease("web-1".into()))
        );
    }

    #[test]
    fn release_needs_reason_and_is_audited_and_sticks_against_old_evidence() {
        let mut p = Policy::new(PolicyConfig::default());
        p.evaluate(&ev(0, 5), &verdict(Decision::Block, BLOCK_BF), &[]);
        p.take_changes();
        assert_eq!(
            p.release("web-1", " ", "alice", t(10)),
            Err(PolicyError::ReasonRequired)
        );
        assert_eq!(
            p.release("web-1", "checked", "", t(10)),
            Err(PolicyError::ActorRequired)
        );
        assert_eq!(
            p.release("db-1", "checked", "alice", t(10)),
            Err(PolicyError::NothingToRelease("db-1".into()))
        );
        let a = p
            .release("web-1", "false alarm, owner confirmed", "alice", t(10))
            .unwrap();
        assert_eq!(
            (a.actor.as_str(), a.action.as_str(), a.target.as_str()),
            ("alice", "release_host", "web-1")
        );
        let changes = p.take_changes();
        assert!(changes.iter().any(
            |c| matches!(c, StateChange::Admin(x) if x.reason == "false alarm, owner confirmed")
        ));
        // The same evidence replayed does not quarantine again …
        let d = p.evaluate(&ev(5, 5), &verdict(Decision::Block, BLOCK_BF), &[]);
        assert_ne!(d.reasons[0], "quarantine_activated");
        // … new evidence after the release does.
        let d = p.evaluate(&ev(500, 5), &verdict(Decision::Block, BLOCK_BF), &[]);
        assert_eq!(d.reasons[0], "quarantine_activated");
    }

    #[test]
    fn bans_expire_extend_and_lift() {
        let mut p = Policy::new(PolicyConfig {
            ban_secs: 600,
            ..Default::default()
        });
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let req = BanRequest {
            ip,
            alert_id: Arc::from("al-1"),
            rule_id: "BRUTE_FORCE_V1",
        };
        p.evaluate(&ev(0, 5), &Verdict::default(), std::slice::from_ref(&req));
        assert_eq!(p.active_bans(t(599)).len(), 1);
        assert!(
            p.active_bans(t(600)).is_empty(),
            "expired at since + ban_secs"
        );
        p.evaluate(&ev(300, 5), &Verdict::default(), std::slice::from_ref(&req));
        assert_eq!(
            p.active_bans(t(899))[0].until_utc,
            t(900),
            "extended by a later firing"
        );
        let d = p.evaluate(&ev(301, 5), &Verdict::default(), &[]);
        assert_eq!(d.context.src_ip_banned_until_utc, Some(t(900)));
        assert_eq!(
            p.unban("198.51.100.1".parse().unwrap(), "x", "bob", t(302)),
            Err(PolicyError::NotBanned("198.51.100.1".parse().unwrap()))
        );
        p.unban(ip, "customer VPN", "bob", t(302)).unwrap();
        assert!(p.active_bans(t(302)).is_empty());
    }

    #[test]
    fn expired_state_is_pruned_from_memory() {
        let mut p = Policy::new(PolicyConfig {
            ban_secs: 60,
            ..Default::default()
        });
        for i in 0..1000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
            let req = BanRequest {
                ip,
                alert_id: Arc::from("al"),
                rule_id: "BRUTE_FORCE_V1",
            };
            p.evaluate(
                &ev(i as i64, 5),
                &verdict(Decision::Throttle, &["brute_force_suspected"]),
                &[req],
            );
        }
        // A ban leaves memory at the first prune (once a minute of event
        // time) after it ends: only the last ~2 minutes' worth remain.
        assert!(
            (60..=120).contains(&p.bans.len()),
            "{} bans held",
            p.bans.len()
        );
        let mut changes = p.take_changes();
        p.evaluate(&ev(10_000, 5), &Verdict::default(), &[]);
        assert!(p.bans.is_empty());
        assert!(p.hosts.is_empty(), "cooldown long over, nothing in force");
        // The store is told to forget them too.
        changes.extend(p.take_changes());
        let unbans = changes
            .iter()
            .filter(|c| matches!(c, StateChange::Unban { .. }))
            .count();
        assert_eq!(unbans, 1000);
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, StateChange::ForgetHost { host } if host == "web-1")),
            "{changes:?}"
        );
    }

    #[test]
    fn analyst_ban_and_quarantine_are_audited_and_need_a_reason() {
        let mut p = Policy::new(PolicyConfig::default());
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            p.ban_ip(ip, 600, " ", "ana", t(0), None),
            Err(PolicyError::ReasonRequired)
        );
        let a = p
            .ban_ip(ip, 600, "scanner", "ana", t(0), Some("al-9"))
            .unwrap();
        assert_eq!(
            (a.action.as_str(), a.target.as_str()),
            ("ban_ip", "198.51.100.7")
        );
        let ban = p.active_bans(t(1))[0].clone();
        assert_eq!(ban.until_utc, t(600));
        assert_eq!(ban.alert_id.as_deref(), Some("al-9"));
        // A shorter ban does not shorten it; a longer one extends it.
        p.ban_ip(ip, 60, "again", "ana", t(10), None).unwrap();
        assert_eq!(p.active_bans(t(11))[0].until_utc, t(600));
        p.ban_ip(ip, 6000, "longer", "ana", t(10), None).unwrap();
        assert_eq!(p.active_bans(t(11))[0].until_utc, t(6010));

        p.quarantine_host("db-1", "lateral movement", "ana", t(20), Some("al-9"))
            .unwrap();
        let q = p.host_state("db-1").quarantine.unwrap();
        assert_eq!(q.reason, "analyst: lateral movement");
        let audits: Vec<_> = p
            .take_changes()
            .into_iter()
            .filter_map(|c| match c {
                StateChange::Admin(a) => Some(a.action),
                _ => None,
            })
            .collect();
        assert_eq!(audits, ["ban_ip", "ban_ip", "ban_ip", "quarantine_host"]);
        p.release("db-1", "cleaned", "ana", t(30)).unwrap();
        assert!(p.host_state("db-1").quarantine.is_none());
    }
}

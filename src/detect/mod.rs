//! Detection: correlation rules over event-time windows, alert
//! de-duplication, and the per-event correlation verdict (the seed's
//! ALLOW / THROTTLE / BLOCK). Pure: the wall clock is passed in only to
//! stamp `created_time_utc`; every decision uses event time.

pub mod accounts;
pub mod alert;
pub mod network;
pub mod rules;
pub mod web;
pub mod window;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::event::Event;
use crate::util::{FastMap, fnv1a, fnv1a_extend};
pub use alert::{Alert, AlertStatus, RuleInfo};
use rules::RuleState;
pub use rules::{CorrelationContext, Firing, FiringDetail, RuleConfig, RuleConfigError};

/// Context key set when an alert lists fewer evidence ids than its `count`.
pub const EVIDENCE_TRUNCATED: &str = "evidence_truncated";

/// The correlation decision for one event (seed semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
pub enum Decision {
    #[default]
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "THROTTLE")]
    Throttle,
    #[serde(rename = "BLOCK")]
    Block,
}

impl Decision {
    /// The wire name (what it serialises to).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "ALLOW",
            Decision::Throttle => "THROTTLE",
            Decision::Block => "BLOCK",
        }
    }
}

/// What one alert did on an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertRef {
    pub alert_id: Arc<str>,
    pub rule_id: &'static str,
    pub recommended_action: &'static str,
    pub src_ip: Option<std::net::IpAddr>,
    /// `true` when this event opened the alert, `false` when it updated one.
    pub new: bool,
    /// The de-duplication key the alert is open under (for lookups).
    #[serde(skip)]
    pub dedup_key: u64,
}

/// The result of correlating one event.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    pub decision: Decision,
    pub reasons: Vec<&'static str>,
    pub context: CorrelationContext,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertRef>,
}

impl Verdict {
    pub fn has_reason(&self, reason: &str) -> bool {
        self.reasons.contains(&reason)
    }
}

#[derive(Debug)]
struct OpenAlert {
    alert: Alert,
    /// The alert id, shared with the verdicts that mention it.
    id: Arc<str>,
    /// Event time at which the de-duplication window closes.
    closes_at: DateTime<Utc>,
    /// Whether a later event changed it after it opened (count, last seen,
    /// evidence): an alert that only opened is final as first stored.
    updated: bool,
    /// [`rules::DedupKey::check`] of the identity it is open for.
    check: u64,
}

/// An alert whose de-duplication window closed, and whether it changed
/// after it opened.
#[derive(Debug)]
pub struct Closed {
    pub alert: Alert,
    pub updated: bool,
}

/// Stateful detector for one shard of the event stream.
#[derive(Debug)]
pub struct Detector {
    rules: RuleState,
    /// Boxed: an alert is ~350 bytes inline, and a distributed attack
    /// opens hundreds of thousands; each doubling of the map moved all of
    /// them under the engine's lock (~0.8 s stalls at 500k). Boxed, it
    /// moves pointers.
    open: FastMap<u64, Box<OpenAlert>>,
    closed: Vec<Closed>,
    watermark: Option<DateTime<Utc>>,
    /// Event time (µs) of the last sweep.
    last_sweep: Option<i64>,
    firings: Vec<Firing>,
    /// The secret key of [`rules::DedupKey::check`].
    check_key: std::collections::hash_map::RandomState,
}

impl Detector {
    pub fn new(cfg: RuleConfig) -> Self {
        Detector {
            rules: RuleState::new(cfg),
            open: FastMap::default(),
            closed: Vec::new(),
            watermark: None,
            last_sweep: None,
            firings: Vec::new(),
            check_key: Default::default(),
        }
    }

    pub fn config(&self) -> &RuleConfig {
        self.rules.config()
    }

    /// Newest event time seen.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.watermark
    }

    /// Correlates one event (all of its `repeat` occurrences). `wall_now` only
    /// stamps `created_time_utc` on alerts this event opens.
    pub fn process(&mut self, ev: &Event, wall_now: DateTime<Utc>) -> Verdict {
        let mut verdict = Verdict::default();
        self.process_into(ev, wall_now, &mut verdict);
        verdict
    }

    /// [`Detector::process`] into a caller-owned verdict, whose buffers are
    /// reused (the hot path of a scan allocates nothing for quiet events).
    pub fn process_into(&mut self, ev: &Event, wall_now: DateTime<Utc>, verdict: &mut Verdict) {
        verdict.decision = Decision::Allow;
        verdict.reasons.clear();
        verdict.alerts.clear();
        verdict.context = CorrelationContext::default();
        if ev.time_is_inferred() {
            // Without a real time, windows would see every such line at one
            // instant and invent storms and sprays.
            return;
        }
        let ts = ev.timestamp_utc;
        if self.watermark.is_none_or(|w| ts > w) {
            self.watermark = Some(ts);
        }
        self.maybe_sweep();
        let repeat = ev.repeat.max(1);
        for k in 0..repeat {
            let id_owned;
            let id = if k == 0 {
                ev.event_id.as_str()
            } else {
                id_owned = format!("{}#{}", ev.event_id, k + 1);
                id_owned.as_str()
            };
            let mut firings = std::mem::take(&mut self.firings);
            {
                let open = &self.open;
                let check_key = &self.check_key;
                let is_open = |rule: &RuleInfo,
                               host: &str,
                               user: Option<&str>,
                               ip: Option<std::net::IpAddr>| {
                    let key = rules::DedupKey {
                        key: Self::dedup_key(rule.id, host, user, ip),
                        check: std::hash::BuildHasher::hash_one(
                            check_key,
                            (rule.id, host, user, ip),
                        ),
                    };
                    let open = open
                        .get(&key.key)
                        .is_some_and(|o| o.check == key.check && ts < o.closes_at);
                    (key, open)
                };
                self.rules
                    .observe(ev, id, &mut verdict.context, &is_open, &mut firings);
            }
            for f in firings.drain(..) {
                if !verdict.reasons.contains(&f.rule.reason) {
                    verdict.reasons.push(f.rule.reason);
                }
                let r = self.record(ev, id, f, wall_now);
                if let Some(existing) = verdict.alerts.iter_mut().find(|a| a.alert_id == r.alert_id)
                {
                    existing.new |= r.new;
                } else {
                    verdict.alerts.push(r);
                }
            }
            self.firings = firings;
        }
        let storm = verdict.has_reason(alert::INGEST_STORM.reason);
        let credential_attack = verdict.has_reason(alert::BRUTE_FORCE.reason)
            || verdict.has_reason(alert::PASSWORD_SPRAY.reason);
        verdict.decision = if storm && credential_attack {
            Decision::Block
        } else if !verdict.reasons.is_empty() {
            Decision::Throttle
        } else {
            Decision::Allow
        };
    }

    fn dedup_key(
        rule: &str,
        host: &str,
        user: Option<&str>,
        src_ip: Option<std::net::IpAddr>,
    ) -> u64 {
        let mut h = fnv1a(rule.as_bytes());
        for part in [host, user.unwrap_or("")] {
            h = fnv1a_extend(fnv1a_extend(h, &[0]), part.as_bytes());
        }
        match src_ip {
            Some(std::net::IpAddr::V4(v4)) => fnv1a_extend(h, &v4.octets()),
            Some(std::net::IpAddr::V6(v6)) => fnv1a_extend(h, &v6.octets()),
            None => h,
        }
    }

    /// Opens a new alert or folds the firing into the open one for its key.
    fn record(&mut self, ev: &Event, id: &str, f: Firing, wall_now: DateTime<Utc>) -> AlertRef {
        let ts = ev.timestamp_utc;
        let rules::DedupKey { key, check } = f.dedup_key;
        let max_evidence = self.rules.config().max_evidence;
        let aref = |alert_id: Arc<str>, new| AlertRef {
            alert_id,
            rule_id: f.rule.id,
            recommended_action: f.recommended_action,
            src_ip: f.src_ip,
            new,
            dedup_key: key,
        };
        if let Some(open) = self.open.get_mut(&key) {
            // Another identity under the same key (a crafted collision)
            // closes the open alert rather than folding into it.
            if open.check == check && ts < open.closes_at {
                open.updated = true;
                let a = &mut open.alert;
                a.count += 1;
                if ts > a.last_seen_utc {
                    a.last_seen_utc = ts;
                }
                // Each occurrence has its own id, so no duplicate check is needed.
                if a.evidence.len() < max_evidence {
                    a.evidence.push(id.to_string());
                } else if a.count <= a.evidence.len() as u64 + 1
                    && !a.context.contains_key(EVIDENCE_TRUNCATED)
                {
                    // Marked when the list first overflows (or at opening,
                    // below); past that the context is not searched again
                    // for every event an alert folds in.
                    a.context.insert(EVIDENCE_TRUNCATED.into(), true.into());
                }
                return aref(open.id.clone(), false);
            }
            if let Some(old) = self.open.remove(&key) {
                self.closed.push(old.closed());
            }
        }
        // The rule builds detail whenever no alert is open for the key.
        let d = f.detail.unwrap_or_else(|| rules::FiringDetail {
            first_seen: ts,
            evidence: vec![id.to_string()],
            count: 1,
            reasons: vec![f.rule.reason.to_string()],
            context: Default::default(),
        });
        let mut evidence = d.evidence;
        evidence.truncate(max_evidence);
        let alert_id = {
            let h = fnv1a_extend(
                key,
                &d.first_seen
                    .timestamp_nanos_opt()
                    .unwrap_or_default()
                    .to_le_bytes(),
            );
            let h = fnv1a_extend(
                h,
                &ts.timestamp_nanos_opt().unwrap_or_default().to_le_bytes(),
            );
            // Led by event time, so ids sort by time and the store's alert
            // key grows at its right edge instead of dirtying a random
            // page per new alert.
            format!(
                "al-{:011x}-{h:016x}",
                ts.timestamp_millis().clamp(0, 0xfff_ffff_ffff)
            )
        };
        let mut context = d.context;
        context.insert(
            "dedup_window_seconds".into(),
            self.rules.config().dedup_secs.into(),
        );
        if d.count > evidence.len() as u64 {
            // `count` stays exact; only some of the events are listed.
            context.insert(EVIDENCE_TRUNCATED.into(), true.into());
        }
        let alert = Alert {
            alert_id: alert_id.clone(),
            rule_id: f.rule.id.to_string(),
            host: ev.host.clone(),
            severity: f.rule.severity,
            confidence: f.rule.confidence(),
            risk_score: f.rule.risk_score(),
            created_time_utc: wall_now,
            first_seen_utc: d.first_seen,
            last_seen_utc: ts,
            count: d.count,
            user: f.user.clone(),
            src_ip: f.src_ip,
            reasons: d.reasons,
            context,
            evidence,
            recommended_action: f.recommended_action.to_string(),
            mitre: f.rule.mitre.iter().map(|m| m.to_string()).collect(),
            status: AlertStatus::Open,
        };
        let closes_at = ts + Duration::seconds(self.rules.config().dedup_secs as i64);
        let id: Arc<str> = alert_id.into();
        self.open.insert(
            key,
            Box::new(OpenAlert {
                alert,
                id: id.clone(),
                closes_at,
                updated: false,
                check,
            }),
        );
        aref(id, true)
    }

    /// The current state of an open alert (a hash lookup: the live engine
    /// asks for every alert an event touched).
    pub fn open_alert(&self, r: &AlertRef) -> Option<&Alert> {
        self.open
            .get(&r.dedup_key)
            .filter(|o| o.id == r.alert_id)
            .map(|o| &o.alert)
    }

    /// Drops idle window keys and closes alerts whose de-duplication window
    /// has passed, at most once per minute of event time.
    fn maybe_sweep(&mut self) {
        let Some(now) = self.watermark else { return };
        let now_us = now.timestamp_micros();
        if self.last_sweep.is_some_and(|s| now_us - s < 60_000_000) {
            return;
        }
        self.last_sweep = Some(now_us);
        self.rules.evict_idle(now_us);
        let expired: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, o)| o.closes_at <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(o) = self.open.remove(&k) {
                self.closed.push(o.closed());
            }
        }
    }

    /// Alerts whose de-duplication window has closed since the last call,
    /// in a stable order (first seen, then id).
    pub fn take_closed(&mut self) -> Vec<Alert> {
        let mut out: Vec<Alert> = std::mem::take(&mut self.closed)
            .into_iter()
            .map(|c| c.alert)
            .collect();
        sort_alerts(&mut out);
        out
    }

    /// Like [`take_closed`](Self::take_closed), saying of each whether it
    /// changed after it opened (the live engine stores only those again).
    pub fn take_closed_marked(&mut self) -> Vec<Closed> {
        let mut out = std::mem::take(&mut self.closed);
        out.sort_by(|a, b| alert_order(&a.alert, &b.alert));
        out
    }

    /// Closes every open alert (end of input) and returns all not yet taken.
    pub fn finish(&mut self) -> Vec<Alert> {
        let open: Vec<Closed> = self.open.drain().map(|(_, o)| o.closed()).collect();
        self.closed.extend(open);
        self.take_closed()
    }

    /// Window keys and open alerts held (bounded-memory checks).
    pub fn tracked(&self) -> (usize, usize) {
        (self.rules.tracked_keys(), self.open.len())
    }
}

/// Stable alert order: first seen, then rule, then id.
pub fn sort_alerts(alerts: &mut [Alert]) {
    alerts.sort_by(alert_order);
}

fn alert_order(a: &Alert, b: &Alert) -> std::cmp::Ordering {
    (a.first_seen_utc, &a.rule_id, &a.alert_id).cmp(&(b.first_seen_utc, &b.rule_id, &b.alert_id))
}

impl OpenAlert {
    fn closed(self) -> Closed {
        Closed {
            alert: self.alert,
            updated: self.updated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn failure(at: i64, host: &str, user: &str, ip: &str) -> Event {
        let ts = Utc.timestamp_opt(1_780_000_000 + at, 0).unwrap();
        Event::login_failed(format!("e-{at}-{user}"), ts, host, user, ip.parse().ok())
    }

    #[test]
    fn a_firing_whose_key_collides_with_another_identity_opens_its_own_alert() {
        // Two identities under one FNV key (as a crafted pair of user names
        // would make), told apart by the secret check.
        let mut d = Detector::new(RuleConfig::default());
        let firing = |check| Firing {
            rule: alert::BRUTE_FORCE,
            dedup_key: rules::DedupKey { key: 42, check },
            user: None,
            src_ip: None,
            recommended_action: "block_source_ip",
            detail: None,
        };
        let now = Utc::now();
        let a_ev = failure(0, "host-a", "alice", "198.51.100.1");
        let a = d.record(&a_ev, "ev-a1", firing(1), now);
        let a2 = d.record(&a_ev, "ev-a2", firing(1), now);
        assert!(a.new && !a2.new, "the same identity folds into its alert");
        assert_eq!(a2.alert_id, a.alert_id);
        let b_ev = failure(1, "host-b", "mallory", "198.51.100.2");
        let b = d.record(&b_ev, "ev-b1", firing(2), now);
        assert!(b.new, "another identity opens its own alert");
        assert_ne!(b.alert_id, a.alert_id);
        let closed = d.take_closed();
        assert_eq!(closed.len(), 1);
        assert_eq!(
            (
                closed[0].host.as_str(),
                closed[0].count,
                &closed[0].evidence[..]
            ),
            ("host-a", 2, &["ev-a1".to_string(), "ev-a2".to_string()][..]),
            "host-a's alert keeps only its own events"
        );
        let open = d.open_alert(&b).unwrap();
        assert_eq!((open.host.as_str(), open.count), ("host-b", 1));
    }

    #[test]
    fn repeated_firings_update_one_alert_within_dedup_window() {
        let mut d = Detector::new(RuleConfig::default());
        let now = Utc::now();
        for i in 0..20 {
            d.process(&failure(i, "h", "root", "192.0.2.1"), now);
        }
        assert_eq!(d.tracked().1, 1, "one open alert");
        // 301 s after the alert opened (at the 8th failure, t=7), a new one opens.
        for i in 0..8 {
            d.process(&failure(308 + i, "h", "root", "192.0.2.1"), now);
        }
        let alerts = d.finish();
        assert_eq!(alerts.len(), 2);
        assert_eq!(
            alerts[0].count,
            8 + 12,
            "the 12 later failures were folded in"
        );
        assert_eq!(alerts[0].evidence.len(), 20);
        assert_eq!(alerts[1].count, 8);
        // Ids lead with the event time (ms, hex) of the firing that opened
        // the alert, so they sort by time (the store's key grows at its
        // right edge), and replaying the same events gives the same ids.
        let opened = |at: i64| format!("al-{:011x}-", (1_780_000_000 + at) * 1000);
        assert!(
            alerts[0].alert_id.starts_with(&opened(7)),
            "{}",
            alerts[0].alert_id
        );
        assert!(
            alerts[1].alert_id.starts_with(&opened(315)),
            "{}",
            alerts[1].alert_id
        );
        assert_eq!(alerts[0].alert_id.len(), "al-".len() + 11 + 1 + 16);
        assert!(alerts[0].alert_id < alerts[1].alert_id);
        let mut again = Detector::new(RuleConfig::default());
        for i in (0..20).chain(308..316) {
            again.process(&failure(i, "h", "root", "192.0.2.1"), now);
        }
        let ids = |a: &[Alert]| a.iter().map(|a| a.alert_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&again.finish()), ids(&alerts));
    }

    #[test]
    fn an_alert_says_its_evidence_is_truncated_once_the_list_is_full() {
        let cfg = RuleConfig {
            max_evidence: 10,
            ..RuleConfig::default()
        };
        let now = Utc::now();
        // Brute force opens at the 8th failure; the list holds 10 ids.
        for (failures, truncated) in [(10, false), (11, true), (200, true)] {
            let mut d = Detector::new(cfg.clone());
            for i in 0..failures {
                d.process(&failure(i, "h", "root", "192.0.2.1"), now);
            }
            let a = d
                .finish()
                .into_iter()
                .find(|a| a.rule_id == "BRUTE_FORCE_V1")
                .expect("brute force fired");
            assert_eq!(a.count, failures as u64, "{failures}");
            assert_eq!(a.evidence.len(), 10, "{failures}");
            assert_eq!(
                a.context.get(EVIDENCE_TRUNCATED),
                truncated.then_some(&serde_json::Value::Bool(true)),
                "{failures}"
            );
        }
    }

    #[test]
    fn brute_force_says_how_many_addresses_the_failures_came_from() {
        let now = Utc::now();
        let reason = |ips: &dyn Fn(i64) -> String| {
            let mut d = Detector::new(RuleConfig::default());
            for i in 0..8 {
                d.process(&failure(i, "h", "root", &ips(i)), now);
            }
            let a = d
                .finish()
                .into_iter()
                .find(|a| a.rule_id == "BRUTE_FORCE_V1");
            let a = a.expect("brute force fired");
            (
                a.reasons[0].clone(),
                a.context.get("distinct_src_ips").cloned(),
            )
        };
        let (one, n1) = reason(&|_| "192.0.2.1".into());
        assert!(one.contains("within 60 s from 192.0.2.1 ("), "{one}");
        assert_eq!(n1, Some(1.into()));
        // One account, eight addresses: not "from" the last one alone.
        let (many, n8) = reason(&|i| format!("198.51.100.{}", i + 1));
        assert!(
            many.contains("from 8 addresses (the latest 198.51.100.8)"),
            "{many}"
        );
        assert_eq!(n8, Some(8.into()));
    }

    #[test]
    fn late_failure_completes_a_brute_force() {
        // Seven failures at t=1..7, then the eighth arrives late stamped t=0
        // (a whole-second BSD stamp next to millisecond RFC 5424 ones).
        let mut d = Detector::new(RuleConfig::default());
        let now = Utc::now();
        for i in 1..8 {
            d.process(&failure(i, "h", "root", "192.0.2.1"), now);
        }
        let v = d.process(&failure(0, "h", "root", "192.0.2.1"), now);
        assert!(v.has_reason("brute_force_suspected"), "{v:?}");
        assert_eq!(v.context.login_failed_count, Some(8));
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let mut d = Detector::new(RuleConfig::default());
        let now = Utc::now();
        for u in 0..10_000 {
            d.process(&failure(0, "h", &format!("user{u}"), "192.0.2.1"), now);
        }
        assert!(d.tracked().0 >= 10_000);
        d.process(&failure(3_600, "h", "late", "192.0.2.2"), now);
        assert!(
            d.tracked().0 <= 4,
            "only the late event's keys remain, got {}",
            d.tracked().0
        );
    }

    #[test]
    fn each_window_keeps_its_state_only_as_long_as_it_looks_back() {
        let mut d = Detector::new(RuleConfig::default());
        let now = Utc::now();
        d.process(&failure(0, "h", "root", "192.0.2.1"), now);
        assert_eq!(d.rules.auth_keys(), (1, 1));
        // Spray looks back 120 s (+120 s for late events): at 301 s its
        // state for the address is gone, while the failures of h/root are
        // kept for success-after-failures (600 s + 120).
        d.process(&failure(301, "other", "x", "192.0.2.2"), now);
        assert_eq!(d.rules.auth_keys(), (1, 2));
        d.process(&failure(1_000, "other", "x", "192.0.2.2"), now);
        assert_eq!(d.rules.auth_keys(), (1, 1));
    }

    #[test]
    fn closed_alerts_say_whether_they_changed_after_opening() {
        let mut d = Detector::new(RuleConfig::default());
        let now = Utc::now();
        for i in 0..8 {
            d.process(&failure(i, "quiet", "root", "192.0.2.1"), now);
        }
        for i in 0..10 {
            d.process(&failure(i, "busy", "root", "192.0.2.2"), now);
        }
        // Past both dedup windows: the sweep closes them.
        d.process(&failure(1_000, "h", "u", "192.0.2.3"), now);
        let closed: Vec<(String, u64, bool)> = d
            .take_closed_marked()
            .into_iter()
            .map(|c| (c.alert.host.clone(), c.alert.count, c.updated))
            .collect();
        assert_eq!(
            closed,
            [
                ("busy".to_string(), 10, true),
                ("quiet".to_string(), 8, false)
            ]
        );
    }

    #[test]
    fn message_repeated_counts_as_n_occurrences() {
        let mut d = Detector::new(RuleConfig::default());
        let mut ev = failure(0, "h", "root", "192.0.2.1");
        ev.repeat = 8;
        let v = d.process(&ev, Utc::now());
        assert!(v.has_reason("brute_force_suspected"));
        assert_eq!(v.context.login_failed_count, Some(8));
        let alerts = d.finish();
        assert_eq!(alerts[0].evidence.len(), 8);
        assert!(alerts[0].evidence.contains(&"e-0-root#8".to_string()));
    }

    #[test]
    fn events_without_a_real_time_are_not_correlated() {
        let mut d = Detector::new(RuleConfig::default());
        let mut last = Verdict::default();
        for i in 0..60 {
            let mut ev = failure(0, "h", &format!("u{}", i % 6), "192.0.2.1");
            ev.attributes.insert(crate::event::TIME_INFERRED, true);
            last = d.process(&ev, Utc::now());
        }
        assert_eq!(last.decision, Decision::Allow);
        assert!(d.finish().is_empty());
    }

    #[test]
    fn storm_with_brute_force_is_block_else_throttle() {
        let mut d = Detector::new(RuleConfig::default());
        let now = Utc::now();
        let mut last = Verdict::default();
        for i in 0..51 {
            last = d.process(&failure(i / 2, "h", "root", "192.0.2.1"), now);
        }
        assert_eq!(last.decision, Decision::Block);
        assert!(last.has_reason("ingest_storm") && last.has_reason("brute_force_suspected"));
        let v = d.process(&failure(10_000, "other", "x", "192.0.2.9"), now);
        assert_eq!(v.decision, Decision::Allow);
    }
}

//! The `/` filters: the live stream's and the alert queue's.

use crate::detect::Alert;
use crate::engine::FeedEvent;
use crate::respond::policy::{Ban, HostState};

/// A filter's whitespace-separated terms, lower-cased: `key:value` for
/// one of `keys`, else free text.
fn terms(s: &str, keys: &[&'static str]) -> Vec<(Option<&'static str>, String)> {
    s.split_whitespace()
        .map(|w| {
            for &key in keys {
                if let Some(v) = w.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                    return (Some(key), v.to_lowercase());
                }
            }
            (None, w.to_lowercase())
        })
        .collect()
}

/// The `/` filter: `host:`, `ip:`, `user:`, `action:` terms and free text,
/// all of which must match (case-insensitive).
pub struct EventFilter {
    terms: Vec<(Option<&'static str>, String)>,
}

impl EventFilter {
    pub fn parse(s: &str) -> EventFilter {
        EventFilter {
            terms: terms(s, &["host", "ip", "user", "action"]),
        }
    }

    pub fn matches(&self, e: &FeedEvent) -> bool {
        let ev = &e.event;
        self.terms.iter().all(|(key, v)| {
            let has = |s: &str| s.to_lowercase().contains(v.as_str());
            match key {
                Some("host") => has(&ev.host),
                Some("ip") => ev
                    .src_ip
                    .is_some_and(|ip| ip.to_string().contains(v.as_str())),
                Some("user") => ev.user.as_deref().is_some_and(has),
                Some("action") => has(ev.action.as_str()),
                _ => {
                    has(&ev.message)
                        || ev
                            .attributes
                            .iter()
                            .any(|(_, v)| v.as_str().is_some_and(has))
                        || has(&ev.host)
                        || has(ev.action.as_str())
                        || ev.user.as_deref().is_some_and(has)
                        || ev
                            .src_ip
                            .is_some_and(|ip| ip.to_string().contains(v.as_str()))
                }
            }
        })
    }
}

/// The alert queue's `/` filter: `host:`, `ip:`, `user:`, `rule:` terms and
/// free text (which also searches the alert's reasons), all of which must
/// match (case-insensitive). An analyst with thousands of alerts open looks
/// for one address or host; the status and rule filters cannot find it.
pub struct AlertFilter {
    terms: Vec<(Option<&'static str>, String)>,
}

impl AlertFilter {
    pub fn parse(s: &str) -> AlertFilter {
        AlertFilter {
            terms: terms(s, &["host", "ip", "user", "rule"]),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, a: &Alert) -> bool {
        self.terms.iter().all(|(key, v)| {
            let has = |s: &str| s.to_lowercase().contains(v.as_str());
            let ip = || {
                a.src_ip
                    .is_some_and(|ip| ip.to_string().contains(v.as_str()))
            };
            match key {
                Some("host") => has(&a.host),
                Some("ip") => ip(),
                Some("user") => a.user.as_deref().is_some_and(has),
                Some("rule") => has(&a.rule_id),
                _ => {
                    has(&a.host)
                        || ip()
                        || a.user.as_deref().is_some_and(has)
                        || has(&a.rule_id)
                        || a.reasons.iter().any(|r| has(r))
                }
            }
        })
    }
}

/// The Hosts & bans pane's `/` filter: `host:` (hosts only), `ip:` (bans
/// only) and free text (a host's name or quarantine reason; a ban's
/// address, reason or alert), all of which must match (case-insensitive).
/// Under an attack thousands of addresses are banned at once.
pub struct HostFilter {
    terms: Vec<(Option<&'static str>, String)>,
}

impl HostFilter {
    pub fn parse(s: &str) -> HostFilter {
        HostFilter {
            terms: terms(s, &["host", "ip"]),
        }
    }

    pub fn host(&self, host: &str, st: &HostState) -> bool {
        self.terms.iter().all(|(key, v)| {
            let has = |s: &str| s.to_lowercase().contains(v.as_str());
            match key {
                Some("host") => has(host),
                Some(_) => false,
                None => has(host) || st.quarantine.as_ref().is_some_and(|q| has(&q.reason)),
            }
        })
    }

    pub fn ban(&self, b: &Ban) -> bool {
        self.terms.iter().all(|(key, v)| {
            let has = |s: &str| s.to_lowercase().contains(v.as_str());
            let ip = || b.ip.to_string().contains(v.as_str());
            match key {
                Some("ip") => ip(),
                Some(_) => false,
                None => ip() || has(&b.reason) || b.alert_id.as_deref().is_some_and(has),
            }
        })
    }
}

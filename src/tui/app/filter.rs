//! The live stream's `/` filter.

use crate::engine::FeedEvent;

/// The `/` filter: `host:`, `ip:`, `user:`, `action:` terms and free text,
/// all of which must match (case-insensitive).
pub struct EventFilter {
    terms: Vec<(Option<&'static str>, String)>,
}

impl EventFilter {
    pub fn parse(s: &str) -> EventFilter {
        let terms = s
            .split_whitespace()
            .map(|w| {
                for key in ["host", "ip", "user", "action"] {
                    if let Some(v) = w.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                        return (Some(key), v.to_lowercase());
                    }
                }
                (None, w.to_lowercase())
            })
            .collect();
        EventFilter { terms }
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

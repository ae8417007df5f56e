//! What the gateway accepted (in all and by producer key) and refused (by
//! reason and by client), for the stop summary, the minute reports and the
//! console.

use std::sync::Mutex;

use super::audit::{ACCEPT, AuditRecord};

/// Accepts and refusals (by reason and by client) since start; counted
/// from the audit records, so the summary and `audit.jsonl` always agree.
#[derive(Debug, Default)]
pub struct GatewayStats {
    accepted: std::sync::atomic::AtomicU64,
    refused: Mutex<Refused>,
    /// Connections turned away at the connection limits (never reached
    /// HTTP, so not in the audit log).
    connections_refused: std::sync::atomic::AtomicU64,
    /// Accepted events by the producer key that signed them (see
    /// [`GatewayStats::with_keys`]); empty: not counted.
    keys: Vec<KeyUse>,
    /// When counting by key began.
    keys_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// One producer key's use since start: to rotate a secret without
/// downtime, the old key goes once no producer signs with it any more.
#[derive(Debug)]
struct KeyUse {
    id: String,
    accepted: std::sync::atomic::AtomicU64,
    /// When it last signed an accepted event (ms since the epoch; 0: not
    /// since start).
    last_ms: std::sync::atomic::AtomicI64,
}

#[derive(Debug, Default)]
struct Refused {
    by_reason: std::collections::BTreeMap<String, u64>,
    /// By [`crate::sources::client_key`], at most [`CLIENTS_COUNTED`] of them.
    by_client: std::collections::HashMap<std::net::IpAddr, u64>,
    /// From clients past that bound.
    other_clients: u64,
}

/// Clients whose refusals are counted one by one since start (a flood from
/// a whole IPv6 range cannot grow the map further).
pub const CLIENTS_COUNTED: usize = 4096;

impl GatewayStats {
    /// Stats that also count accepted events by key id: `default` (the
    /// seed's key, used when a request names none) first, then `ids` in
    /// order. The set is closed: a request naming any other id is refused.
    pub fn with_keys(ids: impl IntoIterator<Item = String>) -> Self {
        let mut all = vec!["default".to_string()];
        let mut rest: Vec<String> = ids.into_iter().filter(|id| id != "default").collect();
        rest.sort();
        rest.dedup();
        all.extend(rest);
        GatewayStats {
            keys: all
                .into_iter()
                .map(|id| KeyUse {
                    id,
                    accepted: Default::default(),
                    last_ms: Default::default(),
                })
                .collect(),
            keys_since: Some(chrono::Utc::now()),
            ..GatewayStats::default()
        }
    }

    /// When counting by key began (`None`: keys are not counted).
    pub fn keys_since(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.keys_since
    }

    /// `n` events signed with `key_id` were accepted at `at`.
    pub(super) fn count_key(&self, key_id: &str, n: u64, at: chrono::DateTime<chrono::Utc>) {
        use std::sync::atomic::Ordering::Relaxed;
        if n == 0 {
            return;
        }
        if let Some(k) = self.keys.iter().find(|k| k.id == key_id) {
            k.accepted.fetch_add(n, Relaxed);
            k.last_ms.fetch_max(at.timestamp_millis(), Relaxed);
        }
    }

    pub(super) fn count(&self, client: std::net::IpAddr, records: &[AuditRecord<'_>]) {
        let accepted = records.iter().filter(|r| r.kind == ACCEPT).count() as u64;
        let refusals = records
            .iter()
            .filter(|r| r.kind != ACCEPT)
            .map(|r| r.reason);
        self.count_outcomes(client, accepted, refusals);
    }

    /// Counts `accepted` events and a refusal for each reason in `refusals`
    /// (a batch's lines, or one request's records).
    pub(super) fn count_outcomes(
        &self,
        client: std::net::IpAddr,
        accepted: u64,
        refusals: impl Iterator<Item = &'static str>,
    ) {
        self.accepted
            .fetch_add(accepted, std::sync::atomic::Ordering::Relaxed);
        let mut refusals = refusals.peekable();
        if refusals.peek().is_none() {
            return;
        }
        if let Ok(mut refused) = self.refused.lock() {
            let mut n = 0u64;
            for reason in refusals {
                n += 1;
                match refused.by_reason.get_mut(reason) {
                    Some(n) => *n += 1,
                    None => {
                        refused.by_reason.insert(reason.to_string(), 1);
                    }
                }
            }
            let refusals = n;
            let key = crate::sources::client_key(client);
            let room = refused.by_client.len() < CLIENTS_COUNTED;
            match refused.by_client.get_mut(&key) {
                Some(n) => *n += refusals,
                None if room => {
                    refused.by_client.insert(key, refusals);
                }
                None => refused.other_clients += refusals,
            }
        }
    }

    /// Counts accept records written without [`GatewayStats::count`].
    pub(super) fn count_accepted(&self, n: u64) {
        self.accepted
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn counts(&self) -> IngestCounts {
        let (mut refused, mut refused_by_client) = self
            .refused
            .lock()
            .map(|m| {
                let reasons: Vec<(String, u64)> =
                    m.by_reason.iter().map(|(k, n)| (k.clone(), *n)).collect();
                let mut clients: Vec<(String, u64)> = m
                    .by_client
                    .iter()
                    .map(|(k, n)| (crate::sources::client_name(*k), *n))
                    .collect();
                if m.other_clients > 0 {
                    clients.push(("others".into(), m.other_clients));
                }
                (reasons, clients)
            })
            .unwrap_or_default();
        sort_most_first(&mut refused);
        sort_most_first(&mut refused_by_client);
        IngestCounts {
            accepted: self.accepted.load(std::sync::atomic::Ordering::Relaxed),
            refused,
            refused_by_client,
            connections_refused: self
                .connections_refused
                .load(std::sync::atomic::Ordering::Relaxed),
            by_key: self
                .keys
                .iter()
                .map(|k| {
                    let last = k.last_ms.load(std::sync::atomic::Ordering::Relaxed);
                    KeyCount {
                        id: k.id.clone(),
                        accepted: k.accepted.load(std::sync::atomic::Ordering::Relaxed),
                        last_used: (last > 0)
                            .then(|| chrono::DateTime::from_timestamp_millis(last))
                            .flatten(),
                    }
                })
                .collect(),
        }
    }

    /// `gateway: 1200 accepted, 7 refused (signature_mismatch 5, ...)`.
    pub fn summary(&self) -> String {
        let c = self.counts();
        let mut s = format!(
            "gateway: {} accepted, {} refused",
            c.accepted,
            c.refused_total()
        );
        if !c.refused.is_empty() {
            s.push_str(&format!(" ({})", c.reasons(usize::MAX)));
        }
        if c.connections_refused > 0 {
            s.push_str(&format!(
                "; {} connections turned away at the connection limits",
                c.connections_refused
            ));
        }
        if c.by_key.len() > 1 {
            let keys: Vec<String> = c
                .by_key
                .iter()
                .map(|k| match k.last_used {
                    Some(t) => format!(
                        "{} {} (last {})",
                        k.id,
                        k.accepted,
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => format!("{} {} (unused)", k.id, k.accepted),
                })
                .collect();
            s.push_str(&format!("; accepted by key: {}", keys.join(", ")));
        }
        s
    }
}

/// `a 5, b 3, 4 other`: the first `max` of a list sorted most first, then
/// what the rest add up to.
fn top(counts: &[(String, u64)], max: usize) -> String {
    let mut parts: Vec<String> = counts
        .iter()
        .take(max)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let rest: u64 = counts.iter().skip(max).map(|(_, n)| n).sum();
    if rest > 0 {
        parts.push(format!("{rest} other"));
    }
    parts.join(", ")
}

fn sort_most_first(v: &mut [(String, u64)]) {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// The gateway's accepts and refusals at one moment (or, from
/// [`IngestCounts::since`], between two): what shows a producer being
/// turned away (a rotated secret, a clock drifting out of the replay
/// window) while the event stream merely goes quiet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestCounts {
    pub accepted: u64,
    /// Refusals by reason (the audit log's), most frequent first.
    pub refused: Vec<(String, u64)>,
    /// The same refusals by client (an IPv4 address or an IPv6 /64; past
    /// [`CLIENTS_COUNTED`] clients, "others"), most first.
    pub refused_by_client: Vec<(String, u64)>,
    /// Connections turned away at the connection limits (never audited:
    /// they did not reach HTTP).
    pub connections_refused: u64,
    /// Accepted events by producer key (`default` first), when counted.
    pub by_key: Vec<KeyCount>,
}

/// Accepted events signed with one producer key since start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCount {
    pub id: String,
    pub accepted: u64,
    /// The last accepted event it signed; `None`: none since start.
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
}

impl IngestCounts {
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|(_, n)| n).sum()
    }

    /// What came between `earlier` and these counts: reasons and clients
    /// that did not grow are left out.
    pub fn since(&self, earlier: &IngestCounts) -> IngestCounts {
        fn grown(now: &[(String, u64)], before: &[(String, u64)]) -> Vec<(String, u64)> {
            let before: std::collections::HashMap<&str, u64> =
                before.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            let mut v: Vec<(String, u64)> = now
                .iter()
                .map(|(k, n)| {
                    let was = before.get(k.as_str()).copied().unwrap_or(0);
                    (k.clone(), n.saturating_sub(was))
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            sort_most_first(&mut v);
            v
        }
        IngestCounts {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            refused: grown(&self.refused, &earlier.refused),
            refused_by_client: grown(&self.refused_by_client, &earlier.refused_by_client),
            connections_refused: self
                .connections_refused
                .saturating_sub(earlier.connections_refused),
            by_key: self
                .by_key
                .iter()
                .map(|k| KeyCount {
                    accepted: k.accepted.saturating_sub(
                        earlier
                            .by_key
                            .iter()
                            .find(|e| e.id == k.id)
                            .map_or(0, |e| e.accepted),
                    ),
                    ..k.clone()
                })
                .collect(),
        }
    }

    /// `default 1200, k2026 300`: accepted events by producer key, when
    /// more than one key is configured (with one there is nothing to tell
    /// apart).
    pub fn keys(&self) -> Option<String> {
        (self.by_key.len() > 1).then(|| {
            self.by_key
                .iter()
                .map(|k| format!("{} {}", k.id, k.accepted))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// `stale_timestamp 50, signature_mismatch 7`: the `max` most frequent
    /// reasons, then how many refusals the others add up to.
    pub fn reasons(&self, max: usize) -> String {
        top(&self.refused, max)
    }

    /// `203.0.113.9 50, 192.0.2.7 7`: the clients refused most, as
    /// [`IngestCounts::reasons`].
    pub fn clients(&self, max: usize) -> String {
        top(&self.refused_by_client, max)
    }

    /// The line `vigil serve` logs for a minute in which something was
    /// turned away; `None` for a minute without.
    pub fn minute_report(&self) -> Option<String> {
        let refused = self.refused_total();
        if refused == 0 && self.connections_refused == 0 {
            return None;
        }
        let mut s = format!(
            "gateway, last minute: {refused} refused{}, {} accepted",
            if refused > 0 {
                format!(" ({}; from {})", self.reasons(usize::MAX), self.clients(5))
            } else {
                String::new()
            },
            self.accepted
        );
        if self.connections_refused > 0 {
            s.push_str(&format!(
                "; {} connections turned away at the connection limits",
                self.connections_refused
            ));
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(accepted: u64, refused: &[(&str, u64)], turned_away: u64) -> IngestCounts {
        IngestCounts {
            accepted,
            refused: refused.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            refused_by_client: Vec::new(),
            connections_refused: turned_away,
            by_key: Vec::new(),
        }
    }

    #[test]
    fn a_minute_reports_only_the_refusals_that_grew_most_first() {
        let before = counts(100, &[("signature_mismatch", 7), ("stale_timestamp", 3)], 0);
        let after = counts(
            160,
            &[
                ("stale_timestamp", 53),
                ("signature_mismatch", 7),
                ("invalid_json", 1),
            ],
            2,
        );
        let (mut before, mut after) = (before, after);
        before.refused_by_client = vec![("192.0.2.7".into(), 10)];
        after.refused_by_client = vec![("192.0.2.7".into(), 60), ("2001:db8::/64".into(), 1)];
        let minute = after.since(&before);
        let mut want = counts(60, &[("stale_timestamp", 50), ("invalid_json", 1)], 2);
        want.refused_by_client = vec![("192.0.2.7".into(), 50), ("2001:db8::/64".into(), 1)];
        assert_eq!(minute, want);
        assert_eq!(
            minute.minute_report().as_deref(),
            Some(
                "gateway, last minute: 51 refused (stale_timestamp 50, invalid_json 1; \
                 from 192.0.2.7 50, 2001:db8::/64 1), 60 accepted; \
                 2 connections turned away at the connection limits"
            )
        );
        // Nothing turned away: nothing to say, however much was accepted.
        assert_eq!(after.since(&after).minute_report(), None);
        assert_eq!(counts(9, &[], 0).minute_report(), None);
        assert_eq!(
            counts(0, &[], 1).minute_report().as_deref(),
            Some(
                "gateway, last minute: 0 refused, 0 accepted; \
                 1 connections turned away at the connection limits"
            )
        );
    }

    #[test]
    fn accepted_events_are_counted_by_key_for_a_rotation() {
        let at = |s: i64| chrono::DateTime::from_timestamp(1_795_000_000 + s, 0).unwrap();
        // `default` first whatever the config says; ids once each.
        let stats = GatewayStats::with_keys(["k2026".into(), "default".into(), "k2025".into()]);
        stats.count_key("default", 3, at(5));
        stats.count_key("default", 1, at(2));
        stats.count_key("k2026", 4, at(9));
        // Ids outside the set (refused before they get here) and empty
        // batches change nothing.
        stats.count_key("k1999", 7, at(9));
        stats.count_key("k2025", 0, at(9));
        let c = stats.counts();
        let key = |id: &str, accepted, last: Option<i64>| KeyCount {
            id: id.into(),
            accepted,
            last_used: last.map(at),
        };
        assert_eq!(
            c.by_key,
            [
                key("default", 4, Some(5)),
                key("k2025", 0, None),
                key("k2026", 4, Some(9))
            ]
        );
        assert_eq!(c.keys().as_deref(), Some("default 4, k2025 0, k2026 4"));
        assert!(
            stats.summary().ends_with(
                "; accepted by key: default 4 (last 2026-11-18T11:06:45Z), \
                 k2025 0 (unused), k2026 4 (last 2026-11-18T11:06:49Z)"
            ),
            "{}",
            stats.summary()
        );
        // A minute's report takes the growth, keeping the last use.
        stats.count_key("k2026", 2, at(70));
        let minute = stats.counts().since(&c);
        assert_eq!(
            minute.keys().as_deref(),
            Some("default 0, k2025 0, k2026 2")
        );
        assert_eq!(minute.by_key[2].last_used, Some(at(70)));
        // One key: nothing to tell apart, nothing said.
        let one = GatewayStats::with_keys(Vec::new());
        one.count_key("default", 1, at(1));
        assert_eq!(one.counts().keys(), None);
        assert_eq!(one.summary(), "gateway: 0 accepted, 0 refused");
    }

    #[test]
    fn refusals_are_counted_by_client_within_a_bound() {
        let stats = GatewayStats::default();
        let no = |reason| AuditRecord::reject(reason, "/ingest", None);
        let ok = AuditRecord::accept("/ingest", [b'0'; 64], &[]);
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        stats.count(ip("192.0.2.7"), &[no("signature_mismatch")]);
        // A batch: its refused lines count for its client, its accepts not.
        stats.count(ip("192.0.2.7"), &[ok, no("invalid_json"), ok]);
        stats.count(ip("2001:db8:1:2::5"), &[no("missing_signature")]);
        stats.count(ip("2001:db8:1:2::6"), &[no("missing_signature")]);
        let c = stats.counts();
        assert_eq!(c.accepted, 2);
        assert_eq!(c.clients(9), "192.0.2.7 2, 2001:db8:1:2::/64 2");
        for i in 0..CLIENTS_COUNTED as u32 {
            stats.count(
                std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
                &[no("x")],
            );
        }
        let c = stats.counts();
        assert_eq!(c.refused_by_client.len(), CLIENTS_COUNTED + 1);
        assert!(c.refused_by_client.contains(&("others".into(), 2)));
        assert_eq!(
            c.refused_by_client.iter().map(|(_, n)| n).sum::<u64>(),
            c.refused_total()
        );
    }

    #[test]
    fn reasons_past_the_first_few_are_summed() {
        let c = counts(0, &[("a", 5), ("b", 3), ("c", 2), ("d", 1)], 0);
        assert_eq!(c.reasons(2), "a 5, b 3, 3 other");
        assert_eq!(c.reasons(usize::MAX), "a 5, b 3, c 2, d 1");
        assert_eq!(c.refused_total(), 11);
    }
}

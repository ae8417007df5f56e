//! What the gateway accepted and refused (by reason and by client), for
//! the stop summary, the minute reports and the console.

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
    pub(super) fn count(&self, client: std::net::IpAddr, records: &[AuditRecord<'_>]) {
        let accepted = records.iter().filter(|r| r.kind == ACCEPT).count() as u64;
        self.accepted
            .fetch_add(accepted, std::sync::atomic::Ordering::Relaxed);
        let refusals = (records.len() - accepted as usize) as u64;
        if refusals == 0 {
            return;
        }
        if let Ok(mut refused) = self.refused.lock() {
            for r in records.iter().filter(|r| r.kind != ACCEPT) {
                match refused.by_reason.get_mut(r.reason) {
                    Some(n) => *n += 1,
                    None => {
                        refused.by_reason.insert(r.reason.to_string(), 1);
                    }
                }
            }
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
        }
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

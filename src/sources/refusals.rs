//! How many of the gateway's refusals get an audit record each.
//!
//! Anyone who can reach the port can be refused, and every refusal used to
//! be a ~340-byte record: one client without a key sending junk at 81k
//! requests/s grew the audit log by 27 MB/s, so rotation (256 MiB files,
//! 20 kept) deleted the whole history, accept records of real events
//! included, in about three minutes; with rotation off the disk filled
//! instead, and then the gateway refused everything.
//!
//! So within each minute a client (an IPv4 address, or an IPv6 /64, which
//! one host can hold whole) gets `per_client` refusal records in full, and
//! all clients together `total`; past either cap a refusal is counted, by
//! reason and by client, and when the minute is over one
//! `gateway_refusals_summarized` record says how many were not written one
//! by one, why, and from where. Every refusal is still accounted for in
//! the chain, and a flood adds at most `total` records and one summary a
//! minute. Accept records are never capped (the rate limit and the store
//! bound those). The gateway's answers do not change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// The length of a budget's window.
pub const WINDOW_SECS: i64 = 60;

/// Clients a window counts one by one; refusals from further clients in
/// the same minute share one entry (and one `per_client` budget), so a
/// flood from a whole IPv6 range cannot grow the maps without bound.
pub const MAX_CLIENTS_TRACKED: usize = 4096;

/// Clients a summary names, most refused first; the rest are one figure.
pub const CLIENTS_NAMED: usize = 20;

/// Who a budget is kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    /// An IPv4 address or an IPv6 /64 ([`super::client_key`]).
    Key(IpAddr),
    /// Past [`MAX_CLIENTS_TRACKED`] in one window.
    Others,
}

impl Client {
    fn of(ip: IpAddr) -> Client {
        Client::Key(super::client_key(ip))
    }

    fn name(self) -> String {
        match self {
            Client::Key(key) => super::client_name(key),
            Client::Others => "others".into(),
        }
    }
}

/// One window's counts.
#[derive(Debug)]
struct Window {
    from: DateTime<Utc>,
    written: u32,
    written_by: HashMap<Client, u32>,
    suppressed: u64,
    reasons: BTreeMap<&'static str, u64>,
    suppressed_by: HashMap<Client, u64>,
}

impl Window {
    fn new(from: DateTime<Utc>) -> Window {
        Window {
            from,
            written: 0,
            written_by: HashMap::new(),
            suppressed: 0,
            reasons: BTreeMap::new(),
            suppressed_by: HashMap::new(),
        }
    }

    /// `client`, or [`Client::Others`] once `map` tracks as many as it may.
    fn tracked<V>(map: &HashMap<Client, V>, client: Client) -> Client {
        if map.len() < MAX_CLIENTS_TRACKED || map.contains_key(&client) {
            client
        } else {
            Client::Others
        }
    }

    fn summary(self, to: DateTime<Utc>, at: DateTime<Utc>) -> Option<Summary> {
        if self.suppressed == 0 {
            return None;
        }
        let mut reasons: Vec<ReasonCount> = self
            .reasons
            .into_iter()
            .map(|(reason, refused)| ReasonCount { reason, refused })
            .collect();
        reasons.sort_by(|a, b| b.refused.cmp(&a.refused).then(a.reason.cmp(b.reason)));
        let mut clients: Vec<(Client, u64)> = self.suppressed_by.into_iter().collect();
        // Named clients most refused first; "others" (past the tracking
        // bound) only ever in the remainder.
        clients.sort_by(|a, b| {
            (a.0 == Client::Others)
                .cmp(&(b.0 == Client::Others))
                .then(b.1.cmp(&a.1))
                .then(a.0.name().cmp(&b.0.name()))
        });
        let named = clients
            .iter()
            .filter(|(c, _)| *c != Client::Others)
            .count()
            .min(CLIENTS_NAMED);
        let other_clients_refused = clients[named..].iter().map(|(_, n)| n).sum();
        Some(Summary {
            kind: SUMMARY,
            ts: at,
            from: self.from,
            to,
            refused: self.suppressed,
            reasons,
            clients: clients[..named]
                .iter()
                .map(|(c, n)| ClientCount {
                    client: c.name(),
                    refused: *n,
                })
                .collect(),
            other_clients_refused,
        })
    }
}

/// The record type of a summary.
pub const SUMMARY: &str = "gateway_refusals_summarized";

/// Refusals of one window that have no record of their own.
#[derive(Debug, PartialEq, Serialize)]
pub struct Summary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When it was written, as every record has.
    pub ts: DateTime<Utc>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// How many were not written one by one.
    pub refused: u64,
    pub reasons: Vec<ReasonCount>,
    /// The clients they came from, most first (IPv6 as /64).
    pub clients: Vec<ClientCount>,
    /// Those from clients past the named ones.
    pub other_clients_refused: u64,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct ReasonCount {
    pub reason: &'static str,
    pub refused: u64,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct ClientCount {
    pub client: String,
    pub refused: u64,
}

/// Refusal records per window: `per_client` from one client, `total` from
/// all; 0 is no cap.
#[derive(Debug)]
pub struct RefusalBudget {
    per_client: u32,
    total: u32,
    window: Option<Window>,
}

impl RefusalBudget {
    pub fn new(per_client: u32, total: u32) -> RefusalBudget {
        RefusalBudget {
            per_client,
            total,
            window: None,
        }
    }

    /// Whether neither cap is set (every refusal is written).
    pub fn unlimited(&self) -> bool {
        self.per_client == 0 && self.total == 0
    }

    /// Ends the window if `now` is past it: the summary of what it held
    /// back, to be written before anything later.
    /// A clock stepped back ends the window too (with `to` = `from`), or it
    /// would run, its shares spent, until the clock caught up.
    pub fn roll(&mut self, now: DateTime<Utc>) -> Option<Summary> {
        let ended = self
            .window
            .as_ref()
            .is_some_and(|w| now >= w.from + Duration::seconds(WINDOW_SECS) || now < w.from);
        if !ended {
            return None;
        }
        let w = self.window.take()?;
        let to = (w.from + Duration::seconds(WINDOW_SECS)).min(now.max(w.from));
        w.summary(to, now)
    }

    /// Ends the window whatever its age (at stop).
    pub fn close(&mut self, now: DateTime<Utc>) -> Option<Summary> {
        let w = self.window.take()?;
        let to = now.max(w.from);
        w.summary(to, now)
    }

    /// Whether a refusal from `ip` for `reason` gets a record of its own
    /// (call [`RefusalBudget::roll`] first); if not, it is counted for the
    /// window's summary.
    pub fn admit(&mut self, ip: IpAddr, reason: &'static str, now: DateTime<Utc>) -> bool {
        self.admit_all(ip, std::slice::from_ref(&reason), now)
    }

    /// [`RefusalBudget::admit`] for one record holding several refusals (a
    /// batch none of whose lines was accepted): it takes one record's room;
    /// held back, each of `reasons` is counted for the summary. No reasons
    /// count as one refusal of `empty_batch`.
    pub fn admit_all(&mut self, ip: IpAddr, reasons: &[&'static str], now: DateTime<Utc>) -> bool {
        if self.unlimited() {
            return true;
        }
        let w = self.window.get_or_insert_with(|| Window::new(now));
        let client = Window::tracked(&w.written_by, Client::of(ip));
        let by_client = w.written_by.get(&client).copied().unwrap_or(0);
        let room = (self.total == 0 || w.written < self.total)
            && (self.per_client == 0 || by_client < self.per_client);
        if room {
            w.written += 1;
            *w.written_by.entry(client).or_insert(0) += 1;
            return true;
        }
        let reasons = if reasons.is_empty() {
            &["empty_batch"][..]
        } else {
            reasons
        };
        let n = reasons.len() as u64;
        w.suppressed += n;
        for reason in reasons {
            *w.reasons.entry(reason).or_insert(0) += 1;
        }
        let client = Window::tracked(&w.suppressed_by, client);
        *w.suppressed_by.entry(client).or_insert(0) += n;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap_or_default()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_past_its_share_is_summarised_when_the_minute_ends() {
        let mut b = RefusalBudget::new(3, 100);
        let written: Vec<bool> = (0..5)
            .map(|_| b.admit(ip("203.0.113.9"), "signature_mismatch", t(1)))
            .collect();
        assert_eq!(written, [true, true, true, false, false]);
        // Another client has its own share.
        assert!(b.admit(ip("198.51.100.4"), "missing_signature", t(2)));
        assert!(!b.admit(ip("203.0.113.9"), "invalid_json", t(3)));
        assert_eq!(b.roll(t(60)), None, "the window runs a full minute");
        let s = b.roll(t(61)).unwrap();
        assert_eq!(
            s,
            Summary {
                kind: SUMMARY,
                ts: t(61),
                from: t(1),
                to: t(61),
                refused: 3,
                reasons: vec![
                    ReasonCount {
                        reason: "signature_mismatch",
                        refused: 2
                    },
                    ReasonCount {
                        reason: "invalid_json",
                        refused: 1
                    },
                ],
                clients: vec![ClientCount {
                    client: "203.0.113.9".into(),
                    refused: 3
                }],
                other_clients_refused: 0,
            }
        );
        // A fresh window, fresh shares; nothing held back, nothing to say.
        assert!(b.admit(ip("203.0.113.9"), "signature_mismatch", t(62)));
        assert_eq!(b.roll(t(200)), None);
    }

    #[test]
    fn a_clock_stepped_back_ends_the_window() {
        let mut b = RefusalBudget::new(1, 0);
        assert!(b.admit(ip("192.0.2.1"), "signature_mismatch", t(100)));
        assert!(!b.admit(ip("192.0.2.1"), "signature_mismatch", t(100)));
        let s = b.roll(t(40)).unwrap();
        assert_eq!((s.from, s.to, s.refused), (t(100), t(100), 1));
        assert!(b.admit(ip("192.0.2.1"), "signature_mismatch", t(40)));
    }

    #[test]
    fn the_total_caps_many_clients_together() {
        let mut b = RefusalBudget::new(2, 5);
        let written = (0..10u8)
            .filter(|i| b.admit(IpAddr::from([192, 0, 2, *i]), "signature_mismatch", t(0)))
            .count();
        assert_eq!(written, 5);
        let s = b.close(t(30)).unwrap();
        assert_eq!((s.refused, s.to, s.clients.len()), (5, t(30), 5));
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let mut b = RefusalBudget::new(1, 0);
        assert!(b.admit(ip("2001:db8:1:2::1"), "signature_mismatch", t(0)));
        assert!(!b.admit(ip("2001:db8:1:2:ffff::9"), "signature_mismatch", t(0)));
        assert!(b.admit(ip("2001:db8:1:3::1"), "signature_mismatch", t(0)));
        assert!(b.admit(ip("::ffff:192.0.2.7"), "signature_mismatch", t(0)));
        assert!(!b.admit(ip("192.0.2.7"), "signature_mismatch", t(0)));
        let s = b.close(t(1)).unwrap();
        let names: Vec<&str> = s.clients.iter().map(|c| c.client.as_str()).collect();
        assert_eq!(names, ["192.0.2.7", "2001:db8:1:2::/64"]);
    }

    #[test]
    fn no_caps_write_every_refusal() {
        let mut b = RefusalBudget::new(0, 0);
        assert!((0..10_000).all(|_| b.admit(ip("192.0.2.1"), "signature_mismatch", t(0))));
        assert_eq!(b.close(t(1)), None);
    }

    #[test]
    fn a_flood_from_many_clients_is_counted_in_bounded_maps() {
        let mut b = RefusalBudget::new(1, 0);
        let n = MAX_CLIENTS_TRACKED as u32 * 3;
        let mut written = 0;
        for i in 0..n {
            // Two refusals from each of many /64s.
            let a = IpAddr::from(((u128::from(i) + 1) << 64).to_be_bytes());
            written += b.admit(a, "signature_mismatch", t(0)) as u32;
            written += b.admit(a, "signature_mismatch", t(0)) as u32;
        }
        // Tracked clients get one each; all the rest share one share.
        assert_eq!(written, MAX_CLIENTS_TRACKED as u32 + 1);
        let w = b.window.as_ref().unwrap();
        assert!(w.written_by.len() <= MAX_CLIENTS_TRACKED + 1);
        assert!(w.suppressed_by.len() <= MAX_CLIENTS_TRACKED + 1);
        let s = b.close(t(1)).unwrap();
        assert_eq!(s.refused, u64::from(2 * n - written));
        assert_eq!(s.clients.len(), CLIENTS_NAMED);
        let named: u64 = s.clients.iter().map(|c| c.refused).sum();
        assert_eq!(named + s.other_clients_refused, s.refused);
        assert!(s.clients.iter().all(|c| c.client != "others"));
    }
}

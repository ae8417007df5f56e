//! Which syslog senders are sending, and which went silent. A device that
//! stops sending (its forwarder died, its config was changed, a firewall
//! rule now drops it) looks exactly like a quiet device; an analyst needs
//! to hear that a source that used to talk has stopped, as SIEMs warn of a
//! log source gone silent.
//!
//! A sender counts as silent once nothing came from it for
//! [`SILENT_AFTER`], or five times its usual gap between messages if that
//! is longer, and only once it has sent [`ESTABLISHED`] messages (a one-off
//! sender never "stops"). Times are when messages arrived (wall time): this
//! is about the feed's health, not about the events' own time.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

/// The shortest silence reported.
pub const SILENT_AFTER: Duration = Duration::minutes(10);
/// Messages a sender must have sent before its silence means anything.
pub const ESTABLISHED: u64 = 10;
/// Senders followed one by one (a flood of forged UDP sources cannot grow
/// the table further; the rest are counted together).
pub const SENDERS_FOLLOWED: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Seen {
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    messages: u64,
    /// Reported silent and not heard from since.
    silent: bool,
}

impl Seen {
    /// How long without a message before this sender counts as silent.
    fn silent_after(&self) -> Duration {
        let span = self.last - self.first;
        let gaps = self.messages.saturating_sub(1).max(1) as i32;
        (span / gaps * 5).max(SILENT_AFTER)
    }

    fn is_silent(&self, now: DateTime<Utc>) -> bool {
        self.messages >= ESTABLISHED && now - self.last >= self.silent_after()
    }
}

/// A sender gone silent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silent {
    pub ip: IpAddr,
    /// Its last message.
    pub since: DateTime<Utc>,
    pub messages: u64,
}

/// What changed since the last [`Activity::changes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub silent: Vec<Silent>,
    /// Senders reported silent that sent again.
    pub back: Vec<IpAddr>,
}

/// The senders heard from, each with its first and last message.
#[derive(Debug, Default)]
pub struct Activity {
    seen: HashMap<IpAddr, Seen>,
    back: Vec<IpAddr>,
    /// Messages from senders past [`SENDERS_FOLLOWED`].
    others: u64,
}

impl Activity {
    /// `n` messages from `ip` arrived at `at`.
    pub fn saw(&mut self, ip: IpAddr, n: u64, at: DateTime<Utc>) {
        if n == 0 {
            return;
        }
        let room = self.seen.len() < SENDERS_FOLLOWED;
        match self.seen.get_mut(&ip) {
            Some(s) => {
                s.last = s.last.max(at);
                s.messages += n;
                if std::mem::take(&mut s.silent) {
                    self.back.push(ip);
                }
            }
            None if room => {
                self.seen.insert(
                    ip,
                    Seen {
                        first: at,
                        last: at,
                        messages: n,
                        silent: false,
                    },
                );
            }
            None => self.others += n,
        }
    }

    /// Senders heard from (followed one by one).
    pub fn senders(&self) -> usize {
        self.seen.len()
    }

    /// The senders silent at `now`, longest silent first.
    pub fn silent(&self, now: DateTime<Utc>) -> Vec<Silent> {
        let mut v: Vec<Silent> = self
            .seen
            .iter()
            .filter(|(_, s)| s.is_silent(now))
            .map(|(ip, s)| Silent {
                ip: *ip,
                since: s.last,
                messages: s.messages,
            })
            .collect();
        v.sort_by(|a, b| a.since.cmp(&b.since).then(a.ip.cmp(&b.ip)));
        v
    }

    /// Senders that went silent, and silent ones that sent again, since the
    /// last call: each silence is told once.
    pub fn changes(&mut self, now: DateTime<Utc>) -> Changes {
        let mut silent = Vec::new();
        for (ip, s) in self.seen.iter_mut() {
            if !s.silent && s.is_silent(now) {
                s.silent = true;
                silent.push(Silent {
                    ip: *ip,
                    since: s.last,
                    messages: s.messages,
                });
            }
        }
        silent.sort_by(|a, b| a.since.cmp(&b.since).then(a.ip.cmp(&b.ip)));
        Changes {
            silent,
            back: std::mem::take(&mut self.back),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + s, 0).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_sender_that_stops_is_told_once_and_again_when_it_is_back() {
        let mut a = Activity::default();
        // A firewall every 3 s for a minute; a one-off sender.
        for i in 0..20 {
            a.saw(ip("192.0.2.7"), 1, at(i * 3));
        }
        a.saw(ip("198.51.100.1"), 1, at(0));
        assert_eq!(a.senders(), 2);
        let last = at(57);
        // Ten minutes after its last message, not before.
        assert!(
            a.silent(last + SILENT_AFTER - Duration::seconds(1))
                .is_empty()
        );
        let now = last + SILENT_AFTER;
        let gone = Silent {
            ip: ip("192.0.2.7"),
            since: last,
            messages: 20,
        };
        assert_eq!(a.silent(now), std::slice::from_ref(&gone));
        assert_eq!(
            a.changes(now),
            Changes {
                silent: vec![gone.clone()],
                back: vec![]
            }
        );
        // Told once; still listed as silent.
        assert_eq!(a.changes(now + Duration::minutes(5)), Changes::default());
        assert_eq!(a.silent(now), [gone]);
        // It sends again.
        a.saw(ip("192.0.2.7"), 2, now + Duration::minutes(6));
        assert!(a.silent(now + Duration::minutes(6)).is_empty());
        assert_eq!(
            a.changes(now + Duration::minutes(6)),
            Changes {
                silent: vec![],
                back: vec![ip("192.0.2.7")]
            }
        );
    }

    #[test]
    fn a_sender_that_talks_rarely_has_a_longer_silence() {
        let mut a = Activity::default();
        // One message every 5 minutes: silent only after 25 minutes.
        for i in 0..10 {
            a.saw(ip("203.0.113.4"), 1, at(i * 300));
        }
        let last = at(9 * 300);
        assert!(a.silent(last + Duration::minutes(24)).is_empty());
        assert_eq!(a.silent(last + Duration::minutes(25)).len(), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut a = Activity::default();
        for i in 0..SENDERS_FOLLOWED as u32 + 10 {
            a.saw(IpAddr::from(i.to_be_bytes()), 1, at(0));
        }
        assert_eq!(a.senders(), SENDERS_FOLLOWED);
        assert_eq!(a.others, 10);
    }
}

//! Which syslog senders are sending, and which went silent. A device that
//! stops sending (its forwarder died, its config was changed, a firewall
//! rule now drops it) looks exactly like a quiet device; an analyst needs
//! to hear that a source that used to talk has stopped, as SIEMs warn of a
//! log source gone silent.
//!
//! A sender counts as silent once nothing came from it for
//! [`SILENT_AFTER`], or twice the longest gap it has left between two
//! messages if that is longer (a switch that logs every half hour, or a
//! job that writes a burst each hour, is not "silent" between times), and
//! only once it has sent [`ESTABLISHED`] messages (a one-off sender never
//! "stops"). Gaps longer than [`LEARNED_GAP_MAX`] are outages, not the
//! sender's rhythm, and are not learned: a firewall that was down for a day
//! is told after ten minutes the next time too. Times are when messages
//! arrived (wall time): this is about the feed's health, not about the
//! events' own time.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

/// The shortest silence reported.
pub const SILENT_AFTER: Duration = Duration::minutes(10);
/// Messages a sender must have sent before its silence means anything.
pub const ESTABLISHED: u64 = 10;
/// The longest gap between two messages taken as a sender's rhythm.
pub const LEARNED_GAP_MAX: Duration = Duration::hours(6);
/// Senders followed one by one (a flood of forged UDP sources cannot grow
/// the table further; the rest are counted together).
pub const SENDERS_FOLLOWED: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Seen {
    last: DateTime<Utc>,
    messages: u64,
    /// The longest gap between two of its messages, up to
    /// [`LEARNED_GAP_MAX`].
    longest_gap: Duration,
    /// Reported silent and not heard from since.
    silent: bool,
}

impl Seen {
    /// How long without a message before this sender counts as silent.
    fn silent_after(&self) -> Duration {
        (self.longest_gap * 2).max(SILENT_AFTER)
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
                let gap = at - s.last;
                if gap <= LEARNED_GAP_MAX {
                    s.longest_gap = s.longest_gap.max(gap);
                }
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
                        last: at,
                        messages: n,
                        longest_gap: Duration::zero(),
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
    fn a_sender_with_a_slow_rhythm_has_a_longer_silence_but_an_outage_is_not_its_rhythm() {
        let mut a = Activity::default();
        // One message every 30 minutes: silent only after an hour.
        for i in 0..10 {
            a.saw(ip("203.0.113.4"), 1, at(i * 1800));
        }
        let last = at(9 * 1800);
        assert!(a.silent(last + Duration::minutes(59)).is_empty());
        assert_eq!(a.silent(last + Duration::minutes(60)).len(), 1);
        // A burst each hour (a job's log): quiet between bursts is normal.
        let mut b = Activity::default();
        for hour in 0..3 {
            for i in 0..100 {
                b.saw(ip("198.51.100.9"), 1, at(hour * 3600 + i));
            }
        }
        let last = at(2 * 3600 + 99);
        assert!(b.silent(last + Duration::minutes(100)).is_empty());
        // A steady sender down for a day, then back: the day is an outage,
        // so its next silence is told after ten minutes again.
        let mut c = Activity::default();
        for i in 0..20 {
            c.saw(ip("192.0.2.50"), 1, at(i * 3));
        }
        c.saw(ip("192.0.2.50"), 1, at(86_400));
        c.saw(ip("192.0.2.50"), 1, at(86_403));
        assert_eq!(c.silent(at(86_403) + SILENT_AFTER).len(), 1);
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

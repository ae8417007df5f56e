//! Sliding windows over event time with bounded memory.
//!
//! A threshold rule ("≥ N events within W seconds") only ever needs the last
//! N observations of a key: if the N-th most recent one is within W of the
//! newest, the rule holds. [`Recent`] keeps exactly that, so memory per key is
//! fixed however hard a key is hammered. Keys idle for longer than the
//! largest window are dropped by [`KeyedWindows::evict_idle`].
//!
//! Times are integer microseconds since the epoch ([`Micros`]): window
//! arithmetic on the hot path is then plain integer compares.

use std::collections::VecDeque;
use std::hash::Hash;

use crate::util::FastMap;

/// Event time (or a duration) in microseconds.
pub type Micros = i64;

/// Microseconds in `secs` seconds.
pub fn secs(secs: u32) -> Micros {
    secs as i64 * 1_000_000
}

/// The last `cap` observations of one key, oldest first.
#[derive(Clone, Debug)]
pub struct Recent<T> {
    items: VecDeque<(Micros, T)>,
    cap: usize,
}

impl<T> Recent<T> {
    pub fn new(cap: usize) -> Self {
        Recent {
            items: VecDeque::with_capacity(cap.min(64)),
            cap: cap.max(1),
        }
    }

    /// Records an observation, forgetting the oldest when full. Observations
    /// arriving slightly out of order are placed by time.
    pub fn push(&mut self, at: Micros, item: T) {
        if self.items.len() == self.cap {
            if self.items.front().is_some_and(|(t, _)| at < *t) {
                return; // older than everything we keep: it cannot matter
            }
            self.items.pop_front();
        }
        if self.items.back().is_none_or(|(t, _)| *t <= at) {
            self.items.push_back((at, item));
        } else {
            let pos = self.items.partition_point(|(t, _)| *t <= at);
            self.items.insert(pos, (at, item));
        }
    }

    /// Observations within `window` ending at `now` (inclusive), oldest first.
    pub fn within(
        &self,
        now: Micros,
        window: Micros,
    ) -> impl DoubleEndedIterator<Item = &(Micros, T)> {
        let (lo, hi) = self.bounds(now, window);
        self.items.range(lo..hi)
    }

    /// [`Recent::within`] for threshold rules: the window ends at the newest
    /// observation when that is later than `now`, so an event that arrives
    /// late (UDP syslog, merged files) still counts with its neighbours
    /// instead of seeing only what came before it in time.
    pub fn within_latest(
        &self,
        now: Micros,
        window: Micros,
    ) -> impl DoubleEndedIterator<Item = &(Micros, T)> {
        self.within(self.end(now), window)
    }

    pub fn count_latest(&self, now: Micros, window: Micros) -> usize {
        self.count_within(self.end(now), window)
    }

    /// Where a threshold window ends: the newest observation or `now`.
    pub fn end(&self, now: Micros) -> Micros {
        self.newest().map_or(now, |n| n.max(now))
    }

    pub fn count_within(&self, now: Micros, window: Micros) -> usize {
        let (lo, hi) = self.bounds(now, window);
        hi - lo
    }

    /// Index range of observations in `[now - window, now]` (items are sorted).
    fn bounds(&self, now: Micros, window: Micros) -> (usize, usize) {
        let cutoff = now - window;
        // A key hammered faster than its window (a storm, a brute force
        // under way) has every item inside it: the oldest alone says so,
        // without a binary search over the whole list.
        let lo = if self.items.front().is_none_or(|(t, _)| *t >= cutoff) {
            0
        } else {
            self.items.partition_point(|(t, _)| *t < cutoff)
        };
        // The usual case (events in order, the window ending at the newest)
        // needs no second search: every item is at or before `now`.
        let hi = if self.newest().is_some_and(|n| n <= now) {
            self.items.len()
        } else {
            self.items.partition_point(|(t, _)| *t <= now)
        };
        (lo, hi.max(lo))
    }

    pub fn newest(&self) -> Option<Micros> {
        self.items.back().map(|(t, _)| *t)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }
}

/// A map of key → [`Recent`], with idle-key eviction.
#[derive(Clone, Debug)]
pub struct KeyedWindows<K, T> {
    map: FastMap<K, Recent<T>>,
    cap: usize,
}

impl<K: Hash + Eq, T> KeyedWindows<K, T> {
    pub fn new(cap_per_key: usize) -> Self {
        KeyedWindows {
            map: FastMap::default(),
            cap: cap_per_key,
        }
    }

    pub fn push(&mut self, key: K, at: Micros, item: T) -> &Recent<T> {
        let cap = self.cap;
        let r = self.map.entry(key).or_insert_with(|| Recent::new(cap));
        r.push(at, item);
        r
    }

    pub fn get(&self, key: &K) -> Option<&Recent<T>> {
        self.map.get(key)
    }

    /// Drops keys whose newest observation is older than `horizon`.
    pub fn evict_idle(&mut self, horizon: Micros) {
        self.map
            .retain(|_, r| r.newest().is_some_and(|t| t >= horizon));
    }

    pub fn keys(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn t(s: i64) -> Micros {
        (1_700_000_000 + s) * 1_000_000
    }

    #[test]
    fn keeps_only_cap_most_recent() {
        let mut r = Recent::new(3);
        for s in 0..10 {
            r.push(t(s), s);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(
            r.within(t(9), secs(100)).map(|x| x.1).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
    }

    #[test]
    fn window_is_inclusive_and_bounded_by_now() {
        let mut r = Recent::new(10);
        for s in [0, 30, 60, 61] {
            r.push(t(s), ());
        }
        assert_eq!(r.count_within(t(60), secs(60)), 3);
        // A late observation sees the window that ends at the newest one.
        assert_eq!(
            r.count_latest(t(0), secs(60)),
            r.count_within(r.end(t(0)), secs(60))
        );
        assert_eq!(r.count_within(t(61), secs(60)), 3);
    }

    #[test]
    fn out_of_order_arrivals_are_sorted() {
        let mut r = Recent::new(5);
        for s in [10, 5, 20, 15] {
            r.push(t(s), s);
        }
        assert_eq!(
            r.within(t(20), secs(100)).map(|x| x.1).collect::<Vec<_>>(),
            vec![5, 10, 15, 20]
        );
    }

    #[test]
    fn idle_keys_are_dropped() {
        let mut w = KeyedWindows::new(4);
        w.push("a", t(0), ());
        w.push("b", t(500), ());
        w.evict_idle(t(100));
        assert_eq!(w.keys(), 1);
        assert!(w.get(&"b").is_some());
    }

    proptest::proptest! {
        #[test]
        fn counts_and_ranges_match_a_plain_scan(
            times in proptest::collection::vec(0i64..200, 0..40),
            now in -10i64..260,
            window in 0i64..120,
        ) {
            let mut r = Recent::new(64);
            for t in &times {
                r.push(*t, ());
            }
            let mut sorted = times.clone();
            sorted.sort_unstable();
            let want: Vec<i64> = sorted
                .iter()
                .copied()
                .filter(|t| *t >= now - window && *t <= now)
                .collect();
            proptest::prop_assert_eq!(r.count_within(now, window), want.len());
            let got: Vec<i64> = r.within(now, window).map(|x| x.0).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}

//! The event ids the gateway accepted in the last 7 days, for idempotency.
//!
//! Every accepted event adds a key, so this set holds a week of traffic:
//! 60M keys at 100 events/s. Each key is one 8-byte slot: the id's whole
//! 64-bit digest ([`crate::store::idempotency_key`], SHA-256) less the 8
//! bits that chose its table, and 8 bits of its expiry hour, in
//! open-addressing tables (linear probing, at most 3/4 full: 11–21 bytes
//! per key, ~14 on average). A `HashMap` of 128-bit digests took ~40 bytes
//! per key, and the store's ids loaded as strings ~110 at start (5M keys:
//! 550 MB resident); a week at 100 events/s would not have fitted these
//! machines' memory after a restart.
//!
//! Pauses: the keys are spread over [`SHARDS`] tables by digest; each grows
//! alone (1/256 of the keys move), and expired keys are dropped one table
//! per engine call, never all at once.
//!
//! False duplicates: a new id is refused as a duplicate when its 64 bits
//! equal those of any id held (the search starts from bits of the digest,
//! so every held key with the same digest is on its path). With `n` ids
//! held that is a chance of `n / 2^64` per event, so a week at `r` events/s
//! refuses about `(r · 604 800)^2 / 2^64` legitimate events: 0.0002 at 100
//! events/s, 0.02 at 1 000 (6·10^8 ids, ~8 GB of slots, about what these
//! machines can hold). Slots used to keep 46 bits of digest with a minute
//! of expiry, 54 bits with the table's: 1 024 times as many, ~20 refused
//! events a week at 1 000 events/s. The expiry is kept to the hour to make
//! room, so a key is held up to an hour past its 7 days, never less.
//!
//! SHA-256 rather than a fast hash: ids come from producers, and a
//! producer able to make ids collide could get another's event refused as
//! a duplicate. Matching a given id's 64 bits takes ~2^64 hashes.

use chrono::{DateTime, Utc};

/// Tables the keys are spread over (by the top byte of their digest).
pub const SHARDS: usize = 256;

/// Bits of a slot that hold the expiry hour (modulo 2^8, ~10.7 days).
const EXP_BITS: u32 = 8;
const EXP_MASK: u64 = (1 << EXP_BITS) - 1;
/// Bits of the digest kept: all but the top byte, which chooses the table.
const FP_BITS: u32 = 64 - EXP_BITS;

/// A table not purged for this many hours is purged before its next
/// lookup. So every key in a table was added at most this long after the
/// table's last purge, and expires within `STALE_HOURS` + the TTL of it:
/// less than the expiry counter's cycle, so 8 bits read against the
/// purge's hour give the whole expiry (see [`expiry_of`]).
const STALE_HOURS: u32 = 24;

const _: () = assert!(
    (crate::engine::IDEMPOTENCY_TTL_SECS / 3600 + 1 + STALE_HOURS as i64) < (1i64 << EXP_BITS)
);

/// Accepted event ids with their expiry.
pub struct SeenIds {
    shards: Vec<Table>,
}

/// What [`SeenIds::admit`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Not seen (or expired): recorded now.
    New,
    /// Seen and not expired.
    Duplicate,
}

/// The table a key lives in.
fn shard_of(key: u64) -> usize {
    (key >> 56) as usize
}

/// The kept bits of a key (all below the table's byte); never 0, which
/// marks an empty slot.
fn fingerprint(key: u64) -> u64 {
    (key & ((1 << FP_BITS) - 1)).max(1)
}

fn fp_of(slot: u64) -> u64 {
    slot >> EXP_BITS
}

/// Hours since the epoch, rounded up: a key never expires early.
fn expiry_hour(t: DateTime<Utc>) -> u32 {
    let secs = t.timestamp().max(0);
    u32::try_from((secs + 3599) / 3600).unwrap_or(u32::MAX)
}

/// Hours since the epoch, rounded down.
fn hour(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp().max(0) / 3600).unwrap_or(u32::MAX)
}

/// The expiry hour of a slot in a table last purged at hour `base`: the
/// first hour after `base` with the slot's 8 bits.
fn expiry_of(slot: u64, base: u32) -> u32 {
    let ahead = ((slot & EXP_MASK) as u32).wrapping_sub(base) & EXP_MASK as u32;
    base.wrapping_add(ahead)
}

/// One open-addressing table (linear probing; 0 is an empty slot).
#[derive(Default)]
struct Table {
    slots: Vec<u64>,
    len: usize,
    /// Hour of the last purge: every key expires after it.
    purged: u32,
}

impl Table {
    fn home(&self, fp: u64) -> usize {
        (fp as usize) & (self.slots.len() - 1)
    }

    /// `Ok(index)` of the key's slot, or `Err(index)` of the empty slot
    /// where it would go. The table must have a free slot.
    fn find(&self, fp: u64) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(fp);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return Err(i);
            }
            if fp_of(s) == fp {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts a slot at the first empty place from its home (the key must
    /// not be in the table already).
    fn place(&mut self, slot: u64) {
        if let Err(i) = self.find(fp_of(slot)) {
            self.slots[i] = slot;
        }
    }

    /// Room for one more key at most 3/4 full.
    fn reserve_one(&mut self) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.resize((self.slots.len() * 2).max(16));
        }
    }

    fn resize(&mut self, capacity: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; capacity]);
        for s in old.into_iter().filter(|s| *s != 0) {
            self.place(s);
        }
    }

    /// Empties slot `i`, moving back the keys after it that would
    /// otherwise no longer be found (Knuth's algorithm R).
    fn remove_at(&mut self, mut i: usize) {
        let mask = self.slots.len() - 1;
        self.slots[i] = 0;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                return;
            }
            let h = self.home(fp_of(s));
            // The key stays if its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !stays {
                self.slots[i] = s;
                self.slots[j] = 0;
                i = j;
            }
        }
    }

    /// Drops the expired keys in one sweep: starting after an empty slot,
    /// every key is taken out and put back from its home, so it lands at
    /// or before where it was and no key is cut off from its home by the
    /// holes the dropped ones leave. Shrinks a table left mostly empty.
    fn purge(&mut self, now: u32) {
        let base = self.purged;
        self.purged = now.max(base);
        if self.len == 0 {
            self.slots = Vec::new();
            return;
        }
        let cap = self.slots.len();
        let mask = cap - 1;
        // The table is at most 3/4 full, so there is an empty slot.
        let start = self.slots.iter().position(|s| *s == 0).unwrap_or(0);
        for step in 1..=cap {
            let i = (start + step) & mask;
            let s = self.slots[i];
            if s == 0 {
                continue;
            }
            self.slots[i] = 0;
            if expiry_of(s, base) <= now {
                self.len -= 1;
                continue;
            }
            self.place(s);
        }
        if cap > 16 && self.len * 8 < cap {
            let want = (self.len * 2).next_power_of_two().max(16);
            self.resize(want);
        }
    }
}

impl SeenIds {
    /// An empty set at `now`.
    pub fn new(now: DateTime<Utc>) -> SeenIds {
        let purged = hour(now);
        SeenIds {
            shards: (0..SHARDS)
                .map(|_| Table {
                    purged,
                    ..Table::default()
                })
                .collect(),
        }
    }

    /// Adds a key loaded from the store; a key listed twice keeps its
    /// later expiry.
    pub fn load(&mut self, key: u64, expires: DateTime<Utc>) {
        let fp = fingerprint(key);
        let exp = u64::from(expiry_hour(expires)) & EXP_MASK;
        let t = &mut self.shards[shard_of(key)];
        t.reserve_one();
        match t.find(fp) {
            Ok(i) => {
                let slot = fp << EXP_BITS | exp;
                if expiry_of(slot, t.purged) > expiry_of(t.slots[i], t.purged) {
                    t.slots[i] = slot;
                }
            }
            Err(i) => {
                t.slots[i] = fp << EXP_BITS | exp;
                t.len += 1;
            }
        }
    }

    /// Records `key` as accepted until `expires` unless it is already in
    /// force at `now`.
    pub fn admit(&mut self, key: u64, now: DateTime<Utc>, expires: DateTime<Utc>) -> Admit {
        let now = hour(now);
        let fp = fingerprint(key);
        let slot = fp << EXP_BITS | (u64::from(expiry_hour(expires)) & EXP_MASK);
        let t = &mut self.shards[shard_of(key)];
        if now.saturating_sub(t.purged) > STALE_HOURS {
            t.purge(now);
        }
        t.reserve_one();
        match t.find(fp) {
            Ok(i) => {
                if expiry_of(t.slots[i], t.purged) > now {
                    return Admit::Duplicate;
                }
                t.slots[i] = slot;
            }
            Err(i) => {
                t.slots[i] = slot;
                t.len += 1;
            }
        }
        Admit::New
    }

    /// Asks the CPU to load the slot where `key`'s search starts, so a run
    /// of lookups waits for memory once, not once per key: the set is tens
    /// of megabytes and each lookup otherwise misses the cache (that stall
    /// was ~45 % of the engine's own time on batches; ~11 % with this).
    pub fn prefetch(&self, key: u64) {
        let t = &self.shards[shard_of(key)];
        if t.slots.is_empty() {
            return;
        }
        let slot = &t.slots[t.home(fingerprint(key))];
        // SAFETY: a prefetch is only a hint: it never faults and changes
        // nothing the program can observe; the address is a live slot.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (slot as *const u64).cast::<i8>(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// Forgets `key` (its event was refused after all).
    pub fn forget(&mut self, key: u64) {
        let fp = fingerprint(key);
        let t = &mut self.shards[shard_of(key)];
        if t.slots.is_empty() {
            return;
        }
        if let Ok(i) = t.find(fp) {
            t.remove_at(i);
        }
    }

    /// Drops the expired keys of one table (`shard` modulo [`SHARDS`]).
    pub fn purge_shard(&mut self, shard: usize, now: DateTime<Utc>) {
        self.shards[shard % SHARDS].purge(hour(now));
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum()
    }

    /// Bytes of slots allocated.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.slots.len() * 8).sum()
    }

    /// The largest table (its growth is the longest pause).
    #[cfg(test)]
    pub fn largest_shard(&self) -> usize {
        self.shards.iter().map(|s| s.len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::idempotency_key as key;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const HOUR: i64 = 3_600;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_key_is_a_duplicate_until_it_expires_never_before() {
        let mut s = SeenIds::new(t(0));
        let week = 7 * 86_400;
        assert_eq!(s.admit(key("evt-1"), t(0), t(week)), Admit::New);
        assert_eq!(s.admit(key("evt-1"), t(1), t(week + 1)), Admit::Duplicate);
        assert_eq!(s.admit(key("evt-1"), t(week - 1), t(0)), Admit::Duplicate);
        // Rounded up to the hour: at most an hour late, never early.
        assert_eq!(
            s.admit(key("evt-1"), t(week + 3600), t(2 * week)),
            Admit::New
        );
        assert_eq!(s.admit(key("evt-2"), t(0), t(week)), Admit::New);
        assert_eq!(s.len(), 2);
        s.forget(key("evt-2"));
        assert_eq!(s.admit(key("evt-2"), t(0), t(week)), Admit::New);
    }

    #[test]
    fn loaded_keys_count_once_and_purging_drops_only_expired_ones() {
        let mut s = SeenIds::new(t(0));
        for i in 0..10_000 {
            s.load(
                key(&format!("id-{i}")),
                t(if i % 2 == 0 { 2 * HOUR } else { 30 * HOUR }),
            );
        }
        s.load(key("id-1"), t(HOUR / 2));
        assert_eq!(s.len(), 10_000);
        assert_eq!(
            s.admit(key("id-1"), t(3 * HOUR), t(99 * HOUR)),
            Admit::Duplicate,
            "the later expiry of a repeated key wins"
        );
        let before = s.bytes();
        for shard in 0..SHARDS {
            s.purge_shard(shard, t(5 * HOUR));
        }
        assert_eq!(s.len(), 5_000);
        assert!(s.bytes() <= before);
        for i in 0..10_000 {
            let want = if i % 2 == 0 {
                Admit::New
            } else {
                Admit::Duplicate
            };
            assert_eq!(
                s.admit(key(&format!("id-{i}")), t(5 * HOUR), t(99 * HOUR)),
                want,
                "id-{i}"
            );
        }
        // Spread evenly: no table holds much more than its share.
        assert!(
            s.largest_shard() < 3 * 10_000 / SHARDS,
            "{}",
            s.largest_shard()
        );
    }

    #[test]
    fn a_key_that_expired_while_nothing_came_is_not_taken_for_a_live_one() {
        let mut s = SeenIds::new(t(0));
        let day = 86_400;
        assert_eq!(s.admit(key("old"), t(0), t(7 * day)), Admit::New);
        // 12 days later nothing has purged the table. Modulo the expiry
        // counter's cycle (256 hours, ~10.7 days) the old expiry reads as
        // ~5.7 days ahead; the key must still count as expired.
        assert_eq!(s.admit(key("old"), t(12 * day), t(19 * day)), Admit::New);
        assert_eq!(
            s.admit(key("old"), t(12 * day + 1), t(19 * day)),
            Admit::Duplicate
        );
    }

    #[test]
    fn ids_whose_digests_differ_in_any_one_bit_are_different_ids() {
        // Every bit of the 64-bit digest counts: the top 8 choose the
        // table, the other 56 are kept. (Slots that kept 46 bits took
        // digests differing only in their low 10 bits for one id.)
        let base = 0x5555_5555_5555_5555_u64;
        for bit in 0..64 {
            let mut s = SeenIds::new(t(0));
            let other = base ^ (1 << bit);
            assert_eq!(s.admit(base, t(0), t(86_400)), Admit::New);
            assert_eq!(s.admit(other, t(0), t(86_400)), Admit::New, "bit {bit}");
            assert_eq!(s.admit(other, t(1), t(86_400)), Admit::Duplicate);
            assert_eq!(s.admit(base, t(1), t(86_400)), Admit::Duplicate);
            s.forget(other);
            assert_eq!(
                s.admit(base, t(2), t(86_400)),
                Admit::Duplicate,
                "bit {bit}"
            );
        }
        // Loaded from the store the same.
        let mut s = SeenIds::new(t(0));
        s.load(base, t(86_400));
        for bit in 0..64 {
            assert_eq!(s.admit(base ^ (1 << bit), t(0), t(86_400)), Admit::New);
        }
    }

    #[test]
    fn a_week_of_keys_takes_about_14_bytes_each() {
        let mut s = SeenIds::new(t(0));
        let n = 300_000;
        for i in 0..n {
            s.admit(key(&format!("k-{i}")), t(0), t(7 * 86_400));
        }
        let per_key = s.bytes() as f64 / n as f64;
        assert!(
            (8.0..=22.0).contains(&per_key),
            "{per_key:.1} bytes per key"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit(u16, u16),
        Forget(u16),
        Purge(u8),
        Tick(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u16..600, 1u16..400).prop_map(|(k, ttl)| Op::Admit(k, ttl)),
            2 => (0u16..600).prop_map(Op::Forget),
            1 => any::<u8>().prop_map(Op::Purge),
            1 => (0u16..300).prop_map(Op::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Against a plain map with the same rules: every admit answers
        /// the same, whatever mix of inserts, removals (which move keys
        /// back), purges (which move keys and shrink tables) and time.
        /// Keys share one table so probe runs are long and wrap around.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..400)) {
            let mut s = SeenIds::new(t(0));
            let mut model: HashMap<u64, u32> = HashMap::new();
            let mut now = 0i64;
            // One table (top byte 0); the rest of the key varies.
            let k = |i: u16| u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 8;
            for op in ops {
                match op {
                    Op::Admit(i, ttl) => {
                        let exp = t(now + i64::from(ttl) * 60);
                        let hour_now = hour(t(now));
                        let want = match model.get(&k(i)) {
                            Some(e) if *e > hour_now => Admit::Duplicate,
                            _ => {
                                model.insert(k(i), expiry_hour(exp));
                                Admit::New
                            }
                        };
                        prop_assert_eq!(s.admit(k(i), t(now), exp), want);
                    }
                    Op::Forget(i) => {
                        s.forget(k(i));
                        model.remove(&k(i));
                    }
                    Op::Purge(sh) => {
                        s.purge_shard(sh as usize, t(now));
                        if sh == 0 {
                            let h = hour(t(now));
                            model.retain(|_, e| *e > h);
                        }
                    }
                    // Up to an hour a tick: keys expire, and tables go
                    // unpurged for long, within a run.
                    Op::Tick(secs) => now += i64::from(secs) * 12,
                }
            }
            let h = hour(t(now));
            s.purge_shard(0, t(now));
            model.retain(|_, e| *e > h);
            prop_assert_eq!(s.len(), model.len());
        }
    }
}

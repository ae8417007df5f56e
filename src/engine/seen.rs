//! The event ids the gateway accepted in the last 7 days, for idempotency.
//!
//! Every accepted event adds a key, so this set holds a week of traffic:
//! 60M keys at 100 events/s. Each key is one 8-byte slot: 46 bits of the
//! id's digest ([`crate::store::idempotency_key`], SHA-256) and 18 bits of
//! its expiry minute, in open-addressing tables (linear probing, at most
//! 3/4 full: 11–21 bytes per key, ~14 on average). A `HashMap` of 128-bit
//! digests took ~40 bytes per key, and the store's ids loaded as strings
//! ~110 at start (5M keys: 550 MB resident); a week at 100 events/s would
//! not have fitted these machines' memory after a restart.
//!
//! Pauses: the keys are spread over [`SHARDS`] tables by digest; each grows
//! alone (1/256 of the keys move), and expired keys are dropped one table
//! per engine call, never all at once.
//!
//! SHA-256 rather than a fast hash: ids come from producers, and a
//! producer able to make ids collide could get another's event refused as
//! a duplicate. An accidental match needs 46 equal bits (plus the 8 of the
//! table): with ~8 slots compared per lookup, about one false refusal in
//! 10^13 lookups (a week at 1 000 events/s makes 6·10^8).

use chrono::{DateTime, Utc};

/// Tables the keys are spread over (by the top byte of their digest).
pub const SHARDS: usize = 256;

/// Bits of a slot that hold the expiry minute (modulo 2^18, ~182 days).
const EXP_BITS: u32 = 18;
const EXP_MASK: u64 = (1 << EXP_BITS) - 1;
/// Bits of the digest kept (bits 10..56: the top byte chooses the table).
const FP_BITS: u32 = 46;

/// A table not purged for this long is purged before its next lookup.
/// So every key in a table was added at most this long after the table's
/// last purge, and expires within `STALE_MINUTES` + the TTL of it: less
/// than the expiry counter's cycle, so 18 bits read against the purge's
/// minute give the whole expiry (see [`expiry_of`]).
const STALE_MINUTES: u32 = 24 * 60;

const _: () = assert!(
    (crate::engine::IDEMPOTENCY_TTL_SECS / 60 + 1 + STALE_MINUTES as i64) < (1i64 << EXP_BITS)
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

/// The kept bits of a key; never 0, which marks an empty slot.
fn fingerprint(key: u64) -> u64 {
    ((key >> 10) & ((1 << FP_BITS) - 1)).max(1)
}

fn fp_of(slot: u64) -> u64 {
    slot >> EXP_BITS
}

/// Minutes since the epoch, rounded up: a key never expires early.
fn expiry_minute(t: DateTime<Utc>) -> u32 {
    let secs = t.timestamp().max(0);
    u32::try_from((secs + 59) / 60).unwrap_or(u32::MAX)
}

/// Minutes since the epoch, rounded down.
fn minute(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp().max(0) / 60).unwrap_or(u32::MAX)
}

/// The expiry minute of a slot in a table last purged at minute `base`:
/// the first minute after `base` with the slot's 18 bits.
fn expiry_of(slot: u64, base: u32) -> u32 {
    let ahead = ((slot & EXP_MASK) as u32).wrapping_sub(base) & EXP_MASK as u32;
    base.wrapping_add(ahead)
}

/// One open-addressing table (linear probing; 0 is an empty slot).
#[derive(Default)]
struct Table {
    slots: Vec<u64>,
    len: usize,
    /// Minute of the last purge: every key expires after it.
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
        let purged = minute(now);
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
        let exp = u64::from(expiry_minute(expires)) & EXP_MASK;
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
        let now = minute(now);
        let fp = fingerprint(key);
        let slot = fp << EXP_BITS | (u64::from(expiry_minute(expires)) & EXP_MASK);
        let t = &mut self.shards[shard_of(key)];
        if now.saturating_sub(t.purged) > STALE_MINUTES {
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
        self.shards[shard % SHARDS].purge(minute(now));
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
        // Rounded up to the minute: at most a minute late, never early.
        assert_eq!(s.admit(key("evt-1"), t(week + 60), t(2 * week)), Admit::New);
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
                t(if i % 2 == 0 { 100 } else { 10_000 }),
            );
        }
        s.load(key("id-1"), t(5));
        assert_eq!(s.len(), 10_000);
        assert_eq!(
            s.admit(key("id-1"), t(200), t(99_999)),
            Admit::Duplicate,
            "the later expiry of a repeated key wins"
        );
        let before = s.bytes();
        for shard in 0..SHARDS {
            s.purge_shard(shard, t(1_000));
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
                s.admit(key(&format!("id-{i}")), t(1_000), t(99_999)),
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
        // 185 days later nothing has purged the table. Modulo the expiry
        // counter's cycle (~182 days) the old expiry reads as 4 days
        // ahead; the key must still count as expired.
        assert_eq!(s.admit(key("old"), t(185 * day), t(192 * day)), Admit::New);
        assert_eq!(
            s.admit(key("old"), t(185 * day + 1), t(192 * day)),
            Admit::Duplicate
        );
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
                        let minute_now = minute(t(now));
                        let want = match model.get(&k(i)) {
                            Some(e) if *e > minute_now => Admit::Duplicate,
                            _ => {
                                model.insert(k(i), expiry_minute(exp));
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
                            let m = minute(t(now));
                            model.retain(|_, e| *e > m);
                        }
                    }
                    Op::Tick(secs) => now += i64::from(secs),
                }
            }
            let m = minute(t(now));
            s.purge_shard(0, t(now));
            model.retain(|_, e| *e > m);
            prop_assert_eq!(s.len(), model.len());
        }
    }
}

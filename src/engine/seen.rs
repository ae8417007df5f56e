//! The event ids the gateway accepted in the last 7 days, for idempotency.
//!
//! Every accepted event adds a key, so this set grows with the traffic of
//! a week: millions of keys at a few events a second, billions under load.
//! Two things follow. Memory: a key is kept as the first 128 bits of the
//! SHA-256 of the id plus its expiry in minutes (24 bytes in its table,
//! no allocation per key) instead of the id itself (a `String` with its
//! heap block): after 1.7M events at c16 (quiet mix) the server's peak RSS
//! was 249 MB instead of 357 MB, 65 bytes less per key. Pauses: one hash table doubles, moving every
//! key, under the engine's lock: 0.13 s at 0.9M keys, 0.3 s at 1.8M, and
//! twice that each time after. So the keys are spread over [`SHARDS`]
//! tables by hash; each grows alone (1/256 of the pause), and expired keys
//! are dropped one table per engine call, never all at once.
//!
//! SHA-256 rather than a fast keyed hash: ids come from producers, and a
//! producer able to make two ids collide could get another's event refused
//! as a duplicate. Truncated to 128 bits, an accidental collision among
//! 10^12 keys has odds of about 10^-15.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::util::FastMap;

/// Tables the keys are spread over (by the top byte of their hash).
pub const SHARDS: usize = 256;

/// Accepted event ids with their expiry.
pub struct SeenIds {
    shards: Vec<FastMap<Key, u32>>,
}

/// What [`SeenIds::admit`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Not seen (or expired): recorded now.
    New,
    /// Seen and not expired.
    Duplicate,
}

/// 128 bits of digest as two words: 8-byte alignment keeps an entry at
/// 24 bytes (a `u128` key would pad it to 32).
type Key = (u64, u64);

fn digest(id: &str) -> Key {
    let d = Sha256::digest(id.as_bytes());
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&d[..8]);
    b.copy_from_slice(&d[8..16]);
    (u64::from_le_bytes(a), u64::from_le_bytes(b))
}

/// The table a key lives in.
fn shard_of(k: Key) -> usize {
    (k.1 >> 56) as usize
}

/// Minutes since the epoch, rounded up: a key never expires early.
fn expiry_minute(t: DateTime<Utc>) -> u32 {
    let secs = t.timestamp().max(0);
    u32::try_from((secs + 59) / 60).unwrap_or(u32::MAX)
}

/// Whether a key expiring at minute `exp` is still in force at `now`.
fn live(exp: u32, now: DateTime<Utc>) -> bool {
    i64::from(exp) * 60 > now.timestamp()
}

impl Default for SeenIds {
    fn default() -> Self {
        SeenIds {
            shards: (0..SHARDS).map(|_| FastMap::default()).collect(),
        }
    }
}

impl SeenIds {
    /// The keys of a store (id, expiry), as loaded at start.
    pub fn from_keys(keys: impl IntoIterator<Item = (String, DateTime<Utc>)>) -> SeenIds {
        let mut s = SeenIds::default();
        for (id, exp) in keys {
            let h = digest(&id);
            let e = expiry_minute(exp);
            let shard = &mut s.shards[shard_of(h)];
            // A key listed twice keeps its later expiry.
            if let Some(old) = shard.insert(h, e)
                && old > e
            {
                shard.insert(h, old);
            }
        }
        s
    }

    /// Records `id` as accepted until `expires` unless it is already in
    /// force at `now`.
    pub fn admit(&mut self, id: &str, now: DateTime<Utc>, expires: DateTime<Utc>) -> Admit {
        let h = digest(id);
        let shard = &mut self.shards[shard_of(h)];
        match shard.entry(h) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if live(*o.get(), now) {
                    return Admit::Duplicate;
                }
                o.insert(expiry_minute(expires));
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(expiry_minute(expires));
            }
        }
        Admit::New
    }

    /// Forgets `id` (its event was refused after all).
    pub fn forget(&mut self, id: &str) {
        let h = digest(id);
        self.shards[shard_of(h)].remove(&h);
    }

    /// Drops the expired keys of one table (`shard` modulo [`SHARDS`]).
    pub fn purge_shard(&mut self, shard: usize, now: DateTime<Utc>) {
        self.shards[shard % SHARDS].retain(|_, exp| live(*exp, now));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// The largest table (its growth is the longest pause).
    #[cfg(test)]
    pub fn largest_shard(&self) -> usize {
        self.shards.iter().map(|s| s.len()).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_key_is_a_duplicate_until_it_expires_never_before() {
        let mut s = SeenIds::default();
        let week = 7 * 86_400;
        assert_eq!(s.admit("evt-1", t(0), t(week)), Admit::New);
        assert_eq!(s.admit("evt-1", t(1), t(week + 1)), Admit::Duplicate);
        assert_eq!(s.admit("evt-1", t(week - 1), t(0)), Admit::Duplicate);
        // Rounded up to the minute: at most a minute late, never early.
        assert_eq!(s.admit("evt-1", t(week + 60), t(2 * week)), Admit::New);
        assert_eq!(s.admit("evt-2", t(0), t(week)), Admit::New);
        assert_eq!(s.len(), 2);
        s.forget("evt-2");
        assert_eq!(s.admit("evt-2", t(0), t(week)), Admit::New);
    }

    #[test]
    fn loaded_keys_count_once_and_purging_drops_only_expired_ones() {
        let keys =
            (0..10_000).map(|i| (format!("id-{i}"), t(if i % 2 == 0 { 100 } else { 10_000 })));
        let mut s = SeenIds::from_keys(keys.chain([("id-1".to_string(), t(5))]));
        assert_eq!(s.len(), 10_000);
        assert_eq!(
            s.admit("id-1", t(200), t(99_999)),
            Admit::Duplicate,
            "the later expiry of a repeated key wins"
        );
        for shard in 0..SHARDS {
            s.purge_shard(shard, t(1_000));
        }
        assert_eq!(s.len(), 5_000);
        assert_eq!(s.admit("id-0", t(1_000), t(99_999)), Admit::New);
        assert_eq!(s.admit("id-3", t(1_000), t(99_999)), Admit::Duplicate);
        // Spread evenly: no table holds much more than its share.
        assert!(
            s.largest_shard() < 3 * 5_000 / SHARDS,
            "{}",
            s.largest_shard()
        );
    }
}

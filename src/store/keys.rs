//! Idempotency keys: digests of event ids, stored many to a row (blocks),
//! and read back at start.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Digest;

use super::*;

/// Idempotency keys stored as rows of many keys (schema v5): each key as
/// 16 bytes, the key and its expiry (ms since the epoch), both
/// little-endian. A row per key cost ~5 % of the batch ingest rate, and a
/// row per group commit ~7 % of `/ingest` at concurrency 16 (schema v7:
/// see [`KEYS_PER_BLOCK`]).
#[derive(Default)]
pub(super) struct KeyBlock {
    pub(super) bytes: Vec<u8>,
    /// The latest expiry in the block: the row goes once it has passed.
    pub(super) expires_at: i64,
}

impl KeyBlock {
    pub(super) fn push(&mut self, key: u64, expires_at: i64) {
        if self.bytes.is_empty() || expires_at > self.expires_at {
            self.expires_at = expires_at;
        }
        self.bytes.extend_from_slice(&key.to_le_bytes());
        self.bytes.extend_from_slice(&expires_at.to_le_bytes());
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.bytes.len() / KEY_BYTES
    }

    pub(super) fn extend(&mut self, other: &KeyBlock) {
        if !other.bytes.is_empty() {
            if self.bytes.is_empty() || other.expires_at > self.expires_at {
                self.expires_at = other.expires_at;
            }
            self.bytes.extend_from_slice(&other.bytes);
        }
    }
}

/// Keys committed but not yet in a block: recoverable meanwhile from their
/// events' rows (past `idempotency_meta.through_rowid`), and written as
/// blocks, in a group's own transaction, once this many are held or with
/// the first group [`KEYS_EVERY`] after the last write; also before
/// retention deletes events, with a [`WriteOp::Flush`] and when the writer
/// stops.
pub(super) const KEYS_PER_BLOCK: usize = 4096;
pub(super) const KEYS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes each of `blocks` that holds keys as a block and moves the
/// watermark to the newest event row, in `tx`: every event up to it then
/// has its key in a block.
pub(super) fn write_keys(
    tx: &rusqlite::Transaction<'_>,
    blocks: &[&KeyBlock],
) -> Result<(), StoreError> {
    for b in blocks.iter().filter(|b| !b.bytes.is_empty()) {
        tx.prepare_cached("INSERT INTO idempotency_blocks (expires_at, keys) VALUES (?1, ?2)")?
            .execute(params![b.expires_at, b.bytes])?;
    }
    tx.prepare_cached(
        "UPDATE idempotency_meta SET through_rowid = COALESCE((SELECT max(rowid) FROM events), 0)",
    )?
    .execute([])?;
    Ok(())
}

/// Bytes per key in an `idempotency_blocks` row.
pub(super) const KEY_BYTES: usize = 16;

/// The key an event id is remembered by, here and in the engine's key
/// set: the first 8 bytes of its SHA-256 (little-endian). A digest rather
/// than the id keeps a week of keys small (a row of two integers; 8 bytes
/// in memory) and lets a restart load them without hashing each id again.
pub fn idempotency_key(event_id: &str) -> u64 {
    let d = sha2::Sha256::digest(event_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

/// Calls `f` with each idempotency key still in force at `now` and its
/// expiry, in the order they were stored, without holding them all.
pub fn for_each_idempotency_key(
    conn: &Connection,
    now: DateTime<Utc>,
    mut f: impl FnMut(u64, DateTime<Utc>),
) -> Result<(), StoreError> {
    let now_time = now;
    let now = ts(now);
    let mut stmt = conn.prepare_cached(
        "SELECT keys FROM idempotency_blocks WHERE expires_at > ?1 ORDER BY rowid",
    )?;
    let mut rows = stmt.query(params![now])?;
    while let Some(row) = rows.next()? {
        let keys = row
            .get_ref(0)?
            .as_blob()
            .map_err(|e| StoreError::Corrupt(format!("idempotency block: {e}")))?;
        if keys.len() % KEY_BYTES != 0 {
            return Err(StoreError::Corrupt(format!(
                "an idempotency block of {} bytes (not a multiple of {KEY_BYTES})",
                keys.len()
            )));
        }
        for k in keys.chunks_exact(KEY_BYTES) {
            let (key, exp) = k.split_at(8);
            let key = u64::from_le_bytes(key.try_into().unwrap_or_default());
            let exp = i64::from_le_bytes(exp.try_into().unwrap_or_default());
            if exp <= now {
                continue;
            }
            let exp = DateTime::from_timestamp_millis(exp)
                .ok_or_else(|| StoreError::Corrupt(format!("expiry {exp}")))?;
            f(key, exp);
        }
    }
    // Events stored since the last block: their keys from their rows, kept
    // for the TTL from when they were received (a minute more, so never
    // less than the engine gave them; from now if not recorded).
    let through: i64 = conn
        .query_row("SELECT through_rowid FROM idempotency_meta", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    let ttl = chrono::Duration::seconds(IDEMPOTENCY_TTL_SECS + 60);
    let mut stmt = conn.prepare("SELECT event_id, received FROM events WHERE rowid > ?1")?;
    let mut rows = stmt.query(params![through])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let received: Option<i64> = row.get(1)?;
        let from = received
            .and_then(DateTime::from_timestamp_micros)
            .unwrap_or(now_time);
        let exp = from + ttl;
        if exp > now_time {
            f(idempotency_key(&id), exp);
        }
    }
    Ok(())
}

/// How long an accepted event id is refused as a duplicate (the seed's 7
/// days).
pub const IDEMPOTENCY_TTL_SECS: i64 = 7 * 24 * 3600;

//! Retention: the oldest events and alerts beyond their bounds go, and
//! expired idempotency keys with them.

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};

use super::keys::*;
use super::*;

/// Events one retention pass deleted, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Deleted {
    /// Beyond `max_events`.
    pub(super) over_bound: u64,
    /// Within the bound but older than `max_age`.
    pub(super) aged: u64,
}

/// Drops the oldest events (by event time) beyond the limit, the oldest
/// alerts beyond theirs, and idempotency keys that have expired. `stored` is the writer's running count of event
/// rows, so no `COUNT(*)` over the table is needed.
pub(super) fn enforce_retention(
    conn: &mut Connection,
    r: Retention,
    stored: &mut u64,
    pending: &mut KeyBlock,
) -> Result<Deleted, StoreError> {
    let mut gone = Deleted::default();
    // Events past the age bound: a count along the (ts, event_id) index,
    // only as long as the run of old events (they go each time).
    let cutoff = r
        .max_age
        .and_then(|age| chrono::Duration::from_std(age).ok())
        .and_then(|age| Utc::now().checked_sub_signed(age));
    let aged: u64 = match cutoff {
        Some(c) => conn.query_row(
            "SELECT COUNT(*) FROM events INDEXED BY events_ts_id WHERE ts < ?1",
            params![c.timestamp_micros()],
            |row| row.get::<_, i64>(0),
        )? as u64,
        None => 0,
    };
    let excess = stored.saturating_sub(r.max_events).max(aged);
    if excess > 0 {
        // The events about to go may hold keys in no block yet: the pending
        // keys go to a block first, in the same transaction, and the
        // watermark moves to the newest row left (a rowid freed at the top
        // is reused by the next event, which must count as past it).
        let tx = conn.transaction()?;
        write_keys(&tx, &[pending])?;
        let conn = &*tx;
        // The newest row to go, then one range delete along the unique
        // (ts, event_id) index: exactly the `excess` oldest. Collecting
        // their rowids first (`rowid IN (SELECT … LIMIT n)`) cost ~60 %
        // more CPU, and at the bound every event stored is one deleted.
        let newest_to_go: Option<(i64, String)> = conn
            .query_row(
                "SELECT ts, event_id FROM events ORDER BY ts, event_id LIMIT 1 OFFSET ?1",
                params![i64::try_from(excess - 1).unwrap_or(i64::MAX)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        match newest_to_go {
            Some((ts, id)) => {
                let deleted = conn.execute(
                    "DELETE FROM events WHERE (ts, event_id) <= (?1, ?2)",
                    params![ts, id],
                )? as u64;
                let over_bound = stored.saturating_sub(r.max_events).min(deleted);
                gone = Deleted {
                    over_bound,
                    aged: deleted - over_bound,
                };
                *stored = stored.saturating_sub(deleted);
            }
            // Fewer rows than the count says (it is kept, not read): read
            // it again rather than delete everything.
            None => {
                *stored = conn.query_row("SELECT COUNT(*) FROM events", [], |row| {
                    row.get::<_, i64>(0)
                })? as u64;
            }
        }
        write_keys(&tx, &[])?;
        tx.commit()?;
        pending.clear();
    }
    // Alerts are rows in the order they opened (an update keeps its row):
    // everything below the newest `max_alerts` rowids goes, a leading run,
    // so this costs nothing until there is something to delete.
    conn.execute(
        "DELETE FROM alerts WHERE rowid <= (SELECT max(rowid) FROM alerts) - ?1",
        params![i64::try_from(r.max_alerts).unwrap_or(i64::MAX)],
    )?;
    if let Some(c) = cutoff {
        conn.execute("DELETE FROM alerts WHERE last_seen < ?1", params![ts(c)])?;
    }
    // Blocks are appended in order of expiry (accept time + a fixed TTL),
    // so the expired ones are a leading run: finding its end costs one row
    // per expired block, and nothing when none has expired.
    conn.execute(
        "DELETE FROM idempotency_blocks WHERE rowid < COALESCE(
             (SELECT rowid FROM idempotency_blocks WHERE expires_at > ?1 ORDER BY rowid LIMIT 1),
             (SELECT max(rowid) + 1 FROM idempotency_blocks))",
        params![Utc::now().timestamp_millis()],
    )?;
    Ok(gone)
}

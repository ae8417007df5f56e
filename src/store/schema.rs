//! Versioned schema migrations, tracked in SQLite's `user_version`.
//! Append a migration; never edit one that has shipped.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    "CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        ts INTEGER NOT NULL,            -- event time, µs since the epoch
        received INTEGER,               -- µs since the epoch
        host TEXT NOT NULL,
        source TEXT NOT NULL,
        category TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        severity INTEGER NOT NULL,
        user TEXT,
        src_ip TEXT,
        src_port INTEGER,
        dest_ip TEXT,
        dest_port INTEGER,
        process TEXT,
        pid INTEGER,
        http TEXT,                      -- JSON object or NULL
        message TEXT NOT NULL,
        attributes TEXT,                -- JSON object or NULL
        repeat INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX events_ts ON events (ts);
    CREATE INDEX events_host_ts ON events (host, ts);
    CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        rule_id TEXT NOT NULL,
        host TEXT NOT NULL,
        severity INTEGER NOT NULL,
        risk_score REAL NOT NULL,
        created INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        count INTEGER NOT NULL,
        user TEXT,
        src_ip TEXT,
        status TEXT NOT NULL DEFAULT 'open'
            CHECK (status IN ('open', 'acknowledged', 'true_positive', 'false_positive')),
        body TEXT NOT NULL
    );
    CREATE INDEX alerts_last_seen ON alerts (last_seen);
    CREATE INDEX alerts_status ON alerts (status);
    CREATE TABLE host_state (
        host TEXT PRIMARY KEY,
        body TEXT NOT NULL
    );
    CREATE TABLE ip_bans (
        ip TEXT PRIMARY KEY,
        until INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE idempotency (
        event_id TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX idempotency_expires ON idempotency (expires_at);
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY,
        alert_id TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('acknowledged', 'true_positive', 'false_positive', 'open')),
        note TEXT NOT NULL,
        by TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX feedback_alert ON feedback (alert_id);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL
    );",
    // 2: no random-key B-tree on the ingest path. Event ids are random
    // (producers' UUIDs), so an index led by them dirties one page per event
    // anywhere in the tree and every commit rewrote hundreds of pages to the
    // WAL. Events are now unique on (ts, event_id), which grows at its right
    // edge because events arrive roughly in time order; idempotency keys are
    // an append-only log (the engine keeps the lookup map in memory and
    // reloads it from the log at start).
    "CREATE TABLE events_v2 (
        event_id TEXT NOT NULL,
        ts INTEGER NOT NULL,            -- event time, µs since the epoch
        received INTEGER,               -- µs since the epoch
        host TEXT NOT NULL,
        source TEXT NOT NULL,
        category TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        severity INTEGER NOT NULL,
        user TEXT,
        src_ip TEXT,
        src_port INTEGER,
        dest_ip TEXT,
        dest_port INTEGER,
        process TEXT,
        pid INTEGER,
        http TEXT,                      -- JSON object or NULL
        message TEXT NOT NULL,
        attributes TEXT,                -- JSON object or NULL
        repeat INTEGER NOT NULL DEFAULT 1
    );
    INSERT INTO events_v2 SELECT event_id, ts, received, host, source, category, action, outcome,
        severity, user, src_ip, src_port, dest_ip, dest_port, process, pid, http, message,
        attributes, repeat FROM events ORDER BY ts;
    DROP TABLE events;
    ALTER TABLE events_v2 RENAME TO events;
    CREATE UNIQUE INDEX events_ts_id ON events (ts, event_id);
    CREATE INDEX events_host_ts ON events (host, ts);
    CREATE TABLE idempotency_log (
        event_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL     -- ms since the epoch
    );
    INSERT INTO idempotency_log (event_id, expires_at)
        SELECT event_id, expires_at FROM idempotency ORDER BY expires_at;
    DROP TABLE idempotency;",
    // 3: events are found by time ((ts, event_id)); a host's events in a
    // time window come from that index with a filter. The (host, ts) index
    // took a random page per event when a fleet reports at once, and cost a
    // third of the ingest rate on batches.
    "DROP INDEX events_host_ts;",
    // 4: idempotency keys as digests ([`super::idempotency_key`]), not ids:
    // a row of two integers instead of a 36-character UUID, and a restart
    // loads them without hashing each id. The rows of the log are re-keyed
    // by [`rekey_idempotency_log`] in the same transaction.
    "CREATE TABLE idempotency_keys (
        key INTEGER NOT NULL,           -- first 8 bytes of SHA-256(event_id), LE
        expires_at INTEGER NOT NULL     -- ms since the epoch
    );",
    // 5: one row of keys per group commit instead of a row per key (a row
    // per key cost ~5 % of the batch ingest rate); the keys of v4 are
    // moved into blocks by [`block_idempotency_keys`].
    "CREATE TABLE idempotency_blocks (
        expires_at INTEGER NOT NULL,    -- ms since the epoch: the latest of its keys'
        keys BLOB NOT NULL              -- per key 16 bytes: key, expiry (ms), both i64 LE
    );",
    // 6: no query reads alerts by status, but every new alert and every
    // analyst label wrote this index.
    "DROP INDEX alerts_status;",
    // 7: idempotency keys go to blocks a second (or 4 096 keys) at a time,
    // and before retention deletes events, rather than a row per group
    // commit (one WAL page in four at concurrency 16). The keys of events
    // stored since the last block are read back from the events themselves
    // at start: those past `through_rowid`. Every key so far is in a block.
    "CREATE TABLE idempotency_meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        through_rowid INTEGER NOT NULL  -- events past this rowid may have keys in no block
    );
    INSERT INTO idempotency_meta (id, through_rowid)
        VALUES (1, COALESCE((SELECT max(rowid) FROM events), 0));",
    // v7: where each followed file and the journal were read to, so a
    // restart resumes there instead of at the end (lines written while
    // vigil was stopped are read, not skipped).
    "CREATE TABLE source_positions (
        source TEXT PRIMARY KEY,   -- file:/abs/path, journald
        position TEXT NOT NULL,    -- JSON SourcePosition
        saved_at TEXT NOT NULL
    );",
];

/// Keys per block when v4's rows are moved into blocks.
const MIGRATED_BLOCK_KEYS: usize = 4096;

/// Migration 5's data step: moves `idempotency_keys` rows into
/// `idempotency_blocks`, in order, then drops the table.
fn block_idempotency_keys(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    {
        let mut read = tx.prepare("SELECT key, expires_at FROM idempotency_keys ORDER BY rowid")?;
        let mut write =
            tx.prepare("INSERT INTO idempotency_blocks (expires_at, keys) VALUES (?1, ?2)")?;
        let mut rows = read.query([])?;
        let mut block = Vec::with_capacity(MIGRATED_BLOCK_KEYS * 16);
        let mut latest = i64::MIN;
        let mut flush = |block: &mut Vec<u8>, latest: &mut i64| -> Result<(), StoreError> {
            if !block.is_empty() {
                write.execute(rusqlite::params![*latest, &*block])?;
                block.clear();
                *latest = i64::MIN;
            }
            Ok(())
        };
        while let Some(row) = rows.next()? {
            let key: i64 = row.get(0)?;
            let exp: i64 = row.get(1)?;
            block.extend_from_slice(&key.to_le_bytes());
            block.extend_from_slice(&exp.to_le_bytes());
            latest = latest.max(exp);
            if block.len() == MIGRATED_BLOCK_KEYS * 16 {
                flush(&mut block, &mut latest)?;
            }
        }
        flush(&mut block, &mut latest)?;
    }
    tx.execute_batch("DROP TABLE idempotency_keys;")?;
    Ok(())
}

/// Migration 4's data step: copies `idempotency_log` (ids) into
/// `idempotency_keys` (digests) in the same order, then drops it.
fn rekey_idempotency_log(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    {
        let mut read =
            tx.prepare("SELECT event_id, expires_at FROM idempotency_log ORDER BY rowid")?;
        let mut write =
            tx.prepare("INSERT INTO idempotency_keys (key, expires_at) VALUES (?1, ?2)")?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let exp: i64 = row.get(1)?;
            write.execute(rusqlite::params![super::idempotency_key(&id) as i64, exp])?;
        }
    }
    tx.execute_batch("DROP TABLE idempotency_log;")?;
    Ok(())
}

/// Current schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i + 1 == 4 {
            rekey_idempotency_log(&tx)?;
        }
        if i + 1 == 5 {
            block_idempotency_keys(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_events_count_as_blocked_after_v7_so_a_restart_reads_none_back() {
        // Up to v6 every commit wrote its keys as a block: after v7 the
        // watermark stands at the newest event, so the restart reads keys
        // from blocks only; events stored later are read back.
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("v6.db")).unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        let insert = |conn: &Connection, id: &str| {
            conn.execute(
                "INSERT INTO events (event_id, ts, received, host, source, category, action, outcome, severity, message)
                 VALUES (?1, 0, NULL, 'h', 's', 'auth', 'login', 'success', 1, 'm')",
                [id],
            )
            .unwrap();
        };
        insert(&conn, "before-v7");
        migrate(&mut conn).unwrap();
        let through: i64 = conn
            .query_row("SELECT through_rowid FROM idempotency_meta", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(through, 1);
        insert(&conn, "after-v7");
        let mut keys = Vec::new();
        super::super::for_each_idempotency_key(&conn, chrono::Utc::now(), |k, _| keys.push(k))
            .unwrap();
        assert_eq!(keys, [super::super::idempotency_key("after-v7")]);
    }

    #[test]
    fn v4_keys_move_into_blocks_in_order_with_their_expiries() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("v4.db")).unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        let n = MIGRATED_BLOCK_KEYS * 2 + 5;
        {
            let tx = conn.transaction().unwrap();
            let mut insert = tx
                .prepare("INSERT INTO idempotency_keys (key, expires_at) VALUES (?1, ?2)")
                .unwrap();
            for i in 0..n as i64 {
                // Negative keys too: they are u64 digests stored as i64.
                insert
                    .execute(rusqlite::params![i.wrapping_mul(-7_919), 1_000 + i])
                    .unwrap();
            }
            drop(insert);
            tx.commit().unwrap();
        }
        migrate(&mut conn).unwrap();
        let blocks: Vec<(i64, i64)> = conn
            .prepare("SELECT expires_at, length(keys) FROM idempotency_blocks ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let b = MIGRATED_BLOCK_KEYS as i64;
        assert_eq!(
            blocks,
            [
                (1_000 + b - 1, b * 16),
                (1_000 + 2 * b - 1, b * 16),
                (1_000 + n as i64 - 1, 5 * 16)
            ]
        );
        // Keys whose own expiry has passed are skipped, even in a block
        // still in force.
        let now = chrono::DateTime::from_timestamp_millis(1_000 + b + 10).unwrap();
        let mut keys = Vec::new();
        super::super::for_each_idempotency_key(&conn, now, |k, exp| {
            keys.push((k as i64, exp.timestamp_millis()))
        })
        .unwrap();
        let want: Vec<(i64, i64)> = (b + 11..n as i64)
            .map(|i| (i.wrapping_mul(-7_919), 1_000 + i))
            .collect();
        assert_eq!(keys, want);
        // A block that is not whole keys is reported, not misread.
        conn.execute(
            "INSERT INTO idempotency_blocks (expires_at, keys) VALUES (?1, x'0102')",
            [i64::MAX],
        )
        .unwrap();
        let e = super::super::for_each_idempotency_key(&conn, now, |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("not a multiple of 16"), "{e}");
    }

    #[test]
    fn v1_store_migrates_keeping_events_and_idempotency_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("v1.db")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO events (event_id, ts, host, source, category, action, outcome, severity, message)
                 VALUES ('e-2', 2000, 'h', 'sshd', 'authentication', 'login_failed', 'failure', 5, 'two'),
                        ('e-1', 1000, 'h', 'sshd', 'authentication', 'login_failed', 'failure', 5, 'one');
             INSERT INTO idempotency (event_id, expires_at) VALUES ('e-1', 99), ('e-2', 98);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let events: Vec<(String, i64, String)> = conn
            .prepare("SELECT event_id, ts, message FROM events ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Copied in event-time order.
        assert_eq!(
            events,
            [
                ("e-1".to_string(), 1000, "one".to_string()),
                ("e-2".to_string(), 2000, "two".to_string())
            ]
        );
        // Re-keyed by v4 (digests of the ids), put in blocks by v5, in the
        // same order.
        let mut keys = Vec::new();
        let epoch = chrono::DateTime::from_timestamp_millis(0).unwrap();
        super::super::for_each_idempotency_key(&conn, epoch, |k, exp| {
            keys.push((k, exp.timestamp_millis()))
        })
        .unwrap();
        let key = super::super::idempotency_key;
        assert_eq!(keys, [(key("e-2"), 98), (key("e-1"), 99)]);
        let old_log: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'idempotency_log'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_log, 0);
        let old_keys: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'idempotency_keys'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_keys, 0);
        // (ts, event_id) is unique; the same id at another time is another event.
        let dup = conn.execute(
            "INSERT INTO events (event_id, ts, host, source, category, action, outcome, severity, message)
                 VALUES ('e-1', 1000, 'h', 's', 'c', 'a', 'o', 1, 'm')",
            [],
        );
        assert!(dup.is_err());
    }
}

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
];

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
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_store_migrates_to_v2_keeping_events_and_idempotency_keys() {
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
        let keys: Vec<(String, i64)> = conn
            .prepare("SELECT event_id, expires_at FROM idempotency_log ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, [("e-2".to_string(), 98), ("e-1".to_string(), 99)]);
        // (ts, event_id) is unique; the same id at another time is another event.
        let dup = conn.execute(
            "INSERT INTO events (event_id, ts, host, source, category, action, outcome, severity, message)
                 VALUES ('e-1', 1000, 'h', 's', 'c', 'a', 'o', 1, 'm')",
            [],
        );
        assert!(dup.is_err());
    }
}

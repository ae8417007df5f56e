//! The writer thread: group commits, what a failed one hands back, and how
//! each write is applied.

use std::sync::mpsc;

use rusqlite::{Connection, params};

use super::keys::*;
use super::retention::{Deleted, enforce_retention};
use super::*;
use crate::respond::policy::StateChange;

/// Events past the bound that start retention at once rather than at the
/// 64th commit since it last ran. With batches of 1 000 events a group,
/// retention every 64 groups deleted ~64 000 rows at once at the bound: a
/// stall longer than the requests in flight, so the gateway sat idle
/// through it (`/ingest/batch` at the bound: ~80 % of its rate below it;
/// with this step ~88 %; 1 024 measured the same, 16 384 like no step).
pub const RETENTION_STEP: u64 = 4096;

/// The writer thread. An offline writer stops at the first error (the scan
/// reports it and can be re-run). The live writer survives a failed commit
/// (disk full, the database locked by another process past the busy
/// timeout): the group is rolled back, its events' replies are dropped so
/// the gateway answers 503, their idempotency keys go to `failed`, and the
/// next group is tried afresh, so the gateway recovers by itself once the
/// cause is gone.
pub(super) fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<WriteOp>,
    retention: Retention,
    slots: SlotReturn,
    live: Option<(std::sync::Arc<FailedCommits>, std::sync::Arc<StoreHealth>)>,
    records: Option<RecordSinkSlot>,
) -> Result<WriterStats, StoreError> {
    let mut stats = WriterStats::default();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut group = Group::default();
    let mut since_retention = 0u64;
    // With an age bound, retention also runs once `idle_check` has passed
    // since it last did, writes or not.
    let mut retained_at = std::time::Instant::now();
    let mut complaints = crate::util::Complaints::default();
    // Committed keys not yet in a block (see `KEYS_PER_BLOCK`).
    let mut pending = KeyBlock::default();
    let mut keys_written = std::time::Instant::now();
    let mut stored: u64 =
        conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64;
    loop {
        // Without an age bound, nothing to do while idle: a plain wait.
        let next = match retention.max_age {
            Some(_) => rx.recv_timeout(retention.idle_check),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        let first = match next {
            Ok(op) => op,
            // Idle: events that aged past the bound still go.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if retention.max_age.is_some() {
                    retained_at = std::time::Instant::now();
                    match enforce_retention(&mut conn, retention, &mut stored, &mut pending) {
                        Ok(gone) => {
                            count_deleted(&mut stats, gone, &retention, stored, health(&live))
                        }
                        Err(e) if live.is_none() => return Err(e),
                        Err(e) => {
                            complaints.say(&format!("store: retention failed: {e}"));
                        }
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        slots.give_back(batch.len());
        let before = stats;
        group.keys.clear();
        group.kept.clear();
        group.records.clear();
        let keys_due = keys_written.elapsed() >= KEYS_EVERY;
        let committed = commit_group(
            &mut conn,
            &mut batch,
            &mut group,
            &mut stats,
            (&pending, keys_due),
        );
        let acks = std::mem::take(&mut group.acks);
        let after = std::mem::take(&mut group.after);
        if let Err(e) = committed {
            let Some((failed, health)) = &live else {
                return Err(e);
            };
            health.failed(&e);
            stats = WriterStats {
                failed_commits: before.failed_commits + 1,
                ..before
            };
            complaints.say(&format!(
                "store: commit failed; {} events refused (503), the next group is tried afresh: {e}",
                group.keys.len()
            ));
            // Keys first, then the replies: a producer that hears 503 and
            // retries at once must find its key handed back.
            failed.push(&mut group.keys, &mut group.kept);
            drop(after);
            drop(acks);
            continue;
        }
        stats.transactions += 1;
        stored += stats.events - before.events;
        if let Some((_, health)) = &live {
            health.committed();
            health.retained(stored, 0, 0);
        }
        // The group's records, then its replies: an answer never goes out
        // before the record of what it answers.
        if !group.records.is_empty() {
            match records
                .as_ref()
                .and_then(|r| r.get())
                .and_then(|w| w.upgrade())
            {
                Some(sink) => sink.append(&group.records),
                None => {
                    complaints.say(&format!(
                        "store: {} audit records of stored events had no audit log to go to",
                        group.records.len()
                    ));
                }
            }
        }
        // Replies first: retention is housekeeping, not part of the commit.
        // (Keys not written with this group wait in `pending`; its events'
        // rows hold them meanwhile.)
        for f in after {
            (f.0)();
        }
        if matches!(committed, Ok(true)) {
            pending.clear();
            keys_written = std::time::Instant::now();
        } else {
            pending.extend(&group.block);
        }
        since_retention += 1;
        let aged = retention.max_age.is_some() && retained_at.elapsed() >= retention.idle_check;
        let over = stored >= retention.max_events.saturating_add(RETENTION_STEP);
        if since_retention >= 64 || !acks.is_empty() || aged || over {
            since_retention = 0;
            retained_at = std::time::Instant::now();
            match (
                enforce_retention(&mut conn, retention, &mut stored, &mut pending),
                &live,
            ) {
                (Ok(gone), _) => count_deleted(&mut stats, gone, &retention, stored, health(&live)),
                (Err(e), None) => return Err(e),
                (Err(e), Some(_)) => {
                    complaints.say(&format!("store: retention failed: {e}"));
                }
            }
        }
        for a in acks {
            let _ = a.send(());
        }
    }
    // At stop the watermark moves past every event, keys or not (an
    // offline scan's events have none): a start then reads none back.
    let last = conn.transaction().map_err(StoreError::from).and_then(|tx| {
        write_keys(&tx, &[&pending])?;
        tx.commit()?;
        Ok(())
    });
    if last.is_ok() {
        pending.clear();
    }
    if let Err(e) = last {
        if live.is_none() {
            return Err(e);
        }
        complaints.say(&format!(
            "store: writing idempotency keys at stop failed (they stay with their events' rows): {e}"
        ));
    }
    match (
        enforce_retention(&mut conn, retention, &mut stored, &mut pending),
        &live,
    ) {
        (Ok(gone), _) => {
            count_deleted(&mut stats, gone, &retention, stored, health(&live));
            Ok(stats)
        }
        (Err(e), None) => Err(e),
        (Err(_), Some(_)) => Ok(stats),
    }
}

/// The live writer's health, if this is the live writer.
fn health(
    live: &Option<(std::sync::Arc<FailedCommits>, std::sync::Arc<StoreHealth>)>,
) -> Option<&StoreHealth> {
    live.as_ref().map(|(_, h)| &**h)
}

/// Counts what retention deleted (leaving `stored` events), and for the
/// live writer (with its `health`, which the console reads) says so the
/// first time in a run each bound deletes anything: from then on events go
/// with no request refused and nothing in the answers, so whoever runs the
/// server is told. (A scan says it in its summary.)
fn count_deleted(
    stats: &mut WriterStats,
    gone: Deleted,
    r: &Retention,
    stored: u64,
    health: Option<&StoreHealth>,
) {
    if let Some(h) = health {
        h.retained(stored, gone.over_bound, gone.aged);
    }
    let announce = health.is_some();
    if announce && gone.over_bound > 0 && stats.deleted_over_bound == 0 {
        tracing::info!(
            "store: at its bound of {} events ([store] max_events): the oldest by event time go as new ones are stored",
            r.max_events
        );
    }
    if announce && gone.aged > 0 && stats.deleted_aged == 0 {
        let days = r.max_age.map_or(0, |a| a.as_secs() / 86_400);
        tracing::info!(
            "store: deleting events older than {days} days ([store] max_age_days), by event time"
        );
    }
    stats.deleted_over_bound += gone.over_bound;
    stats.deleted_aged += gone.aged;
}

/// What one group commit collects besides its writes.
#[derive(Default)]
struct Group {
    acks: Vec<mpsc::SyncSender<()>>,
    after: Vec<AfterCommit>,
    /// Idempotency keys (and tags) of the group's events.
    keys: Vec<(u64, u16)>,
    /// Its writes other than events and keys, kept until the commit so a
    /// failed group can hand them back.
    kept: Vec<WriteOp>,
    /// The group's idempotency keys, for the writer's pending block.
    block: KeyBlock,
    /// Its [`WriteOp::Records`], appended after the commit.
    records: audit_log::Pending,
}

/// One transaction over `batch` (emptied either way). On failure `group`
/// holds every key and every write to hand back, applied or not.
///
/// `keys` is the writer's pending block and whether a second has passed
/// since keys were last written: when it is due (or the keys reach
/// [`KEYS_PER_BLOCK`], or the group holds a [`WriteOp::Flush`]), the
/// pending keys and the group's go to blocks in this transaction, and
/// `Ok(true)` says so (the caller then empties `pending`; on failure it
/// stays as it was). Otherwise the group's keys wait in its events' rows.
fn commit_group(
    conn: &mut Connection,
    batch: &mut Vec<WriteOp>,
    group: &mut Group,
    stats: &mut WriterStats,
    keys: (&KeyBlock, bool),
) -> Result<bool, StoreError> {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            batch.drain(..).for_each(|op| set_aside(op, group));
            return Err(e.into());
        }
    };
    let mut ops = batch.drain(..);
    let mut result = Ok(());
    group.block.clear();
    {
        let mut hot = Hot::default();
        for op in ops.by_ref() {
            if let Err(e) = route(&tx, &mut hot, op, group, stats) {
                result = Err(e);
                break;
            }
        }
    }
    ops.for_each(|op| set_aside(op, group));
    result?;
    let (pending, due) = keys;
    let held = pending.len() + group.block.len();
    let write = held >= KEYS_PER_BLOCK || (held > 0 && due) || !group.acks.is_empty();
    if write {
        write_keys(&tx, &[pending, &group.block])?;
    }
    // Dropped without a commit, the transaction rolls back.
    tx.commit()?;
    Ok(write)
}

/// Writes the engine holds in memory and would queue again after a failed
/// commit (everything but events, their keys and the control messages).
fn is_state(op: &WriteOp) -> bool {
    matches!(
        op,
        WriteOp::Alert(_) | WriteOp::State(_) | WriteOp::Feedback { .. }
    )
}

/// A write left unapplied by a failed group: its key noted, its replies
/// kept (not yet dropped, so nobody hears of the failure before the keys
/// are handed back), its state kept to hand back.
fn set_aside(op: WriteOp, group: &mut Group) {
    match op {
        WriteOp::Idempotency { key, tag, .. } => group.keys.push((key, tag)),
        WriteOp::Batch(ops) => ops.into_iter().for_each(|op| set_aside(op, group)),
        WriteOp::AfterCommit(f) => group.after.push(f),
        WriteOp::Flush(ack) => group.acks.push(ack),
        op if is_state(&op) => group.kept.push(op),
        _ => {}
    }
}

/// The statements every ingested event runs, prepared once per transaction:
/// `prepare_cached` hashes the whole SQL text on each call, a measurable
/// share of the writer at 200k events/s.
#[derive(Default)]
struct Hot<'t> {
    event: Option<rusqlite::CachedStatement<'t>>,
    events: Option<rusqlite::CachedStatement<'t>>,
}

/// Events inserted by one statement when a batch holds that many in a row.
/// `store_commit` against its baseline, same runs: 8 and 16 rows 11.6×,
/// 32 rows 13.4×, 64 rows 13.7× (one row a statement: 14.6×).
const EVENTS_PER_INSERT: usize = 16;

/// [`INSERT_EVENT`] for [`EVENTS_PER_INSERT`] rows. One statement a run
/// instead of one a row: the writer alone (`cargo bench --bench ingest --
/// store_commit`, 1 000 events and keys, one fsynced commit) went from
/// 2.35 ms to 1.78 ms; the per-statement work (step, halt, reset) was a
/// quarter of it.
fn insert_events_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let rows: Vec<String> = (0..EVENTS_PER_INSERT)
            .map(|r| {
                let cols: Vec<String> = (1..=EVENT_COLUMNS)
                    .map(|c| format!("?{}", r * EVENT_COLUMNS + c))
                    .collect();
                format!("({})", cols.join(", "))
            })
            .collect();
        format!("{INSERT_EVENT_HEAD} VALUES {}", rows.join(", "))
    })
}

/// Columns an event row binds.
const EVENT_COLUMNS: usize = 20;

/// Binds `ev`'s 20 columns from parameter `b + 1` on.
fn bind_event(
    stmt: &mut rusqlite::Statement<'_>,
    b: usize,
    ev: &crate::event::Event,
) -> Result<(), StoreError> {
    let http = ev.http.as_deref().map(json).transpose()?;
    let attributes = (!ev.attributes.is_empty())
        .then(|| json(&ev.attributes))
        .transpose()?;
    let src = ev.src_ip.as_ref().map(IpText::new);
    let dest = ev.dest_ip.as_ref().map(IpText::new);
    stmt.raw_bind_parameter(b + 1, &ev.event_id)?;
    stmt.raw_bind_parameter(b + 2, ev.timestamp_utc.timestamp_micros())?;
    stmt.raw_bind_parameter(b + 3, ev.received_time_utc.map(|t| t.timestamp_micros()))?;
    stmt.raw_bind_parameter(b + 4, &ev.host)?;
    stmt.raw_bind_parameter(b + 5, ev.source.as_ref())?;
    stmt.raw_bind_parameter(b + 6, ev.category.as_str())?;
    stmt.raw_bind_parameter(b + 7, ev.action.as_str())?;
    stmt.raw_bind_parameter(b + 8, ev.outcome.as_str())?;
    stmt.raw_bind_parameter(b + 9, ev.severity)?;
    stmt.raw_bind_parameter(b + 10, &ev.user)?;
    stmt.raw_bind_parameter(b + 11, src.as_ref().map(IpText::as_str))?;
    stmt.raw_bind_parameter(b + 12, ev.src_port)?;
    stmt.raw_bind_parameter(b + 13, dest.as_ref().map(IpText::as_str))?;
    stmt.raw_bind_parameter(b + 14, ev.dest_port)?;
    stmt.raw_bind_parameter(b + 15, ev.process.as_deref())?;
    stmt.raw_bind_parameter(b + 16, ev.pid)?;
    stmt.raw_bind_parameter(b + 17, &http)?;
    stmt.raw_bind_parameter(b + 18, &ev.message)?;
    stmt.raw_bind_parameter(b + 19, &attributes)?;
    stmt.raw_bind_parameter(b + 20, ev.repeat)?;
    Ok(())
}

/// `slot`'s statement, prepared from `sql` on first use.
fn prepared<'s, 't>(
    tx: &'t rusqlite::Transaction<'_>,
    slot: &'s mut Option<rusqlite::CachedStatement<'t>>,
    sql: &str,
) -> Result<&'s mut rusqlite::CachedStatement<'t>, StoreError> {
    match slot {
        Some(s) => Ok(s),
        None => Ok(slot.insert(tx.prepare_cached(sql)?)),
    }
}

/// The insert's head, shared by the one-row and many-row statements.
macro_rules! insert_event_head {
    () => {
        "INSERT OR IGNORE INTO events (event_id, ts, received, host, source, category, action, outcome,
     severity, user, src_ip, src_port, dest_ip, dest_port, process, pid, http, message, attributes, repeat)"
    };
}

const INSERT_EVENT_HEAD: &str = insert_event_head!();

const INSERT_EVENT: &str = concat!(
    insert_event_head!(),
    "\n VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
);

/// An address as text without allocating: an IPv4 address written by
/// hand (`to_string` through the formatter was ~1.3 % of the gateway's
/// CPU on batches), IPv6 through the standard formatter. Same text as
/// `Display`.
struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: &std::net::IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut w = &mut t.buf[..];
                // The longest IPv6 text is 45 bytes (IPv4-mapped form).
                let _ = write!(w, "{v6}");
                t.len = 45 - w.len();
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Applies a write, or keeps what waits for the commit.
fn route<'t>(
    tx: &'t rusqlite::Transaction<'_>,
    hot: &mut Hot<'t>,
    op: WriteOp,
    group: &mut Group,
    stats: &mut WriterStats,
) -> Result<(), StoreError> {
    match op {
        WriteOp::Flush(ack) => group.acks.push(ack),
        WriteOp::AfterCommit(f) => group.after.push(f),
        WriteOp::Records(r) => group.records.extend(&r),
        WriteOp::Batch(ops) => {
            // Events go in by runs of `EVENTS_PER_INSERT`, one statement a
            // run; idempotency keys (no SQL) do not break a run, anything
            // else sends the run's events first, so writes keep their order.
            let mut run: Vec<WriteOp> = Vec::with_capacity(EVENTS_PER_INSERT);
            let mut ops = ops.into_iter();
            let mut result = Ok(());
            for op in ops.by_ref() {
                result = match op {
                    WriteOp::Event(_) => {
                        run.push(op);
                        if run.len() == EVENTS_PER_INSERT {
                            let r = insert_run(tx, hot, &run, stats);
                            run.clear();
                            r
                        } else {
                            Ok(())
                        }
                    }
                    WriteOp::Idempotency { .. } => route(tx, hot, op, group, stats),
                    // Not applied if the run fails, but set aside like
                    // the rest (a state change must survive the failure).
                    other => match run
                        .drain(..)
                        .try_for_each(|ev| route(tx, hot, ev, group, stats))
                    {
                        Ok(()) => route(tx, hot, other, group, stats),
                        Err(e) => {
                            set_aside(other, group);
                            Err(e)
                        }
                    },
                };
                if result.is_err() {
                    break;
                }
            }
            if result.is_ok() {
                result = run
                    .drain(..)
                    .try_for_each(|ev| route(tx, hot, ev, group, stats));
            }
            if let Err(e) = result {
                ops.for_each(|op| set_aside(op, group));
                return Err(e);
            }
        }
        WriteOp::Idempotency {
            key,
            expires_at,
            tag,
        } => {
            group.keys.push((key, tag));
            group.block.push(key, ts(expires_at));
        }
        op => {
            let applied = apply(tx, hot, &op, stats);
            if is_state(&op) {
                group.kept.push(op);
            }
            applied?
        }
    }
    Ok(())
}

/// Inserts a run of [`EVENTS_PER_INSERT`] events with one statement.
fn insert_run<'t>(
    tx: &'t rusqlite::Transaction<'_>,
    hot: &mut Hot<'t>,
    run: &[WriteOp],
    stats: &mut WriterStats,
) -> Result<(), StoreError> {
    let stmt = prepared(tx, &mut hot.events, insert_events_sql())?;
    for (i, op) in run.iter().enumerate() {
        if let WriteOp::Event(ev) = op {
            bind_event(stmt, i * EVENT_COLUMNS, ev)?;
        }
    }
    let inserted = stmt.raw_execute()?;
    stats.events += inserted as u64;
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn apply<'t>(
    tx: &'t rusqlite::Transaction<'_>,
    hot: &mut Hot<'t>,
    op: &WriteOp,
    stats: &mut WriterStats,
) -> Result<(), StoreError> {
    match op {
        WriteOp::Event(ev) => {
            let stmt = prepared(tx, &mut hot.event, INSERT_EVENT)?;
            bind_event(stmt, 0, ev)?;
            let inserted = stmt.raw_execute()?;
            // 0 when (ts, event_id) is already stored (a re-scanned file).
            stats.events += inserted as u64;
        }
        WriteOp::Alert(a) => {
            tx.prepare_cached(
                "INSERT INTO alerts (alert_id, rule_id, host, severity, risk_score, created, first_seen, last_seen, count, user, src_ip, status, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT(alert_id) DO UPDATE SET last_seen = excluded.last_seen, count = excluded.count, body = excluded.body",
            )?
            .execute(params![
                a.alert_id,
                a.rule_id,
                a.host,
                a.severity,
                a.risk_score,
                ts(a.created_time_utc),
                ts(a.first_seen_utc),
                ts(a.last_seen_utc),
                a.count as i64,
                a.user,
                a.src_ip.map(|i| i.to_string()),
                a.status.as_str(),
                json(a)?,
            ])?;
            stats.alerts += 1;
        }
        WriteOp::State(StateChange::Host { host, state }) => {
            tx.prepare_cached(
                "INSERT INTO host_state (host, body) VALUES (?1, ?2)
                 ON CONFLICT(host) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![host, json(&state)?])?;
        }
        WriteOp::State(StateChange::Ban(b)) => {
            tx.prepare_cached(
                "INSERT INTO ip_bans (ip, until, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT(ip) DO UPDATE SET until = excluded.until, body = excluded.body",
            )?
            .execute(params![b.ip.to_string(), ts(b.until_utc), json(&b)?])?;
        }
        WriteOp::State(StateChange::Unban { ip }) => {
            tx.prepare_cached("DELETE FROM ip_bans WHERE ip = ?1")?
                .execute(params![ip.to_string()])?;
        }
        WriteOp::State(StateChange::ForgetHost { host }) => {
            tx.prepare_cached("DELETE FROM host_state WHERE host = ?1")?
                .execute(params![host])?;
        }
        WriteOp::State(StateChange::Admin(a)) => {
            tx.prepare_cached(
                "INSERT INTO audit (at, actor, action, target, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![ts(a.at_utc), a.actor, a.action, a.target, a.reason])?;
        }
        // Collected into the group's block by `route`.
        WriteOp::Idempotency { .. } => {}
        WriteOp::Feedback {
            alert_id,
            verdict,
            note,
            by,
            at,
        } => {
            tx.prepare_cached("INSERT INTO feedback (alert_id, verdict, note, by, at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![alert_id, verdict.as_str(), note, by, ts(*at)])?;
            tx.prepare_cached("UPDATE alerts SET status = ?2 WHERE alert_id = ?1")?
                .execute(params![alert_id, verdict.as_str()])?;
        }
        WriteOp::Position {
            source,
            position,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO source_positions (source, position, saved_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(source) DO UPDATE SET position = excluded.position, saved_at = excluded.saved_at",
            )?
            .execute(params![source, json(position)?, ts(*at)])?;
        }
        // `route` keeps these for after the commit and unpacks batches.
        WriteOp::Flush(_) | WriteOp::AfterCommit(_) | WriteOp::Batch(_) | WriteOp::Records(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::IpText;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn ip_text_is_the_display_text() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "192.0.2.10",
            "::",
            "::1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(&ip).as_str(), ip.to_string());
        }
    }

    proptest! {
        #[test]
        fn any_address_reads_as_display_does(v4: u32, v6: u128) {
            let a = IpAddr::V4(Ipv4Addr::from(v4));
            let t = IpText::new(&a);
            prop_assert_eq!(t.as_str(), a.to_string());
            let b = IpAddr::V6(Ipv6Addr::from(v6));
            let t = IpText::new(&b);
            prop_assert_eq!(t.as_str(), b.to_string());
        }
    }
}

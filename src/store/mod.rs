//! Durable state in SQLite: events (bounded retention), alerts and their
//! triage status, host response state, IP bans, idempotency keys, analyst
//! feedback, and the admin audit trail.
//!
//! One writer thread owns the write connection and commits whatever has
//! queued up as a single transaction (group commit); readers open their own
//! connections (WAL lets them run beside the writer). All SQL is
//! parameterised.

pub mod audit_log;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Digest;

use crate::detect::{Alert, AlertStatus};
use crate::event::Event;
use crate::respond::policy::{AdminAction, Ban, HostState, StateChange};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("database schema version {found} is newer than this Vigil understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("the store writer has stopped")]
    WriterGone,
    #[error("cannot start the store writer thread: {0}")]
    Thread(std::io::Error),
}

/// Retention for the events and alerts tables.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Keep at most this many events; the oldest (by event time) go first.
    pub max_events: u64,
    /// Keep at most the newest this many alerts (by when they opened): an
    /// attack from many addresses opens an alert per address, ~1.3 KB
    /// each, and without a bound they filled the disk (5 MB/s under the
    /// load client's attack mix).
    pub max_alerts: u64,
    /// Also delete events whose event time, and alerts whose last sighting,
    /// is older than this (a data-retention rule: logs name people); `None`
    /// keeps them whatever their age. Measured against the wall clock, so
    /// a scan of old logs into a store with an age bound keeps nothing
    /// past it.
    pub max_age: Option<std::time::Duration>,
    /// How long the writer waits idle before it applies the age bound
    /// anyway (with writes coming, it is applied every 64 commits).
    pub idle_check: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_events: 2_000_000,
            max_alerts: 1_000_000,
            max_age: None,
            idle_check: std::time::Duration::from_secs(60),
        }
    }
}

/// Page size of databases this build creates.
pub const PAGE_SIZE: i64 = 8_192;

/// Opens (creating and migrating) the database at `path`.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut conn = Connection::open(path)?;
    // 8 KiB pages for a new database (no effect on an existing one): the
    // store is written far more than read, and bigger pages mean fewer
    // B-tree splits and WAL frame headers per row (writer alone, 300k
    // events: 4 KiB 2.7 µs/event, 16 KiB 2.3). But every commit writes
    // whole pages to the WAL, so single-event commits pay for big pages:
    // with 16 KiB `/ingest` at c16 lost ~7 %, with 8 KiB it is at par
    // with 4 KiB while batches gain ~5 % (gateway A/B, same hour).
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB page cache: event ids are random, so index inserts touch pages
    // all over the B-tree; the default 2 MiB cache thrashes past ~100k rows.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// One write for the writer thread.
#[derive(Debug)]
pub enum WriteOp {
    Event(Box<Event>),
    /// Shared with the engine's list of recent alerts: a new alert is
    /// copied once from the detector, not once per holder.
    Alert(std::sync::Arc<Alert>),
    State(StateChange),
    /// An accepted event's id, as [`idempotency_key`]. `tag` is the
    /// caller's, handed back with the key if the commit fails (the live
    /// engine keeps the event's decisions in it).
    Idempotency {
        key: u64,
        expires_at: DateTime<Utc>,
        tag: u16,
    },
    Feedback {
        alert_id: String,
        verdict: AlertStatus,
        note: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// Acknowledged once everything queued before it is committed.
    Flush(mpsc::SyncSender<()>),
    /// Several writes in order, sent as one message (one wake-up of the
    /// writer); committed in the same transaction.
    Batch(Vec<WriteOp>),
    /// Called after the transaction holding everything queued before it
    /// has committed (never called if the commit fails: the callback is
    /// dropped, and with it any reply it would have sent). Lets the engine
    /// hand its replies to the writer instead of waiting for the commit.
    AfterCommit(AfterCommit),
    /// Audit records of what this group stores (the gateway's accept
    /// records): once the group has committed, its records go to the
    /// writer's [`RecordSink`] in one append, before any of its
    /// [`WriteOp::AfterCommit`] callbacks run, so a reply sent from one
    /// follows its record. Dropped if the commit fails (the caller, which
    /// then hears no reply, records the refusal itself).
    Records(audit_log::Pending),
}

/// Where the live writer appends the records of each group commit (see
/// [`WriteOp::Records`]): the gateway's audit log.
pub trait RecordSink: Send + Sync {
    /// Called on the writer's thread once per group commit that holds
    /// records, after the commit and before its replies.
    fn append(&self, records: &audit_log::Pending);
}

/// The live writer's [`RecordSink`], set once the gateway exists (after
/// the engine and its writer). Held weakly: the gateway holds the engine.
pub type RecordSinkSlot = std::sync::Arc<std::sync::OnceLock<std::sync::Weak<dyn RecordSink>>>;

/// Work to run once a commit is durable (see [`WriteOp::AfterCommit`]).
pub struct AfterCommit(pub Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for AfterCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterCommit(..)")
    }
}

/// Handle to the single writer thread.
pub struct StoreWriter {
    tx: Option<mpsc::SyncSender<WriteOp>>,
    handle: Option<thread::JoinHandle<Result<WriterStats, StoreError>>>,
    slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    failed: Option<std::sync::Arc<FailedCommits>>,
    health: Option<std::sync::Arc<StoreHealth>>,
}

/// Whether the live writer's commits are failing, for `GET /health`.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing: std::sync::atomic::AtomicBool,
    /// Since when, and the latest error.
    detail: std::sync::Mutex<Option<(DateTime<Utc>, String)>>,
}

impl StoreHealth {
    fn failed(&self, error: &StoreError) {
        let mut d = match self.detail.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let since = d.as_ref().map_or_else(Utc::now, |(t, _)| *t);
        *d = Some((since, error.to_string()));
        self.failing
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn committed(&self) {
        if self.failing.load(std::sync::atomic::Ordering::Acquire) {
            self.failing
                .store(false, std::sync::atomic::Ordering::Release);
            if let Ok(mut d) = self.detail.lock() {
                *d = None;
            }
        }
    }

    /// Since when commits fail and the latest error; `None` when the last
    /// commit succeeded.
    pub fn problem(&self) -> Option<(DateTime<Utc>, String)> {
        if !self.failing.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.detail.lock().ok().and_then(|d| d.clone())
    }
}

/// What a failed commit hands back to the live engine: the idempotency
/// keys (with their tags) of its events, which were refused (503) and will
/// be sent again by whoever sent them, and its other writes (alerts, host
/// state, bans, feedback), which the engine already holds in memory and
/// queues again so the store catches up with it.
#[derive(Debug, Default)]
pub struct FailedCommits {
    any: std::sync::atomic::AtomicBool,
    held: std::sync::Mutex<HandedBack>,
}

/// Keys (with tags) and writes of failed commits, as [`FailedCommits::take`]
/// returns them.
pub type HandedBack = (Vec<(u64, u16)>, Vec<WriteOp>);

impl FailedCommits {
    fn push(&self, keys: &mut Vec<(u64, u16)>, writes: &mut Vec<WriteOp>) {
        if keys.is_empty() && writes.is_empty() {
            return;
        }
        let mut held = match self.held.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        held.0.append(keys);
        held.1.append(writes);
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether anything waits to be taken.
    pub fn pending(&self) -> bool {
        self.any.load(std::sync::atomic::Ordering::Acquire)
    }

    /// What was pushed since the last call (nothing to lock when none).
    pub fn take(&self) -> HandedBack {
        if !self.any.swap(false, std::sync::atomic::Ordering::Acquire) {
            return (Vec::new(), Vec::new());
        }
        match self.held.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

/// What `writes` (handed back by failed commits and never stored) hold, in
/// one line for the log, analyst actions named; `None` when nothing.
pub fn describe_unstored(writes: &[WriteOp]) -> Option<String> {
    use crate::respond::policy::StateChange;
    let (mut alerts, mut hosts, mut bans, mut labels) = (0u64, 0u64, 0u64, 0u64);
    let mut actions = Vec::new();
    for w in writes {
        match w {
            WriteOp::Alert(_) => alerts += 1,
            WriteOp::State(StateChange::Host { .. } | StateChange::ForgetHost { .. }) => hosts += 1,
            WriteOp::State(StateChange::Ban(_) | StateChange::Unban { .. }) => bans += 1,
            WriteOp::State(StateChange::Admin(a)) => actions.push(format!(
                "{} {} by {}",
                crate::util::sanitize_for_terminal(&a.action),
                crate::util::sanitize_for_terminal(&a.target),
                crate::util::sanitize_for_terminal(&a.actor)
            )),
            WriteOp::Feedback { .. } => labels += 1,
            _ => {}
        }
    }
    if alerts + hosts + bans + labels == 0 && actions.is_empty() {
        return None;
    }
    let mut line = format!(
        "store: stopping with writes the store never took (their commits failed, and the last \
         retry too): {alerts} alert updates, {hosts} host states, {bans} ban changes, {labels} \
         analyst labels"
    );
    if !actions.is_empty() {
        line.push_str(&format!(", analyst actions: {}", actions.join("; ")));
    }
    line.push_str(". After a restart these are as the store last had them.");
    Some(line)
}

/// Free places in the live writer's queue, for async callers to wait on
/// before they send (see [`StoreWriter::slots`]). Closed when the writer
/// stops, so nobody waits for a place that will never come.
struct SlotReturn(Option<std::sync::Arc<tokio::sync::Semaphore>>);

impl SlotReturn {
    fn give_back(&self, n: usize) {
        if let Some(s) = &self.0 {
            s.add_permits(n);
        }
    }
}

impl Drop for SlotReturn {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.close();
        }
    }
}

/// What the writer did, reported when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub transactions: u64,
    pub events: u64,
    pub alerts: u64,
    /// Live writer only: group commits that failed (their events answered
    /// 503) while the writer carried on.
    pub failed_commits: u64,
}

const MAX_BATCH: usize = 8192;

/// Messages the live engine may have waiting for the writer. Each is one
/// engine call (at most 64 events with their writes), so a stalled disk
/// holds back at most ~64k events in memory before the engine waits, and
/// with it the gateway.
const LIVE_QUEUE: usize = 1024;

impl StoreWriter {
    /// Starts the writer on a fresh connection to `path`.
    pub fn spawn(path: &Path, retention: Retention) -> Result<StoreWriter, StoreError> {
        Self::spawn_with(path, retention, false, None)
    }

    /// Like [`StoreWriter::spawn`]; with `fsync_each_commit` (the live
    /// engine) every group commit is fsynced (`synchronous=FULL`), so what
    /// the gateway acknowledged survives power loss, not only a process
    /// crash, and the queue is [`LIVE_QUEUE`] messages deep. Offline scans
    /// skip the fsync: they can be re-run. `records` is where
    /// [`WriteOp::Records`] go.
    pub fn spawn_with(
        path: &Path,
        retention: Retention,
        fsync_each_commit: bool,
        records: Option<RecordSinkSlot>,
    ) -> Result<StoreWriter, StoreError> {
        let conn = open(path)?;
        if fsync_each_commit {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        let capacity = if fsync_each_commit {
            LIVE_QUEUE
        } else {
            MAX_BATCH * 2
        };
        let (tx, rx) = mpsc::sync_channel::<WriteOp>(capacity);
        let slots =
            fsync_each_commit.then(|| std::sync::Arc::new(tokio::sync::Semaphore::new(capacity)));
        let returns = SlotReturn(slots.clone());
        let failed = fsync_each_commit.then(|| std::sync::Arc::new(FailedCommits::default()));
        let health = fsync_each_commit.then(|| std::sync::Arc::new(StoreHealth::default()));
        let live = failed.clone().zip(health.clone());
        let handle = thread::Builder::new()
            .name("vigil-store-writer".into())
            .spawn(move || writer_loop(conn, rx, retention, returns, live, records))
            .map_err(StoreError::Thread)?;
        Ok(StoreWriter {
            tx: Some(tx),
            handle: Some(handle),
            slots,
            failed,
            health,
        })
    }

    /// For the live writer: one permit per free place in its queue. A
    /// caller that takes (and forgets) a permit before each [`send`] never
    /// blocks in it: when the disk stalls it waits on the semaphore, which
    /// an async task does without holding a runtime thread. The writer
    /// gives the places back as it takes messages off the queue.
    ///
    /// [`send`]: StoreWriter::send
    pub fn slots(&self) -> Option<std::sync::Arc<tokio::sync::Semaphore>> {
        self.slots.clone()
    }

    /// For the live writer: where it leaves the idempotency keys of events
    /// whose commit failed. It leaves them there before it drops those
    /// events' replies, so a caller that drains this before taking new
    /// events never refuses a retry as a duplicate.
    pub fn failed_commits(&self) -> Option<std::sync::Arc<FailedCommits>> {
        self.failed.clone()
    }

    /// For the live writer: whether its commits are failing.
    pub fn health(&self) -> Option<std::sync::Arc<StoreHealth>> {
        self.health.clone()
    }

    pub fn send(&self, op: WriteOp) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(op)
            .map_err(|_| StoreError::WriterGone)
    }

    /// Blocks until everything sent so far is committed.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.send(WriteOp::Flush(ack_tx))?;
        ack_rx.recv().map_err(|_| StoreError::WriterGone)
    }

    /// Commits what is queued and stops the thread.
    pub fn close(mut self) -> Result<WriterStats, StoreError> {
        self.tx.take();
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StoreError::WriterGone),
            None => Ok(WriterStats::default()),
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The writer thread. An offline writer stops at the first error (the scan
/// reports it and can be re-run). The live writer survives a failed commit
/// (disk full, the database locked by another process past the busy
/// timeout): the group is rolled back, its events' replies are dropped so
/// the gateway answers 503, their idempotency keys go to `failed`, and the
/// next group is tried afresh, so the gateway recovers by itself once the
/// cause is gone.
fn writer_loop(
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
                    if let Err(e) =
                        enforce_retention(&mut conn, retention, &mut stored, &mut pending)
                    {
                        if live.is_none() {
                            return Err(e);
                        }
                        complaints.say(&format!("store: retention failed: {e}"));
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
        if let Some((_, health)) = &live {
            health.committed();
        }
        stored += stats.events - before.events;
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
        if since_retention >= 64 || !acks.is_empty() || aged {
            since_retention = 0;
            retained_at = std::time::Instant::now();
            match (
                enforce_retention(&mut conn, retention, &mut stored, &mut pending),
                &live,
            ) {
                (Ok(()), _) => {}
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
        (Err(e), None) => Err(e),
        _ => Ok(stats),
    }
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

/// Idempotency keys stored as rows of many keys (schema v5): each key as
/// 16 bytes, the key and its expiry (ms since the epoch), both
/// little-endian. A row per key cost ~5 % of the batch ingest rate, and a
/// row per group commit ~7 % of `/ingest` at concurrency 16 (schema v7:
/// see [`KEYS_PER_BLOCK`]).
#[derive(Default)]
struct KeyBlock {
    bytes: Vec<u8>,
    /// The latest expiry in the block: the row goes once it has passed.
    expires_at: i64,
}

impl KeyBlock {
    fn push(&mut self, key: u64, expires_at: i64) {
        if self.bytes.is_empty() || expires_at > self.expires_at {
            self.expires_at = expires_at;
        }
        self.bytes.extend_from_slice(&key.to_le_bytes());
        self.bytes.extend_from_slice(&expires_at.to_le_bytes());
    }

    fn clear(&mut self) {
        self.bytes.clear();
    }

    fn len(&self) -> usize {
        self.bytes.len() / KEY_BYTES
    }

    fn extend(&mut self, other: &KeyBlock) {
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
const KEYS_PER_BLOCK: usize = 4096;
const KEYS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes each of `blocks` that holds keys as a block and moves the
/// watermark to the newest event row, in `tx`: every event up to it then
/// has its key in a block.
fn write_keys(tx: &rusqlite::Transaction<'_>, blocks: &[&KeyBlock]) -> Result<(), StoreError> {
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
const KEY_BYTES: usize = 16;

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

const INSERT_EVENT: &str = "INSERT OR IGNORE INTO events (event_id, ts, received, host, source, category, action, outcome,
     severity, user, src_ip, src_port, dest_ip, dest_port, process, pid, http, message, attributes, repeat)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

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
            let mut ops = ops.into_iter();
            for op in ops.by_ref() {
                if let Err(e) = route(tx, hot, op, group, stats) {
                    ops.for_each(|op| set_aside(op, group));
                    return Err(e);
                }
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

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
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
            let http = ev.http.as_deref().map(json).transpose()?;
            let attributes = (!ev.attributes.is_empty())
                .then(|| json(&ev.attributes))
                .transpose()?;
            let inserted = prepared(tx, &mut hot.event, INSERT_EVENT)?.execute(params![
                ev.event_id,
                ev.timestamp_utc.timestamp_micros(),
                ev.received_time_utc.map(|t| t.timestamp_micros()),
                ev.host,
                ev.source.as_ref(),
                ev.category.as_str(),
                ev.action.as_str(),
                ev.outcome.as_str(),
                ev.severity,
                ev.user,
                ev.src_ip
                    .as_ref()
                    .map(IpText::new)
                    .as_ref()
                    .map(IpText::as_str),
                ev.src_port,
                ev.dest_ip
                    .as_ref()
                    .map(IpText::new)
                    .as_ref()
                    .map(IpText::as_str),
                ev.dest_port,
                ev.process.as_deref(),
                ev.pid,
                http,
                ev.message,
                attributes,
                ev.repeat,
            ])?;
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
        // `route` keeps these for after the commit and unpacks batches.
        WriteOp::Flush(_) | WriteOp::AfterCommit(_) | WriteOp::Batch(_) | WriteOp::Records(_) => {}
    }
    Ok(())
}

/// Drops the oldest events (by event time) beyond the limit, the oldest
/// alerts beyond theirs, and idempotency keys that have expired. `stored` is the writer's running count of event
/// rows, so no `COUNT(*)` over the table is needed.
fn enforce_retention(
    conn: &mut Connection,
    r: Retention,
    stored: &mut u64,
    pending: &mut KeyBlock,
) -> Result<(), StoreError> {
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
                )?;
                *stored = stored.saturating_sub(deleted as u64);
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
    Ok(())
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const EVENT_COLUMNS: &str = "event_id, ts, received, host, source, category, action, outcome, severity, user, \
     src_ip, src_port, dest_ip, dest_port, process, pid, http, message, attributes, repeat";

fn corrupt(what: &str, v: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {v}"))
}

fn event_from_row(r: &rusqlite::Row<'_>) -> Result<Event, StoreError> {
    use crate::event::{Action, Category, Outcome};
    let micros =
        |v: i64| DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt("event time", v));
    let ip = |v: Option<String>| -> Result<Option<std::net::IpAddr>, StoreError> {
        v.map(|s| s.parse().map_err(|_| corrupt("address", s)))
            .transpose()
    };
    let outcome: String = r.get(7)?;
    let http: Option<String> = r.get(16)?;
    let attributes: Option<String> = r.get(18)?;
    let mut ev = Event::new(
        r.get::<_, String>(0)?,
        micros(r.get(1)?)?,
        r.get::<_, String>(3)?,
    );
    ev.received_time_utc = r.get::<_, Option<i64>>(2)?.map(micros).transpose()?;
    ev.source = std::borrow::Cow::Owned(r.get(4)?);
    ev.category = Category::from_text(&r.get::<_, String>(5)?);
    ev.action = Action::from_text(&r.get::<_, String>(6)?);
    ev.outcome = Outcome::from_text(&outcome).ok_or_else(|| corrupt("outcome", &outcome))?;
    ev.severity = r.get(8)?;
    ev.user = r.get(9)?;
    ev.src_ip = ip(r.get(10)?)?;
    ev.src_port = r.get(11)?;
    ev.dest_ip = ip(r.get(12)?)?;
    ev.dest_port = r.get(13)?;
    ev.process = r.get::<_, Option<String>>(14)?.map(std::borrow::Cow::Owned);
    ev.pid = r.get(15)?;
    ev.http = http.map(|h| from_json(&h)).transpose()?;
    ev.message = r.get(17)?;
    if let Some(a) = attributes {
        ev.attributes = from_json(&a)?;
    }
    ev.repeat = r.get(19)?;
    Ok(ev)
}

/// One stored event.
pub fn event(conn: &Connection, event_id: &str) -> Result<Option<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"
    ))?;
    let mut rows = stmt.query(params![event_id])?;
    rows.next()?.map(event_from_row).transpose()
}

/// Events with these ids whose event time lies in `[from, to]` (an alert's
/// evidence), in event time order. The `(ts, event_id)` index answers it
/// alone: rows are read only for the ids asked for, however many events the
/// window holds. At most [`MAX_EVIDENCE_LOOKUP`] ids are looked up.
pub fn events_in_range(
    conn: &Connection,
    ids: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Event>, StoreError> {
    let ids = &ids[..ids.len().min(MAX_EVIDENCE_LOOKUP)];
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_ts_id
          WHERE ts BETWEEN ? AND ? AND event_id IN ({marks}) ORDER BY ts"
    ))?;
    let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(ids.len() + 2);
    let (lo, hi) = (from.timestamp_micros(), to.timestamp_micros());
    params.push(&lo);
    params.push(&hi);
    params.extend(ids.iter().map(|i| i as &dyn rusqlite::ToSql));
    let mut rows = stmt.query(params.as_slice())?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(event_from_row(r)?);
    }
    Ok(out)
}

/// Most evidence ids one lookup takes (alerts keep fewer).
pub const MAX_EVIDENCE_LOOKUP: usize = 500;

/// One stored analyst verdict with the rule of its alert.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackRow {
    pub alert_id: String,
    pub rule_id: Option<String>,
    pub verdict: AlertStatus,
    pub note: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Analyst verdicts, newest first, at most `limit`.
pub fn feedback(conn: &Connection, limit: u32) -> Result<Vec<FeedbackRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.alert_id, a.rule_id, f.verdict, f.note, f.by, f.at
           FROM feedback f LEFT JOIN alerts a ON a.alert_id = f.alert_id
          ORDER BY f.at DESC, f.id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    rows.map(|row| {
        let (alert_id, rule_id, verdict, note, by, at) = row?;
        Ok(FeedbackRow {
            alert_id,
            rule_id,
            verdict: AlertStatus::from_text(&verdict)
                .ok_or_else(|| StoreError::Corrupt(format!("verdict {verdict}")))?,
            note,
            by,
            at: DateTime::from_timestamp_millis(at)
                .ok_or_else(|| StoreError::Corrupt(format!("feedback time {at}")))?,
        })
    })
    .collect()
}

pub fn count_events(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
}

/// Alerts, newest first by last activity, at most `limit`.
pub fn recent_alerts(conn: &Connection, limit: u32) -> Result<Vec<Alert>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT body, status FROM alerts ORDER BY last_seen DESC, alert_id LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (body, status) = row?;
        let mut a: Alert = from_json(&body)?;
        a.status = AlertStatus::from_text(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?;
        out.push(a);
    }
    Ok(out)
}

pub fn host_states(conn: &Connection) -> Result<Vec<(String, HostState)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT host, body FROM host_state ORDER BY host")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (h, body) = row?;
        Ok((h, from_json(&body)?))
    })
    .collect()
}

pub fn host_state(conn: &Connection, host: &str) -> Result<Option<HostState>, StoreError> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM host_state WHERE host = ?1",
            params![host],
            |r| r.get(0),
        )
        .optional()?;
    body.map(|b| from_json(&b)).transpose()
}

pub fn bans(conn: &Connection) -> Result<Vec<Ban>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT body FROM ip_bans ORDER BY ip")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|row| from_json(&row?)).collect()
}

pub fn audit_log(conn: &Connection) -> Result<Vec<AdminAction>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT at, actor, action, target, reason FROM audit ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    rows.map(|row| {
        let (at, actor, action, target, reason) = row?;
        let at_utc = DateTime::from_timestamp_millis(at)
            .ok_or_else(|| StoreError::Corrupt(format!("audit time {at}")))?;
        Ok(AdminAction {
            at_utc,
            actor,
            action,
            target,
            reason,
        })
    })
    .collect()
}

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

//! Durable state in SQLite: events (bounded retention), alerts and their
//! triage status, host response state, IP bans, idempotency keys, analyst
//! feedback, and the admin audit trail.
//!
//! One writer thread owns the write connection and commits whatever has
//! queued up as a single transaction (group commit); readers open their own
//! connections (WAL lets them run beside the writer). All SQL is
//! parameterised.
//!
//! Here: opening a store, the writes ([`WriteOp`]) and the writer's handle.
//! The writer thread and its group commits are in `writer.rs`, idempotency
//! keys (digests, blocks, the read-back at start) in `keys.rs`, retention in
//! `retention.rs`, the reads in `queries.rs`, the schema and its migrations
//! in `schema.rs`.

pub mod audit_log;
mod keys;
mod queries;
mod retention;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::detect::{Alert, AlertStatus};
use crate::event::Event;
use crate::respond::policy::StateChange;

use writer::writer_loop;

pub use keys::{IDEMPOTENCY_TTL_SECS, for_each_idempotency_key, idempotency_key};
pub use queries::{
    FeedbackRow, MAX_EVIDENCE_LOOKUP, StoredEvent, audit_log, bans, count_events, event,
    events_in_range, feedback, host_state, host_states, newest_events, recent_alerts,
    source_positions,
};
pub use writer::RETENTION_STEP;

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
    /// Keep at most this many events; the oldest (by event time) go first,
    /// every 64 commits or once [`RETENTION_STEP`] are past the bound.
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
    /// Where a source that reads logs itself (a followed file, the journal)
    /// has read to, everything before it handed to the engine and answered:
    /// the next start resumes there. Saved at least once a second while the
    /// source reads, and when it stops. A write lost with a failed commit
    /// is not handed back: the next one carries a newer position, and the
    /// lines read again after a restart are refused as duplicates (their
    /// ids come from where they are), not stored twice.
    Position {
        source: String,
        position: SourcePosition,
        at: DateTime<Utc>,
    },
    /// Audit records of what this group stores (the gateway's accept
    /// records): once the group has committed, its records go to the
    /// writer's [`RecordSink`] in one append, before any of its
    /// [`WriteOp::AfterCommit`] callbacks run, so a reply sent from one
    /// follows its record. Dropped if the commit fails (the caller, which
    /// then hears no reply, records the refusal itself).
    Records(audit_log::Pending),
}

/// Where a source has read to (see [`WriteOp::Position`]), kept as JSON in
/// `source_positions`, keyed by the source (`file:/var/log/auth.log`,
/// `journald`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourcePosition {
    /// A file, by identity (device, inode), and the byte offset of the
    /// first line not yet read to its end; `head` is a digest of its first
    /// `head_len` bytes (up to 256), so a new file that got the old one's
    /// inode is not taken for it.
    File {
        dev: u64,
        ino: u64,
        offset: u64,
        #[serde(default)]
        head_len: u64,
        #[serde(default)]
        head: u64,
    },
    /// The systemd journal's cursor of the last entry read.
    Journal { cursor: String },
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

/// Whether the live writer's commits are failing, for `GET /health`, and
/// what its retention has deleted, for the console.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing: std::sync::atomic::AtomicBool,
    /// Since when, and the latest error.
    detail: std::sync::Mutex<Option<(DateTime<Utc>, String)>>,
    /// Events in the store after the latest commit or retention pass.
    stored: std::sync::atomic::AtomicU64,
    deleted_over_bound: std::sync::atomic::AtomicU64,
    deleted_aged: std::sync::atomic::AtomicU64,
    /// When the count bound first deleted anything in this run.
    at_bound_since: std::sync::OnceLock<DateTime<Utc>>,
    max_events: u64,
    max_age_days: Option<u64>,
}

/// What retention has deleted in this run of the live writer, and why
/// ([`StoreHealth::retention`]): from then on an old alert's evidence may
/// be gone from the store, with no request refused and nothing in any
/// answer to say so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionReport {
    /// Events in the store now.
    pub stored: u64,
    /// `[store] max_events`.
    pub max_events: u64,
    /// Deleted to stay within `max_events`, oldest by event time first.
    pub deleted_over_bound: u64,
    /// When that began (this run).
    pub at_bound_since: Option<DateTime<Utc>>,
    /// Deleted for being older than `[store] max_age_days`.
    pub deleted_aged: u64,
    pub max_age_days: Option<u64>,
}

impl StoreHealth {
    fn new(retention: &Retention) -> StoreHealth {
        StoreHealth {
            max_events: retention.max_events,
            max_age_days: retention.max_age.map(|a| a.as_secs() / 86_400),
            ..StoreHealth::default()
        }
    }

    /// The writer's count of stored events, after a commit or a retention
    /// pass, and what that pass deleted.
    fn retained(&self, stored: u64, over_bound: u64, aged: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stored.store(stored, Relaxed);
        if over_bound > 0 {
            let _ = self.at_bound_since.set(Utc::now());
            self.deleted_over_bound.fetch_add(over_bound, Relaxed);
        }
        if aged > 0 {
            self.deleted_aged.fetch_add(aged, Relaxed);
        }
    }

    /// What retention has deleted in this run; `None` while it has deleted
    /// nothing.
    pub fn retention(&self) -> Option<RetentionReport> {
        use std::sync::atomic::Ordering::Relaxed;
        let over = self.deleted_over_bound.load(Relaxed);
        let aged = self.deleted_aged.load(Relaxed);
        (over > 0 || aged > 0).then(|| RetentionReport {
            stored: self.stored.load(Relaxed),
            max_events: self.max_events,
            deleted_over_bound: over,
            at_bound_since: self.at_bound_since.get().copied(),
            deleted_aged: aged,
            max_age_days: self.max_age_days,
        })
    }

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
    /// Events retention deleted because the store held more than
    /// `max_events`.
    pub deleted_over_bound: u64,
    /// Events retention deleted, within the bound, for being older than
    /// `max_age`.
    pub deleted_aged: u64,
}

/// The store's share of a run's stop summary: what was written, and what
/// retention deleted to keep within its bounds.
pub fn describe_run(s: &WriterStats) -> String {
    let mut line = format!(
        "store: {} events and {} alert writes in {} commit{}",
        s.events,
        s.alerts,
        s.transactions,
        if s.transactions == 1 { "" } else { "s" }
    );
    if s.failed_commits > 0 {
        line.push_str(&format!(", {} commits failed", s.failed_commits));
    }
    line.push_str("; ");
    line.push_str(&describe_retention(s).unwrap_or_else(|| "retention deleted none".to_string()));
    line
}

/// What retention deleted, for a summary; `None` when it deleted nothing.
pub fn describe_retention(s: &WriterStats) -> Option<String> {
    match (s.deleted_over_bound, s.deleted_aged) {
        (0, 0) => None,
        (bound, 0) => Some(format!(
            "retention deleted {bound} older events to keep within max_events"
        )),
        (0, aged) => Some(format!("retention deleted {aged} events past max_age_days")),
        (bound, aged) => Some(format!(
            "retention deleted {bound} older events to keep within max_events and {aged} past max_age_days"
        )),
    }
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
    /// crash, and the queue is `LIVE_QUEUE` (1 024) messages deep. Offline scans
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
        let health = fsync_each_commit.then(|| std::sync::Arc::new(StoreHealth::new(&retention)));
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

/// A time as the store keeps it: ms since the epoch.
fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_summary_says_what_retention_deleted_and_why() {
        let stats = |transactions, bound, aged| WriterStats {
            transactions,
            events: 60,
            alerts: 2,
            failed_commits: 0,
            deleted_over_bound: bound,
            deleted_aged: aged,
        };
        assert_eq!(
            describe_run(&stats(1, 0, 0)),
            "store: 60 events and 2 alert writes in 1 commit; retention deleted none"
        );
        assert_eq!(
            describe_run(&stats(3, 40, 0)),
            "store: 60 events and 2 alert writes in 3 commits; retention deleted 40 older events to keep within max_events"
        );
        assert_eq!(
            describe_run(&stats(3, 0, 6)),
            "store: 60 events and 2 alert writes in 3 commits; retention deleted 6 events past max_age_days"
        );
        assert_eq!(
            describe_run(&WriterStats {
                failed_commits: 2,
                ..stats(3, 40, 6)
            }),
            "store: 60 events and 2 alert writes in 3 commits, 2 commits failed; retention deleted 40 older events to keep within max_events and 6 past max_age_days"
        );
    }
}

//! Wires parse → detect → respond → sinks. [`Pipeline`] is the synchronous
//! core every front end drives: `vigil scan` feeds it file lines; the live
//! engine will feed it from its sources.

mod seen;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::detect::alert::recommended;
use crate::detect::{Alert, Detector, Verdict};
use crate::event::Event;
use crate::respond::policy::{BanRequest, Policy, PolicyDecision};
use crate::store::{StoreError, StoreWriter, WriteOp};

/// Counters for the scan summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub events: u64,
    pub failures: u64,
    /// Events whose line had no timestamp; correlation skipped them.
    pub untimed: u64,
    pub alerts_by_rule: BTreeMap<String, u64>,
}

/// Detection and response for one stream of events.
pub struct Pipeline {
    detector: Detector,
    policy: Policy,
    store: Option<StoreWriter>,
    stats: PipelineStats,
    bans: Vec<BanRequest>,
    verdict: Verdict,
    /// Leave policy state changes for the caller to take (the live engine
    /// persists them itself).
    keep_changes: bool,
}

impl Pipeline {
    /// `store`: where to persist events, alerts and state (`None`: nothing
    /// is written anywhere).
    pub fn new(cfg: &Config, store: Option<StoreWriter>) -> Self {
        Pipeline {
            detector: Detector::new(cfg.rules.clone()),
            policy: Policy::new(cfg.policy.clone()),
            store,
            stats: PipelineStats::default(),
            bans: Vec::new(),
            verdict: Verdict::default(),
            keep_changes: false,
        }
    }

    /// Keeps policy state changes for [`Policy::take_changes`] instead of
    /// dropping them when there is no store.
    pub fn keep_changes(mut self) -> Self {
        self.keep_changes = true;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Runs one event through detection and the response policy. The
    /// returned verdict borrows a buffer reused across events; the event is
    /// copied only when a store keeps it.
    pub fn process(
        &mut self,
        ev: &Event,
        wall_now: DateTime<Utc>,
    ) -> Result<(&Verdict, PolicyDecision), StoreError> {
        self.stats.events += ev.repeat.max(1) as u64;
        if ev.is_failure() {
            self.stats.failures += ev.repeat.max(1) as u64;
        }
        if ev.time_is_inferred() {
            self.stats.untimed += 1;
        }
        self.detector.process_into(ev, wall_now, &mut self.verdict);
        let verdict = &self.verdict;
        self.bans.clear();
        for r in &verdict.alerts {
            if let (recommended::BLOCK_IP, Some(ip)) = (r.recommended_action, r.src_ip) {
                self.bans.push(BanRequest {
                    ip,
                    alert_id: r.alert_id.clone(),
                    rule_id: r.rule_id,
                });
            }
        }
        let decision = self.policy.evaluate(ev, verdict, &self.bans);
        if let Some(store) = &self.store {
            for change in self.policy.take_changes() {
                store.send(WriteOp::State(change))?;
            }
            store.send(WriteOp::Event(Box::new(ev.clone())))?;
        } else if !self.keep_changes {
            // Nobody will persist them (scan without --data-dir).
            self.policy.take_changes();
        }
        Ok((&self.verdict, decision))
    }

    fn sink_alerts(&mut self, alerts: &[Alert]) -> Result<(), StoreError> {
        for a in alerts {
            *self
                .stats
                .alerts_by_rule
                .entry(a.rule_id.clone())
                .or_default() += 1;
            if let Some(store) = &self.store {
                store.send(WriteOp::Alert(std::sync::Arc::new(a.clone())))?;
            }
        }
        Ok(())
    }

    /// Alerts whose de-duplication window has closed (final form).
    pub fn take_closed_alerts(&mut self) -> Result<Vec<Alert>, StoreError> {
        let closed = self.detector.take_closed();
        self.sink_alerts(&closed)?;
        Ok(closed)
    }

    /// Like [`take_closed_alerts`](Self::take_closed_alerts), marking the
    /// alerts that changed after they opened.
    pub fn take_closed_alerts_marked(&mut self) -> Result<Vec<crate::detect::Closed>, StoreError> {
        let closed = self.detector.take_closed_marked();
        for c in &closed {
            self.sink_alerts(std::slice::from_ref(&c.alert))?;
        }
        Ok(closed)
    }

    /// Ends the stream: closes all alerts, commits the store.
    pub fn finish(mut self) -> Result<(Vec<Alert>, PipelineStats, Policy), StoreError> {
        let rest = self.detector.finish();
        self.sink_alerts(&rest)?;
        if let Some(store) = self.store.take() {
            store.close()?;
        }
        Ok((rest, self.stats, self.policy))
    }
}

// ---------------------------------------------------------------------------
// The live engine: detection and response state behind one lock, driven by
// the tasks that bring events; one store writer thread commits in groups and
// only then are the answers sent.
// ---------------------------------------------------------------------------

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::detect::Decision;
use crate::respond::policy::HostState;
use crate::store::StoreWriter as Writer;
use crate::util::FastMap;

/// How long an accepted `event_id` is remembered (the seed's 7 days).
pub const IDEMPOTENCY_TTL_SECS: i64 = crate::store::IDEMPOTENCY_TTL_SECS;

/// Live-engine settings beyond detection and policy.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Events per host per minute before `rate_limited`.
    pub rate_limit_per_min: u32,
    /// Alerts kept for `GET /alerts/recent`.
    pub recent_alerts: usize,
    /// Where a watching console gets accepted events and alert updates.
    pub feed: Option<FeedSender>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            rate_limit_per_min: 300,
            recent_alerts: 200,
            feed: None,
        }
    }
}

/// An accepted event as a console shows it.
#[derive(Clone, Debug)]
pub struct FeedEvent {
    pub event: Event,
    pub correlation: Decision,
    pub final_decision: Decision,
    pub reasons: Vec<&'static str>,
}

/// What the engine tells a watching console.
#[derive(Clone, Debug)]
pub enum Feed {
    Event(Box<FeedEvent>),
    /// An alert opened, grew, or closed (its current form).
    Alert(Box<Alert>),
}

/// The engine's side of the console feed. Sends never wait: when the
/// console is behind, the message is dropped and counted, so a slow screen
/// can never slow ingestion; the console shows the count and re-reads
/// alerts from the store when it has lost any.
#[derive(Clone, Debug)]
pub struct FeedSender {
    tx: tokio::sync::mpsc::Sender<Feed>,
    dropped_events: std::sync::Arc<std::sync::atomic::AtomicU64>,
    dropped_alerts: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The console's side of the feed.
pub struct FeedReceiver {
    pub rx: tokio::sync::mpsc::Receiver<Feed>,
    pub dropped_events: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub dropped_alerts: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A feed holding at most `capacity` messages in flight.
pub fn feed(capacity: usize) -> (FeedSender, FeedReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    let dropped_events = std::sync::Arc::default();
    let dropped_alerts = std::sync::Arc::default();
    (
        FeedSender {
            tx,
            dropped_events: std::sync::Arc::clone(&dropped_events),
            dropped_alerts: std::sync::Arc::clone(&dropped_alerts),
        },
        FeedReceiver {
            rx,
            dropped_events,
            dropped_alerts,
        },
    )
}

impl FeedSender {
    fn send(&self, msg: Feed) {
        use std::sync::atomic::Ordering::Relaxed;
        let counter = match &msg {
            Feed::Event(_) => &self.dropped_events,
            Feed::Alert(_) => &self.dropped_alerts,
        };
        if self.tx.try_send(msg).is_err() {
            counter.fetch_add(1, Relaxed);
        }
    }
}

/// Why the engine refused an event (after the gateway's own checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    DuplicateEventId,
    RateLimited,
    /// The store could not commit: nothing was acknowledged.
    StoreFailed,
}

/// The engine's answer for an accepted event.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub verdict: Verdict,
    pub policy: PolicyDecision,
}

/// An analyst's administrative request.
#[derive(Clone, Debug)]
pub enum AdminRequest {
    Release {
        host: String,
        reason: String,
        by: String,
    },
    Unban {
        ip: std::net::IpAddr,
        reason: String,
        by: String,
    },
    Ban {
        ip: std::net::IpAddr,
        reason: String,
        by: String,
        alert_id: Option<String>,
    },
    Quarantine {
        host: String,
        reason: String,
        by: String,
        alert_id: Option<String>,
    },
    /// An analyst's verdict on an alert (feedback for the model).
    Label {
        alert_id: String,
        verdict: crate::detect::AlertStatus,
        note: String,
        by: String,
    },
}

/// Every host with response state and every ban in force.
#[derive(Clone, Debug, Default)]
pub struct PolicySnapshot {
    pub hosts: Vec<(String, HostState)>,
    pub bans: Vec<crate::respond::policy::Ban>,
}

/// Bans and quarantines in force, for firewalls that pull them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Decisions {
    pub bans: Vec<crate::respond::policy::Ban>,
    pub quarantined_hosts: Vec<(String, crate::respond::policy::Quarantine)>,
}

/// Where the answers of one engine call go once they are committed: one
/// channel per call, not per event (a batch of 1 000 lines would otherwise
/// allocate and wake 1 000 channels).
enum Reply {
    /// With the gateway's accept record, if it gave one: queued with the
    /// event's writes if the event is accepted (see [`WriteOp::Records`]).
    One(
        tokio::sync::oneshot::Sender<Result<Accepted, Refusal>>,
        Option<crate::store::audit_log::Pending>,
    ),
    Many(tokio::sync::oneshot::Sender<Vec<Result<Accepted, Refusal>>>),
}

type ChunkAnswers = tokio::sync::oneshot::Receiver<Vec<Result<Accepted, Refusal>>>;

/// The answers of a [`EngineHandle::submit_many`], in the order of its
/// events, arriving chunk by chunk as the writer commits them.
pub struct BatchReceipt {
    chunks: Vec<(usize, ChunkAnswers)>,
    /// Events at the end that never reached the engine (it stopped).
    unsent: usize,
}

impl BatchReceipt {
    /// Waits for every chunk; `None` for the events of a chunk whose commit
    /// failed, or that never reached the engine because it stopped (their
    /// callers answer 503). Chunks committed before that keep their answers.
    pub async fn answers(self) -> Vec<Option<Result<Accepted, Refusal>>> {
        let total = self.chunks.iter().map(|(n, _)| n).sum::<usize>() + self.unsent;
        let mut out = Vec::with_capacity(total);
        for (n, rx) in self.chunks {
            match rx.await {
                Ok(answers) if answers.len() == n => out.extend(answers.into_iter().map(Some)),
                _ => out.extend((0..n).map(|_| None)),
            }
        }
        out.extend((0..self.unsent).map(|_| None));
        out
    }
}

/// What became of an analyst's action ([`EngineHandle::admin`]).
#[derive(Debug, Clone, PartialEq)]
pub enum AdminOutcome {
    /// In force and committed, with its audit row.
    Done(crate::respond::policy::AdminAction),
    /// Refused; nothing changed.
    Refused(String),
    /// In force now, but its commit failed (a full disk, a locked store):
    /// the change and its audit row are written with the next commit that
    /// succeeds (retried every second, see [`EngineHandle::catch_up`]),
    /// and lost if vigil stops before the store recovers.
    NotStored(crate::respond::policy::AdminAction),
}

/// A cheap, cloneable handle to the live engine.
///
/// The engine's state sits behind a mutex and the task that brings an
/// event runs detection and response itself, then queues the writes and
/// its reply for the store writer, which answers after the commit. So an
/// event crosses one thread boundary on its way in (to the writer) instead
/// of two: on these two-core machines each wake-up of a sleeping thread
/// costs ~60 µs, as much as the engine's work on a whole group of events. The lock is held per event or per chunk of a batch,
/// never while waiting for the disk.
#[derive(Clone)]
pub struct EngineHandle {
    shared: std::sync::Arc<std::sync::Mutex<Option<Live>>>,
    /// Free places in the writer's queue (see [`StoreWriter::slots`]):
    /// taken before the lock, so a stalled disk makes callers wait here,
    /// asynchronously, not inside the lock on a runtime thread.
    slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// Whether the store's commits are failing.
    health: Option<std::sync::Arc<crate::store::StoreHealth>>,
    /// What failed commits handed back, for [`EngineHandle::catch_up`].
    failed: Option<std::sync::Arc<crate::store::FailedCommits>>,
    /// Where the store writer appends accept records (the gateway's audit
    /// log, once it exists).
    records: crate::store::RecordSinkSlot,
    /// When the last handle is dropped, the engine closes its store.
    _alive: std::sync::mpsc::Sender<()>,
}

/// Where an event came from, which decides whether the per-host rate limit
/// applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A producer posting to the gateway: limited per host, as the seed
    /// did (it hears 429 and can slow down or retry).
    Producer,
    /// A log vigil reads itself (a tailed file, syslog, the journal): not
    /// limited. Nobody would hear a refusal, so it would lose the lines an
    /// attack writes fastest; these sources wait for the engine instead
    /// (UDP syslog excepted, where the kernel drops what does not fit).
    Local,
}

/// The engine has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the engine has stopped")]
pub struct EngineGone;

/// Events of a batch correlated per lock: long enough to amortise the
/// lock, short enough that other connections are not held up (~0.3 ms).
const CHUNK: usize = 64;

impl EngineHandle {
    fn with_live<R>(&self, f: impl FnOnce(&mut Live) -> R) -> Result<R, EngineGone> {
        let mut guard = self.shared.lock().map_err(|_| EngineGone)?;
        let live = guard.as_mut().ok_or(EngineGone)?;
        Ok(f(live))
    }

    /// Like [`with_live`](Self::with_live) for a call that sends the writer
    /// (at most) one message: waits for a place in the writer's queue first,
    /// so the send inside the lock never blocks.
    async fn with_live_sending<R>(&self, f: impl FnOnce(&mut Live) -> R) -> Result<R, EngineGone> {
        if let Some(slots) = &self.slots {
            slots.acquire().await.map_err(|_| EngineGone)?.forget();
        }
        let give_back = || {
            if let Some(slots) = &self.slots {
                slots.add_permits(1);
            }
        };
        let Ok(mut guard) = self.shared.lock() else {
            give_back();
            return Err(EngineGone);
        };
        let Some(live) = guard.as_mut() else {
            give_back();
            return Err(EngineGone);
        };
        let sent = live.sent;
        let r = f(live);
        if live.sent == sent {
            give_back();
        }
        Ok(r)
    }

    /// Since when the store's commits fail and the latest error; `None`
    /// while they succeed.
    pub fn store_problem(&self) -> Option<(DateTime<Utc>, String)> {
        self.health.as_ref().and_then(|h| h.problem())
    }

    /// Correlates and commits one producer's event (the gateway's
    /// `/ingest`); answers after the commit.
    pub async fn ingest(&self, ev: Event) -> Result<Result<Accepted, Refusal>, EngineGone> {
        let rx = self.submit(ev, Origin::Producer).await?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Where the store writer appends the records given to
    /// [`ingest_recorded`](Self::ingest_recorded); `false` if one was set
    /// already.
    pub fn set_record_sink(&self, sink: std::sync::Weak<dyn crate::store::RecordSink>) -> bool {
        self.records.set(sink).is_ok()
    }

    /// Like [`ingest`](Self::ingest) with the event's accept record: if the
    /// event is accepted, the store writer appends the record to the sink
    /// set by [`set_record_sink`](Self::set_record_sink) after the commit,
    /// in one write with the rest of its group's, and only then answers;
    /// otherwise the record is dropped and the caller records the refusal.
    /// (One write per group instead of one per event from the gateway's
    /// threads, each under the audit log's lock: +10 % at concurrency 16.)
    /// The flag says whether the record was written so; it is `false` for
    /// a refusal, and when no sink is set (the caller then writes the
    /// record itself, as for [`ingest`](Self::ingest)).
    pub async fn ingest_recorded(
        &self,
        ev: Event,
        record: crate::store::audit_log::Pending,
    ) -> Result<(Result<Accepted, Refusal>, bool), EngineGone> {
        let record = self.records.get().is_some().then_some(record);
        let recorded = record.is_some();
        let rx = self.submit_with(ev, Origin::Producer, record).await?;
        let answer = rx.await.map_err(|_| EngineGone)?;
        let recorded = recorded && answer.is_ok();
        Ok((answer, recorded))
    }

    /// For the sources that read logs themselves: correlates and commits
    /// one event like [`submit`](Self::submit) with [`Origin::Local`], but
    /// if its commit fails it is submitted again (after 0.1 s, doubling to
    /// 2 s) until it is stored, refused for another reason, the engine
    /// stops, or `give_up` says so. The line was read and nobody else will
    /// send it again.
    pub async fn ingest_local(
        &self,
        ev: Event,
        give_up: &(dyn Fn() -> bool + Sync),
    ) -> Result<Result<Accepted, Refusal>, EngineGone> {
        let mut wait = Duration::from_millis(100);
        loop {
            let rx = self.submit(ev.clone(), Origin::Local).await?;
            match rx.await {
                Ok(Err(Refusal::StoreFailed)) | Err(_) if !give_up() => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Ok(answer) => return Ok(answer),
                Err(_) => return Ok(Err(Refusal::StoreFailed)),
            }
        }
    }

    /// Correlates one event in order and returns where its answer will
    /// arrive (after the commit), so a caller can queue many before
    /// waiting.
    pub async fn submit(
        &self,
        ev: Event,
        origin: Origin,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Accepted, Refusal>>, EngineGone> {
        self.submit_with(ev, origin, None).await
    }

    /// [`submit`](Self::submit), with the event's accept record if any.
    async fn submit_with(
        &self,
        ev: Event,
        origin: Origin,
        record: Option<crate::store::audit_log::Pending>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Accepted, Refusal>>, EngineGone> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.with_live_sending(|live| live.run(vec![ev], origin, Reply::One(tx, record)))
            .await?;
        Ok(rx)
    }

    /// Correlates many events in order; the answers arrive in the same
    /// order. Other callers may interleave between chunks of [`CHUNK`].
    ///
    /// If the engine stops part-way, the chunks it took keep their answers
    /// and the rest answer `None`; `Err` only when it took none.
    pub async fn submit_many(
        &self,
        events: Vec<Event>,
        origin: Origin,
    ) -> Result<BatchReceipt, EngineGone> {
        let mut receipt = BatchReceipt {
            chunks: Vec::with_capacity(events.len().div_ceil(CHUNK)),
            unsent: 0,
        };
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<_> = events.by_ref().take(CHUNK).collect();
            let n = chunk.len();
            let (tx, rx) = tokio::sync::oneshot::channel();
            match self
                .with_live_sending(|live| live.run(chunk, origin, Reply::Many(tx)))
                .await
            {
                Ok(()) => receipt.chunks.push((n, rx)),
                Err(gone) if receipt.chunks.is_empty() => return Err(gone),
                Err(_) => {
                    receipt.unsent = n + events.count();
                    break;
                }
            }
            if events.peek().is_some() {
                tokio::task::yield_now().await;
            }
        }
        Ok(receipt)
    }

    pub async fn host_state(&self, host: String) -> Result<HostState, EngineGone> {
        self.with_live(|live| live.pipeline.policy().host_state(&host))
    }

    /// Releases a host, lifts or sets a ban, quarantines a host or labels
    /// an alert; answered once the change and its audit row are committed,
    /// or once that commit has failed (see [`AdminOutcome::NotStored`]).
    pub async fn admin(&self, req: AdminRequest) -> Result<AdminOutcome, EngineGone> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let answer = self
            .with_live_sending(|live| {
                // Anything an earlier failed commit handed back goes too.
                live.take_back_failed();
                let answer = live.admin(req);
                let done = crate::store::AfterCommit(Box::new(move || {
                    let _ = tx.send(());
                }));
                live.queue(WriteOp::AfterCommit(done));
                live.send_queued();
                answer
            })
            .await?;
        // The writer drops the reply when the commit fails.
        let stored = rx.await.is_ok();
        Ok(match answer {
            Ok(action) if stored => AdminOutcome::Done(action),
            Ok(action) => AdminOutcome::NotStored(action),
            Err(why) => AdminOutcome::Refused(why),
        })
    }

    /// Queues again what failed commits handed back, if anything: the
    /// engine does so on its next events or admin action, but on a quiet
    /// system those may be hours away, and an analyst's release that met a
    /// failed commit must still reach the store. True when it sent writes.
    pub async fn catch_up(&self) -> Result<bool, EngineGone> {
        if !self.failed.as_ref().is_some_and(|f| f.pending()) {
            return Ok(false);
        }
        self.with_live_sending(|live| {
            live.take_back_failed();
            let any = !live.queued.is_empty();
            live.send_queued();
            any
        })
        .await
    }

    pub async fn decisions(&self) -> Result<Decisions, EngineGone> {
        self.with_live(|live| {
            let now = Utc::now();
            let policy = live.pipeline.policy();
            Decisions {
                bans: policy.active_bans(now).into_iter().cloned().collect(),
                quarantined_hosts: policy
                    .quarantined_hosts()
                    .into_iter()
                    .map(|(h, q)| (h.to_string(), q.clone()))
                    .collect(),
            }
        })
    }

    /// Host states and bans, for a console's hosts pane.
    pub async fn snapshot(&self) -> Result<PolicySnapshot, EngineGone> {
        self.with_live(|live| {
            let now = Utc::now();
            let policy = live.pipeline.policy();
            PolicySnapshot {
                hosts: policy
                    .hosts()
                    .into_iter()
                    .map(|(h, st)| (h.to_string(), st.clone()))
                    .collect(),
                bans: policy.active_bans(now).into_iter().cloned().collect(),
            }
        })
    }

    /// The newest alerts, oldest first.
    pub async fn recent_alerts(&self, limit: usize) -> Result<Vec<Alert>, EngineGone> {
        self.with_live(|live| {
            let skip = live.recent.len().saturating_sub(limit);
            live.recent
                .iter()
                .skip(skip)
                .map(|a| (**a).clone())
                .collect()
        })
    }
}

struct Live {
    pipeline: Pipeline,
    writer: std::sync::Arc<Writer>,
    cfg: LiveConfig,
    idempotency: seen::SeenIds,
    /// What the writer hands back from a failed commit.
    failed: Option<std::sync::Arc<crate::store::FailedCommits>>,
    /// Keys of events answered 503 after a failed commit, with their
    /// decisions (see [`Live::take_back_failed`]).
    unstored: FastMap<u64, u16>,
    /// Host names inline (see `compact_str`): a heap string per key cost a
    /// cache miss per event once a fleet's names no longer fit the cache.
    rate: FastMap<compact_str::CompactString, (Instant, u32)>,
    recent: VecDeque<std::sync::Arc<Alert>>,
    last_purge: Instant,
    /// The next key table to purge of the current round ([`seen::SHARDS`]:
    /// round done).
    purge_next: usize,
    /// Alerts matched in this batch, announced once each at its end.
    touched: Vec<crate::detect::AlertRef>,
    /// Writes of the current call, sent to the writer in one message.
    queued: Vec<WriteOp>,
    /// Messages sent to the writer so far (each call sends at most one).
    sent: u64,
    /// The current call's idempotency keys (kept to reuse its memory).
    keys: Vec<u64>,
}

/// Longest analyst note kept with a verdict.
pub const MAX_NOTE_BYTES: usize = 4096;

/// How often expired idempotency keys and idle rate-limit slots are dropped
/// from memory (the store drops expired keys on its own schedule).
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Starts the engine on its own thread with the store at `db`, restoring
/// host state, bans and idempotency keys from it.
pub fn spawn_live(
    cfg: &Config,
    live: LiveConfig,
    db: &Path,
) -> Result<(EngineHandle, std::thread::JoinHandle<()>), StoreError> {
    let conn = crate::store::open(db)?;
    let now = Utc::now();
    let mut idempotency = seen::SeenIds::new(now);
    crate::store::for_each_idempotency_key(&conn, now, |key, exp| idempotency.load(key, exp))?;
    tracing::info!(
        "{} idempotency keys in force ({} MiB)",
        idempotency.len(),
        idempotency.bytes() >> 20
    );
    let hosts = crate::store::host_states(&conn)?;
    let bans = crate::store::bans(&conn)?;
    // `GET /alerts/recent` lists what the store holds, oldest first, as the
    // seed's did from its alerts file after a restart.
    let recent: VecDeque<std::sync::Arc<Alert>> =
        crate::store::recent_alerts(&conn, live.recent_alerts.min(u32::MAX as usize) as u32)?
            .into_iter()
            .rev()
            .map(std::sync::Arc::new)
            .collect();
    drop(conn);
    // The gateway acknowledges only committed events: fsync each group commit.
    let records: crate::store::RecordSinkSlot = std::sync::Arc::default();
    let writer = std::sync::Arc::new(Writer::spawn_with(
        db,
        cfg.store.retention(),
        true,
        Some(records.clone()),
    )?);
    let slots = writer.slots();
    let failed = writer.failed_commits();
    let failed_for_handle = failed.clone();
    let health = writer.health();
    let mut pipeline = Pipeline::new(cfg, None).keep_changes();
    pipeline.policy_mut().restore(hosts, bans);
    let state = Live {
        pipeline,
        writer,
        cfg: live,
        idempotency,
        failed,
        unstored: FastMap::default(),
        rate: FastMap::default(),
        recent,
        last_purge: Instant::now(),
        purge_next: seen::SHARDS,
        touched: Vec::new(),
        queued: Vec::new(),
        sent: 0,
        keys: Vec::new(),
    };
    let shared = std::sync::Arc::new(std::sync::Mutex::new(Some(state)));
    let (alive, gone) = std::sync::mpsc::channel::<()>();
    let closing = std::sync::Arc::clone(&shared);
    // Waits for the last handle to go, then commits what is queued and
    // stops the store writer; joining it tells the caller all is stored.
    let handle = std::thread::Builder::new()
        .name("vigil-engine".into())
        .spawn(move || {
            while gone.recv().is_ok() {}
            let state = match closing.lock() {
                Ok(mut g) => g.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            if let Some(mut state) = state {
                // One last try for what failed commits handed back.
                state.take_back_failed();
                state.send_queued();
                if let Ok(w) = std::sync::Arc::try_unwrap(state.writer) {
                    let _ = w.close();
                }
                // What even that try could not store is said, not dropped
                // silently: the store is behind what the engine knew.
                if let Some(failed) = &state.failed {
                    if let Some(line) = crate::store::describe_unstored(&failed.take().1) {
                        tracing::error!("{line}");
                    }
                }
            }
        })
        .map_err(StoreError::Thread)?;
    Ok((
        EngineHandle {
            shared,
            slots,
            health,
            failed: failed_for_handle,
            records,
            _alive: alive,
        },
        handle,
    ))
}

impl Live {
    /// Correlates events in order, then queues their replies to be sent
    /// once the writer has committed them.
    fn run(&mut self, events: Vec<Event>, origin: Origin, reply: Reply) {
        let wall = Utc::now();
        self.take_back_failed();
        if self.last_purge.elapsed() >= PURGE_EVERY {
            self.purge_rate();
            self.purge_next = 0;
        }
        // Expired keys go one table per call, never all at once under the
        // lock.
        if self.purge_next < seen::SHARDS {
            self.idempotency.purge_shard(self.purge_next, wall);
            self.purge_next += 1;
        }
        // Every key first, its slot asked for ahead: the key set is far
        // larger than the cache, and the loads then overlap.
        // (A buffer kept between calls: most calls are one event.)
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        keys.extend(
            events
                .iter()
                .map(|ev| crate::store::idempotency_key(&ev.event_id)),
        );
        if keys.len() > 1 {
            for key in &keys {
                self.idempotency.prefetch(*key);
            }
        }
        let mut answers = Vec::with_capacity(events.len());
        // An event queues its key and itself (more if it changes state),
        // the call its reply: room up front rather than a doubling every
        // few events (and for a lone event, room for a state change too).
        self.queued.reserve(2 * events.len() + 2);
        for (ev, key) in events.into_iter().zip(keys.iter().copied()) {
            answers.push(self.ingest(ev, key, wall, origin));
        }
        self.keys = keys;
        self.announce_touched_alerts();
        // Group commit: nothing is acknowledged before it is durable. The
        // writer sends the replies after its commit, so the lock is not held
        // across the disk and the next events are correlated meanwhile. If
        // the commit fails the replies are dropped and the gateway answers
        // 503.
        let done = match reply {
            Reply::One(tx, record) => {
                let answer = answers.pop();
                if let (Some(Ok(_)), Some(record)) = (&answer, record) {
                    self.queue(WriteOp::Records(record));
                }
                crate::store::AfterCommit(Box::new(move || {
                    if let Some(answer) = answer {
                        let _ = tx.send(answer);
                    }
                }))
            }
            Reply::Many(tx) => crate::store::AfterCommit(Box::new(move || {
                let _ = tx.send(answers);
            })),
        };
        self.queue(WriteOp::AfterCommit(done));
        self.send_queued();
    }

    /// What a failed commit handed back. Its alerts, bans and host states
    /// are queued again (memory already holds them; the store catches up).
    /// Its events were answered 503 and will be sent again: their keys stay
    /// taken, with the decisions made then, so the resent event is stored
    /// without being correlated twice (a second count could raise a false
    /// alert). Past [`UNSTORED_MAX`] keys a resent event is simply new.
    fn take_back_failed(&mut self) {
        let Some((keys, writes)) = self.failed.as_ref().map(|f| f.take()) else {
            return;
        };
        self.queued.extend(writes);
        for (key, tag) in keys {
            if self.unstored.len() < UNSTORED_MAX {
                self.unstored.insert(key, tag);
            } else {
                self.idempotency.forget(key);
            }
        }
    }

    fn queue(&mut self, op: WriteOp) {
        self.queued.push(op);
    }

    /// Hands the writer everything this call queued as one message, so the
    /// writer wakes once and commits the writes with the replies waiting on
    /// them. If the writer has stopped, the replies in it are dropped and
    /// their callers hear that the engine is gone (503).
    fn send_queued(&mut self) {
        if !self.queued.is_empty() {
            let ops = std::mem::take(&mut self.queued);
            self.sent += 1;
            let _ = self.writer.send(WriteOp::Batch(ops));
        }
    }

    /// Tells the console the current form of every alert this batch
    /// matched (once per alert, however many events matched it).
    fn announce_touched_alerts(&mut self) {
        let Some(feed) = &self.cfg.feed else {
            return;
        };
        self.touched.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        self.touched.dedup_by(|a, b| a.alert_id == b.alert_id);
        for r in self.touched.drain(..) {
            if let Some(a) = self.pipeline.detector().open_alert(&r) {
                feed.send(Feed::Alert(Box::new(a.clone())));
            }
        }
    }

    /// Forgets rate-limit windows that have ended (expired idempotency
    /// keys go table by table in [`run`](Self::run)), so memory follows
    /// recent traffic, not the process's whole life.
    fn purge_rate(&mut self) {
        let now = Instant::now();
        self.rate
            .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        self.last_purge = now;
    }

    fn admin(&mut self, req: AdminRequest) -> Result<crate::respond::policy::AdminAction, String> {
        // A release covers the evidence seen so far (event time), so the same
        // evidence cannot quarantine the host again.
        let at = self
            .pipeline
            .detector()
            .watermark()
            .unwrap_or_else(Utc::now)
            .max(Utc::now());
        let ban_secs = self.pipeline.policy().config().analyst_ban_secs;
        let policy = self.pipeline.policy_mut();
        let result = match req {
            AdminRequest::Release { host, reason, by } => policy.release(&host, &reason, &by, at),
            AdminRequest::Unban { ip, reason, by } => policy.unban(ip, &reason, &by, at),
            AdminRequest::Ban {
                ip,
                reason,
                by,
                alert_id,
            } => policy.ban_ip(ip, ban_secs, &reason, &by, at, alert_id.as_deref()),
            AdminRequest::Quarantine {
                host,
                reason,
                by,
                alert_id,
            } => policy.quarantine_host(&host, &reason, &by, at, alert_id.as_deref()),
            AdminRequest::Label {
                alert_id,
                verdict,
                note,
                by,
            } => return self.label(alert_id, verdict, note, by),
        };
        for change in self.pipeline.policy_mut().take_changes() {
            self.queue(WriteOp::State(change));
        }
        result.map_err(|e| e.to_string())
    }

    /// Stores an analyst's verdict on an alert, audited like every admin
    /// action.
    fn label(
        &mut self,
        alert_id: String,
        verdict: crate::detect::AlertStatus,
        note: String,
        by: String,
    ) -> Result<crate::respond::policy::AdminAction, String> {
        if by.trim().is_empty() {
            return Err("the acting user must be named".into());
        }
        if alert_id.is_empty() || alert_id.len() > 256 {
            return Err("alert id must be 1 to 256 bytes".into());
        }
        if note.len() > MAX_NOTE_BYTES {
            return Err(format!("a note is at most {MAX_NOTE_BYTES} bytes"));
        }
        let at = Utc::now();
        let action = crate::respond::policy::AdminAction {
            at_utc: at,
            actor: by.clone(),
            action: format!("label_{}", verdict.as_str()),
            target: alert_id.clone(),
            reason: note.clone(),
        };
        self.queue(WriteOp::Feedback {
            alert_id,
            verdict,
            note,
            by,
            at,
        });
        self.queue(WriteOp::State(crate::respond::policy::StateChange::Admin(
            action.clone(),
        )));
        Ok(action)
    }

    fn ingest(
        &mut self,
        ev: Event,
        key: u64,
        wall: DateTime<Utc>,
        origin: Origin,
    ) -> Result<Accepted, Refusal> {
        // One probe of the (large, cache-cold) key set for both the check
        // and the insert; taken back if the rate limit refuses the event.
        // `key` is the event id's (`crate::store::idempotency_key`).
        let expires = wall + chrono::Duration::seconds(IDEMPOTENCY_TTL_SECS);
        if let Some(tag) = self.unstored.remove(&key) {
            return Ok(self.store_resent(ev, key, expires, tag));
        }
        if self.idempotency.admit(key, wall, expires) == seen::Admit::Duplicate {
            return Err(Refusal::DuplicateEventId);
        }
        // Producers: a fixed one-minute window per host, as the seed does.
        if origin == Origin::Producer {
            let now = Instant::now();
            // One probe for a host seen this minute (the common case); a new
            // host costs a second one to insert its name.
            let slot = match self.rate.get_mut(ev.host.as_str()) {
                Some(slot) => slot,
                None => self
                    .rate
                    .entry(compact_str::CompactString::from(ev.host.as_str()))
                    .or_insert((now, 0)),
            };
            if now.duration_since(slot.0) >= Duration::from_secs(60) {
                *slot = (now, 0);
            }
            if slot.1 >= self.cfg.rate_limit_per_min {
                self.idempotency.forget(key);
                return Err(Refusal::RateLimited);
            }
            slot.1 += 1;
        }
        let (verdict, policy) = match self.pipeline.process(&ev, wall) {
            Ok((v, p)) => (v.clone(), p),
            Err(_) => {
                self.idempotency.forget(key);
                return Err(Refusal::StoreFailed);
            }
        };
        self.queue(WriteOp::Idempotency {
            key,
            expires_at: expires,
            tag: decisions_tag(verdict.decision, policy.decision),
        });
        if let Some(feed) = &self.cfg.feed {
            feed.send(Feed::Event(Box::new(FeedEvent {
                event: ev.clone(),
                correlation: verdict.decision,
                final_decision: policy.decision,
                reasons: verdict.reasons.clone(),
            })));
            self.touched.extend(verdict.alerts.iter().cloned());
        }
        // Same transaction as the state it caused: the commit holds both.
        self.queue(WriteOp::Event(Box::new(ev)));
        for change in self.pipeline.policy_mut().take_changes() {
            self.queue(WriteOp::State(change));
        }
        for r in verdict.alerts.iter().filter(|r| r.new) {
            if let Some(a) = self.pipeline.detector().open_alert(r).cloned() {
                let a = std::sync::Arc::new(a);
                self.queue(WriteOp::Alert(a.clone()));
                if self.recent.len() == self.cfg.recent_alerts {
                    self.recent.pop_front();
                }
                self.recent.push_back(a);
            }
        }
        // Alerts whose window closed get their final count stored, unless
        // nothing changed since they were stored at opening: under a
        // distributed attack most alerts open once and never change, and
        // rewriting each of them (~1 KB) when the minute's sweep closes a
        // few hundred thousand at once held every request for ~2 s.
        if let Ok(closed) = self.pipeline.take_closed_alerts_marked() {
            for c in closed.into_iter().filter(|c| c.updated) {
                if let Some(feed) = &self.cfg.feed {
                    feed.send(Feed::Alert(Box::new(c.alert.clone())));
                }
                let alert = std::sync::Arc::new(c.alert);
                // Listed with its final count, not the one it opened with.
                if let Some(listed) = self
                    .recent
                    .iter_mut()
                    .rev()
                    .find(|a| a.alert_id == alert.alert_id)
                {
                    *listed = alert.clone();
                }
                self.queue(WriteOp::Alert(alert));
            }
        }
        Ok(Accepted { verdict, policy })
    }
}

/// Keys of events whose commit failed kept for their resending (16 bytes
/// or so each); more than this and a resent event is correlated anew.
const UNSTORED_MAX: usize = 1 << 20;

/// The reason an event resent after a failed commit is answered with.
pub const STORED_AFTER_FAILED_COMMIT: &str = "stored_after_failed_commit";

fn decision_code(d: Decision) -> u16 {
    match d {
        Decision::Allow => 0,
        Decision::Throttle => 1,
        Decision::Block => 2,
    }
}

fn decision_from_code(c: u16) -> Decision {
    match c {
        1 => Decision::Throttle,
        2 => Decision::Block,
        _ => Decision::Allow,
    }
}

/// An event's correlation and final decisions, as the tag of its key.
fn decisions_tag(correlation: Decision, final_decision: Decision) -> u16 {
    decision_code(correlation) << 8 | decision_code(final_decision)
}

impl Live {
    /// Stores an event resent after its commit failed, with the decisions
    /// made when it first came, without correlating it again.
    fn store_resent(&mut self, ev: Event, key: u64, expires: DateTime<Utc>, tag: u16) -> Accepted {
        self.queue(WriteOp::Idempotency {
            key,
            expires_at: expires,
            tag,
        });
        self.queue(WriteOp::Event(Box::new(ev)));
        let reasons = vec![STORED_AFTER_FAILED_COMMIT];
        Accepted {
            verdict: Verdict {
                decision: decision_from_code(tag >> 8),
                reasons: reasons.clone(),
                ..Verdict::default()
            },
            policy: PolicyDecision {
                decision: decision_from_code(tag & 0xff),
                reasons,
                context: Default::default(),
            },
        }
    }
}

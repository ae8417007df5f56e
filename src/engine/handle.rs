//! [`EngineHandle`]: what the sources, the gateway and the console call,
//! and the answers they get.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::live::Live;
use crate::detect::{Alert, Verdict};
use crate::event::Event;
use crate::respond::policy::{HostState, PolicyDecision};
use crate::store::{SourcePosition, WriteOp};

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
pub(super) enum Reply {
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
    pub(super) shared: std::sync::Arc<std::sync::Mutex<Option<Live>>>,
    /// Free places in the writer's queue (see [`StoreWriter::slots`]):
    /// taken before the lock, so a stalled disk makes callers wait here,
    /// asynchronously, not inside the lock on a runtime thread.
    pub(super) slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// Whether the store's commits are failing.
    pub(super) health: Option<std::sync::Arc<crate::store::StoreHealth>>,
    /// What failed commits handed back, for [`EngineHandle::catch_up`].
    pub(super) failed: Option<std::sync::Arc<crate::store::FailedCommits>>,
    /// Where the store writer appends accept records (the gateway's audit
    /// log, once it exists).
    pub(super) records: crate::store::RecordSinkSlot,
    /// Where each source had read to when vigil last stopped (read from the
    /// store at start; see [`EngineHandle::saved_position`]).
    pub(super) positions: std::sync::Arc<std::collections::HashMap<String, SourcePosition>>,
    /// When the last handle is dropped, the engine closes its store.
    pub(super) _alive: std::sync::mpsc::Sender<()>,
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

    /// What the store's retention has deleted in this run; `None` while it
    /// has deleted nothing (or without a live store).
    pub fn store_retention(&self) -> Option<crate::store::RetentionReport> {
        self.health.as_ref().and_then(|h| h.retention())
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
    /// order. Other callers may interleave between chunks of `CHUNK` (64) events.
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

    /// Where `source` (`file:/abs/path`, `journald`) had read to when it
    /// last saved, as the store held it at start.
    pub fn saved_position(&self, source: &str) -> Option<SourcePosition> {
        self.positions.get(source).cloned()
    }

    /// Saves where `source` has read to (everything before it answered), in
    /// the writer's next group commit; not waited for (see
    /// [`WriteOp::Position`]).
    pub async fn save_position(
        &self,
        source: String,
        position: SourcePosition,
    ) -> Result<(), EngineGone> {
        self.with_live_sending(|live| {
            live.queue(WriteOp::Position {
                source,
                position,
                at: Utc::now(),
            });
            live.send_queued();
        })
        .await
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

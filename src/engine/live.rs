//! The live engine: detection and response state behind one lock, driven
//! by the tasks that bring events; one store writer thread commits in
//! groups and only then are the answers sent.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::handle::Reply;
use super::*;
use crate::config::Config;
use crate::detect::{Alert, Decision, Verdict};
use crate::event::Event;
use crate::respond::policy::PolicyDecision;
use crate::store::StoreWriter as Writer;
use crate::store::{StoreError, WriteOp};
use crate::util::FastMap;

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

pub(super) struct Live {
    pub(super) pipeline: Pipeline,
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
    pub(super) recent: VecDeque<std::sync::Arc<Alert>>,
    last_purge: Instant,
    /// The next key table to purge of the current round ([`seen::SHARDS`]:
    /// round done).
    purge_next: usize,
    /// Alerts matched in this batch, announced once each at its end.
    touched: Vec<crate::detect::AlertRef>,
    /// Writes of the current call, sent to the writer in one message.
    pub(super) queued: Vec<WriteOp>,
    /// Messages sent to the writer so far (each call sends at most one).
    pub(super) sent: u64,
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
    let positions = std::sync::Arc::new(crate::store::source_positions(&conn)?);
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
                    if let Ok(stats) = w.close() {
                        tracing::info!("{}", crate::store::describe_run(&stats));
                    }
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
            positions,
            _alive: alive,
        },
        handle,
    ))
}

impl Live {
    /// Correlates events in order, then queues their replies to be sent
    /// once the writer has committed them.
    pub(super) fn run(&mut self, events: Vec<Event>, origin: Origin, reply: Reply) {
        let wall = Utc::now();
        // One clock read for the call's rate-limit windows, not one an event.
        let mono = Instant::now();
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
            answers.push(self.ingest(ev, key, wall, mono, origin));
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
    pub(super) fn take_back_failed(&mut self) {
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

    pub(super) fn queue(&mut self, op: WriteOp) {
        self.queued.push(op);
    }

    /// Hands the writer everything this call queued as one message, so the
    /// writer wakes once and commits the writes with the replies waiting on
    /// them. If the writer has stopped, the replies in it are dropped and
    /// their callers hear that the engine is gone (503).
    pub(super) fn send_queued(&mut self) {
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

    pub(super) fn admin(
        &mut self,
        req: AdminRequest,
    ) -> Result<crate::respond::policy::AdminAction, String> {
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
        now: Instant,
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

//! Wires parse → detect → respond → sinks. [`Pipeline`] is the synchronous
//! core every front end drives: `vigil scan` feeds it file lines; the live
//! engine (`live.rs`, started by [`spawn_live`]) feeds it from its sources
//! through an [`EngineHandle`] (`handle.rs`), and tells a watching console
//! what it accepted (`feed.rs`). `seen.rs` holds the idempotency keys.

mod feed;
mod handle;
mod live;
mod seen;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::detect::alert::recommended;
use crate::detect::{Alert, Detector, Verdict};
use crate::event::Event;
use crate::respond::policy::{BanRequest, Policy, PolicyDecision};
use crate::store::{StoreError, StoreWriter, WriteOp};

pub use feed::{Feed, FeedEvent, FeedReceiver, FeedSender, feed};
pub use handle::{
    Accepted, AdminOutcome, AdminRequest, BatchReceipt, Decisions, EngineGone, EngineHandle,
    Origin, PolicySnapshot, Refusal,
};
pub use live::{LiveConfig, MAX_NOTE_BYTES, STORED_AFTER_FAILED_COMMIT, spawn_live};

/// How long an accepted `event_id` is remembered (the seed's 7 days).
pub const IDEMPOTENCY_TTL_SECS: i64 = crate::store::IDEMPOTENCY_TTL_SECS;

/// Counters for the scan summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub events: u64,
    pub failures: u64,
    /// Events whose line had no timestamp; correlation skipped them.
    pub untimed: u64,
    pub alerts_by_rule: BTreeMap<String, u64>,
    /// What the store writer did, once it has stopped (with a store).
    pub store: Option<crate::store::WriterStats>,
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
            self.stats.store = Some(store.close()?);
        }
        Ok((rest, self.stats, self.policy))
    }
}

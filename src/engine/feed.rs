//! The console feed: accepted events and alert updates, never waited on.

use crate::detect::{Alert, Decision};
use crate::event::Event;

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
    pub(super) fn send(&self, msg: Feed) {
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

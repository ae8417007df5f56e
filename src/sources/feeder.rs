//! How a source read on its own thread (a followed file, the journal)
//! hands its events to the live engine: what was read together goes in one
//! trip ([`EngineHandle::submit_many`]), and a few such reads may wait for
//! their commit while the next is read and correlated. Each answer is
//! counted; an event whose commit failed is submitted again until it is
//! stored (or the source is told to give up), so a failing disk delays a
//! source's events instead of losing them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::{BatchReceipt, EngineHandle, Origin, Refusal};
use crate::event::Event;

/// Where a source counts what the engine made of its events.
pub struct Counts<'a> {
    pub accepted: &'a AtomicU64,
    pub refused: &'a AtomicU64,
}

pub struct Feeder {
    engine: EngineHandle,
    runtime: tokio::runtime::Handle,
    read: Vec<Event>,
    in_flight: VecDeque<(Vec<Event>, BatchReceipt)>,
    max_in_flight: usize,
}

impl Feeder {
    /// `max_in_flight`: handed-over reads that may wait for their commit
    /// before [`Feeder::hand_over`] waits for the oldest.
    pub fn new(
        engine: EngineHandle,
        runtime: tokio::runtime::Handle,
        max_in_flight: usize,
    ) -> Feeder {
        Feeder {
            engine,
            runtime,
            read: Vec::new(),
            in_flight: VecDeque::new(),
            max_in_flight,
        }
    }

    /// Queues an event (in the source's order) for the next hand-over.
    pub fn push(&mut self, ev: Event) {
        self.read.push(ev);
    }

    /// Events queued and not yet handed over.
    pub fn queued(&self) -> usize {
        self.read.len()
    }

    /// Gives the queued events to the engine without waiting for their
    /// commit; past `max_in_flight` reads waiting, settles the oldest.
    pub fn hand_over(&mut self, counts: &Counts<'_>, give_up: &(dyn Fn() -> bool + Sync)) {
        let events = std::mem::take(&mut self.read);
        if !events.is_empty() {
            let submitted = self
                .runtime
                .block_on(self.engine.submit_many(events.clone(), Origin::Local));
            match submitted {
                Ok(receipt) => self.in_flight.push_back((events, receipt)),
                // The engine has stopped: nothing of it is kept.
                Err(_) => {
                    counts
                        .refused
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                }
            }
        }
        while self.in_flight.len() > self.max_in_flight {
            self.settle_oldest(counts, give_up);
        }
    }

    /// Hands over what is queued and waits for every answer.
    pub fn settle(&mut self, counts: &Counts<'_>, give_up: &(dyn Fn() -> bool + Sync)) {
        self.hand_over(counts, give_up);
        while !self.in_flight.is_empty() {
            self.settle_oldest(counts, give_up);
        }
    }

    fn settle_oldest(&mut self, counts: &Counts<'_>, give_up: &(dyn Fn() -> bool + Sync)) {
        let Some((events, receipt)) = self.in_flight.pop_front() else {
            return;
        };
        let engine = &self.engine;
        let stored = self.runtime.block_on(async move {
            let answers = receipt.answers().await;
            let mut stored = Vec::with_capacity(events.len());
            for (ev, answer) in events.into_iter().zip(answers) {
                let answer = match answer {
                    Some(Err(Refusal::StoreFailed)) | None => {
                        engine.ingest_local(ev, give_up).await.ok()
                    }
                    answer => answer,
                };
                stored.push(matches!(answer, Some(Ok(_))));
            }
            stored
        });
        for ok in stored {
            let counter = if ok { counts.accepted } else { counts.refused };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

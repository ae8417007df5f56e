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
use crate::store::SourcePosition;

/// Where a source counts what the engine made of its events.
pub struct Counts<'a> {
    pub accepted: &'a AtomicU64,
    /// Refused as duplicates: stored before (a line read again).
    pub duplicates: &'a AtomicU64,
    /// Never stored: the store failed until vigil stopped, or the engine
    /// had stopped. The saved position stays before them.
    pub unstored: &'a AtomicU64,
}

pub struct Feeder {
    engine: EngineHandle,
    runtime: tokio::runtime::Handle,
    read: Vec<Event>,
    /// Where the source is once the events queued so far are handled.
    mark: Option<SourcePosition>,
    /// Reads waiting for their answers, oldest first.
    in_flight: VecDeque<(Vec<Event>, BatchReceipt)>,
    max_in_flight: usize,
    /// The positions after the reads in flight, and the newest settled.
    marks: Marks,
}

/// The source's position through its reads: each read handed over carries
/// the position after it; once all its events are answered (stored, or
/// refused for a reason other than a failed commit) that position is
/// settled. A read with events never stored (vigil stopped while the store
/// failed, or the engine was gone) holds the position before them from
/// then on, so the next start reads them again.
#[derive(Debug, Default)]
struct Marks {
    /// One per read in flight, in order.
    waiting: VecDeque<Option<SourcePosition>>,
    settled: Option<SourcePosition>,
    held: bool,
}

impl Marks {
    /// A read handed over, `mark` the position after it.
    fn handed(&mut self, mark: Option<SourcePosition>) {
        self.waiting.push_back(mark);
    }

    /// A read the engine did not take (it has stopped).
    fn not_taken(&mut self) {
        self.held = true;
    }

    /// Lines that gave no event: the position moves once what was read
    /// before them is answered.
    fn no_events(&mut self, mark: SourcePosition) {
        match self.waiting.back_mut() {
            Some(m) => *m = Some(mark),
            None if !self.held => self.settled = Some(mark),
            None => {}
        }
    }

    /// The oldest read in flight is answered; `lost`: some of its events
    /// were never stored.
    fn answered(&mut self, lost: bool) {
        let mark = self.waiting.pop_front().flatten();
        self.held |= lost;
        if !self.held && mark.is_some() {
            self.settled = mark;
        }
    }
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
            mark: None,
            in_flight: VecDeque::new(),
            max_in_flight,
            marks: Marks::default(),
        }
    }

    /// Says where the source is once the events queued so far (and any
    /// lines read that gave none) are handled; goes with the next
    /// hand-over.
    pub fn mark(&mut self, at: SourcePosition) {
        self.mark = Some(at);
    }

    /// The position after the newest read whose events were all answered
    /// and none lost, if it moved since the last call.
    pub fn take_settled(&mut self) -> Option<SourcePosition> {
        self.marks.settled.take()
    }

    /// Saves where `source` has read to (see [`EngineHandle::save_position`]);
    /// nothing if the engine has stopped.
    pub fn save(&self, source: &str, at: SourcePosition) {
        let _ = self
            .runtime
            .block_on(self.engine.save_position(source.to_string(), at));
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
        let mark = self.mark.take();
        if !events.is_empty() {
            let submitted = self
                .runtime
                .block_on(self.engine.submit_many(events.clone(), Origin::Local));
            match submitted {
                Ok(receipt) => {
                    self.in_flight.push_back((events, receipt));
                    self.marks.handed(mark);
                }
                // The engine has stopped: nothing of it is kept.
                Err(_) => {
                    self.marks.not_taken();
                    counts
                        .unstored
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                }
            }
        } else if let Some(mark) = mark {
            self.marks.no_events(mark);
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
                    // Once told to give up (vigil stops), not tried again:
                    // each try waits out the store's busy timeout.
                    Some(Err(Refusal::StoreFailed)) | None if !give_up() => {
                        engine.ingest_local(ev, give_up).await.ok()
                    }
                    answer => answer,
                };
                stored.push(match answer {
                    Some(Ok(_)) => counts.accepted,
                    Some(Err(Refusal::DuplicateEventId)) => counts.duplicates,
                    // A failed commit given up on, the engine gone (and a
                    // rate limit, which local sources do not have).
                    _ => counts.unstored,
                });
            }
            stored
        });
        let mut lost_any = false;
        for counter in stored {
            counter.fetch_add(1, Ordering::Relaxed);
            lost_any |= std::ptr::eq(counter, counts.unstored);
        }
        self.marks.answered(lost_any);
    }
}

/// The end of a source's stop summary when some of what it read was never
/// stored: how many, and that the next start reads them again (its saved
/// position is before them); empty otherwise.
pub fn unstored_note(unstored: u64) -> String {
    if unstored == 0 {
        return String::new();
    }
    format!(
        "; {unstored} NOT STORED (the store failed until vigil stopped): the next start reads \
         them again from the position saved before them"
    )
}

/// Keeps a source's saved position (see
/// [`WriteOp::Position`](crate::store::WriteOp::Position)) up to date:
/// notes what its [`Feeder`] settled and saves it when it moved, at most
/// once a [`SAVE_EVERY`] unless told to now.
pub struct PositionSaver {
    source: String,
    unsaved: Option<SourcePosition>,
    saved: Option<SourcePosition>,
    saved_at: std::time::Instant,
}

/// How often, at most, a source's position is saved while it reads.
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl PositionSaver {
    /// For `source` (its key in the store), whose saved position is `saved`.
    pub fn new(source: String, saved: Option<SourcePosition>) -> PositionSaver {
        PositionSaver {
            source,
            unsaved: None,
            saved,
            saved_at: std::time::Instant::now(),
        }
    }

    /// Where the source is now, with nothing read yet that is not answered
    /// (it has just opened its input).
    pub fn set(&mut self, at: SourcePosition) {
        self.unsaved = Some(at);
    }

    /// Takes what `feeder` settled since the last call.
    pub fn note(&mut self, feeder: &mut Feeder) {
        if let Some(p) = feeder.take_settled() {
            self.unsaved = Some(p);
        }
    }

    /// Notes what `feeder` settled and saves it if it moved and a
    /// [`SAVE_EVERY`] has passed since the last save (at once with `now`).
    pub fn save(&mut self, feeder: &mut Feeder, now: bool) {
        self.note(feeder);
        if !now && self.saved_at.elapsed() < SAVE_EVERY {
            return;
        }
        let Some(p) = self.unsaved.take() else {
            return;
        };
        if self.saved.as_ref() == Some(&p) {
            return;
        }
        feeder.save(&self.source, p.clone());
        self.saved = Some(p);
        self.saved_at = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> SourcePosition {
        SourcePosition::File {
            dev: 1,
            ino: 2,
            offset,
            head_len: 0,
            head: 0,
        }
    }

    #[test]
    fn positions_settle_in_order_and_hold_before_lost_events() {
        let mut m = Marks::default();
        m.no_events(at(10));
        assert_eq!(m.settled.take(), Some(at(10)), "nothing in flight: at once");
        m.handed(Some(at(20)));
        m.handed(Some(at(30)));
        // Blank lines after the second read go with it.
        m.no_events(at(35));
        assert_eq!(m.settled, None, "nothing answered yet");
        m.answered(false);
        assert_eq!(m.settled.take(), Some(at(20)));
        m.answered(false);
        assert_eq!(m.settled.take(), Some(at(35)));
        // A read whose events were lost holds the position before it, for
        // good: later reads must not move it past them.
        m.handed(Some(at(40)));
        m.handed(Some(at(50)));
        m.answered(true);
        m.answered(false);
        m.no_events(at(60));
        assert_eq!(m.settled, None);
    }

    #[test]
    fn a_read_the_engine_did_not_take_holds_the_position() {
        let mut m = Marks::default();
        m.handed(Some(at(20)));
        m.not_taken();
        m.answered(false);
        m.no_events(at(30));
        assert_eq!(m.settled, None);
    }
}

//! At start: accept records a crash kept out of the audit log.
//!
//! An event's accept record is appended once its commit is durable and
//! before its answer goes out (`/ingest`'s by the store writer after the
//! group commit, a batch's by the gateway after the batch's), so an
//! acknowledged event always has its record. A process killed between a
//! commit and that append leaves events stored (never answered; their
//! producers send them again and hear `duplicate_event_id`) that no record
//! names. At the next start, the newest events the gateway stored are
//! looked up in the log's records from its end back; those no accept record
//! names get a `gateway_accept_recovered` record, so every stored producer
//! event is named in the trail as accepted. Records are not in commit order
//! (batches append their own), so this matches ids, not positions.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::StoredEvent;
use crate::store::audit_log::{AuditLog, chain_files, rfind_line};

/// The type of the record written at start for events stored without one.
pub const RECOVERED: &str = "gateway_accept_recovered";

/// How many of the newest stored events are checked. A crash leaves
/// without records the groups and batches in flight then: one writer
/// group of single events (at most 8 192 writes) and a batch (at most
/// 10 000 lines) per connection that was sending one.
pub const SCAN_LIMIT: u32 = 100_000;

/// How far before the oldest event checked (by the time it was received)
/// the log is read back: a record is written within moments of its event's
/// commit, so a record older than this names none of them.
const LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Events named in one recovered record (a batch's record holds up to
/// 10 000 lines the same way).
const EVENTS_PER_RECORD: usize = 10_000;

/// What the start-up check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Events that had no accept record and now have one, in `records`
    /// records.
    pub recovered: usize,
    pub records: usize,
    /// Events received before the oldest record the log still holds (its
    /// older files removed, or the log started anew) whose records were
    /// not found: whether they ever had one cannot be told, so none is
    /// written for them.
    pub unchecked: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("reading the audit log: {0}")]
    Read(std::io::Error),
    #[error("writing the recovered records: {0}")]
    Write(std::io::Error),
    #[error("reading the store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The record, in this key order: `type`, `ts`, `reason`, `count`,
/// `events` (in the order they were stored, each
/// `{"event_id","host","source","received_utc"}`), then `prev`.
#[derive(Serialize)]
struct RecoveredRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts: String,
    reason: &'static str,
    count: usize,
    events: Vec<RecoveredEvent<'a>>,
}

#[derive(Serialize)]
struct RecoveredEvent<'a> {
    event_id: &'a str,
    host: &'a str,
    source: &'a str,
    received_utc: Option<String>,
}

const REASON: &str = "stored by the gateway with no accept record in the audit log: vigil \
                      stopped between the commit and the record (never answered), or the log \
                      was replaced; written at the next start";

/// Checks the trail against the store (`conn`) and writes what is missing
/// to `audit` (the log at `audit_path`, already open).
pub fn recover_accept_records(
    conn: &rusqlite::Connection,
    audit: &mut AuditLog,
    audit_path: &Path,
    now: DateTime<Utc>,
) -> Result<Recovery, RecoverError> {
    // The newest events the gateway stored, by id (and where they stand,
    // newest first).
    let mut unnamed: HashMap<String, usize> = HashMap::new();
    let mut stored: Vec<StoredEvent> = Vec::new();
    crate::store::newest_events(conn, SCAN_LIMIT, |ev| {
        if ev.received.is_some() {
            unnamed.insert(ev.event_id.clone(), stored.len());
            stored.push(ev);
        }
        true
    })?;
    let Some(oldest) = stored.iter().filter_map(|e| e.received).min() else {
        return Ok(Recovery::default());
    };
    let back_to = oldest - LOOK_BACK;
    // The time of the oldest record read, and whether the reading stopped
    // before the log's first record.
    let mut first_read: Option<DateTime<Utc>> = None;
    let mut stopped = false;
    if audit_path.is_file() {
        for file in chain_files(audit_path)
            .map_err(RecoverError::Read)?
            .iter()
            .rev()
        {
            let done = rfind_line(file, |line| {
                let r = read_record(line)?;
                for id in r.accepted() {
                    unnamed.remove(id);
                }
                let t = r.time();
                first_read = t.or(first_read);
                (unnamed.is_empty() || t.is_some_and(|t| t < back_to)).then_some(())
            })
            .map_err(RecoverError::Read)?;
            if done.is_some() {
                stopped = true;
                break;
            }
        }
    }
    // Read to its start, the log holds no record of events received before
    // its first: their records (if any) were in files no longer there.
    let mut unchecked = 0;
    if !stopped {
        unnamed.retain(|_, i| {
            let seen = matches!((stored[*i].received, first_read), (Some(r), Some(f)) if r >= f);
            unchecked += usize::from(!seen);
            seen
        });
    }
    if unnamed.is_empty() {
        return Ok(Recovery {
            unchecked,
            ..Recovery::default()
        });
    }
    // In the order they were stored (`stored` is newest first).
    let mut at: Vec<usize> = unnamed.into_values().collect();
    at.sort_unstable_by(|a, b| b.cmp(a));
    let missing: Vec<&StoredEvent> = at.iter().map(|&i| &stored[i]).collect();
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
    let records: Vec<RecoveredRecord> = missing
        .chunks(EVENTS_PER_RECORD)
        .map(|chunk| RecoveredRecord {
            kind: RECOVERED,
            ts: ts.clone(),
            reason: REASON,
            count: chunk.len(),
            events: chunk
                .iter()
                .map(|e| RecoveredEvent {
                    event_id: &e.event_id,
                    host: &e.host,
                    source: &e.source,
                    received_utc: e
                        .received
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                })
                .collect(),
        })
        .collect();
    let n = records.len();
    audit.append_all(records).map_err(RecoverError::Write)?;
    Ok(Recovery {
        recovered: missing.len(),
        records: n,
        unchecked,
    })
}

/// What the check needs of a record: its time, and the events it names as
/// accepted.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    /// As text: a time in a form this does not read must not make the
    /// record's ids unread.
    #[serde(borrow)]
    ts: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    event_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    events: Vec<Named<'a>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    event_id: Option<std::borrow::Cow<'a, str>>,
}

impl Record<'_> {
    fn time(&self) -> Option<DateTime<Utc>> {
        let ts = self.ts.as_deref()?;
        Some(DateTime::parse_from_rfc3339(ts).ok()?.to_utc())
    }

    /// The events this record names as accepted (by `/ingest`, in a batch,
    /// or recovered at an earlier start).
    fn accepted(&self) -> Vec<&str> {
        match self.kind.as_deref() {
            Some(super::audit::ACCEPT) => self.event_id.as_deref().into_iter().collect(),
            Some(super::BATCH_RECORD) | Some(RECOVERED) => self
                .events
                .iter()
                .filter_map(|e| e.event_id.as_deref())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A line of the log as a record; `None` for a line that is not one
/// (`vigil audit verify` is the tool that reports those).
fn read_record(line: &[u8]) -> Option<Record<'_>> {
    serde_json::from_slice(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_accept_record_names_its_accepted_events_and_nothing_else_does() {
        let named = |s: &str| -> Vec<String> {
            read_record(s.as_bytes())
                .map(|r| r.accepted().into_iter().map(str::to_string).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            named(
                r#"{"type":"gateway_accept","ts":"2026-11-22T10:00:00Z","event_id":"evt-00000001","host":"h"}"#
            ),
            ["evt-00000001"]
        );
        assert_eq!(
            named(
                r#"{"type":"gateway_batch","ts":"2026-11-22T10:00:00Z","events":[{"line":1,"event_id":"a-000001"},{"line":3,"event_id":"a\"000003"}],"refusals":[{"line":2,"event_id":"zzz"}]}"#
            ),
            ["a-000001", "a\"000003"]
        );
        assert_eq!(
            named(
                r#"{"type":"gateway_accept_recovered","ts":"2026-11-22T10:00:00Z","events":[{"event_id":"r-1"}]}"#
            ),
            ["r-1"]
        );
        assert!(
            named(
                r#"{"type":"gateway_reject","ts":"2026-11-22T10:00:00Z","event_id":"evt-00000001"}"#
            )
            .is_empty()
        );
        assert!(
            named(
                r#"{"action":"unban_ip","type":"admin_action","ts":"2026-11-22T10:00:00.1+00:00"}"#
            )
            .is_empty()
        );
        assert!(named("not json").is_empty());
        let r = read_record(br#"{"type":"admin_action","ts":"2026-11-22T10:00:00.123+00:00"}"#)
            .unwrap();
        assert_eq!(r.time().map(|t| t.timestamp_millis() % 1000), Some(123));
        let odd =
            read_record(br#"{"type":"gateway_accept","ts":"yesterday","event_id":"x-0000001"}"#)
                .unwrap();
        assert_eq!((odd.time(), odd.accepted()), (None, vec!["x-0000001"]));
    }
}

//! Reads: events, alerts, host states, bans, feedback and the admin
//! trail, each from its own connection beside the writer.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::detect::{Alert, AlertStatus};
use crate::event::Event;
use crate::respond::policy::{AdminAction, Ban, HostState};

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

/// A stored event as the audit trail names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: String,
    pub host: String,
    pub source: String,
    /// Set for events the gateway took (a producer's), `None` for the lines
    /// vigil reads itself and for offline scans.
    pub received: Option<DateTime<Utc>>,
}

/// The newest stored events, newest first (in the order they were
/// committed), at most `limit`, until `f` returns `false`.
pub fn newest_events(
    conn: &Connection,
    limit: u32,
    mut f: impl FnMut(StoredEvent) -> bool,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT event_id, host, source, received FROM events ORDER BY rowid DESC LIMIT ?1",
    )?;
    let mut rows = stmt.query(params![limit])?;
    while let Some(r) = rows.next()? {
        let received = r
            .get::<_, Option<i64>>(3)?
            .map(|v| DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt("received", v)))
            .transpose()?;
        let ev = StoredEvent {
            event_id: r.get(0)?,
            host: r.get(1)?,
            source: r.get(2)?,
            received,
        };
        if !f(ev) {
            break;
        }
    }
    Ok(())
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

/// Where each source had read to when it last saved (see
/// [`WriteOp::Position`](super::WriteOp::Position)), by source; a row that
/// does not read back as a position is skipped with a warning (the source
/// then starts as if it had none).
pub fn source_positions(
    conn: &Connection,
) -> Result<std::collections::HashMap<String, super::SourcePosition>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT source, position FROM source_positions")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (source, body) = row?;
        match serde_json::from_str(&body) {
            Ok(p) => {
                out.insert(source, p);
            }
            Err(e) => tracing::warn!(
                "store: the saved position of {} does not read back ({e}); it starts afresh",
                crate::util::sanitize_for_terminal(&source)
            ),
        }
    }
    Ok(out)
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

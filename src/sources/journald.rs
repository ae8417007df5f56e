//! The systemd journal as a source (`--journald` of `vigil serve` and the
//! console): runs
//! `journalctl -o json --follow --lines=0` and turns each entry into an
//! RFC 5424 record for the ordinary parsers, so an sshd entry from the
//! journal correlates exactly like the same line in `auth.log`.
//!
//! The entry's `__CURSOR` names the event, so an entry seen twice (a
//! restart that overlaps) is refused as a duplicate rather than stored twice.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use serde_json::Value;

use crate::engine::EngineHandle;
use crate::parse::{MAX_LINE_BYTES, ParseOptions, Parser, SourceKind};
use crate::store::SourcePosition;
use crate::util::fnv1a;

/// Longest JSON entry read from journalctl; longer ones are skipped.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct JournalStats {
    pub entries: AtomicU64,
    pub accepted: AtomicU64,
    /// Entries stored before (read again after a restart).
    pub duplicates: AtomicU64,
    /// Entries never stored (the store failed until vigil stopped).
    pub unstored: AtomicU64,
    pub unparsed: AtomicU64,
    /// The latest entry that did not parse, and why.
    pub last_unparsed: super::unparsed::LastUnparsed,
}

impl JournalStats {
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "journald: {} entries, {} accepted, {} already stored, {} unparsed",
            g(&self.entries),
            g(&self.accepted),
            g(&self.duplicates),
            g(&self.unparsed)
        ) + &super::feeder::unstored_note(g(&self.unstored))
            + &self.last_unparsed.summary_note()
    }
}

/// A journal field as text: journald writes non-UTF-8 or binary values as
/// arrays of byte values.
fn field(v: &Value, name: &str) -> Option<String> {
    match v.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(bytes) => {
            let b: Vec<u8> = bytes
                .iter()
                .filter_map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            Some(String::from_utf8_lossy(&b).into_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One `journalctl -o json` entry as `(RFC 5424 line, cursor)`.
pub fn entry_to_line(entry: &Value) -> Option<(String, String)> {
    let message = field(entry, "MESSAGE")?;
    let cursor = field(entry, "__CURSOR").unwrap_or_default();
    let micros: i64 = field(entry, "__REALTIME_TIMESTAMP")?.parse().ok()?;
    let ts = Utc.timestamp_micros(micros).single()?;
    let token = |s: Option<String>| {
        let s = s.unwrap_or_default();
        let t: String = s
            .chars()
            .filter(|c| !c.is_control())
            .map(|c| if c == ' ' { '_' } else { c })
            .take(255)
            .collect();
        if t.is_empty() { "-".to_string() } else { t }
    };
    let priority: u8 = field(entry, "PRIORITY")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p <= 7)
        .unwrap_or(6);
    let facility: u8 = field(entry, "SYSLOG_FACILITY")
        .and_then(|p| p.parse().ok())
        .filter(|f| *f <= 23)
        .unwrap_or(1);
    let host = token(field(entry, "_HOSTNAME"));
    let app = token(field(entry, "SYSLOG_IDENTIFIER").or_else(|| field(entry, "_COMM")));
    let pid = token(field(entry, "SYSLOG_PID").or_else(|| field(entry, "_PID")));
    // One record per entry: a multi-line message is joined.
    let message: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .take(MAX_LINE_BYTES)
        .collect();
    let line = format!(
        "<{}>1 {} {host} {app} {pid} - - {message}",
        facility as u32 * 8 + priority as u32,
        ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    Some((line, cursor))
}

/// A followed journal: `journalctl` and the thread that reads it. If
/// `journalctl` ends while vigil runs (it crashed, or was killed, or the
/// journal was rotated under it), it is started again after the last entry
/// read (`--after-cursor`), so nothing in between is missed or read twice;
/// the restarts back off from 1 s to 30 s while it keeps failing.
pub struct Journal {
    current: Arc<Mutex<Current>>,
    thread: std::thread::JoinHandle<()>,
}

/// The running `journalctl`, and whether vigil is stopping (both under one
/// lock, so a restart never races a stop).
struct Current {
    child: Option<Child>,
    stopping: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot run {program}: {source} (is systemd's journalctl installed?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot start the journal reader: {0}")]
    Thread(std::io::Error),
}

/// First wait before starting `journalctl` again, and the longest.
const RESTART_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const RESTART_MAX: std::time::Duration = std::time::Duration::from_secs(30);
/// A run this long counts as healthy: the next restart waits the least again.
const HEALTHY_RUN: std::time::Duration = std::time::Duration::from_secs(60);

/// `program -o json --follow` from `cursor` on, or from now if none.
fn spawn_journalctl(
    program: &str,
    cursor: Option<&str>,
) -> Result<(Child, std::process::ChildStdout), JournalError> {
    let mut cmd = Command::new(program);
    cmd.args(["-o", "json", "--follow"]);
    match cursor {
        Some(c) => cmd.arg(format!("--after-cursor={c}")),
        None => cmd.arg("--lines=0"),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| JournalError::Spawn {
            program: program.to_string(),
            source,
        })?;
    match child.stdout.take() {
        Some(out) => Ok((child, out)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(JournalError::Thread(std::io::Error::other("no stdout")))
        }
    }
}

impl Journal {
    /// Starts `program -o json --follow` after the last entry the last run
    /// read (its cursor is saved in the store, see [`POSITION_KEY`]), or
    /// from now on (`--lines=0`) the first time. Fails at once if `program`
    /// cannot run; later failures are retried.
    pub fn start(
        program: &str,
        engine: EngineHandle,
        runtime: tokio::runtime::Handle,
        stats: Arc<JournalStats>,
    ) -> Result<Journal, JournalError> {
        let saved = engine.saved_position(POSITION_KEY);
        let resume = match &saved {
            Some(SourcePosition::Journal { cursor }) => Some(cursor.clone()),
            _ => None,
        };
        let (child, stdout) = spawn_journalctl(program, resume.as_deref())?;
        if resume.is_some() {
            tracing::info!("journal: resuming after the last entry the last run read");
        }
        let position = super::feeder::PositionSaver::new(POSITION_KEY.to_string(), saved);
        let current = Arc::new(Mutex::new(Current {
            child: Some(child),
            stopping: false,
        }));
        let shared = current.clone();
        let program = program.to_string();
        let thread = std::thread::Builder::new()
            .name("vigil-journald".into())
            .spawn(move || {
                let reader = Reader {
                    engine,
                    runtime,
                    stats,
                    position,
                };
                supervise(&program, stdout, resume, &shared, reader)
            })
            .map_err(JournalError::Thread)?;
        Ok(Journal { current, thread })
    }

    /// Stops journalctl and waits for the reader to finish its last entry.
    pub fn stop(self) {
        if let Ok(mut c) = self.current.lock() {
            c.stopping = true;
            if let Some(child) = c.child.as_mut() {
                let _ = child.kill();
            }
        }
        let _ = self.thread.join();
    }
}

fn lock(current: &Mutex<Current>) -> std::sync::MutexGuard<'_, Current> {
    match current.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The store key of the journal's saved cursor.
pub const POSITION_KEY: &str = "journald";

/// What the supervisor's reads go to, across `journalctl` runs.
struct Reader {
    engine: EngineHandle,
    runtime: tokio::runtime::Handle,
    stats: Arc<JournalStats>,
    position: super::feeder::PositionSaver,
}

/// Reads `journalctl` until vigil stops, starting it again whenever it
/// ends. `resumed`: the saved cursor the first run started after.
fn supervise(
    program: &str,
    first: std::process::ChildStdout,
    resumed: Option<String>,
    current: &Mutex<Current>,
    mut reader: Reader,
) {
    let mut opts = ParseOptions::new(SourceKind::Auto, Utc::now(), "journald");
    opts.default_host = "localhost".into();
    let mut parser = Parser::new(opts);
    let mut cursor: Option<String> = resumed.clone();
    let mut stdout = Some(first);
    let mut wait = RESTART_FIRST;
    let mut first_run = true;
    loop {
        let started = std::time::Instant::now();
        if let Some(out) = stdout.take() {
            let give_up = || lock(current).stopping;
            let mut source = Source {
                engine: &reader.engine,
                runtime: &reader.runtime,
                stats: &reader.stats,
                give_up: &give_up,
                position: &mut reader.position,
            };
            read_entries(out, &mut parser, &mut cursor, &mut source);
        }
        let status = {
            let mut c = lock(current);
            // Its output ended; if it has not exited (a read error), make
            // sure it does before waiting on it.
            let status = c.child.take().and_then(|mut ch| {
                let _ = ch.kill();
                ch.wait().ok()
            });
            if c.stopping {
                return;
            }
            status
        };
        if started.elapsed() >= HEALTHY_RUN {
            wait = RESTART_FIRST;
        }
        // A cursor journalctl does not take (the journal it named was
        // removed, or it was written by another machine) ends the first run
        // at once with nothing read: from then on, follow from now.
        let was_first = std::mem::replace(&mut first_run, false);
        if was_first
            && resumed.is_some()
            && cursor == resumed
            && !status.is_some_and(|s| s.success())
        {
            tracing::warn!(
                "journalctl ended at once when asked to resume after the cursor the last run \
                 saved; following the journal from now on instead (entries written while vigil \
                 was stopped are not read)"
            );
            cursor = None;
        }
        // Say so: a silent source looks like a quiet network.
        tracing::warn!(
            "journalctl ended ({}); starting it again in {} s {}",
            status.map_or_else(|| "not started".to_string(), |s| s.to_string()),
            wait.as_secs(),
            if cursor.is_some() {
                "after the last entry read"
            } else {
                "from then on"
            }
        );
        // Sleep in steps so a stop is not held up by the back-off.
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until {
            if lock(current).stopping {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        wait = (wait * 2).min(RESTART_MAX);
        let mut c = lock(current);
        if c.stopping {
            return;
        }
        match spawn_journalctl(program, cursor.as_deref()) {
            Ok((child, out)) => {
                c.child = Some(child);
                stdout = Some(out);
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// Where entries go, when to stop retrying one the store failed, and where
/// the cursor of the last entry answered is saved.
struct Source<'a> {
    engine: &'a EngineHandle,
    runtime: &'a tokio::runtime::Handle,
    stats: &'a JournalStats,
    give_up: &'a (dyn Fn() -> bool + Sync),
    position: &'a mut super::feeder::PositionSaver,
}

/// Reads entries until `journalctl`'s output ends; `cursor` follows the
/// last entry read.
fn read_entries(
    stdout: impl Read,
    parser: &mut Parser,
    cursor: &mut Option<String>,
    source: &mut Source<'_>,
) {
    let stats = source.stats;
    let counts = super::feeder::Counts {
        accepted: &stats.accepted,
        duplicates: &stats.duplicates,
        unstored: &stats.unstored,
    };
    // Entries already read go to the engine together: a burst (a brute
    // force writes thousands of sshd lines a second) is correlated as it
    // comes instead of a commit per entry behind it.
    let mut feeder =
        super::feeder::Feeder::new(source.engine.clone(), source.runtime.clone(), IN_FLIGHT);
    let mut r = BufReader::new(stdout);
    let mut buf = Vec::new();
    let journal = || "journal".to_string();
    // Enough of an entry to show the start of it (see `unparsed`).
    const SAMPLE_BYTES: usize = 4 * super::unparsed::SAMPLE_CHARS;
    loop {
        if r.buffer().is_empty() {
            // The next read may wait for journalctl: what was read is
            // answered first.
            feeder.settle(&counts, source.give_up);
            source.position.save(&mut feeder, false);
        } else if feeder.queued() >= HAND_OVER {
            feeder.hand_over(&counts, source.give_up);
        }
        buf.clear();
        let n = match (&mut r)
            .take(MAX_ENTRY_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => {
                feeder.settle(&counts, source.give_up);
                source.position.save(&mut feeder, true);
                return;
            }
            Ok(n) => n,
        };
        if n > MAX_ENTRY_BYTES {
            // Skip the rest of an oversized entry.
            stats.unparsed.fetch_add(1, Ordering::Relaxed);
            let mut sink = Vec::new();
            while let Ok(m) = (&mut r).take(1 << 16).read_until(b'\n', &mut sink) {
                if m == 0 || sink.last() == Some(&b'\n') {
                    break;
                }
                sink.clear();
            }
            continue;
        }
        stats.entries.fetch_add(1, Ordering::Relaxed);
        let value = match serde_json::from_slice::<Value>(&buf) {
            Ok(v) => v,
            Err(e) => {
                stats.unparsed.fetch_add(1, Ordering::Relaxed);
                let text = String::from_utf8_lossy(&buf[..buf.len().min(SAMPLE_BYTES)]);
                let why = format!("not JSON: {e}");
                stats.last_unparsed.note(journal, text.trim_end(), &why);
                continue;
            }
        };
        // Past this entry whatever becomes of it: a restart must not read
        // it again.
        if let Some(c) = field(&value, "__CURSOR").filter(|c| !c.is_empty()) {
            feeder.mark(SourcePosition::Journal { cursor: c.clone() });
            *cursor = Some(c);
        }
        let Some((line, entry_cursor)) = entry_to_line(&value) else {
            stats.unparsed.fetch_add(1, Ordering::Relaxed);
            let text = String::from_utf8_lossy(&buf[..buf.len().min(SAMPLE_BYTES)]);
            let why = "no MESSAGE, or no valid __REALTIME_TIMESTAMP";
            stats.last_unparsed.note(journal, text.trim_end(), &why);
            continue;
        };
        let id_seed = if entry_cursor.is_empty() {
            fnv1a(line.as_bytes())
        } else {
            fnv1a(entry_cursor.as_bytes())
        };
        let ev = match parser.parse_line(&line, id_seed) {
            Ok(ev) => ev,
            Err(e) => {
                stats.unparsed.fetch_add(1, Ordering::Relaxed);
                stats.last_unparsed.note(journal, &line, &e);
                continue;
            }
        };
        // An entry whose commit failed is submitted again until stored
        // (by the feeder): its cursor is already past it.
        feeder.push(ev);
    }
}

/// Entries read before they are handed to the engine, at most.
const HAND_OVER: usize = 64;
/// Hand-overs waiting for their commit while more entries are read.
const IN_FLIGHT: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entry_becomes_an_rfc5424_line() {
        let e: Value = serde_json::from_str(
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1779000000123456","PRIORITY":"6",
                "SYSLOG_FACILITY":"10","_HOSTNAME":"web 1","SYSLOG_IDENTIFIER":"sshd","_PID":"812",
                "MESSAGE":"Failed password for root from 192.0.2.9 port 22 ssh2"}"#,
        )
        .unwrap();
        let (line, cursor) = entry_to_line(&e).unwrap();
        assert_eq!(cursor, "s=1;i=2");
        assert_eq!(
            line,
            "<86>1 2026-05-17T06:40:00.123456Z web_1 sshd 812 - - Failed password for root from 192.0.2.9 port 22 ssh2"
        );
        let mut p = Parser::new(ParseOptions::new(SourceKind::Auto, Utc::now(), "j"));
        let ev = p.parse_line(&line, 1).unwrap();
        assert_eq!(ev.action.as_str(), "login_failed");
        assert_eq!(ev.host, "web_1");
    }

    #[test]
    fn byte_array_messages_and_missing_fields() {
        let e: Value = serde_json::from_str(
            r#"{"__REALTIME_TIMESTAMP":"1779000000000000","MESSAGE":[104,105,255]}"#,
        )
        .unwrap();
        let (line, _) = entry_to_line(&e).unwrap();
        assert!(
            line.starts_with("<14>1 2026-05-17T06:40:00.000000Z - - - - - hi"),
            "{line}"
        );
        let multi: Value =
            serde_json::from_str(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"a\nb"}"#).unwrap();
        assert!(entry_to_line(&multi).unwrap().0.ends_with("- - a b"));
        let no_time: Value = serde_json::from_str(r#"{"MESSAGE":"x"}"#).unwrap();
        assert!(entry_to_line(&no_time).is_none());
    }
}

//! Follows log files for `vigil serve` and the console (`--tail`), like
//! `tail -F`: starts at the end by default (`--from-start` reads what is
//! there first), survives rotation
//! (the path now names a different file: the old one is read to its end,
//! then the new one from its start) and truncation (the file shrank: read
//! again from the start).
//!
//! Polling, not inotify: one `stat` per file every [`POLL`] costs nothing
//! and works the same on every filesystem, including network mounts where
//! change notification is unreliable.
//!
//! Event ids come from the file's identity (device, inode), the byte offset
//! of the line and its text, so reading the same line again after a restart
//! with `--from-start` is refused as a duplicate instead of stored twice.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;

use crate::engine::EngineHandle;
use crate::parse::{MAX_LINE_BYTES, ParseOptions, Parser, SourceKind};
use crate::util::fnv1a;

/// How often each file is checked for growth, rotation and truncation.
pub const POLL: Duration = Duration::from_millis(200);

/// Reads (of up to 64 KiB) handed to the engine and not yet answered: the
/// next one is read and correlated while earlier ones are committed.
const IN_FLIGHT: usize = 16;

/// What the tailers saw; printed when `vigil serve` stops, shown by the
/// console while it runs.
#[derive(Debug, Default)]
pub struct TailStats {
    pub lines: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub unparsed: AtomicU64,
    /// The latest line that did not parse, from which file and why.
    pub last_unparsed: super::unparsed::LastUnparsed,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
    /// Followed files that cannot be read right now (path as shown → why),
    /// kept by their tailers; a file that cannot be read looks like a
    /// quiet one otherwise.
    unreadable: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl TailStats {
    /// The followed files that cannot be read now, and why, by path.
    pub fn unreadable(&self) -> Vec<(String, String)> {
        self.unreadable
            .lock()
            .map(|m| m.iter().map(|(p, w)| (p.clone(), w.clone())).collect())
            .unwrap_or_default()
    }

    fn set_unreadable(&self, path: String, why: Option<&str>) {
        if let Ok(mut m) = self.unreadable.lock() {
            match why {
                Some(why) => m.insert(path, why.to_string()),
                None => m.remove(&path),
            };
        }
    }

    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "tail: {} lines, {} accepted, {} refused by the engine, {} unparsed, {} rotations, {} truncations",
            g(&self.lines),
            g(&self.accepted),
            g(&self.refused),
            g(&self.unparsed),
            g(&self.rotations),
            g(&self.truncations)
        ) + &self.last_unparsed.summary_note()
    }
}

#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn identity(_m: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// One followed file: its open handle, where we are in it, and any partial
/// line waiting for its newline.
struct Followed {
    file: File,
    id: (u64, u64),
    pos: u64,
    partial: Vec<u8>,
}

pub struct Tailer {
    path: PathBuf,
    cur: Option<Followed>,
    parser: Parser,
    stats: Arc<TailStats>,
    /// Lines read go to the engine a read at a time, up to [`IN_FLIGHT`]
    /// reads waiting for their commit while the next is read.
    feeder: super::feeder::Feeder,
    /// Set when vigil stops: a line whose commit keeps failing is given up.
    stop: Arc<AtomicBool>,
    /// Why the file cannot be followed right now (missing, unreadable, a
    /// directory), as last reported; `None` while it is followed.
    problem: Option<String>,
}

impl Tailer {
    /// Opens `path` (which may not exist yet) at its end, or at its start
    /// with `from_start`.
    pub fn new(
        path: &Path,
        kind: SourceKind,
        from_start: bool,
        engine: EngineHandle,
        runtime: tokio::runtime::Handle,
        stats: Arc<TailStats>,
    ) -> Tailer {
        let mut opts = ParseOptions::new(kind, Utc::now(), path.display().to_string());
        opts.default_host = "localhost".into();
        let mut t = Tailer {
            path: path.to_path_buf(),
            cur: None,
            parser: Parser::new(opts),
            stats,
            feeder: super::feeder::Feeder::new(engine, runtime, IN_FLIGHT),
            stop: Arc::default(),
            problem: None,
        };
        t.cur = t.open(!from_start);
        t
    }

    /// Why the file is not being read at the moment (`None`: it is). It is
    /// tried again at every poll; a change is logged.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    fn open(&mut self, at_end: bool) -> Option<Followed> {
        let opened = File::open(&self.path).and_then(|mut file| {
            let meta = file.metadata()?;
            if meta.is_dir() {
                return Err(std::io::Error::other("it is a directory"));
            }
            let pos = if at_end { meta.len() } else { 0 };
            file.seek(SeekFrom::Start(pos))?;
            Ok(Followed {
                file,
                id: identity(&meta),
                pos,
                partial: Vec::new(),
            })
        });
        match opened {
            Ok(f) => {
                if self.problem.take().is_some() {
                    tracing::info!("{}: readable now, following it", self.shown());
                    self.stats.set_unreadable(self.shown(), None);
                }
                Some(f)
            }
            Err(e) => {
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    "it does not exist (yet)".to_string()
                } else {
                    e.to_string()
                };
                if self.problem.as_deref() != Some(why.as_str()) {
                    // Say so once per cause: a file that cannot be read
                    // looks like a quiet one otherwise. Missing is ordinary
                    // between a rotation and the new file.
                    let what = format!(
                        "{}: cannot read it: {why}; checked again every {} ms",
                        self.shown(),
                        POLL.as_millis()
                    );
                    if e.kind() == std::io::ErrorKind::NotFound {
                        tracing::info!("{what}");
                    } else {
                        tracing::warn!("{what}");
                    }
                    self.stats.set_unreadable(self.shown(), Some(&why));
                    self.problem = Some(why);
                }
                None
            }
        }
    }

    fn shown(&self) -> String {
        crate::util::sanitize_for_terminal(&self.path.display().to_string()).into_owned()
    }

    /// Reads whatever is new; handles rotation and truncation. Returns the
    /// number of complete lines handled.
    pub fn poll(&mut self) -> usize {
        let mut handled = 0;
        // Year-less timestamps are read against the parser's reference time.
        let now = Utc::now();
        if now - self.parser.options().reference > chrono::Duration::minutes(1) {
            self.parser.set_reference(now);
        }
        let current = std::fs::metadata(&self.path).ok();
        let Some(mut cur) = self.cur.take() else {
            // Not there before: a file that appears is read from its start.
            self.cur = self.open(false);
            if self.cur.is_some() {
                return self.poll();
            }
            return 0;
        };
        let rotated = current.as_ref().is_some_and(|m| identity(m) != cur.id);
        let len = cur.file.metadata().map(|m| m.len()).unwrap_or(cur.pos);
        if len < cur.pos {
            // Truncated in place (copytruncate, `> file`).
            self.stats.truncations.fetch_add(1, Ordering::Relaxed);
            cur.pos = 0;
            cur.partial.clear();
            let _ = cur.file.seek(SeekFrom::Start(0));
        }
        handled += self.drain(&mut cur);
        if rotated {
            // The old file is read to its end above; a last line without a
            // newline is complete now that nothing more can be written to it.
            if !cur.partial.is_empty() {
                let line = std::mem::take(&mut cur.partial);
                self.line(&cur, cur.pos - line.len() as u64, &line);
                self.hand_over(true);
                handled += 1;
            }
            self.stats.rotations.fetch_add(1, Ordering::Relaxed);
            self.cur = self.open(false);
            if let Some(mut next) = self.cur.take() {
                handled += self.drain(&mut next);
                self.cur = Some(next);
            }
            return handled;
        }
        self.cur = Some(cur);
        handled
    }

    fn drain(&mut self, f: &mut Followed) -> usize {
        let mut handled = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match f.file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut start = 0;
            while let Some(nl) = memchr::memchr(b'\n', &buf[start..n]) {
                let end = start + nl;
                let line_start = f.pos + start as u64 - f.partial.len() as u64;
                if f.partial.is_empty() {
                    self.line(f, line_start, &buf[start..end]);
                } else {
                    f.partial.extend_from_slice(&buf[start..end]);
                    let line = std::mem::take(&mut f.partial);
                    self.line(f, line_start, &line);
                }
                handled += 1;
                start = end + 1;
            }
            // Keep at most one line's worth of an unfinished line; the
            // parser truncates longer ones anyway.
            let room = (MAX_LINE_BYTES + 1).saturating_sub(f.partial.len());
            f.partial
                .extend_from_slice(&buf[start..n][..(n - start).min(room)]);
            f.pos += n as u64;
            self.hand_over(false);
        }
        // Caught up with the file: everything read is answered before the
        // next poll.
        self.hand_over(true);
        handled
    }

    fn line(&mut self, f: &Followed, offset: u64, raw: &[u8]) {
        self.stats.lines.fetch_add(1, Ordering::Relaxed);
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            return;
        }
        // Same file, same offset, same text → same id (see the module doc).
        let mut key = [0u8; 24];
        key[..8].copy_from_slice(&f.id.0.to_le_bytes());
        key[8..16].copy_from_slice(&f.id.1.to_le_bytes());
        key[16..].copy_from_slice(&offset.to_le_bytes());
        let line_no = fnv1a(&key);
        let ev = match self.parser.parse_line(text, line_no) {
            Ok(ev) => ev,
            Err(e) => {
                self.stats.unparsed.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .last_unparsed
                    .note(|| self.path.display().to_string(), text, &e);
                return;
            }
        };
        // Queued in file order, handed over per read chunk so one trip to
        // the engine and one group commit cover many lines.
        self.feeder.push(ev);
    }

    /// Gives the lines read so far to the engine (see [`super::feeder`]);
    /// with `wait`, also waits for the answers to every line handed over:
    /// a line whose commit failed is submitted again until it is stored
    /// (or vigil stops), so a full disk delays the file's lines instead of
    /// losing them.
    fn hand_over(&mut self, wait: bool) {
        let stop = self.stop.clone();
        let give_up = || stop.load(Ordering::Relaxed);
        let counts = super::feeder::Counts {
            accepted: &self.stats.accepted,
            refused: &self.stats.refused,
        };
        if wait {
            self.feeder.settle(&counts, &give_up);
        } else {
            self.feeder.hand_over(&counts, &give_up);
        }
    }
}

/// Follows `path` on its own thread until `stop` is set.
pub fn spawn(
    mut tailer: Tailer,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    tailer.stop = stop.clone();
    std::thread::Builder::new()
        .name("vigil-tail".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if tailer.poll() == 0 {
                    std::thread::sleep(POLL);
                }
            }
        })
}

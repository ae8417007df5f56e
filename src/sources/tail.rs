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
//!
//! Where a file was read to is saved in the store (at most once a
//! [`SAVE_EVERY`](super::feeder::SAVE_EVERY), and when vigil stops; see
//! [`WriteOp::Position`](crate::store::WriteOp::Position)), and the next
//! start resumes there, so lines written while vigil was stopped are read,
//! not skipped: in the same file if it is still at its path (from its start
//! if it shrank meanwhile); if it was rotated meanwhile, in the rotated
//! file found by its identity in the same directory (`auth.log.1`), to its
//! end, then the new file from its start. Without a saved position (the
//! first start), the file is read from its end.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;

use crate::engine::EngineHandle;
use crate::parse::{MAX_LINE_BYTES, ParseOptions, Parser, SourceKind};
use crate::store::SourcePosition;
use crate::util::fnv1a;

/// How often each file is checked for growth, rotation and truncation.
pub const POLL: Duration = Duration::from_millis(200);

/// Entries of a followed file's directory looked through for the file it
/// was rotated to while vigil was stopped.
const ROTATED_SEARCH_LIMIT: usize = 10_000;

/// Bytes at a file's start whose digest is saved with its position.
const HEAD_BYTES: u64 = 256;

/// The digest of `file`'s first `len` bytes; `None` if it has fewer.
fn head_digest(file: &File, len: u64) -> Option<u64> {
    let mut buf = vec![0u8; len as usize];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut buf, 0).ok()?;
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        return None;
    }
    Some(fnv1a(&buf))
}

/// Reads (of up to 64 KiB) handed to the engine and not yet answered: the
/// next one is read and correlated while earlier ones are committed.
const IN_FLIGHT: usize = 16;

/// What the tailers saw; printed when `vigil serve` stops, shown by the
/// console while it runs.
#[derive(Debug, Default)]
pub struct TailStats {
    pub lines: AtomicU64,
    pub accepted: AtomicU64,
    /// Lines stored before (read again after a restart).
    pub duplicates: AtomicU64,
    /// Lines never stored (the store failed until vigil stopped).
    pub unstored: AtomicU64,
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
            "tail: {} lines, {} accepted, {} already stored, {} unparsed, {} rotations, {} truncations",
            g(&self.lines),
            g(&self.accepted),
            g(&self.duplicates),
            g(&self.unparsed),
            g(&self.rotations),
            g(&self.truncations)
        ) + &super::feeder::unstored_note(g(&self.unstored))
            + &self.last_unparsed.summary_note()
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
    /// Bytes read so far (the next read starts here).
    pos: u64,
    partial: Vec<u8>,
    /// Where `partial` starts in the file (when it is not empty).
    partial_at: u64,
    /// Digest of the file's first bytes: (how many, digest); taken again
    /// while the position is below [`HEAD_BYTES`].
    head: (u64, u64),
}

impl Followed {
    fn new(file: File, id: (u64, u64), pos: u64) -> Followed {
        Followed {
            file,
            id,
            pos,
            partial: Vec::new(),
            partial_at: pos,
            head: (0, fnv1a(&[])),
        }
    }

    /// Where the first line not yet read to its end starts.
    fn position(&mut self) -> SourcePosition {
        let offset = if self.partial.is_empty() {
            self.pos
        } else {
            self.partial_at
        };
        let want = offset.min(HEAD_BYTES);
        if want > self.head.0
            && let Some(d) = head_digest(&self.file, want)
        {
            self.head = (want, d);
        }
        SourcePosition::File {
            dev: self.id.0,
            ino: self.id.1,
            offset,
            head_len: self.head.0,
            head: self.head.1,
        }
    }

    /// Whether this file starts as the one `saved` was taken from.
    fn same_head(&self, head_len: u64, head: u64) -> bool {
        head_len == 0 || head_digest(&self.file, head_len) == Some(head)
    }
}

/// Where a followed file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Beginning,
    End,
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
    /// Where it has read to, saved under `file:` and the absolute path.
    position: super::feeder::PositionSaver,
}

impl Tailer {
    /// Opens `path` (which may not exist yet) where the last run stopped
    /// reading it (see the module doc), else at its end; at its start with
    /// `from_start`.
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
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let source = format!("file:{}", absolute.display());
        let saved = engine.saved_position(&source);
        let mut t = Tailer {
            path: path.to_path_buf(),
            cur: None,
            parser: Parser::new(opts),
            stats,
            feeder: super::feeder::Feeder::new(engine, runtime, IN_FLIGHT),
            stop: Arc::default(),
            problem: None,
            position: super::feeder::PositionSaver::new(source, saved.clone()),
        };
        t.cur = match (from_start, saved) {
            (true, _) => t.open(Start::Beginning),
            (false, Some(saved)) => t.resume(&saved),
            (false, None) => t.open(Start::End),
        };
        // Saved at once (when it moved): a stop before the first save must
        // not leave the next start without a position, to start at the end.
        if let Some(cur) = t.cur.as_mut() {
            t.position.set(cur.position());
            t.save_position(true);
        }
        t
    }

    /// Opens the file read last time where it was read to: at its path if
    /// it is still there, else where it was rotated to (see the module
    /// doc). A file is the same one when its identity and first bytes are.
    fn resume(&mut self, saved: &SourcePosition) -> Option<Followed> {
        let &SourcePosition::File {
            dev,
            ino,
            offset,
            head_len,
            head,
        } = saved
        else {
            return self.open(Start::End);
        };
        let id = (dev, ino);
        let shown = self.shown();
        // The file at `path` if it has the saved identity, with its length.
        let with_id = |path: &Path| -> Option<(Followed, u64)> {
            let file = File::open(path).ok()?;
            let meta = file.metadata().ok()?;
            let f = Followed::new(file, identity(&meta), 0);
            (meta.is_file() && f.id == id).then_some((f, meta.len()))
        };
        if let Some((mut f, len)) = with_id(&self.path) {
            if len >= offset
                && f.same_head(head_len, head)
                && f.file.seek(SeekFrom::Start(offset)).is_ok()
            {
                tracing::info!("{shown}: resuming at byte {offset}, where the last run stopped");
                f.pos = offset;
                f.partial_at = offset;
                return Some(f);
            }
            // Shorter than it was read, or other first bytes: truncated in
            // place (copytruncate) and written again, or a new file that got
            // the old one's inode.
            tracing::warn!(
                "{shown}: truncated or replaced while vigil was stopped (it was read to byte \
                 {offset}; now {len} bytes{}); reading it from its start",
                if len >= offset {
                    ", other first bytes"
                } else {
                    ""
                }
            );
            self.stats.truncations.fetch_add(1, Ordering::Relaxed);
            return self.open(Start::Beginning);
        }
        let same = |path: &Path| {
            with_id(path).filter(|(f, len)| *len >= head_len && f.same_head(head_len, head))
        };
        let rotated = find_by_identity(&self.path, id).and_then(|old| same(&old).map(|f| (old, f)));
        match rotated {
            Some((old, (mut f, len))) => {
                let pos = if len >= offset { offset } else { 0 };
                if f.file.seek(SeekFrom::Start(pos)).is_ok() {
                    tracing::info!(
                        "{shown}: rotated while vigil was stopped; reading {} from byte {pos}, \
                         where the last run stopped, then {shown} from its start",
                        crate::util::sanitize_for_terminal(&old.display().to_string()),
                    );
                    f.pos = pos;
                    f.partial_at = pos;
                    // The next poll sees the rotation and moves on to the
                    // file at the path once this one is read to its end.
                    return Some(f);
                }
            }
            None => tracing::warn!(
                "{shown}: rotated while vigil was stopped, and the file read last time is no \
                 longer in its directory (compressed or deleted): its lines after byte {offset} \
                 are not read; reading {shown} from its start"
            ),
        }
        self.open(Start::Beginning)
    }

    /// Why the file is not being read at the moment (`None`: it is). It is
    /// tried again at every poll; a change is logged.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    fn open(&mut self, start: Start) -> Option<Followed> {
        let opened = File::open(&self.path).and_then(|mut file| {
            let meta = file.metadata()?;
            if meta.is_dir() {
                return Err(std::io::Error::other("it is a directory"));
            }
            let pos = match start {
                Start::Beginning => 0,
                Start::End => meta.len(),
            };
            file.seek(SeekFrom::Start(pos))?;
            Ok(Followed::new(file, identity(&meta), pos))
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
            self.cur = self.open(Start::Beginning);
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
            cur.partial_at = 0;
            // Its first bytes are new too.
            cur.head = (0, fnv1a(&[]));
            let _ = cur.file.seek(SeekFrom::Start(0));
        }
        handled += self.drain(&mut cur);
        if rotated {
            // The old file is read to its end above; a last line without a
            // newline is complete now that nothing more can be written to it.
            if !cur.partial.is_empty() {
                let line = std::mem::take(&mut cur.partial);
                self.line(&cur, cur.partial_at, &line);
                self.hand_over(true);
                handled += 1;
            }
            self.stats.rotations.fetch_add(1, Ordering::Relaxed);
            // Read to its end: the position is there until the new file
            // is opened (it may not exist yet).
            self.feeder.mark(cur.position());
            self.hand_over(true);
            self.cur = self.open(Start::Beginning);
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
        // Where it stands even when nothing new is read (a file just
        // opened, or one that shrank).
        self.feeder.mark(f.position());
        loop {
            let n = match f.file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut start = 0;
            while let Some(nl) = memchr::memchr(b'\n', &buf[start..n]) {
                let end = start + nl;
                if f.partial.is_empty() {
                    self.line(f, f.pos + start as u64, &buf[start..end]);
                } else {
                    f.partial.extend_from_slice(&buf[start..end]);
                    let line = std::mem::take(&mut f.partial);
                    self.line(f, f.partial_at, &line);
                }
                handled += 1;
                start = end + 1;
            }
            if start < n && f.partial.is_empty() {
                f.partial_at = f.pos + start as u64;
            }
            // Keep at most one line's worth of an unfinished line; the
            // parser truncates longer ones anyway.
            let room = (MAX_LINE_BYTES + 1).saturating_sub(f.partial.len());
            f.partial
                .extend_from_slice(&buf[start..n][..(n - start).min(room)]);
            f.pos += n as u64;
            self.feeder.mark(f.position());
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
            duplicates: &self.stats.duplicates,
            unstored: &self.stats.unstored,
        };
        if wait {
            self.feeder.settle(&counts, &give_up);
        } else {
            self.feeder.hand_over(&counts, &give_up);
        }
        // Settled positions are taken as they come: the feeder keeps only
        // the newest.
        self.position.note(&mut self.feeder);
    }

    /// Saves where the file is read to if that moved (see
    /// [`PositionSaver::save`](super::feeder::PositionSaver::save)).
    fn save_position(&mut self, now: bool) {
        self.position.save(&mut self.feeder, now);
    }
}

/// The file in `path`'s directory whose identity is `id` (where `path` was
/// rotated to), looking at [`ROTATED_SEARCH_LIMIT`] entries at most.
fn find_by_identity(path: &Path, id: (u64, u64)) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir)
        .ok()?
        .take(ROTATED_SEARCH_LIMIT)
        .filter_map(Result::ok)
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && identity(&m) == id)
        })
        .map(|e| e.path())
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
                let handled = tailer.poll();
                tailer.save_position(false);
                if handled == 0 {
                    std::thread::sleep(POLL);
                }
            }
            // Everything read is answered (each poll settles what it
            // handed over): the position for the next start.
            tailer.save_position(true);
        })
}

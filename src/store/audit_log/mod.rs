//! The gateway's audit trail: JSON Lines, one record per request accepted
//! or refused (a batch's record holds each of its lines),
//! hash-chained: each record carries `prev`, the SHA-256 of the previous
//! line, so any edit, deletion or reordering breaks the chain at that point.
//! `vigil audit verify FILE` reports the first broken link.
//!
//! Here: appending (the chain, holding records while the file refuses
//! writes, rotation); `pending.rs` builds records ahead of the chain and
//! `verify.rs` re-computes it; `find.rs` finds where it names an event.

mod find;
mod pending;
#[cfg(test)]
mod tests;
mod verify;

pub use find::{Mention, chain_files, find_event, rfind_line};
pub use pending::{Pending, json_str};
pub use verify::{FileVerdict, Verdict, find_record, verify, verify_chain};

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hash of "no previous record".
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn sha256_hex(bytes: &[u8]) -> String {
    let hex = sha256_hex_array(bytes);
    // Only ASCII hex digits: the conversion cannot fail.
    String::from_utf8_lossy(&hex).into_owned()
}

/// [`sha256_hex`] without allocating.
pub fn sha256_hex_array(bytes: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 15) as usize];
    }
    out
}

/// Appends chained records to a file.
///
/// Records the file refuses (a full disk, an I/O error) are not lost: they
/// are held in memory, in order, and written ahead of the next records once
/// the file takes writes again, followed by an `audit_resumed` record that
/// says since when it failed, why, how many records were held and how many
/// were lost past the bounds. The chain runs through them in the order they
/// were made. Until then every append fails fast (the file is tried again
/// after [`RETRY_EVERY`], doubling after each failed try up to
/// [`RETRY_MAX`]), so callers can refuse what they cannot audit.
///
/// Refusals are held up to [`HOLD_MAX_BYTES`]; records of something taken
/// ([`Pending::taken`]: an accepted event, an admin action) up to
/// [`HOLD_TAKEN_MAX_BYTES`], so a flood of refused requests cannot crowd out
/// the records of events accepted as the failure began.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    /// Hex SHA-256 of the last record written.
    prev: [u8; 64],
    /// Bytes in the file after the last whole write.
    len: u64,
    /// Records not written yet, oldest first.
    held: Pending,
    outage: Option<Outage>,
    path: PathBuf,
    rotation: Option<Rotation>,
    /// Records in the current file.
    records: u64,
    /// After a rotation, until the new file's first record is written: the
    /// name the previous file was given and how many records it holds.
    opening: Option<(String, u64)>,
}

/// When the log moves to a fresh file (see [`AuditLog::open_rotating`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A write that would take the file past this many bytes goes to a
    /// new file instead (a file holds at least one write).
    pub max_bytes: u64,
    /// Rotated files kept; the oldest beyond this are deleted. 0 keeps all.
    pub keep: usize,
}

/// The `type` of the first record of a file that continues a rotated one.
pub const ROTATED: &str = "audit_rotated";

/// Most bytes of records held while the file refuses writes; past it,
/// refusals are counted as lost (and the count is written on recovery).
pub const HOLD_MAX_BYTES: usize = 16 << 20;

/// Like [`HOLD_MAX_BYTES`], for records of something taken.
pub const HOLD_TAKEN_MAX_BYTES: usize = 64 << 20;

/// How soon appends try the file again after it refused a write; the wait
/// doubles after each failed try, up to [`RETRY_MAX`] (each try writes what
/// is held, up to 64 MiB, before a full disk says no).
pub const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The longest wait between tries.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(4);

/// The wait after `failures` failed tries in a row.
fn retry_delay(failures: u32) -> std::time::Duration {
    RETRY_EVERY
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(RETRY_MAX)
}

#[derive(Debug)]
struct Outage {
    since: chrono::DateTime<chrono::Utc>,
    error: String,
    /// Records dropped past [`HOLD_MAX_BYTES`].
    lost: u64,
    /// Failed tries in a row (the first write included).
    failures: u32,
    next_try: std::time::Instant,
}

/// Why an audit log is not taking writes (see [`AuditLog::outage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageReport {
    pub since: chrono::DateTime<chrono::Utc>,
    /// The latest write error.
    pub error: String,
    /// Records held in memory, to be written on recovery.
    pub held: usize,
    /// Records dropped because the memory bound was reached.
    pub lost: u64,
}

impl AuditLog {
    /// Opens (creating) `path`; the chain continues from its last line.
    /// Only a regular file's lines are read: anything else (a device, a
    /// pipe) starts a new chain rather than blocking or reading forever.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        Self::open_rotating(path, None)
    }

    /// Like [`AuditLog::open`]; with `rotation`, a write that would take the
    /// file past `max_bytes` first renames it to `STEM-<n>-<UTC time>.EXT`
    /// beside it (`audit-000001-20261121T203913.123456Z.jsonl`, `n` one
    /// more than the newest rotated file's there) and starts `path`
    /// afresh. The new file's first record, `audit_rotated`, names the
    /// previous file and its record count, and its `prev` is the hash of
    /// that file's last record: the chain runs on across files, and
    /// [`verify_chain`] follows it back.
    pub fn open_rotating(path: &Path, rotation: Option<Rotation>) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        if let Some((side, bytes)) = set_aside_torn_tail(path)? {
            tracing::warn!(
                "audit log {}: its last line was cut short ({bytes} bytes without their newline: \
                 a write the process did not live to finish, so nothing was answered on it); \
                 moved to {} and the chain goes on from the last whole record",
                path.display(),
                side.display()
            );
        }
        let (mut prev, records) = chain_end(path)?;
        // An empty file beside rotated ones (a stop between a rotation and
        // the new file's first record, or the file removed): the chain goes
        // on from the newest rotated file, so the link is not lost.
        let mut opening = None;
        if records == 0 && rotation.is_some() {
            let (dir, stem, ext) = rotation_parts(path);
            if let Some((_, name)) = rotated_files(&dir, &stem, &ext).pop() {
                let (last, n) = chain_end(&dir.join(&name))?;
                if n > 0 {
                    prev = last;
                    opening = Some((name, n));
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(AuditLog {
            file,
            prev,
            len,
            held: Pending::default(),
            outage: None,
            path: path.to_path_buf(),
            rotation,
            records,
            opening,
        })
    }

    /// The hash of the last record written (the chain's head; genesis for
    /// an empty log) and how many records the current file holds. Logged
    /// at start, at each rotation and at stop, it anchors the chain
    /// outside the file: `vigil audit verify FILE --head HASH` then shows
    /// that no record up to it was cut off the end.
    pub fn head(&self) -> (String, u64) {
        (
            String::from_utf8_lossy(&self.prev).into_owned(),
            self.records,
        )
    }

    /// Whether the file refuses writes, and what is held meanwhile.
    pub fn outage(&self) -> Option<OutageReport> {
        self.outage.as_ref().map(|o| OutageReport {
            since: o.since,
            error: o.error.clone(),
            held: self.held.len(),
            lost: o.lost,
        })
    }

    /// Writes what is held (then `audit_resumed`), if the file takes it;
    /// `Ok` when nothing is held any more. Does not touch the file before
    /// the wait after its last refusal is over (see [`RETRY_EVERY`]).
    pub fn retry(&mut self) -> std::io::Result<()> {
        self.append_pending(&Pending::default())
    }

    /// Like [`AuditLog::retry`], without waiting out the back-off (a last
    /// try before stopping).
    pub fn retry_now(&mut self) -> std::io::Result<()> {
        if let Some(o) = &mut self.outage {
            o.next_try = std::time::Instant::now();
        }
        self.retry()
    }

    /// Appends one record (anything that serialises to a JSON object);
    /// `prev` is added as its last key.
    pub fn append(&mut self, record: impl serde::Serialize) -> std::io::Result<()> {
        self.append_all(std::iter::once(record))
    }

    /// Appends records in order with one write; see [`AuditLog::append_pending`].
    pub fn append_all<R: serde::Serialize>(
        &mut self,
        records: impl IntoIterator<Item = R>,
    ) -> std::io::Result<()> {
        let records = records.into_iter();
        let mut pending = Pending::with_capacity(records.size_hint().0);
        // Records written one by one are rare and all kept (admin actions).
        pending.taken = true;
        for record in records {
            pending.push(&record)?;
        }
        self.append_pending(&pending)
    }

    /// Chains records serialised beforehand (outside whatever lock guards
    /// this log) and appends them with one write (a batch of ingest lines
    /// would otherwise cost a system call each). Only the chain hashes are
    /// computed here. `Ok` when they (and anything held before them) are in
    /// the file. If the write fails, what part of it reached the file is cut
    /// off again, the records are held (see [`AuditLog`]) and the error is
    /// returned.
    pub fn append_pending(&mut self, pending: &Pending) -> std::io::Result<()> {
        let Some(outage) = &mut self.outage else {
            return match self.write_chained(pending) {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.outage = Some(Outage {
                        since: chrono::Utc::now(),
                        error: e.to_string(),
                        lost: 0,
                        failures: 1,
                        next_try: std::time::Instant::now() + retry_delay(1),
                    });
                    self.hold(pending);
                    Err(e)
                }
            };
        };
        let now = std::time::Instant::now();
        if now < outage.next_try {
            let e = std::io::Error::other(format!(
                "the audit log refuses writes since {}: {}",
                outage.since.to_rfc3339(),
                outage.error
            ));
            self.hold(pending);
            return Err(e);
        }
        let mut all = std::mem::take(&mut self.held);
        let held = all.len();
        let lost = outage.lost;
        let since = outage.since.to_rfc3339();
        let error = outage.error.clone();
        // Opens an object, so it cannot be refused.
        let _ = all.push_open(|o| {
            o.extend_from_slice(b"{\"type\":\"audit_resumed\",\"ts\":");
            json_str(o, &chrono::Utc::now().to_rfc3339());
            o.extend_from_slice(b",\"failing_since\":");
            json_str(o, &since);
            o.extend_from_slice(b",\"error\":");
            json_str(o, &error);
            o.extend_from_slice(
                format!(",\"records_held\":{held},\"records_lost\":{lost}").as_bytes(),
            );
        });
        all.extend(pending);
        match self.write_chained(&all) {
            Ok(()) => {
                self.outage = None;
                Ok(())
            }
            Err(e) => {
                all.truncate(held);
                self.held = all;
                if let Some(o) = &mut self.outage {
                    o.error = e.to_string();
                    o.failures = o.failures.saturating_add(1);
                    o.next_try = std::time::Instant::now() + retry_delay(o.failures);
                }
                self.hold(pending);
                Err(e)
            }
        }
    }

    /// Keeps `pending` for later, or counts it lost past its bound.
    fn hold(&mut self, pending: &Pending) {
        let Some(outage) = &mut self.outage else {
            return;
        };
        let bound = if pending.taken {
            HOLD_TAKEN_MAX_BYTES
        } else {
            HOLD_MAX_BYTES
        };
        if self.held.buf.len() + pending.buf.len() <= bound {
            self.held.extend(pending);
        } else {
            outage.lost += pending.len() as u64;
        }
    }

    /// Chains and writes `pending`, all or nothing, moving to a new file
    /// first if this write would take the current one past its bound.
    fn write_chained(&mut self, pending: &Pending) -> std::io::Result<()> {
        if pending.ends.is_empty() {
            return Ok(());
        }
        let prev_key = b"\"prev\":\"";
        let size = pending.buf.len() + pending.ends.len() * (prev_key.len() + 68);
        if let Some(r) = self.rotation {
            if self.opening.is_none() && self.len > 0 && self.len + size as u64 > r.max_bytes {
                self.rotate(r);
            }
        }
        let opening = match &self.opening {
            Some((name, records)) => {
                let mut first = Pending::default();
                first.push_open(|o| {
                    o.extend_from_slice(b"{\"type\":");
                    json_str(o, ROTATED);
                    o.extend_from_slice(b",\"ts\":");
                    json_str(o, &chrono::Utc::now().to_rfc3339());
                    o.extend_from_slice(b",\"previous_file\":");
                    json_str(o, name);
                    o.extend_from_slice(format!(",\"previous_records\":{records}").as_bytes());
                })?;
                first.extend(pending);
                Some(first)
            }
            None => None,
        };
        let pending = opening.as_ref().unwrap_or(pending);
        let mut buf = Vec::with_capacity(size + 256);
        let mut prev = self.prev;
        let mut from = 0;
        for &end in &pending.ends {
            let start = buf.len();
            // `{` and the members, without the closing brace.
            let open = &pending.buf[from..end];
            buf.extend_from_slice(open);
            if open.len() > 1 {
                buf.push(b',');
            }
            buf.extend_from_slice(prev_key);
            buf.extend_from_slice(&prev);
            buf.extend_from_slice(b"\"}");
            prev = sha256_hex_array(&buf[start..]);
            buf.push(b'\n');
            from = end;
        }
        if let Err(e) = self.file.write_all(&buf) {
            // Best effort: if even the cut fails, verify names the line.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        self.prev = prev;
        self.records += pending.len() as u64;
        self.opening = None;
        Ok(())
    }

    /// Renames the current file aside and opens a fresh one at `path`;
    /// its first record is written with the next write. On failure the log
    /// carries on in the current file (and says why).
    fn rotate(&mut self, r: Rotation) {
        let (dir, stem, ext) = rotation_parts(&self.path);
        // Numbered after the newest rotated file there, so that their order
        // (and which go first) never depends on the clock.
        let seq = rotated_files(&dir, &stem, &ext)
            .last()
            .map_or(1, |(seq, _)| seq + 1);
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let name = format!("{stem}-{seq:06}-{now}.{ext}");
        if dir.join(&name).exists() {
            tracing::warn!("audit log: cannot rotate ({name} exists), writing on");
            return;
        }
        if let Err(e) = std::fs::rename(&self.path, dir.join(&name)) {
            tracing::warn!("audit log: cannot rotate (rename failed), writing on: {e}");
            return;
        }
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(file) => {
                tracing::info!(
                    "audit log: rotated to {name} ({} records, chain head {})",
                    self.records,
                    String::from_utf8_lossy(&self.prev)
                );
                self.file = file;
                self.len = 0;
                self.opening = Some((name, std::mem::take(&mut self.records)));
            }
            Err(e) => {
                tracing::warn!(
                    "audit log: cannot start a new file, writing on in the old one: {e}"
                );
                if let Err(e) = std::fs::rename(dir.join(&name), &self.path) {
                    tracing::warn!("audit log: cannot rename {name} back either: {e}");
                }
                return;
            }
        }
        if r.keep > 0 {
            prune_rotated(&dir, &stem, &ext, r.keep);
        }
    }
}

/// The hash of `path`'s last record (genesis when it has none) and how many
/// records it holds. Only a regular file is read: anything else (a device,
/// a pipe) starts a new chain rather than blocking or reading forever.
/// Records are written whole lines at a time, but a process killed during
/// a write that spans pages can leave part of it: a last line without its
/// newline. Appending after it would glue the next record to the fragment
/// and break the chain there for good. So the fragment is moved to
/// `STEM-torn-<UTC time>.EXT` beside the file (kept, not deleted) and cut
/// off, and the chain goes on from the last whole record. Nothing was
/// answered on those records: answers go out after their record is
/// written. Returns the side file and the bytes moved, if any.
fn set_aside_torn_tail(path: &Path) -> std::io::Result<Option<(PathBuf, u64)>> {
    use std::io::{Read, Seek, SeekFrom};
    let len = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        _ => return Ok(None),
    };
    if ends_with_newline(path)? {
        return Ok(None);
    }
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    // Where the whole lines end: just after the last newline (0 if none).
    let mut end = len;
    let keep = loop {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    let mut tail = Vec::with_capacity((len - keep) as usize);
    f.seek(SeekFrom::Start(keep))?;
    f.read_to_end(&mut tail)?;
    let (dir, stem, ext) = rotation_parts(path);
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let side = dir.join(format!("{stem}-torn-{now}.{ext}"));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&side)?;
    out.write_all(&tail)?;
    out.sync_all()?;
    f.set_len(keep)?;
    f.sync_all()?;
    Ok(Some((side, tail.len() as u64)))
}

/// Whether `path` is empty or ends with a newline (records are whole
/// lines).
fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

fn chain_end(path: &Path) -> std::io::Result<([u8; 64], u64)> {
    let mut prev = [0u8; 64];
    prev.copy_from_slice(GENESIS.as_bytes());
    let mut records = 0;
    if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        for line in raw_lines(path)? {
            let line = line?;
            if !line.is_empty() {
                prev = sha256_hex_array(&line);
                records += 1;
            }
        }
    }
    Ok((prev, records))
}

/// Longest line the audit tools read (and `vigil serve` reads at start to
/// find the chain's end). The longest record vigil writes is a batch's, a
/// few MiB at most (10 000 lines); a longer line is not a record, and
/// reading it whole could exhaust memory.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// `path`'s lines as bytes, without `\n` (or `\r\n`), as the chain hashes
/// them. Bytes, not text: a line that is not UTF-8 (a damaged or edited
/// file) is a broken link to report at its line, not a read error. A line
/// longer than [`MAX_LINE_BYTES`] is a read error (and the last item).
fn raw_lines(path: &Path) -> std::io::Result<RawLines<BufReader<File>>> {
    Ok(RawLines::new(
        BufReader::new(File::open(path)?),
        MAX_LINE_BYTES,
    ))
}

/// See [`raw_lines`].
struct RawLines<R> {
    reader: R,
    max: usize,
    line: u64,
    done: bool,
}

impl<R: BufRead> RawLines<R> {
    fn new(reader: R, max: usize) -> Self {
        RawLines {
            reader,
            max,
            line: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for RawLines<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = Vec::new();
        let read = (&mut self.reader)
            .take(self.max as u64 + 1)
            .read_until(b'\n', &mut buf);
        match read {
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                } else if buf.len() > self.max {
                    self.done = true;
                    return Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "line {} is longer than {} bytes: not a record vigil writes",
                            self.line, self.max
                        ),
                    )));
                }
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                Some(Ok(buf))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The directory, stem and extension rotated files are named from.
fn rotation_parts(path: &Path) -> (PathBuf, String, String) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let stem = path
        .file_stem()
        .map_or_else(|| "audit".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(|| "jsonl".into(), |s| s.to_string_lossy().into_owned());
    (dir, stem, ext)
}

/// The sequence number of `name` if it is a rotated file of `stem`.`ext`:
/// `STEM-<seq>-<UTC time>.EXT`, as [`AuditLog::rotate`] names them.
fn rotated_seq(name: &str, stem: &str, ext: &str) -> Option<u64> {
    let (seq, time) = name
        .strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(ext)?
        .strip_suffix('.')?
        .split_once('-')?;
    let time_ok = time.len() >= 16
        && time
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'T' | b'Z' | b'.'));
    if !time_ok || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}

/// The rotated files of `stem`.`ext` in `dir`, oldest (lowest number)
/// first.
fn rotated_files(dir: &Path, stem: &str, ext: &str) -> Vec<(u64, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut rotated: Vec<(u64, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| rotated_seq(&n, stem, ext).map(|seq| (seq, n)))
        .collect();
    rotated.sort();
    rotated
}

/// Deletes the oldest rotated files beyond `keep`.
fn prune_rotated(dir: &Path, stem: &str, ext: &str, keep: usize) {
    let rotated = rotated_files(dir, stem, ext);
    let excess = rotated.len().saturating_sub(keep);
    for (_, name) in &rotated[..excess] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => tracing::info!("audit log: removed {name} (keeping the newest {keep})"),
            Err(e) => tracing::warn!("audit log: cannot remove {name}: {e}"),
        }
    }
}

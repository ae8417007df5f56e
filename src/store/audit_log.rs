//! The gateway's audit trail: JSON Lines, one record per accept and reject,
//! hash-chained: each record carries `prev`, the SHA-256 of the previous
//! line, so any edit, deletion or reordering breaks the chain at that point.
//! `vigil audit verify FILE` reports the first broken link.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
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

/// `path`'s lines as bytes, without `\n` (or `\r\n`), as the chain hashes
/// them. Bytes, not text: a line that is not UTF-8 (a damaged or edited
/// file) is a broken link to report at its line, not a read error.
fn raw_lines(path: &Path) -> std::io::Result<impl Iterator<Item = std::io::Result<Vec<u8>>>> {
    Ok(BufReader::new(File::open(path)?).split(b'\n').map(|l| {
        l.map(|mut l| {
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            l
        })
    }))
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

/// Records serialised ahead of the chain, so that the costly part of an
/// append (building the JSON) needs no lock: each is kept as a JSON
/// object without its closing brace, which [`AuditLog::append_pending`]
/// adds after `prev`.
#[derive(Debug, Default)]
pub struct Pending {
    buf: Vec<u8>,
    /// Where each record ends in `buf`.
    ends: Vec<usize>,
    /// Whether these records are of something taken, not only refused
    /// (see [`AuditLog`]'s bounds).
    pub taken: bool,
}

impl Pending {
    pub fn with_capacity(records: usize) -> Self {
        Pending {
            // Gateway records are ~450 bytes: one allocation for a batch.
            buf: Vec::with_capacity(records.saturating_mul(448)),
            ends: Vec::with_capacity(records),
            taken: false,
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends `other`'s records after these (taken if either was).
    pub fn extend(&mut self, other: &Pending) {
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        self.taken |= other.taken;
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.taken = false;
    }

    /// Keeps the first `n` records.
    fn truncate(&mut self, n: usize) {
        if n < self.ends.len() {
            self.buf.truncate(if n == 0 { 0 } else { self.ends[n - 1] });
            self.ends.truncate(n);
        }
    }

    /// Adds a record that serialises to a JSON object (anything else is
    /// refused and adds nothing).
    pub fn push(&mut self, record: &impl serde::Serialize) -> std::io::Result<()> {
        let start = self.buf.len();
        serde_json::to_writer(&mut self.buf, record).map_err(std::io::Error::other)?;
        if self.buf.len() < start + 2
            || self.buf[start] != b'{'
            || self.buf[self.buf.len() - 1] != b'}'
        {
            self.buf.truncate(start);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an audit record must be a JSON object",
            ));
        }
        self.buf.pop();
        self.ends.push(self.buf.len());
        Ok(())
    }

    /// Adds a record written by `write`, which must write `{` and the
    /// members, and not the closing brace (the members must be valid JSON:
    /// strings through [`json_str`]).
    pub fn push_open(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        let start = self.buf.len();
        write(&mut self.buf);
        if self.buf.get(start) != Some(&b'{') || self.buf.last() == Some(&b',') {
            self.buf.truncate(start);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an audit record must open a JSON object",
            ));
        }
        self.ends.push(self.buf.len());
        Ok(())
    }
}

/// Writes `s` as a JSON string (quoted, escaped as serde_json escapes).
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    // Without an early exit the check vectorises (these strings are short
    // and almost never need escaping).
    let plain = !s.bytes().fold(false, |bad, b| {
        bad | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// The first place a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `previous`: the file continues a rotated one of that name (its
    /// first record is `audit_rotated`).
    Intact {
        records: u64,
        previous: Option<String>,
    },
    Broken {
        line: u64,
        reason: String,
    },
}

/// One file's part in [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVerdict {
    pub path: PathBuf,
    pub verdict: Verdict,
    /// Whether its first record was checked against the file before it
    /// (false for the oldest file: it starts the chain, or continues one
    /// no longer present).
    pub linked: bool,
}

/// Re-computes the chain of one audit file. Its first record's `prev`
/// must be the genesis hash, unless that record is `audit_rotated` (the
/// file continues another; [`verify_chain`] checks that link).
pub fn verify(path: &Path) -> std::io::Result<Verdict> {
    Ok(scan(path, None)?.0)
}

/// Verifies `path` and, back through their `audit_rotated` records, the
/// rotated files before it that are still beside it, oldest first: each
/// file's chain, and that each one's first record continues the file
/// before. Stops at the first broken file.
pub fn verify_chain(path: &Path) -> std::io::Result<Vec<FileVerdict>> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut files = vec![path.to_path_buf()];
    // Back through the files each one names (a plain name beside it; at
    // most one visit each, so a loop cannot trap this).
    while let Some(previous) = first_record_previous(&files[0])? {
        let p = dir.join(&previous);
        if files.contains(&p) || !p.is_file() {
            break;
        }
        files.insert(0, p);
    }
    let mut out = Vec::with_capacity(files.len());
    let mut last: Option<String> = None;
    for (i, f) in files.into_iter().enumerate() {
        let (verdict, end) = scan(&f, last.as_deref())?;
        let broken = matches!(verdict, Verdict::Broken { .. });
        out.push(FileVerdict {
            path: f,
            verdict,
            linked: i > 0,
        });
        if broken {
            break;
        }
        last = Some(end);
    }
    Ok(out)
}

/// Where in `files` (in chain order, as [`verify_chain`] lists them) the
/// record whose hash is `head` lies: its file, its line, and how many
/// records follow it in that file and the later ones. `None` when no record
/// hashes to it.
pub fn find_record(files: &[PathBuf], head: &str) -> std::io::Result<Option<(PathBuf, u64, u64)>> {
    let mut found = None;
    let mut after = 0u64;
    for f in files {
        for (i, line) in raw_lines(f)?.enumerate() {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            if found.is_some() {
                after += 1;
            } else if sha256_hex(&line) == head {
                found = Some((f.clone(), i as u64 + 1));
            }
        }
    }
    Ok(found.map(|(f, line)| (f, line, after)))
}

/// The `previous_file` named by `path`'s first record, if that is an
/// `audit_rotated` record naming a plain file name.
fn first_record_previous(path: &Path) -> std::io::Result<Option<String>> {
    let Some(first) = raw_lines(path)?.find(|l| l.as_ref().map_or(true, |l| !l.is_empty())) else {
        return Ok(None);
    };
    let Ok(v) = serde_json::from_slice::<Value>(&first?) else {
        return Ok(None);
    };
    Ok(rotated_from(&v))
}

fn rotated_from(v: &Value) -> Option<String> {
    if v.get("type").and_then(Value::as_str) != Some(ROTATED) {
        return None;
    }
    v.get("previous_file")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && !n.contains(['/', '\\']) && *n != "." && *n != "..")
        .map(str::to_string)
}

/// One file's chain; `start`: the hash its first record must carry (the
/// previous file's last), or `None` for genesis (or, for an
/// `audit_rotated` first record, anything). Returns the verdict and the
/// hash of the last record.
fn scan(path: &Path, start: Option<&str>) -> std::io::Result<(Verdict, String)> {
    let mut prev = start.unwrap_or(GENESIS).to_string();
    let mut n = 0u64;
    let mut previous = None;
    let ends_whole = ends_with_newline(path)?;
    let mut lines = raw_lines(path)?.enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let line = line?;
        let no = i as u64 + 1;
        if line.is_empty() {
            continue;
        }
        let broken = |reason: String| Ok((Verdict::Broken { line: no, reason }, String::new()));
        // The last line without its newline: a write cut short.
        let cut_short = !ends_whole && lines.peek().is_none();
        let unreadable = |what: String| {
            if cut_short {
                broken(format!(
                    "{what}: the file ends in this line without a newline, {} bytes into it \
                     (a write the process did not live to finish; `vigil serve` sets the \
                     fragment aside when it next opens the log)",
                    line.len()
                ))
            } else {
                broken(what)
            }
        };
        let Ok(line) = std::str::from_utf8(&line) else {
            return unreadable("not UTF-8".into());
        };
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return unreadable(format!("not JSON: {e}")),
        };
        if n == 0 {
            previous = rotated_from(&v);
        }
        match v.get("prev").and_then(Value::as_str) {
            Some(p) if p == prev => {}
            // The first record of a file that continues another: its link
            // is checked only with that file at hand.
            Some(p) if n == 0 && start.is_none() && previous.is_some() && p.len() == 64 => {}
            Some(p) if n == 0 && start.is_some() => {
                return broken(format!(
                    "prev {p} does not continue the previous file (its last record's hash is {prev})"
                ));
            }
            Some(p) => {
                return broken(format!(
                    "prev {p} does not match the previous record's hash {prev}"
                ));
            }
            None => return broken("record has no prev hash".into()),
        }
        prev = sha256_hex(line.as_bytes());
        n += 1;
    }
    Ok((
        Verdict::Intact {
            records: n,
            previous,
        },
        prev,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An intact file that starts the chain.
    fn intact(records: u64) -> Verdict {
        Verdict::Intact {
            records,
            previous: None,
        }
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_set_aside_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        for n in 0..3 {
            log.append_pending(&record(n)).unwrap();
        }
        drop(log);
        let whole = std::fs::read(&p).unwrap();
        // What one write of two more records adds to the file...
        let copy = dir.path().join("copy.jsonl");
        std::fs::copy(&p, &copy).unwrap();
        let mut log = AuditLog::open(&copy).unwrap();
        let mut two = record(3);
        two.extend(&record(4));
        log.append_pending(&two).unwrap();
        drop(log);
        let both = std::fs::read(&copy).unwrap()[whole.len()..].to_vec();
        std::fs::remove_file(&copy).unwrap();
        // ...and that write killed part-way through the second record.
        let cut = both.len() - 10;
        let first_end = both.iter().position(|b| *b == b'\n').unwrap() + 1;
        assert!(cut > first_end);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(&both[..cut])
            .unwrap();
        match verify(&p).unwrap() {
            Verdict::Broken { line: 5, reason } => assert!(
                reason.contains("without a newline") && reason.contains("sets the fragment aside"),
                "{reason}"
            ),
            v => panic!("{v:?}"),
        }
        let mut log = AuditLog::open(&p).unwrap();
        assert_eq!(
            log.head().1,
            4,
            "the whole record before the fragment counts"
        );
        log.append_pending(&record(5)).unwrap();
        drop(log);
        assert_eq!(verify(&p).unwrap(), intact(5));
        let text = std::fs::read(&p).unwrap();
        assert!(text.starts_with(&whole));
        let side: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| n.starts_with("audit-torn-") && n.ends_with(".jsonl"))
            .collect();
        assert_eq!(side.len(), 1, "{side:?}");
        assert_eq!(
            std::fs::read(dir.path().join(&side[0])).unwrap(),
            &both[first_end..cut],
            "the fragment is kept beside the log"
        );
        assert!(
            rotated_names(dir.path()).is_empty(),
            "not taken for a rotated file"
        );

        // Only a fragment, no whole line: the file starts afresh.
        let q = dir.path().join("other.jsonl");
        std::fs::write(&q, b"{\"ty").unwrap();
        let mut log = AuditLog::open(&q).unwrap();
        assert_eq!(log.head().1, 0);
        log.append_pending(&record(0)).unwrap();
        drop(log);
        assert_eq!(verify(&q).unwrap(), intact(1));
    }

    #[test]
    fn chain_detects_edits_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        for i in 0..3 {
            let mut log = AuditLog::open(&p).unwrap();
            let mut m = serde_json::Map::new();
            m.insert("n".into(), i.into());
            log.append(m).unwrap();
        }
        assert_eq!(verify(&p).unwrap(), intact(3));
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\"n\":1", "\"n\":7");
        std::fs::write(&p, text).unwrap();
        assert!(matches!(
            verify(&p).unwrap(),
            Verdict::Broken { line: 3, .. }
        ));
    }

    fn record(n: usize) -> Pending {
        let mut p = Pending::default();
        p.push(&serde_json::json!({ "n": n })).unwrap();
        p
    }

    /// A log whose file refuses writes (opened read-only) until `fix`.
    fn refusing(p: &Path) -> AuditLog {
        let mut log = AuditLog::open(p).unwrap();
        log.file = File::open(p).unwrap();
        log
    }

    fn fix(log: &mut AuditLog, p: &Path) {
        log.file = OpenOptions::new().append(true).open(p).unwrap();
        if let Some(o) = &mut log.outage {
            o.next_try = std::time::Instant::now();
        }
    }

    #[test]
    fn records_the_file_refuses_are_held_and_written_in_order_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        AuditLog::open(&p)
            .unwrap()
            .append_pending(&record(0))
            .unwrap();
        let mut log = refusing(&p);
        let mut two = record(1);
        two.extend(&record(2));
        assert!(log.append_pending(&two).is_err());
        // Within RETRY_EVERY: not even tried, held all the same.
        assert!(log.append_pending(&record(3)).is_err());
        assert!(log.retry().is_err());
        let o = log.outage().expect("an outage");
        assert_eq!((o.held, o.lost), (3, 0));
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 1);
        fix(&mut log, &p);
        log.append_pending(&record(4)).unwrap();
        assert_eq!(log.outage(), None);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ns: Vec<_> = lines.iter().map(|v| v["n"].as_u64()).collect();
        assert_eq!(ns, [Some(0), Some(1), Some(2), Some(3), None, Some(4)]);
        assert_eq!(lines[4]["type"], "audit_resumed");
        assert_eq!(lines[4]["records_held"], 3);
        assert_eq!(lines[4]["records_lost"], 0);
        assert_eq!(lines[4]["failing_since"], o.since.to_rfc3339());
        assert!(
            lines[4]["error"]
                .as_str()
                .unwrap()
                .contains("Bad file descriptor")
        );
        assert_eq!(verify(&p).unwrap(), intact(6));
        // Nothing held: a retry writes nothing.
        log.retry().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    }

    #[test]
    fn past_their_bound_refusals_are_counted_lost_and_what_was_taken_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let mut log = refusing(&p);
        assert!(log.append_pending(&record(1)).is_err());
        let mut big = Pending::default();
        big.push(&serde_json::json!({ "pad": "x".repeat(HOLD_MAX_BYTES - 20) }))
            .unwrap();
        assert!(log.append_pending(&big).is_err());
        // Refusals past HOLD_MAX_BYTES are dropped...
        assert!(log.append_pending(&record(2)).is_err());
        assert!(log.append_pending(&record(3)).is_err());
        // ...records of what was taken are kept.
        let mut accepted = record(4);
        accepted.taken = true;
        assert!(log.append_pending(&accepted).is_err());
        let o = log.outage().unwrap();
        assert_eq!((o.held, o.lost), (3, 2));
        fix(&mut log, &p);
        log.retry().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["n"], 1);
        assert!(lines[1]["pad"].is_string());
        assert_eq!(lines[2]["n"], 4);
        assert_eq!(lines[3]["type"], "audit_resumed");
        assert_eq!(lines[3]["records_held"], 3);
        assert_eq!(lines[3]["records_lost"], 2);
        assert_eq!(verify(&p).unwrap(), intact(4));
    }

    fn rotated_names(dir: &Path) -> Vec<String> {
        super::rotated_files(dir, "audit", "jsonl")
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }

    #[test]
    fn a_rotated_log_chains_across_files_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 1000,
            keep: 0,
        };
        let mut log = AuditLog::open_rotating(&p, Some(rotation)).unwrap();
        // 83 bytes a record: twelve to the first file; the others start with
        // `audit_rotated` (~150 bytes).
        for n in 0..25 {
            log.append_pending(&record(n)).unwrap();
        }
        let rotated = rotated_names(dir.path());
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let chain = verify_chain(&p).unwrap();
        let summary: Vec<_> = chain
            .iter()
            .map(|f| {
                (
                    f.path.file_name().unwrap().to_str().unwrap().to_string(),
                    f.verdict.clone(),
                    f.linked,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (rotated[0].clone(), intact(12), false),
                (
                    rotated[1].clone(),
                    Verdict::Intact {
                        records: 10,
                        previous: Some(rotated[0].clone())
                    },
                    true
                ),
                (
                    "audit.jsonl".into(),
                    Verdict::Intact {
                        records: 5,
                        previous: Some(rotated[1].clone())
                    },
                    true
                ),
            ]
        );
        // Every record is there once, in order, and no file is past its bound
        // but for its last write.
        let mut ns = Vec::new();
        for f in &chain {
            let text = std::fs::read_to_string(&f.path).unwrap();
            assert!(text.len() <= 1000 + 100, "{}", text.len());
            for l in text.lines() {
                let v: Value = serde_json::from_str(l).unwrap();
                match v["n"].as_u64() {
                    Some(n) => ns.push(n),
                    None => {
                        assert_eq!(v["type"], ROTATED);
                        assert!(
                            v["previous_records"] == 12 || v["previous_records"] == 10,
                            "{v}"
                        );
                    }
                }
            }
        }
        assert_eq!(ns, (0..25).collect::<Vec<_>>());
        // Reopened, the log goes on in the current file.
        drop(log);
        let mut log = AuditLog::open_rotating(&p, Some(rotation)).unwrap();
        log.append_pending(&record(25)).unwrap();
        assert!(matches!(
            verify_chain(&p).unwrap()[2].verdict,
            Verdict::Intact { records: 6, .. }
        ));

        // An edit in an older file breaks the chain there...
        let first = dir.path().join(&rotated[0]);
        let text = std::fs::read_to_string(&first).unwrap();
        std::fs::write(&first, text.replace("\"n\":9", "\"n\":90")).unwrap();
        let chain = verify_chain(&p).unwrap();
        assert_eq!(chain.len(), 1);
        assert!(
            // (the record after it no longer matches)
            matches!(chain[0].verdict, Verdict::Broken { line: 11, .. }),
            "{chain:?}"
        );
        // ...and so does dropping its last record: the next file no longer
        // continues it.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&first, lines[..9].join("\n") + "\n").unwrap();
        let chain = verify_chain(&p).unwrap();
        assert_eq!(chain.len(), 2);
        assert!(matches!(
            chain[0].verdict,
            Verdict::Intact { records: 9, .. }
        ));
        match &chain[1].verdict {
            Verdict::Broken { line: 1, reason } => {
                assert!(reason.contains("does not continue"), "{reason}")
            }
            v => panic!("{v:?}"),
        }
        // Without the older files, the current one is checked from its start.
        std::fs::remove_file(&first).unwrap();
        std::fs::remove_file(dir.path().join(&rotated[1])).unwrap();
        let chain = verify_chain(&p).unwrap();
        assert_eq!(chain.len(), 1);
        assert_eq!(
            chain[0].verdict,
            Verdict::Intact {
                records: 6,
                previous: Some(rotated[1].clone())
            }
        );
        assert!(!chain[0].linked);
    }

    #[test]
    fn rotation_keeps_the_newest_files_and_names_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        // Not ours: never deleted.
        let others = [
            "audit-notes.jsonl",
            "audit-000001.jsonl",
            "audit-x-20261121T000000.000000Z.jsonl",
            "other-000001-20261121T000000.000000Z.jsonl",
        ];
        for other in others {
            std::fs::write(dir.path().join(other), "x").unwrap();
        }
        // Ours, from a clock far ahead: numbered 7, so it is the oldest
        // once newer files follow it, whatever their times say.
        let ahead = "audit-000007-29991231T000000.000000Z.jsonl";
        std::fs::write(dir.path().join(ahead), "x").unwrap();
        let mut log = AuditLog::open_rotating(
            &p,
            Some(Rotation {
                max_bytes: 200,
                keep: 2,
            }),
        )
        .unwrap();
        for n in 0..20 {
            log.append_pending(&record(n)).unwrap();
        }
        let rotated = rotated_names(dir.path());
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        assert!(!dir.path().join(ahead).exists());
        let seqs: Vec<u64> = super::rotated_files(dir.path(), "audit", "jsonl")
            .iter()
            .map(|(s, _)| *s)
            .collect();
        let last = *seqs.last().unwrap();
        assert!(last > 8 && seqs == [last - 1, last], "{rotated:?}");
        for other in others {
            assert!(dir.path().join(other).exists(), "{other}");
        }
        let chain = verify_chain(&p).unwrap();
        assert_eq!(chain.len(), 3);
        assert!(
            chain
                .iter()
                .all(|f| matches!(f.verdict, Verdict::Intact { .. })),
            "{chain:?}"
        );
        assert!(!chain[0].linked && chain[1].linked && chain[2].linked);
        // A previous_file that is not a plain name is not followed.
        assert_eq!(
            rotated_from(&serde_json::json!({"type": ROTATED, "previous_file": "../etc/passwd"})),
            None
        );
        assert_eq!(
            rotated_from(&serde_json::json!({"type": ROTATED, "previous_file": ".."})),
            None
        );
    }

    #[test]
    fn a_rotation_whose_first_record_meets_a_full_disk_writes_it_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open_rotating(
            &p,
            Some(Rotation {
                max_bytes: 100,
                keep: 0,
            }),
        )
        .unwrap();
        log.append_pending(&record(0)).unwrap();
        // The next write rotates; the new file refuses it.
        log.rotate(log.rotation.unwrap());
        log.file = File::open(&p).unwrap();
        assert!(log.append_pending(&record(1)).is_err());
        fix(&mut log, &p);
        log.append_pending(&record(2)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let types: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        assert_eq!(types[0]["type"], ROTATED);
        assert_eq!(types[1]["n"], 1);
        assert_eq!(types[2]["type"], "audit_resumed");
        assert_eq!(types[3]["n"], 2);
        let chain = verify_chain(&p).unwrap();
        assert_eq!(chain.len(), 2);
        assert!(
            chain
                .iter()
                .all(|f| matches!(f.verdict, Verdict::Intact { .. })),
            "{chain:?}"
        );
    }

    #[test]
    fn tries_back_off_while_the_file_refuses_writes() {
        let ms = |n| retry_delay(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(u32::MAX)],
            [250, 500, 1000, 2000, 4000, 4000, 4000]
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let mut log = refusing(&p);
        assert!(log.append_pending(&record(1)).is_err());
        for failures in 2..=4 {
            log.outage.as_mut().unwrap().next_try = std::time::Instant::now();
            let before = std::time::Instant::now();
            assert!(log.retry().is_err());
            let o = log.outage.as_ref().unwrap();
            assert_eq!(o.failures, failures);
            assert!(o.next_try >= before + retry_delay(failures));
        }
        // Within the wait, a retry does not touch the file; a last one does.
        log.file = OpenOptions::new().append(true).open(&p).unwrap();
        assert!(log.retry().is_err());
        log.retry_now().unwrap();
        assert_eq!(log.outage(), None);
        assert_eq!(verify(&p).unwrap(), intact(2));
    }

    #[test]
    fn a_stop_between_a_rotation_and_the_first_record_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 1 << 20,
            keep: 0,
        };
        let mut log = AuditLog::open_rotating(&p, Some(rotation)).unwrap();
        log.append_pending(&record(1)).unwrap();
        log.append_pending(&record(2)).unwrap();
        // Renamed aside and a fresh file opened; then the process stops.
        log.rotate(rotation);
        drop(log);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        let mut log = AuditLog::open_rotating(&p, Some(rotation)).unwrap();
        log.append_pending(&record(3)).unwrap();
        let chain = verify_chain(&p).unwrap();
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert_eq!(
            chain[1].verdict,
            Verdict::Intact {
                records: 2,
                previous: Some(rotated_names(dir.path())[0].clone())
            }
        );
        assert!(chain[1].linked);
        let first: Value =
            serde_json::from_str(std::fs::read_to_string(&p).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(first["previous_records"], 2);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_a_broken_link_at_their_line_and_do_not_stop_a_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        log.append_pending(&record(1)).unwrap();
        log.append_pending(&record(2)).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&p).unwrap();
        // `"n":1` becomes `"n":` and a stray byte.
        let at = bytes.windows(5).position(|w| w == b"\"n\":1").unwrap() + 4;
        bytes[at] = 0xff;
        std::fs::write(&p, &bytes).unwrap();
        match verify(&p).unwrap() {
            Verdict::Broken { line: 1, reason } => assert_eq!(reason, "not UTF-8"),
            v => panic!("{v:?}"),
        }
        // The log still opens and goes on from the (damaged) last record.
        let mut log = AuditLog::open(&p).unwrap();
        assert_eq!(log.head().1, 2);
        log.append_pending(&record(3)).unwrap();
        assert!(matches!(
            verify(&p).unwrap(),
            Verdict::Broken { line: 1, .. }
        ));
    }

    #[test]
    fn a_log_that_is_not_a_regular_file_is_not_read() {
        let Ok(meta) = std::fs::metadata("/dev/zero") else {
            eprintln!("SKIP: no /dev/zero");
            return;
        };
        assert!(!meta.is_file());
        // Reading /dev/zero for lines would never end.
        let mut log = AuditLog::open(Path::new("/dev/zero")).unwrap();
        assert_eq!(&log.prev[..], GENESIS.as_bytes());
        log.append_pending(&record(1)).unwrap();
    }

    #[test]
    fn prev_is_the_last_key_and_only_objects_are_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        log.append(serde_json::json!({})).unwrap();
        log.append(serde_json::json!({"b": 1, "a": "x}"})).unwrap();
        assert!(log.append(serde_json::json!([1, 2])).is_err());
        assert!(log.append("text").is_err());
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "a refused record writes nothing");
        assert_eq!(lines[0], format!("{{\"prev\":\"{GENESIS}\"}}"));
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["a"], "x}");
        assert_eq!(second["prev"], sha256_hex(lines[0].as_bytes()));
        assert_eq!(verify(&p).unwrap(), intact(2));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does_and_raw_records_must_open_an_object() {
        for s in [
            "plain",
            "a\"b",
            "back\\slash",
            "new\nline",
            "\u{1}\u{1f}\u{7f}",
            "é ☃",
            "",
        ] {
            let mut out = Vec::new();
            json_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        let mut pending = Pending::default();
        assert!(
            pending
                .push_open(|o| o.extend_from_slice(b"\"a\":1"))
                .is_err()
        );
        assert!(
            pending
                .push_open(|o| o.extend_from_slice(b"{\"a\":1,"))
                .is_err()
        );
        pending
            .push_open(|o| {
                o.extend_from_slice(b"{\"id\":");
                json_str(o, "x\"}\n{");
            })
            .unwrap();
        pending.push_open(|o| o.push(b'{')).unwrap();
        assert_eq!(pending.len(), 2, "refused records add nothing");
        log.append_pending(&pending).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], "x\"}\n{");
        assert_eq!(lines[1].as_object().unwrap().len(), 1, "only prev");
        assert_eq!(verify(&p).unwrap(), intact(2));
    }
}

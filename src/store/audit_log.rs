//! The gateway's audit trail: JSON Lines, one record per accept and reject,
//! hash-chained: each record carries `prev`, the SHA-256 of the previous
//! line, so any edit, deletion or reordering breaks the chain at that point.
//! `vigil audit verify FILE` reports the first broken link.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

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
/// were made. Until then every append fails fast (one attempt per
/// [`RETRY_EVERY`]), so callers can refuse what they cannot audit.
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
}

/// Most bytes of records held while the file refuses writes; past it,
/// refusals are counted as lost (and the count is written on recovery).
pub const HOLD_MAX_BYTES: usize = 16 << 20;

/// Like [`HOLD_MAX_BYTES`], for records of something taken.
pub const HOLD_TAKEN_MAX_BYTES: usize = 64 << 20;

/// How often appends try the file again while it refuses writes.
pub const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Debug)]
struct Outage {
    since: chrono::DateTime<chrono::Utc>,
    error: String,
    /// Records dropped past [`HOLD_MAX_BYTES`].
    lost: u64,
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut prev = [0u8; 64];
        prev.copy_from_slice(GENESIS.as_bytes());
        if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            for line in BufReader::new(File::open(path)?).lines() {
                let line = line?;
                if !line.is_empty() {
                    prev = sha256_hex_array(line.as_bytes());
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
        })
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
    /// `Ok` when nothing is held any more. Tries the file at most once per
    /// [`RETRY_EVERY`].
    pub fn retry(&mut self) -> std::io::Result<()> {
        self.append_pending(&Pending::default())
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
                        next_try: std::time::Instant::now() + RETRY_EVERY,
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
        outage.next_try = now + RETRY_EVERY;
        let mut all = std::mem::take(&mut self.held);
        let held = all.len();
        let lost = outage.lost;
        let since = outage.since.to_rfc3339();
        let error = outage.error.clone();
        all.push_open(|o| {
            o.extend_from_slice(b"{\"type\":\"audit_resumed\",\"ts\":");
            json_str(o, &chrono::Utc::now().to_rfc3339());
            o.extend_from_slice(b",\"failing_since\":");
            json_str(o, &since);
            o.extend_from_slice(b",\"error\":");
            json_str(o, &error);
            o.extend_from_slice(
                format!(",\"records_held\":{held},\"records_lost\":{lost}").as_bytes(),
            );
        })?;
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

    /// Chains and writes `pending`, all or nothing.
    fn write_chained(&mut self, pending: &Pending) -> std::io::Result<()> {
        if pending.ends.is_empty() {
            return Ok(());
        }
        let prev_key = b"\"prev\":\"";
        let mut buf =
            Vec::with_capacity(pending.buf.len() + pending.ends.len() * (prev_key.len() + 68));
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
        Ok(())
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

    /// Appends `other`'s records after these.
    fn extend(&mut self, other: &Pending) {
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.ends.extend(other.ends.iter().map(|e| e + base));
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
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
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
    Intact { records: u64 },
    Broken { line: u64, reason: String },
}

/// Re-computes the chain of an audit file.
pub fn verify(path: &Path) -> std::io::Result<Verdict> {
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    for (i, line) in BufReader::new(File::open(path)?).lines().enumerate() {
        let line = line?;
        let no = i as u64 + 1;
        if line.is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Verdict::Broken {
                    line: no,
                    reason: format!("not JSON: {e}"),
                });
            }
        };
        match v.get("prev").and_then(Value::as_str) {
            Some(p) if p == prev => {}
            Some(p) => {
                return Ok(Verdict::Broken {
                    line: no,
                    reason: format!("prev {p} does not match the previous record's hash {prev}"),
                });
            }
            None => {
                return Ok(Verdict::Broken {
                    line: no,
                    reason: "record has no prev hash".into(),
                });
            }
        }
        prev = sha256_hex(line.as_bytes());
        n += 1;
    }
    Ok(Verdict::Intact { records: n })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(verify(&p).unwrap(), Verdict::Intact { records: 3 });
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
        assert_eq!(verify(&p).unwrap(), Verdict::Intact { records: 6 });
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
        assert_eq!(verify(&p).unwrap(), Verdict::Intact { records: 4 });
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
        assert_eq!(verify(&p).unwrap(), Verdict::Intact { records: 2 });
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
        assert_eq!(verify(&p).unwrap(), Verdict::Intact { records: 2 });
    }
}

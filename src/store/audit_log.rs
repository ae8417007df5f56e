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
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    /// Hex SHA-256 of the last record written.
    prev: [u8; 64],
    /// Bytes in the file after the last whole write.
    len: u64,
}

impl AuditLog {
    /// Opens (creating) `path`; the chain continues from its last line.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut prev = [0u8; 64];
        prev.copy_from_slice(GENESIS.as_bytes());
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                if !line.is_empty() {
                    prev = sha256_hex_array(line.as_bytes());
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(AuditLog { file, prev, len })
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
        for record in records {
            pending.push(&record)?;
        }
        self.append_pending(&pending)
    }

    /// Chains records serialised beforehand (outside whatever lock guards
    /// this log) and appends them with one write (a batch of ingest lines
    /// would otherwise cost a system call each). Only the chain hashes are
    /// computed here. All or nothing: if the write fails (a full disk),
    /// what part of it reached the file is cut off again and the chain goes
    /// on from the last record written, so a later append still verifies.
    pub fn append_pending(&mut self, pending: &Pending) -> std::io::Result<()> {
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
}

impl Pending {
    pub fn with_capacity(records: usize) -> Self {
        Pending {
            // Gateway records are ~450 bytes: one allocation for a batch.
            buf: Vec::with_capacity(records.saturating_mul(448)),
            ends: Vec::with_capacity(records),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
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

    #[test]
    fn a_failed_write_leaves_a_chain_that_later_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        log.append(serde_json::json!({"n": 1})).unwrap();
        // A handle that cannot write stands in for a full disk.
        let writable = std::mem::replace(&mut log.file, File::open(&p).unwrap());
        let batch = vec![serde_json::json!({"n": 2}), serde_json::json!({"n": 3})];
        assert!(log.append_all(batch).is_err());
        log.file = writable;
        log.append(serde_json::json!({"n": 4})).unwrap();
        assert_eq!(verify(&p).unwrap(), Verdict::Intact { records: 2 });
    }
}

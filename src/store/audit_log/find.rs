//! `vigil audit event`: where the audit trail names one event, across the
//! log and the rotated files before it. A single `/ingest` record names
//! its event at the top level; a batch's record (`gateway_batch`) names it
//! in `events` (accepted) or `refusals`, so a plain `grep` finds the line
//! but not which of the batch's lines it was or how it ended.

use super::*;

/// One record that names the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The audit file and the record's line in it (from 1).
    pub file: PathBuf,
    pub line: u64,
    /// The record's time, as written.
    pub ts: String,
    /// The request's path (`/ingest`, `/ingest/batch`).
    pub path: String,
    pub client_ip: String,
    /// The producer key that signed it, when the record says.
    pub key_id: Option<String>,
    /// `None`: accepted; otherwise the reason it was refused.
    pub refused: Option<String>,
    /// In a batch: its line and the batch's number of lines (0 when the
    /// record does not say: a batch line's own record, as written before
    /// one record per batch).
    pub batch_line: Option<(u64, u64)>,
    pub host: Option<String>,
    pub source: Option<String>,
    /// Named by a `gateway_accept_recovered` record: stored before a crash
    /// with no accept record, which was written at the next start (the
    /// request's path, client and key are not known then).
    pub recovered: bool,
}

impl std::fmt::Display for Mention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.recovered {
            write!(
                f,
                "{} line {}: {} accepted, recorded at start (stored before vigil stopped, with \
                 no accept record)",
                self.file.display(),
                self.line,
                self.ts
            )?;
        } else {
            self.fmt_request(f)?;
        }
        match (&self.host, &self.source) {
            (Some(h), Some(s)) => write!(f, " (host {h}, source {s})"),
            (Some(h), None) => write!(f, " (host {h})"),
            _ => Ok(()),
        }
    }
}

impl Mention {
    fn fmt_request(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {}: {} {}",
            self.file.display(),
            self.line,
            self.ts,
            self.path
        )?;
        match self.batch_line {
            Some((line, 0)) => write!(f, " (line {line})")?,
            Some((line, lines)) => write!(f, " (line {line} of {lines})")?,
            None => {}
        }
        write!(f, " from {}", self.client_ip)?;
        if let Some(k) = &self.key_id {
            write!(f, ", key {k}")?;
        }
        match &self.refused {
            None => write!(f, ": accepted"),
            Some(r) => write!(f, ": refused, {r}"),
        }
    }
}

/// The log at `path` and the rotated files before it that are still beside
/// it, oldest first (followed back through their `audit_rotated` records).
pub fn chain_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut files = vec![path.to_path_buf()];
    // A plain name beside it; at most one visit each, so a loop cannot
    // trap this.
    while let Some(previous) = verify::first_record_previous(&files[0])? {
        let p = dir.join(&previous);
        if files.contains(&p) || !p.is_file() {
            break;
        }
        files.insert(0, p);
    }
    Ok(files)
}

/// Calls `f` on `path`'s lines from the last to the first (without `\n`
/// or `\r\n`; empty lines passed over) until it returns something, reading
/// the file backwards a chunk at a time: finding the log's last record of a
/// kind reads its tail, not the whole file. A line longer than
/// [`MAX_LINE_BYTES`] is a read error, as for [`raw_lines`].
pub fn rfind_line<T>(
    path: &Path,
    mut f: impl FnMut(&[u8]) -> Option<T>,
) -> std::io::Result<Option<T>> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    let mut end = file.metadata()?.len();
    // The start of the line that runs on past the chunk read last.
    let mut carry: Vec<u8> = Vec::new();
    let mut chunk: u64 = 64 << 10;
    while end > 0 {
        let start = end.saturating_sub(chunk);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        let mut hi = buf.len();
        while let Some(nl) = memchr::memrchr(b'\n', &buf[..hi]) {
            if let Some(found) = call_on_line(&buf[nl + 1..hi], &mut f) {
                return Ok(Some(found));
            }
            hi = nl;
        }
        if hi > MAX_LINE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line longer than {MAX_LINE_BYTES} bytes: not a record vigil writes"),
            ));
        }
        if start == 0 {
            return Ok(call_on_line(&buf[..hi], &mut f));
        }
        buf.truncate(hi);
        carry = buf;
        end = start;
        chunk = (chunk * 2).min(8 << 20);
    }
    Ok(None)
}

fn call_on_line<T>(line: &[u8], f: &mut impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() { None } else { f(line) }
}

/// Every record in `files` (in chain order) that names `event_id`, in
/// order. Lines that are not JSON are passed over (`vigil audit verify`
/// is the tool that reports them).
pub fn find_event(files: &[PathBuf], event_id: &str) -> std::io::Result<Vec<Mention>> {
    // Records hold the id as a JSON string: look for its escaped form
    // before parsing a line.
    let mut needle = Vec::with_capacity(event_id.len() + 2);
    json_str(&mut needle, event_id);
    let finder = memchr::memmem::Finder::new(&needle);
    let mut out = Vec::new();
    for f in files {
        for (i, line) in raw_lines(f)?.enumerate() {
            let line = line?;
            if finder.find(&line).is_none() {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            mentions(&v, event_id, f, i as u64 + 1, &mut out);
        }
    }
    Ok(out)
}

/// The mentions of `event_id` in one record.
fn mentions(v: &Value, event_id: &str, file: &Path, line: u64, out: &mut Vec<Mention>) {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let base = Mention {
        file: file.to_path_buf(),
        line,
        ts: text(v, "ts").unwrap_or_default(),
        path: text(v, "path").unwrap_or_default(),
        client_ip: text(v, "client_ip").unwrap_or_default(),
        key_id: text(v, "key_id"),
        refused: None,
        batch_line: None,
        host: None,
        source: None,
        recovered: false,
    };
    let named = |e: &Value| e.get("event_id").and_then(Value::as_str) == Some(event_id);
    match v.get("type").and_then(Value::as_str) {
        Some("gateway_batch") => {
            let lines = v.get("lines").and_then(Value::as_u64).unwrap_or(0);
            let entries = |k: &str| {
                v.get(k)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|e| named(e))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let mut found: Vec<Mention> = entries("events")
                .into_iter()
                .map(|e| (e, None))
                .chain(
                    entries("refusals")
                        .into_iter()
                        .map(|e| (e.clone(), Some(text(&e, "reason").unwrap_or_default()))),
                )
                .map(|(e, refused)| Mention {
                    refused,
                    batch_line: e.get("line").and_then(Value::as_u64).map(|l| (l, lines)),
                    host: text(&e, "host"),
                    source: text(&e, "source"),
                    ..base.clone()
                })
                .collect();
            found.sort_by_key(|m| m.batch_line);
            out.extend(found);
        }
        Some("gateway_accept_recovered") => {
            let named_events = v.get("events").and_then(Value::as_array);
            out.extend(
                named_events
                    .into_iter()
                    .flatten()
                    .filter(|e| named(e))
                    .map(|e| Mention {
                        host: text(e, "host"),
                        source: text(e, "source"),
                        recovered: true,
                        ..base.clone()
                    }),
            );
        }
        Some("gateway_accept") | Some("gateway_reject") if named(v) => {
            let accepted = v.get("type").and_then(Value::as_str) == Some("gateway_accept");
            out.push(Mention {
                refused: (!accepted).then(|| text(v, "verification_reason").unwrap_or_default()),
                // Records before batches had one record a line.
                batch_line: v.get("line").and_then(Value::as_u64).map(|l| (l, 0)),
                host: text(v, "host"),
                source: text(v, "source"),
                ..base
            });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_from_the_end_across_chunks_as_the_forward_reader_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        // Lines of every length around the first chunk (64 KiB) and the
        // doubled ones, with `\r\n`, blank lines and no final newline.
        let mut text = Vec::new();
        let mut n = 0u64;
        while text.len() < 400_000 {
            let len = (n * 7919) % 70_000;
            text.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, len as usize));
            text.extend_from_slice(if n % 5 == 0 { b"\r\n" } else { b"\n" });
            if n % 9 == 0 {
                text.push(b'\n');
            }
            n += 1;
        }
        text.extend_from_slice(b"last-no-newline");
        std::fs::write(&path, &text).unwrap();
        let forward: Vec<Vec<u8>> = raw_lines(&path)
            .unwrap()
            .map(Result::unwrap)
            .filter(|l| !l.is_empty())
            .collect();
        let mut backward = Vec::new();
        let none: Option<()> = rfind_line(&path, |l| {
            backward.push(l.to_vec());
            None
        })
        .unwrap();
        assert!(none.is_none());
        backward.reverse();
        assert_eq!(backward.len(), forward.len());
        assert!(backward == forward, "lines differ");
        // Stops at the first match from the end.
        let found = rfind_line(&path, |l| (l.first() == Some(&b'c')).then_some(l.len())).unwrap();
        let want = forward.iter().rev().find(|l| l[0] == b'c').map(Vec::len);
        assert_eq!(found, want);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(rfind_line(&path, |l| Some(l.len())).unwrap(), None);
        std::fs::write(&path, b"\n\n").unwrap();
        assert_eq!(rfind_line(&path, |l| Some(l.len())).unwrap(), None);
    }

    #[test]
    fn an_event_is_found_in_single_batch_and_older_per_line_records_escaped_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let id = r#"evt-"quoted"\back"#;
        let records = [
            serde_json::json!({"type": "gateway_accept", "ts": "t1", "path": "/ingest",
                "client_ip": "192.0.2.7", "verification_reason": "ok", "event_id": id,
                "host": "h1", "source": "auth", "key_id": "default"}),
            // Names the id only as part of a longer one: not a mention.
            serde_json::json!({"type": "gateway_accept", "ts": "t2", "path": "/ingest",
                "client_ip": "192.0.2.7", "event_id": format!("{id}-2"), "host": "h1"}),
            serde_json::json!({"type": "gateway_batch", "ts": "t3", "path": "/ingest/batch",
            "client_ip": "192.0.2.8", "key_id": "k2026", "lines": 3,
            "events": [{"line": 1, "event_id": "other-000", "host": "h2", "source": "auth"}],
            "refusals": [
                {"line": 3, "reason": "duplicate_event_id", "event_id": id, "host": "h2", "source": "auth"},
                {"line": 2, "reason": "invalid_json"}
            ]}),
            serde_json::json!({"type": "gateway_reject", "ts": "t4", "path": "/ingest/batch",
                "client_ip": "192.0.2.9", "verification_reason": "rate_limited",
                "event_id": id, "host": "h3", "source": "auth", "line": 7}),
        ];
        let mut text = String::new();
        for r in &records {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        // Not JSON, though it holds the id: passed over.
        text.push_str(&format!(
            "{{broken {}\n",
            serde_json::to_string(id).unwrap()
        ));
        std::fs::write(&path, text).unwrap();
        let found = find_event(&chain_files(&path).unwrap(), id).unwrap();
        let shown: Vec<String> = found
            .iter()
            .map(|m| m.to_string().split_once(": ").unwrap().1.to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "t1 /ingest from 192.0.2.7, key default: accepted (host h1, source auth)",
                "t3 /ingest/batch (line 3 of 3) from 192.0.2.8, key k2026: refused, duplicate_event_id (host h2, source auth)",
                "t4 /ingest/batch (line 7) from 192.0.2.9: refused, rate_limited (host h3, source auth)",
            ]
        );
        assert_eq!(found.iter().map(|m| m.line).collect::<Vec<_>>(), [1, 3, 4]);
        assert!(find_event(&[path], "nobody-0001").unwrap().is_empty());
    }
}

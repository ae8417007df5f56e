//! `vigil audit verify`: re-computing a chain, back through rotated files.

use super::*;

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
    let files = super::chain_files(path)?;
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
pub(super) fn first_record_previous(path: &Path) -> std::io::Result<Option<String>> {
    let Some(first) = raw_lines(path)?.find(|l| l.as_ref().map_or(true, |l| !l.is_empty())) else {
        return Ok(None);
    };
    let Ok(v) = serde_json::from_slice::<Value>(&first?) else {
        return Ok(None);
    };
    Ok(rotated_from(&v))
}

pub(super) fn rotated_from(v: &Value) -> Option<String> {
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

//! Records serialised ahead of the chain, and the JSON string writer they use.

/// Records serialised ahead of the chain, so that the costly part of an
/// append (building the JSON) needs no lock: each is kept as a JSON
/// object without its closing brace, which [`AuditLog::append_pending`](super::AuditLog::append_pending)
/// adds after `prev`.
#[derive(Debug, Default)]
pub struct Pending {
    pub(super) buf: Vec<u8>,
    /// Where each record ends in `buf`.
    pub(super) ends: Vec<usize>,
    /// Whether these records are of something taken, not only refused
    /// (see [`AuditLog`](super::AuditLog)'s bounds).
    pub taken: bool,
}

impl Pending {
    pub fn with_capacity(records: usize) -> Self {
        Pending {
            // Gateway records are ~450 bytes: one allocation for a group.
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

    /// The serialised records as they stand (each without its closing
    /// brace).
    #[cfg(test)]
    pub fn buf_for_test(&self) -> &[u8] {
        &self.buf
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
    pub(super) fn truncate(&mut self, n: usize) {
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

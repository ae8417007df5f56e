//! Offline reading of log files and stdin, line by line, with a hard bound on
//! how much of one line is kept in memory (the rest is skipped and the line
//! marked truncated), and invalid UTF-8 replaced rather than fatal.

use std::io::{self, BufRead};

use crate::parse::MAX_LINE_BYTES;

/// One physical line of input.
#[derive(Debug)]
pub struct RawLine<'a> {
    /// 1-based line number.
    pub number: u64,
    pub text: std::borrow::Cow<'a, str>,
    /// The line was longer than the reader keeps and was cut.
    pub truncated: bool,
}

/// Reads lines from any `BufRead`, never holding more than
/// `MAX_LINE_BYTES + 4` bytes of one line.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    number: u64,
    bytes_read: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(512),
            number: 0,
            bytes_read: 0,
        }
    }

    /// Bytes consumed so far (for progress reporting).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next line, without its line ending, or `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<RawLine<'_>>> {
        self.buf.clear();
        let keep = MAX_LINE_BYTES + 4;
        let mut truncated = false;
        let mut saw_any = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            saw_any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = keep.saturating_sub(self.buf.len());
            let content = if done { take - 1 } else { take };
            if content > room {
                truncated = true;
            }
            self.buf.extend_from_slice(&chunk[..content.min(room)]);
            self.inner.consume(take);
            self.bytes_read += take as u64;
            if done {
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        self.number += 1;
        // Valid UTF-8 is the norm; the strict check is faster than the lossy one.
        let text = match std::str::from_utf8(&self.buf) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&self.buf),
        };
        Ok(Some(RawLine {
            number: self.number,
            text,
            truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(u64, String, bool)> {
        let mut r = LineReader::new(io::BufReader::with_capacity(7, input));
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push((l.number, l.text.into_owned(), l.truncated));
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        assert_eq!(
            lines(b"a\r\nbb\n\nlast"),
            vec![
                (1, "a".into(), false),
                (2, "bb".into(), false),
                (3, "".into(), false),
                (4, "last".into(), false)
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(lines(b"a\xffb\n")[0].1, "a\u{fffd}b");
    }

    #[test]
    fn huge_line_is_bounded() {
        let mut input = vec![b'x'; MAX_LINE_BYTES * 3];
        input.extend_from_slice(b"\nnext\n");
        let out = lines(&input);
        assert_eq!(out.len(), 2);
        assert!(out[0].2 && out[0].1.len() <= MAX_LINE_BYTES + 4);
        assert_eq!(out[1].1, "next");
    }
}

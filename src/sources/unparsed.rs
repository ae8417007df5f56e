//! The latest line a source could not parse, with where it came from and
//! why. An "unparsed" count that climbs says only that something is wrong;
//! the line says what: a device whose format Vigil does not read, a sender
//! speaking another protocol, a log written in another encoding.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use chrono::{DateTime, Utc};

/// Characters of an unparsed line kept (its start; the rest is cut).
pub const SAMPLE_CHARS: usize = 160;

/// One unparsed line, as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unparsed {
    pub at: DateTime<Utc>,
    /// The file, the sender's address, or `journal`.
    pub origin: String,
    /// The line's first [`SAMPLE_CHARS`] characters, control characters
    /// shown inert (`…` when cut).
    pub line: String,
    /// The parser's reason.
    pub why: String,
}

impl Unparsed {
    /// `/var/log/x: "garbage…" (no syslog timestamp …)`.
    pub fn describe(&self) -> String {
        format!("{}: \"{}\" ({})", self.origin, self.line, self.why)
    }
}

/// Where a source keeps its latest unparsed line. Kept at most once a
/// second: a flood of junk takes the lock once a second, not once a line,
/// so the line shown may be up to a second older than the newest.
#[derive(Debug, Default)]
pub struct LastUnparsed {
    /// When a line was last kept (ms since the epoch; 0: never).
    kept_ms: AtomicI64,
    slot: Mutex<Option<Unparsed>>,
}

impl LastUnparsed {
    /// Keeps `line` from `origin` (built only when kept) as the latest
    /// unparsed line, unless one was kept within the last second.
    pub fn note(&self, origin: impl FnOnce() -> String, line: &str, why: &dyn std::fmt::Display) {
        self.note_at(Utc::now(), origin, line, why);
    }

    fn note_at(
        &self,
        at: DateTime<Utc>,
        origin: impl FnOnce() -> String,
        line: &str,
        why: &dyn std::fmt::Display,
    ) {
        let ms = at.timestamp_millis();
        let kept = self.kept_ms.load(Relaxed);
        if kept != 0 && ms.saturating_sub(kept) < 1000 {
            return;
        }
        // One of several threads racing here keeps its line.
        if self
            .kept_ms
            .compare_exchange(kept, ms.max(1), Relaxed, Relaxed)
            .is_err()
        {
            return;
        }
        let sample = Unparsed {
            at,
            origin: inert(&origin(), SAMPLE_CHARS),
            line: inert(line, SAMPLE_CHARS),
            why: inert(&why.to_string(), SAMPLE_CHARS),
        };
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(sample);
        }
    }

    pub fn get(&self) -> Option<Unparsed> {
        self.slot.lock().ok().and_then(|s| s.clone())
    }

    /// `SOURCE, last minute: N units not understood, the latest …` (`units`:
    /// singular, plural) for
    /// `vigil serve`'s minute report, when `grew` of them came in the
    /// minute (a log whose format changed after an upgrade shows only as
    /// this count otherwise); `None` for a minute without.
    pub fn minute_line(&self, source: &str, units: [&str; 2], grew: u64) -> Option<String> {
        (grew > 0).then(|| {
            let latest = self
                .get()
                .map(|u| format!(", the latest {}", u.describe()))
                .unwrap_or_default();
            let unit = if grew == 1 { units[0] } else { units[1] };
            format!("{source}, last minute: {grew} {unit} not understood{latest}")
        })
    }

    /// `; last unparsed: …` for a source's stop summary (empty when every
    /// line parsed).
    pub fn summary_note(&self) -> String {
        self.get()
            .map(|u| format!("; last unparsed: {}", u.describe()))
            .unwrap_or_default()
    }
}

/// The newest of several sources' unparsed lines.
pub fn newest(all: impl IntoIterator<Item = Option<Unparsed>>) -> Option<Unparsed> {
    all.into_iter().flatten().max_by_key(|u| u.at)
}

/// `s` cut to `max` characters (`…` marks the cut), control characters
/// replaced: log text is untrusted and goes to a terminal.
fn inert(s: &str, max: usize) -> String {
    // Cut first: a long line costs no more than its kept start.
    let cut = s.char_indices().nth(max).map(|(i, _)| i);
    let mut out = crate::util::sanitize_for_terminal(&s[..cut.unwrap_or(s.len())]).into_owned();
    if cut.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_795_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_latest_line_is_kept_once_a_second_cut_and_inert() {
        let last = LastUnparsed::default();
        assert_eq!(last.get(), None);
        last.note_at(
            at(0),
            || "192.0.2.7".into(),
            "<13>first\x1b[31m",
            &"no header",
        );
        // Within the second: not kept (nor is its origin built).
        last.note_at(at(999), || unreachable!(), "second", &"x");
        let first = last.get().unwrap();
        assert_eq!(first.line, "<13>first\u{fffd}[31m");
        assert_eq!(
            first.describe(),
            "192.0.2.7: \"<13>first\u{fffd}[31m\" (no header)"
        );
        let long = "é".repeat(SAMPLE_CHARS + 5);
        last.note_at(at(1000), || "/var/log/x".into(), &long, &"why");
        let kept = last.get().unwrap();
        assert_eq!(kept.at, at(1000));
        assert_eq!(kept.line.chars().count(), SAMPLE_CHARS + 1);
        assert!(kept.line.ends_with("é…"));
        // The newest of several sources'.
        let older = Unparsed {
            at: at(5),
            ..kept.clone()
        };
        assert_eq!(newest([Some(older), None, Some(kept.clone())]), Some(kept));
        assert_eq!(newest([None, None]), None);
    }
}

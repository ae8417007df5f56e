//! Small helpers shared across layers.

/// FNV-1a, 64-bit: a stable, fast hash for identifiers that must be the
/// same on every run and every Rust version (event ids, alert ids).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(0xcbf2_9ce4_8422_2325, bytes)
}

/// Continues an FNV-1a hash over more bytes.
pub fn fnv1a_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A stable 64-bit digest of `bytes`, 8 bytes per step: used for event ids,
/// which must be identical on every run, machine and Rust version (so not
/// `DefaultHasher`), and are computed for every line (so not byte-wise FNV).
/// Not a cryptographic hash.
pub fn stable_hash64(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    fmix64(h)
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// First position of byte `b` in `s` (SIMD-accelerated; `str::find` with a
/// `char` pattern is several times slower on the parsers' hot path).
#[inline]
pub fn find_byte(s: &str, b: u8) -> Option<usize> {
    memchr::memchr(b, s.as_bytes())
}

/// Last position of byte `b` in `s`.
#[inline]
pub fn rfind_byte(s: &str, b: u8) -> Option<usize> {
    memchr::memrchr(b, s.as_bytes())
}

/// First position of `needle` in `s`: memchr for the first byte, then a
/// compare. For the short needles and lines of log parsing this beats both
/// `str::find` (two-way searcher set-up) and `memmem` (prefilter set-up).
#[inline]
pub fn find_str(s: &str, needle: &str) -> Option<usize> {
    let (h, n) = (s.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return Some(0);
    };
    let mut from = 0;
    while let Some(off) = memchr::memchr(first, &h[from..]) {
        let at = from + off;
        if h[at..].starts_with(n) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `s.split_once(needle)` via `memmem` (the std searcher's set-up cost
/// dominates on short log lines).
#[inline]
pub fn split_once_str<'a>(s: &'a str, needle: &str) -> Option<(&'a str, &'a str)> {
    find_str(s, needle).map(|i| (&s[..i], &s[i + needle.len()..]))
}

/// Last position of `needle` in `s`.
#[inline]
pub fn rfind_str(s: &str, needle: &str) -> Option<usize> {
    let (h, n) = (s.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return Some(h.len());
    };
    let mut end = h.len();
    while let Some(at) = memchr::memrchr(first, &h[..end]) {
        if h[at..].starts_with(n) {
            return Some(at);
        }
        end = at;
    }
    None
}

/// A fast hasher for detection state, seeded per process.
///
/// Detection maps are keyed by 64-bit FNV digests of entity names and by IP
/// addresses; SipHash over them was a measurable share of the hot path.
/// This is a multiply-rotate mix with a random per-process seed and a final
/// avalanche, so bucket positions cannot be predicted from outside without
/// the seed (the property that matters against collision flooding).
#[derive(Clone, Debug)]
pub struct KeyHasherBuilder {
    seed: u64,
}

impl Default for KeyHasherBuilder {
    fn default() -> Self {
        use std::hash::BuildHasher;
        KeyHasherBuilder {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1,
        }
    }
}

impl std::hash::BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { h: self.seed }
    }
}

#[derive(Clone, Debug)]
pub struct KeyHasher {
    h: u64,
}

impl KeyHasher {
    #[inline]
    fn mix(&mut self, v: u64) {
        self.h = (self.h ^ v)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.mix(v as u64);
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.mix(v as u64);
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.mix(v as u64);
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.h)
    }
}

/// A `HashMap` with [`KeyHasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, KeyHasherBuilder>;

/// Error lines for a failure that may repeat thousands of times a second
/// (a full disk under load): at most one a second, with how many were held
/// back since the last.
#[derive(Debug, Default)]
pub struct Complaints {
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl Complaints {
    /// Logs `what` unless a line went out less than a second ago; returns
    /// whether it did.
    pub fn say(&mut self, what: &str) -> bool {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            self.held_back += 1;
            return false;
        }
        if self.held_back > 0 {
            tracing::error!("{what} ({} more since the last such line)", self.held_back);
        } else {
            tracing::error!("{what}");
        }
        self.last = Some(now);
        self.held_back = 0;
        true
    }
}

/// Replaces control characters (including ESC, so no terminal escape
/// sequence survives) with U+FFFD. Log text is untrusted.
pub fn sanitize_for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect(),
    )
}

/// Like [`sanitize_for_terminal`], but a line break stays one: each line
/// after the first starts with `indent`, so no part of `s` can pass for a
/// line of its own (say, another `vigil: error:`).
pub fn sanitize_lines_for_terminal(s: &str, indent: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.trim_end_matches(['\r', '\n']).split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(indent);
        }
        out.push_str(&sanitize_for_terminal(
            line.strip_suffix('\r').unwrap_or(line),
        ));
    }
    out
}

/// An error and its causes as one message, `error: cause: cause`, leaving
/// out a cause the message already says (an error whose own text names its
/// source would otherwise say it twice).
pub fn join_causes(chain: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for cause in chain {
        if out.is_empty() {
            out = cause;
        } else if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_joined_once_each() {
        let join = |parts: &[&str]| join_causes(parts.iter().map(|p| p.to_string()));
        assert_eq!(join(&[]), "");
        assert_eq!(join(&["starting"]), "starting");
        assert_eq!(
            join(&["opening store x", "disk full"]),
            "opening store x: disk full"
        );
        assert_eq!(
            join(&["cannot read config c: No such file", "No such file"]),
            "cannot read config c: No such file"
        );
    }

    #[test]
    fn several_lines_stay_lines_indented_and_inert() {
        assert_eq!(sanitize_lines_for_terminal("one line", "  "), "one line");
        assert_eq!(
            sanitize_lines_for_terminal("a\r\n  | b\x1b[2J\n\tc\n", "  "),
            "a\n    | b\u{fffd}[2J\n  \u{fffd}c"
        );
        // A forged line cannot start at the margin.
        let out = sanitize_lines_for_terminal("x\nvigil: error: forged", "    ");
        assert!(out.lines().skip(1).all(|l| l.starts_with("    ")), "{out}");
    }

    #[test]
    fn complaints_go_out_at_most_once_a_second() {
        let mut c = Complaints::default();
        assert!(c.say("disk full"));
        assert!(!c.say("disk full"));
        assert!(!c.say("disk full"));
        assert_eq!(c.held_back, 2);
        c.last = c.last.map(|t| t - std::time::Duration::from_millis(1001));
        assert!(c.say("disk full"));
        assert_eq!(c.held_back, 0);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn stable_hash_is_stable_and_spreads() {
        assert_eq!(stable_hash64(0, b"abc"), stable_hash64(0, b"abc"));
        assert_ne!(stable_hash64(0, b"abc"), stable_hash64(0, b"abd"));
        assert_ne!(stable_hash64(0, b"abc"), stable_hash64(1, b"abc"));
        assert_ne!(stable_hash64(0, b""), stable_hash64(0, b"\0"));
        // Pinned: event ids must not change between releases.
        assert_eq!(stable_hash64(0, b"vigil"), 13_463_550_216_177_481_666);
    }

    #[test]
    fn key_hasher_distinguishes_nearby_keys() {
        use std::hash::BuildHasher;
        let b = KeyHasherBuilder::default();
        let hashes: std::collections::HashSet<u64> =
            (0u64..10_000).map(|k| b.hash_one(k)).collect();
        assert_eq!(hashes.len(), 10_000);
        assert_ne!(b.hash_one("ab"), b.hash_one("ab\0"));
    }

    #[test]
    fn escape_sequences_are_made_inert() {
        assert_eq!(
            sanitize_for_terminal("a\x1b[2Jb\r\n"),
            "a\u{fffd}[2Jb\u{fffd}\u{fffd}"
        );
        assert!(matches!(
            sanitize_for_terminal("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn substring_search_matches_std() {
        for (h, n) in [
            ("a from b from c", "from "),
            ("xx", "x"),
            ("", "a"),
            ("abc", ""),
            ("aaab", "aab"),
            ("é from", "from"),
        ] {
            assert_eq!(find_str(h, n), h.find(n), "{h:?} {n:?}");
            assert_eq!(rfind_str(h, n), h.rfind(n), "{h:?} {n:?}");
            assert_eq!(split_once_str(h, n), h.split_once(n));
        }
    }

    #[test]
    fn truncation_respects_utf8() {
        assert_eq!(truncate_at_char_boundary("aé", 2), "a");
        assert_eq!(truncate_at_char_boundary("abc", 10), "abc");
    }
}

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
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
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
    fn truncation_respects_utf8() {
        assert_eq!(truncate_at_char_boundary("aé", 2), "a");
        assert_eq!(truncate_at_char_boundary("abc", 10), "abc");
    }
}

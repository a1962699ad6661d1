//! Caller input quoted back in error messages. Only a short prefix is quoted,
//! so a hostile value cannot blow up a status: standard clients refuse large
//! trailers and would report RESOURCE_EXHAUSTED instead of the real error.

/// Characters of a caller's value quoted back in a message.
pub const QUOTE_MAX_CHARS: usize = 64;

/// A caller's value for an error message: control characters escaped, at most
/// [`QUOTE_MAX_CHARS`] characters, `…` marking a cut.
pub fn quote(value: &str) -> String {
    shorten(value, QUOTE_MAX_CHARS)
}

/// `text` with control characters escaped, cut after `max_chars` characters
/// with `…` marking the cut.
pub fn shorten(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4 + 3));
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_control_characters_escaped() {
        assert_eq!(quote("org:admin"), "org:admin");
        let long = "x".repeat(1 << 20);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), QUOTE_MAX_CHARS + 1);
        assert!(quoted.ends_with('…'));
        assert_eq!(quote("a\nb\u{1b}"), "a\\nb\\u{1b}");
        assert_eq!(shorten("ünïcödé", 3), "ünï…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}

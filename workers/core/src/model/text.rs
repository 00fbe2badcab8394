//! Text helpers for messages built from input: shortening never splits a character.

/// `text` cut to at most `max_bytes` bytes, at a character boundary (a plain
/// `String::truncate` panics inside a multibyte character).
pub fn truncate(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abc".into(), 5), "abc");
        assert_eq!(truncate("abcdef".into(), 3), "abc");
        // "é" is two bytes: a cut at byte 2 of "aé" would split it.
        assert_eq!(truncate("aéb".into(), 2), "a");
        assert_eq!(truncate("🔥🔥".into(), 5), "🔥");
        assert_eq!(truncate("é".repeat(1500), 2001).len(), 2000);
    }
}

//! Identifiers: a type prefix and 96 random bits in base64url (`usr_9x3Kq...`), unguessable
//! and safe in URLs and R2 keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Random bytes in an identifier (96 bits).
pub const ID_RANDOM_BYTES: usize = 12;

/// The identifier `"{prefix}_{16 base64url chars}"` made of `random` (fresh randomness: see
/// `new_id` on [`crate::ports::Entropy`]).
pub fn format_id(prefix: &str, random: &[u8; ID_RANDOM_BYTES]) -> String {
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(random))
}

/// Encodes bytes as base64url without padding (tokens).
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `raw` looks like an identifier with `prefix` (so it can be used in keys safely).
pub fn is_id(raw: &str, prefix: &str) -> bool {
    raw.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| {
            (8..=64).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_and_validate() {
        let a = format_id("usr", &[1; ID_RANDOM_BYTES]);
        let b = format_id("usr", &[2; ID_RANDOM_BYTES]);
        assert_ne!(a, b);
        assert!(a.starts_with("usr_") && a.len() == 20);
        assert!(is_id(&a, "usr"));
        assert!(!is_id(&a, "ch"));
        assert!(!is_id("usr_../../etc", "usr"));
        assert!(!is_id("usr_", "usr"));
    }
}

//! Password hashing: PBKDF2-HMAC-SHA256 with a random per-user salt and a configurable
//! iteration count, stored as `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64url), and
//! verified in constant time with the iteration count the hash was made with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Bytes of salt per password.
pub const SALT_LEN: usize = 16;
/// Bytes of derived key stored.
pub const HASH_LEN: usize = 32;
/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted, in characters (at most 1 KiB of UTF-8: bounds the hashing
/// work an attacker can ask for).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Whether `password` is longer than [`MAX_PASSWORD_LEN`] characters (as the API schema's
/// `maxLength` counts).
pub fn too_long(password: &str) -> bool {
    password.len() > MAX_PASSWORD_LEN && password.chars().count() > MAX_PASSWORD_LEN
}
const SCHEME: &str = "pbkdf2-sha256";

/// Hashes `password` with `salt` and `iterations` into the stored form.
pub fn hash(password: &str, salt: &[u8; SALT_LEN], iterations: u32) -> String {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    format!(
        "{SCHEME}${iterations}${}${}",
        URL_SAFE_NO_PAD.encode(salt),
        URL_SAFE_NO_PAD.encode(out)
    )
}

/// Whether `password` matches the stored hash. A malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iterations), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (
        iterations.parse::<u32>(),
        URL_SAFE_NO_PAD.decode(salt),
        URL_SAFE_NO_PAD.decode(expected),
    ) else {
        return false;
    };
    if iterations == 0 || expected.len() != HASH_LEN {
        return false;
    }
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut out);
    out.ct_eq(expected.as_slice()).into()
}

/// Checks the password policy.
///
/// # Errors
/// A message for the user when the password is too short or too long.
pub fn check_policy(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(format!(
            "passwords have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if too_long(password) {
        return Err(format!(
            "passwords have at most {MAX_PASSWORD_LEN} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_7914_pbkdf2_sha256_vector() {
        // RFC 7914 section 11: P="passwd", S="salt", c=1, dkLen=64 (first 32 bytes here).
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"passwd", b"salt", 1, &mut out);
        assert_eq!(out[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }

    #[test]
    fn verifies_the_right_password_only() {
        let salt = [7u8; SALT_LEN];
        let stored = hash("correct horse battery", &salt, 1000);
        assert!(stored.starts_with("pbkdf2-sha256$1000$"));
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("", &stored));
    }

    #[test]
    fn salt_changes_the_hash() {
        assert_ne!(
            hash("pw-0123456789", &[1; SALT_LEN], 10),
            hash("pw-0123456789", &[2; SALT_LEN], 10)
        );
    }

    #[test]
    fn malformed_hashes_never_match() {
        for stored in [
            "",
            "pbkdf2-sha256$1000$c2FsdA",
            "pbkdf2-sha512$1000$c2FsdA$aGFzaA",
            "pbkdf2-sha256$0$c2FsdA$aGFzaA",
            "pbkdf2-sha256$x$c2FsdA$aGFzaA",
            "pbkdf2-sha256$10$!!$aGFzaA",
            "pbkdf2-sha256$10$c2FsdA$aGFzaA$extra",
        ] {
            assert!(!verify("anything", stored), "{stored}");
        }
    }

    #[test]
    fn policy_bounds_length() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough pw").is_ok());
        assert!(check_policy(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        // Characters, not bytes: 256 three-byte characters pass, 257 do not.
        assert!(check_policy(&"€".repeat(MAX_PASSWORD_LEN)).is_ok());
        assert!(check_policy(&"€".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }
}

//! Secrets sealed at rest: a plugin's signing secret is stored encrypted (ChaCha20-Poly1305,
//! a fresh 96-bit nonce each time, the plugin id as associated data so a sealed value copied
//! to another plugin's row does not open), under a key derived from `SESSION_SECRET`. A
//! database dump alone then signs nothing. Values stored before sealing (`whsec_...`) are
//! read as they are.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::model::keyed;

/// The prefix of a sealed value.
const SEALED_PREFIX: &str = "sealed1.";
/// The prefix of a secret stored before sealing.
const PLAIN_PREFIX: &str = "whsec_";

/// Why a stored secret cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    /// Not a sealed value nor a plain secret.
    #[error("the stored secret is neither sealed nor plain")]
    Malformed,
    /// It does not open with this deployment's key (another key, or tampered with).
    #[error("the stored secret does not open with this deployment's key")]
    WrongKey,
}

/// The sealing key of a deployment, derived from its session secret.
pub fn key(session_secret: &str) -> [u8; 32] {
    keyed::tag(
        session_secret.as_bytes(),
        b"edgevideo sealed secrets v1",
        b"",
    )
}

/// Seals `secret` for the row `context` (e.g. the plugin id) with a fresh `nonce`.
pub fn seal(key: &[u8; 32], nonce: [u8; 12], context: &str, secret: &str) -> String {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let payload = Payload {
        msg: secret.as_bytes(),
        aad: context.as_bytes(),
    };
    // Encryption fails only for messages of gigabytes.
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), payload)
        .unwrap_or_default();
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Opens a stored secret of the row `context`: a sealed value, or a plain one stored before
/// sealing.
///
/// # Errors
/// [`SealedError`] when it is malformed or does not open.
pub fn open(key: &[u8; 32], context: &str, stored: &str) -> Result<String, SealedError> {
    if stored.starts_with(PLAIN_PREFIX) {
        return Ok(stored.to_owned());
    }
    let encoded = stored
        .strip_prefix(SEALED_PREFIX)
        .ok_or(SealedError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| SealedError::Malformed)?;
    if bytes.len() < 12 + 16 {
        return Err(SealedError::Malformed);
    }
    let (nonce, sealed) = bytes.split_at(12);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let payload = Payload {
        msg: sealed,
        aad: context.as_bytes(),
    };
    let plain = cipher
        .decrypt(Nonce::from_slice(nonce), payload)
        .map_err(|_| SealedError::WrongKey)?;
    String::from_utf8(plain).map_err(|_| SealedError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_row() {
        let k = key("session secret one");
        let sealed = seal(&k, [7; 12], "plg_1", SECRET);
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("MfKQ9r8"));
        assert_eq!(open(&k, "plg_1", &sealed).as_deref(), Ok(SECRET));
        assert_ne!(sealed, seal(&k, [8; 12], "plg_1", SECRET), "fresh nonces");
        assert_eq!(
            open(&key("session secret two"), "plg_1", &sealed),
            Err(SealedError::WrongKey)
        );
        assert_eq!(open(&k, "plg_2", &sealed), Err(SealedError::WrongKey));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&k, "plg_1", &String::from_utf8(tampered).unwrap()),
            Err(SealedError::WrongKey)
        );
    }

    #[test]
    fn plain_legacy_values_read_and_garbage_is_refused() {
        let k = key("s");
        assert_eq!(open(&k, "plg_1", SECRET).as_deref(), Ok(SECRET));
        for bad in ["", "sealed1.", "sealed1.!!", "sealed1.AAAA", "other"] {
            assert_eq!(open(&k, "plg_1", bad), Err(SealedError::Malformed), "{bad}");
        }
    }
}

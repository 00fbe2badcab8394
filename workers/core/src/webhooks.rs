//! Standard Webhooks: signing what we send (plugin deliveries) and verifying what we receive
//! (transcoder callbacks). Headers `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, several
//! signatures space-separated during a secret rotation; secrets are `whsec_<base64 key>`.
//!
//! Why not the `standardwebhooks` crate: its `verify` reads the system clock, which panics
//! on `wasm32-unknown-unknown`, and it brings a second base64 and HMAC implementation into
//! the Worker. This module takes the time as a parameter and uses the crates we already
//! have; its output is checked against the specification's test vector here and against the
//! official Python library in the end-to-end tests.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-id` header.
pub const HEADER_ID: &str = "webhook-id";
/// The `webhook-timestamp` header.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The `webhook-signature` header.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// How far a timestamp may be from now, either way, in seconds.
pub const TOLERANCE_S: u64 = 5 * 60;
const SECRET_PREFIX: &str = "whsec_";

/// Why a secret or a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Not a `whsec_` secret with a base64 key.
    #[error("invalid webhook secret")]
    InvalidSecret,
    /// A required header is missing or not text.
    #[error("missing or invalid header {0}")]
    MissingHeader(&'static str),
    /// The timestamp is more than five minutes away from now.
    #[error("timestamp outside the tolerance")]
    Timestamp,
    /// No signature matches.
    #[error("no matching signature")]
    Signature,
}

/// The key of a `whsec_...` secret.
///
/// # Errors
/// [`WebhookError::InvalidSecret`] when it is not one.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, WebhookError> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(WebhookError::InvalidSecret)?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| WebhookError::InvalidSecret)?;
    if key.is_empty() {
        return Err(WebhookError::InvalidSecret);
    }
    Ok(key)
}

/// The secret `whsec_<base64 of key>`; `key` must be 32 fresh random bytes.
pub fn new_secret(key: &[u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The `v1,<base64>` signature of one message with one key.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The three headers for a message signed with every key in `keys` (space-separated
/// signatures, for rotations).
pub fn headers(
    keys: &[Vec<u8>],
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let signatures = keys
        .iter()
        .map(|k| sign(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    [
        (HEADER_ID, id.to_owned()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, signatures),
    ]
}

/// Verifies a received message against `key` at `now_s`; returns its `webhook-id`.
///
/// # Errors
/// A [`WebhookError`] saying why it is refused.
pub fn verify(
    headers: &http::HeaderMap,
    body: &[u8],
    key: &[u8],
    now_s: u64,
) -> Result<String, WebhookError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookError::MissingHeader(name))
    };
    let id = header(HEADER_ID)?;
    let timestamp: u64 = header(HEADER_TIMESTAMP)?
        .parse()
        .map_err(|_| WebhookError::MissingHeader(HEADER_TIMESTAMP))?;
    if timestamp.abs_diff(now_s) > TOLERANCE_S {
        return Err(WebhookError::Timestamp);
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let matches = header(HEADER_SIGNATURE)?
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
    if matches {
        Ok(id.to_owned())
    } else {
        Err(WebhookError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector of the Standard Webhooks specification's libraries.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: u64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn header_map(pairs: &[(&'static str, String)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn signs_the_specification_test_vector() {
        let key = secret_key(SECRET).unwrap();
        assert_eq!(sign(&key, ID, TS, BODY), EXPECTED);
    }

    #[test]
    fn verifies_within_tolerance_and_with_any_rotated_signature() {
        let key = secret_key(SECRET).unwrap();
        let other = vec![9u8; 24];
        let map = header_map(&headers(&[other.clone(), key.clone()], ID, TS, BODY));
        assert_eq!(verify(&map, BODY, &key, TS + 10).as_deref(), Ok(ID));
        assert_eq!(verify(&map, BODY, &other, TS).as_deref(), Ok(ID));
        assert_eq!(
            verify(&map, BODY, &key, TS + 301),
            Err(WebhookError::Timestamp)
        );
        assert_eq!(
            verify(&map, BODY, &key, TS - 301),
            Err(WebhookError::Timestamp)
        );
        assert_eq!(verify(&map, b"{}", &key, TS), Err(WebhookError::Signature));
        assert_eq!(
            verify(&map, BODY, b"wrong", TS),
            Err(WebhookError::Signature)
        );
        let missing = header_map(&[(HEADER_ID, ID.into())]);
        assert!(matches!(
            verify(&missing, BODY, &key, TS),
            Err(WebhookError::MissingHeader(_))
        ));
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let secret = new_secret(&[7; 32]);
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret_key(&secret).unwrap().len(), 32);
        for bad in [
            "",
            "whsec_",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_!!!",
        ] {
            assert!(secret_key(bad).is_err(), "{bad}");
        }
    }
}

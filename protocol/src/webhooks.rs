//! Standard Webhooks (<https://www.standardwebhooks.com>): signing what is sent and verifying
//! what is received, on both sides of every signed request (the worker's plugin deliveries
//! and transcode jobs, the transcoder's callbacks).
//!
//! A message carries three headers: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, several
//! space-separated during a secret rotation (one matching signature is enough). Secrets are
//! `whsec_<base64 key>`. A timestamp more than [`TOLERANCE_S`] away from the receiver's clock is
//! refused, and signatures are compared in constant time.
//!
//! The time is always a parameter: nothing here reads a clock, so it runs on
//! `wasm32-unknown-unknown` as it does natively.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The `webhook-id` header: the message's id, the same on every delivery attempt.
pub const HEADER_ID: &str = "webhook-id";
/// The `webhook-timestamp` header: when the message was signed, in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The `webhook-signature` header: one or more space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// How far a timestamp may be from the receiver's clock, either way, in seconds.
pub const TOLERANCE_S: u64 = 5 * 60;
/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// The signature scheme this module writes and the only one it accepts.
const VERSION_PREFIX: &str = "v1,";

/// Why a secret or a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Not `whsec_` followed by a non-empty base64 key.
    #[error("webhook secret must be whsec_ followed by base64")]
    InvalidSecret,
    /// A required header is missing or not text.
    #[error("missing or invalid {0} header")]
    MissingHeader(&'static str),
    /// The `webhook-timestamp` header is not a number of seconds.
    #[error("invalid webhook-timestamp")]
    InvalidTimestamp,
    /// The timestamp is more than [`TOLERANCE_S`] away from now.
    #[error("webhook-timestamp is more than 5 minutes away from now")]
    StaleTimestamp,
    /// No signature matches.
    #[error("no matching signature")]
    BadSignature,
}

/// The key of a `whsec_<base64>` secret (the prefix is required).
///
/// # Errors
/// [`WebhookError::InvalidSecret`] when it is not one, or the key is empty.
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

/// The secret `whsec_<base64 key>` of a key (e.g. 32 random bytes for a new secret).
pub fn encode_secret(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// A signing and verifying key: HMAC-SHA256 keyed once, cloned for every message.
#[derive(Clone)]
pub struct WebhookKey {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

impl WebhookKey {
    /// The key for raw key bytes.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when `key` is empty.
    pub fn new(key: &[u8]) -> Result<Self, WebhookError> {
        if key.is_empty() {
            return Err(WebhookError::InvalidSecret);
        }
        let keyed = Hmac::<Sha256>::new_from_slice(key).map_err(|_| WebhookError::InvalidSecret)?;
        Ok(Self { keyed })
    }

    /// The key of a `whsec_<base64>` secret (see [`secret_key`]).
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when it is not one.
    pub fn from_secret(secret: &str) -> Result<Self, WebhookError> {
        Self::new(&secret_key(secret)?)
    }

    /// The MAC of `{id}.{timestamp}.{body}`, `timestamp` as it is written in the header.
    fn digest(&self, id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let digest = self.digest(id, &timestamp.to_string(), body);
        format!("{VERSION_PREFIX}{}", STANDARD.encode(digest))
    }

    /// Verifies a received message at `now_s` (Unix seconds) and returns its `webhook-id`.
    /// `header` looks a header up by its (lower-case) name and gives its value if it is text.
    ///
    /// # Errors
    /// A [`WebhookError`] saying why the message is refused.
    pub fn verify<'h>(
        &self,
        header: impl Fn(&'static str) -> Option<&'h str>,
        body: &[u8],
        now_s: u64,
    ) -> Result<&'h str, WebhookError> {
        let get = |name| header(name).ok_or(WebhookError::MissingHeader(name));
        let id = get(HEADER_ID)?;
        let timestamp = get(HEADER_TIMESTAMP)?.trim();
        let signatures = get(HEADER_SIGNATURE)?;
        let seconds: u64 = timestamp
            .parse()
            .map_err(|_| WebhookError::InvalidTimestamp)?;
        if seconds.abs_diff(now_s) > TOLERANCE_S {
            return Err(WebhookError::StaleTimestamp);
        }
        let expected = self.digest(id, timestamp, body);
        let matches = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix(VERSION_PREFIX))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|candidate| bool::from(candidate.as_slice().ct_eq(&expected)));
        if matches {
            Ok(id)
        } else {
            Err(WebhookError::BadSignature)
        }
    }
}

/// The three headers of a message signed with every key in `keys` (space-separated
/// signatures, for a rotation: receivers holding either secret accept it).
pub fn headers(
    keys: &[WebhookKey],
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let signatures = keys
        .iter()
        .map(|k| k.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    [
        (HEADER_ID, id.to_owned()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, signatures),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector of the Standard Webhooks specification's reference libraries.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: u64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn key() -> WebhookKey {
        WebhookKey::from_secret(SECRET).unwrap()
    }

    /// A header lookup over name/value pairs.
    fn lookup<'a>(pairs: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    #[test]
    fn signs_and_verifies_the_specification_test_vector() {
        assert_eq!(key().sign(ID, TS, BODY), EXPECTED);
        let pairs = [
            (HEADER_ID, ID.to_owned()),
            (HEADER_TIMESTAMP, TS.to_string()),
            (HEADER_SIGNATURE, EXPECTED.to_owned()),
        ];
        assert_eq!(key().verify(lookup(&pairs), BODY, TS + 10), Ok(ID));
    }

    #[test]
    fn round_trips_with_any_rotated_key() {
        let other = WebhookKey::new(&[9u8; 24]).unwrap();
        let pairs = headers(&[other.clone(), key()], ID, TS, BODY);
        assert_eq!(pairs[0], (HEADER_ID, ID.to_owned()));
        assert_eq!(pairs[1], (HEADER_TIMESTAMP, TS.to_string()));
        assert_eq!(pairs[2].1.split(' ').count(), 2);
        assert_eq!(key().verify(lookup(&pairs), BODY, TS), Ok(ID));
        assert_eq!(other.verify(lookup(&pairs), BODY, TS), Ok(ID));
        let third = WebhookKey::new(b"wrong").unwrap();
        assert_eq!(
            third.verify(lookup(&pairs), BODY, TS),
            Err(WebhookError::BadSignature)
        );
        // Unknown schemes and garbage among the signatures are skipped.
        let several = format!("v1,AAAA {EXPECTED} v2,zzz v1,!!");
        let pairs = [
            (HEADER_ID, ID.to_owned()),
            (HEADER_TIMESTAMP, TS.to_string()),
            (HEADER_SIGNATURE, several),
        ];
        assert_eq!(key().verify(lookup(&pairs), BODY, TS), Ok(ID));
    }

    #[test]
    fn refuses_tampering_staleness_and_missing_headers() {
        let pairs = headers(&[key()], ID, TS, BODY);
        let verify = |pairs: &[(&'static str, String)], body: &[u8], now| {
            key().verify(lookup(pairs), body, now).map(str::to_owned)
        };
        assert_eq!(verify(&pairs, BODY, TS + 300), Ok(ID.to_owned()));
        assert_eq!(verify(&pairs, BODY, TS - 300), Ok(ID.to_owned()));
        assert_eq!(
            verify(&pairs, BODY, TS + 301),
            Err(WebhookError::StaleTimestamp)
        );
        assert_eq!(
            verify(&pairs, BODY, TS - 301),
            Err(WebhookError::StaleTimestamp)
        );
        assert_eq!(verify(&pairs, b"{}", TS), Err(WebhookError::BadSignature));
        let mut other_id = pairs.clone();
        other_id[0].1 = "msg_other".into();
        assert_eq!(verify(&other_id, BODY, TS), Err(WebhookError::BadSignature));
        // The timestamp is signed: moving it invalidates the signature.
        let mut moved = pairs.clone();
        moved[1].1 = (TS + 1).to_string();
        assert_eq!(verify(&moved, BODY, TS), Err(WebhookError::BadSignature));
        let mut not_a_number = pairs.clone();
        not_a_number[1].1 = "soon".into();
        assert_eq!(
            verify(&not_a_number, BODY, TS),
            Err(WebhookError::InvalidTimestamp)
        );
        for missing in 0..3 {
            let mut partial = pairs.to_vec();
            let (name, _) = partial.remove(missing);
            assert_eq!(
                verify(&partial, BODY, TS),
                Err(WebhookError::MissingHeader(name))
            );
        }
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let secret = encode_secret(&[7u8; 32]);
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret_key(&secret).unwrap(), vec![7u8; 32]);
        assert_eq!(encode_secret(&secret_key(SECRET).unwrap()), SECRET);
        for bad in [
            "",
            "whsec_",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_!!!",
        ] {
            assert_eq!(secret_key(bad), Err(WebhookError::InvalidSecret), "{bad}");
            assert!(WebhookKey::from_secret(bad).is_err(), "{bad}");
        }
        assert!(WebhookKey::new(&[]).is_err());
    }
}

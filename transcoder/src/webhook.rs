//! Standard Webhooks signatures, used both ways: jobs from the worker are verified, callbacks
//! to the worker are signed.
//!
//! Headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, several space-separated during
//! a key rotation). The key is the base64-decoded part of a `whsec_...` secret. Timestamps
//! more than [`TOLERANCE_SECONDS`] away from now are refused; comparison is constant-time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Accepted clock difference, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Why a signature was refused or a secret is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The secret is not `whsec_` followed by base64.
    #[error("webhook secret must be whsec_ followed by base64")]
    InvalidSecret,
    /// A required header is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// The timestamp is not a number.
    #[error("invalid webhook-timestamp")]
    InvalidTimestamp,
    /// The timestamp is outside the tolerance.
    #[error("webhook-timestamp is more than 5 minutes away from now")]
    StaleTimestamp,
    /// No signature matches.
    #[error("no matching signature")]
    BadSignature,
}

/// A signing key from a `whsec_` secret.
#[derive(Clone)]
pub struct WebhookKey {
    /// HMAC state keyed once; cloned for every message.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

impl WebhookKey {
    /// Decodes `whsec_<base64>` (the prefix is optional, as in the reference libraries).
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when the rest is not base64 or is empty.
    pub fn from_secret(secret: &str) -> Result<Self, WebhookError> {
        let encoded = secret
            .trim()
            .strip_prefix("whsec_")
            .unwrap_or(secret.trim());
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| WebhookError::InvalidSecret)?;
        if key.is_empty() {
            return Err(WebhookError::InvalidSecret);
        }
        let keyed =
            Hmac::<Sha256>::new_from_slice(&key).map_err(|_| WebhookError::InvalidSecret)?;
        Ok(Self { keyed })
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let digest = self
            .mac(id, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
        format!("v1,{}", STANDARD.encode(digest))
    }

    /// Verifies a message's headers against `now` (Unix seconds).
    ///
    /// # Errors
    /// [`WebhookError`] saying what is wrong.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookError> {
        let id = id.ok_or(WebhookError::MissingHeader("webhook-id"))?;
        let timestamp = timestamp.ok_or(WebhookError::MissingHeader("webhook-timestamp"))?;
        let signatures = signatures.ok_or(WebhookError::MissingHeader("webhook-signature"))?;
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| WebhookError::InvalidTimestamp)?;
        if (now - seconds).abs() > TOLERANCE_SECONDS {
            return Err(WebhookError::StaleTimestamp);
        }
        for candidate in signatures.split(' ') {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                continue;
            };
            let Ok(expected) = STANDARD.decode(encoded) else {
                continue;
            };
            if self
                .mac(id, timestamp.trim(), body)
                .verify_slice(&expected)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(WebhookError::BadSignature)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn matches_the_specification_test_vector() {
        let key = WebhookKey::from_secret(SECRET).unwrap();
        assert_eq!(key.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        let ts = TIMESTAMP.to_string();
        assert_eq!(
            key.verify(Some(ID), Some(&ts), Some(SIGNATURE), BODY, TIMESTAMP + 10),
            Ok(())
        );
    }

    #[test]
    fn refuses_tampering_staleness_and_missing_headers() {
        let key = WebhookKey::from_secret(SECRET).unwrap();
        let ts = TIMESTAMP.to_string();
        let verify =
            |id, ts: Option<&str>, sig, body: &[u8], now| key.verify(id, ts, sig, body, now);
        assert_eq!(
            verify(Some(ID), Some(&ts), Some(SIGNATURE), b"{}", TIMESTAMP),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(Some(ID), Some(&ts), Some(SIGNATURE), BODY, TIMESTAMP + 301),
            Err(WebhookError::StaleTimestamp)
        );
        assert_eq!(
            verify(Some(ID), Some(&ts), Some(SIGNATURE), BODY, TIMESTAMP - 301),
            Err(WebhookError::StaleTimestamp)
        );
        assert_eq!(
            verify(None, Some(&ts), Some(SIGNATURE), BODY, TIMESTAMP),
            Err(WebhookError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            verify(Some(ID), Some("soon"), Some(SIGNATURE), BODY, TIMESTAMP),
            Err(WebhookError::InvalidTimestamp)
        );
        // Rotation: one valid signature among several is enough.
        let several = format!("v1,AAAA {SIGNATURE} v2,zzz");
        assert_eq!(
            verify(Some(ID), Some(&ts), Some(&several), BODY, TIMESTAMP),
            Ok(())
        );
        assert_eq!(
            WebhookKey::from_secret("whsec_!!").unwrap_err(),
            WebhookError::InvalidSecret
        );
    }
}

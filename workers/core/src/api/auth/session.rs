//! Session tokens: JSON Web Tokens signed with HMAC-SHA256 (`alg: HS256`), claims `sub`,
//! `email`, `role`, `iat`, `exp`, `iss`, `sid` (the session, revocable), `iat_ms`. Any standard JWT library verifies them given the
//! secret. Verification accepts exactly HS256 (so `alg: none` and key-confusion tricks fail),
//! compares signatures in constant time, and rejects expired, future-dated and foreign tokens.
//!
//! The header's `kid` names the key ([`key_id`]: a keyed hash of the secret, not the secret),
//! so a deployment can rotate `SESSION_SECRET` while tokens signed with the previous one keep
//! working until they expire (`SESSION_SECRET_PREVIOUS`): a token is checked against the key
//! its `kid` names, and one without a `kid` (issued before key ids) against each key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::model::role::Role;

/// Clock skew tolerated on `iat`, in seconds.
pub const LEEWAY_S: u64 = 60;

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// The user's email.
    pub email: String,
    /// The user's role when the token was issued.
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// Issuer.
    pub iss: String,
    /// The session's id, which logging out revokes (`services::sessions`); empty in tokens
    /// issued before sessions had ids.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    /// Issued at, Unix milliseconds (a log-out-everywhere in the same second as a login
    /// must tell them apart); 0 in tokens that lack it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iat_ms: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Claims {
    /// When the token was issued, in ms (from `iat` when it has no `iat_ms`).
    pub fn issued_ms(&self) -> u64 {
        if self.iat_ms / 1000 == self.iat {
            self.iat_ms
        } else {
            self.iat * 1000
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// The header names another algorithm than HS256.
    #[error("unsupported algorithm")]
    Algorithm,
    /// The signature does not verify with our key.
    #[error("bad signature")]
    Signature,
    /// `exp` has passed.
    #[error("expired")]
    Expired,
    /// `iat` lies in the future.
    #[error("issued in the future")]
    NotYetValid,
    /// `iss` is not ours.
    #[error("wrong issuer")]
    Issuer,
    /// The `kid` names none of this deployment's keys (one retired by a rotation).
    #[error("signed with a retired or unknown key")]
    UnknownKey,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// The key id of `key`: 8 base64url characters of an HMAC of a fixed label under the key
/// (names the key without revealing it).
pub fn key_id(key: &[u8]) -> String {
    let digest = mac(key, b"edgevideo/session-key-id/v1")
        .finalize()
        .into_bytes();
    URL_SAFE_NO_PAD.encode(&digest[..6])
}

fn mac(key: &[u8], signing_input: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(signing_input);
    mac
}

/// Signs `claims` with `key` into a compact JWT whose header names the key (`kid`).
pub fn sign(claims: &Claims, key: &[u8]) -> String {
    let header = Header {
        alg: "HS256".into(),
        typ: Some("JWT".into()),
        kid: Some(key_id(key)),
    };
    // Serializing these plain structs cannot fail.
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let signature = mac(key, signing_input.as_bytes()).finalize().into_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Verifies a compact JWT with one of `keys` (the current key first, then any previous one)
/// and returns its claims.
///
/// # Errors
/// A [`TokenError`] saying why the token is refused.
pub fn verify(token: &str, keys: &[&[u8]], issuer: &str, now_s: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed)?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    let candidates: Vec<&[u8]> = match &header.kid {
        Some(kid) => {
            let named: Vec<&[u8]> = keys
                .iter()
                .copied()
                .filter(|key| key_id(key) == *kid)
                .collect();
            if named.is_empty() {
                return Err(TokenError::UnknownKey);
            }
            named
        }
        None => keys.to_vec(),
    };
    if !candidates
        .iter()
        .any(|key| mac(key, signing_input).verify_slice(&signature).is_ok())
    {
        return Err(TokenError::Signature);
    }
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(TokenError::Malformed)?;
    if claims.iss != issuer {
        return Err(TokenError::Issuer);
    }
    if claims.exp <= now_s {
        return Err(TokenError::Expired);
    }
    if claims.iat > now_s + LEEWAY_S {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-key-0123456789abcdef0123456789";
    const NOW: u64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            sub: "usr_1".into(),
            email: "a@example.com".into(),
            role: Role::Broadcaster,
            iat: NOW,
            exp: NOW + 3600,
            iss: "edgevideo".into(),
            sid: "ses_1".into(),
            iat_ms: NOW * 1000 + 5,
        }
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn round_trips() {
        let token = sign(&claims(), KEY);
        assert_eq!(verify(&token, &[KEY], "edgevideo", NOW + 10), Ok(claims()));
    }

    #[test]
    fn matches_the_rfc_7515_hs256_example_signature() {
        // RFC 7515 appendix A.1: the same header, payload and key give the same signature.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = mac(&key, input.as_bytes()).finalize().into_bytes();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(sig),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }

    #[test]
    fn rejects_expired_future_and_foreign_tokens() {
        let token = sign(&claims(), KEY);
        assert_eq!(
            verify(&token, &[KEY], "edgevideo", NOW + 3600),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&token, &[KEY], "other", NOW),
            Err(TokenError::Issuer)
        );
        let future = Claims {
            iat: NOW + 600,
            exp: NOW + 7200,
            ..claims()
        };
        assert_eq!(
            verify(&sign(&future, KEY), &[KEY], "edgevideo", NOW),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn rejects_wrong_key_and_tampering() {
        let token = sign(&claims(), KEY);
        // Another deployment's key: its key id is not ours.
        assert_eq!(
            verify(&token, &[b"other-key"], "edgevideo", NOW),
            Err(TokenError::UnknownKey)
        );
        let (input, sig) = token.rsplit_once('.').unwrap();
        let (header, _) = input.split_once('.').unwrap();
        let admin = serde_json::to_string(&Claims {
            role: Role::Admin,
            ..claims()
        })
        .unwrap();
        let forged = format!("{header}.{}.{sig}", b64(&admin));
        assert_eq!(
            verify(&forged, &[KEY], "edgevideo", NOW),
            Err(TokenError::Signature)
        );
        // A truncated signature is either undecodable or wrong; never accepted.
        assert!(verify(&token[..token.len() - 2], &[KEY], "edgevideo", NOW).is_err());
        assert_eq!(
            verify("a.b", &[KEY], "edgevideo", NOW),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify("", &[KEY], "edgevideo", NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_rotated_key_keeps_its_tokens_until_it_is_retired() {
        const NEW: &[u8] = b"new-key-0123456789abcdef0123456789";
        let old_token = sign(&claims(), KEY);
        let new_token = sign(&claims(), NEW);
        assert_ne!(key_id(KEY), key_id(NEW));
        // During the rotation: both verify.
        for token in [&old_token, &new_token] {
            assert_eq!(verify(token, &[NEW, KEY], "edgevideo", NOW), Ok(claims()));
        }
        // The previous key retired: its tokens name a key the deployment no longer has.
        assert_eq!(
            verify(&old_token, &[NEW], "edgevideo", NOW),
            Err(TokenError::UnknownKey)
        );
        // A token without a key id (before key ids) is tried with each key.
        let (_, rest) = old_token.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let header = b64(r#"{"alg":"HS256","typ":"JWT"}"#);
        let input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(mac(KEY, input.as_bytes()).finalize().into_bytes());
        let bare = format!("{input}.{sig}");
        assert_eq!(verify(&bare, &[NEW, KEY], "edgevideo", NOW), Ok(claims()));
        assert_eq!(
            verify(&bare, &[NEW], "edgevideo", NOW),
            Err(TokenError::Signature)
        );
        // A kid cannot steer verification to a key it does not sign with.
        let (_, tail) = old_token.split_once('.').unwrap();
        let lying = format!(
            "{}.{tail}",
            b64(&format!(r#"{{"alg":"HS256","kid":"{}"}}"#, key_id(NEW)))
        );
        assert_eq!(
            verify(&lying, &[NEW, KEY], "edgevideo", NOW),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn rejects_alg_none_and_other_algorithms() {
        let payload = b64(&serde_json::to_string(&claims()).unwrap());
        let none = format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(
            verify(&none, &[KEY], "edgevideo", NOW),
            Err(TokenError::Algorithm)
        );
        let rs = format!("{}.{payload}.c2ln", b64(r#"{"alg":"RS256"}"#));
        assert_eq!(
            verify(&rs, &[KEY], "edgevideo", NOW),
            Err(TokenError::Algorithm)
        );
    }
}

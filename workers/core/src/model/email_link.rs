//! The token of an email-verification link: `{user}.{password_tag}.{exp}.{sig}`, the
//! signature HMAC-SHA256 with the URL signing secret over `edgevideo/email/v1\n` and the
//! fields (its own domain: no URL token verifies as a link, nor the reverse), base64url
//! without padding, compared in constant time.
//!
//! The password tag is a keyed hash of the account's password hash when the link was sent:
//! a later signup of the same unverified address replaces the password and so voids every
//! earlier link, and the link cannot verify a password its sender did not set. A link is
//! single-use because verifying is a conditional write (only an unverified account is
//! verified: `store::users::mark_verified`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const DOMAIN: &[u8] = b"edgevideo/email/v1\n";
const TAG_DOMAIN: &[u8] = b"edgevideo/email-password/v1\n";

/// How long a verification link works, in seconds (a day).
pub const LINK_TTL_SECONDS: u64 = 24 * 3600;

/// A verification link's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailLink {
    /// The account (`usr_...`).
    pub user_id: String,
    /// [`password_tag`] of the account's password hash when the link was sent.
    pub password_tag: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailLinkError {
    /// Not a link token.
    #[error("malformed link")]
    Malformed,
    /// The signature does not verify.
    #[error("invalid link signature")]
    Signature,
    /// Past its expiry.
    #[error("the link has expired")]
    Expired,
}

fn mac(secret: &[u8], domain: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(domain);
    mac
}

/// The tag of a stored password hash: 12 bytes of a keyed hash, base64url.
pub fn password_tag(secret: &[u8], password_hash: &str) -> String {
    let mut m = mac(secret, TAG_DOMAIN);
    m.update(password_hash.as_bytes());
    URL_SAFE_NO_PAD.encode(&m.finalize().into_bytes()[..12])
}

/// Whether `field` can be a dot-separated field (base64url and id characters only).
fn is_field(field: &str) -> bool {
    !field.is_empty()
        && field.len() <= 64
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl EmailLink {
    /// Signs the link with `secret`.
    pub fn sign(&self, secret: &[u8]) -> String {
        let unsigned = format!("{}.{}.{}", self.user_id, self.password_tag, self.exp);
        let mut m = mac(secret, DOMAIN);
        m.update(unsigned.as_bytes());
        format!(
            "{unsigned}.{}",
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        )
    }

    /// Verifies a link token with `secret` at `now_s`.
    ///
    /// # Errors
    /// [`EmailLinkError`] saying why it is refused.
    pub fn verify(raw: &str, secret: &[u8], now_s: u64) -> Result<EmailLink, EmailLinkError> {
        let (unsigned, sig) = raw.rsplit_once('.').ok_or(EmailLinkError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| EmailLinkError::Malformed)?;
        let mut m = mac(secret, DOMAIN);
        m.update(unsigned.as_bytes());
        m.verify_slice(&sig)
            .map_err(|_| EmailLinkError::Signature)?;
        let fields: Vec<&str> = unsigned.split('.').collect();
        let [user, tag, exp] = fields.as_slice() else {
            return Err(EmailLinkError::Malformed);
        };
        if !is_field(user) || !is_field(tag) {
            return Err(EmailLinkError::Malformed);
        }
        let exp = exp.parse().map_err(|_| EmailLinkError::Malformed)?;
        if exp <= now_s {
            return Err(EmailLinkError::Expired);
        }
        Ok(EmailLink {
            user_id: (*user).to_owned(),
            password_tag: (*tag).to_owned(),
            exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"url-key-0123456789abcdef0123456789";

    fn link() -> EmailLink {
        EmailLink {
            user_id: "usr_AAAAAAAAAAAAAAAA".into(),
            password_tag: password_tag(KEY, "pbkdf2$x"),
            exp: 1000,
        }
    }

    #[test]
    fn a_link_round_trips_until_it_expires() {
        let raw = link().sign(KEY);
        assert_eq!(EmailLink::verify(&raw, KEY, 999), Ok(link()));
        assert_eq!(
            EmailLink::verify(&raw, KEY, 1000),
            Err(EmailLinkError::Expired)
        );
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let raw = link().sign(KEY);
        assert_eq!(
            EmailLink::verify(&raw, b"another-key-0123456789abcdef0123", 1),
            Err(EmailLinkError::Signature)
        );
        let (unsigned, sig) = raw.rsplit_once('.').unwrap();
        let tampered = format!("{}.{sig}", unsigned.replace("1000", "9999"));
        assert_eq!(
            EmailLink::verify(&tampered, KEY, 1),
            Err(EmailLinkError::Signature)
        );
        for bad in ["", "a", "a.b", "a.b.c.!!", "....."] {
            assert!(EmailLink::verify(bad, KEY, 1).is_err(), "{bad}");
        }
        // A playback token signed with the same secret is not a link.
        let url = crate::model::signed_url::UrlToken {
            scope: crate::model::signed_url::Scope::Upload {
                video_id: "vid_x".into(),
                kind: "mp4".into(),
            },
            viewer: None,
            exp: 1000,
        }
        .sign(KEY);
        assert!(EmailLink::verify(&url, KEY, 1).is_err());
    }

    #[test]
    fn the_password_tag_follows_the_hash() {
        assert_eq!(password_tag(KEY, "h1"), password_tag(KEY, "h1"));
        assert_ne!(password_tag(KEY, "h1"), password_tag(KEY, "h2"));
        assert_ne!(password_tag(KEY, "h1"), password_tag(b"other", "h1"));
    }
}

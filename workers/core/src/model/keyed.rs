//! Keyed hashes: HMAC-SHA256 under a deployment secret, a domain label first, so a tag made
//! for one purpose (a viewer cookie, a task token, a sealing key) never stands for another.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `domain` followed by `message`, under `secret`.
pub fn tag(secret: &[u8], domain: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(domain);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_separates_tags_and_matches_hmac_over_the_concatenation() {
        assert_ne!(tag(b"k", b"a\0", b"x"), tag(b"k", b"b\0", b"x"));
        assert_ne!(tag(b"k", b"a\0", b"x"), tag(b"other", b"a\0", b"x"));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"k").unwrap();
        mac.update(b"a\0x");
        assert_eq!(
            tag(b"k", b"a\0", b"x"),
            <[u8; 32]>::from(mac.finalize().into_bytes())
        );
    }
}

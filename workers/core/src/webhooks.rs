//! Standard Webhooks: the signing and verification of `edgevideo_protocol::webhooks`
//! (re-exported here), which the core uses for plugin deliveries, transcode jobs and the
//! transcoder's callbacks, plus minting new secrets from fresh random bytes.
//!
//! Why not the `standardwebhooks` crate: its `verify` reads the system clock, which panics
//! on `wasm32-unknown-unknown`, and it brings a second base64 and HMAC implementation into
//! the Worker. The protocol crate takes the time as a parameter and uses the crates we
//! already have; its output is checked against the specification's test vector there and
//! against the official Python library in the end-to-end tests.

pub use edgevideo_protocol::webhooks::*;

/// The secret `whsec_<base64 of key>`; `key` must be 32 fresh random bytes.
pub fn new_secret(key: &[u8; 32]) -> String {
    encode_secret(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_secrets_are_32_byte_keys() {
        let secret = new_secret(&[7; 32]);
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret_key(&secret).unwrap().len(), 32);
        assert!(WebhookKey::from_secret(&secret).is_ok());
    }
}

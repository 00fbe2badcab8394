//! [`Kv`] over a Spin key-value store.
//!
//! Spin's key-value interface has no expiry, so a TTL is stored next to the value: every
//! value is written as an envelope `[1][expiry: u64 ms, big-endian, 0 = never][bytes]`, and a
//! read past the expiry reports the key as missing (and deletes it, best effort). Keys are
//! stored under the `kv:` prefix so that they never collide with the blob keys that share
//! the store ([`crate::blobs`]).

use std::rc::Rc;

use edgevideo_core::ports::Kv;
use edgevideo_core::StoreError;
use spin_sdk::key_value::Store;

use crate::platform::now_ms;

const ENVELOPE_VERSION: u8 = 1;
const HEADER_LEN: usize = 9;

/// The KV port over a Spin key-value store.
pub struct SpinKv {
    store: Rc<Store>,
}

impl SpinKv {
    /// The port over an opened store.
    pub fn new(store: Rc<Store>) -> Self {
        SpinKv { store }
    }
}

/// Maps a Spin key-value error to the port's error.
pub fn kv_error(err: spin_sdk::key_value::Error) -> StoreError {
    StoreError::backend("spin_key_value", format!("{err:?}"))
}

fn storage_key(key: &str) -> String {
    format!("kv:{key}")
}

/// Wraps `value` with its expiry (`0` for none).
fn encode(value: &[u8], expires_at_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits an envelope into its expiry and value.
fn decode(raw: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    match raw.split_first() {
        Some((&ENVELOPE_VERSION, rest)) if rest.len() >= HEADER_LEN - 1 => {
            let (expiry, value) = rest.split_at(HEADER_LEN - 1);
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(expiry);
            Ok((u64::from_be_bytes(bytes), value))
        }
        _ => Err(StoreError::backend(
            "spin_key_value",
            "stored value is not a key-value envelope",
        )),
    }
}

/// Whether an entry with this expiry is gone at `now_ms`.
fn expired(expires_at_ms: u64, now_ms: u64) -> bool {
    expires_at_ms != 0 && expires_at_ms <= now_ms
}

impl Kv for SpinKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = storage_key(key);
        let Some(raw) = self.store.get(&key).map_err(kv_error)? else {
            return Ok(None);
        };
        let (expires_at_ms, value) = decode(&raw)?;
        if expired(expires_at_ms, now_ms()) {
            // Best effort: a failed delete only leaves an entry that reads as missing.
            let _ = self.store.delete(&key);
            return Ok(None);
        }
        Ok(Some(value.to_vec()))
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Option<u64>) -> Result<(), StoreError> {
        let expires_at_ms = match ttl {
            Some(seconds) => now_ms().saturating_add(seconds.saturating_mul(1000)),
            None => 0,
        };
        self.store
            .set(&storage_key(key), &encode(value, expires_at_ms))
            .map_err(kv_error)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store.delete(&storage_key(key)).map_err(kv_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_expire() {
        let raw = encode(&[0, 255, 1], 1_000);
        assert_eq!(decode(&raw).ok(), Some((1_000, [0u8, 255, 1].as_slice())));
        let empty = encode(b"", 0);
        assert_eq!(decode(&empty).ok(), Some((0, b"".as_slice())));
        assert!(decode(b"").is_err());
        assert!(decode(&[1, 0, 0]).is_err());
        assert!(!expired(0, u64::MAX), "no expiry never expires");
        assert!(!expired(1_000, 999));
        assert!(expired(1_000, 1_000));
    }
}

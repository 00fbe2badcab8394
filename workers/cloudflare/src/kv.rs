//! [`Kv`] over a Workers KV namespace.

use edgevideo_core::ports::Kv;
use edgevideo_core::StoreError;
use worker::kv::KvStore;

/// Workers KV minimum TTL, in seconds; shorter TTLs are rounded up to it.
const MIN_TTL_SECONDS: u64 = 60;

/// The KV port over a Workers KV namespace.
pub struct WorkersKv(pub KvStore);

impl Kv for WorkersKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0
            .get(key)
            .bytes()
            .await
            .map_err(|e| StoreError::backend("kv", e))
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Option<u64>) -> Result<(), StoreError> {
        let mut put = self
            .0
            .put_bytes(key, value)
            .map_err(|e| StoreError::backend("kv", e))?;
        if let Some(ttl) = ttl {
            put = put.expiration_ttl(ttl.max(MIN_TTL_SECONDS));
        }
        put.execute()
            .await
            .map_err(|e| StoreError::backend("kv", e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0
            .delete(key)
            .await
            .map_err(|e| StoreError::backend("kv", e))
    }
}

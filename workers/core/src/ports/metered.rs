//! Counting port calls: [`Metered`] wraps a [`Platform`] and counts every call to the ports
//! that cost money or capacity at scale (SQL, blobs, rooms, KV, the edge cache) in counters
//! local to the isolate (the thread). The router wraps every request in it, so operators and
//! the tests can read what a route really calls (`GET /api/_diag/metrics`): a cached playlist
//! hit must show no room call, a segment hit no blob read.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::config::Config;
use crate::error::StoreError;
use crate::model::room::{RoomRequest, RoomResponse};
use crate::ports::{
    Blob, BlobMeta, Blobs, ByteRange, CachedObject, Clock, EdgeCache, Entropy, Kv, Live, Platform,
    Row, Sql, Statement, UploadedPart,
};

thread_local! {
    static COUNTS: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Adds one to the counter `name`.
pub fn count(name: &str) {
    COUNTS.with(|counts| {
        let mut counts = counts.borrow_mut();
        match counts.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                counts.insert(name.to_owned(), 1);
            }
        }
    });
}

/// Every counter of this isolate, by name.
pub fn snapshot() -> BTreeMap<String, u64> {
    COUNTS.with(|counts| counts.borrow().clone())
}

/// Sets every counter of this isolate back to zero.
pub fn reset() {
    COUNTS.with(|counts| counts.borrow_mut().clear());
}

/// A port wrapped so that its calls are counted.
#[derive(Debug)]
pub struct Counted<'a, T>(&'a T);

/// A [`Platform`] whose SQL, blob, room, KV and edge-cache calls are counted.
#[derive(Debug)]
pub struct Metered<'a, P: Platform> {
    inner: &'a P,
    kv: Counted<'a, P::Kv>,
    sql: Counted<'a, P::Sql>,
    blobs: Counted<'a, P::Blobs>,
    live: Counted<'a, P::Live>,
    edge_cache: Counted<'a, P::EdgeCache>,
}

impl<'a, P: Platform> Metered<'a, P> {
    /// Wraps `inner`.
    pub fn new(inner: &'a P) -> Self {
        Metered {
            inner,
            kv: Counted(inner.kv()),
            sql: Counted(inner.sql()),
            blobs: Counted(inner.blobs()),
            live: Counted(inner.live()),
            edge_cache: Counted(inner.edge_cache()),
        }
    }
}

impl<K: Kv> Kv for Counted<'_, K> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        count("kv.get");
        self.0.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl_seconds: Option<u64>,
    ) -> Result<(), StoreError> {
        count("kv.put");
        self.0.put(key, value, ttl_seconds).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        count("kv.delete");
        self.0.delete(key).await
    }
}

impl<S: Sql> Sql for Counted<'_, S> {
    async fn query(&self, statement: &Statement) -> Result<Vec<Row>, StoreError> {
        count("sql.query");
        self.0.query(statement).await
    }
    async fn execute(&self, statement: &Statement) -> Result<u64, StoreError> {
        count("sql.execute");
        self.0.execute(statement).await
    }
    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>, StoreError> {
        count("sql.batch");
        self.0.batch(statements).await
    }
}

impl<B: Blobs> Blobs for Counted<'_, B> {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        count("blobs.put");
        self.0.put(key, bytes, content_type).await
    }
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Option<Blob>, StoreError> {
        count("blobs.get");
        self.0.get(key, range).await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        count("blobs.head");
        self.0.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        count("blobs.delete");
        self.0.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        count("blobs.list");
        self.0.list(prefix).await
    }
    async fn begin_upload(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        count("blobs.begin_upload");
        self.0.begin_upload(key, content_type).await
    }
    async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        bytes: Vec<u8>,
    ) -> Result<UploadedPart, StoreError> {
        count("blobs.put_part");
        self.0.put_part(key, upload_id, number, bytes).await
    }
    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), StoreError> {
        count("blobs.complete_upload");
        self.0.complete_upload(key, upload_id, parts).await
    }
}

impl<L: Live> Live for Counted<'_, L> {
    const HOLDS: bool = L::HOLDS;

    async fn call(&self, room: &str, request: &RoomRequest) -> Result<RoomResponse, StoreError> {
        count("live.call");
        count(&format!("live.call.{}", request.op()));
        self.0.call(room, request).await
    }
}

impl<C: EdgeCache> EdgeCache for Counted<'_, C> {
    const STORES: bool = C::STORES;

    async fn get(&self, key: &str) -> Result<Option<CachedObject>, StoreError> {
        count("edge_cache.get");
        self.0.get(key).await
    }
    async fn put(&self, key: &str, object: &CachedObject) -> Result<(), StoreError> {
        count("edge_cache.put");
        self.0.put(key, object).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        count("edge_cache.delete");
        self.0.delete(key).await
    }
}

impl<'a, P: Platform> Platform for Metered<'a, P> {
    type Kv = Counted<'a, P::Kv>;
    type Sql = Counted<'a, P::Sql>;
    type Blobs = Counted<'a, P::Blobs>;
    type Live = Counted<'a, P::Live>;
    type Jobs = P::Jobs;
    type Outbound = P::Outbound;
    type EdgeCache = Counted<'a, P::EdgeCache>;
    type Mailer = P::Mailer;

    fn config(&self) -> &Config {
        self.inner.config()
    }
    fn kv(&self) -> &Self::Kv {
        &self.kv
    }
    fn sql(&self) -> &Self::Sql {
        &self.sql
    }
    fn blobs(&self) -> &Self::Blobs {
        &self.blobs
    }
    fn live(&self) -> &Self::Live {
        &self.live
    }
    fn jobs(&self) -> &P::Jobs {
        self.inner.jobs()
    }
    fn outbound(&self) -> &P::Outbound {
        self.inner.outbound()
    }
    fn edge_cache(&self) -> &Self::EdgeCache {
        &self.edge_cache
    }
    fn mailer(&self) -> &P::Mailer {
        self.inner.mailer()
    }
    fn clock(&self) -> &dyn Clock {
        self.inner.clock()
    }
    fn entropy(&self) -> &dyn Entropy {
        self.inner.entropy()
    }
    async fn sleep(&self, ms: u64) {
        self.inner.sleep(ms).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPlatform;

    #[test]
    fn calls_through_the_wrapper_are_counted() {
        reset();
        let inner = MemoryPlatform::development();
        let metered = Metered::new(&inner);
        pollster::block_on(async {
            metered
                .blobs()
                .put("a", b"x".to_vec(), "text/plain")
                .await
                .unwrap();
            assert!(metered.blobs().get("a", None).await.unwrap().is_some());
            assert!(metered.blobs().get("b", None).await.unwrap().is_none());
            // Calls that bypass the wrapper are not counted.
            inner.blobs().get("a", None).await.unwrap();
        });
        let counts = snapshot();
        assert_eq!(counts.get("blobs.put"), Some(&1));
        assert_eq!(counts.get("blobs.get"), Some(&2));
        reset();
        assert!(snapshot().is_empty());
    }
}

//! [`EdgeCache`] over the Workers Cache API (`caches.default`): the cache of the data center
//! the request reached. Objects are stored as responses with `Cache-Control: max-age` (whole
//! seconds, rounded up) and their exact expiry in a header, which the core checks on reads.
//! Note: on `*.workers.dev` hosts the Cache API stores nothing; deploy on a custom domain.

use edgevideo_core::ports::{CachedObject, EdgeCache};
use edgevideo_core::StoreError;
use worker::{Cache, Headers, Response};

/// Header carrying an object's expiry, Unix ms.
const EXPIRES: &str = "x-edge-expires";

fn cache_error(err: worker::Error) -> StoreError {
    StoreError::backend("cache", err)
}

/// The edge-cache port over the Cache API.
pub struct WorkersCache;

impl EdgeCache for WorkersCache {
    async fn get(&self, key: &str) -> Result<Option<CachedObject>, StoreError> {
        let Some(mut response) = Cache::default()
            .get(key, false)
            .await
            .map_err(cache_error)?
        else {
            return Ok(None);
        };
        if response.status_code() != 200 {
            return Ok(None);
        }
        let headers = response.headers();
        let content_type = headers
            .get("content-type")
            .map_err(cache_error)?
            .unwrap_or_default();
        let expires_at_ms = headers
            .get(EXPIRES)
            .map_err(cache_error)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = response.bytes().await.map_err(cache_error)?;
        Ok(Some(CachedObject {
            content_type,
            body,
            expires_at_ms,
        }))
    }

    async fn put(&self, key: &str, object: &CachedObject) -> Result<(), StoreError> {
        let now_ms = worker::Date::now().as_millis();
        let ttl_s = object.expires_at_ms.saturating_sub(now_ms).div_ceil(1000);
        if ttl_s == 0 {
            return Ok(());
        }
        let headers = Headers::new();
        headers
            .set("content-type", &object.content_type)
            .map_err(cache_error)?;
        headers
            .set("cache-control", &format!("public, max-age={ttl_s}"))
            .map_err(cache_error)?;
        headers
            .set(EXPIRES, &object.expires_at_ms.to_string())
            .map_err(cache_error)?;
        let response = Response::from_bytes(object.body.clone())
            .map_err(cache_error)?
            .with_headers(headers);
        Cache::default()
            .put(key, response)
            .await
            .map_err(cache_error)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        Cache::default()
            .delete(key, false)
            .await
            .map(|_| ())
            .map_err(cache_error)
    }
}

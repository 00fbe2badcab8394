//! What handlers share to answer from the edge cache
//! ([`crate::services::edge_cache`]): the cache keys, which carry no token, and the header
//! that tells how a response was produced.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::HeaderValue;

use crate::api::{self, Request, Response};
use crate::ports::CachedObject;
use crate::services::edge_cache::CacheStatus;

/// The response header that says how the edge produced a response: `HIT` (from the edge
/// cache), `SHARED` (from a concurrent request's fill) or `MISS`.
pub const EDGE_CACHE: &str = "x-edge-cache";

/// The edge-cache key of an object: an absolute URL on this deployment's origin, under a path
/// no route serves (`/_edge/{path}`), without any token.
pub fn cache_key(request: &Request, path: &str) -> String {
    let origin = api::origin(request);
    let origin = if origin.is_empty() {
        "http://localhost"
    } else {
        origin.as_str()
    };
    format!("{origin}/_edge/{path}")
}

/// A 200 response with a cached object's body and type and the cache `policy` for clients,
/// saying how it was obtained ([`EDGE_CACHE`]).
pub fn from_cache(object: CachedObject, status: CacheStatus, policy: &'static str) -> Response {
    let mut response = http::Response::new(object.body);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&object.content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(policy));
    headers.insert(EDGE_CACHE, HeaderValue::from_static(status.as_str()));
    response
}

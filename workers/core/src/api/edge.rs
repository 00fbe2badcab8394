//! What handlers share to answer from the edge cache
//! ([`crate::services::edge_cache`]): the cache keys, which carry no token, and the header
//! that tells how a response was produced.

use crate::api::{self, Request};

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

//! A low-latency part served while it is being made: a viewer who asks for the next part
//! (a playlist's preload hint) before it is stored gets the bytes the pusher has sent so
//! far, then the rest as they come. The response carries a [`GrowingPart`] marker after the
//! bytes the room had: hosts that stream read the rest with [`GrowingPart::next`], each call
//! waiting in the room for the bytes past those read (through the edge cache and the room's
//! relays, so the viewers of a location at the same offset share one call); the others
//! collect it ([`collect_body`]). Once the part is stored whole the rest comes from the
//! blob, through the edge cache.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::HeaderValue;

use crate::api::Response;
use crate::error::ApiError;
use crate::model::hls;
use crate::model::room::{RoomRequest, RoomResponse};
use crate::ports::{Blobs as _, CachedObject, Live as _, Platform};
use crate::services::edge_cache;

/// Cache policy of a part sent while it is made: not kept by browsers (the edge keeps the
/// stored part, read from the blob).
const GROWING: &str = "no-store";

/// A part of the live broadcast being read as it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrowingPart {
    /// The channel (its room is asked).
    pub channel_id: String,
    /// The live broadcast.
    pub broadcast_id: String,
    /// The part's file name.
    pub file: String,
    /// The blob the part is stored under once whole.
    pub key: String,
    /// The edge-cache key of that blob.
    pub cache_key: String,
    /// How long the room may hold each wait for more bytes, in ms.
    pub hold_ms: u64,
    /// Bytes read so far.
    read: u64,
    /// Whether the part has been read to its end.
    done: bool,
}

impl GrowingPart {
    /// The part `file` of `broadcast_id` on `channel_id`, stored under `key` once whole,
    /// nothing of it read yet.
    pub fn new(
        (channel_id, broadcast_id, file): (&str, &str, &str),
        (key, cache_key): (&str, &str),
        hold_ms: u64,
    ) -> Self {
        Self {
            channel_id: channel_id.to_owned(),
            broadcast_id: broadcast_id.to_owned(),
            file: file.to_owned(),
            key: key.to_owned(),
            cache_key: cache_key.to_owned(),
            hold_ms,
            read: 0,
            done: false,
        }
    }

    /// The part's next bytes, waiting for them while the part is being made; `None` once
    /// it has been read whole.
    ///
    /// # Errors
    /// 404 when the part is neither being made nor stored (a dropped part: a host that
    /// already sent some bytes aborts the response); 503 when the room or the blob store
    /// fails.
    pub async fn next<P: Platform>(&mut self, p: &P) -> Result<Option<Vec<u8>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let ask = RoomRequest::PartBytes {
            broadcast_id: self.broadcast_id.clone(),
            file: self.file.clone(),
            from: self.read,
            until_ms: p.clock().now_ms() + self.hold_ms,
        };
        // One call per location for the viewers at the same offset: the answer goes through
        // the edge cache (bytes once sent never change).
        let key = format!("{}/from/{}", self.cache_key, self.read);
        let (answer, _) = edge_cache::get_or_fill(p, &key, || async {
            let answer = p.live().call(&self.channel_id, &ask).await?;
            Ok(CachedObject {
                content_type: "application/json".to_owned(),
                body: serde_json::to_vec(&answer)
                    .map_err(|e| ApiError::Internal(format!("a room answer: {e}")))?,
                expires_at_ms: p.clock().now_ms() + SHARED_MS,
            })
        })
        .await?;
        let answer: RoomResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| ApiError::Internal(format!("a shared room answer: {e}")))?;
        if let RoomResponse::PartBytes {
            data: bytes,
            complete,
        } = answer
        {
            self.read += bytes.len() as u64;
            self.done = complete || bytes.is_empty();
            return Ok((!bytes.is_empty()).then_some(bytes));
        }
        // The room keeps no chunks of it (stored whole, or its wait is over): the blob.
        self.done = true;
        let (object, _) = edge_cache::get_or_refill(p, &self.cache_key, || async {
            let blob = p.blobs().get(&self.key, None).await?;
            let blob = blob.ok_or_else(|| ApiError::NotFound("no such part".into()))?;
            Ok(CachedObject {
                content_type: hls::CMAF_CONTENT_TYPE.to_owned(),
                body: blob.bytes,
                expires_at_ms: p.clock().now_ms() + PART_TTL_MS,
            })
        })
        .await?;
        let from = usize::try_from(self.read).unwrap_or(usize::MAX);
        Ok(object
            .body
            .get(from..)
            .filter(|rest| !rest.is_empty())
            .map(<[u8]>::to_vec))
    }

    /// Every byte left, waiting for them (for hosts that do not stream).
    ///
    /// # Errors
    /// As [`GrowingPart::next`].
    pub async fn collect<P: Platform>(&mut self, p: &P) -> Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        while let Some(bytes) = self.next(p).await? {
            body.extend(bytes);
        }
        Ok(body)
    }
}

/// How long the viewers of a location share the room's answer about a part's bytes from
/// one offset, in ms (as long as relays reuse an answer).
const SHARED_MS: u64 = 500;

/// How long a stored part stays in the edge cache: it never changes.
const PART_TTL_MS: u64 = 365 * 24 * 3600 * 1000;

/// The answer to a request for `part` before it is stored: its first bytes (waiting for
/// them while the room expects the part), with the marker for the rest unless the part
/// was already whole.
///
/// # Errors
/// 404 when the part is neither being made nor stored; as [`GrowingPart::next`].
pub async fn serve<P: Platform>(p: &P, mut part: GrowingPart) -> Result<Response, ApiError> {
    let first = part
        .next(p)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such part".into()))?;
    let mut response = http::Response::new(first);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(hls::CMAF_CONTENT_TYPE),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(GROWING));
    if !part.done {
        response.extensions_mut().insert(part);
    }
    Ok(response)
}

/// Replaces a [`GrowingPart`] marker by the rest of the part, for hosts that answer with a
/// whole body. A failure becomes the error's response.
pub async fn collect_body<P: Platform>(p: &P, response: Response) -> Response {
    let Some(mut part) = response.extensions().get::<GrowingPart>().cloned() else {
        return response;
    };
    match part.collect(p).await {
        Ok(rest) => {
            let (mut parts, mut body) = response.into_parts();
            parts.extensions.remove::<GrowingPart>();
            body.extend(rest);
            http::Response::from_parts(parts, body)
        }
        Err(err) => crate::api::error(&err),
    }
}

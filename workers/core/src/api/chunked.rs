//! Large bodies read in chunks: an MP4 (or a range of it) is answered as a [`ChunkedBody`]
//! marker on the response, which the host streams chunk by chunk ([`ChunkedBody::read`]),
//! each chunk of [`CHUNK_BYTES`] read through the edge cache as an immutable object. Memory
//! stays bounded whatever the object's size, and every chunk is shared by every viewer.
//! Hosts that cannot stream collect the chunks ([`ChunkedBody::collect`]).

use crate::api::Response;
use crate::error::ApiError;
use crate::ports::{Blobs as _, ByteRange, CachedObject, Platform};
use crate::services::edge_cache;

/// The size of one chunk, in bytes: the unit in which large bodies are read, cached and
/// streamed.
pub const CHUNK_BYTES: u64 = 2 * 1024 * 1024;

/// How long a chunk stays in the edge cache: objects never change.
const CHUNK_TTL_MS: u64 = 365 * 24 * 3600 * 1000;

/// The body of a response, to be read in chunks: bytes `start..=end` of the blob `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBody {
    /// The blob.
    pub key: String,
    /// The edge-cache key of the blob; chunk `i` is cached under `{cache_key}/chunk/{i}`.
    pub cache_key: String,
    /// The blob's content type.
    pub content_type: &'static str,
    /// First byte of the body.
    pub start: u64,
    /// Last byte of the body (inclusive).
    pub end: u64,
    /// The blob's size.
    pub size: u64,
}

impl ChunkedBody {
    /// The indexes of the chunks that hold the body, in order.
    pub fn chunks(&self) -> std::ops::RangeInclusive<u64> {
        self.start / CHUNK_BYTES..=self.end / CHUNK_BYTES
    }

    /// The part of chunk `index` that belongs to the body.
    ///
    /// # Errors
    /// 404 when the blob is gone; 503 when the blob store fails; 500 when the stored object
    /// is shorter than its recorded size.
    pub async fn read<P: Platform>(&self, p: &P, index: u64) -> Result<Vec<u8>, ApiError> {
        let chunk_start = index.saturating_mul(CHUNK_BYTES);
        if chunk_start >= self.size || !self.chunks().contains(&index) {
            return Err(ApiError::Internal(format!(
                "chunk {index} is outside the body"
            )));
        }
        let key = format!("{}/chunk/{index}", self.cache_key);
        let (object, _) = edge_cache::get_or_fill(p, &key, || async {
            let length = CHUNK_BYTES.min(self.size - chunk_start);
            let range = ByteRange::From {
                offset: chunk_start,
                length: Some(length),
            };
            let blob = p
                .blobs()
                .get(&self.key, Some(range))
                .await?
                .ok_or_else(|| ApiError::NotFound("no such object".into()))?;
            Ok(CachedObject {
                content_type: self.content_type.to_owned(),
                body: blob.bytes,
                expires_at_ms: p.clock().now_ms() + CHUNK_TTL_MS,
            })
        })
        .await?;
        // Offsets inside the chunk of the body's first and last byte.
        let from = self.start.saturating_sub(chunk_start);
        let to = self.end.min(chunk_start + CHUNK_BYTES - 1) - chunk_start;
        let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) else {
            return Err(ApiError::Internal("chunk offsets overflow".into()));
        };
        if to >= object.body.len() || from > to {
            return Err(ApiError::Internal(format!(
                "{} is shorter than its recorded size",
                self.key
            )));
        }
        Ok(object.body[from..=to].to_vec())
    }

    /// The whole body, chunk after chunk (for hosts that do not stream).
    ///
    /// # Errors
    /// As [`ChunkedBody::read`].
    pub async fn collect<P: Platform>(&self, p: &P) -> Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        for index in self.chunks() {
            body.extend(self.read(p, index).await?);
        }
        Ok(body)
    }
}

/// Replaces a [`ChunkedBody`] marker by the collected bytes, for hosts that answer with a
/// whole body (the Spin host, the in-process tests). A failure becomes the error's response.
pub async fn collect_body<P: Platform>(p: &P, response: Response) -> Response {
    let Some(body) = response.extensions().get::<ChunkedBody>().cloned() else {
        return response;
    };
    match body.collect(p).await {
        Ok(bytes) => {
            let (mut parts, _) = response.into_parts();
            parts.extensions.remove::<ChunkedBody>();
            http::Response::from_parts(parts, bytes)
        }
        Err(err) => crate::api::error(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPlatform;

    fn platform_with_blob(size: usize) -> (MemoryPlatform, Vec<u8>) {
        let p = MemoryPlatform::development();
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        pollster::block_on(p.blobs().put("big", bytes.clone(), "video/mp4")).unwrap();
        (p, bytes)
    }

    fn body(start: u64, end: u64, size: u64) -> ChunkedBody {
        ChunkedBody {
            key: "big".into(),
            cache_key: "http://localhost/_edge/big".into(),
            content_type: "video/mp4",
            start,
            end,
            size,
        }
    }

    #[test]
    fn any_range_reads_the_right_bytes_chunk_by_chunk() {
        let size = (CHUNK_BYTES * 2 + 12_345) as usize;
        let (p, bytes) = platform_with_blob(size);
        let last = size as u64 - 1;
        for (start, end) in [
            (0, last),
            (0, 0),
            (CHUNK_BYTES - 1, CHUNK_BYTES),
            (CHUNK_BYTES, CHUNK_BYTES * 2 - 1),
            (5, last - 5),
            (last, last),
        ] {
            let got = pollster::block_on(body(start, end, size as u64).collect(&p)).unwrap();
            assert_eq!(got, bytes[start as usize..=end as usize], "{start}-{end}");
        }
        // Every chunk was read from the blob store once and then from the edge cache.
        assert_eq!(p.edge_cache.len(), 3);
    }

    #[test]
    fn a_blob_shorter_than_its_size_is_an_error_not_a_panic() {
        let (p, _) = platform_with_blob(100);
        assert!(pollster::block_on(body(0, 199, 200).collect(&p)).is_err());
        assert!(pollster::block_on(body(150, 199, 200).collect(&p)).is_err());
    }
}

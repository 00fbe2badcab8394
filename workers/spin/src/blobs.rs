//! [`Blobs`] in the Spin key-value store, for small deployments.
//!
//! An object is a metadata entry `blob:meta:{key}` (JSON: size, content type, ETag, chunk
//! count and size, version) and its bytes in chunks `blob:data:{version}:{index}` of at most
//! [`CHUNK_SIZE`] bytes, since hosted key-value stores limit value sizes. A put writes the new
//! chunks under a fresh version first and the metadata last, so readers see the old object or
//! the new one, never a mix; the old chunks are deleted afterwards. Range reads fetch only the
//! chunks they need. Listing scans the store's keys (`get-keys`), which suits small stores;
//! large deployments need an S3/R2 adapter over outbound HTTP with SigV4 (not built yet).
//!
//! A multipart upload is a record `blob:upload:{id}` (key, content type), each part's chunks
//! under the version `{id}.{number}` with a record `blob:upload:{id}:{number}`; completing it
//! re-chunks the parts in order into a fresh version (one chunk in memory at a time) and then
//! writes the metadata, as a put does.

use std::rc::Rc;

use edgevideo_core::memory::slice_range;
use edgevideo_core::ports::{Blob, BlobMeta, Blobs, ByteRange, UploadedPart};
use edgevideo_core::StoreError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spin_sdk::key_value::Store;

use crate::kv::kv_error;
use crate::platform::random_hex;

/// Largest chunk stored in one key-value entry, in bytes.
pub const CHUNK_SIZE: usize = 512 * 1024;

const META_PREFIX: &str = "blob:meta:";
const UPLOAD_PREFIX: &str = "blob:upload:";

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UploadRecord {
    key: String,
    content_type: String,
}

/// A stored part of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PartRecord {
    size: u64,
    etag: String,
    chunks: u64,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value)
        .map_err(|e| StoreError::backend("spin_key_value", format!("blob record: {e}")))
}

fn decode<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw)
        .map_err(|e| StoreError::backend("spin_key_value", format!("blob record: {e}")))
}

fn part_version(upload_id: &str, number: u16) -> String {
    format!("{upload_id}.{number}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored description of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    size: u64,
    content_type: String,
    etag: String,
    chunks: u64,
    chunk_size: u64,
    version: String,
}

/// The blob port over a Spin key-value store.
pub struct KvBlobs {
    store: Rc<Store>,
}

impl KvBlobs {
    /// The port over an opened store.
    pub fn new(store: Rc<Store>) -> Self {
        KvBlobs { store }
    }

    fn meta(&self, key: &str) -> Result<Option<Meta>, StoreError> {
        self.store
            .get(&format!("{META_PREFIX}{key}"))
            .map_err(kv_error)?
            .map(|raw| decode(&raw))
            .transpose()
    }

    fn upload(&self, key: &str, upload_id: &str) -> Result<UploadRecord, StoreError> {
        let raw = self
            .store
            .get(&format!("{UPLOAD_PREFIX}{upload_id}"))
            .map_err(kv_error)?;
        raw.map(|raw| decode::<UploadRecord>(&raw))
            .transpose()?
            .filter(|u| u.key == key)
            .ok_or_else(|| StoreError::NotFound(format!("upload {upload_id}")))
    }

    fn chunk(&self, version: &str, index: u64) -> Result<Vec<u8>, StoreError> {
        self.store
            .get(&chunk_key(version, index))
            .map_err(kv_error)?
            .ok_or_else(|| {
                StoreError::backend(
                    "spin_key_value",
                    format!("chunk {index} of {version} is missing"),
                )
            })
    }

    fn set_chunk(&self, version: &str, index: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.store
            .set(&chunk_key(version, index), bytes)
            .map_err(kv_error)
    }

    /// Stores `bytes` as the chunks of `version`; returns how many there are.
    fn write_chunks(&self, version: &str, bytes: &[u8]) -> Result<u64, StoreError> {
        let mut chunks = 0u64;
        for chunk in bytes.chunks(CHUNK_SIZE) {
            self.set_chunk(version, chunks, chunk)?;
            chunks += 1;
        }
        Ok(chunks)
    }

    fn delete_chunks(&self, version: &str, chunks: u64) -> Result<(), StoreError> {
        for index in 0..chunks {
            self.store
                .delete(&chunk_key(version, index))
                .map_err(kv_error)?;
        }
        Ok(())
    }

    /// Makes `meta` the object under `key`.
    fn set_meta(&self, key: &str, meta: &Meta) -> Result<(), StoreError> {
        self.store
            .set(&format!("{META_PREFIX}{key}"), &encode(meta)?)
            .map_err(kv_error)
    }
}

fn chunk_key(version: &str, index: u64) -> String {
    format!("blob:data:{version}:{index}")
}

fn public_meta(meta: &Meta) -> BlobMeta {
    BlobMeta {
        size: meta.size,
        content_type: Some(meta.content_type.clone()),
        etag: meta.etag.clone(),
    }
}

/// The byte span `start..end` of an object of `size` bytes that `range` selects.
fn span(size: u64, range: Option<ByteRange>) -> (u64, u64) {
    match range {
        None => (0, size),
        Some(ByteRange::From { offset, length }) => {
            let start = offset.min(size);
            (
                start,
                length.map_or(size, |l| start.saturating_add(l).min(size)),
            )
        }
        Some(ByteRange::Suffix(n)) => (size.saturating_sub(n), size),
    }
}

impl Blobs for KvBlobs {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        let previous = self.meta(key)?;
        let version = random_hex(8);
        let chunks = self.write_chunks(&version, &bytes)?;
        let meta = Meta {
            size: bytes.len() as u64,
            content_type: content_type.to_owned(),
            etag: format!("\"{}\"", hex(&Sha256::digest(&bytes)[..16])),
            chunks,
            chunk_size: CHUNK_SIZE as u64,
            version,
        };
        self.set_meta(key, &meta)?;
        if let Some(previous) = previous {
            self.delete_chunks(&previous.version, previous.chunks)?;
        }
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Option<Blob>, StoreError> {
        let Some(meta) = self.meta(key)? else {
            return Ok(None);
        };
        let (start, end) = span(meta.size, range);
        let chunk_size = meta.chunk_size.max(1);
        let mut bytes = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        if start < end {
            let first = start / chunk_size;
            let last = (end - 1) / chunk_size;
            let mut joined = Vec::new();
            for index in first..=last {
                let chunk = self
                    .store
                    .get(&chunk_key(&meta.version, index))
                    .map_err(kv_error)?
                    .ok_or_else(|| {
                        StoreError::backend(
                            "spin_key_value",
                            format!(
                                "blob {key}: chunk {index} is missing (overwritten meanwhile?)"
                            ),
                        )
                    })?;
                joined.extend_from_slice(&chunk);
            }
            let offset = first * chunk_size;
            bytes.extend_from_slice(slice_range(
                &joined,
                Some(ByteRange::From {
                    offset: start - offset,
                    length: Some(end - start),
                }),
            ));
        }
        Ok(Some(Blob {
            meta: public_meta(&meta),
            bytes,
        }))
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        Ok(self.meta(key)?.as_ref().map(public_meta))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let Some(meta) = self.meta(key)? else {
            return Ok(());
        };
        self.store
            .delete(&format!("{META_PREFIX}{key}"))
            .map_err(kv_error)?;
        self.delete_chunks(&meta.version, meta.chunks)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let wanted = format!("{META_PREFIX}{prefix}");
        let mut keys: Vec<String> = self
            .store
            .get_keys()
            .map_err(kv_error)?
            .into_iter()
            .filter_map(|k| {
                k.starts_with(&wanted)
                    .then(|| k[META_PREFIX.len()..].to_owned())
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn begin_upload(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        let upload_id = random_hex(12);
        let record = UploadRecord {
            key: key.to_owned(),
            content_type: content_type.to_owned(),
        };
        self.store
            .set(&format!("{UPLOAD_PREFIX}{upload_id}"), &encode(&record)?)
            .map_err(kv_error)?;
        Ok(upload_id)
    }

    async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        bytes: Vec<u8>,
    ) -> Result<UploadedPart, StoreError> {
        self.upload(key, upload_id)?;
        let chunks = self.write_chunks(&part_version(upload_id, number), &bytes)?;
        let record = PartRecord {
            size: bytes.len() as u64,
            etag: hex(&Sha256::digest(&bytes)[..16]),
            chunks,
        };
        self.store
            .set(
                &format!("{UPLOAD_PREFIX}{upload_id}:{number}"),
                &encode(&record)?,
            )
            .map_err(kv_error)?;
        Ok(UploadedPart {
            number,
            etag: record.etag,
        })
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), StoreError> {
        let upload = self.upload(key, upload_id)?;
        let mut records = Vec::with_capacity(parts.len());
        for part in parts {
            let record = self
                .store
                .get(&format!("{UPLOAD_PREFIX}{upload_id}:{}", part.number))
                .map_err(kv_error)?
                .map(|raw| decode::<PartRecord>(&raw))
                .transpose()?
                .filter(|r| r.etag == part.etag)
                .ok_or_else(|| {
                    StoreError::Precondition(format!("part {} does not match", part.number))
                })?;
            records.push((part.number, record));
        }
        let previous = self.meta(key)?;
        let version = random_hex(8);
        let mut digest = Sha256::new();
        let mut pending: Vec<u8> = Vec::with_capacity(2 * CHUNK_SIZE);
        let (mut size, mut chunks) = (0u64, 0u64);
        for (number, record) in &records {
            let part = part_version(upload_id, *number);
            for index in 0..record.chunks {
                let bytes = self.chunk(&part, index)?;
                digest.update(&bytes);
                size += bytes.len() as u64;
                pending.extend_from_slice(&bytes);
                while pending.len() >= CHUNK_SIZE {
                    self.set_chunk(&version, chunks, &pending[..CHUNK_SIZE])?;
                    pending.drain(..CHUNK_SIZE);
                    chunks += 1;
                }
            }
        }
        if !pending.is_empty() {
            self.set_chunk(&version, chunks, &pending)?;
            chunks += 1;
        }
        let meta = Meta {
            size,
            content_type: upload.content_type,
            etag: format!("\"{}\"", hex(&digest.finalize()[..16])),
            chunks,
            chunk_size: CHUNK_SIZE as u64,
            version,
        };
        self.set_meta(key, &meta)?;
        // The object is complete; what follows only frees space.
        for (number, record) in &records {
            self.delete_chunks(&part_version(upload_id, *number), record.chunks)?;
            self.store
                .delete(&format!("{UPLOAD_PREFIX}{upload_id}:{number}"))
                .map_err(kv_error)?;
        }
        self.store
            .delete(&format!("{UPLOAD_PREFIX}{upload_id}"))
            .map_err(kv_error)?;
        if let Some(previous) = previous {
            self.delete_chunks(&previous.version, previous.chunks)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_clamp_like_the_memory_adapter() {
        assert_eq!(span(3000, None), (0, 3000));
        let from = |offset, length| Some(ByteRange::From { offset, length });
        assert_eq!(span(3000, from(100, Some(10))), (100, 110));
        assert_eq!(span(3000, from(2990, None)), (2990, 3000));
        assert_eq!(span(3000, from(5000, Some(10))), (3000, 3000));
        assert_eq!(span(3000, Some(ByteRange::Suffix(5))), (2995, 3000));
        assert_eq!(span(3, Some(ByteRange::Suffix(5))), (0, 3));
    }
}

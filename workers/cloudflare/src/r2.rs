//! [`Blobs`] over an R2 bucket.

use edgevideo_core::ports::{Blob, BlobMeta, Blobs, ByteRange, UploadedPart};
use edgevideo_core::StoreError;
use worker::{Bucket, HttpMetadata, MultipartUpload, Object, Range};

/// The blob port over R2.
pub struct R2Blobs(pub Bucket);

/// Largest offset or length R2 accepts from Wasm (a JavaScript safe integer).
const MAX_SAFE: u64 = (1 << 53) - 1;

fn r2_error(err: worker::Error) -> StoreError {
    StoreError::backend("r2", err)
}

fn meta(object: &Object) -> BlobMeta {
    BlobMeta {
        size: object.size(),
        content_type: object.http_metadata().content_type,
        etag: object.http_etag(),
    }
}

fn range(range: ByteRange) -> Result<Range, StoreError> {
    let checked = |v: u64| {
        if v > MAX_SAFE {
            Err(StoreError::backend("r2", "range beyond 2^53 bytes"))
        } else {
            Ok(v)
        }
    };
    Ok(match range {
        ByteRange::From {
            offset,
            length: Some(length),
        } => Range::OffsetWithLength {
            offset: checked(offset)?,
            length: checked(length)?,
        },
        ByteRange::From {
            offset,
            length: None,
        } => Range::OffsetToEnd {
            offset: checked(offset)?,
        },
        ByteRange::Suffix(suffix) => Range::Suffix {
            suffix: checked(suffix)?,
        },
    })
}

impl R2Blobs {
    /// Reopens a multipart upload begun by `begin_upload` (R2 keeps no handle between requests).
    fn resume_upload(&self, key: &str, upload_id: &str) -> Result<MultipartUpload, StoreError> {
        self.0
            .resume_multipart_upload(key, upload_id)
            .map_err(r2_error)
    }
}

/// An object's HTTP metadata carrying only its content type.
fn content_type_metadata(content_type: &str) -> HttpMetadata {
    HttpMetadata {
        content_type: Some(content_type.to_owned()),
        ..HttpMetadata::default()
    }
}

impl Blobs for R2Blobs {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.0
            .put(key, bytes)
            .http_metadata(content_type_metadata(content_type))
            .execute()
            .await
            .map_err(r2_error)?;
        Ok(())
    }

    async fn get(&self, key: &str, wanted: Option<ByteRange>) -> Result<Option<Blob>, StoreError> {
        let mut get = self.0.get(key);
        if let Some(wanted) = wanted {
            get = get.range(range(wanted)?);
        }
        let Some(object) = get.execute().await.map_err(r2_error)? else {
            return Ok(None);
        };
        let meta = meta(&object);
        let bytes = match object.body() {
            Some(body) => body.bytes().await.map_err(r2_error)?,
            None => Vec::new(),
        };
        Ok(Some(Blob { meta, bytes }))
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        Ok(self.0.head(key).await.map_err(r2_error)?.as_ref().map(meta))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await.map_err(r2_error)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut list = self.0.list().prefix(prefix);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            let page = list.execute().await.map_err(r2_error)?;
            keys.extend(page.objects().iter().map(Object::key));
            match (page.truncated(), page.cursor()) {
                (true, Some(next)) => cursor = Some(next),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn begin_upload(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        let upload = self
            .0
            .create_multipart_upload(key)
            .http_metadata(content_type_metadata(content_type))
            .execute()
            .await
            .map_err(r2_error)?;
        Ok(upload.upload_id().await)
    }

    async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        bytes: Vec<u8>,
    ) -> Result<UploadedPart, StoreError> {
        let upload = self.resume_upload(key, upload_id)?;
        let part = upload
            .upload_part(number, bytes)
            .await
            .map_err(upload_error)?;
        Ok(UploadedPart {
            number,
            etag: part.etag(),
        })
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), StoreError> {
        let upload = self.resume_upload(key, upload_id)?;
        upload
            .complete(
                parts
                    .iter()
                    .map(|p| worker::UploadedPart::new(p.number, p.etag.clone())),
            )
            .await
            .map_err(upload_error)?;
        Ok(())
    }
}

/// R2's multipart errors: an unknown or finished upload is `NotFound`, parts that do not
/// match what was stored (`completeMultipartUpload: One or more of the specified parts could
/// not be found`) or are too small are a `Precondition`.
fn upload_error(err: worker::Error) -> StoreError {
    let message = err.to_string();
    if message.contains("NoSuchUpload") || message.contains("does not exist") {
        StoreError::NotFound(message)
    } else if message.contains("could not be found")
        || message.contains("InvalidPart")
        || message.contains("EntityTooSmall")
    {
        StoreError::Precondition(message)
    } else {
        StoreError::backend("r2", message)
    }
}

//! Where segments come from and where the MP4 goes: local files, S3-compatible object storage
//! (AWS S3, Cloudflare R2, any S3 API) through `object_store`, and plain HTTP(S) signed URLs.
//!
//! Remote inputs are downloaded (streamed) into a temporary directory before stitching, since
//! the remux reads every input twice; memory stays flat, the disk holds one copy of the
//! recording. Outputs are published atomically:
//!
//! * a local file is written under a temporary name and renamed ([`crate::stitch`]);
//! * an object is uploaded with a single `PUT` when small and a multipart upload otherwise;
//!   S3 makes the object visible only when the upload completes, and an upload that fails is
//!   aborted, so a half-written object is never published;
//! * a signed `PUT` URL receives the whole file in one request with its `Content-Length`.
//!
//! S3 credentials and endpoint come from the standard AWS variables read by `object_store`
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for R2 or a
//! local server, `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint).
//!
//! The functions are blocking: each [`Storage`] owns a small single-threaded async runtime.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::stitch::natural_cmp;

/// Objects up to this size are uploaded with one `PUT`; larger ones in parts of this size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at the same time.
const PART_CONCURRENCY: usize = 2;
/// Read size when streaming files.
const IO_CHUNK: usize = 1024 * 1024;

/// Errors moving data in and out.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A location string could not be understood.
    #[error("invalid location {0:?}")]
    InvalidLocation(String),
    /// An object or URL does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The object store failed.
    #[error("object store error for {location}: {message}")]
    Store {
        /// Bucket and key.
        location: String,
        /// What the store said.
        message: String,
    },
    /// An HTTP request failed or returned an error status.
    #[error("HTTP request to {url} failed: {message}")]
    Http {
        /// The URL without its query string (which holds the signature).
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
}

/// A URL with its query string (signature) removed, for messages and logs.
pub fn redact_url(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

/// A bucket (or local directory) and a key prefix inside it.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    name: String,
    prefix: String,
}

impl Bucket {
    /// Opens `s3://bucket[/prefix]` (configured from the AWS environment variables) or a
    /// local directory (`file:///dir` or a plain path) as a bucket.
    ///
    /// # Errors
    /// [`StorageError::InvalidLocation`] for an unusable specification, [`StorageError::Store`]
    /// when the store cannot be configured.
    pub fn open(spec: &str) -> Result<Self, StorageError> {
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageError::InvalidLocation(spec.to_string()));
            }
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| StorageError::Store {
                    location: spec.to_string(),
                    message: e.to_string(),
                })?;
            return Ok(Self {
                store: Arc::new(store),
                name: format!("s3://{bucket}"),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let dir = spec.strip_prefix("file://").unwrap_or(spec);
        if dir.is_empty() {
            return Err(StorageError::InvalidLocation(spec.to_string()));
        }
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.into(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| StorageError::Store {
            location: spec.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            store: Arc::new(store),
            name: dir.to_string(),
            prefix: String::new(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{}", self.prefix, key))
        }
    }

    fn describe(&self, key: &str) -> String {
        format!("{}/{}", self.name, self.path(key))
    }

    fn store_error(&self, key: &str, error: object_store::Error) -> StorageError {
        match error {
            object_store::Error::NotFound { .. } => StorageError::NotFound(self.describe(key)),
            other => StorageError::Store {
                location: self.describe(key),
                message: other.to_string(),
            },
        }
    }
}

/// One input segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file.
    File(PathBuf),
    /// A key in a bucket.
    Object(String),
    /// A (signed) HTTP(S) GET URL.
    Url(String),
}

/// Blocking access to buckets and URLs.
#[derive(Debug)]
pub struct Storage {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Storage {
    /// Starts the runtime and HTTP client.
    ///
    /// # Errors
    /// [`StorageError::Runtime`] when the runtime or TLS set-up fails.
    pub fn new() -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StorageError::Runtime)?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| StorageError::Runtime(std::io::Error::other(e)))?;
        Ok(Self { runtime, http })
    }

    /// Lists the segment keys under `prefix` in natural order, relative to the bucket prefix:
    /// the `.ts` keys, or for a CMAF recording the init segment (`init*.mp4`) then the `.m4s`
    /// keys.
    ///
    /// # Errors
    /// [`StorageError::Store`] when listing fails.
    pub fn list_segments(
        &self,
        bucket: &Bucket,
        prefix: &str,
    ) -> Result<Vec<String>, StorageError> {
        let base = bucket.path(prefix);
        let mut keys = self.runtime.block_on(async {
            let mut listing = bucket.store.list(Some(&base));
            let mut keys = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| bucket.store_error(prefix, e))?;
                keys.push(meta.location.to_string());
            }
            Ok::<_, StorageError>(keys)
        })?;
        keys.sort_by(|a, b| natural_cmp(a, b));
        let name = |k: &str| {
            k.rsplit('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        let ts: Vec<String> = keys
            .iter()
            .filter(|k| name(k).ends_with(".ts"))
            .cloned()
            .collect();
        let init = keys.iter().find(|k| {
            let n = name(k);
            n.starts_with("init") && n.ends_with(".mp4")
        });
        keys = match (ts.is_empty(), init) {
            (false, _) | (true, None) => ts,
            // CMAF: the init segment, then the media segments.
            (true, Some(init)) => std::iter::once(init.clone())
                .chain(keys.iter().filter(|k| name(k).ends_with(".m4s")).cloned())
                .collect(),
        };
        let strip = if bucket.prefix.is_empty() {
            0
        } else {
            bucket.prefix.len() + 1
        };
        Ok(keys
            .into_iter()
            .filter_map(|k| k.get(strip..).map(str::to_string))
            .collect())
    }

    /// Streams an object into the local file `dest`; returns its size.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when the object does not exist, other variants when the
    /// download or the local write fails.
    pub fn download_object(
        &self,
        bucket: &Bucket,
        key: &str,
        dest: &Path,
    ) -> Result<u64, StorageError> {
        let mut file = create_file(dest)?;
        let path = bucket.path(key);
        self.runtime.block_on(async {
            let result = bucket
                .store
                .get(&path)
                .await
                .map_err(|e| bucket.store_error(key, e))?;
            let mut stream = result.into_stream();
            let mut total = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| bucket.store_error(key, e))?;
                write_chunk(&mut file, dest, &chunk)?;
                total += chunk.len() as u64;
            }
            Ok(total)
        })
    }

    /// Streams a GET of `url` into the local file `dest`; returns its size.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] on 404, [`StorageError::Http`] on other failures.
    pub fn download_url(&self, url: &str, dest: &Path) -> Result<u64, StorageError> {
        let mut file = create_file(dest)?;
        let http_error = |message: String| StorageError::Http {
            url: redact_url(url),
            message,
        };
        self.runtime.block_on(async {
            let mut response = send(self.http.get(url), url).await?;
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(StorageError::NotFound(redact_url(url)));
            }
            if !status.is_success() {
                return Err(http_error(format!("status {status}")));
            }
            let mut total = 0u64;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| http_error(e.without_url().to_string()))?
            {
                write_chunk(&mut file, dest, &chunk)?;
                total += chunk.len() as u64;
            }
            Ok(total)
        })
    }

    /// Downloads `sources` into `dir` (local files are used where they are) and returns the
    /// local paths in the same order.
    ///
    /// # Errors
    /// The first download failure.
    pub fn stage(
        &self,
        bucket: Option<&Bucket>,
        sources: &[Source],
        dir: &Path,
    ) -> Result<Vec<PathBuf>, StorageError> {
        let mut paths = Vec::with_capacity(sources.len());
        for (index, source) in sources.iter().enumerate() {
            let local = dir.join(format!("{index:06}.seg"));
            match source {
                Source::File(path) => {
                    paths.push(path.clone());
                    continue;
                }
                Source::Object(key) => {
                    let bucket = bucket.ok_or_else(|| {
                        StorageError::InvalidLocation(format!("{key} (no bucket configured)"))
                    })?;
                    self.download_object(bucket, key, &local)?;
                }
                Source::Url(url) => {
                    self.download_url(url, &local)?;
                }
            }
            paths.push(local);
        }
        Ok(paths)
    }

    /// Uploads the local file `src` to `key`: one `PUT` when small, a multipart upload
    /// otherwise (aborted on failure). The object appears only when complete.
    ///
    /// # Errors
    /// [`StorageError`] when reading `src` or the upload fails.
    pub fn upload_object(
        &self,
        src: &Path,
        bucket: &Bucket,
        key: &str,
    ) -> Result<(), StorageError> {
        let io_error = |source| StorageError::Io {
            path: src.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(src).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        let path = bucket.path(key);
        self.runtime.block_on(async {
            if size <= PART_SIZE as u64 {
                let mut data = Vec::with_capacity(size as usize);
                file.read_to_end(&mut data).map_err(io_error)?;
                bucket
                    .store
                    .put(&path, PutPayload::from(data))
                    .await
                    .map_err(|e| bucket.store_error(key, e))?;
                return Ok(());
            }
            let upload = bucket
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| bucket.store_error(key, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut buf = vec![0u8; IO_CHUNK];
            let streamed: Result<(), StorageError> = async {
                loop {
                    let n = read_some(&mut file, &mut buf).map_err(io_error)?;
                    if n == 0 {
                        return Ok(());
                    }
                    writer
                        .wait_for_capacity(PART_CONCURRENCY)
                        .await
                        .map_err(|e| bucket.store_error(key, e))?;
                    writer.write(&buf[..n]);
                }
            }
            .await;
            match streamed {
                Ok(()) => {
                    writer
                        .finish()
                        .await
                        .map_err(|e| bucket.store_error(key, e))?;
                    Ok(())
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    Err(e)
                }
            }
        })
    }

    /// Uploads the local file `src` to a signed upload URL, streaming the body: with one `PUT`,
    /// or, when the file is larger than `part_threshold`, in parts (`POST {url}/parts`, then
    /// `PUT {url}/parts/{n}?upload_id=...` for each part of the size the server names, then
    /// `POST {url}/parts/complete`), since one request to the Worker carries at most 96 MiB.
    ///
    /// # Errors
    /// [`StorageError::Http`] when a request fails or is refused; [`StorageError::Io`] when
    /// the file cannot be read.
    pub fn upload_url(
        &self,
        src: &Path,
        url: &str,
        part_threshold: Option<u64>,
    ) -> Result<(), StorageError> {
        let size = std::fs::metadata(src)
            .map_err(|source| StorageError::Io {
                path: src.to_path_buf(),
                source,
            })?
            .len();
        let http_error = |message: String| StorageError::Http {
            url: redact_url(url),
            message,
        };
        self.runtime.block_on(async {
            if part_threshold.is_none_or(|limit| size <= limit) {
                let response = send(
                    self.http
                        .put(url)
                        .header(reqwest::header::CONTENT_LENGTH, size)
                        .header(reqwest::header::CONTENT_TYPE, "video/mp4")
                        .body(file_body(src, 0, size)?),
                    url,
                )
                .await?;
                return expect_status(response, &[200, 201]).await.map(drop);
            }
            let begin = send(self.http.post(format!("{url}/parts")), url).await?;
            let begin: BegunUpload = expect_json(begin, 201).await?;
            if begin.part_bytes == 0 {
                return Err(http_error("the server named a part size of 0".into()));
            }
            let mut parts = Vec::new();
            let mut offset = 0;
            while offset < size {
                let length = begin.part_bytes.min(size - offset);
                let number = parts.len() + 1;
                let mut part_url = reqwest::Url::parse(&format!("{url}/parts/{number}"))
                    .map_err(|e| http_error(e.to_string()))?;
                part_url
                    .query_pairs_mut()
                    .append_pair("upload_id", &begin.upload_id);
                let response = send(
                    self.http
                        .put(part_url)
                        .header(reqwest::header::CONTENT_LENGTH, length)
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .body(file_body(src, offset, length)?),
                    url,
                )
                .await?;
                parts.push(expect_json::<serde_json::Value>(response, 200).await?);
                offset += length;
            }
            let completion =
                serde_json::json!({ "upload_id": begin.upload_id, "parts": parts }).to_string();
            let response = send(
                self.http
                    .post(format!("{url}/parts/complete"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(completion),
                url,
            )
            .await?;
            expect_status(response, &[201]).await.map(drop)
        })
    }

    /// POSTs a JSON body with extra headers; returns the response status.
    ///
    /// # Errors
    /// [`StorageError::Http`] when no response arrives.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<u16, StorageError> {
        self.runtime.block_on(async {
            let mut request = self
                .http
                .post(url)
                .timeout(std::time::Duration::from_secs(30))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = send(request, url).await?;
            Ok(response.status().as_u16())
        })
    }
}

/// The server's answer to `POST {url}/parts`.
#[derive(serde::Deserialize)]
struct BegunUpload {
    upload_id: String,
    part_bytes: u64,
}

/// `length` bytes of the file at `path` from `offset`, as a streamed request body.
fn file_body(path: &Path, offset: u64, length: u64) -> Result<reqwest::Body, StorageError> {
    use std::io::Seek;
    let io_error = |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .map_err(io_error)?;
    let chunks = futures_util::stream::unfold(Some((file, length)), |state| async move {
        let (mut file, left) = state?;
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; IO_CHUNK.min(usize::try_from(left).unwrap_or(IO_CHUNK))];
        match read_some(&mut file, &mut buf) {
            Ok(0) => Some((
                Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                None,
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some((file, left - n as u64))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(reqwest::Body::wrap_stream(chunks))
}

/// Sends `request`; a failure to get any response is an error naming `url` (redacted).
async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<reqwest::Response, StorageError> {
    request.send().await.map_err(|e| StorageError::Http {
        url: redact_url(url),
        message: e.without_url().to_string(),
    })
}

/// The response when its status is one of `expected`; an error naming the status and the
/// start of the body otherwise.
async fn expect_status(
    response: reqwest::Response,
    expected: &[u16],
) -> Result<reqwest::Response, StorageError> {
    let status = response.status().as_u16();
    if expected.contains(&status) {
        return Ok(response);
    }
    let url = redact_url(response.url().as_str());
    let body = response.text().await.unwrap_or_default();
    Err(StorageError::Http {
        url,
        message: format!(
            "status {status}: {}",
            body.chars().take(300).collect::<String>()
        ),
    })
}

/// The response's JSON body when its status is `expected`.
async fn expect_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    expected: u16,
) -> Result<T, StorageError> {
    let response = expect_status(response, &[expected]).await?;
    let url = redact_url(response.url().as_str());
    let body = response.bytes().await.map_err(|e| StorageError::Http {
        url: url.clone(),
        message: e.without_url().to_string(),
    })?;
    serde_json::from_slice(&body).map_err(|e| StorageError::Http {
        url,
        message: format!("unexpected answer: {e}"),
    })
}

fn create_file(path: &Path) -> Result<std::fs::File, StorageError> {
    std::fs::File::create(path).map_err(|source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_chunk(file: &mut std::fs::File, path: &Path, chunk: &[u8]) -> Result<(), StorageError> {
    file.write_all(chunk).map_err(|source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_some(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_signatures() {
        assert_eq!(
            redact_url("https://cdn.example/seg1.ts?sig=abc&exp=1"),
            "https://cdn.example/seg1.ts"
        );
        assert_eq!(redact_url("http://h/x"), "http://h/x");
    }

    #[test]
    fn local_bucket_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().join("bucket").to_str().unwrap()).unwrap();
        let storage = Storage::new().unwrap();
        let src = dir.path().join("in.bin");
        std::fs::write(&src, b"hello").unwrap();
        storage
            .upload_object(&src, &bucket, "rec/seg10.ts")
            .unwrap();
        storage.upload_object(&src, &bucket, "rec/seg9.ts").unwrap();
        storage
            .upload_object(&src, &bucket, "rec/index.m3u8")
            .unwrap();
        assert_eq!(
            storage.list_segments(&bucket, "rec").unwrap(),
            vec!["rec/seg9.ts", "rec/seg10.ts"]
        );
        let back = dir.path().join("back.bin");
        assert_eq!(
            storage
                .download_object(&bucket, "rec/seg9.ts", &back)
                .unwrap(),
            5
        );
        assert_eq!(std::fs::read(&back).unwrap(), b"hello");
        assert!(matches!(
            storage.download_object(&bucket, "rec/missing.ts", &back),
            Err(StorageError::NotFound(_))
        ));
    }

    #[test]
    fn local_bucket_lists_a_cmaf_recording_init_first() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().join("bucket").to_str().unwrap()).unwrap();
        let storage = Storage::new().unwrap();
        let src = dir.path().join("in.bin");
        std::fs::write(&src, b"x").unwrap();
        for key in [
            "cm/seg10.m4s",
            "cm/seg2.m4s",
            "cm/index.m3u8",
            "cm/init.mp4",
        ] {
            storage.upload_object(&src, &bucket, key).unwrap();
        }
        assert_eq!(
            storage.list_segments(&bucket, "cm").unwrap(),
            vec!["cm/init.mp4", "cm/seg2.m4s", "cm/seg10.m4s"]
        );
    }
}

//! The ports: small async traits that each host implements over its own bindings, and the
//! [`Platform`] bundle the core is generic over.
//!
//! Ports are deliberately minimal; helpers built on top of them live in extension traits with
//! blanket implementations (see [`SqlExt`]). Every port has an in-memory adapter in
//! [`crate::memory`] and a conformance suite in [`crate::ports::conformance`] that the real adapters
//! pass inside their runtime.

pub mod conformance;
pub mod metered;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{MailError, StoreError};
use crate::model::ids;
use crate::model::job::Job;
use crate::model::room::{RoomRequest, RoomResponse};

/// A key-value store for small, hot, eventually consistent data (caches, counters, rate
/// limits). Cloudflare: Workers KV. Spin: key-value store.
pub trait Kv {
    /// Reads a value; `Ok(None)` when the key does not exist.
    ///
    /// # Errors
    /// `Backend` when the store cannot be reached.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes a value, replacing any previous one. `ttl_seconds` asks the store to forget it
    /// after that many seconds (stores may round up to their minimum, 60 s on Workers KV).
    ///
    /// # Errors
    /// `Backend` when the write fails.
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl_seconds: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Deletes a key; deleting a missing key is not an error.
    ///
    /// # Errors
    /// `Backend` when the delete fails.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// A value bound to a SQL parameter (`?1`, `?2`, ... in statement order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (D1 carries it as a JavaScript number: exact up to 2^53).
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        SqlValue::Text(value.to_owned())
    }
}
impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        SqlValue::Text(value)
    }
}
impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::Integer(value)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(SqlValue::Null, Into::into)
    }
}

/// One SQL statement with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// SQL text with `?` placeholders; never built from user input.
    pub sql: String,
    /// Parameters bound in order.
    pub params: Vec<SqlValue>,
}

impl Statement {
    /// A statement with parameters.
    pub fn new(sql: impl Into<String>, params: Vec<SqlValue>) -> Self {
        Statement {
            sql: sql.into(),
            params,
        }
    }
}

/// A result row: column name to JSON value.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// A relational store (the catalogue). Cloudflare: D1. Spin: SQLite. Both apply the same
/// `schema/migrations`.
pub trait Sql {
    /// Runs a query and returns its rows.
    ///
    /// # Errors
    /// `Backend` on SQL errors and unreachable databases.
    async fn query(&self, statement: &Statement) -> Result<Vec<Row>, StoreError>;

    /// Runs a statement and returns the number of rows it changed.
    ///
    /// # Errors
    /// `AlreadyExists` when a UNIQUE or PRIMARY KEY constraint fails; `Backend` otherwise.
    async fn execute(&self, statement: &Statement) -> Result<u64, StoreError>;

    /// Runs statements atomically, all of them or none, and returns the rows each one
    /// returned (empty for writes), so a batch can end with a `SELECT` that sees its writes.
    ///
    /// # Errors
    /// As [`Sql::execute`]; on error nothing was applied.
    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>, StoreError>;
}

/// Helpers over [`Sql`] for every implementation.
pub trait SqlExt: Sql {
    /// Runs a query and deserializes each row into `T`.
    ///
    /// # Errors
    /// `Backend` when the query fails or a row does not match `T`.
    async fn query_as<T: DeserializeOwned>(
        &self,
        statement: &Statement,
    ) -> Result<Vec<T>, StoreError> {
        self.query(statement)
            .await?
            .into_iter()
            .map(|row| {
                serde_json::from_value(serde_json::Value::Object(row))
                    .map_err(|e| StoreError::backend("sql", format!("row shape: {e}")))
            })
            .collect()
    }

    /// Runs a query expected to return at most one row and deserializes it.
    ///
    /// # Errors
    /// As [`SqlExt::query_as`].
    async fn query_one<T: DeserializeOwned>(
        &self,
        statement: &Statement,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.query_as(statement).await?.into_iter().next())
    }
}
impl<S: Sql + ?Sized> SqlExt for S {}

/// A byte range of a blob: `start..start+length`, or the last `suffix` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `length` bytes from `offset` (`None`: to the end).
    From {
        /// First byte.
        offset: u64,
        /// How many bytes, or to the end.
        length: Option<u64>,
    },
    /// The last `n` bytes.
    Suffix(u64),
}

/// A blob's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// Total size in bytes.
    pub size: u64,
    /// Content type recorded at upload, if any.
    pub content_type: Option<String>,
    /// Entity tag (quoted form for HTTP).
    pub etag: String,
}

/// A blob read: its metadata and the requested bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Metadata of the whole object.
    pub meta: BlobMeta,
    /// The bytes read (the whole object, or the requested range).
    pub bytes: Vec<u8>,
}

/// A stored part of a multipart upload: its number and the store's tag for it, both needed
/// to complete the upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UploadedPart {
    /// 1-based position of the part in the object.
    pub number: u16,
    /// The store's tag for the part's bytes.
    pub etag: String,
}

/// An object store for media (segments, MP4s, posters). Cloudflare: R2. Spin: chunks in the
/// key-value store.
pub trait Blobs {
    /// Stores `bytes` under `key`, replacing any previous object.
    ///
    /// # Errors
    /// `Backend` when the upload fails.
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError>;

    /// Reads an object, or a range of it; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// `Backend` when the read fails.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Option<Blob>, StoreError>;

    /// Reads an object's metadata; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// `Backend` when the request fails.
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError>;

    /// Deletes an object; deleting a missing object is not an error.
    ///
    /// # Errors
    /// `Backend` when the delete fails.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Lists the keys under `prefix`, in lexicographic order.
    ///
    /// # Errors
    /// `Backend` when the listing fails.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Starts a multipart upload to `key`, for objects larger than one request can carry;
    /// returns the upload's id. Every part but the last must have the same size, at least
    /// [`crate::config::MIN_PART_BYTES`]. Nothing is visible under `key` before
    /// [`Blobs::complete_upload`].
    ///
    /// # Errors
    /// `Backend` when the store refuses.
    async fn begin_upload(&self, key: &str, content_type: &str) -> Result<String, StoreError>;

    /// Stores part `number` (1-based) of an upload begun with [`Blobs::begin_upload`].
    ///
    /// # Errors
    /// `NotFound` for an unknown upload; `Backend` when the store refuses.
    async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        bytes: Vec<u8>,
    ) -> Result<UploadedPart, StoreError>;

    /// Completes an upload: the object under `key` becomes `parts` in order, replacing any
    /// previous object.
    ///
    /// # Errors
    /// `NotFound` for an unknown upload; `Precondition` when the parts do not match what was
    /// stored; `Backend` when the store refuses.
    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), StoreError>;
}

/// The live rooms: one stateful, single-threaded object per channel that keeps the live
/// window and the presence. Cloudflare: a Durable Object per channel.
pub trait Live {
    /// Whether a room holds a request that asks to wait ([`RoomRequest::hold_until_ms`]:
    /// a blocking playlist reload, the next low-latency part) until it can answer, instead
    /// of answering at once. Low-latency playlists are served only where rooms hold.
    const HOLDS: bool = false;

    /// Sends a request to the room named `room` and returns its answer.
    ///
    /// # Errors
    /// `Backend` when the room cannot be reached or answers with something unreadable.
    async fn call(&self, room: &str, request: &RoomRequest) -> Result<RoomResponse, StoreError>;
}

/// Durable storage private to one room (the Durable Object's own storage) and its alarm.
pub trait RoomStore {
    /// Reads a JSON value; `Ok(None)` when unset.
    ///
    /// # Errors
    /// `Backend` when the storage fails.
    async fn load(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Writes a JSON value.
    ///
    /// # Errors
    /// `Backend` when the storage fails.
    async fn save(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError>;

    /// Deletes keys; missing keys are not an error.
    ///
    /// # Errors
    /// `Backend` when the storage fails.
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError>;

    /// Every key under `prefix` with its value, in key order.
    ///
    /// # Errors
    /// `Backend` when the storage fails.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>, StoreError>;

    /// Asks the host to call the room's alarm at `at_ms` (Unix ms), replacing any earlier
    /// request.
    ///
    /// # Errors
    /// `Backend` when the alarm cannot be set.
    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError>;
}

/// The WebSocket connections a room holds (hibernatable on Cloudflare).
pub trait RoomSockets {
    /// How many clients are connected.
    fn count(&self) -> usize;
    /// Sends a text message to every connected client; failures to single clients are
    /// ignored (they are gone).
    fn send_all(&self, message: &str);
}

/// An object kept by the [`EdgeCache`]: a whole successful response body with its type and
/// the time it stops being fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedObject {
    /// The `Content-Type` to answer with.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// When the object stops being fresh, Unix ms. Readers treat a stale object as a miss.
    pub expires_at_ms: u64,
}

/// A shared HTTP cache near the viewer, keyed by absolute URLs that carry no token.
/// Cloudflare: the Cache API of the data center. Spin: none ([`NoEdgeCache`]).
pub trait EdgeCache {
    /// Whether the cache keeps what it is given (false for [`NoEdgeCache`]).
    const STORES: bool = true;

    /// Reads a fresh object; `Ok(None)` on a miss.
    ///
    /// # Errors
    /// `Backend` when the cache cannot be read (callers treat it as a miss).
    async fn get(&self, key: &str) -> Result<Option<CachedObject>, StoreError>;

    /// Stores an object until its `expires_at_ms` (caches may forget it earlier).
    ///
    /// # Errors
    /// `Backend` when the cache refuses (callers ignore it).
    async fn put(&self, key: &str, object: &CachedObject) -> Result<(), StoreError>;

    /// Forgets an object (in this location; other locations keep theirs until it expires).
    ///
    /// # Errors
    /// `Backend` when the cache refuses.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// The edge cache of hosts that have none: every read misses, every write is dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEdgeCache;

impl EdgeCache for NoEdgeCache {
    const STORES: bool = false;

    async fn get(&self, _key: &str) -> Result<Option<CachedObject>, StoreError> {
        Ok(None)
    }
    async fn put(&self, _key: &str, _object: &CachedObject) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Background work: messages handled later by the job consumer ([`crate::queue::run`]).
/// Cloudflare: a Queue producer.
pub trait Jobs {
    /// Enqueues a job, to run after `delay_s` seconds (0: as soon as possible).
    ///
    /// # Errors
    /// `Backend` when the queue refuses the message.
    async fn enqueue_after(&self, job: &Job, delay_s: u32) -> Result<(), StoreError>;

    /// Enqueues several jobs, each with its delay in seconds. Hosts with a batch API send
    /// them in one call (a hook's whole fan-out lands in one consumer batch); the default
    /// sends them one by one.
    ///
    /// # Errors
    /// As [`Jobs::enqueue_after`]; jobs before the failing one may have been enqueued.
    async fn enqueue_many(&self, jobs: &[(Job, u32)]) -> Result<(), StoreError> {
        for (job, delay_s) in jobs {
            self.enqueue_after(job, *delay_s).await?;
        }
        Ok(())
    }
}

/// Helpers over [`Jobs`] for every implementation.
pub trait JobsExt: Jobs {
    /// Enqueues a job to run as soon as possible.
    ///
    /// # Errors
    /// As [`Jobs::enqueue_after`].
    async fn enqueue(&self, job: &Job) -> Result<(), StoreError> {
        self.enqueue_after(job, 0).await
    }
}
impl<J: Jobs + ?Sized> JobsExt for J {}

/// An outgoing HTTP request (webhook deliveries, transcode jobs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// The method.
    pub method: http::Method,
    /// The absolute URL.
    pub url: String,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Give up after this many milliseconds.
    pub timeout_ms: u64,
}

/// The answer to an [`OutboundRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    /// The status code.
    pub status: u16,
    /// The body (read up to a host-defined limit).
    pub body: Vec<u8>,
}

/// Why an outgoing request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The connection failed or the host refused the request.
    #[error("network error: {0}")]
    Network(String),
}

/// Outgoing HTTP. Cloudflare: `fetch`. Spin: outbound HTTP.
pub trait Outbound {
    /// Sends a request and returns the answer, whatever its status.
    ///
    /// # Errors
    /// [`OutboundError`] when there is no answer.
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError>;
}

/// One message for the mail server: the envelope and the RFC 5322 bytes
/// ([`crate::services::mail`] builds them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// Envelope sender (`MAIL FROM`).
    pub from: String,
    /// Envelope recipient (`RCPT TO`).
    pub to: String,
    /// The message: headers and body, CRLF line ends.
    pub data: Vec<u8>,
}

/// Outgoing mail through the deployment's mail server (`SMTP_URL`). Hosts open a
/// connection ([`MailStream`]) and run [`crate::smtp::deliver`] over it; the in-memory
/// adapter keeps the messages for unit tests.
pub trait Mailer {
    /// Hands one message to the mail server.
    ///
    /// # Errors
    /// [`MailError`] when the server is not configured, not reached or refuses it.
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError>;
}

/// A connection to a mail server as the SMTP dialogue ([`crate::smtp`]) uses it: the host's
/// TCP (or TLS) socket.
pub trait MailStream {
    /// Reads some bytes into `buf`; `Ok(0)` at the end of the stream.
    ///
    /// # Errors
    /// [`MailError::Connection`] when the connection fails.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, MailError>;

    /// Writes all of `bytes`.
    ///
    /// # Errors
    /// [`MailError::Connection`] when the connection fails.
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), MailError>;
}

/// Wall-clock time.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// Cryptographically secure randomness.
pub trait Entropy {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

impl dyn Entropy + '_ {
    /// A new unguessable identifier `"{prefix}_{16 base64url chars}"`
    /// ([`crate::model::ids::format_id`] of fresh random bytes).
    pub fn new_id(&self, prefix: &str) -> String {
        let mut random = [0u8; ids::ID_RANDOM_BYTES];
        self.fill(&mut random);
        ids::format_id(prefix, &random)
    }
}

/// Everything the core needs from a host, bundled. The core is generic over it; hosts
/// implement it once over their bindings.
pub trait Platform {
    /// The key-value port.
    type Kv: Kv;
    /// The SQL port.
    type Sql: Sql;
    /// The blob port.
    type Blobs: Blobs;
    /// The live-room port.
    type Live: Live;
    /// The job queue port.
    type Jobs: Jobs;
    /// The outgoing HTTP port.
    type Outbound: Outbound;
    /// The edge cache port.
    type EdgeCache: EdgeCache;
    /// The outgoing mail port.
    type Mailer: Mailer;

    /// The deployment's configuration.
    fn config(&self) -> &Config;
    /// The key-value store.
    fn kv(&self) -> &Self::Kv;
    /// The SQL database.
    fn sql(&self) -> &Self::Sql;
    /// The blob store.
    fn blobs(&self) -> &Self::Blobs;
    /// The live rooms.
    fn live(&self) -> &Self::Live;
    /// The job queue.
    fn jobs(&self) -> &Self::Jobs;
    /// Outgoing HTTP.
    fn outbound(&self) -> &Self::Outbound;
    /// The edge cache.
    fn edge_cache(&self) -> &Self::EdgeCache;
    /// Outgoing mail.
    fn mailer(&self) -> &Self::Mailer;
    /// The clock.
    fn clock(&self) -> &dyn Clock;
    /// The randomness source.
    fn entropy(&self) -> &dyn Entropy;

    /// Waits about `ms` milliseconds on the host's timer, letting other requests of the
    /// isolate run. Hosts that run one request at a time (Spin, the in-process tests) keep
    /// this default, which only yields once.
    async fn sleep(&self, ms: u64) {
        let _ = ms;
        YieldNow(false).await;
    }
}

/// A future that is pending once (asking to be polled again at once), then ready: lets the
/// other futures of a single-threaded executor run.
#[derive(Debug)]
pub struct YieldNow(pub bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

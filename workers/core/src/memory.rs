//! In-memory adapters of the ports, for unit tests and examples. They hold the same
//! contracts as the real backends (see [`crate::ports::conformance`]) except [`UnavailableSql`]:
//! the core carries no SQL engine, so SQL is tested in the real runtimes.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

use crate::config::Config;
use crate::error::{MailError, StoreError};
use crate::model::job::Job;
use crate::model::room::{RoomRequest, RoomResponse};
use crate::ports::{
    Blob, BlobMeta, Blobs, ByteRange, CachedObject, Clock, EdgeCache, Entropy, Jobs, Kv, Live,
    Mailer, Outbound, OutboundError, OutboundRequest, OutboundResponse, OutgoingMail, Platform,
    RoomSockets, RoomStore, Row, Sql, Statement, UploadedPart,
};
use crate::room;

/// [`Kv`] over a map. TTLs are accepted and ignored.
#[derive(Debug, Default)]
pub struct MemoryKv {
    entries: RefCell<BTreeMap<String, Vec<u8>>>,
}

impl Kv for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.borrow().get(key).cloned())
    }
    async fn put(&self, key: &str, value: &[u8], _ttl: Option<u64>) -> Result<(), StoreError> {
        self.entries
            .borrow_mut()
            .insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries.borrow_mut().remove(key);
        Ok(())
    }
}

/// [`Blobs`] over a map.
#[derive(Debug, Default)]
pub struct MemoryBlobs {
    objects: RefCell<BTreeMap<String, (String, Vec<u8>)>>,
    uploads: RefCell<BTreeMap<String, MemoryUpload>>,
    next_upload: Cell<u64>,
}

/// A multipart upload in progress: its key, content type and parts by number.
#[derive(Debug)]
struct MemoryUpload {
    key: String,
    content_type: String,
    parts: BTreeMap<u16, Vec<u8>>,
}

fn part_tag(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bytes of `data` that `range` selects (clamped to the data).
pub fn slice_range(data: &[u8], range: Option<ByteRange>) -> &[u8] {
    let len = data.len() as u64;
    let (start, end) = match range {
        None => (0, len),
        Some(ByteRange::From { offset, length }) => {
            let start = offset.min(len);
            let end = length.map_or(len, |l| start.saturating_add(l).min(len));
            (start, end)
        }
        Some(ByteRange::Suffix(n)) => (len.saturating_sub(n), len),
    };
    // Both bounds are clamped to `len`, which came from a usize.
    &data[start as usize..end as usize]
}

impl Blobs for MemoryBlobs {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.objects
            .borrow_mut()
            .insert(key.to_owned(), (content_type.to_owned(), bytes));
        Ok(())
    }
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Option<Blob>, StoreError> {
        let objects = self.objects.borrow();
        Ok(objects.get(key).map(|(ct, data)| Blob {
            meta: meta(ct, data),
            bytes: slice_range(data, range).to_vec(),
        }))
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        Ok(self
            .objects
            .borrow()
            .get(key)
            .map(|(ct, data)| meta(ct, data)))
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.objects.borrow_mut().remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .objects
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    async fn begin_upload(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        let id = format!("upload-{}", self.next_upload.get());
        self.next_upload.set(self.next_upload.get() + 1);
        self.uploads.borrow_mut().insert(
            id.clone(),
            MemoryUpload {
                key: key.to_owned(),
                content_type: content_type.to_owned(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }
    async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        bytes: Vec<u8>,
    ) -> Result<UploadedPart, StoreError> {
        let mut uploads = self.uploads.borrow_mut();
        let upload = uploads
            .get_mut(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| StoreError::NotFound(format!("upload {upload_id}")))?;
        let etag = part_tag(&bytes);
        upload.parts.insert(number, bytes);
        Ok(UploadedPart { number, etag })
    }
    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), StoreError> {
        let mut uploads = self.uploads.borrow_mut();
        let upload = uploads
            .get(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| StoreError::NotFound(format!("upload {upload_id}")))?;
        let mut bytes = Vec::new();
        for part in parts {
            let stored = upload
                .parts
                .get(&part.number)
                .filter(|b| part_tag(b) == part.etag)
                .ok_or_else(|| {
                    StoreError::Precondition(format!("part {} does not match", part.number))
                })?;
            bytes.extend_from_slice(stored);
        }
        let content_type = upload.content_type.clone();
        uploads.remove(upload_id);
        self.objects
            .borrow_mut()
            .insert(key.to_owned(), (content_type, bytes));
        Ok(())
    }
}

fn meta(content_type: &str, data: &[u8]) -> BlobMeta {
    BlobMeta {
        size: data.len() as u64,
        content_type: Some(content_type.to_owned()),
        etag: format!("\"{}\"", data.len()),
    }
}

/// [`RoomStore`] over a map; the requested alarm is kept in [`MemoryRoomStore::alarm_at`].
#[derive(Debug, Default)]
pub struct MemoryRoomStore {
    values: RefCell<BTreeMap<String, serde_json::Value>>,
    /// The last alarm requested, Unix ms.
    pub alarm_at: Cell<Option<u64>>,
}

impl RoomStore for MemoryRoomStore {
    async fn load(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self.values.borrow().get(key).cloned())
    }
    async fn save(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.values
            .borrow_mut()
            .insert(key.to_owned(), value.clone());
        Ok(())
    }
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut values = self.values.borrow_mut();
        for key in keys {
            values.remove(key);
        }
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        Ok(self
            .values
            .borrow()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError> {
        self.alarm_at.set(Some(at_ms));
        Ok(())
    }
}

/// [`RoomSockets`] that records what was sent; `connected` sets the count.
#[derive(Debug, Default)]
pub struct MemorySockets {
    /// How many clients count as connected.
    pub connected: Cell<usize>,
    /// Every message sent, oldest first.
    pub sent: RefCell<Vec<serde_json::Value>>,
}

impl RoomSockets for MemorySockets {
    fn count(&self) -> usize {
        self.connected.get()
    }
    fn send_all(&self, message: &str) {
        let value = serde_json::from_str(message).unwrap_or(serde_json::Value::Null);
        self.sent.borrow_mut().push(value);
    }
}

/// One in-memory room: its storage and its sockets.
#[derive(Debug, Default)]
pub struct MemoryRoom {
    /// The room's storage.
    pub store: MemoryRoomStore,
    /// The room's sockets.
    pub sockets: MemorySockets,
}

/// [`Live`] that runs each room's logic in process.
#[derive(Debug, Default)]
pub struct MemoryLive {
    /// The rooms by name.
    pub rooms: RefCell<BTreeMap<String, std::rc::Rc<MemoryRoom>>>,
}

impl MemoryLive {
    /// The room named `name`, created empty on first use.
    pub fn room(&self, name: &str) -> std::rc::Rc<MemoryRoom> {
        self.rooms
            .borrow_mut()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }
}

/// Rooms in memory answer a held request at once with what they have (they do not wait),
/// so the low-latency playlists they serve can be checked without a clock running.
impl Live for MemoryLive {
    const HOLDS: bool = true;

    async fn call(&self, name: &str, request: &RoomRequest) -> Result<RoomResponse, StoreError> {
        let room = self.room(name);
        match room::handle(&room.store, &room.sockets, request.clone()).await? {
            RoomResponse::Pending => {
                room::handle(&room.store, &room.sockets, request.clone().without_hold()).await
            }
            answer => Ok(answer),
        }
    }
}

/// [`Jobs`] that records what was enqueued.
#[derive(Debug, Default)]
pub struct MemoryJobs {
    /// The jobs enqueued so far, oldest first.
    pub enqueued: RefCell<Vec<Job>>,
    /// The delay asked for each, in seconds.
    pub delays: RefCell<Vec<u32>>,
}

impl Jobs for MemoryJobs {
    async fn enqueue_after(&self, job: &Job, delay_s: u32) -> Result<(), StoreError> {
        self.enqueued.borrow_mut().push(job.clone());
        self.delays.borrow_mut().push(delay_s);
        Ok(())
    }
}

/// [`Outbound`] that records requests and answers from a script (200 when it runs out).
#[derive(Debug, Default)]
pub struct MemoryOutbound {
    /// Answers to give, first first.
    pub script: RefCell<std::collections::VecDeque<Result<OutboundResponse, OutboundError>>>,
    /// Requests sent so far.
    pub sent: RefCell<Vec<OutboundRequest>>,
}

impl Outbound for MemoryOutbound {
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        self.sent.borrow_mut().push(request);
        self.script
            .borrow_mut()
            .pop_front()
            .unwrap_or(Ok(OutboundResponse {
                status: 200,
                body: Vec::new(),
            }))
    }
}

/// [`Mailer`] that keeps the messages it is given (a unit-test double: the hosts speak
/// SMTP to a real server).
#[derive(Debug, Default)]
pub struct MemoryMailer {
    /// Messages sent so far, first first.
    pub sent: RefCell<Vec<OutgoingMail>>,
    /// When set, every send fails with it.
    pub failure: RefCell<Option<MailError>>,
}

impl Mailer for MemoryMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        if let Some(failure) = self.failure.borrow().clone() {
            return Err(failure);
        }
        self.sent.borrow_mut().push(mail.clone());
        Ok(())
    }
}

/// [`Sql`] that fails every call: the in-memory platform has no SQL engine.
#[derive(Debug, Default)]
pub struct UnavailableSql;

impl UnavailableSql {
    fn error() -> StoreError {
        StoreError::backend("sql", "the in-memory platform has no SQL engine")
    }
}

impl Sql for UnavailableSql {
    async fn query(&self, _: &Statement) -> Result<Vec<Row>, StoreError> {
        Err(Self::error())
    }
    async fn execute(&self, _: &Statement) -> Result<u64, StoreError> {
        Err(Self::error())
    }
    async fn batch(&self, _: &[Statement]) -> Result<Vec<Vec<Row>>, StoreError> {
        Err(Self::error())
    }
}

/// An [`EdgeCache`] in memory: objects are kept until replaced (readers drop stale ones by
/// their `expires_at_ms`).
#[derive(Debug, Default)]
pub struct MemoryEdgeCache {
    objects: RefCell<HashMap<String, CachedObject>>,
}

impl MemoryEdgeCache {
    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.objects.borrow().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.objects.borrow().is_empty()
    }
}

impl EdgeCache for MemoryEdgeCache {
    async fn get(&self, key: &str) -> Result<Option<CachedObject>, StoreError> {
        Ok(self.objects.borrow().get(key).cloned())
    }
    async fn put(&self, key: &str, object: &CachedObject) -> Result<(), StoreError> {
        self.objects
            .borrow_mut()
            .insert(key.to_owned(), object.clone());
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.objects.borrow_mut().remove(key);
        Ok(())
    }
}

/// A [`Clock`] that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Milliseconds since the epoch.
    pub now_ms: Cell<u64>,
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }
}

/// Deterministic, NOT secure bytes for tests: a counter.
#[derive(Debug, Default)]
pub struct CountingEntropy {
    next: Cell<u8>,
}

impl Entropy for CountingEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next.get();
            self.next.set(self.next.get().wrapping_add(1));
        }
    }
}

/// A whole [`Platform`] in memory.
#[derive(Debug)]
pub struct MemoryPlatform {
    /// Configuration.
    pub config: Config,
    /// Key-value store.
    pub kv: MemoryKv,
    /// SQL (always failing).
    pub sql: UnavailableSql,
    /// Blob store.
    pub blobs: MemoryBlobs,
    /// Live rooms.
    pub live: MemoryLive,
    /// Job queue.
    pub jobs: MemoryJobs,
    /// Outgoing HTTP.
    pub outbound: MemoryOutbound,
    /// Edge cache.
    pub edge_cache: MemoryEdgeCache,
    /// Mail.
    pub mailer: MemoryMailer,
    /// Clock.
    pub clock: ManualClock,
    /// Randomness.
    pub entropy: CountingEntropy,
}

impl MemoryPlatform {
    /// An empty platform with a development configuration (dev-only secrets, diagnostics
    /// off), for unit tests and examples.
    pub fn development() -> Self {
        let config = Config::from_lookup(|name| match name {
            "ENVIRONMENT" => Some("development".into()),
            "SESSION_SECRET" | "URL_SIGNING_SECRET" => Some("dev-only-test".into()),
            _ => None,
        })
        // A fixed development configuration is always valid.
        .unwrap_or_else(|e| unreachable!("development configuration: {e}"));
        Self::new(config)
    }

    /// An empty platform with `config`.
    pub fn new(config: Config) -> Self {
        MemoryPlatform {
            config,
            kv: MemoryKv::default(),
            sql: UnavailableSql,
            blobs: MemoryBlobs::default(),
            live: MemoryLive::default(),
            jobs: MemoryJobs::default(),
            outbound: MemoryOutbound::default(),
            edge_cache: MemoryEdgeCache::default(),
            mailer: MemoryMailer::default(),
            clock: ManualClock::default(),
            entropy: CountingEntropy::default(),
        }
    }
}

impl Platform for MemoryPlatform {
    type Kv = MemoryKv;
    type Sql = UnavailableSql;
    type Blobs = MemoryBlobs;
    type Live = MemoryLive;
    type Jobs = MemoryJobs;
    type Outbound = MemoryOutbound;
    type EdgeCache = MemoryEdgeCache;
    type Mailer = MemoryMailer;

    fn config(&self) -> &Config {
        &self.config
    }
    fn kv(&self) -> &MemoryKv {
        &self.kv
    }
    fn sql(&self) -> &UnavailableSql {
        &self.sql
    }
    fn blobs(&self) -> &MemoryBlobs {
        &self.blobs
    }
    fn live(&self) -> &MemoryLive {
        &self.live
    }
    fn jobs(&self) -> &MemoryJobs {
        &self.jobs
    }
    fn outbound(&self) -> &MemoryOutbound {
        &self.outbound
    }
    fn edge_cache(&self) -> &MemoryEdgeCache {
        &self.edge_cache
    }
    fn mailer(&self) -> &MemoryMailer {
        &self.mailer
    }
    fn clock(&self) -> &dyn Clock {
        &self.clock
    }
    fn entropy(&self) -> &dyn Entropy {
        &self.entropy
    }
}

//! Pushing to the edge: the ingest contract's PUTs (init segment, media segments, then the
//! media playlist naming them) over one keep-alive HTTP client, with retries and backoff on
//! 5xx and network errors, through a bounded queue per stream: when the edge falls behind,
//! new segments are dropped (and counted), never buffered without bound.
//!
//! Parts (low-latency HLS partial segments) go through the same queue, each segment's parts
//! before the segment: `{stem}.part{index}.m4s?duration_us=..&part_target_us=..&independent=1|0`
//! ([`part_target`]). They have as many places of their own in the queue as segments, so that
//! parts never crowd a segment out; a part that fails or is dropped never ends the stream,
//! and the rest of its segment's parts are skipped (an edge has a prefix of each segment's
//! parts), the segment itself still pushed.
//!
//! With chunks on ([`Chunking`]), a part is sent while it is made, so that the edge hands
//! it to the viewers waiting for it as it comes: the segmenter cuts fragments of at most the
//! chunk target, each sent as soon as it is made as the next chunk of the part being made
//! (`{part}?offset=N`), and the chunk that fills the part commits it
//! (`?offset=N&from_chunks=SIZE&duration_us=..&part_target_us=..&independent=..`); a
//! segment's end commits its open part with no body. A part one of whose chunks failed is
//! sent whole (its bytes are kept until it is committed).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cmaf::{Part, Segment};
use crate::error::{PushError, StartError};
use crate::metrics::Metrics;
use crate::{info, warn};

/// The init segment's file name.
pub const INIT_FILE: &str = "index_init.mp4";
/// The media playlist's file name.
pub const PLAYLIST_FILE: &str = "index.m3u8";
/// Segments listed in the pushed live playlist.
pub const LIVE_WINDOW: usize = 6;
/// A request that takes longer than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts per part at most: a part is stale soon, and its segment follows anyway.
const PART_ATTEMPTS: u32 = 2;
/// The content type of media segments and parts.
const SEGMENT_TYPE: &str = "video/iso.segment";

/// The file name of media segment `sequence`.
pub fn segment_file(sequence: u32) -> String {
    format!("index_{sequence:05}.m4s")
}

/// The file name of part `index` (0-based) of media segment `segment`:
/// `index_00004.part2.m4s`.
pub fn part_file(segment: u32, index: u32) -> String {
    let file = segment_file(segment);
    let stem = file.strip_suffix(".m4s").unwrap_or(&file);
    format!("{stem}.part{index}.m4s")
}

/// What a part is PUT to under the ingest URL: its file name and the query the edge lists
/// it with (`?duration_us=..&part_target_us=..&independent=1|0`).
pub fn part_target(part: &Part) -> String {
    format!(
        "{}?duration_us={}&part_target_us={}&independent={}",
        part_file(part.segment, part.index),
        part.duration_us,
        part.target_us,
        u8::from(part.independent)
    )
}

/// The edge's ingest endpoint.
#[derive(Debug, Clone)]
pub struct Edge {
    client: reqwest::Client,
    origin: String,
    attempts: u32,
    first_backoff: Duration,
}

/// The edge's message in an error answer (`{"error":{"message"}}`), else the start of the body.
fn reason_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

impl Edge {
    /// An edge at `origin` (`https://video.example.com`); `attempts` per file on 5xx and
    /// network errors, the first retry after `first_backoff` (doubling, at most 8 s).
    pub fn new(origin: &str, attempts: u32, first_backoff: Duration) -> Result<Self, StartError> {
        let origin = origin.trim_end_matches('/').to_owned();
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(StartError::Config(format!(
                "the edge URL must be http(s)://..., not {origin:?}"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("edgevideo-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        Ok(Self {
            client,
            origin,
            attempts: attempts.max(1),
            first_backoff,
        })
    }

    fn url(&self, key: &str, file: &str) -> String {
        format!("{}/ingest/{key}/{file}", self.origin)
    }

    /// Asks the edge whether `key` (an ingest token) may push now: `DELETE` of a segment
    /// name, which the edge answers 204 for a valid, current ingest URL and 403 with its
    /// reason otherwise. Retried like a PUT on 5xx and network errors.
    pub async fn check_key(&self, key: &str) -> Result<(), PushError> {
        let url = self.url(key, "index0.ts");
        self.send("key check", self.attempts, || self.client.delete(&url))
            .await
            .map(|_| ())
    }

    /// PUTs one file; the time the successful attempt took.
    pub async fn put(
        &self,
        key: &str,
        file: &str,
        body: Bytes,
        content_type: &'static str,
        metrics: &Metrics,
    ) -> Result<Duration, PushError> {
        self.put_within(key, file, body, content_type, metrics, self.attempts)
            .await
    }

    /// [`Edge::put`] with at most `attempts` attempts.
    async fn put_within(
        &self,
        key: &str,
        file: &str,
        body: Bytes,
        content_type: &'static str,
        metrics: &Metrics,
        attempts: u32,
    ) -> Result<Duration, PushError> {
        let url = self.url(key, file);
        let result = self
            .send(file, attempts, || {
                self.client
                    .put(&url)
                    .header("content-type", content_type)
                    .body(body.clone())
            })
            .await;
        match &result {
            Ok(took) => metrics.observe_push(*took),
            Err(PushError::GaveUp { attempts, .. }) => {
                metrics
                    .push_errors
                    .fetch_add(u64::from(*attempts), Ordering::Relaxed);
            }
            Err(PushError::Refused { .. }) => {
                metrics.push_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    async fn send(
        &self,
        file: &str,
        attempts: u32,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Duration, PushError> {
        let attempts = attempts.clamp(1, self.attempts);
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            let started = Instant::now();
            match request().send().await {
                Ok(answer) if answer.status().is_success() => {
                    // Read the (small) body so the connection goes back to the pool.
                    let _ = answer.bytes().await;
                    return Ok(started.elapsed());
                }
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let body = answer.text().await.unwrap_or_default();
                    if (400..500).contains(&status) && status != 408 && status != 429 {
                        return Err(PushError::Refused {
                            file: file.to_owned(),
                            status,
                            reason: reason_of(&body),
                        });
                    }
                    last = format!("{status}: {}", reason_of(&body));
                }
                Err(e) => last = e.to_string(),
            }
            if attempt < attempts {
                warn!(
                    "push failed; retrying",
                    file = file,
                    attempt = attempt,
                    error = last
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(8));
            }
        }
        Err(PushError::GaveUp {
            file: file.to_owned(),
            attempts,
            last,
        })
    }
}

/// What a stream hands its pusher.
#[derive(Debug)]
pub enum Upload {
    /// The init segment.
    Init(Vec<u8>),
    /// A part of the media segment that follows.
    Part(Part),
    /// A media segment.
    Segment(Segment),
    /// The stream ended cleanly: push the playlist with `ENDLIST`.
    End,
}

/// A media playlist (CMAF, `EXT-X-VERSION:6`) listing `entries` (sequence, seconds).
pub fn playlist(entries: &[(u32, f64)], ended: bool) -> String {
    let target = entries
        .iter()
        .map(|(_, d)| d.ceil() as u64)
        .max()
        .unwrap_or(2)
        .max(1);
    let first = entries.first().map_or(1, |(s, _)| *s);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{INIT_FILE}\"\n"
    );
    for (sequence, duration) in entries {
        out.push_str(&format!(
            "#EXTINF:{duration:.3},\n{}\n",
            segment_file(*sequence)
        ));
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// The sending side of one stream's pusher.
#[derive(Debug)]
pub struct StreamPush {
    tx: mpsc::Sender<Upload>,
    failed: watch::Receiver<Option<String>>,
    metrics: Arc<Metrics>,
    /// Uploads other than parts that may wait.
    queue: usize,
    /// The segmenter's parts that may wait besides them.
    part_places: usize,
    /// Parts waiting in the queue now.
    parts_waiting: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl StreamPush {
    /// Starts the pusher of the stream with ingest token `key`; at most `queue` uploads wait,
    /// and besides them at most `queue` parts' worth of the segmenter's parts (with
    /// `chunking`, its fragments: as many as make `queue` parts).
    pub fn start(
        edge: Arc<Edge>,
        key: String,
        metrics: Arc<Metrics>,
        queue: usize,
        chunking: Option<Chunking>,
    ) -> Self {
        let queue = queue.max(1);
        let per_part = chunking.map_or(1, |c| (c.part_us / c.chunk_us.max(1)).clamp(1, 16));
        let part_places = queue * per_part as usize;
        let (tx, rx) = mpsc::channel(queue + part_places);
        let (failed_tx, failed) = watch::channel(None);
        let parts_waiting = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(
            edge,
            key,
            Arc::clone(&metrics),
            rx,
            failed_tx,
            (Arc::clone(&parts_waiting), chunking),
        ));
        Self {
            tx,
            failed,
            metrics,
            queue,
            part_places,
            parts_waiting,
            task,
        }
    }

    /// Queues an upload; a media segment or a part is dropped (and counted) when the queue
    /// has no room for it. False when the pusher has stopped.
    pub fn send(&self, upload: Upload) -> bool {
        let waiting = self.tx.max_capacity() - self.tx.capacity();
        let parts = self.parts_waiting.load(Ordering::Relaxed);
        let room = match &upload {
            Upload::Part(_) => parts < self.part_places,
            _ => waiting.saturating_sub(parts) < self.queue,
        };
        let is_part = matches!(upload, Upload::Part(_));
        if is_part && room {
            self.parts_waiting.fetch_add(1, Ordering::Relaxed);
        }
        let result = if room {
            self.tx.try_send(upload)
        } else {
            Err(mpsc::error::TrySendError::Full(upload))
        };
        if is_part && room && result.is_err() {
            self.parts_waiting.fetch_sub(1, Ordering::Relaxed);
        }
        match result {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(Upload::Segment(segment))) => {
                self.metrics
                    .segments_dropped
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    "the edge is behind: segment dropped",
                    sequence = segment.sequence
                );
                true
            }
            Err(mpsc::error::TrySendError::Full(Upload::Part(part))) => {
                self.metrics.parts_dropped.fetch_add(1, Ordering::Relaxed);
                warn!(
                    "the edge is behind: part dropped",
                    segment = part.segment,
                    part = part.index
                );
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!("the edge is behind: upload dropped");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Why the edge stopped taking this stream, once it has.
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Ends the stream: queues its `last` uploads (the last segment's last parts and the
    /// segment) and the end (waiting for room rather than dropping them), then waits (at
    /// most `wait` in all) for the last playlist.
    pub async fn end(self, last: Vec<Upload>, clean: bool, wait: Duration) {
        if clean {
            let tx = &self.tx;
            let parts_waiting = &self.parts_waiting;
            let _ = tokio::time::timeout(wait, async move {
                for upload in last {
                    if matches!(upload, Upload::Part(_)) {
                        parts_waiting.fetch_add(1, Ordering::Relaxed);
                    }
                    tx.send(upload).await?;
                }
                tx.send(Upload::End).await
            })
            .await;
        }
        drop(self.tx);
        let mut task = self.task;
        if tokio::time::timeout(wait, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Pushes one part, unless an earlier part of its segment did not reach the edge (`last`:
/// the segment and index of the last part pushed). Never ends the stream.
async fn push_part(
    edge: &Edge,
    key: &str,
    metrics: &Metrics,
    part: Part,
    last: &mut Option<(u32, u32)>,
) {
    let follows = part.index == 0 || *last == Some((part.segment, part.index.wrapping_sub(1)));
    if !follows {
        metrics.parts_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let target = part_target(&part);
    let place = (part.segment, part.index);
    put_whole_part(edge, (key, &target), metrics, part.bytes, place, last).await;
}

/// PUTs the whole part `place` (segment, index) to `target` under `key`, recording it as
/// the `last` part pushed; a failure is counted and logged, never ends the stream.
async fn put_whole_part(
    edge: &Edge,
    (key, target): (&str, &str),
    metrics: &Metrics,
    bytes: Vec<u8>,
    place: (u32, u32),
    last: &mut Option<(u32, u32)>,
) {
    let attempts = edge.attempts.min(PART_ATTEMPTS);
    let body = Bytes::from(bytes);
    match edge
        .put_within(key, target, body, SEGMENT_TYPE, metrics, attempts)
        .await
    {
        Ok(_) => {
            metrics.parts_pushed.fetch_add(1, Ordering::Relaxed);
            *last = Some(place);
        }
        Err(e) => {
            metrics.parts_dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                "part not pushed; the rest of its segment's parts are skipped",
                error = e.to_string()
            );
        }
    }
}

/// Parts sent as they are made: chunks of at most `chunk_us` (the segmenter's fragments)
/// gathered into parts of at most `part_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// The chunk target, in microseconds.
    pub chunk_us: u64,
    /// The part target, in microseconds.
    pub part_us: u64,
}

/// A part being sent as chunks.
#[derive(Debug)]
struct OpenPart {
    segment: u32,
    index: u32,
    /// Its bytes so far (kept to send it whole if a chunk fails).
    bytes: Vec<u8>,
    duration_us: u64,
    independent: bool,
    /// Whether the parts before it in its segment reached the edge (else it is skipped).
    follows: bool,
    /// Whether each of its chunks reached the edge.
    sent: bool,
}

impl OpenPart {
    /// The query the edge lists the part with.
    fn listing(&self, part_us: u64) -> String {
        format!(
            "duration_us={}&part_target_us={}&independent={}",
            self.duration_us,
            part_us.max(self.duration_us),
            u8::from(self.independent)
        )
    }
}

/// The parts of one stream on their way to the edge: each segment's parts in order, the
/// edge having a prefix of them.
#[derive(Debug, Default)]
struct PartPush {
    chunking: Option<Chunking>,
    /// The last part the edge took, in order: (segment, index).
    last: Option<(u32, u32)>,
    /// With chunks: the part being sent.
    open: Option<OpenPart>,
    /// With chunks: the segmenter's next fragment expected (segment, index); a gap (a
    /// fragment dropped for a slow edge) leaves the rest of the segment's parts unsent.
    expected: Option<(u32, u32)>,
    /// With chunks: the parts made of the segment being made (segment, count).
    made: Option<(u32, u32)>,
}

impl PartPush {
    /// How many parts segment `sequence` was cut into (with chunks, the parts made of its
    /// fragments; else the segmenter's count).
    fn parts_of(&self, segment: &Segment) -> u32 {
        match (self.chunking, self.made) {
            (Some(_), Some((sequence, count))) if sequence == segment.sequence => count,
            (Some(_), _) => 0,
            (None, _) => segment.parts,
        }
    }

    /// Takes the segmenter's next part: pushed whole, or, with chunks, as the next chunk of
    /// the part being made.
    async fn take(&mut self, edge: &Edge, key: &str, metrics: &Metrics, fragment: Part) {
        let Some(chunking) = self.chunking else {
            push_part(edge, key, metrics, fragment, &mut self.last).await;
            return;
        };
        let in_order =
            fragment.index == 0 || self.expected == Some((fragment.segment, fragment.index));
        self.expected = Some((fragment.segment, fragment.index.wrapping_add(1)));
        let mut open = match self.open.take() {
            Some(open) if open.segment == fragment.segment => open,
            other => {
                if let Some(open) = other {
                    self.close(edge, key, metrics, open).await;
                }
                self.begin(fragment.segment, fragment.independent)
            }
        };
        open.follows &= in_order;
        let offset = open.bytes.len();
        let closes = open.duration_us + fragment.duration_us + chunking.chunk_us > chunking.part_us;
        open.bytes.extend_from_slice(&fragment.bytes);
        open.duration_us += fragment.duration_us;
        if !(open.follows && open.sent) {
            if closes {
                self.close(edge, key, metrics, open).await;
            } else {
                self.open = Some(open);
            }
            return;
        }
        let file = part_file(open.segment, open.index);
        let target = if closes {
            format!(
                "{file}?offset={offset}&from_chunks={}&{}",
                open.bytes.len(),
                open.listing(chunking.part_us)
            )
        } else {
            format!("{file}?offset={offset}")
        };
        let attempts = edge.attempts.min(PART_ATTEMPTS);
        let body = Bytes::from(fragment.bytes);
        match edge
            .put_within(key, &target, body, SEGMENT_TYPE, metrics, attempts)
            .await
        {
            Ok(_) => {
                metrics.chunks_pushed.fetch_add(1, Ordering::Relaxed);
                if closes {
                    metrics.parts_pushed.fetch_add(1, Ordering::Relaxed);
                    self.last = Some((open.segment, open.index));
                    return;
                }
            }
            Err(e) => {
                warn!(
                    "chunk not pushed; its part will be sent whole",
                    error = e.to_string()
                );
                open.sent = false;
            }
        }
        if closes {
            self.close(edge, key, metrics, open).await;
        } else {
            self.open = Some(open);
        }
    }

    /// The next part of `segment`, nothing of it sent yet.
    fn begin(&mut self, segment: u32, independent: bool) -> OpenPart {
        let index = match self.made {
            Some((made, count)) if made == segment => count,
            _ => 0,
        };
        self.made = Some((segment, index + 1));
        let follows = index == 0 || self.last == Some((segment, index - 1));
        OpenPart {
            segment,
            index,
            bytes: Vec::new(),
            duration_us: 0,
            independent,
            follows,
            sent: true,
        }
    }

    /// Before segment `sequence`: commits its part still open, if any.
    async fn end_segment(&mut self, edge: &Edge, key: &str, metrics: &Metrics, sequence: u32) {
        if let Some(open) = self.open.take() {
            if open.segment == sequence {
                self.close(edge, key, metrics, open).await;
            } else {
                self.open = Some(open);
            }
        }
    }

    /// Ends a part sent as chunks: committed from them (no body) when each went up, else
    /// sent whole; skipped when an earlier part of its segment did not reach the edge.
    async fn close(&mut self, edge: &Edge, key: &str, metrics: &Metrics, open: OpenPart) {
        let Some(chunking) = self.chunking else {
            return;
        };
        if !open.follows || open.bytes.is_empty() {
            metrics.parts_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let file = part_file(open.segment, open.index);
        let listing = open.listing(chunking.part_us);
        let attempts = edge.attempts.min(PART_ATTEMPTS);
        if open.sent {
            let target = format!("{file}?from_chunks={}&{listing}", open.bytes.len());
            let committed = edge
                .put_within(key, &target, Bytes::new(), SEGMENT_TYPE, metrics, attempts)
                .await;
            if committed.is_ok() {
                metrics.parts_pushed.fetch_add(1, Ordering::Relaxed);
                self.last = Some((open.segment, open.index));
                return;
            }
        }
        let target = format!("{file}?{listing}");
        let place = (open.segment, open.index);
        put_whole_part(
            edge,
            (key, &target),
            metrics,
            open.bytes,
            place,
            &mut self.last,
        )
        .await;
    }
}

/// Commits `segment` from its parts at the edge (`PUT {segment}?from_parts=N`, no body)
/// when every one of them was pushed (`last`: the last part pushed in order): true when the
/// edge took it, false when its bytes must be sent (one try; any refusal falls back).
async fn commit(
    edge: &Edge,
    key: &str,
    metrics: &Metrics,
    segment: &Segment,
    (parts, last): (u32, Option<(u32, u32)>),
) -> bool {
    if parts == 0 || last != Some((segment.sequence, parts - 1)) {
        return false;
    }
    let target = format!("{}?from_parts={parts}", segment_file(segment.sequence));
    match edge
        .put_within(key, &target, Bytes::new(), SEGMENT_TYPE, metrics, 1)
        .await
    {
        Ok(_) => {
            metrics.segments_pushed.fetch_add(1, Ordering::Relaxed);
            metrics.segments_committed.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            warn!(
                "segment not committed from its parts; sending its bytes",
                error = e.to_string()
            );
            false
        }
    }
}

async fn run(
    edge: Arc<Edge>,
    key: String,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Upload>,
    failed: watch::Sender<Option<String>>,
    (parts_waiting, chunking): (Arc<AtomicUsize>, Option<Chunking>),
) {
    let mut window: Vec<(u32, f64)> = Vec::new();
    let mut have_init = false;
    let mut parts = PartPush {
        chunking,
        ..PartPush::default()
    };
    while let Some(upload) = rx.recv().await {
        let (file, body, content_type, entry, ended) = match upload {
            Upload::Part(part) => {
                parts_waiting.fetch_sub(1, Ordering::Relaxed);
                parts.take(&edge, &key, &metrics, part).await;
                continue;
            }
            Upload::Init(bytes) => (INIT_FILE.to_owned(), bytes, "video/mp4", None, false),
            Upload::Segment(segment) => {
                let entry = Some((segment.sequence, segment.duration));
                parts
                    .end_segment(&edge, &key, &metrics, segment.sequence)
                    .await;
                let made = (parts.parts_of(&segment), parts.last);
                if commit(&edge, &key, &metrics, &segment, made).await {
                    (String::new(), Vec::new(), SEGMENT_TYPE, entry, false)
                } else {
                    let file = segment_file(segment.sequence);
                    (file, segment.bytes, SEGMENT_TYPE, entry, false)
                }
            }
            Upload::End => (String::new(), Vec::new(), "", None, true),
        };
        if !file.is_empty() {
            match edge
                .put(&key, &file, Bytes::from(body), content_type, &metrics)
                .await
            {
                Ok(_) => {
                    metrics.segments_pushed.fetch_add(1, Ordering::Relaxed);
                    have_init |= file == INIT_FILE;
                }
                Err(e @ PushError::Refused { .. }) => {
                    warn!("the edge refused the stream", error = e.to_string());
                    let _ = failed.send(Some(e.to_string()));
                    return;
                }
                Err(e) => {
                    // Not listed: the playlist names only what the edge has.
                    metrics.segments_dropped.fetch_add(1, Ordering::Relaxed);
                    warn!("segment dropped", error = e.to_string());
                    continue;
                }
            }
        }
        if let Some(entry) = entry {
            window.push(entry);
            if window.len() > LIVE_WINDOW {
                window.remove(0);
            }
        }
        if !have_init || (entry.is_none() && !ended) {
            continue;
        }
        let text = playlist(&window, ended);
        match edge
            .put(
                &key,
                PLAYLIST_FILE,
                Bytes::from(text),
                "application/vnd.apple.mpegurl",
                &metrics,
            )
            .await
        {
            Ok(_) => {
                metrics.playlists_pushed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e @ PushError::Refused { .. }) => {
                warn!("the edge refused the playlist", error = e.to_string());
                let _ = failed.send(Some(e.to_string()));
                return;
            }
            Err(e) => warn!("playlist not pushed", error = e.to_string()),
        }
        if ended {
            info!(
                "broadcast ended; last playlist pushed",
                segments = window.last().map(|e| e.0)
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeEdge;

    #[test]
    fn playlists_are_cmaf_media_playlists() {
        let text = playlist(&[(3, 2.0), (4, 2.5)], false);
        assert!(
            text.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:3\n"),
            "{text}"
        );
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
        assert!(text.contains("#EXT-X-MAP:URI=\"index_init.mp4\"\n"));
        assert!(text.contains("#EXTINF:2.500,\nindex_00004.m4s\n"));
        assert!(!text.contains("ENDLIST"));
        assert!(playlist(&[(1, 2.0)], true).ends_with("index_00001.m4s\n#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn reasons_come_from_the_edge_error_body() {
        assert_eq!(
            reason_of(r#"{"error":{"code":"forbidden","message":"the ingest URL expired"}}"#),
            "the ingest URL expired"
        );
        assert_eq!(reason_of("plain"), "plain");
    }

    /// An edge that accepts connections and never answers: its origin, and the task holding
    /// the connections (abort it to let them go).
    async fn stalled_edge() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        (origin, held)
    }

    #[tokio::test]
    async fn a_stalled_edge_drops_segments_instead_of_buffering_them() {
        let (origin, held) = stalled_edge().await;
        let edge = Arc::new(Edge::new(&origin, 1, Duration::ZERO).unwrap());
        let metrics = Arc::new(Metrics::default());
        let push = StreamPush::start(edge, "key".into(), Arc::clone(&metrics), 2, None);
        for sequence in 1..=10 {
            let segment = Segment {
                sequence,
                duration: 2.0,
                bytes: vec![0; 1024],
                parts: 0,
            };
            assert!(push.send(Upload::Segment(segment)));
        }
        // One upload in flight (stalled), two queued: the other seven are dropped.
        let dropped = metrics.segments_dropped.load(Ordering::Relaxed);
        assert!((7..=8).contains(&dropped), "{dropped} dropped");
        assert_eq!(push.failure(), None);
        push.end(Vec::new(), false, Duration::from_millis(100))
            .await;
        held.abort();
    }

    fn part(segment: u32, index: u32, independent: bool) -> Part {
        Part {
            segment,
            index,
            duration_us: 333_333 + u64::from(index),
            target_us: 334_000,
            independent,
            bytes: vec![index as u8; 64],
        }
    }

    #[test]
    fn parts_are_named_after_their_segment() {
        assert_eq!(part_file(4, 2), "index_00004.part2.m4s");
        assert_eq!(
            part_target(&part(4, 0, true)),
            "index_00004.part0.m4s?duration_us=333333&part_target_us=334000&independent=1"
        );
    }

    #[tokio::test]
    async fn a_segment_is_pushed_after_its_parts_and_before_its_playlist() {
        let (edge, client) = FakeEdge::start().await;
        let metrics = Arc::new(Metrics::default());
        let push = StreamPush::start(
            Arc::new(client),
            "key".into(),
            Arc::clone(&metrics),
            4,
            None,
        );
        assert!(push.send(Upload::Init(vec![1; 16])));
        for index in 0..3 {
            assert!(push.send(Upload::Part(part(1, index, index == 0))));
        }
        // All three parts went up: the segment is committed from them.
        let segment = Segment {
            sequence: 1,
            duration: 1.0,
            bytes: vec![9; 192],
            parts: 3,
        };
        assert!(push.send(Upload::Segment(segment)));
        assert!(push.send(Upload::Part(part(2, 0, true))));
        // Two of its three parts went up: its bytes are sent.
        let last = vec![
            Upload::Part(part(2, 1, false)),
            Upload::Segment(Segment {
                sequence: 2,
                duration: 0.5,
                bytes: vec![8; 128],
                parts: 3,
            }),
        ];
        push.end(last, true, Duration::from_secs(10)).await;
        let requests = edge.requests();
        let puts: Vec<(&str, Option<&str>)> = requests
            .iter()
            .map(|r| {
                assert_eq!(r.method, "PUT");
                (r.file.as_str(), r.content_type.as_deref())
            })
            .collect();
        let segment = Some("video/iso.segment");
        let playlist = Some("application/vnd.apple.mpegurl");
        assert_eq!(
            puts,
            [
                ("index_init.mp4", Some("video/mp4")),
                (
                    "index_00001.part0.m4s?duration_us=333333&part_target_us=334000&independent=1",
                    segment
                ),
                (
                    "index_00001.part1.m4s?duration_us=333334&part_target_us=334000&independent=0",
                    segment
                ),
                (
                    "index_00001.part2.m4s?duration_us=333335&part_target_us=334000&independent=0",
                    segment
                ),
                ("index_00001.m4s?from_parts=3", segment),
                ("index.m3u8", playlist),
                (
                    "index_00002.part0.m4s?duration_us=333333&part_target_us=334000&independent=1",
                    segment
                ),
                (
                    "index_00002.part1.m4s?duration_us=333334&part_target_us=334000&independent=0",
                    segment
                ),
                ("index_00002.m4s", segment),
                ("index.m3u8", playlist),
                // The end: the playlist again, with ENDLIST.
                ("index.m3u8", playlist),
            ]
        );
        assert_eq!(requests[2].body, vec![1; 64]);
        assert!(requests[4].body.is_empty(), "a commit sends no bytes");
        assert_eq!(requests[8].body, vec![8; 128]);
        // The playlists are as without parts.
        let text = String::from_utf8(requests[9].body.clone()).unwrap();
        assert_eq!(text, super::playlist(&[(1, 1.0), (2, 0.5)], false));
        let text = String::from_utf8(requests[10].body.clone()).unwrap();
        assert_eq!(text, super::playlist(&[(1, 1.0), (2, 0.5)], true));
        assert_eq!(metrics.parts_pushed.load(Ordering::Relaxed), 5);
        assert_eq!(metrics.segments_pushed.load(Ordering::Relaxed), 3);
        assert_eq!(metrics.segments_committed.load(Ordering::Relaxed), 1);
        assert!(metrics.render().contains("gateway_parts_pushed_total 5\n"));
    }

    #[tokio::test]
    async fn a_failed_part_skips_the_rest_of_its_segment_and_never_ends_the_stream() {
        let (edge, client) = FakeEdge::start_with(3).await;
        edge.answer("index_00001.part1", 500);
        edge.answer("index_00002.part0", 400);
        let metrics = Arc::new(Metrics::default());
        let push = StreamPush::start(
            Arc::new(client),
            "key".into(),
            Arc::clone(&metrics),
            8,
            None,
        );
        push.send(Upload::Init(vec![1; 16]));
        for index in 0..3 {
            push.send(Upload::Part(part(1, index, index == 0)));
        }
        push.send(Upload::Segment(Segment {
            sequence: 1,
            duration: 1.0,
            bytes: vec![9; 192],
            parts: 0,
        }));
        for index in 0..2 {
            push.send(Upload::Part(part(2, index, index == 0)));
        }
        push.send(Upload::Segment(Segment {
            sequence: 2,
            duration: 1.0,
            bytes: vec![9; 192],
            parts: 0,
        }));
        push.send(Upload::Part(part(3, 0, true)));
        edge.until(|puts| puts.iter().any(|(f, _)| f.starts_with("index_00003.part0")))
            .await;
        assert_eq!(push.failure(), None, "a part never ends the stream");
        let files: Vec<String> = edge
            .files()
            .into_iter()
            .map(|f| f.split('?').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            files,
            [
                "index_init.mp4",
                "index_00001.part0.m4s",
                // Two attempts at most for a part (5xx), then the rest of the segment's
                // parts are skipped.
                "index_00001.part1.m4s",
                "index_00001.part1.m4s",
                "index_00001.m4s",
                "index.m3u8",
                // Refused (4xx): not retried, the next part skipped.
                "index_00002.part0.m4s",
                "index_00002.m4s",
                "index.m3u8",
                "index_00003.part0.m4s",
            ]
        );
        assert_eq!(metrics.parts_pushed.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.parts_dropped.load(Ordering::Relaxed), 4);
        assert_eq!(metrics.segments_dropped.load(Ordering::Relaxed), 0);
        push.end(Vec::new(), false, Duration::from_millis(100))
            .await;
    }

    #[tokio::test]
    async fn parts_waiting_for_a_stalled_edge_never_crowd_segments_out() {
        let (origin, held) = stalled_edge().await;
        let edge = Arc::new(Edge::new(&origin, 1, Duration::ZERO).unwrap());
        let metrics = Arc::new(Metrics::default());
        let push = StreamPush::start(edge, "key".into(), Arc::clone(&metrics), 2, None);
        let segment = |sequence| Segment {
            sequence,
            duration: 2.0,
            bytes: vec![0; 1024],
            parts: 0,
        };
        assert!(push.send(Upload::Segment(segment(1))));
        for index in 0..10 {
            assert!(push.send(Upload::Part(part(2, index, index == 0))));
        }
        // Two parts wait (as many as segments may), the other eight are dropped...
        assert_eq!(metrics.parts_dropped.load(Ordering::Relaxed), 8);
        // ... and the segment still has room.
        assert!(push.send(Upload::Segment(segment(2))));
        assert_eq!(metrics.segments_dropped.load(Ordering::Relaxed), 0);
        push.end(Vec::new(), false, Duration::from_millis(100))
            .await;
        held.abort();
    }

    #[test]
    fn edge_urls_must_be_http() {
        assert!(Edge::new("ftp://x", 1, Duration::ZERO).is_err());
        let edge = Edge::new("http://127.0.0.1:1/", 1, Duration::ZERO).unwrap();
        assert_eq!(
            edge.url("k", "index.m3u8"),
            "http://127.0.0.1:1/ingest/k/index.m3u8"
        );
    }
}

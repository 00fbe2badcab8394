//! One publishing stream, whatever protocol carries it: the key is checked and claimed when
//! it opens, its media (H.264 and AAC, in the FLV/MP4 layouts: an `avcC` record and
//! length-prefixed NAL units, an `AudioSpecificConfig` and raw AAC frames) go through the
//! [`Segmenter`], and what that produces is queued on the stream's [`StreamPush`].
//!
//! Reconnects: a stream whose connection is lost without an unpublish
//! ([`Stream::disconnected`]) is parked in the [`Gateway`] for the reconnect grace window.
//! Parking flushes the samples held into a segment but pushes no `ENDLIST`, so the broadcast
//! stays live at the edge. A publish of the same key within the window resumes it: the same
//! push queue, segment numbers and playlist window, the new session's timestamps offset so
//! the timeline continues right after the last sample (see [`Timeline`]), starting at the
//! new session's first keyframe. When the codec configuration differs across the reconnect,
//! the parked broadcast is ended cleanly and a new one starts. When the window passes, the
//! parked stream ends cleanly (`ENDLIST`).
//!
//! Stopping ([`Gateway::shutdown`], on SIGTERM or Ctrl-C): new publishes are refused, every
//! publishing connection ends its stream cleanly and every parked stream ends at once, each
//! with its last segment and `ENDLIST`, so that the broadcasts end now rather than at the
//! edge's idle timeout and an encoder that calls another gateway starts a new one at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::cmaf::{Output, Segmenter};
use crate::error::{MediaError, PushError};
use crate::limit::{ConnectionLimit, Slot};
use crate::metrics::Metrics;
use crate::push::{Chunking, Edge, StreamPush, Upload};
use crate::{info, warn};

/// Longest stream key taken.
const MAX_KEY_LEN: usize = 1024;
/// Time the end of a stream may take to reach the edge.
const END_WAIT: Duration = Duration::from_secs(60);
/// How long a stream whose connection was lost waits for its publisher to come back, unless
/// set otherwise ([`Gateway::with_reconnect_grace`]).
pub const DEFAULT_RECONNECT_GRACE: Duration = Duration::from_secs(10);
/// Frame interval assumed before two video frames have been seen (30 fps).
const DEFAULT_FRAME_MS: u64 = 33;
/// How long a publisher whose key is held by a silent connection may be taken over after,
/// unless set otherwise ([`Gateway::with_takeover_silence`]).
pub const DEFAULT_TAKEOVER_SILENCE: Duration = Duration::from_secs(5);
/// Time a taking-over publisher waits for the silent connection to let the key go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// Connections one client address may hold at once, unless set otherwise
/// ([`Gateway::with_connection_limit`]).
pub const DEFAULT_CONNECTIONS_PER_ADDRESS: usize = 16;
/// `Holder::last_media_ms` while the holder's stream is still opening.
const OPENING: u64 = u64::MAX;

/// Per-stream settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Target segment duration in milliseconds (cut at the next keyframe after it).
    pub segment_ms: u64,
    /// Part (low-latency partial segment) target in milliseconds; 0: no parts.
    pub part_ms: u64,
    /// Chunk target in milliseconds: parts are sent as they are made, in chunks of at most
    /// this much media; 0: each part is sent once made.
    pub chunk_ms: u64,
    /// Uploads that may wait for the edge per stream before segments are dropped.
    pub queue: usize,
}

impl StreamSettings {
    /// How parts are sent in chunks, when they are (parts on, and a chunk target below the
    /// part target).
    pub fn chunking(&self) -> Option<Chunking> {
        (self.part_ms > 0 && self.chunk_ms > 0 && self.chunk_ms < self.part_ms).then(|| Chunking {
            chunk_us: self.chunk_ms * 1000,
            part_us: self.part_ms * 1000,
        })
    }
}

/// A stream whose connection was lost, waiting for its publisher to come back.
#[derive(Debug)]
struct Parked {
    /// Tells this parking from a later one of the same key (for its expiry).
    id: u64,
    core: Core,
    since: Instant,
}

/// What every connection shares.
#[derive(Debug)]
pub struct Gateway {
    /// The edge pushed to.
    pub edge: Arc<Edge>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// Stream settings.
    pub settings: StreamSettings,
    reconnect_grace: Duration,
    takeover_silence: Duration,
    publishing: Mutex<HashMap<String, Arc<Holder>>>,
    /// Notified whenever a key stops being held.
    released: Notify,
    parked: Mutex<HashMap<String, Parked>>,
    parkings: AtomicU64,
    epoch: Instant,
    /// `true` once the gateway is stopping.
    stopping: watch::Sender<bool>,
    connections: Arc<ConnectionLimit>,
}

/// What is known of the connection holding a key.
#[derive(Debug)]
struct Holder {
    /// When its stream last took media (milliseconds since the gateway's epoch), or
    /// [`OPENING`].
    last_media_ms: AtomicU64,
    /// Tells its connection that a new publisher took the key over.
    takeover: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gateway {
    /// A gateway pushing to `edge`, with the default reconnect grace window.
    pub fn new(edge: Edge, metrics: Arc<Metrics>, settings: StreamSettings) -> Self {
        Self {
            edge: Arc::new(edge),
            metrics,
            settings,
            reconnect_grace: DEFAULT_RECONNECT_GRACE,
            takeover_silence: DEFAULT_TAKEOVER_SILENCE,
            publishing: Mutex::new(HashMap::new()),
            released: Notify::new(),
            parked: Mutex::new(HashMap::new()),
            parkings: AtomicU64::new(0),
            epoch: Instant::now(),
            stopping: watch::Sender::new(false),
            connections: Arc::new(ConnectionLimit::new(DEFAULT_CONNECTIONS_PER_ADDRESS)),
        }
    }

    /// The same gateway letting one client address hold at most `max` connections at once
    /// (RTMP, RTMPS and SRT together); 0: no limit.
    pub fn with_connection_limit(mut self, max: usize) -> Self {
        self.connections = Arc::new(ConnectionLimit::new(max));
        self
    }

    /// A place for a new connection from `peer` (over `protocol`, for the log), held while
    /// the connection is open; `None` (counted and logged) when the address holds the most
    /// allowed already.
    pub fn admit(&self, peer: std::net::SocketAddr, protocol: &str) -> Option<Slot> {
        let slot = self.connections.acquire(peer.ip());
        if slot.is_none() {
            self.metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            warn!(
                "connection refused: too many from this address",
                peer = peer.to_string(),
                protocol = protocol
            );
        }
        slot
    }

    /// The same gateway letting a new publisher of a key take over when the connection
    /// publishing it has sent no media for `silence` (a half-open TCP connection after the
    /// encoder's network changed); zero: never.
    pub fn with_takeover_silence(mut self, silence: Duration) -> Self {
        self.takeover_silence = silence;
        self
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The same gateway with another reconnect grace window (zero: a lost connection ends
    /// its stream at once).
    pub fn with_reconnect_grace(mut self, grace: Duration) -> Self {
        self.reconnect_grace = grace;
        self
    }

    /// How long a stream whose connection was lost waits for its publisher.
    pub fn reconnect_grace(&self) -> Duration {
        self.reconnect_grace
    }

    /// Streams parked now, waiting for their publisher to reconnect.
    pub fn parked_streams(&self) -> usize {
        lock(&self.parked).len()
    }

    fn publishing(&self) -> MutexGuard<'_, HashMap<String, Arc<Holder>>> {
        lock(&self.publishing)
    }

    fn parked(&self) -> MutexGuard<'_, HashMap<String, Parked>> {
        lock(&self.parked)
    }

    /// Whether the gateway is stopping (new publishes are refused).
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Completes once the gateway is stopping.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        // The sender lives as long as `self`: the wait cannot fail while it is borrowed.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Stops: refuses new publishes, tells every publishing connection to end its stream
    /// cleanly ([`Stream::stopping`]), ends every parked stream cleanly, and waits (at most
    /// `within`) until no stream is publishing. Answers how many streams were still
    /// publishing when it gave up (0: all ended).
    pub async fn shutdown(&self, within: Duration) -> u64 {
        self.stopping.send_replace(true);
        let deadline = Instant::now() + within;
        let parked: Vec<(String, Parked)> = self.parked().drain().collect();
        let ending = parked.into_iter().map(|(key, parked)| async move {
            self.metrics.streams_parked.fetch_sub(1, Ordering::Relaxed);
            info!("stopping; the parked stream ends", key = key_label(&key));
            parked.core.end(self, &key, true).await;
        });
        let _ = tokio::time::timeout(within, futures_util::future::join_all(ending)).await;
        // The connections end their streams (the last segment and ENDLIST pushed) and the
        // count falls to zero.
        loop {
            let active = self.metrics.streams_active.load(Ordering::Relaxed);
            if active == 0 || Instant::now() >= deadline {
                return active;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Holds a stream key as publishing on this gateway until dropped.
#[derive(Debug)]
struct KeyClaim {
    gateway: Arc<Gateway>,
    key: String,
    holder: Arc<Holder>,
}

impl KeyClaim {
    fn take(gateway: &Arc<Gateway>, key: &str) -> Option<Self> {
        let mut publishing = gateway.publishing();
        if publishing.contains_key(key) {
            return None;
        }
        let holder = Arc::new(Holder {
            last_media_ms: AtomicU64::new(OPENING),
            takeover: Notify::new(),
        });
        publishing.insert(key.to_owned(), Arc::clone(&holder));
        Some(Self {
            gateway: Arc::clone(gateway),
            key: key.to_owned(),
            holder,
        })
    }

    /// Takes `key` over from a connection that has sent no media for the gateway's takeover
    /// silence: tells that connection to let it go (it parks its stream) and waits for it.
    async fn take_over(gateway: &Arc<Gateway>, key: &str) -> Option<Self> {
        let silence = gateway.takeover_silence;
        if silence.is_zero() {
            return None;
        }
        let silent_ms = {
            let publishing = gateway.publishing();
            let holder = publishing.get(key)?;
            let last = holder.last_media_ms.load(Ordering::Relaxed);
            let silent_ms = gateway.now_ms().saturating_sub(last);
            if last == OPENING || silent_ms < silence.as_millis() as u64 {
                return None;
            }
            holder.takeover.notify_one();
            silent_ms
        };
        info!(
            "the key's connection is silent; the new publisher takes over",
            key = key_label(key),
            silent_ms = silent_ms
        );
        let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
        loop {
            let released = gateway.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            if let Some(claim) = Self::take(gateway, key) {
                gateway.metrics.takeovers.fetch_add(1, Ordering::Relaxed);
                return Some(claim);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return None;
            }
        }
    }

    /// Notes that the holder's stream took media now.
    fn heard(&self) {
        self.holder
            .last_media_ms
            .store(self.gateway.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        self.gateway.publishing().remove(&self.key);
        self.gateway.released.notify_waiters();
    }
}

/// Whether `key` can be an ingest token (it goes into a URL path).
pub fn valid_key(key: &str) -> bool {
    key.bytes().any(|b| b != b'.')
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'))
}

/// A short, non-secret name of a key for logs (its first characters).
pub fn key_label(key: &str) -> String {
    key.chars().take(12).collect::<String>() + "…"
}

/// One input of a publishing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media<'a> {
    /// The H.264 decoder configuration (`AVCDecoderConfigurationRecord`).
    VideoConfig(&'a [u8]),
    /// One H.264 access unit: length-prefixed (4-byte) NAL units.
    Video {
        /// Decode time in milliseconds.
        dts_ms: u32,
        /// Composition offset in milliseconds.
        cts_ms: i32,
        /// Whether it is a keyframe (IDR).
        keyframe: bool,
        /// The NAL units.
        data: &'a [u8],
    },
    /// The AAC `AudioSpecificConfig`.
    AudioConfig(&'a [u8]),
    /// One raw AAC frame.
    Audio {
        /// Decode time in milliseconds.
        dts_ms: u32,
        /// The frame.
        data: &'a [u8],
    },
    /// The picture size the encoder announced (used when the SPS cannot be read).
    SizeHint(u32, u32),
}

/// Why a stream could not open; the text is meant for the broadcaster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Places each publishing session's timestamps (milliseconds) on the stream's one timeline.
///
/// A first session's timestamps are taken as they are. After a resume the new session's
/// (which restart near 0) are shifted so that its first keyframe lands exactly where the
/// last video frame before the drop ended: the timeline is continuous, the outage is not
/// kept as a gap. Viewers saw the stall live anyway; a gap would be a hole no segment
/// covers, where players stall or skip, the recording would carry dead air, and the
/// playlist's durations would no longer add up to the media's times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Added to the session's timestamps.
    offset_ms: i64,
    /// The last video decode time placed (stream time).
    last_video_ms: Option<u64>,
    /// The interval before it (the last frame's duration is taken to be the same).
    frame_ms: u64,
    /// The latest presentation time placed (stream time).
    max_pts_ms: Option<i64>,
    /// After a resume and until the new session's first keyframe, nothing is placed.
    awaiting_keyframe: bool,
    /// Audio before this stream time (from before the resumed session's first keyframe) is
    /// dropped.
    audio_from_ms: u64,
}

impl Timeline {
    /// Where the video placed so far ends (its last frame's time plus one frame interval).
    pub fn end_ms(&self) -> Option<u64> {
        self.last_video_ms.map(|last| last + self.frame_ms())
    }

    /// A new session continues the stream: its frames are dropped until its first keyframe,
    /// which is placed at [`Timeline::end_ms`] (see [`Timeline::video`]).
    pub fn resume(&mut self) {
        if self.last_video_ms.is_some() {
            self.awaiting_keyframe = true;
        }
    }

    /// Whether the timeline is waiting for the resumed session's first keyframe.
    pub fn awaiting_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    fn place(&self, dts_ms: u32) -> Option<u32> {
        u32::try_from(i64::from(dts_ms) + self.offset_ms).ok()
    }

    fn frame_ms(&self) -> u64 {
        if self.frame_ms == 0 {
            DEFAULT_FRAME_MS
        } else {
            self.frame_ms
        }
    }

    /// The stream time of a video frame at session time `dts_ms` with composition offset
    /// `cts_ms`; `None`: drop it.
    ///
    /// The resumed session's first keyframe is placed at [`Timeline::end_ms`], or later when
    /// the frames before the drop are shown past that (B-frames: a frame decoded last may be
    /// shown a few frames later, and the frames shown between were lost with the
    /// connection), so that presentation times keep increasing too.
    pub fn video(&mut self, dts_ms: u32, cts_ms: i32, keyframe: bool) -> Option<u32> {
        if self.awaiting_keyframe {
            if !keyframe {
                return None;
            }
            let end = self.end_ms().unwrap_or(0) as i64;
            let after_shown = self
                .max_pts_ms
                .map_or(end, |pts| pts + self.frame_ms() as i64 - i64::from(cts_ms));
            let at = end.max(after_shown);
            self.offset_ms = at - i64::from(dts_ms);
            self.awaiting_keyframe = false;
            self.audio_from_ms = at.max(0) as u64;
        }
        let at = self.place(dts_ms)?;
        let at64 = u64::from(at);
        if let Some(last) = self.last_video_ms {
            if at64 > last {
                self.frame_ms = at64 - last;
            }
        }
        self.last_video_ms = Some(self.last_video_ms.map_or(at64, |last| last.max(at64)));
        let pts = i64::from(at) + i64::from(cts_ms);
        self.max_pts_ms = Some(self.max_pts_ms.map_or(pts, |max| max.max(pts)));
        Some(at)
    }

    /// The stream time of an audio frame at session time `dts_ms`; `None`: drop it.
    pub fn audio(&self, dts_ms: u32) -> Option<u32> {
        if self.awaiting_keyframe {
            return None;
        }
        self.place(dts_ms)
            .filter(|at| u64::from(*at) >= self.audio_from_ms)
    }
}

/// The pusher of a stream's broadcast.
#[derive(Debug)]
enum Pusher {
    /// Pushing.
    Live(StreamPush),
    /// A new broadcast of the key, waiting for the previous one's end (`ENDLIST`) to reach
    /// the edge before its first upload, so that the edge sees two broadcasts. Its uploads
    /// are held meanwhile: the init segment and fewer than the queue's length of segments.
    AfterEnd {
        previous: JoinHandle<()>,
        held: Vec<Upload>,
    },
}

impl Pusher {
    fn start(gateway: &Gateway, key: &str) -> StreamPush {
        StreamPush::start(
            Arc::clone(&gateway.edge),
            key.to_owned(),
            Arc::clone(&gateway.metrics),
            gateway.settings.queue,
            gateway.settings.chunking(),
        )
    }

    /// Turns an `AfterEnd` whose previous broadcast has ended into a live pusher, sending
    /// it what was held.
    fn start_if_previous_ended(&mut self, gateway: &Gateway, key: &str) {
        let Pusher::AfterEnd { previous, held } = self else {
            return;
        };
        if !previous.is_finished() {
            return;
        }
        let held = std::mem::take(held);
        let push = Self::start(gateway, key);
        for upload in held {
            push.send(upload);
        }
        *self = Pusher::Live(push);
    }

    /// Waits for the previous broadcast's end, if any, then pushes live.
    async fn settle(&mut self, gateway: &Gateway, key: &str) {
        if let Pusher::AfterEnd { previous, .. } = self {
            let _ = previous.await;
        }
        self.start_if_previous_ended(gateway, key);
    }

    fn send(&mut self, upload: Upload, gateway: &Gateway, key: &str) {
        self.start_if_previous_ended(gateway, key);
        match self {
            Pusher::Live(push) => {
                push.send(upload);
            }
            Pusher::AfterEnd { held, .. } => {
                let segments = held
                    .iter()
                    .filter(|u| matches!(u, Upload::Segment(_)))
                    .count();
                let parts = held.iter().filter(|u| matches!(u, Upload::Part(_))).count();
                if matches!(upload, Upload::Segment(_)) && segments + 1 >= gateway.settings.queue {
                    gateway
                        .metrics
                        .segments_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    warn!("the previous broadcast is still ending: segment dropped");
                } else if matches!(upload, Upload::Part(_)) && parts >= gateway.settings.queue {
                    gateway
                        .metrics
                        .parts_dropped
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    held.push(upload);
                }
            }
        }
    }

    fn failure(&self) -> Option<String> {
        match self {
            Pusher::Live(push) => push.failure(),
            Pusher::AfterEnd { .. } => None,
        }
    }
}

/// The part of a stream that outlives a connection: what is parked and resumed.
#[derive(Debug)]
struct Core {
    segmenter: Segmenter,
    push: Pusher,
    timeline: Timeline,
    /// Whether the init segment has been written (the codecs are then fixed).
    started: bool,
    /// The codec configurations the segmenter took, compared at a resume.
    video_config: Option<Vec<u8>>,
    audio_config: Option<Vec<u8>>,
}

impl Core {
    fn new(settings: &StreamSettings, push: Pusher) -> Self {
        Self {
            segmenter: Segmenter::new(settings.segment_ms).with_parts(
                settings
                    .chunking()
                    .map_or(settings.part_ms, |_| settings.chunk_ms),
            ),
            push,
            timeline: Timeline::default(),
            started: false,
            video_config: None,
            audio_config: None,
        }
    }

    fn take(&mut self, media: Media<'_>) -> Result<Vec<Output>, MediaError> {
        match media {
            Media::VideoConfig(record) => {
                self.segmenter.video_config(record)?;
                if !self.started {
                    self.video_config = Some(record.to_vec());
                }
                Ok(Vec::new())
            }
            Media::AudioConfig(raw) => {
                self.segmenter.audio_config(raw)?;
                if !self.started {
                    self.audio_config = Some(raw.to_vec());
                }
                Ok(Vec::new())
            }
            Media::Video {
                dts_ms,
                cts_ms,
                keyframe,
                data,
            } => {
                let Some(at) = self.timeline.video(dts_ms, cts_ms, keyframe) else {
                    return Ok(Vec::new());
                };
                let outputs = self.segmenter.video_frame(at, cts_ms, keyframe, data)?;
                self.started |= outputs.iter().any(|o| matches!(o, Output::Init(_)));
                Ok(outputs)
            }
            Media::Audio { dts_ms, data } => {
                if let Some(at) = self.timeline.audio(dts_ms) {
                    self.segmenter.audio_frame(at, data)?;
                }
                Ok(Vec::new())
            }
            Media::SizeHint(width, height) => {
                self.segmenter.set_size_hint(width, height);
                Ok(Vec::new())
            }
        }
    }

    /// Whether a resumed session's codec configurations (those it sent before its first
    /// keyframe) fit the tracks this stream's init segment declared.
    fn same_codecs(&self, resume: &Resume) -> bool {
        let with_audio = self
            .segmenter
            .codecs()
            .is_some_and(|codecs| codecs.contains("mp4a"));
        let video_same = resume
            .video_config
            .as_ref()
            .is_none_or(|v| Some(v) == self.video_config.as_ref());
        let audio_same = match (&resume.audio_config, with_audio) {
            // No audio this time: the audio track has a gap.
            (None, _) => true,
            (Some(a), true) => Some(a) == self.audio_config.as_ref(),
            // Audio now where the init segment has no audio track.
            (Some(_), false) => false,
        };
        video_same && audio_same
    }

    /// The last segment (after its last parts) as uploads, if samples are held.
    fn finish(&mut self) -> Vec<Upload> {
        match self.segmenter.finish() {
            Ok(outputs) => outputs.into_iter().filter_map(upload_of).collect(),
            Err(e) => {
                warn!("last segment lost", error = e.to_string());
                Vec::new()
            }
        }
    }

    /// Ends the broadcast: `clean` flushes the last segment and pushes `ENDLIST`.
    async fn end(mut self, gateway: &Gateway, key: &str, clean: bool) {
        let last = if clean { self.finish() } else { Vec::new() };
        self.push.settle(gateway, key).await;
        if let Pusher::Live(push) = self.push {
            push.end(last, clean, END_WAIT).await;
        }
    }
}

/// The upload of a part or a segment (the init segment is logged where it is queued).
fn upload_of(output: Output) -> Option<Upload> {
    match output {
        Output::Init(_) => None,
        Output::Part(part) => Some(Upload::Part(part)),
        Output::Segment(segment) => Some(Upload::Segment(segment)),
    }
}

/// What a resumed session sent before its first keyframe.
#[derive(Debug, Default)]
struct Resume {
    video_config: Option<Vec<u8>>,
    audio_config: Option<Vec<u8>>,
    size: Option<(u32, u32)>,
}

/// A publishing stream.
#[derive(Debug)]
pub struct Stream {
    gateway: Arc<Gateway>,
    core: Core,
    /// Set from a resume until the new session's first keyframe.
    resume: Option<Resume>,
    claim: KeyClaim,
    key: String,
}

impl Stream {
    /// Opens the stream of ingest token `key`: refused when the key is not one, when it is
    /// already publishing on this gateway, or when the edge refuses it (expired, rotated,
    /// forged), with the reason the client is told. A stream of the key parked within the
    /// reconnect window is resumed (the key checked with the edge again first).
    pub async fn open(gateway: &Arc<Gateway>, key: &str) -> Result<Self, Refused> {
        let refused = |reason: String| {
            gateway
                .metrics
                .publishes_refused
                .fetch_add(1, Ordering::Relaxed);
            Refused(reason)
        };
        if !valid_key(key) {
            return Err(refused("the stream key is not an ingest key".into()));
        }
        if gateway.is_stopping() {
            return Err(refused(
                "this gateway is stopping; publish again to reach another".into(),
            ));
        }
        let claim = match KeyClaim::take(gateway, key) {
            Some(claim) => claim,
            None => match KeyClaim::take_over(gateway, key).await {
                Some(claim) => claim,
                None => {
                    warn!("second publisher refused", key = key_label(key));
                    return Err(refused(
                        "this stream key is already publishing on this gateway".into(),
                    ));
                }
            },
        };
        if let Err(e) = gateway.edge.check_key(key).await {
            // A parked stream of the key is left to its window.
            warn!(
                "publish refused by the edge",
                key = key_label(key),
                error = e.to_string()
            );
            return Err(refused(match e {
                PushError::Refused { reason, .. } => reason,
                other => other.to_string(),
            }));
        }
        // Open: from now on, a silent connection can be taken over.
        claim.heard();
        let metrics = &gateway.metrics;
        metrics.streams_active.fetch_add(1, Ordering::Relaxed);
        let parked = gateway.parked().remove(key);
        if let Some(parked) = parked {
            metrics.streams_parked.fetch_sub(1, Ordering::Relaxed);
            metrics.reconnects.fetch_add(1, Ordering::Relaxed);
            info!(
                "publisher reconnected; stream resumed",
                key = key_label(key),
                after_ms = parked.since.elapsed().as_millis() as u64
            );
            let mut core = parked.core;
            let resume = if core.started {
                core.timeline.resume();
                Some(Resume::default())
            } else {
                // Nothing was pushed yet: the new session starts the stream afresh.
                core.timeline = Timeline::default();
                None
            };
            return Ok(Self {
                gateway: Arc::clone(gateway),
                core,
                resume,
                claim,
                key: key.to_owned(),
            });
        }
        metrics.streams_total.fetch_add(1, Ordering::Relaxed);
        info!("publish accepted", key = key_label(key));
        let push = Pusher::Live(Pusher::start(gateway, key));
        Ok(Self {
            gateway: Arc::clone(gateway),
            core: Core::new(&gateway.settings, push),
            resume: None,
            claim,
            key: key.to_owned(),
        })
    }

    /// The stream key's log label.
    pub fn label(&self) -> String {
        key_label(&self.key)
    }

    /// Completes when a new publisher of the key has taken it over because this stream's
    /// connection was silent; the connection should then end (its stream [parked]).
    ///
    /// [parked]: Stream::disconnected
    pub async fn taken_over(&self) {
        self.claim.holder.takeover.notified().await;
    }

    /// Completes when the gateway is stopping; the connection should then end the stream
    /// cleanly ([`Stream::end`] with `clean`).
    pub async fn stopping(&self) {
        self.gateway.stopped().await;
    }

    /// Takes one input; an error means the stream cannot go on (the caller ends it).
    pub fn media(&mut self, media: Media<'_>) -> Result<(), MediaError> {
        self.claim.heard();
        let outputs = self.take(media).inspect_err(|e| {
            warn!(
                "bad media; the stream ends",
                key = self.label(),
                error = e.to_string()
            );
            self.gateway
                .metrics
                .stream_errors
                .fetch_add(1, Ordering::Relaxed);
        })?;
        for output in outputs {
            let upload = match output {
                Output::Init(bytes) => {
                    info!(
                        "stream started",
                        key = self.label(),
                        codecs = self.core.segmenter.codecs()
                    );
                    Upload::Init(bytes)
                }
                Output::Part(part) => Upload::Part(part),
                Output::Segment(segment) => {
                    // When the keyframe that closes a segment arrived (the benchmarks time
                    // keyframe -> listed from it).
                    info!(
                        "segment cut",
                        key = self.label(),
                        sequence = segment.sequence
                    );
                    Upload::Segment(segment)
                }
            };
            self.core.push.send(upload, &self.gateway, &self.key);
        }
        Ok(())
    }

    fn take(&mut self, media: Media<'_>) -> Result<Vec<Output>, MediaError> {
        if let Some(resume) = self.resume.as_mut() {
            match media {
                Media::VideoConfig(record) => resume.video_config = Some(record.to_vec()),
                Media::AudioConfig(raw) => resume.audio_config = Some(raw.to_vec()),
                Media::SizeHint(width, height) => resume.size = Some((width, height)),
                Media::Video { keyframe: true, .. } => {
                    let resume = self.resume.take().unwrap_or_default();
                    if !self.core.same_codecs(&resume) {
                        self.restart(resume)?;
                    }
                    return self.core.take(media);
                }
                // The resumed timeline starts at a keyframe.
                Media::Video { .. } | Media::Audio { .. } => {}
            }
            return Ok(Vec::new());
        }
        self.core.take(media)
    }

    /// The resumed session's codecs differ from the parked stream's: that broadcast ends
    /// cleanly (its samples were flushed when it was parked) and a new one starts, its
    /// uploads held until the edge has the previous one's `ENDLIST`.
    fn restart(&mut self, resume: Resume) -> Result<(), MediaError> {
        info!(
            "codecs changed across the reconnect; the parked broadcast ends and a new one starts",
            key = self.label()
        );
        let gateway = Arc::clone(&self.gateway);
        let key = self.key.clone();
        let (old_tx, old_rx) = tokio::sync::oneshot::channel::<Core>();
        let previous = tokio::spawn(async move {
            if let Ok(old) = old_rx.await {
                old.end(&gateway, &key, true).await;
            }
        });
        let fresh = Core::new(
            &self.gateway.settings,
            Pusher::AfterEnd {
                previous,
                held: Vec::new(),
            },
        );
        let _ = old_tx.send(std::mem::replace(&mut self.core, fresh));
        self.gateway
            .metrics
            .streams_total
            .fetch_add(1, Ordering::Relaxed);
        if let Some((width, height)) = resume.size {
            self.core.take(Media::SizeHint(width, height))?;
        }
        if let Some(record) = &resume.video_config {
            self.core.take(Media::VideoConfig(record))?;
        }
        if let Some(raw) = &resume.audio_config {
            self.core.take(Media::AudioConfig(raw))?;
        }
        Ok(())
    }

    /// Why the edge stopped taking this stream, once it has (the caller then ends it,
    /// not cleanly).
    pub fn failure(&self) -> Option<String> {
        let failure = self.core.push.failure();
        if failure.is_some() {
            self.gateway
                .metrics
                .stream_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        failure
    }

    /// Ends the stream: `clean` flushes the last segment and pushes `ENDLIST`.
    pub async fn end(self, clean: bool) {
        let label = self.label();
        let Stream {
            gateway, core, key, ..
        } = self;
        core.end(&gateway, &key, clean).await;
        gateway
            .metrics
            .streams_active
            .fetch_sub(1, Ordering::Relaxed);
        info!("publish ended", key = label, clean = clean);
    }

    /// The connection ended without an unpublish (closed, reset, timed out): the stream is
    /// parked for the gateway's reconnect grace window, its held samples flushed into a
    /// segment but no `ENDLIST` pushed, so that a publish of the key within the window
    /// continues the same broadcast. When the window passes, it ends cleanly. With no
    /// window, it ends cleanly at once.
    pub async fn disconnected(self) {
        let grace = self.gateway.reconnect_grace;
        if grace.is_zero() {
            return self.end(true).await;
        }
        let label = self.label();
        let Stream {
            gateway,
            mut core,
            key,
            claim,
            ..
        } = self;
        for upload in core.finish() {
            core.push.send(upload, &gateway, &key);
        }
        let id = gateway.parkings.fetch_add(1, Ordering::Relaxed);
        let metrics = &gateway.metrics;
        metrics.streams_active.fetch_sub(1, Ordering::Relaxed);
        metrics.streams_parked.fetch_add(1, Ordering::Relaxed);
        let parked = Parked {
            id,
            core,
            since: Instant::now(),
        };
        // The claim is held while parking, so no other stream of the key is parked.
        gateway.parked().insert(key.clone(), parked);
        drop(claim);
        info!(
            "connection lost; stream parked for a reconnect",
            key = label,
            grace_s = grace.as_secs_f64()
        );
        tokio::spawn(expire(gateway, key, id, grace));
    }
}

/// Ends parking `id` of `key` cleanly once `grace` has passed, unless it was resumed.
async fn expire(gateway: Arc<Gateway>, key: String, id: u64, grace: Duration) {
    tokio::time::sleep(grace).await;
    // A publisher holding the claim now takes the parked stream (or is refused and leaves
    // it to a later expiry check); held by this task, the claim keeps a new publisher from
    // pushing before the `ENDLIST`.
    let claim = loop {
        if gateway
            .parked()
            .get(&key)
            .is_none_or(|parked| parked.id != id)
        {
            return;
        }
        if let Some(claim) = KeyClaim::take(&gateway, &key) {
            break claim;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let parked = {
        let mut parked = gateway.parked();
        match parked.get(&key) {
            Some(p) if p.id == id => parked.remove(&key),
            _ => None,
        }
    };
    let Some(parked) = parked else {
        return;
    };
    gateway
        .metrics
        .streams_parked
        .fetch_sub(1, Ordering::Relaxed);
    info!(
        "no reconnect within the window; the stream ends",
        key = key_label(&key),
        grace_s = grace.as_secs_f64()
    );
    parked.core.end(&gateway, &key, true).await;
    drop(claim);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeEdge;
    use mp4_atom::{Decode, Moof, Styp};

    #[test]
    fn keys_are_url_safe_tokens() {
        assert!(valid_key("i.ch_abc.1.s.1700000000.AbC-_x"));
        assert!(!valid_key(""));
        assert!(!valid_key(".."));
        assert!(!valid_key("../secret"));
        assert!(!valid_key("a/b"));
        assert!(!valid_key("a?b"));
        assert!(!valid_key(&"a".repeat(2000)));
    }

    #[test]
    fn a_first_session_keeps_its_timestamps() {
        let mut t = Timeline::default();
        assert_eq!(t.video(1000, 0, true), Some(1000));
        assert_eq!(t.audio(990), Some(990));
        assert_eq!(t.video(1033, 0, false), Some(1033));
        assert_eq!(t.end_ms(), Some(1066));
    }

    #[test]
    fn a_resumed_session_continues_the_timeline_from_its_first_keyframe() {
        let mut t = Timeline::default();
        for i in 0..300u32 {
            t.video(i * 100 / 3, 0, i % 60 == 0);
        }
        // Last frame at 9966 ms, 33 ms apart: the video ends at 9999 ms.
        assert_eq!(t.end_ms(), Some(9999));
        t.resume();
        assert!(t.awaiting_keyframe());
        // The new session restarts near 0; nothing before its first keyframe is placed.
        assert_eq!(t.audio(0), None);
        assert_eq!(t.video(0, 0, false), None);
        assert_eq!(t.video(40, 0, true), Some(9999));
        assert!(!t.awaiting_keyframe());
        assert_eq!(t.video(73, 0, false), Some(10_032));
        // Audio is shifted the same way; audio from before the keyframe is dropped.
        assert_eq!(t.audio(30), None);
        assert_eq!(t.audio(50), Some(10_009));
        // A second drop and resume continues again.
        t.resume();
        assert_eq!(t.video(5_000, 0, true), Some(10_065));
    }

    #[test]
    fn a_resumed_keyframe_is_shown_after_every_frame_shown_before_the_drop() {
        let mut t = Timeline::default();
        // B-frames: the P frame decoded last (at 33 ms) is shown at 133 ms, and the B frames
        // to be shown before it were lost with the connection.
        assert_eq!(t.video(0, 66, true), Some(0));
        assert_eq!(t.video(33, 100, false), Some(33));
        assert_eq!(t.end_ms(), Some(66));
        t.resume();
        // The new keyframe (shown 66 ms after its decode time) is shown one frame after
        // 133 ms: decoded at 100 ms, not at the 66 ms where the decode times end.
        assert_eq!(t.video(0, 66, true), Some(100));
        assert_eq!(t.video(33, 100, false), Some(133));
    }

    #[test]
    fn a_resumed_session_with_later_timestamps_is_shifted_back() {
        let mut t = Timeline::default();
        t.video(0, 0, true);
        t.video(40, 0, false);
        t.resume();
        assert_eq!(t.video(3_600_000, 0, true), Some(80));
        assert_eq!(t.video(3_600_040, 0, false), Some(120));
        // A frame that would land before the stream's start is dropped, not wrapped.
        assert_eq!(t.audio(1_000), None);
    }

    #[test]
    fn resuming_a_stream_that_never_started_places_nothing_differently() {
        let mut t = Timeline::default();
        t.resume();
        assert!(!t.awaiting_keyframe());
        assert_eq!(t.video(500, 0, false), Some(500));
    }

    use crate::flv::fixtures::{AAC_LC_48K_STEREO as ASC, AVC_RECORD_640X360 as AVC_RECORD};
    const KEY: &str = "i.ch_test.1.s.1700000000.sig";

    fn gateway(edge: Edge, grace: Duration) -> Arc<Gateway> {
        let settings = StreamSettings {
            segment_ms: 2000,
            part_ms: 0,
            chunk_ms: 0,
            queue: 16,
        };
        Arc::new(
            Gateway::new(edge, Arc::new(Metrics::default()), settings).with_reconnect_grace(grace),
        )
    }

    /// One publishing session: its configurations, then `seconds` of 30 fps video (a
    /// keyframe every second) from session time `from_ms`, with AAC frames between. The
    /// first frames (before `skip` frames) are not keyframes, as after a reconnect the
    /// encoder's first tags may be.
    fn session(stream: &mut Stream, record: &[u8], from_ms: u32, seconds: u32) {
        stream.media(Media::VideoConfig(record)).unwrap();
        stream.media(Media::AudioConfig(ASC)).unwrap();
        let mut audio_ms = f64::from(from_ms);
        for i in 0..seconds * 30 {
            let ms = from_ms + i * 100 / 3;
            while audio_ms <= f64::from(ms) {
                let data = [0xAA; 7];
                stream
                    .media(Media::Audio {
                        dts_ms: audio_ms as u32,
                        data: &data,
                    })
                    .unwrap();
                audio_ms += 1024.0 * 1000.0 / 48000.0;
            }
            let data = [0, 0, 0, 4, 0, 0, 0, i as u8];
            stream
                .media(Media::Video {
                    dts_ms: ms,
                    cts_ms: 0,
                    keyframe: i % 30 == 0,
                    data: &data,
                })
                .unwrap();
        }
    }

    /// The video track's decode time range (90 kHz) and first sample's flags of a segment.
    fn video_span(bytes: &[u8]) -> (u64, u64, u32) {
        let mut buf = bytes;
        Styp::decode(&mut buf).unwrap();
        let moof = Moof::decode(&mut buf).unwrap();
        let video = &moof.traf[0];
        let start = video.tfdt.as_ref().unwrap().base_media_decode_time;
        let trun = &video.trun[0];
        let total: u64 = trun
            .samples
            .iter()
            .map(|s| u64::from(s.duration.unwrap()))
            .sum();
        let first = trun.samples.get(0).unwrap().flags.unwrap();
        (start, start + total, first)
    }

    /// The media segments PUT, sent as bytes or committed from their parts.
    fn segments(puts: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        puts.iter()
            .filter(|(file, _)| file.ends_with(".m4s") || file.contains(".m4s?from_parts="))
            .cloned()
            .collect()
    }

    fn ended(puts: &[(String, Vec<u8>)]) -> bool {
        puts.iter()
            .any(|(file, body)| file == "index.m3u8" && body.ends_with(b"#EXT-X-ENDLIST\n"))
    }

    #[tokio::test]
    async fn a_reconnect_within_the_window_continues_the_same_broadcast() {
        let (edge, client) = FakeEdge::start().await;
        let gateway = gateway(client, Duration::from_secs(30));
        let mut first = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut first, AVC_RECORD, 0, 5);
        first.disconnected().await;
        assert_eq!(gateway.parked_streams(), 1);
        // Parking flushed the held second into segment 3, without ENDLIST.
        edge.until(|puts| segments(puts).len() == 3).await;
        assert!(!ended(&edge.puts()));

        // The encoder comes back with timestamps from 0 and a non-keyframe first.
        let mut second = Stream::open(&gateway, KEY).await.unwrap();
        assert_eq!(gateway.parked_streams(), 0);
        let data = [0, 0, 0, 4, 1, 2, 3, 4];
        let leading = Media::Video {
            dts_ms: 0,
            cts_ms: 0,
            keyframe: false,
            data: &data,
        };
        second.media(leading).unwrap();
        session(&mut second, AVC_RECORD, 20, 5);
        second.end(true).await;
        edge.until(ended).await;

        let puts = edge.puts();
        let inits = puts.iter().filter(|(f, _)| f == "index_init.mp4").count();
        assert_eq!(inits, 1, "one init segment: {:?}", edge.files());
        let segments = segments(&puts);
        let names: Vec<&str> = segments.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            names,
            (1..=6).map(crate::push::segment_file).collect::<Vec<_>>(),
            "one numbering"
        );
        // The video timeline is continuous across the reconnect and every segment starts
        // with a keyframe.
        let mut end = 0;
        for (file, bytes) in &segments {
            let (start, stop, flags) = video_span(bytes);
            assert!(
                start.abs_diff(end) <= 90,
                "{file} starts at {start}, not {end}"
            );
            assert_eq!(
                flags & 0x0001_0000,
                0,
                "{file} starts with a non-sync sample"
            );
            end = stop;
        }
        assert!(
            (end as f64 / 90_000.0 - 10.0).abs() < 0.1,
            "10 s pushed, {end} ticks"
        );
        // One ENDLIST, at the very end.
        let endlists = puts
            .iter()
            .filter(|(_, b)| b.ends_with(b"ENDLIST\n"))
            .count();
        assert_eq!(endlists, 1);
        let metrics = &gateway.metrics;
        assert_eq!(metrics.reconnects.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.streams_total.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.streams_active.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.streams_parked.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_parked_stream_ends_cleanly_when_the_window_passes() {
        let (edge, client) = FakeEdge::start().await;
        let gateway = gateway(client, Duration::from_millis(200));
        let mut stream = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut stream, AVC_RECORD, 0, 3);
        stream.disconnected().await;
        edge.until(ended).await;
        assert_eq!(gateway.parked_streams(), 0);
        assert_eq!(gateway.metrics.streams_parked.load(Ordering::Relaxed), 0);
        // The next publish is a new broadcast: segments numbered from 1 again.
        let mut next = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut next, AVC_RECORD, 0, 3);
        next.end(true).await;
        let files = edge.files();
        assert_eq!(
            files.iter().filter(|f| *f == "index_00001.m4s").count(),
            2,
            "{files:?}"
        );
        assert_eq!(gateway.metrics.reconnects.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn new_codecs_after_a_reconnect_end_the_broadcast_and_start_another() {
        let (edge, client) = FakeEdge::start().await;
        let gateway = gateway(client, Duration::from_secs(30));
        let mut first = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut first, AVC_RECORD, 0, 3);
        first.disconnected().await;
        let mut second = Stream::open(&gateway, KEY).await.unwrap();
        // Another profile byte: another H.264 configuration.
        let mut record = AVC_RECORD.to_vec();
        record[1] = 0x4d;
        record[9] = 0x4d;
        session(&mut second, &record, 0, 3);
        second.end(true).await;
        edge.until(|puts| {
            puts.iter()
                .filter(|(_, b)| b.ends_with(b"ENDLIST\n"))
                .count()
                == 2
        })
        .await;
        let files = edge.files();
        // The first broadcast's ENDLIST reaches the edge before the second's init.
        let first_end = edge
            .puts()
            .iter()
            .position(|(_, b)| b.ends_with(b"ENDLIST\n"))
            .unwrap();
        let second_init = files.iter().rposition(|f| f == "index_init.mp4").unwrap();
        assert!(first_end < second_init, "{files:?}");
        assert_eq!(files.iter().filter(|f| *f == "index_init.mp4").count(), 2);
        assert_eq!(gateway.metrics.streams_total.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn stopping_ends_publishing_and_parked_streams_cleanly_and_refuses_new_ones() {
        let (edge, client) = FakeEdge::start().await;
        let gateway = gateway(client, Duration::from_secs(300));
        const OTHER: &str = "i.ch_other.1.s.1700000000.sig";
        // One stream parked (its connection lost), one publishing through a connection task
        // that ends its stream cleanly when told the gateway stops, as the RTMP and SRT
        // connections do.
        let mut parked = Stream::open(&gateway, OTHER).await.unwrap();
        session(&mut parked, AVC_RECORD, 0, 3);
        parked.disconnected().await;
        let mut live = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut live, AVC_RECORD, 0, 3);
        let connection = tokio::spawn(async move {
            live.stopping().await;
            live.end(true).await;
        });
        assert_eq!(gateway.parked_streams(), 1);

        let left = gateway.shutdown(Duration::from_secs(10)).await;
        assert_eq!(left, 0, "every stream ended within the time");
        connection.await.unwrap();
        // Both broadcasts got their last segment and ENDLIST, long before the 300 s window.
        let endlists = edge
            .puts()
            .iter()
            .filter(|(file, body)| file == "index.m3u8" && body.ends_with(b"#EXT-X-ENDLIST\n"))
            .count();
        assert_eq!(endlists, 2, "{:?}", edge.files());
        assert_eq!(gateway.parked_streams(), 0);
        let metrics = &gateway.metrics;
        assert_eq!(metrics.streams_active.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.streams_parked.load(Ordering::Relaxed), 0);
        // A stopping gateway takes no new publish.
        let refused = Stream::open(&gateway, KEY).await.unwrap_err();
        assert!(refused.0.contains("stopping"), "{refused}");
    }

    #[tokio::test]
    async fn a_silent_publisher_is_taken_over_and_its_stream_resumed() {
        let (edge, client) = FakeEdge::start().await;
        let gateway = Arc::new(
            Gateway::new(
                client,
                Arc::new(Metrics::default()),
                StreamSettings {
                    segment_ms: 2000,
                    part_ms: 0,
                    chunk_ms: 0,
                    queue: 16,
                },
            )
            .with_reconnect_grace(Duration::from_secs(30))
            .with_takeover_silence(Duration::from_millis(300)),
        );
        let mut first = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut first, AVC_RECORD, 0, 3);
        // Still sending: a second publisher is refused.
        let refused = Stream::open(&gateway, KEY).await.unwrap_err();
        assert!(refused.0.contains("already publishing"), "{refused}");

        // The first connection goes silent; its task waits for media or a takeover, and
        // parks its stream when taken over, as the RTMP connection does.
        let holder = tokio::spawn(async move {
            first.taken_over().await;
            first.disconnected().await;
        });
        let started = Instant::now();
        let mut second = loop {
            match Stream::open(&gateway, KEY).await {
                Ok(stream) => break stream,
                Err(refused) => {
                    assert!(started.elapsed() < Duration::from_secs(5), "{refused}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert!(started.elapsed() >= Duration::from_millis(250));
        holder.await.unwrap();
        session(&mut second, AVC_RECORD, 0, 3);
        second.end(true).await;
        edge.until(ended).await;
        let files = edge.files();
        assert_eq!(
            files.iter().filter(|f| *f == "index_init.mp4").count(),
            1,
            "{files:?}"
        );
        let metrics = &gateway.metrics;
        assert_eq!(metrics.takeovers.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.reconnects.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.streams_total.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn parts_reach_the_edge_before_their_segment_and_make_it_up() {
        let (edge, client) = FakeEdge::start().await;
        let settings = StreamSettings {
            segment_ms: 2000,
            part_ms: 334,
            chunk_ms: 0,
            queue: 16,
        };
        let gateway = Arc::new(
            Gateway::new(client, Arc::new(Metrics::default()), settings)
                .with_reconnect_grace(Duration::from_secs(30)),
        );
        let mut first = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut first, AVC_RECORD, 0, 5);
        // Parking flushes the held second as parts and then segment 3.
        first.disconnected().await;
        edge.until(|puts| segments(puts).len() == 3).await;
        let mut second = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut second, AVC_RECORD, 20, 3);
        second.end(true).await;
        edge.until(ended).await;

        let mut sequence = 1;
        let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
        let mut pushed = 0;
        let mut committed = 0;
        for (file, body) in edge.puts() {
            if file.contains(".part") {
                let name = crate::push::part_file(sequence, parts.len() as u32);
                assert!(file.starts_with(&format!("{name}?duration_us=")), "{file}");
                assert!(
                    file.contains("&part_target_us=334000&independent="),
                    "{file}"
                );
                let independent = file.ends_with("independent=1");
                let mut buf = if parts.is_empty() {
                    let mut buf = body.as_slice();
                    Styp::decode(&mut buf).unwrap();
                    buf
                } else {
                    body.as_slice()
                };
                let moof = Moof::decode(&mut buf).unwrap();
                let first_flags = moof.traf[0].trun[0].samples.get(0).unwrap().flags;
                assert_eq!(first_flags == Some(0x0200_0000), independent, "{file}");
                parts.push((file, body));
                pushed += 1;
            } else if let Some((name, count)) = file.split_once("?from_parts=") {
                // Every part went up: the segment is committed from them, not sent again.
                assert_eq!(name, crate::push::segment_file(sequence));
                assert_eq!(count, parts.len().to_string(), "{file}");
                assert!(body.is_empty(), "{file} carries no bytes");
                parts.clear();
                committed += 1;
                sequence += 1;
            } else if file.ends_with(".m4s") {
                assert_eq!(file, crate::push::segment_file(sequence));
                assert!(!parts.is_empty(), "{file} without parts");
                let joined: Vec<u8> = parts.drain(..).flat_map(|(_, b)| b).collect();
                assert_eq!(joined, body, "{file} is its parts");
                sequence += 1;
            } else {
                assert!(parts.is_empty(), "{file} between parts and their segment");
            }
        }
        assert_eq!(sequence, 6, "five segments");
        let metrics = &gateway.metrics;
        assert_eq!(metrics.parts_pushed.load(Ordering::Relaxed), pushed);
        assert!(pushed >= 5 * 3, "{pushed} parts");
        assert_eq!(metrics.parts_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(
            committed, 5,
            "with no part lost, every segment is committed"
        );
        assert_eq!(metrics.segments_committed.load(Ordering::Relaxed), 5);
    }

    /// The value of `key` in `query`.
    fn query_value(query: &str, key: &str) -> Option<u64> {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.parse().unwrap())
    }

    /// Five seconds pushed with parts of 334 ms sent in chunks of 100 ms, to an edge that
    /// answers `failing` files 500: the edge, and the gateway (for its counters).
    async fn chunked_session(failing: Option<&str>) -> (FakeEdge, Arc<Gateway>) {
        let (edge, client) = FakeEdge::start().await;
        if let Some(text) = failing {
            edge.answer(text, 500);
        }
        let settings = StreamSettings {
            segment_ms: 2000,
            part_ms: 334,
            chunk_ms: 100,
            // The session is handed over at once, not in real time: room for all of it.
            queue: 64,
        };
        let gateway = Arc::new(Gateway::new(client, Arc::new(Metrics::default()), settings));
        let mut stream = Stream::open(&gateway, KEY).await.unwrap();
        session(&mut stream, AVC_RECORD, 0, 5);
        stream.end(true).await;
        edge.until(ended).await;
        (edge, gateway)
    }

    #[tokio::test]
    async fn parts_go_up_in_chunks_as_they_are_made_and_are_committed_from_them() {
        let (edge, gateway) = chunked_session(None).await;

        let (mut sequence, mut index) = (1, 0);
        let (mut part, mut chunks, mut parts, mut committed) = (Vec::new(), 0u64, 0u64, 0);
        let mut fragments = 0u32;
        for (file, body) in edge.puts() {
            if let Some((name, query)) = file.split_once('?').filter(|(n, _)| n.contains(".part")) {
                assert_eq!(name, crate::push::part_file(sequence, index), "{file}");
                // Each chunk starts where the part's bytes end, whole fragments in order.
                let offset = query_value(query, "offset");
                if !body.is_empty() {
                    assert_eq!(offset, Some(part.len() as u64), "{file}");
                    let mut buf = body.as_slice();
                    if part.is_empty() && index == 0 {
                        Styp::decode(&mut buf).unwrap();
                    }
                    while !buf.is_empty() {
                        let moof = Moof::decode(&mut buf).unwrap();
                        fragments += 1;
                        assert_eq!(moof.mfhd.sequence_number, fragments, "{file}");
                        mp4_atom::Mdat::decode(&mut buf).unwrap();
                    }
                    part.extend_from_slice(&body);
                    chunks += 1;
                }
                if let Some(size) = query_value(query, "from_chunks") {
                    // The commit: the part's size and listing; the next part begins.
                    assert_eq!(size, part.len() as u64, "{file}");
                    let duration = query_value(query, "duration_us").unwrap();
                    assert!((60_000..=334_000).contains(&duration), "{file}");
                    assert_eq!(query_value(query, "part_target_us"), Some(334_000));
                    assert_eq!(
                        query_value(query, "independent"),
                        Some(u64::from(index == 0))
                    );
                    part.clear();
                    parts += 1;
                    index += 1;
                } else {
                    assert!(offset.is_some(), "{file}: no part is sent whole");
                }
            } else if let Some((name, count)) = file.split_once("?from_parts=") {
                assert_eq!(name, crate::push::segment_file(sequence));
                assert_eq!(count, index.to_string(), "{file}");
                assert!(part.is_empty(), "{file} before its last part's commit");
                (sequence, index) = (sequence + 1, 0);
                committed += 1;
            } else {
                assert!(!file.ends_with(".m4s"), "{file}: segments are committed");
            }
        }
        assert_eq!(
            (sequence, committed),
            (4, 3),
            "three segments, each committed"
        );
        let metrics = &gateway.metrics;
        assert_eq!(metrics.chunks_pushed.load(Ordering::Relaxed), chunks);
        assert_eq!(metrics.parts_pushed.load(Ordering::Relaxed), parts);
        assert_eq!(metrics.parts_dropped.load(Ordering::Relaxed), 0);
        // Parts of about 300 ms, each of about three chunks.
        assert!(parts >= 3 * 6, "{parts} parts");
        assert!(chunks >= parts * 2, "{chunks} chunks for {parts} parts");
    }

    #[tokio::test]
    async fn a_part_whose_chunk_failed_is_sent_whole_and_its_segment_still_committed() {
        let (edge, gateway) = chunked_session(Some("index_00002.part1.m4s?offset=")).await;

        let puts = edge.puts();
        let whole: Vec<&(String, Vec<u8>)> = puts
            .iter()
            .filter(|(file, _)| file.starts_with("index_00002.part1.m4s?duration_us="))
            .collect();
        assert_eq!(whole.len(), 1, "the part sent whole once");
        // Its bytes are its fragments, in order, as its chunks would have been.
        let mut buf = whole[0].1.as_slice();
        let mut fragments = 0;
        while !buf.is_empty() {
            Moof::decode(&mut buf).unwrap();
            mp4_atom::Mdat::decode(&mut buf).unwrap();
            fragments += 1;
        }
        assert!(fragments >= 2, "{fragments} fragments");
        // The next part goes up in chunks again, and the segment is committed from its parts.
        assert!(puts
            .iter()
            .any(|(file, _)| file.starts_with("index_00002.part2.m4s?offset=0")));
        assert!(puts
            .iter()
            .any(|(file, _)| file.starts_with("index_00002.m4s?from_parts=")));
        let metrics = &gateway.metrics;
        assert_eq!(metrics.parts_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.segments_committed.load(Ordering::Relaxed), 3);
    }
}

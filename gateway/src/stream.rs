//! One publishing stream, whatever protocol carries it: the key is checked and claimed when
//! it opens, its media (H.264 and AAC, in the FLV/MP4 layouts: an `avcC` record and
//! length-prefixed NAL units, an `AudioSpecificConfig` and raw AAC frames) go through the
//! [`Segmenter`], and what that produces is queued on the stream's [`StreamPush`].

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cmaf::{Output, Segmenter};
use crate::error::{MediaError, PushError};
use crate::metrics::Metrics;
use crate::push::{Edge, StreamPush, Upload};
use crate::{info, warn};

/// Longest stream key taken.
const MAX_KEY_LEN: usize = 1024;
/// Time the end of a stream may take to reach the edge.
const END_WAIT: Duration = Duration::from_secs(60);

/// Per-stream settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Target segment duration in milliseconds (cut at the next keyframe after it).
    pub segment_ms: u64,
    /// Uploads that may wait for the edge per stream before segments are dropped.
    pub queue: usize,
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
    publishing: Mutex<HashSet<String>>,
}

impl Gateway {
    /// A gateway pushing to `edge`.
    pub fn new(edge: Edge, metrics: Arc<Metrics>, settings: StreamSettings) -> Self {
        Self {
            edge: Arc::new(edge),
            metrics,
            settings,
            publishing: Mutex::new(HashSet::new()),
        }
    }

    fn publishing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.publishing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Holds a stream key as publishing on this gateway until dropped.
#[derive(Debug)]
struct KeyClaim {
    gateway: Arc<Gateway>,
    key: String,
}

impl KeyClaim {
    fn take(gateway: &Arc<Gateway>, key: &str) -> Option<Self> {
        gateway.publishing().insert(key.to_owned()).then(|| Self {
            gateway: Arc::clone(gateway),
            key: key.to_owned(),
        })
    }
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        self.gateway.publishing().remove(&self.key);
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

/// A publishing stream.
#[derive(Debug)]
pub struct Stream {
    gateway: Arc<Gateway>,
    segmenter: Segmenter,
    push: StreamPush,
    _claim: KeyClaim,
    key: String,
}

impl Stream {
    /// Opens the stream of ingest token `key`: refused when the key is not one, when it is
    /// already publishing on this gateway, or when the edge refuses it (expired, rotated,
    /// forged), with the reason the client is told.
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
        let Some(claim) = KeyClaim::take(gateway, key) else {
            warn!("second publisher refused", key = key_label(key));
            return Err(refused(
                "this stream key is already publishing on this gateway".into(),
            ));
        };
        if let Err(e) = gateway.edge.check_key(key).await {
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
        let metrics = &gateway.metrics;
        metrics.streams_total.fetch_add(1, Ordering::Relaxed);
        metrics.streams_active.fetch_add(1, Ordering::Relaxed);
        info!("publish accepted", key = key_label(key));
        let push = StreamPush::start(
            Arc::clone(&gateway.edge),
            key.to_owned(),
            Arc::clone(metrics),
            gateway.settings.queue,
        );
        Ok(Self {
            gateway: Arc::clone(gateway),
            segmenter: Segmenter::new(gateway.settings.segment_ms),
            push,
            _claim: claim,
            key: key.to_owned(),
        })
    }

    /// The stream key's log label.
    pub fn label(&self) -> String {
        key_label(&self.key)
    }

    /// Takes one input; an error means the stream cannot go on (the caller ends it).
    pub fn media(&mut self, media: Media<'_>) -> Result<(), MediaError> {
        let outputs = match media {
            Media::VideoConfig(record) => self.segmenter.video_config(record).map(|()| Vec::new()),
            Media::Video {
                dts_ms,
                cts_ms,
                keyframe,
                data,
            } => self.segmenter.video_frame(dts_ms, cts_ms, keyframe, data),
            Media::AudioConfig(raw) => self.segmenter.audio_config(raw).map(|()| Vec::new()),
            Media::Audio { dts_ms, data } => self
                .segmenter
                .audio_frame(dts_ms, data)
                .map(|()| Vec::new()),
            Media::SizeHint(width, height) => {
                self.segmenter.set_size_hint(width, height);
                Ok(Vec::new())
            }
        };
        let outputs = outputs.inspect_err(|e| {
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
                        codecs = self.segmenter.codecs()
                    );
                    Upload::Init(bytes)
                }
                Output::Segment(segment) => Upload::Segment(segment),
            };
            self.push.send(upload);
        }
        Ok(())
    }

    /// Why the edge stopped taking this stream, once it has (the caller then ends it,
    /// not cleanly).
    pub fn failure(&self) -> Option<String> {
        let failure = self.push.failure();
        if failure.is_some() {
            self.gateway
                .metrics
                .stream_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        failure
    }

    /// Ends the stream: `clean` flushes the last segment and pushes `ENDLIST`.
    pub async fn end(mut self, clean: bool) {
        let last = if clean {
            self.segmenter.finish().unwrap_or_else(|e| {
                warn!("last segment lost", error = e.to_string());
                None
            })
        } else {
            None
        };
        let label = self.label();
        self.push.end(last, clean, END_WAIT).await;
        self.gateway
            .metrics
            .streams_active
            .fetch_sub(1, Ordering::Relaxed);
        info!("publish ended", key = label, clean = clean);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! Pushing to the edge: the ingest contract's PUTs (init segment, media segments, then the
//! media playlist naming them) over one keep-alive HTTP client, with retries and backoff on
//! 5xx and network errors, through a bounded queue per stream: when the edge falls behind,
//! new segments are dropped (and counted), never buffered without bound.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cmaf::Segment;
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

/// The file name of media segment `sequence`.
pub fn segment_file(sequence: u32) -> String {
    format!("index_{sequence:05}.m4s")
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
        self.send("key check", || self.client.delete(&url))
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
        let url = self.url(key, file);
        let result = self
            .send(file, || {
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
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Duration, PushError> {
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
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
            if attempt < self.attempts {
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
            attempts: self.attempts,
            last,
        })
    }
}

/// What a stream hands its pusher.
#[derive(Debug)]
pub enum Upload {
    /// The init segment.
    Init(Vec<u8>),
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
    task: JoinHandle<()>,
}

impl StreamPush {
    /// Starts the pusher of the stream with ingest token `key`; at most `queue` uploads wait.
    pub fn start(edge: Arc<Edge>, key: String, metrics: Arc<Metrics>, queue: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (failed_tx, failed) = watch::channel(None);
        let task = tokio::spawn(run(edge, key, Arc::clone(&metrics), rx, failed_tx));
        Self {
            tx,
            failed,
            metrics,
            task,
        }
    }

    /// Queues an upload; a media segment is dropped (and counted) when the queue is full.
    /// False when the pusher has stopped.
    pub fn send(&self, upload: Upload) -> bool {
        match self.tx.try_send(upload) {
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

    /// Ends the stream: queues its `last` segment and the end (waiting for room rather than
    /// dropping them), then waits (at most `wait` in all) for the last playlist.
    pub async fn end(self, last: Option<Segment>, clean: bool, wait: Duration) {
        if clean {
            let tx = &self.tx;
            let _ = tokio::time::timeout(wait, async move {
                if let Some(segment) = last {
                    tx.send(Upload::Segment(segment)).await?;
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

async fn run(
    edge: Arc<Edge>,
    key: String,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Upload>,
    failed: watch::Sender<Option<String>>,
) {
    let mut window: Vec<(u32, f64)> = Vec::new();
    let mut have_init = false;
    while let Some(upload) = rx.recv().await {
        let (file, body, content_type, entry, ended) = match upload {
            Upload::Init(bytes) => (INIT_FILE.to_owned(), bytes, "video/mp4", None, false),
            Upload::Segment(segment) => (
                segment_file(segment.sequence),
                segment.bytes,
                "video/iso.segment",
                Some((segment.sequence, segment.duration)),
                false,
            ),
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

    #[tokio::test]
    async fn a_stalled_edge_drops_segments_instead_of_buffering_them() {
        // An edge that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let edge = Arc::new(Edge::new(&origin, 1, Duration::ZERO).unwrap());
        let metrics = Arc::new(Metrics::default());
        let push = StreamPush::start(edge, "key".into(), Arc::clone(&metrics), 2);
        for sequence in 1..=10 {
            let segment = Segment {
                sequence,
                duration: 2.0,
                bytes: vec![0; 1024],
            };
            assert!(push.send(Upload::Segment(segment)));
        }
        // One upload in flight (stalled), two queued: the other seven are dropped.
        let dropped = metrics.segments_dropped.load(Ordering::Relaxed);
        assert!((7..=8).contains(&dropped), "{dropped} dropped");
        assert_eq!(push.failure(), None);
        push.end(None, false, Duration::from_millis(100)).await;
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

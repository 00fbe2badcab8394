//! The RTMP server: one tokio task per connection drives `rml_rtmp`'s sans-IO handshake and
//! server session, checks the stream key with the edge at `publish`, and feeds the FLV tags
//! to the stream's [`Segmenter`], whose output the stream's [`StreamPush`] uploads.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cmaf::{Output, Segmenter};
use crate::flv::{self, AudioTag, VideoTag};
use crate::metrics::Metrics;
use crate::push::{Edge, StreamPush, Upload};
use crate::{info, warn};

/// The RTMP status code a refused publish carries.
pub const BAD_NAME: &str = "NetStream.Publish.BadName";
/// Longest stream key taken.
const MAX_KEY_LEN: usize = 1024;
/// Time a client has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
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
fn key_label(key: &str) -> String {
    key.chars().take(12).collect::<String>() + "…"
}

/// Accepts RTMP connections forever.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let gateway = Arc::clone(&gateway);
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    if let Err(e) = connection(socket, &gateway).await {
                        info!("connection closed", peer = peer.to_string(), reason = e);
                    }
                });
            }
            Err(e) => {
                warn!("accept failed", error = e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One publishing stream on a connection.
struct Publish {
    segmenter: Segmenter,
    push: StreamPush,
    _claim: KeyClaim,
    key: String,
}

/// What a connection is doing.
struct Connection<'a> {
    gateway: &'a Arc<Gateway>,
    socket: TcpStream,
    session: ServerSession,
    publish: Option<Publish>,
    /// Close once the pending answers are written.
    closing: Option<String>,
}

async fn handshake(socket: &mut TcpStream, metrics: &Metrics) -> Result<Vec<u8>, String> {
    let mut handshake = Handshake::new(PeerType::Server);
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the client left during the handshake".into());
        }
        metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        match handshake.process_bytes(&buf[..n]) {
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                socket
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                socket
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(remaining_bytes);
            }
            Err(e) => return Err(format!("bad handshake: {e:?}")),
        }
    }
}

/// Serves one RTMP connection until it closes; the reason it closed.
async fn connection(mut socket: TcpStream, gateway: &Arc<Gateway>) -> Result<(), String> {
    let remaining =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut socket, &gateway.metrics))
            .await
            .map_err(|_| "handshake timed out".to_string())??;
    let (session, results) =
        ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("{e:?}"))?;
    let mut conn = Connection {
        gateway,
        socket,
        session,
        publish: None,
        closing: None,
    };
    let outcome = conn.run(results, remaining).await;
    conn.end_publish(true).await;
    outcome
}

impl Connection<'_> {
    async fn run(
        &mut self,
        first: Vec<ServerSessionResult>,
        remaining: Vec<u8>,
    ) -> Result<(), String> {
        self.apply(first).await?;
        if !remaining.is_empty() {
            let results = self
                .session
                .handle_input(&remaining)
                .map_err(|e| format!("{e:?}"))?;
            self.apply(results).await?;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(reason) = self.closing.take() {
                return Err(reason);
            }
            if let Some(failure) = self.publish.as_ref().and_then(|p| p.push.failure()) {
                self.gateway
                    .metrics
                    .stream_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.end_publish(false).await;
                return Err(failure);
            }
            let n = match tokio::time::timeout(IDLE_TIMEOUT, self.socket.read(&mut buf)).await {
                Err(_) => return Err("idle timeout".into()),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
            };
            self.gateway
                .metrics
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
            let results = self
                .session
                .handle_input(&buf[..n])
                .map_err(|e| format!("RTMP protocol error: {e:?}"))?;
            self.apply(results).await?;
        }
    }

    async fn write(
        &mut self,
        results: Vec<ServerSessionResult>,
    ) -> Result<Vec<ServerSessionEvent>, String> {
        let mut events = Vec::new();
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self
                    .socket
                    .write_all(&packet.bytes)
                    .await
                    .map_err(|e| e.to_string())?,
                ServerSessionResult::RaisedEvent(event) => events.push(event),
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }

    async fn apply(&mut self, results: Vec<ServerSessionResult>) -> Result<(), String> {
        let events = self.write(results).await?;
        for event in events {
            let answers = self.event(event).await?;
            // Accepting or refusing a request answers packets only, never new events.
            let _ = self.write(answers).await?;
        }
        Ok(())
    }

    async fn event(
        &mut self,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, String> {
        let protocol = |e: rml_rtmp::sessions::ServerSessionError| format!("{e:?}");
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                self.session.accept_request(request_id).map_err(protocol)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => self.publish_requested(request_id, stream_key).await,
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => self
                .session
                .reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "this gateway only takes publishes",
                )
                .map_err(protocol),
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let (Some(p), Some(w), Some(h)) = (
                    self.publish.as_mut(),
                    metadata.video_width,
                    metadata.video_height,
                ) {
                    p.segmenter.set_size_hint(w, h);
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.media(true, &data, timestamp.value).await;
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.media(false, &data, timestamp.value).await;
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.end_publish(true).await;
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn refuse(
        &mut self,
        request_id: u32,
        reason: &str,
    ) -> Result<Vec<ServerSessionResult>, String> {
        self.gateway
            .metrics
            .publishes_refused
            .fetch_add(1, Ordering::Relaxed);
        self.closing = Some(format!("publish refused: {reason}"));
        self.session
            .reject_request(request_id, BAD_NAME, reason)
            .map_err(|e| format!("{e:?}"))
    }

    async fn publish_requested(
        &mut self,
        request_id: u32,
        key: String,
    ) -> Result<Vec<ServerSessionResult>, String> {
        if self.publish.is_some() {
            return self
                .refuse(request_id, "this connection is already publishing")
                .await;
        }
        if !valid_key(&key) {
            return self
                .refuse(request_id, "the stream key is not an ingest key")
                .await;
        }
        let Some(claim) = KeyClaim::take(self.gateway, &key) else {
            warn!("second publisher refused", key = key_label(&key));
            return self
                .refuse(
                    request_id,
                    "this stream key is already publishing on this gateway",
                )
                .await;
        };
        if let Err(e) = self.gateway.edge.check_key(&key).await {
            warn!(
                "publish refused by the edge",
                key = key_label(&key),
                error = e.to_string()
            );
            let reason = match &e {
                crate::error::PushError::Refused { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            return self.refuse(request_id, &reason).await;
        }
        let metrics = &self.gateway.metrics;
        metrics.streams_total.fetch_add(1, Ordering::Relaxed);
        metrics.streams_active.fetch_add(1, Ordering::Relaxed);
        info!("publish accepted", key = key_label(&key));
        let push = StreamPush::start(
            Arc::clone(&self.gateway.edge),
            key.clone(),
            Arc::clone(metrics),
            self.gateway.settings.queue,
        );
        self.publish = Some(Publish {
            segmenter: Segmenter::new(self.gateway.settings.segment_ms),
            push,
            _claim: claim,
            key,
        });
        self.session
            .accept_request(request_id)
            .map_err(|e| format!("{e:?}"))
    }

    /// One FLV tag of the publishing stream; bad media ends the stream.
    async fn media(&mut self, video: bool, data: &[u8], timestamp: u32) {
        let Some(publish) = self.publish.as_mut() else {
            return;
        };
        let result = if video {
            match flv::parse_video(data) {
                Ok(VideoTag::Config(record)) => {
                    publish.segmenter.video_config(record).map(|()| Vec::new())
                }
                Ok(VideoTag::Frame {
                    keyframe,
                    cts_ms,
                    data,
                }) => publish
                    .segmenter
                    .video_frame(timestamp, cts_ms, keyframe, data),
                Ok(VideoTag::Other) => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        } else {
            match flv::parse_audio(data) {
                Ok(AudioTag::Config(raw)) => {
                    publish.segmenter.audio_config(raw).map(|()| Vec::new())
                }
                Ok(AudioTag::Frame(frame)) => publish
                    .segmenter
                    .audio_frame(timestamp, frame)
                    .map(|()| Vec::new()),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(outputs) => {
                for output in outputs {
                    if let Output::Init(_) = &output {
                        info!(
                            "stream started",
                            key = key_label(&publish.key),
                            codecs = publish.segmenter.codecs()
                        );
                    }
                    let upload = match output {
                        Output::Init(bytes) => Upload::Init(bytes),
                        Output::Segment(segment) => Upload::Segment(segment),
                    };
                    publish.push.send(upload);
                }
            }
            Err(e) => {
                warn!(
                    "bad media; the stream ends",
                    key = key_label(&publish.key),
                    error = e.to_string()
                );
                self.gateway
                    .metrics
                    .stream_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.closing = Some(e.to_string());
                self.end_publish(true).await;
            }
        }
    }

    /// Ends the publishing stream, if any: `clean` flushes the last segment and `ENDLIST`.
    async fn end_publish(&mut self, clean: bool) {
        let Some(mut publish) = self.publish.take() else {
            return;
        };
        let last = if clean {
            publish.segmenter.finish().unwrap_or_else(|e| {
                warn!("last segment lost", error = e.to_string());
                None
            })
        } else {
            None
        };
        publish.push.end(last, clean, END_WAIT).await;
        self.gateway
            .metrics
            .streams_active
            .fetch_sub(1, Ordering::Relaxed);
        info!(
            "publish ended",
            key = key_label(&publish.key),
            clean = clean
        );
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

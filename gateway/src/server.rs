//! The RTMP server: one tokio task per connection drives `rml_rtmp`'s sans-IO handshake and
//! server session, opens a [`Stream`] at `publish` (the key checked with the edge; a refusal
//! answered with an RTMP error status) and feeds it the FLV tags.
//!
//! An unpublish (`FCUnpublish`, `deleteStream`, `closeStream`) or the gateway stopping ends
//! the stream cleanly; a connection that ends without one (closed, reset, idle, or taken over
//! by a new publisher of the key after being silent) hands its stream to
//! [`Stream::disconnected`], which parks it for the reconnect grace window.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::error::MediaError;
use crate::flv::{self, AudioTag, VideoTag};
use crate::metrics::Metrics;
use crate::stream::{Gateway, Media, Stream};
use crate::{info, warn};

/// The RTMP status code a refused publish carries.
pub const BAD_NAME: &str = "NetStream.Publish.BadName";
/// Time a client has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts RTMP connections forever (at most the gateway's limit per client address).
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                // Over the address's limit: closed at once.
                let Some(slot) = gateway.admit(peer, "rtmp") else {
                    continue;
                };
                let gateway = Arc::clone(&gateway);
                tokio::spawn(async move {
                    let _slot = slot;
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

/// Completes when `publish` is taken over by a new publisher of its key; never without one.
async fn taken_over(publish: Option<&Stream>) {
    match publish {
        Some(stream) => stream.taken_over().await,
        None => std::future::pending().await,
    }
}

/// Completes when the gateway stops while `publish` is publishing; never without one.
async fn stopping(publish: Option<&Stream>) {
    match publish {
        Some(stream) => stream.stopping().await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing.
struct Connection<'a, S> {
    gateway: &'a Arc<Gateway>,
    socket: S,
    session: ServerSession,
    publish: Option<Stream>,
    /// Close once the pending answers are written.
    closing: Option<String>,
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    metrics: &Metrics,
) -> Result<Vec<u8>, String> {
    let mut handshake = Handshake::new(PeerType::Server);
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the client left during the handshake".into());
        }
        metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        match contained(|| handshake.process_bytes(&buf[..n]))? {
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

/// Runs a call into `rml_rtmp` and turns a panic inside it into a protocol error that ends
/// this connection only. rml_rtmp 0.8 subtracts past zero on some malformed chunk streams
/// (a message header that shrinks a message already partly received; found by the
/// `rtmp_session` fuzz target): with overflow checks (debug, and the `gateway` profile turns
/// them on for that crate) that is a panic, without them a capacity-overflow panic a moment
/// later. Either way it is caught here, never a crash of the process.
///
/// # Errors
/// A message naming the protocol failure when the call panicked.
pub fn contained<T>(call: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .map_err(|_| "RTMP protocol error: the stream broke the RTMP parser".to_owned())
}

/// Feeds bytes from the client to the RTMP session, with [`contained`] panics.
///
/// # Errors
/// A message naming the protocol error.
pub fn session_input(
    session: &mut ServerSession,
    bytes: &[u8],
) -> Result<Vec<ServerSessionResult>, String> {
    contained(|| session.handle_input(bytes))?.map_err(|e| format!("RTMP protocol error: {e:?}"))
}

/// Serves one RTMP connection (over TCP, or TLS for RTMPS) until it closes; the reason it
/// closed.
pub async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    gateway: &Arc<Gateway>,
) -> Result<(), String> {
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
    // Still publishing: the connection ended without an unpublish.
    if let Some(publish) = conn.publish.take() {
        publish.disconnected().await;
    }
    outcome
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<'_, S> {
    async fn run(
        &mut self,
        first: Vec<ServerSessionResult>,
        remaining: Vec<u8>,
    ) -> Result<(), String> {
        self.apply(first).await?;
        if !remaining.is_empty() {
            let results = session_input(&mut self.session, &remaining)?;
            self.apply(results).await?;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(reason) = self.closing.take() {
                self.end_publish(true).await;
                return Err(reason);
            }
            if let Some(failure) = self.publish.as_ref().and_then(Stream::failure) {
                self.end_publish(false).await;
                return Err(failure);
            }
            let read = tokio::time::timeout(IDLE_TIMEOUT, self.socket.read(&mut buf));
            let n = tokio::select! {
                read = read => match read {
                    Err(_) => return Err("idle timeout".into()),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(n)) => n,
                },
                () = taken_over(self.publish.as_ref()) => {
                    return Err("a new publisher took the silent connection's key over".into());
                }
                () = stopping(self.publish.as_ref()) => {
                    self.end_publish(true).await;
                    return Err("the gateway is stopping".into());
                }
            };
            self.gateway
                .metrics
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
            let results = session_input(&mut self.session, &buf[..n])?;
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
                if let (Some(w), Some(h)) = (metadata.video_width, metadata.video_height) {
                    self.media(Ok(Media::SizeHint(w, h))).await;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                let media = flv::parse_video(&data).map(|tag| match tag {
                    VideoTag::Config(record) => Some(Media::VideoConfig(record)),
                    VideoTag::Frame {
                        keyframe,
                        cts_ms,
                        data,
                    } => Some(Media::Video {
                        dts_ms: timestamp.value,
                        cts_ms,
                        keyframe,
                        data,
                    }),
                    VideoTag::Other => None,
                });
                if let Some(media) = media.transpose() {
                    self.media(media).await;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                let media = flv::parse_audio(&data).map(|tag| match tag {
                    AudioTag::Config(raw) => Media::AudioConfig(raw),
                    AudioTag::Frame(data) => Media::Audio {
                        dts_ms: timestamp.value,
                        data,
                    },
                });
                self.media(media).await;
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.end_publish(true).await;
                Ok(Vec::new())
            }
            // ffmpeg and OBS send it before `deleteStream`; `rml_rtmp` leaves it to us.
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. }
                if command_name == "FCUnpublish" =>
            {
                self.end_publish(true).await;
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    fn refuse(
        &mut self,
        request_id: u32,
        reason: &str,
    ) -> Result<Vec<ServerSessionResult>, String> {
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
            self.gateway
                .metrics
                .publishes_refused
                .fetch_add(1, Ordering::Relaxed);
            return self.refuse(request_id, "this connection is already publishing");
        }
        match Stream::open(self.gateway, &key).await {
            Ok(stream) => {
                self.publish = Some(stream);
                self.session
                    .accept_request(request_id)
                    .map_err(|e| format!("{e:?}"))
            }
            Err(refused) => self.refuse(request_id, &refused.0),
        }
    }

    /// One input of the publishing stream; bad media ends the stream.
    async fn media(&mut self, media: Result<Media<'_>, MediaError>) {
        let Some(publish) = self.publish.as_mut() else {
            return;
        };
        if let Err(e) = media.and_then(|media| publish.media(media)) {
            self.closing = Some(e.to_string());
            self.end_publish(true).await;
        }
    }

    /// Ends the publishing stream, if any: `clean` flushes the last segment and `ENDLIST`.
    async fn end_publish(&mut self, clean: bool) {
        if let Some(publish) = self.publish.take() {
            publish.end(clean).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_stream_that_breaks_the_rtmp_parser_ends_the_connection_without_a_panic() {
        let (mut session, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        // Chunk stream 3: a full header announcing a 200-byte command and its first 128
        // bytes (the default chunk size), then a type-1 header shrinking that message to 10
        // bytes while 128 are held: rml_rtmp 0.8 subtracts past zero here.
        let mut bytes = vec![0x03, 0, 0, 0, 0, 0, 200, 0x14, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0x02; 128]);
        bytes.extend_from_slice(&[0x43, 0, 0, 0, 0, 0, 10, 0x14]);
        bytes.extend_from_slice(&[0x02; 10]);
        let outcome = session_input(&mut session, &bytes);
        assert!(
            outcome
                .as_ref()
                .is_err_and(|e| e.starts_with("RTMP protocol error")),
            "{:?}",
            outcome.map(|r| r.len())
        );
    }
}

//! The SRT listener (`srt-tokio`, pure Rust): encoders call it (OBS, Larix, ffmpeg) with the
//! stream key in the SRT `streamid`, plain or in the SRT Access Control syntax
//! (`#!::r=KEY,m=publish`). The key is checked with [`Stream::open`] during the handshake: a
//! refusal rejects the connection with an SRT reject code, so the caller never connects. The
//! payload is MPEG-TS, turned into [`Media`](crate::stream::Media) by [`TsInput`].

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use srt_protocol::packet::CoreRejectReason;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::{KeySize, Passphrase};
use srt_tokio::{ConnectionRequest, SocketStatistics, SrtIncoming, SrtListener};

use crate::stream::{key_label, Gateway, Stream};
use crate::tsin::TsInput;
use crate::{info, warn};

/// A stream that sends nothing for this long ends.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The SRT peer idle timeout: a connection that ends after this long without data was lost
/// rather than closed by the caller.
const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest stream id taken (SRT allows 512 bytes).
const MAX_STREAM_ID: usize = 512;

/// Why a stream id names no publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// There is no stream id, or no key in it.
    #[error("no stream key in the SRT stream id")]
    NoKey,
    /// The stream id asks to play (`m=request`) or for both directions.
    #[error("this gateway only takes publishes (m=publish), not m={0}")]
    NotPublish(String),
    /// The stream id is not well formed.
    #[error("malformed SRT stream id: {0}")]
    Malformed(&'static str),
}

impl StreamIdError {
    /// The SRT reject code the caller is answered with.
    pub fn reject_reason(&self) -> RejectReason {
        RejectReason::Server(match self {
            Self::NotPublish(_) => ServerRejectReason::BadMode,
            Self::NoKey | Self::Malformed(_) => ServerRejectReason::BadRequest,
        })
    }
}

/// The stream key an SRT stream id names, for a publish: a plain key (`KEY`, `live/KEY`) or
/// the SRT Access Control syntax, `#!::r=KEY,m=publish` (other keys such as `u=` ignored; the
/// resource may be `live/KEY`). `m=request` and `m=bidirectional` are refused; without an
/// `m=`, a publish is assumed, since the gateway takes nothing else.
pub fn publish_key(stream_id: &str) -> Result<String, StreamIdError> {
    if stream_id.len() > MAX_STREAM_ID {
        return Err(StreamIdError::Malformed("longer than 512 bytes"));
    }
    let resource = if let Some(entries) = stream_id.strip_prefix("#!::") {
        let mut resource = None;
        for entry in entries.split(',') {
            let (name, value) = entry
                .split_once('=')
                .ok_or(StreamIdError::Malformed("an entry without '='"))?;
            match name.trim() {
                "r" => resource = Some(value.trim()),
                "m" if value.trim() != "publish" => {
                    return Err(StreamIdError::NotPublish(value.trim().to_owned()));
                }
                _ => {}
            }
        }
        resource.ok_or(StreamIdError::NoKey)?
    } else {
        stream_id.trim()
    };
    let key = resource.strip_prefix("live/").unwrap_or(resource);
    if key.is_empty() {
        return Err(StreamIdError::NoKey);
    }
    Ok(key.to_owned())
}

/// Lengths SRT takes for a passphrase (the AES key is derived from it).
pub const PASSPHRASE_LENGTHS: std::ops::RangeInclusive<usize> = 10..=79;
/// Wait before binding the listener again after it stopped.
const REBIND_DELAY: Duration = Duration::from_secs(1);

/// The SRT listener's settings.
#[derive(Debug, Clone)]
pub struct SrtSettings {
    /// The UDP address listened on.
    pub address: SocketAddr,
    /// The receive latency (the larger of this and the caller's is used).
    pub latency: Duration,
    /// With one, streams are AES-encrypted and callers must give it.
    pub passphrase: Option<Passphrase>,
}

impl SrtSettings {
    /// Settings from the gateway's flags.
    ///
    /// # Errors
    /// An address that does not parse, or a passphrase whose length is not in
    /// [`PASSPHRASE_LENGTHS`].
    pub fn new(address: &str, latency: Duration, passphrase: Option<&str>) -> io::Result<Self> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let address = address.parse().map_err(|e| invalid(format!("{e}")))?;
        let passphrase = passphrase
            .map(|p| {
                Passphrase::try_from(p.to_owned())
                    .map_err(|_| invalid("the SRT passphrase must be 10 to 79 characters".into()))
            })
            .transpose()?;
        Ok(Self {
            address,
            latency,
            passphrase,
        })
    }

    /// The key settings a caller is accepted with: with a passphrase, the caller's own key
    /// length (AES-128 when it names none). srt-protocol 0.4.4 answers a key length other
    /// than the caller's with a panic (`unimplemented!("Key size mismatch")`) in the
    /// listener's task, so the length is never ours to choose.
    fn key_settings(&self, request: &ConnectionRequest) -> Option<KeySettings> {
        self.passphrase.clone().map(|passphrase| KeySettings {
            key_size: request.key_size(),
            passphrase,
        })
    }
}

/// Binds the SRT listener.
///
/// # Errors
/// The UDP socket cannot be bound.
pub async fn bind(settings: &SrtSettings) -> io::Result<(SrtListener, SrtIncoming)> {
    SrtListener::builder()
        .latency(settings.latency)
        .set(|options| options.session.peer_idle_timeout = PEER_IDLE_TIMEOUT)
        .bind(settings.address)
        .await
}

/// Takes SRT connection requests forever; each is checked and served in its own task. When
/// the listener stops (srt-protocol 0.4.4 panics in the listener's task on some handshakes,
/// e.g. a caller offering encryption to a listener without a passphrase, and the task ends
/// with every connection it carries), it is bound again: those callers reconnect and, within
/// the reconnect window, continue their broadcasts.
pub async fn serve(
    settings: SrtSettings,
    mut bound: (SrtListener, SrtIncoming),
    gateway: Arc<Gateway>,
) {
    let settings = Arc::new(settings);
    loop {
        let (listener, mut incoming) = bound;
        // The listener's task stops when it is dropped: it lives as long as this loop.
        let _listener = listener;
        while let Some(request) = incoming.incoming().next().await {
            let Some(slot) = gateway.admit(request.remote(), "srt") else {
                tokio::spawn(request.reject(RejectReason::Server(ServerRejectReason::Overload)));
                continue;
            };
            let gateway = Arc::clone(&gateway);
            let settings = Arc::clone(&settings);
            tokio::spawn(async move {
                let _slot = slot;
                let peer = request.remote().to_string();
                if let Err(reason) = connection(request, &settings, &gateway).await {
                    info!("SRT connection closed", peer = peer, reason = reason);
                }
            });
        }
        gateway
            .metrics
            .srt_listener_restarts
            .fetch_add(1, Ordering::Relaxed);
        warn!("the SRT listener stopped; binding it again");
        drop(_listener);
        bound = loop {
            tokio::time::sleep(REBIND_DELAY).await;
            match bind(&settings).await {
                Ok(bound) => break bound,
                Err(e) => warn!("binding the SRT listener failed", error = e.to_string()),
            }
        };
    }
}

/// Checks one connection request, accepts or rejects it, and feeds the stream until it ends.
async fn connection(
    request: ConnectionRequest,
    settings: &SrtSettings,
    gateway: &Arc<Gateway>,
) -> Result<(), String> {
    if settings.passphrase.is_none() && request.key_size() != KeySize::Unspecified {
        // The caller encrypts (it names a key length) and this listener has no passphrase:
        // refused here, as accepting would panic in srt-protocol 0.4.4 (see `serve`). A
        // caller that encrypts without naming a length cannot be told apart before that.
        gateway
            .metrics
            .publishes_refused
            .fetch_add(1, Ordering::Relaxed);
        let _ = request
            .reject(RejectReason::Core(CoreRejectReason::Unsecure))
            .await;
        return Err("publish refused: the caller encrypts, this listener has no passphrase".into());
    }
    let stream_id = request
        .stream_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let key = match publish_key(&stream_id) {
        Ok(key) => key,
        Err(e) => {
            gateway
                .metrics
                .publishes_refused
                .fetch_add(1, Ordering::Relaxed);
            let _ = request.reject(e.reject_reason()).await;
            return Err(format!("publish refused: {e}"));
        }
    };
    let stream = match Stream::open(gateway, &key).await {
        Ok(stream) => stream,
        Err(refused) => {
            // SRT carries a reject code, not a text: the reason is in the log.
            let _ = request
                .reject(RejectReason::Server(ServerRejectReason::Forbidden))
                .await;
            return Err(format!("publish refused: {refused}"));
        }
    };
    let key_settings = settings.key_settings(&request);
    let socket = match request.accept(key_settings).await {
        Ok(socket) => socket,
        Err(e) => {
            stream.end(false).await;
            return Err(format!("SRT accept failed: {e}"));
        }
    };
    info!("SRT publish", key = key_label(&key));
    publish(socket, stream, gateway).await
}

/// How the caller's connection ended.
enum Ending {
    /// The caller closed it (SRT shutdown right after its last data): the broadcast ends.
    Closed,
    /// The connection was lost (no data until the peer idle timeout, an error, or a new
    /// publisher took the silent connection's key over): the stream waits for a reconnect
    /// within the gateway's grace window.
    Lost(String),
    /// The stream cannot go on (silent, bad media): the broadcast ends.
    Ended(String),
    /// The gateway is stopping: the broadcast ends cleanly.
    Stopping,
}

/// What a connection's SRT link counters have added to the gateway's metrics so far (SRT
/// reports running totals per connection).
#[derive(Debug, Default)]
struct LinkCounts {
    lost: u64,
    retransmitted: u64,
    dropped: u64,
    undecrypted: u64,
}

impl LinkCounts {
    /// Adds what `latest` counted since the last call to the gateway's totals.
    fn add_to(&mut self, metrics: &crate::metrics::Metrics, latest: &SocketStatistics) {
        let add = |seen: &mut u64, now: u64, total: &std::sync::atomic::AtomicU64| {
            total.fetch_add(now.saturating_sub(*seen), Ordering::Relaxed);
            *seen = (*seen).max(now);
        };
        add(
            &mut self.lost,
            latest.rx_loss_data,
            &metrics.srt_packets_lost,
        );
        add(
            &mut self.retransmitted,
            latest.rx_retransmit_data,
            &metrics.srt_packets_retransmitted,
        );
        add(
            &mut self.dropped,
            latest.rx_dropped_data,
            &metrics.srt_packets_dropped,
        );
        add(
            &mut self.undecrypted,
            latest.rx_decrypt_errors,
            &metrics.srt_packets_undecrypted,
        );
    }
}

/// Feeds a publishing stream from its SRT socket until the caller leaves, goes silent, sends
/// what cannot be taken, or the edge stops taking it.
async fn publish(
    mut socket: srt_tokio::SrtSocket,
    mut stream: Stream,
    gateway: &Arc<Gateway>,
) -> Result<(), String> {
    let mut input = TsInput::new();
    let mut statistics = socket.statistics().clone();
    let mut counted = LinkCounts::default();
    let mut last_data = Instant::now();
    let ending = loop {
        if let Some(failure) = stream.failure() {
            stream.end(false).await;
            return Err(failure);
        }
        let next = tokio::select! {
            next = tokio::time::timeout(IDLE_TIMEOUT, socket.next()) => next,
            () = stream.taken_over() => {
                break Ending::Lost("a new publisher took the silent connection's key over".into());
            }
            () = stream.stopping() => break Ending::Stopping,
        };
        let bytes = match next {
            Err(_) => break Ending::Ended("idle timeout".into()),
            Ok(None) if last_data.elapsed() < PEER_IDLE_TIMEOUT => break Ending::Closed,
            Ok(None) => break Ending::Lost("connection lost".into()),
            Ok(Some(Err(e))) => break Ending::Lost(e.to_string()),
            Ok(Some(Ok((_, bytes)))) => bytes,
        };
        last_data = Instant::now();
        gateway
            .metrics
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        // The link's newest statistics, if they changed (never waits).
        while let Some(Some(latest)) = statistics.next().now_or_never() {
            counted.add_to(&gateway.metrics, &latest);
        }
        if let Err(e) = input.push(&bytes, &mut |media| stream.media(media)) {
            break Ending::Ended(e.to_string());
        }
    };
    if matches!(ending, Ending::Closed | Ending::Stopping) {
        // The frames held at the start go out; the access unit still open is dropped.
        let _ = input.finish(&mut |media| stream.media(media));
    }
    let stats = input.stats();
    if stats.transport.continuity_errors > 0 || stats.bytes_skipped > 0 {
        warn!(
            "SRT input was damaged",
            key = stream.label(),
            continuity_errors = stats.transport.continuity_errors,
            dropped_pes = stats.transport.dropped_pes,
            bytes_skipped = stats.bytes_skipped
        );
    }
    match ending {
        Ending::Closed => {
            stream.end(true).await;
            Ok(())
        }
        Ending::Lost(reason) => {
            stream.disconnected().await;
            Err(reason)
        }
        Ending::Ended(reason) => {
            stream.end(true).await;
            Err(reason)
        }
        Ending::Stopping => {
            stream.end(true).await;
            Err("the gateway is stopping".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_counters_add_each_connections_increase_once() {
        let metrics = crate::metrics::Metrics::default();
        let stats = |lost, retransmitted, dropped| {
            // Non-exhaustive: built by assignment.
            let mut stats = SocketStatistics::default();
            stats.rx_loss_data = lost;
            stats.rx_retransmit_data = retransmitted;
            stats.rx_dropped_data = dropped;
            stats
        };
        let (mut a, mut b) = (LinkCounts::default(), LinkCounts::default());
        a.add_to(&metrics, &stats(5, 4, 1));
        // The same totals again add nothing; running totals add their increase.
        a.add_to(&metrics, &stats(5, 4, 1));
        a.add_to(&metrics, &stats(8, 7, 1));
        b.add_to(&metrics, &stats(2, 2, 0));
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(get(&metrics.srt_packets_lost), 10);
        assert_eq!(get(&metrics.srt_packets_retransmitted), 9);
        assert_eq!(get(&metrics.srt_packets_dropped), 1);
        assert_eq!(get(&metrics.srt_packets_undecrypted), 0);
        assert!(metrics
            .render()
            .contains("\ngateway_srt_packets_lost_total 10\n"));
    }

    #[test]
    fn reads_plain_keys_and_access_control_stream_ids() {
        let key = "i.ch_abc.1.s.1700000000.AbC-_x";
        assert_eq!(publish_key(key).unwrap(), key);
        assert_eq!(publish_key(&format!("live/{key}")).unwrap(), key);
        assert_eq!(publish_key(&format!("#!::r={key},m=publish")).unwrap(), key);
        assert_eq!(publish_key(&format!("#!::m=publish,r={key}")).unwrap(), key);
        assert_eq!(
            publish_key(&format!("#!::u=alice,r=live/{key},m=publish")).unwrap(),
            key
        );
        assert_eq!(
            publish_key(&format!("#!::r={key}")).unwrap(),
            key,
            "publish is assumed"
        );
    }

    #[test]
    fn refuses_playing_and_malformed_stream_ids() {
        assert_eq!(
            publish_key("#!::r=KEY,m=request"),
            Err(StreamIdError::NotPublish("request".into()))
        );
        assert_eq!(
            publish_key("#!::r=KEY,m=bidirectional"),
            Err(StreamIdError::NotPublish("bidirectional".into()))
        );
        assert_eq!(publish_key(""), Err(StreamIdError::NoKey));
        assert_eq!(publish_key("live/"), Err(StreamIdError::NoKey));
        assert_eq!(publish_key("#!::m=publish"), Err(StreamIdError::NoKey));
        assert_eq!(publish_key("#!::r=,m=publish"), Err(StreamIdError::NoKey));
        assert!(matches!(
            publish_key("#!::KEY"),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            publish_key(&"k".repeat(600)),
            Err(StreamIdError::Malformed(_))
        ));
        assert_eq!(
            StreamIdError::NotPublish("request".into()).reject_reason(),
            RejectReason::Server(ServerRejectReason::BadMode)
        );
    }
}

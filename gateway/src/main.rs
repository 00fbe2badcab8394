//! `gateway`: the RTMP ingest gateway's binary. Settings come from flags or the environment
//! (`gateway --help`); logs are JSON lines on stderr.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use edgevideo_gateway::error::StartError;
use edgevideo_gateway::metrics::Metrics;
use edgevideo_gateway::push::Edge;
use edgevideo_gateway::server;
use edgevideo_gateway::srt;
use edgevideo_gateway::stream::{Gateway, StreamSettings};
use edgevideo_gateway::tls;
use edgevideo_gateway::{http, info};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    version,
    about = "RTMP ingest gateway: RTMP in, CMAF pushed to the edge"
)]
struct Settings {
    /// RTMP listen address.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "0.0.0.0:1935")]
    listen: String,
    /// Listen address of /healthz and /metrics.
    #[arg(long, env = "GATEWAY_HTTP_LISTEN", default_value = "127.0.0.1:9935")]
    http_listen: String,
    /// The edge's origin, e.g. https://video.example.com (ingest URLs are {edge}/ingest/{key}/...).
    #[arg(long, env = "GATEWAY_EDGE_URL")]
    edge: String,
    /// Target segment duration in seconds (segments are cut at the next keyframe after it).
    #[arg(long, env = "GATEWAY_SEGMENT_SECONDS", default_value_t = 2.0)]
    segment_seconds: f64,
    /// Low-latency HLS part target in milliseconds (0: no parts; else 100 to the segment
    /// target): each segment is also pushed while it is made, as parts of at most this much
    /// media (index_00001.part0.m4s, ...), before the whole segment.
    #[arg(long, env = "GATEWAY_PART_MS", default_value_t = 334)]
    part_ms: u64,
    /// Chunk target in milliseconds (0: each part is sent once made; else 20 to half the
    /// part target): each part is sent while it is made, in chunks of at most this much
    /// media, so the edge hands it to viewers waiting for it as it comes.
    #[arg(long, env = "GATEWAY_CHUNK_MS", default_value_t = 100)]
    chunk_ms: u64,
    /// Uploads that may wait per stream before new segments are dropped (parts have as many
    /// places of their own).
    #[arg(long, env = "GATEWAY_QUEUE_SEGMENTS", default_value_t = 4)]
    queue_segments: usize,
    /// Attempts per file on 5xx and network errors.
    #[arg(long, env = "GATEWAY_PUSH_ATTEMPTS", default_value_t = 5)]
    push_attempts: u32,
    /// First retry delay in milliseconds (doubling).
    #[arg(long, env = "GATEWAY_RETRY_MS", default_value_t = 250)]
    retry_ms: u64,
    /// SRT listen address (UDP); `off` or empty: no SRT.
    #[arg(long, env = "GATEWAY_SRT_LISTEN", default_value = "0.0.0.0:8890")]
    srt_listen: String,
    /// SRT receive latency in milliseconds (the larger of this and the caller's is used).
    #[arg(long, env = "GATEWAY_SRT_LATENCY_MS", default_value_t = 120)]
    srt_latency_ms: u64,
    /// SRT passphrase (10 to 79 characters): the stream is AES-encrypted and callers must
    /// give it (`passphrase=` in ffmpeg's URL, "Passphrase" in Larix and OBS). None: SRT is
    /// not encrypted (the stream key still decides who may publish).
    #[arg(long, env = "GATEWAY_SRT_PASSPHRASE", hide_env_values = true)]
    srt_passphrase: Option<String>,
    /// RTMPS (RTMP over TLS) listen address; RTMPS listens only with --tls-cert and --tls-key.
    #[arg(long, env = "GATEWAY_RTMPS_LISTEN", default_value = "0.0.0.0:1936")]
    rtmps_listen: String,
    /// RTMPS certificate chain (PEM, the server's certificate first).
    #[arg(long, env = "GATEWAY_TLS_CERT")]
    tls_cert: Option<std::path::PathBuf>,
    /// RTMPS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "GATEWAY_TLS_KEY")]
    tls_key: Option<std::path::PathBuf>,
    /// Seconds a stream whose connection was lost (no unpublish) waits for its publisher to
    /// come back and continue the same broadcast; 0 ends it at once. Keep it below the edge's
    /// LIVE_IDLE_TIMEOUT_SECONDS.
    #[arg(long, env = "GATEWAY_RECONNECT_GRACE_SECONDS", default_value_t = 10.0)]
    reconnect_grace_seconds: f64,
    /// Seconds without media after which a new publisher of the key may take it over from
    /// its connection (a half-open TCP connection after a network change); 0: never.
    #[arg(long, env = "GATEWAY_TAKEOVER_SILENCE_SECONDS", default_value_t = 5.0)]
    takeover_silence_seconds: f64,
    /// Seconds the gateway takes, on SIGTERM or Ctrl-C, to end every stream cleanly (the
    /// last segment and ENDLIST pushed) before it exits. Keep it below the container's stop
    /// timeout (10 s in Docker, 30 s in Kubernetes).
    #[arg(long, env = "GATEWAY_STOP_SECONDS", default_value_t = 8.0)]
    stop_seconds: f64,
    /// Connections one client address may hold at once (RTMP, RTMPS and SRT together); more
    /// are closed at once (SRT: rejected as overloaded). 0: no limit.
    #[arg(
        long,
        env = "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 16
    )]
    max_connections_per_address: usize,
}

/// `--chunk-ms`: 0 (parts sent whole) or 20 ms to half the part target (parts on).
fn check_chunk_ms(chunk_ms: u64, part_ms: u64) -> Result<(), StartError> {
    if chunk_ms != 0 && part_ms != 0 && !(20..=part_ms / 2).contains(&chunk_ms) {
        return Err(StartError::Config(format!(
            "--chunk-ms must be 0 (parts sent whole) or 20 to half the part target ({} ms), not {chunk_ms}",
            part_ms / 2
        )));
    }
    Ok(())
}

/// `--part-ms`: 0 (no parts) or 100 ms to the segment target.
fn check_part_ms(part_ms: u64, segment_ms: u64) -> Result<(), StartError> {
    if part_ms != 0 && !(100..=segment_ms).contains(&part_ms) {
        return Err(StartError::Config(format!(
            "--part-ms must be 0 (no parts) or 100 to the segment target ({segment_ms} ms), not {part_ms}"
        )));
    }
    Ok(())
}

async fn bind(address: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen {
            address: address.to_owned(),
            source,
        })
}

async fn run(settings: Settings) -> Result<(), StartError> {
    if !(0.1..=60.0).contains(&settings.segment_seconds) {
        return Err(StartError::Config(
            "--segment-seconds must be 0.1 to 60".into(),
        ));
    }
    let segment_ms = (settings.segment_seconds * 1000.0) as u64;
    check_part_ms(settings.part_ms, segment_ms)?;
    check_chunk_ms(settings.chunk_ms, settings.part_ms)?;
    let edge = Edge::new(
        &settings.edge,
        settings.push_attempts,
        Duration::from_millis(settings.retry_ms),
    )?;
    if !(0.0..=600.0).contains(&settings.reconnect_grace_seconds) {
        return Err(StartError::Config(
            "--reconnect-grace-seconds must be 0 to 600".into(),
        ));
    }
    if let Some(passphrase) = &settings.srt_passphrase {
        if !srt::PASSPHRASE_LENGTHS.contains(&passphrase.len()) {
            return Err(StartError::Config(
                "--srt-passphrase must be 10 to 79 characters".into(),
            ));
        }
    }
    if !(0.0..=600.0).contains(&settings.stop_seconds) {
        return Err(StartError::Config("--stop-seconds must be 0 to 600".into()));
    }
    if !(0.0..=600.0).contains(&settings.takeover_silence_seconds) {
        return Err(StartError::Config(
            "--takeover-silence-seconds must be 0 to 600".into(),
        ));
    }
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls::Certificate::load(cert, key)?)),
        (None, None) => None,
        _ => {
            return Err(StartError::Config(
                "RTMPS needs both --tls-cert and --tls-key".into(),
            ))
        }
    };
    let rtmps = match tls {
        Some(certificate) => Some((bind(&settings.rtmps_listen).await?, certificate)),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let rtmp = bind(&settings.listen).await?;
    let ops = bind(&settings.http_listen).await?;
    let gateway = Arc::new(
        Gateway::new(
            edge,
            Arc::clone(&metrics),
            StreamSettings {
                segment_ms,
                part_ms: settings.part_ms,
                chunk_ms: settings.chunk_ms,
                queue: settings.queue_segments,
            },
        )
        .with_reconnect_grace(Duration::from_secs_f64(settings.reconnect_grace_seconds))
        .with_takeover_silence(Duration::from_secs_f64(settings.takeover_silence_seconds))
        .with_connection_limit(settings.max_connections_per_address),
    );
    info!(
        "gateway listening",
        rtmp = rtmp.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        http = ops.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        edge = settings.edge,
        part_ms = settings.part_ms
    );
    // SRT is bound before /healthz answers, so a healthy gateway takes SRT callers.
    let srt_listen = settings.srt_listen.trim();
    if !srt_listen.is_empty() && srt_listen != "off" {
        let listen_error = |source| StartError::Listen {
            address: srt_listen.to_owned(),
            source,
        };
        let srt_settings = srt::SrtSettings::new(
            srt_listen,
            Duration::from_millis(settings.srt_latency_ms),
            settings.srt_passphrase.as_deref(),
        )
        .map_err(listen_error)?;
        let bound = srt::bind(&srt_settings).await.map_err(listen_error)?;
        info!(
            "SRT listening",
            srt = srt_listen,
            encrypted = settings.srt_passphrase.is_some()
        );
        tokio::spawn(srt::serve(srt_settings, bound, Arc::clone(&gateway)));
    }
    tokio::spawn(http::serve(ops, metrics));
    if let Some((listener, certificate)) = rtmps {
        info!(
            "RTMPS listening",
            rtmps = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        tokio::spawn(reload_on_sighup(Arc::clone(&certificate)));
        tokio::spawn(tls::serve(listener, certificate, Arc::clone(&gateway)));
    }
    tokio::select! {
        () = server::serve(rtmp, Arc::clone(&gateway)) => {}
        () = stop_signal() => {
            info!("stopping: ending every stream", within_s = settings.stop_seconds);
            let left = gateway
                .shutdown(Duration::from_secs_f64(settings.stop_seconds))
                .await;
            info!("stopped", streams_not_ended = left);
        }
    }
    Ok(())
}

/// Reads the RTMPS certificate files again at each SIGHUP (after a renewal).
async fn reload_on_sighup(certificate: Arc<tls::Certificate>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangup.recv().await.is_some() {
            match certificate.reload() {
                Ok(()) => info!("TLS certificate reloaded"),
                Err(e) => edgevideo_gateway::warn!(
                    "TLS certificate reload failed; the one in use is kept",
                    error = e.to_string()
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = certificate;
}

/// Completes on SIGTERM (a container stop) or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() {
    let settings = Settings::parse();
    if let Err(e) = run(settings).await {
        edgevideo_gateway::log::line("error", &e.to_string(), &[]);
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_targets_are_off_or_within_the_segment_target() {
        assert!(check_part_ms(0, 2000).is_ok());
        assert!(check_part_ms(100, 2000).is_ok());
        assert!(check_part_ms(334, 2000).is_ok());
        assert!(check_part_ms(2000, 2000).is_ok());
        for wrong in [1, 99, 2001] {
            let error = check_part_ms(wrong, 2000).unwrap_err().to_string();
            assert!(error.contains("--part-ms must be 0"), "{error}");
        }
        // The default (334 ms) with the default segment target.
        let settings = Settings::parse_from(["gateway", "--edge", "http://x"]);
        assert_eq!(settings.part_ms, 334);
        assert!(check_part_ms(settings.part_ms, 2000).is_ok());
    }

    #[test]
    fn chunk_targets_are_off_or_at_most_half_a_part() {
        assert!(check_chunk_ms(0, 334).is_ok());
        assert!(check_chunk_ms(20, 334).is_ok());
        assert!(check_chunk_ms(167, 334).is_ok());
        // Without parts there is nothing to chunk.
        assert!(check_chunk_ms(100, 0).is_ok());
        for wrong in [1, 19, 168, 334] {
            let error = check_chunk_ms(wrong, 334).unwrap_err().to_string();
            assert!(error.contains("--chunk-ms must be 0"), "{error}");
        }
        let settings = Settings::parse_from(["gateway", "--edge", "http://x"]);
        assert_eq!(settings.chunk_ms, 100);
        assert!(check_chunk_ms(settings.chunk_ms, settings.part_ms).is_ok());
    }
}

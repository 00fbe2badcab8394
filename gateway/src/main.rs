//! `gateway`: the RTMP ingest gateway's binary. Settings come from flags or the environment
//! (`gateway --help`); logs are JSON lines on stderr.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use edgevideo_gateway::error::StartError;
use edgevideo_gateway::metrics::Metrics;
use edgevideo_gateway::push::Edge;
use edgevideo_gateway::server;
use edgevideo_gateway::stream::{Gateway, StreamSettings};
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
    /// Uploads that may wait per stream before new segments are dropped.
    #[arg(long, env = "GATEWAY_QUEUE_SEGMENTS", default_value_t = 4)]
    queue_segments: usize,
    /// Attempts per file on 5xx and network errors.
    #[arg(long, env = "GATEWAY_PUSH_ATTEMPTS", default_value_t = 5)]
    push_attempts: u32,
    /// First retry delay in milliseconds (doubling).
    #[arg(long, env = "GATEWAY_RETRY_MS", default_value_t = 250)]
    retry_ms: u64,
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
    let edge = Edge::new(
        &settings.edge,
        settings.push_attempts,
        Duration::from_millis(settings.retry_ms),
    )?;
    let metrics = Arc::new(Metrics::default());
    let rtmp = bind(&settings.listen).await?;
    let ops = bind(&settings.http_listen).await?;
    let gateway = Arc::new(Gateway::new(
        edge,
        Arc::clone(&metrics),
        StreamSettings {
            segment_ms: (settings.segment_seconds * 1000.0) as u64,
            queue: settings.queue_segments,
        },
    ));
    info!(
        "gateway listening",
        rtmp = rtmp.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        http = ops.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        edge = settings.edge
    );
    tokio::spawn(http::serve(ops, metrics));
    tokio::select! {
        () = server::serve(rtmp, gateway) => {}
        _ = tokio::signal::ctrl_c() => info!("interrupted; stopping"),
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let settings = Settings::parse();
    if let Err(e) = run(settings).await {
        edgevideo_gateway::log::line("error", &e.to_string(), &[]);
        std::process::exit(1);
    }
}

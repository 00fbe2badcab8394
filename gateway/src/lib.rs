//! The RTMP ingest gateway: OBS, phone apps and ffmpeg publish RTMP to it
//! (`rtmp://host:1935/live`, the stream key being the channel's signed ingest token), and it
//! pushes CMAF (an init segment, ~2 s media segments cut at keyframes, each also pushed as
//! low-latency parts while it is made, a media playlist) to the edge's ingest URL, as the
//! ingest contract in `docs/ARCHITECTURE.md` says. No re-encoding: H.264 and AAC in, the
//! same out.
//!
//! * [`server`]: RTMP connections (`rml_rtmp`, sans-IO, over tokio);
//! * [`tls`]: RTMPS, the same connections over TLS (`tokio-rustls`);
//! * [`srt`]: SRT publishes (`srt-tokio`): the key in the stream id, MPEG-TS payloads read
//!   by [`tsin`] (the shared `edgevideo-media` demuxer) into the stream's media;
//! * [`stream`]: a publishing stream whatever carries it: the key check and claim at publish,
//!   media into the segmenter, segments onto the push queue;
//! * [`flv`]: FLV tag bodies and codec configurations;
//! * [`cmaf`]: the segmenter and the fMP4 boxes (`mp4-atom`);
//! * [`push`]: the edge client, retries and the bounded per-stream queue;
//! * [`limit`]: connections per client address;
//! * [`http`] and [`metrics`]: `/healthz` and `/metrics`; [`log`]: JSON log lines.

#![deny(missing_docs)]

pub mod cmaf;
pub mod error;
pub mod flv;
pub mod http;
pub mod limit;
pub mod log;
pub mod metrics;
pub mod push;
pub mod server;
pub mod srt;
pub mod stream;
pub mod tls;
pub mod tsin;

#[cfg(test)]
mod testing;

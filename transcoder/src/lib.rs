//! edgevideo transcoder: stitches a recording's segments (MPEG-TS, or CMAF: an init segment
//! and `.m4s` fragments) into one progressive MP4.
//!
//! The pipeline is a remux (no re-encoding) in constant memory:
//! [`ts`](edgevideo_media::ts) (transport packets, PES) -> [`h264`](edgevideo_media::h264) /
//! [`adts`](edgevideo_media::adts) (access units, frames; these three are the shared
//! `edgevideo-media` crate's), or
//! [`fmp4`] (boxes) -> [`cmaf`] (fragments, samples) ->
//! [`timeline`] (one continuous clock) -> [`demux`] (timed samples; it detects the container
//! from the first input) -> [`mux`] (two passes: sample tables, then payloads) -> [`mp4`]
//! (boxes). [`stitch`] adds input listing and atomic
//! publishing, [`storage`] remote inputs and outputs, [`job`] and [`server`] the signed job
//! API used by the edge worker. The job and callback messages and their Standard Webhooks
//! signatures are the `edgevideo_protocol` crate's, shared with the worker.
#![deny(missing_docs)]

pub mod cmaf;
pub mod demux;
pub mod fmp4;
pub mod job;
pub mod mp4;
pub mod mux;
pub mod poster;
pub mod server;
pub mod stitch;
pub mod storage;
pub mod timeline;
pub mod writer;

pub use mux::{RemuxError, RemuxSummary};

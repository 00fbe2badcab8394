//! Media parsing shared by the transcoder and the ingest gateway, with no I/O: every parser
//! takes bytes and answers values or errors, and none panics on malformed input.
//!
//! * [`ts`]: the MPEG transport stream demuxer (PAT/PMT, continuity, PES reassembly) for one
//!   H.264 and one AAC (ADTS) elementary stream;
//! * [`h264`]: Annex B NAL unit splitting and sequence parameter set parsing;
//! * [`adts`]: AAC ADTS headers and the `AudioSpecificConfig` they imply.
#![deny(missing_docs)]

pub mod adts;
pub mod h264;
pub mod ts;

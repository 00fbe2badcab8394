//! Channels in the catalogue: a broadcaster's named stream with a stream key version (bumped
//! on rotation, which invalidates every ingest URL issued before). The rows are read and
//! written by [`crate::store::channels`] (re-exported here).

pub use crate::store::channels::{by_id, create, page, rotate_stream_key, Channel};

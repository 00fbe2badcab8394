//! Binding names, exactly as declared in `wrangler.toml`.

/// Workers KV namespace: caches, counters, rate limits.
pub const KV: &str = "KV";
/// D1 database: the catalogue (schema in `schema/migrations`).
pub const DB: &str = "DB";
/// R2 bucket: segments, MP4s, posters.
pub const BLOBS: &str = "BLOBS";
/// Durable Object namespace of [`crate::ChannelRoom`], one object per channel.
pub const CHANNEL_ROOM: &str = "CHANNEL_ROOM";
/// Queue producer for background jobs (the same queue is consumed by this worker).
pub const JOBS: &str = "JOBS";
/// Durable Object namespace of [`crate::TranscoderContainer`] (production, optional).
pub const TRANSCODER: &str = "TRANSCODER";

//! The vocabulary every layer shares: plain data and pure functions, no I/O.
//!
//! Identifiers ([`ids`]), roles ([`role`]), the queue's message ([`job`]), the messages a live
//! room answers ([`room`]), videos and their statuses ([`video`]), the plugin lifecycle's
//! hooks and events ([`hook`]), HLS playlists as ingest reads and viewers get them ([`hls`]), the
//! low-latency playlist writer and blocking reloads ([`llhls`]) and
//! signed URL tokens ([`signed_url`]), text helpers ([`text`]), what encoders type to publish
//! through the ingest gateway ([`gateway`]). Nothing here imports another layer of the core except
//! [`crate::error`].

pub mod email_link;
pub mod gateway;
pub mod hls;
pub mod hook;
pub mod ids;
pub mod isobmff;
pub mod job;
pub mod keyed;
pub mod llhls;
pub mod role;
pub mod room;
pub mod signed_url;
pub mod smtp_server;
pub mod text;
pub mod video;

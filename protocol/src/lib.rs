//! What crosses the wire between the edge worker and the transcoder (and, next, the ingest
//! gateway), written once and used by both sides.
//!
//! # Layout
//! - [`webhooks`]: Standard Webhooks signing and verification (`whsec_` secrets, the
//!   `webhook-id` / `webhook-timestamp` / `webhook-signature` headers, rotations, timestamp
//!   tolerance). The worker signs plugin deliveries and transcode jobs and verifies callbacks;
//!   the transcoder verifies jobs and signs callbacks.
//! - [`transcode`]: the transcode job (`POST /jobs` on the transcoder) and the callback the
//!   transcoder sends back, as typed serde messages.
//! - `schema` (feature `schema`, on by default): the JSON Schemas in `schema/`, generated from
//!   those types with `schemars`; its test fails when the checked-in files differ.
//!
//! No clock, no I/O, no async: the crate builds for `wasm32-unknown-unknown` as natively. The
//! workers and the transcoder depend on it without default features, so `schemars` stays out
//! of their builds.

pub mod transcode;
pub mod webhooks;

#[cfg(feature = "schema")]
pub mod schema;

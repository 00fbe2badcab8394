//! Request handlers, one module per area of the API. Each handler takes the platform and
//! already-resolved path parameters and returns a response or an [`crate::ApiError`].

pub mod auth;
pub mod catalogue;
pub mod channels;
pub mod diag;
pub mod embed;
pub mod health;
pub mod ingest;
pub mod play;
pub mod playback;
pub mod plugins;
pub mod stats;
pub mod transcoder;

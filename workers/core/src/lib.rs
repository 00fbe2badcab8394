//! Platform-agnostic core of the edgevideo edge workers.
//!
//! Everything that is not a host binding lives here: configuration, the error model, the
//! storage ports (small traits the hosts implement), the route table and the handlers. A host
//! (Cloudflare Workers, Fermyon Spin) builds a [`platform::Platform`] from its environment, turns
//! its request into an [`http::Request`], calls [`handle`] and converts the response back.
//!
//! Read it top-down: [`platform`] (the ports), [`error`] (how failures become HTTP answers),
//! [`config`], [`router`] (the one route table), then the handlers in [`routes`].
#![deny(missing_docs)]
// Wasm hosts are single-threaded: the ports use `async fn` in traits on purpose, without
// `Send` bounds (static dispatch through generics, never `dyn`).
#![allow(async_fn_in_trait)]

pub mod accounts;
pub mod api;
pub mod auth;
pub mod catalogue;
pub mod channels;
pub mod config;
pub mod conformance;
pub mod counters;
pub mod delivery;
pub mod error;
pub mod hls;
pub mod ids;
pub mod jobs;
pub mod lifecycle;
pub mod live;
pub mod memory;
pub mod platform;
pub mod plugins;
pub mod ratelimit;
pub mod room;
pub mod router;
pub mod routes;
pub mod signed_url;
pub mod transcode;
pub mod videos;
pub mod views;
pub mod webhooks;

pub use config::Config;
pub use error::{ApiError, StoreError};
pub use router::handle;

/// The version of the edgevideo workers, reported by `GET /api/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

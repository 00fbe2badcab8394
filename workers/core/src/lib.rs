//! Platform-agnostic core of the edgevideo edge workers.
//!
//! Everything that is not a host binding lives here. A host (Cloudflare Workers, Fermyon Spin)
//! implements the [`ports`] over its bindings, turns its request into an [`http::Request`],
//! calls [`handle`] and converts the response back; its queue handler calls [`queue::run`]
//! and its live-room object calls [`room`].
//!
//! ## Layout, bottom-up
//! Each layer imports only from the layers above it in this list (checked by
//! `tests/layers.rs`, which also fails on SQL text outside [`store`]):
//!
//! 1. [`error`]: how failures become HTTP answers.
//! 2. [`model`], [`config`], [`webhooks`]: plain data and pure functions (ids, roles, the
//!    queue and room messages, playlists, signed URLs and links, settings, webhook
//!    signatures).
//! 3. [`ports`]: the small async traits a host implements, and their conformance suites.
//! 4. [`store`] (every SQL statement), [`room`] (the logic of one live room) and [`smtp`]
//!    (the mail dialogue the hosts run over their sockets).
//! 5. [`services`]: the workflows (accounts, broadcasts, lifecycle, deliveries, transcoding,
//!    catalogue, views).
//! 6. [`api`] (route table, handlers) and [`queue`] (the job consumer), the two entry points;
//!    [`memory`] holds in-memory adapters of every port for tests.
#![deny(missing_docs)]
// Wasm hosts are single-threaded: the ports use `async fn` in traits on purpose, without
// `Send` bounds (static dispatch through generics, never `dyn`).
#![allow(async_fn_in_trait)]

pub mod api;
pub mod config;
pub mod error;
pub mod memory;
pub mod model;
pub mod ports;
pub mod queue;
pub mod room;
pub mod services;
pub mod smtp;
pub mod store;
pub mod webhooks;

pub use api::router::{handle, handle_buffered};
pub use config::Config;
pub use error::{ApiError, StoreError};

/// The version of the edgevideo workers, reported by `GET /api/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

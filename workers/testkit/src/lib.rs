//! Native test support for the edgevideo core: the core's [`Sql`](edgevideo_core::ports::Sql)
//! port over SQLite, so that the lifecycle, deliveries, the transcoder callback and the
//! catalogue run in `cargo test` against a real SQL engine and the shared migrations.
//!
//! Layout: [`sqlite`] (the SQL port, its migrations and its query counter), [`platform`]
//! ([`TestPlatform`]: the core's in-memory adapters, the SQLite port, a job queue with due
//! times and scripted outgoing HTTP), [`exec`] (running futures, several at once), [`client`]
//! (requests as the hosts make them and the end-to-end scenarios' steps).
//!
//! This crate is for tests only: it compiles SQLite from source and never ships in a worker.
#![deny(missing_docs)]
// The core's ports use `async fn` in traits without `Send` bounds (single-threaded hosts).
#![allow(async_fn_in_trait)]

pub mod client;
pub mod exec;
pub mod platform;
pub mod sqlite;

pub use client::{Reply, Session};
pub use platform::TestPlatform;
pub use sqlite::{QueryCounts, SqliteSql};

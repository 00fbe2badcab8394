//! The store: every SQL statement of the core, one module per group of tables. Functions
//! either run their statements over the [`crate::ports::Sql`] port and return model types,
//! or build [`crate::ports::Statement`]s for a service to run in one batch. No SQL text exists
//! outside this module (checked by `tests/layers.rs`).

pub mod broadcasts;
pub mod catalogue;
pub mod channels;
pub mod counters;
pub mod deliveries;
pub mod diag;
pub mod events;
pub mod lifecycles;
pub mod plugins;
pub mod ratelimits;
pub mod stats;
pub mod users;
pub mod videos;
pub mod views;

//! The services: the platform's workflows over the ports and the store, one module per area.
//! Handlers in [`crate::api`] and the queue consumer ([`crate::queue`]) call them; they never
//! see an HTTP request.

pub mod accounts;
pub mod broadcasts;
pub mod catalogue;
pub mod delivery;
pub mod edge_cache;
pub mod lifecycle;
pub mod mail;
pub mod plugins;
pub mod ratelimit;
pub mod sealed;
pub mod sessions;
pub mod transcode;
pub mod url_policy;
pub mod videos;
pub mod views;

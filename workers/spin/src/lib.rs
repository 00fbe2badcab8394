//! Fermyon Spin host of edgevideo.
//!
//! Thin by design, like the Cloudflare host: [`platform::SpinPlatform`] adapts Spin's APIs to
//! the core's ports and the entry point below converts between Spin's `wasi:http` types and
//! the core's `http` types. Every decision lives in `edgevideo-core`.
//!
//! What differs from Cloudflare, because Spin has no equivalent binding:
//! - live rooms run the core's room logic in process over SQLite ([`live`]), not in Durable
//!   Objects: no WebSockets (presence by polling), alarms run on the next request;
//! - blobs live in the key-value store, chunked ([`blobs`]), not in R2;
//! - jobs wait in SQLite and run after a response ([`jobs`]), not from a queue.
//!
//! Modules, top-down: [`names`] (resource and variable names, mirrored in `spin.toml`),
//! [`convert`], [`platform`] and the adapters [`kv`], [`sql`], [`blobs`], [`live`], [`jobs`],
//! [`outbound`].
#![deny(missing_docs)]
#![allow(async_fn_in_trait)]

pub mod blobs;
pub mod convert;
pub mod jobs;
pub mod kv;
pub mod live;
pub mod mail;
pub mod names;
pub mod outbound;
pub mod platform;
pub mod sql;

use edgevideo_core::api::InternalError;
use edgevideo_core::ports::metered::Metered;
use edgevideo_core::ports::Platform as _;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
#[cfg(target_arch = "wasm32")]
use spin_sdk::http_component;

use crate::platform::SpinPlatform;

/// The HTTP entry point: build the platform, convert, call the core, send the response, then
/// run the room alarms and the jobs that are due (those this request enqueued included).
// Exported only in the Wasm build: the export names (`wasi:http/...#handle`) cannot be
// linked into a native shared library, which `cargo test` and clippy build.
#[cfg_attr(target_arch = "wasm32", http_component)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
async fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    let (response, platform) = match SpinPlatform::from_spin() {
        Ok(platform) => match convert::to_core_request(request).await {
            Ok(request) => (
                convert::without_room_upgrade(
                    edgevideo_core::handle_buffered(&platform, request).await,
                ),
                Some(platform),
            ),
            Err(err) => (edgevideo_core::api::error(&err), Some(platform)),
        },
        Err(err) => (edgevideo_core::api::error(&err), None),
    };
    if let Some(InternalError(detail)) = response.extensions().get::<InternalError>() {
        eprintln!("edgevideo: {detail}");
    }
    if let Err(err) = convert::send(response_out, response).await {
        eprintln!("edgevideo: could not send the response: {err}");
    }
    if let Some(platform) = platform {
        // Through the same counting wrapper as requests: one instantiation of the core.
        let metered = Metered::new(&platform);
        live::run_due_alarms(&metered, platform.live()).await;
        jobs::run_due(&metered).await;
    }
}

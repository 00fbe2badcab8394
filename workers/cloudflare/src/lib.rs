//! Cloudflare Workers host of edgevideo.
//!
//! Thin by design: [`platform::CloudflarePlatform`] adapts the bindings (KV, D1, R2, Durable
//! Objects, Queues) to the core's ports, and the entry points below convert between the
//! Workers types and the core's `http` types. Every decision lives in `edgevideo-core`.
//!
//! Modules, top-down: [`bindings`] (binding names, mirrored in `wrangler.toml`), [`convert`]
//! (request/response conversion), [`platform`] and the adapters [`kv`], [`d1`], [`r2`],
//! [`rooms`], [`queue`], [`outbound`], [`cache`], then [`channel_room`] (the Durable Object class).

pub mod bindings;
pub mod cache;
pub mod channel_room;
pub mod convert;
pub mod d1;
pub mod kv;
pub mod mail;
pub mod outbound;
pub mod platform;
pub mod queue;
pub mod r2;
pub mod rooms;
pub mod transcoder_container;

use worker::{event, Context, Env, MessageBatch, MessageExt};

use edgevideo_core::api::chunked::ChunkedBody;
use edgevideo_core::api::growing::GrowingPart;
use edgevideo_core::api::{InternalError, RoomUpgrade};
use edgevideo_core::ports::metered::Metered;
use edgevideo_core::ports::Platform as _;

use crate::platform::CloudflarePlatform;

pub use channel_room::ChannelRoom;
pub use transcoder_container::TranscoderContainer;

/// Installs a panic hook that logs the panic to the Workers console. Panics are bugs (all
/// input errors are `Result`s), but if one happens its message must reach the logs.
#[event(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        worker::console_error!("edgevideo panicked: {info}");
    }));
}

/// The HTTP entry point: build the platform, convert, call the core, convert back. A
/// response marked [`RoomUpgrade`] hands the original request to the room's Durable Object,
/// which accepts the WebSocket.
#[event(fetch)]
async fn fetch(
    mut request: worker::Request,
    env: Env,
    _ctx: Context,
) -> worker::Result<worker::Response> {
    let mut platform = match CloudflarePlatform::from_env(&env) {
        Ok(platform) => platform,
        Err(err) => return convert::to_worker_response(edgevideo_core::api::error(&err)),
    };
    // Reads of a live room go through its relays in this data center and continent.
    platform.set_relays(relay_places(&request));
    let max_body = edgevideo_core::api::max_request_body(platform.config());
    let core_request = match convert::to_core_request(&mut request, max_body).await {
        Ok(core_request) => core_request,
        Err(err) => return convert::to_worker_response(edgevideo_core::api::error(&err)),
    };
    let response = edgevideo_core::handle(&platform, core_request).await;
    if let Some(InternalError(detail)) = response.extensions().get::<InternalError>() {
        worker::console_error!("edgevideo: {detail}");
    }
    if let Some(body) = response.extensions().get::<ChunkedBody>().cloned() {
        return convert::to_streamed_response(response, convert::chunk_stream(platform, body));
    }
    if let Some(part) = response.extensions().get::<GrowingPart>().cloned() {
        return convert::to_growing_response(response, convert::growing_stream(platform, part));
    }
    if let Some(upgrade) = response.extensions().get::<RoomUpgrade>() {
        return match rooms::connect(&env, upgrade, &request).await {
            Ok(response) => Ok(response),
            Err(err) => convert::to_worker_response(edgevideo_core::api::error(
                &edgevideo_core::ApiError::from(err),
            )),
        };
    }
    convert::to_worker_response(response)
}

/// Where a request arrived, nearest first: its data center and continent (`request.cf`'s
/// `colo` and `continent`; read directly, as the worker crate's getters panic on a missing
/// field). Empty when the runtime gives no `cf`.
fn relay_places(request: &worker::Request) -> Vec<String> {
    let Ok(cf) = js_sys::Reflect::get(request.inner(), &"cf".into()) else {
        return Vec::new();
    };
    ["colo", "continent"]
        .into_iter()
        .filter_map(|field| js_sys::Reflect::get(&cf, &field.into()).ok()?.as_string())
        .collect()
}

/// The queue consumer: each message is a core job; failures that may pass on a later try
/// are retried by the queue, the others are acknowledged and logged.
#[event(queue)]
async fn queue(
    batch: MessageBatch<serde_json::Value>,
    env: Env,
    _ctx: Context,
) -> worker::Result<()> {
    let platform = match CloudflarePlatform::from_env(&env) {
        Ok(platform) => platform,
        Err(err) => {
            worker::console_error!("queue consumer cannot start: {err}");
            batch.retry_all();
            return Ok(());
        }
    };
    // The core runs the batch: its views in one SQL batch, the other jobs (deliveries to
    // different plugins) concurrently, so one slow receiver does not hold the others back.
    let messages = batch.messages()?;
    // Through the same counting wrapper as requests: one instantiation of the core's
    // services, and the counters see the consumer's calls too.
    let platform = Metered::new(&platform);
    let jobs = messages
        .iter()
        .map(|message| edgevideo_core::model::job::decode(message.body().clone()))
        .collect();
    let outcomes = edgevideo_core::queue::run_batch(&platform, jobs).await;
    for (message, outcome) in messages.iter().zip(outcomes) {
        match outcome {
            Ok(()) => message.ack(),
            Err(err) if err.is_retryable() => {
                worker::console_warn!("job {} will be retried: {err}", message.id());
                message.retry();
            }
            Err(err) => {
                worker::console_error!("job {} dropped: {err}", message.id());
                message.ack();
            }
        }
    }
    Ok(())
}

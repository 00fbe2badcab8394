//! The HTTP layer: the one route table ([`table`]), the router that applies it ([`router`]),
//! the handlers ([`routes`]),
//! how callers are authenticated ([`auth`]), and here the plumbing the handlers share: the
//! request and response types the core speaks, JSON bodies in and out, and the rendering of
//! [`ApiError`]s.

pub mod auth;
pub mod chunked;
pub mod cors;
pub mod edge;
pub mod growing;
pub mod links;
pub mod router;
pub mod routes;
#[cfg(feature = "schema")]
pub mod schema;
pub mod table;

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// A request as the core sees it: the whole body in memory.
pub type Request = http::Request<Vec<u8>>;
/// A response as the core produces it.
pub type Response = http::Response<Vec<u8>>;

/// Largest JSON request body accepted, in bytes.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Largest request body any route accepts under `config`: a segment or an upload part, plus
/// room for the playlist or JSON around it. Hosts refuse a larger `Content-Length` before
/// reading, and stop reading a body without one at this size (413).
pub fn max_request_body(config: &crate::config::Config) -> u64 {
    config.max_segment_bytes.max(config.upload_part_bytes) + 64 * 1024
}

/// The body `{"ok": true}` of a route that has nothing else to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Acknowledged {
    /// Always `true`.
    pub ok: bool,
}

/// A JSON response with `status`. Serialization of our own types cannot fail; if it ever
/// did, the answer is a 500 rather than a panic.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", body),
        Err(e) => error(&ApiError::Internal(format!("response encoding: {e}"))),
    }
}

/// A response with the given content type and body, not cacheable.
pub fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The detail of a 500 (or of a 503 from a service such as the mail server), attached to its
/// response for the host to log (the client gets a generic message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalError(pub String);

/// The response for an error: its status, `{"error":{"code","message"}}`, `Allow` on 405,
/// and an [`InternalError`] extension on 500 and on a service's 503.
pub fn error(err: &ApiError) -> Response {
    let body = serde_json::to_vec(&err.body()).unwrap_or_default();
    let mut response = with_body(err.status(), "application/json", body);
    if let ApiError::Internal(detail) | ApiError::Unavailable { detail, .. } = err {
        response
            .extensions_mut()
            .insert(InternalError(detail.clone()));
    }
    if let ApiError::RangeNotSatisfiable(size) = err {
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
            response
                .headers_mut()
                .insert(http::header::CONTENT_RANGE, value);
        }
    }
    if let ApiError::MethodNotAllowed(methods) = err {
        let allow = methods
            .iter()
            .map(http::Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(ALLOW, value);
        }
    }
    response
}

/// Parses the request body as JSON into `T`. A declared `Content-Type` must be JSON
/// (`application/json` or `*+json`): a browser form or a `text/plain` fetch from another
/// site cannot pass for a JSON call.
///
/// # Errors
/// 415 for another declared type; 413 above [`MAX_JSON_BODY`]; 400 `invalid_json` with the
/// parser's message otherwise.
pub fn parse_json<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    if let Some(declared) = request.headers().get(CONTENT_TYPE) {
        let media = declared
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" && !media.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "this route takes JSON (Content-Type: application/json), not {media:?}"
            )));
        }
    }
    let body = request.body();
    if body.len() > MAX_JSON_BODY {
        return Err(ApiError::PayloadTooLarge(format!(
            "JSON body is {} bytes; the limit is {MAX_JSON_BODY}",
            body.len()
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))
}

/// The request's origin (`scheme://host[:port]`) for absolute URLs we hand out; empty when
/// the request carries neither an absolute URI nor a `Host` header.
pub fn origin(request: &Request) -> String {
    let uri = request.uri();
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        return format!("{scheme}://{authority}");
    }
    request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| format!("https://{host}"))
        .unwrap_or_default()
}

/// Marks a response as "hand this WebSocket upgrade to the room named `room`": the host
/// forwards the original request to the room (a Durable Object on Cloudflare) and returns
/// the room's answer instead of this response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomUpgrade {
    /// The room to connect to.
    pub room: String,
    /// The presence shard it is (0: the channel's room or the lobby; see
    /// [`crate::room::shard_room`]); the host tells the object.
    pub shard: u32,
    /// For a channel's room: the most sockets it keeps; the host tells the object, which
    /// past that answers with a shard to join instead ([`crate::room::overflow_shard`]).
    pub room_sockets: Option<u64>,
}

//! Cross-origin playback: players embedded on other sites (hls.js, a `<video>` element, a
//! video.js page) read playlists, segments, MP4s and posters from `/play/...` with `fetch` or
//! XHR, which browsers allow only with these headers. Nothing else is cross-origin: the API
//! keeps the same-origin policy.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
};
use http::{HeaderValue, StatusCode};

use crate::api::{self, Response};

/// Headers a cross-origin player may read: what seeking and buffering need, and how the
/// edge answered.
const EXPOSED: &str = "Content-Length, Content-Range, Accept-Ranges, X-Edge-Cache";

/// Adds the headers that let any origin read a playback response (the URL's token is the
/// authorization; no cookie or credential is involved).
pub fn allow_any_origin(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    response
}

/// The answer to a preflight (`OPTIONS`) of a playback URL: GET and HEAD with a `Range`
/// header, for a day.
pub fn preflight() -> Response {
    let mut response = allow_any_origin(api::with_body(
        StatusCode::NO_CONTENT,
        "text/plain",
        Vec::new(),
    ));
    let headers = response.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Range"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

//! Conversion between the Workers request/response types and the core's `http` types.

use edgevideo_core::api::chunked::ChunkedBody;
use edgevideo_core::api::growing::GrowingPart;
use edgevideo_core::api::{Request, Response};
use edgevideo_core::ports::metered::Metered;
use edgevideo_core::ApiError;
use futures_util::{Stream, StreamExt as _};
use worker::{FixedLengthStream, Headers, Method, ResponseBody};

use crate::platform::CloudflarePlatform;

/// The request's method as the client sent it. `worker::Method` reads a method it does not
/// know (e.g. `QUERY`) as GET, which would serve a GET route's answer to it; the raw name is
/// taken from the underlying request instead, so the router answers 405.
fn method(request: &worker::Request) -> Result<http::Method, ApiError> {
    http::Method::from_bytes(request.inner().method().as_bytes())
        .map_err(|e| ApiError::bad_request("invalid_method", e.to_string()))
}

/// Reads a Workers request, body included, into the core's request type (with the absolute
/// URL, so the core can hand out absolute URLs). GET and HEAD bodies are not read, so such a
/// request can still be forwarded afterwards (WebSocket upgrades). A body larger than
/// `max_body` is refused before it is read (by its `Content-Length`) or as soon as the
/// bytes read pass it (chunked uploads, as ffmpeg sends).
///
/// # Errors
/// 400 when the URL or a header cannot be represented, or the body cannot be read; 413 above
/// `max_body`.
pub async fn to_core_request(
    request: &mut worker::Request,
    max_body: u64,
) -> Result<Request, ApiError> {
    let url = request
        .url()
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))?;
    let mut builder = http::Request::builder()
        .method(method(request)?)
        .uri(url.as_str());
    for (name, value) in request.headers().entries() {
        builder = builder.header(name, value);
    }
    let too_large =
        || ApiError::PayloadTooLarge(format!("request body is larger than {max_body} bytes"));
    let body = match request.method() {
        Method::Get | Method::Head => Vec::new(),
        _ => {
            let declared = request
                .headers()
                .get("content-length")
                .ok()
                .flatten()
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max_body) {
                return Err(too_large());
            }
            let mut body = Vec::new();
            if let Ok(mut stream) = request.stream() {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk
                        .map_err(|e| ApiError::bad_request("unreadable_body", e.to_string()))?;
                    if (body.len() + chunk.len()) as u64 > max_body {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
            }
            body
        }
    };
    builder
        .body(body)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

fn worker_headers(headers: &http::HeaderMap) -> worker::Result<Headers> {
    let out = Headers::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            out.append(name.as_str(), value)?;
        }
    }
    Ok(out)
}

/// The bytes of a [`ChunkedBody`], read chunk by chunk through the core (the edge cache,
/// then R2) as the runtime pulls them (its stream queue reads ahead of a slow client by up to
/// ~20 chunks, measured): memory stays bounded whatever the object's size. A failed chunk
/// ends the stream with an error, which aborts the response.
pub fn chunk_stream(
    platform: CloudflarePlatform,
    body: ChunkedBody,
) -> impl Stream<Item = worker::Result<Vec<u8>>> + 'static {
    let indexes = body.chunks();
    futures_util::stream::unfold(
        (platform, body, indexes),
        |(platform, body, mut indexes)| async move {
            let index = indexes.next()?;
            match body.read(&Metered::new(&platform), index).await {
                Ok(bytes) => Some((Ok(bytes), (platform, body, indexes))),
                Err(err) => {
                    worker::console_error!("reading {} chunk {index}: {err}", body.key);
                    let error = worker::Error::RustError(err.to_string());
                    #[allow(clippy::reversed_empty_ranges)]
                    Some((Err(error), (platform, body, 1..=0)))
                }
            }
        },
    )
}

/// The rest of a [`GrowingPart`], read through the core as the pusher sends it (each pull
/// waits in the room for the bytes past those sent). A failure ends the stream with an
/// error, which aborts the response.
pub fn growing_stream(
    platform: CloudflarePlatform,
    part: GrowingPart,
) -> impl Stream<Item = worker::Result<Vec<u8>>> + 'static {
    futures_util::stream::unfold(Some((platform, part)), |state| async move {
        let (platform, mut part) = state?;
        match part.next(&Metered::new(&platform)).await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some((platform, part)))),
            Ok(None) => None,
            Err(err) => {
                worker::console_error!("reading part {} as it is made: {err}", part.file);
                Some((Err(worker::Error::RustError(err.to_string())), None))
            }
        }
    })
}

/// Turns the core's response into a Workers response whose body is the response's own
/// bytes followed by `rest`, its length unknown (sent chunked).
///
/// # Errors
/// Only when the runtime refuses to build the response object.
pub fn to_growing_response(
    response: Response,
    rest: impl Stream<Item = worker::Result<Vec<u8>>> + 'static,
) -> worker::Result<worker::Response> {
    let (parts, first) = response.into_parts();
    let body = futures_util::stream::once(async move { Ok(first) }).chain(rest);
    Ok(worker::Response::from_stream(body)?
        .with_status(parts.status.as_u16())
        .with_headers(worker_headers(&parts.headers)?))
}

/// Turns the core's response into a Workers response whose body is `stream`, of exactly
/// the response's `Content-Length` bytes.
///
/// # Errors
/// Only when the runtime refuses to build the response object.
pub fn to_streamed_response(
    response: Response,
    stream: impl Stream<Item = worker::Result<Vec<u8>>> + 'static,
) -> worker::Result<worker::Response> {
    let (parts, _) = response.into_parts();
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fixed: worker::worker_sys::FixedLengthStream =
        FixedLengthStream::wrap(stream, length).into();
    Ok(
        worker::Response::from_body(ResponseBody::Stream(fixed.readable()))?
            .with_status(parts.status.as_u16())
            .with_headers(worker_headers(&parts.headers)?),
    )
}

/// Turns the core's response into a Workers response.
///
/// # Errors
/// Only when the runtime refuses to build the response object.
pub fn to_worker_response(response: Response) -> worker::Result<worker::Response> {
    let (parts, body) = response.into_parts();
    Ok(worker::Response::from_bytes(body)?
        .with_status(parts.status.as_u16())
        .with_headers(worker_headers(&parts.headers)?))
}

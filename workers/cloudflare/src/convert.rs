//! Conversion between the Workers request/response types and the core's `http` types.

use edgevideo_core::api::{Request, Response};
use edgevideo_core::ApiError;
use worker::{Headers, Method};

fn method(method: &Method) -> http::Method {
    http::Method::from_bytes(method.as_ref().as_bytes()).unwrap_or(http::Method::GET)
}

/// Reads a Workers request, body included, into the core's request type (with the absolute
/// URL, so the core can hand out absolute URLs). GET and HEAD bodies are not read, so such a
/// request can still be forwarded afterwards (WebSocket upgrades).
///
/// # Errors
/// 400 when the URL or a header cannot be represented, or the body cannot be read.
pub async fn to_core_request(request: &mut worker::Request) -> Result<Request, ApiError> {
    let url = request
        .url()
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))?;
    let mut builder = http::Request::builder()
        .method(method(&request.method()))
        .uri(url.as_str());
    for (name, value) in request.headers().entries() {
        builder = builder.header(name, value);
    }
    let body = match request.method() {
        Method::Get | Method::Head => Vec::new(),
        _ => request
            .bytes()
            .await
            .map_err(|e| ApiError::bad_request("unreadable_body", e.to_string()))?,
    };
    builder
        .body(body)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

/// Turns the core's response into a Workers response.
///
/// # Errors
/// Only when the runtime refuses to build the response object.
pub fn to_worker_response(response: Response) -> worker::Result<worker::Response> {
    let (parts, body) = response.into_parts();
    let headers = Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    Ok(worker::Response::from_bytes(body)?
        .with_status(parts.status.as_u16())
        .with_headers(headers))
}

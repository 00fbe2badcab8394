//! Conversion between Spin's `wasi:http` types and the core's `http` types.

use edgevideo_core::api::auth::CLIENT_ADDRESS_HEADER;
use edgevideo_core::api::{Request, Response, RoomUpgrade};
use edgevideo_core::ApiError;
use futures::StreamExt as _;
use spin_sdk::http::{
    Headers, IncomingRequest, Method, OutgoingResponse, ResponseOutparam, Scheme,
};

/// Largest request body read into memory, in bytes: Workers' own limit (100 MB); the routes
/// apply their smaller limits after reading.
pub const MAX_BODY: usize = 100 * 1024 * 1024;

fn method(method: Method) -> Result<http::Method, ApiError> {
    Ok(match method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Patch => http::Method::PATCH,
        Method::Options => http::Method::OPTIONS,
        Method::Connect => http::Method::CONNECT,
        Method::Trace => http::Method::TRACE,
        Method::Other(other) => http::Method::from_bytes(other.as_bytes())
            .map_err(|e| ApiError::bad_request("invalid_method", e.to_string()))?,
    })
}

/// Reads a Spin request, body included, into the core's request type.
///
/// # Errors
/// 400 when the method, path or a header cannot be represented or the body cannot be read;
/// 413 when the body is larger than [`MAX_BODY`].
pub async fn to_core_request(request: IncomingRequest) -> Result<Request, ApiError> {
    let path = request.path_with_query().unwrap_or_else(|| "/".to_owned());
    // An absolute URI when the host gives the scheme and authority (the `Host` header is
    // not passed to components), so that the core can build absolute URLs.
    let uri = match (request.scheme(), request.authority()) {
        (Some(scheme), Some(authority)) if path.starts_with('/') => {
            let scheme = match &scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
                Scheme::Other(other) => other.as_str(),
            };
            format!("{scheme}://{authority}{path}")
        }
        _ => path,
    };
    let mut builder = http::Request::builder()
        .method(method(request.method())?)
        .uri(uri);
    let mut client_address = None;
    for (name, value) in request.headers().entries() {
        // The client's address comes from Spin (`spin-client-addr`, the connection's peer),
        // never from a header the client sent; the core reads it from `cf-connecting-ip`,
        // as Cloudflare sets it.
        if name.eq_ignore_ascii_case(CLIENT_ADDRESS_HEADER) {
            continue;
        }
        if name.eq_ignore_ascii_case("spin-client-addr") {
            client_address = std::str::from_utf8(&value)
                .ok()
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                .map(|a| a.ip().to_string());
        }
        builder = builder.header(name, value);
    }
    if let Some(address) = client_address {
        builder = builder.header(CLIENT_ADDRESS_HEADER, address);
    }
    let mut body = Vec::new();
    // The body is consumed exactly once, here (the SDK's stream expects that).
    let mut stream = std::pin::pin!(request.into_body_stream());
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request("unreadable_body", format!("{e:?}")))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge(format!(
                "request body is larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    builder
        .body(body)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

/// Turns the core's response into Spin's, with its body.
fn outgoing(response: Response) -> Result<(OutgoingResponse, Vec<u8>), String> {
    let (parts, body) = response.into_parts();
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let fields = Headers::from_list(&headers).map_err(|e| format!("headers: {e:?}"))?;
    let outgoing = OutgoingResponse::new(fields);
    outgoing
        .set_status_code(parts.status.as_u16())
        .map_err(|()| format!("status {} refused", parts.status))?;
    Ok((outgoing, body))
}

/// Sends the core's response through Spin's response out-parameter; a response the host
/// refuses (a forbidden header, say) is replaced by a JSON 500 saying why.
///
/// # Errors
/// The host's message when even that cannot be sent.
pub async fn send(out: ResponseOutparam, response: Response) -> Result<(), String> {
    let (outgoing, body) = match outgoing(response) {
        Ok(pair) => pair,
        Err(err) => {
            let fallback = ApiError::Internal(format!("the response was refused: {err}"));
            outgoing(edgevideo_core::api::error(&fallback))?
        }
    };
    out.set_with_body(outgoing, body)
        .await
        .map_err(|e| format!("body: {e:?}"))
}

/// Spin has no WebSockets: a response the core marked as a room upgrade
/// ([`RoomUpgrade`]) becomes a 501 that points clients to polling. So does the core's
/// `400 websocket_required`: wasi:http drops the hop-by-hop `Upgrade` header, so a real
/// handshake reaches the core as a plain `GET` of a socket route.
pub fn without_room_upgrade(response: Response) -> Response {
    let room = match response.extensions().get::<RoomUpgrade>() {
        Some(upgrade) => format!(" (room {})", upgrade.room),
        None if is_websocket_required(&response) => String::new(),
        None => return response,
    };
    edgevideo_core::api::json(
        http::StatusCode::NOT_IMPLEMENTED,
        &serde_json::json!({ "error": {
            "code": "websockets_unsupported",
            "message": format!(
                "WebSockets are not available on Spin; poll the status instead{room}"
            ),
        }}),
    )
}

/// Whether the core refused a socket route's request for want of a WebSocket handshake.
fn is_websocket_required(response: &Response) -> bool {
    response.status() == http::StatusCode::BAD_REQUEST
        && serde_json::from_slice::<serde_json::Value>(response.body())
            .is_ok_and(|v| v["error"]["code"] == "websocket_required")
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgevideo_core::ApiError;

    #[test]
    fn socket_routes_answer_501_on_spin() {
        let refused = edgevideo_core::api::error(&ApiError::bad_request(
            "websocket_required",
            "this route upgrades to a WebSocket",
        ));
        let answer = without_room_upgrade(refused);
        assert_eq!(answer.status(), http::StatusCode::NOT_IMPLEMENTED);
        assert!(String::from_utf8_lossy(answer.body()).contains("websockets_unsupported"));
        let other = edgevideo_core::api::error(&ApiError::bad_request("invalid_json", "no"));
        assert_eq!(
            without_room_upgrade(other).status(),
            http::StatusCode::BAD_REQUEST
        );
    }
}

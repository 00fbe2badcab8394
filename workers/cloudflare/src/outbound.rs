//! [`Outbound`] over the runtime's `fetch`, with a timeout that aborts the request.

use std::time::Duration;

use edgevideo_core::platform::{Outbound, OutboundError, OutboundRequest, OutboundResponse};
use futures_util::future::{select, Either};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// Largest response body read, in bytes; receivers' answers are small JSON.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The outgoing HTTP port over `fetch`.
pub struct FetchOutbound;

fn network(e: impl std::fmt::Display) -> OutboundError {
    OutboundError::Network(e.to_string())
}

impl Outbound for FetchOutbound {
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let headers = Headers::new();
        for (name, value) in &request.headers {
            headers.append(name, value).map_err(network)?;
        }
        let method = Method::from(request.method.as_str().to_owned());
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        if !request.body.is_empty() {
            let body = js_sys::Uint8Array::from(request.body.as_slice());
            init.with_body(Some(body.into()));
        }
        let outgoing = Request::new_with_init(&request.url, &init).map_err(network)?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let fetch = Fetch::Request(outgoing);
        let sending = Box::pin(fetch.send_with_signal(&signal));
        let timeout = Delay::from(Duration::from_millis(request.timeout_ms));
        let mut response = match select(sending, timeout).await {
            Either::Left((result, _)) => result.map_err(network)?,
            Either::Right(_) => {
                controller.abort();
                return Err(OutboundError::Timeout);
            }
        };
        let status = response.status_code();
        let mut body = response.bytes().await.unwrap_or_default();
        body.truncate(MAX_RESPONSE_BYTES);
        Ok(OutboundResponse { status, body })
    }
}

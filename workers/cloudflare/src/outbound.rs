//! [`Outbound`] over the runtime's `fetch`, with a timeout that aborts the request (the
//! answer's body included: a receiver that sends its headers and then stalls times out
//! too) and a cap on the body read. URLs
//! `container://transcoder/...` go to the transcoder container's Durable Object instead
//! (production; see [`crate::transcoder_container`]).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use edgevideo_core::ports::{Outbound, OutboundError, OutboundRequest, OutboundResponse};
use futures_util::future::{select, Either};
use futures_util::StreamExt as _;
use worker::{
    AbortController, Delay, Fetch, Headers, Method, ObjectNamespace, Request, RequestInit,
    RequestRedirect, Response,
};

/// Largest response body read, in bytes; receivers' answers are small JSON.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The scheme and host that name the transcoder container.
pub const TRANSCODER_CONTAINER: &str = "container://transcoder";

/// The outgoing HTTP port over `fetch`; `transcoder` is the container's namespace, when bound.
pub struct FetchOutbound {
    /// The `TRANSCODER` Durable Object namespace, if the deployment has one.
    pub transcoder: Option<ObjectNamespace>,
}

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
        // Redirects are answered, never followed: a public URL must not bounce the request
        // to a private one (see `services::url_policy`).
        init.with_method(method)
            .with_headers(headers)
            .with_redirect(RequestRedirect::Manual);
        if !request.body.is_empty() {
            let body = js_sys::Uint8Array::from(request.body.as_slice());
            init.with_body(Some(body.into()));
        }
        let controller = AbortController::default();
        let signal = controller.signal();
        let sending: Pin<Box<dyn Future<Output = worker::Result<Response>>>> = match request
            .url
            .strip_prefix(TRANSCODER_CONTAINER)
        {
            Some(path) => {
                let namespace = self
                    .transcoder
                    .as_ref()
                    .ok_or_else(|| network("no TRANSCODER binding for container URLs"))?;
                let stub = namespace
                    .id_from_name("transcoder")
                    .and_then(|id| id.get_stub())
                    .map_err(network)?;
                let url = format!("https://transcoder.internal{path}");
                let outgoing = Request::new_with_init(&url, &init).map_err(network)?;
                Box::pin(async move { stub.fetch_with_request(outgoing).await })
            }
            None => {
                let outgoing = Request::new_with_init(&request.url, &init).map_err(network)?;
                let signal = signal.clone();
                Box::pin(async move { Fetch::Request(outgoing).send_with_signal(&signal).await })
            }
        };
        let timeout = Box::pin(Delay::from(Duration::from_millis(request.timeout_ms)));
        let (mut response, mut timeout) = match select(sending, timeout).await {
            Either::Left((result, timeout)) => (result.map_err(network)?, timeout),
            Either::Right(_) => {
                controller.abort();
                return Err(OutboundError::Timeout);
            }
        };
        let status = response.status_code();
        // The body, read within the same deadline and at most MAX_RESPONSE_BYTES of it.
        let mut body = Vec::new();
        if let Ok(mut stream) = response.stream() {
            loop {
                match select(stream.next(), timeout.as_mut()).await {
                    Either::Left((Some(Ok(chunk)), _)) => {
                        let room = MAX_RESPONSE_BYTES - body.len();
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        if body.len() >= MAX_RESPONSE_BYTES {
                            controller.abort();
                            break;
                        }
                    }
                    Either::Left((Some(Err(_)) | None, _)) => break,
                    Either::Right(_) => {
                        controller.abort();
                        return Err(OutboundError::Timeout);
                    }
                }
            }
        }
        Ok(OutboundResponse { status, body })
    }
}

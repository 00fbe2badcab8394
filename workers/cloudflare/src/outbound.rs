//! [`Outbound`] over the runtime's `fetch`, with a timeout that aborts the request (the
//! answer's body included: a receiver that sends its headers and then stalls times out
//! too) and a cap on the body read. URLs
//! `container://transcoder[-k]/...` go to that transcoder container's Durable Object instead
//! (production; see [`crate::transcoder_container`]; the core picks `k`,
//! `services::transcode::instance_url`).

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

/// The scheme of container URLs.
pub const CONTAINER_SCHEME: &str = "container://";

/// The Durable Object name and the path of a container URL `container://{name}/{path}`, when
/// `name` is a transcoder container's (`transcoder` or `transcoder-{k}`).
fn container_target(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix(CONTAINER_SCHEME)?;
    let (name, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let valid = name == "transcoder"
        || name.strip_prefix("transcoder-").is_some_and(|k| {
            !k.is_empty() && k.len() <= 2 && k.bytes().all(|b| b.is_ascii_digit())
        });
    valid.then_some((name, path))
}

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
        if request.url.starts_with(CONTAINER_SCHEME) && container_target(&request.url).is_none() {
            return Err(network("not a transcoder container URL"));
        }
        let sending: Pin<Box<dyn Future<Output = worker::Result<Response>>>> =
            match container_target(&request.url) {
                Some((name, path)) => {
                    let namespace = self
                        .transcoder
                        .as_ref()
                        .ok_or_else(|| network("no TRANSCODER binding for container URLs"))?;
                    let stub = namespace
                        .id_from_name(name)
                        .and_then(|id| id.get_stub())
                        .map_err(network)?;
                    let url = format!("https://transcoder.internal{path}");
                    let outgoing = Request::new_with_init(&url, &init).map_err(network)?;
                    Box::pin(async move { stub.fetch_with_request(outgoing).await })
                }
                None => {
                    let outgoing = Request::new_with_init(&request.url, &init).map_err(network)?;
                    let signal = signal.clone();
                    Box::pin(
                        async move { Fetch::Request(outgoing).send_with_signal(&signal).await },
                    )
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

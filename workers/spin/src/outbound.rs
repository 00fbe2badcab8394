//! [`Outbound`] over Spin's outbound HTTP (`wasi:http/outgoing-handler`), limited to the
//! hosts `allowed_outbound_hosts` in `spin.toml` grants. The request's timeout is enforced
//! here with a WASI monotonic-clock timer, since the SDK's `send` takes no options.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use edgevideo_core::ports::{Outbound, OutboundError, OutboundRequest, OutboundResponse};
use futures::future::{select, Either};
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{Method, Request, Response};

/// The outgoing HTTP port. WASI HTTP answers redirects without following them, so a public
/// plugin URL cannot bounce a delivery to a private one (see `services::url_policy`).
pub struct SpinOutbound;

fn method(method: &http::Method) -> Method {
    match method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    }
}

/// A future that completes at a monotonic-clock instant, driven by Spin's executor.
struct Sleep {
    deadline_ns: u64,
    token: Option<CancelOnDropToken>,
}

impl Sleep {
    fn for_ms(ms: u64) -> Self {
        let now = wasi::clocks::monotonic_clock::now();
        Sleep {
            deadline_ns: now.saturating_add(ms.saturating_mul(1_000_000)),
            token: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if wasi::clocks::monotonic_clock::now() >= self.deadline_ns {
            return Poll::Ready(());
        }
        let pollable = wasi::clocks::monotonic_clock::subscribe_instant(self.deadline_ns);
        let token = spin_executor::push_waker_and_get_token(pollable, cx.waker().clone());
        self.token = Some(CancelOnDropToken::from(token));
        Poll::Pending
    }
}

impl Outbound for SpinOutbound {
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let mut builder = Request::builder();
        builder.method(method(&request.method)).uri(request.url);
        let mut has_length = false;
        for (name, value) in request.headers {
            has_length |= name.eq_ignore_ascii_case("content-length");
            builder.header(name, value);
        }
        // Without a length the body goes out chunked; receivers (and signature checks over
        // the exact bytes) expect the length, as `fetch` on Workers sends it.
        if !has_length && !request.body.is_empty() {
            builder.header("content-length", request.body.len().to_string());
        }
        builder.body(request.body);
        let send = Box::pin(spin_sdk::http::send::<_, Response>(builder.build()));
        match select(send, Sleep::for_ms(request.timeout_ms)).await {
            Either::Left((Ok(response), _)) => Ok(OutboundResponse {
                status: *response.status(),
                body: response.into_body(),
            }),
            Either::Left((Err(err), _)) => Err(OutboundError::Network(err.to_string())),
            Either::Right(((), _)) => Err(OutboundError::Timeout),
        }
    }
}

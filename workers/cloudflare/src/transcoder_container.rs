//! The `TranscoderContainer` Durable Object class: in production the transcoder runs as a
//! Cloudflare container (`transcoder/Dockerfile`, `[[containers]]` in `wrangler.toml`), and
//! this object starts it on demand and forwards HTTP to its job server on port 8790. The
//! worker reaches it when `TRANSCODER_URL` is `container://transcoder` (see
//! [`crate::outbound`]): one object, and so one container, per instance name
//! (`transcoder`, `transcoder-1`, ... up to `TRANSCODER_INSTANCES`), each running up to
//! `TRANSCODER_WORKERS` jobs at once; local runs start `transcoder serve` as a plain process
//! instead.

use worker::{
    durable_object, ContainerStartupOptions, DurableObject, Env, Request, Response, State,
};

/// The port `transcoder serve` listens on inside the container.
pub const JOB_SERVER_PORT: u16 = 8790;

/// Starts the transcoder container when needed and proxies requests to it.
#[durable_object]
pub struct TranscoderContainer {
    state: State,
    env: Env,
}

impl DurableObject for TranscoderContainer {
    fn new(state: State, env: Env) -> Self {
        TranscoderContainer { state, env }
    }

    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let Some(container) = self.state.container() else {
            return Response::error("no container is configured for the transcoder", 503);
        };
        if !container.running() {
            let mut options = ContainerStartupOptions::new();
            if let Ok(secret) = self.env.secret("TRANSCODER_SECRET") {
                options.add_env("TRANSCODER_SECRET", &secret.to_string());
            }
            for name in ["TRANSCODER_STORE", "TRANSCODER_WORKERS"] {
                if let Ok(value) = self.env.var(name) {
                    options.add_env(name, &value.to_string());
                }
            }
            container.start(Some(options))?;
        }
        container
            .get_tcp_port(JOB_SERVER_PORT)?
            .fetch_request(request)
            .await
    }
}

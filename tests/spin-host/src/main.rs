//! A test harness that serves a Spin HTTP component on 127.0.0.1 — **not Spin itself**.
//!
//! It runs the component the way `spin up` does for the parts edgevideo uses: one fresh
//! instance per request on wasmtime (`wasi:http/incoming-handler@0.2.0`, WASI 0.2 with
//! stdio and TCP sockets inherited and nothing else), Spin's key-value, SQLite and variables interfaces over
//! on-disk SQLite files ([`spin`]), and the variables, stores and databases the manifest
//! grants ([`manifest`]). It does not enforce `allowed_outbound_hosts`, has no other trigger
//! types, and has none of Spin's other APIs (Redis, Postgres, LLM, MQTT).
//!
//! ```text
//! edgevideo-spin-host --manifest spin.toml --state DIR [--listen 127.0.0.1:0]
//!                     [--env-file FILE]... [--var NAME=VALUE]... [--component FILE]
//! ```
//! Variable values come, later ones winning, from `SPIN_VARIABLE_*` in the environment, from
//! env files (`NAME=VALUE` lines, names lower-cased, an optional `SPIN_VARIABLE_` prefix
//! dropped) and from `--var`. Once serving it prints `listening on http://ADDR`.

mod manifest;
mod spin;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use hyper::server::conn::http1;
use tokio::net::TcpListener;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::manifest::App;
use crate::spin::SpinState;

/// Per-request store data: Spin's interfaces, WASI and WASI HTTP over one resource table.
struct Guest {
    spin: SpinState,
    wasi: WasiCtx,
    http: WasiHttpCtx,
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.spin.table,
        }
    }
}

impl WasiHttpView for Guest {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.spin.table,
            hooks: Default::default(),
        }
    }
}

struct Args {
    manifest: PathBuf,
    state: PathBuf,
    listen: SocketAddr,
    component: Option<PathBuf>,
    variables: HashMap<String, String>,
}

fn variable_name(raw: &str) -> String {
    let lower = raw.trim().to_ascii_lowercase();
    lower
        .strip_prefix("spin_variable_")
        .map(str::to_owned)
        .unwrap_or(lower)
}

fn read_env_file(path: &str, into: &mut HashMap<String, String>) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("{path}: expected NAME=VALUE, got {line:?}"))?;
        into.insert(variable_name(name), value.trim().to_owned());
    }
    Ok(())
}

fn parse_args() -> Result<Args> {
    let mut variables: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SPIN_VARIABLE_"))
        .map(|(k, v)| (variable_name(&k), v))
        .collect();
    let (mut manifest, mut state, mut component) = (None, None, None);
    let mut listen: SocketAddr = "127.0.0.1:3000".parse()?;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--manifest" => manifest = Some(PathBuf::from(value()?)),
            "--state" => state = Some(PathBuf::from(value()?)),
            "--component" => component = Some(PathBuf::from(value()?)),
            "--listen" => listen = value()?.parse().context("--listen")?,
            "--env-file" => read_env_file(&value()?, &mut variables)?,
            "--var" => {
                let pair = value()?;
                let (name, v) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--var expects NAME=VALUE"))?;
                variables.insert(variable_name(name), v.to_owned());
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(Args {
        manifest: manifest.ok_or_else(|| anyhow!("--manifest is required"))?,
        state: state.ok_or_else(|| anyhow!("--state is required"))?,
        listen,
        component,
        variables,
    })
}

struct Server {
    pre: ProxyPre<Guest>,
    app: Arc<App>,
    state_dir: PathBuf,
}

impl Server {
    async fn handle(
        self: Arc<Self>,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>> {
        let mut store = Store::new(
            self.pre.engine(),
            Guest {
                spin: SpinState {
                    app: self.app.clone(),
                    state_dir: self.state_dir.clone(),
                    table: ResourceTable::new(),
                },
                // TCP and name lookups as `allowed_outbound_hosts = ["tcp://..."]` grants
                // them in Spin (outgoing mail); not restricted to the listed hosts here.
                wasi: WasiCtx::builder()
                    .inherit_stdout()
                    .inherit_stderr()
                    .inherit_network()
                    .allow_tcp(true)
                    .allow_ip_name_lookup(true)
                    .build(),
                http: WasiHttpCtx::new(),
            },
        );
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        // The guest may go on after it has sent its response (edgevideo runs its inline jobs
        // then), so it runs in its own task.
        let task = tokio::task::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => anyhow!("the guest never set a response"),
                    Ok(Err(e)) => anyhow!("the guest trapped: {e:?}"),
                    Err(e) => e.into(),
                };
                Err(e)
            }
        }
    }
}

fn error_response(message: &str) -> hyper::Response<HyperOutgoingBody> {
    use http_body_util::BodyExt as _;
    let body = http_body_util::Full::new(bytes_of(message))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
    response
}

fn bytes_of(message: &str) -> hyper::body::Bytes {
    hyper::body::Bytes::from(format!("spin test host: {message}\n"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let mut app = App::load(&args.manifest, &args.variables)?;
    if let Some(component) = args.component {
        app.source = component;
    }
    std::fs::create_dir_all(&args.state)
        .with_context(|| format!("creating {}", args.state.display()))?;

    let engine = Engine::default();
    let component = Component::from_file(&engine, &app.source)
        .map_err(|e| anyhow!("loading {}: {e:?}", app.source.display()))?;
    let mut linker = Linker::<Guest>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    spin::SpinHost::add_to_linker::<Guest, HasSelf<SpinState>>(&mut linker, |g| &mut g.spin)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;

    let server = Arc::new(Server {
        pre,
        app: Arc::new(app),
        state_dir: args.state,
    });
    let listener = TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);

    loop {
        let (client, peer) = listener.accept().await?;
        let server = server.clone();
        tokio::task::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                // Like Spin, the host tells the component the peer's address (replacing any
                // header of that name the client sent).
                if let Ok(value) = hyper::header::HeaderValue::from_str(&peer.to_string()) {
                    request.headers_mut().insert("spin-client-addr", value);
                }
                let server = server.clone();
                async move {
                    let line = format!("{} {}", request.method(), request.uri().path());
                    let response = match server.handle(request).await {
                        Ok(response) => response,
                        Err(e) => {
                            eprintln!("spin test host: {line} failed: {e:?}");
                            error_response(&format!("{e}"))
                        }
                    };
                    // Like a server's access log, for the answers worth a look.
                    if response.status().as_u16() >= 400 {
                        eprintln!("spin test host: {line} -> {}", response.status());
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(client), service)
                .await
            {
                // Clients that hang up without reading the answer (ffmpeg's PUTs) are normal.
                if !e.is_incomplete_message() {
                    eprintln!("spin test host: connection error: {e}");
                }
            }
        });
    }
}

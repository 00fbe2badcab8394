//! [`CloudflarePlatform`]: the core's [`Platform`] built from a Worker's `Env`.

use edgevideo_core::config::{Config, ConfigError};
use edgevideo_core::ports::{Clock, Entropy, Platform};
use edgevideo_core::ApiError;
use wasm_bindgen::prelude::wasm_bindgen;
use worker::Env;

use crate::bindings;
use crate::cache::WorkersCache;
use crate::d1::D1Sql;
use crate::kv::WorkersKv;
use crate::mail::SocketMailer;
use crate::outbound::FetchOutbound;
use crate::queue::QueueJobs;
use crate::r2::R2Blobs;
use crate::rooms::DurableRooms;

/// Every port over the Worker's bindings.
pub struct CloudflarePlatform {
    config: Config,
    kv: WorkersKv,
    sql: D1Sql,
    blobs: R2Blobs,
    live: DurableRooms,
    jobs: QueueJobs,
    outbound: FetchOutbound,
    edge_cache: WorkersCache,
    mailer: SocketMailer,
}

fn missing(binding: &str, err: worker::Error) -> ApiError {
    ApiError::Misconfigured(format!("binding {binding} is not available: {err}"))
}

impl CloudflarePlatform {
    /// Reads the configuration and opens every binding.
    ///
    /// # Errors
    /// 503 `misconfigured` naming the missing binding or the invalid variable.
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        let config = Config::from_lookup(|name| {
            env.secret(name)
                .map(|s| s.to_string())
                .or_else(|_| env.var(name).map(|v| v.to_string()))
                .ok()
        })
        .map_err(|e: ConfigError| ApiError::Misconfigured(e.to_string()))?;
        Ok(CloudflarePlatform {
            kv: WorkersKv(env.kv(bindings::KV).map_err(|e| missing(bindings::KV, e))?),
            sql: D1Sql(env.d1(bindings::DB).map_err(|e| missing(bindings::DB, e))?),
            blobs: R2Blobs(
                env.bucket(bindings::BLOBS)
                    .map_err(|e| missing(bindings::BLOBS, e))?,
            ),
            live: DurableRooms::new(
                env.durable_object(bindings::CHANNEL_ROOM)
                    .map_err(|e| missing(bindings::CHANNEL_ROOM, e))?,
            ),
            jobs: QueueJobs(
                env.queue(bindings::JOBS)
                    .map_err(|e| missing(bindings::JOBS, e))?,
            ),
            // Optional: only deployments that run the transcoder as a container bind it.
            outbound: FetchOutbound {
                transcoder: env.durable_object(bindings::TRANSCODER).ok(),
            },
            edge_cache: WorkersCache,
            mailer: SocketMailer {
                server: config.smtp.clone(),
                helo: edgevideo_core::smtp::helo_name(config.public_url.as_deref()),
            },
            config,
        })
    }

    /// Sends this request's reads of live rooms through their relays in `places`, nearest
    /// first (see [`DurableRooms::set_relays`]).
    pub fn set_relays(&mut self, places: Vec<String>) {
        self.live.set_relays(places);
    }
}

/// Wall-clock time from the runtime (`Date.now()`; frozen between I/O on Workers).
pub struct WorkersClock;

impl Clock for WorkersClock {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

/// Randomness from the runtime's `crypto.getRandomValues`.
pub struct WorkersEntropy;

impl Entropy for WorkersEntropy {
    fn fill(&self, buf: &mut [u8]) {
        // getRandomValues fills at most 65,536 bytes per call.
        for chunk in buf.chunks_mut(65_536) {
            get_random_values(chunk);
        }
    }
}

impl Platform for CloudflarePlatform {
    type Kv = WorkersKv;
    type Sql = D1Sql;
    type Blobs = R2Blobs;
    type Live = DurableRooms;
    type Jobs = QueueJobs;
    type Outbound = FetchOutbound;
    type EdgeCache = WorkersCache;
    type Mailer = SocketMailer;

    fn config(&self) -> &Config {
        &self.config
    }
    fn kv(&self) -> &WorkersKv {
        &self.kv
    }
    fn sql(&self) -> &D1Sql {
        &self.sql
    }
    fn blobs(&self) -> &R2Blobs {
        &self.blobs
    }
    fn live(&self) -> &DurableRooms {
        &self.live
    }
    fn jobs(&self) -> &QueueJobs {
        &self.jobs
    }
    fn outbound(&self) -> &FetchOutbound {
        &self.outbound
    }
    fn edge_cache(&self) -> &WorkersCache {
        &self.edge_cache
    }
    fn mailer(&self) -> &SocketMailer {
        &self.mailer
    }
    fn clock(&self) -> &dyn Clock {
        &WorkersClock
    }
    fn entropy(&self) -> &dyn Entropy {
        &WorkersEntropy
    }
    /// `setTimeout`, created and awaited in the calling request's own context: the core's
    /// single flight waits with it rather than being woken by another request (workerd
    /// refuses I/O done on behalf of a different request).
    async fn sleep(&self, ms: u64) {
        worker::Delay::from(std::time::Duration::from_millis(ms)).await;
    }
}

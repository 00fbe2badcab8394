//! [`SpinPlatform`]: the core's [`Platform`] built from Spin's APIs for one request.

use std::rc::Rc;

use edgevideo_core::config::Config;
use edgevideo_core::ports::{Clock, Entropy, NoEdgeCache, Platform};
use edgevideo_core::ApiError;
use spin_sdk::key_value::Store;

use crate::blobs::KvBlobs;
use crate::jobs::SqlJobs;
use crate::kv::SpinKv;
use crate::live::SqlLive;
use crate::mail::SocketMailer;
use crate::names;
use crate::outbound::SpinOutbound;
use crate::sql::{SpinDb, SpinSql};

/// Milliseconds since the Unix epoch, from the WASI wall clock (`std::time::SystemTime` is
/// `wasi:clocks/wall-clock` on `wasm32-wasip2`). A clock before 1970 reads as 0.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Fills `buf` from `wasi:random/random` (the host's CSPRNG).
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let want = u64::try_from(buf.len() - filled).unwrap_or(u64::MAX);
        let bytes = wasi::random::random::get_random_bytes(want);
        if bytes.is_empty() {
            // The interface promises the requested length; never loop forever if it does not.
            break;
        }
        let n = bytes.len().min(buf.len() - filled);
        buf[filled..filled + n].copy_from_slice(&bytes[..n]);
        filled += n;
    }
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    fill_random(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Wall-clock time from WASI.
pub struct WasiClock;

impl Clock for WasiClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// Randomness from WASI.
pub struct WasiEntropy;

impl Entropy for WasiEntropy {
    fn fill(&self, buf: &mut [u8]) {
        fill_random(buf);
    }
}

/// Every port over Spin's APIs.
pub struct SpinPlatform {
    config: Config,
    kv: SpinKv,
    sql: SpinSql,
    blobs: KvBlobs,
    live: SqlLive,
    jobs: SqlJobs,
    outbound: SpinOutbound,
    mailer: SocketMailer,
}

impl SpinPlatform {
    /// Reads the configuration from Spin variables and opens the key-value store and the
    /// SQLite database.
    ///
    /// # Errors
    /// 503 `misconfigured` naming the invalid variable or the store that cannot be opened.
    pub fn from_spin() -> Result<Self, ApiError> {
        let config =
            Config::from_lookup(|name| spin_sdk::variables::get(&names::variable(name)).ok())
                .map_err(|e| ApiError::Misconfigured(e.to_string()))?;
        let store = Store::open(names::KV_STORE).map_err(|e| {
            ApiError::Misconfigured(format!(
                "key-value store {:?} is not available: {e:?}",
                names::KV_STORE
            ))
        })?;
        let store = Rc::new(store);
        let db = SpinDb::open(names::SQLITE_DB).map_err(|e| {
            ApiError::Misconfigured(format!(
                "SQLite database {:?} is not available: {e}",
                names::SQLITE_DB
            ))
        })?;
        Ok(SpinPlatform {
            kv: SpinKv::new(store.clone()),
            sql: SpinSql::new(db.clone()),
            blobs: KvBlobs::new(store),
            live: SqlLive::new(db.clone()),
            jobs: SqlJobs::new(db),
            outbound: SpinOutbound,
            mailer: SocketMailer {
                server: config.smtp.clone(),
                helo: edgevideo_core::smtp::helo_name(config.public_url.as_deref()),
            },
            config,
        })
    }
}

impl Platform for SpinPlatform {
    type Kv = SpinKv;
    type Sql = SpinSql;
    type Blobs = KvBlobs;
    type Live = SqlLive;
    type Jobs = SqlJobs;
    type Outbound = SpinOutbound;
    type EdgeCache = NoEdgeCache;
    type Mailer = SocketMailer;

    fn config(&self) -> &Config {
        &self.config
    }
    fn kv(&self) -> &SpinKv {
        &self.kv
    }
    fn sql(&self) -> &SpinSql {
        &self.sql
    }
    fn blobs(&self) -> &KvBlobs {
        &self.blobs
    }
    fn live(&self) -> &SqlLive {
        &self.live
    }
    fn jobs(&self) -> &SqlJobs {
        &self.jobs
    }
    fn outbound(&self) -> &SpinOutbound {
        &self.outbound
    }
    fn edge_cache(&self) -> &NoEdgeCache {
        &NoEdgeCache
    }
    fn mailer(&self) -> &SocketMailer {
        &self.mailer
    }
    fn clock(&self) -> &dyn Clock {
        &WasiClock
    }
    fn entropy(&self) -> &dyn Entropy {
        &WasiEntropy
    }
}

//! `GET /api/health`: the version, the environment and a live check of every binding.

use http::StatusCode;
use serde::Serialize;

use crate::api::{self, Response};
use crate::config::Environment;
use crate::error::StoreError;
use crate::model::room::RoomRequest;
use crate::ports::{Blobs as _, Clock, Kv as _, Live as _, Platform};
use crate::store::diag;

/// The outcome of one binding check.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Check {
    /// Whether the binding answered.
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub latency_ms: u64,
    /// The error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The health report.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    /// `ok` when every check passed, `degraded` otherwise.
    pub status: &'static str,
    /// The workers' version.
    pub version: &'static str,
    /// `development` or `production`.
    pub environment: &'static str,
    /// One entry per binding: `kv`, `sql`, `blobs`, `live`. The queue producer has no
    /// side-effect-free probe; its binding is checked when the platform is built.
    pub checks: std::collections::BTreeMap<&'static str, Check>,
}

/// The body of `GET /api/version`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VersionInfo {
    /// The workers' version.
    pub version: &'static str,
}

/// `GET /api/version`: the version alone, touching no binding.
pub fn version() -> Response {
    api::json(
        http::StatusCode::OK,
        &VersionInfo {
            version: crate::VERSION,
        },
    )
}

async fn timed<F: std::future::Future<Output = Result<(), StoreError>>>(
    clock: &dyn Clock,
    check: F,
) -> Check {
    let start = clock.now_ms();
    let result = check.await;
    Check {
        ok: result.is_ok(),
        latency_ms: clock.now_ms().saturating_sub(start),
        error: result.err().map(|e| e.to_string()),
    }
}

/// Runs every check; 200 when all pass, 503 otherwise.
pub async fn get<P: Platform>(platform: &P) -> Response {
    let clock = platform.clock();
    let mut checks = std::collections::BTreeMap::new();
    checks.insert(
        "kv",
        timed(clock, async {
            platform.kv().get("health:probe").await.map(drop)
        })
        .await,
    );
    checks.insert("sql", timed(clock, diag::probe(platform.sql())).await);
    checks.insert(
        "blobs",
        timed(clock, async {
            platform.blobs().head("health/probe").await.map(drop)
        })
        .await,
    );
    checks.insert(
        "live",
        timed(clock, async {
            platform
                .live()
                .call("health", &RoomRequest::Ping)
                .await
                .map(drop)
        })
        .await,
    );
    let healthy = checks.values().all(|c| c.ok);
    let report = Health {
        status: if healthy { "ok" } else { "degraded" },
        version: crate::VERSION,
        environment: match platform.config().environment {
            Environment::Development => "development",
            Environment::Production => "production",
        },
        checks,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    api::json(status, &report)
}

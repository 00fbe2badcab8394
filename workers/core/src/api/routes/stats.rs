//! `GET /api/stats`: the platform's KPIs (after serverlessVideo's dashboards). Everyone gets
//! the headline figures (broadcasts, views, plugins added, published videos, hours of
//! video); admins also get the detailed part (videos by status, per-hook plugin
//! success/failure, every raw counter).

use std::collections::BTreeMap;

use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::api::routes::catalogue;
use crate::api::{Request, Response};
use crate::error::ApiError;
use crate::ports::Platform;
use crate::store::{counters, stats};

/// The plugin hooks, in lifecycle order.
pub const HOOKS: [&str; 4] = ["preValidate", "postValidate", "preMetadata", "postMetadata"];

/// The body of `GET /api/stats`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Stats {
    /// Broadcasts started.
    pub broadcasts: i64,
    /// Views counted (once per viewer session).
    pub views: ViewCounts,
    /// Plugins registered.
    pub plugins_added: i64,
    /// Published videos.
    pub videos_published: i64,
    /// Hours of video in the catalogue (not rejected or failed), to three decimals.
    pub hours_of_video: f64,
    /// For admins (stored role) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<StatsDetail>,
}

/// Views by kind.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ViewCounts {
    /// Live joins.
    pub live: i64,
    /// VOD plays.
    pub vod: i64,
    /// Both.
    pub total: i64,
}

/// The admins' part of [`Stats`].
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StatsDetail {
    /// Videos by status (every status, 0 when none).
    pub videos_by_status: BTreeMap<String, i64>,
    /// Plugin outcomes by hook, then outcome ([`plugin_outcomes`]).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "BTreeMap<String, BTreeMap<String, i64>>")
    )]
    pub plugins: Value,
    /// Every raw counter.
    pub counters: BTreeMap<String, i64>,
}

/// Per-hook plugin outcomes from counters named `plugins.{hook}.{outcome}`: every hook of
/// [`HOOKS`] with `succeeded` and `failed` (0 when never counted), plus any other hook or
/// outcome that was counted.
pub fn plugin_outcomes(counters: &BTreeMap<String, i64>) -> Value {
    let mut hooks: BTreeMap<String, Map<String, Value>> = HOOKS
        .iter()
        .map(|h| {
            let mut m = Map::new();
            m.insert("succeeded".into(), json!(0));
            m.insert("failed".into(), json!(0));
            ((*h).to_owned(), m)
        })
        .collect();
    for (name, value) in counters {
        let Some(rest) = name.strip_prefix("plugins.") else {
            continue;
        };
        if let Some((hook, outcome)) = rest.split_once('.') {
            hooks
                .entry(hook.to_owned())
                .or_default()
                .insert(outcome.to_owned(), json!(value));
        }
    }
    json!(hooks)
}

/// `GET /api/stats` (public; the `detail` part for admins only).
pub async fn get<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let (viewer, _) = catalogue::viewer(p, request).await?;
    let counters = stats::counters(p.sql()).await?;
    let statuses = stats::videos_by_status(p.sql()).await?;
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    let (live, vod) = (counter(counters::VIEWS_LIVE), counter(counters::VIEWS_VOD));
    let count_of = |status: &str| {
        statuses
            .iter()
            .find(|s| s.status == status)
            .map_or(0, |s| s.count)
    };
    // Hours of video in the catalogue: everything recorded that was not rejected or failed.
    let video_ms: i64 = statuses
        .iter()
        .filter(|s| matches!(s.status.as_str(), "processing" | "ready" | "published"))
        .map(|s| s.duration_ms.unwrap_or(0))
        .sum();
    let detail = viewer.admin.then(|| StatsDetail {
        videos_by_status: crate::services::catalogue::STATUSES
            .iter()
            .map(|s| ((*s).to_owned(), count_of(s)))
            .collect(),
        plugins: plugin_outcomes(&counters),
        counters: counters.clone(),
    });
    let body = Stats {
        broadcasts: counter(counters::BROADCASTS),
        views: ViewCounts {
            live,
            vod,
            total: live + vod,
        },
        plugins_added: counter("plugins.added"),
        videos_published: count_of("published"),
        hours_of_video: (video_ms as f64 / 3_600_000.0 * 1000.0).round() / 1000.0,
        detail,
    };
    Ok(crate::api::json(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_outcomes_cover_every_hook() {
        let counters: BTreeMap<String, i64> = [
            ("plugins.added".to_owned(), 3),
            ("plugins.preValidate.succeeded".to_owned(), 2),
            ("plugins.preValidate.failed".to_owned(), 1),
            ("plugins.postMetadata.timed_out".to_owned(), 4),
            ("views.live".to_owned(), 9),
        ]
        .into_iter()
        .collect();
        let outcomes = plugin_outcomes(&counters);
        assert_eq!(
            outcomes["preValidate"],
            json!({"succeeded": 2, "failed": 1})
        );
        assert_eq!(
            outcomes["postValidate"],
            json!({"succeeded": 0, "failed": 0})
        );
        assert_eq!(outcomes["postMetadata"]["timed_out"], json!(4));
        assert!(
            outcomes.get("added").is_none(),
            "plugins.added is not a hook"
        );
    }
}

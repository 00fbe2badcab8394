//! KPI counters in the catalogue's `counters` table (broadcasts, views, plugins, ...).

use crate::ports::{SqlValue, Statement};

/// Broadcasts started.
pub const BROADCASTS: &str = "broadcasts";
/// Live joins: playback URLs issued for a live channel.
pub const VIEWS_LIVE: &str = "views.live";
/// VOD plays: playback URLs issued for a video.
pub const VIEWS_VOD: &str = "views.vod";

/// The statement that adds `delta` to counter `name`, creating it at need.
pub fn bump(name: &str, delta: i64) -> Statement {
    Statement::new(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        vec![SqlValue::from(name), SqlValue::Integer(delta)],
    )
}

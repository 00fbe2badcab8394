//! KPI counters in the catalogue's `counters` table (broadcasts, views, plugins, ...).

use crate::ports::{SqlValue, Statement};

/// Broadcasts started.
pub const BROADCASTS: &str = "broadcasts";
/// Live joins: playback URLs issued for a live channel.
pub const VIEWS_LIVE: &str = "views.live";
/// VOD plays: playback URLs issued for a video.
pub const VIEWS_VOD: &str = "views.vod";

/// The statement that adds one to counter `name` unless `viewer` has a session of `scope`
/// that started after `expired_before_ms` (see [`crate::store::views`]): run just before the
/// upsert that opens that session, in the same batch, it counts the view exactly when the
/// upsert opens a session, also when the batch is delivered again. With `address_cap`
/// (`address`, `slot`, `views`), only while that address has counted fewer than `views`
/// views of `scope` in `slot` (`view_addresses`, bumped after this statement).
pub fn bump_unless_session_open(
    name: &str,
    scope: &str,
    viewer: &str,
    expired_before_ms: i64,
    address_cap: Option<(&str, i64, i64)>,
) -> Statement {
    let mut values = vec![
        SqlValue::from(name),
        SqlValue::from(scope),
        SqlValue::from(viewer),
        SqlValue::Integer(expired_before_ms),
    ];
    let capped = match address_cap {
        Some((address, slot, views)) => {
            values.extend([
                SqlValue::from(address),
                SqlValue::Integer(slot),
                SqlValue::Integer(views),
            ]);
            " AND COALESCE((SELECT views FROM view_addresses WHERE scope = ?2 \
             AND address = ?5 AND slot = ?6), 0) < ?7"
        }
        None => "",
    };
    Statement::new(
        format!(
            "INSERT INTO counters (name, value) SELECT ?1, 1 WHERE NOT EXISTS \
             (SELECT 1 FROM view_sessions WHERE scope = ?2 AND viewer = ?3 AND started_at > ?4)\
             {capped} ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
        ),
        values,
    )
}

/// The statement that adds `delta` to counter `name`, creating it at need.
pub fn bump(name: &str, delta: i64) -> Statement {
    Statement::new(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        vec![SqlValue::from(name), SqlValue::Integer(delta)],
    )
}

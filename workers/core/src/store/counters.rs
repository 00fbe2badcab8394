//! KPI counters in the catalogue's `counters` table (broadcasts, views, plugins, ...).

use crate::ports::{SqlValue, Statement};

/// Broadcasts started.
pub const BROADCASTS: &str = "broadcasts";
/// Live joins: playback URLs issued for a live channel.
pub const VIEWS_LIVE: &str = "views.live";
/// VOD plays: playback URLs issued for a video.
pub const VIEWS_VOD: &str = "views.vod";

/// The statements that count a view: they add one to counter `name` and to the views of
/// `scope` (`scope_views`, the channel's or video's own count) unless `viewer` has a session
/// of `scope` that started after `expired_before_ms` (see [`crate::store::views`]). Run just
/// before the upsert that opens that session, in the same batch, they count the view exactly
/// when the upsert opens a session, also when the batch is delivered again. With
/// `address_cap` (`address`, `slot`, `views`), only while that address has counted fewer
/// than `views` views of `scope` in `slot` (`view_addresses`, bumped after these).
pub fn count_view_unless_session_open(
    name: &str,
    scope: &str,
    viewer: &str,
    expired_before_ms: i64,
    address_cap: Option<(&str, i64, i64)>,
) -> [Statement; 2] {
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
    // Both statements bind the same values (`?1` is unused by the second: SQLite numbers
    // parameters by index, so a gap is allowed).
    let guard = format!(
        "WHERE NOT EXISTS (SELECT 1 FROM view_sessions WHERE scope = ?2 AND viewer = ?3 \
         AND started_at > ?4){capped}"
    );
    [
        Statement::new(
            format!(
                "INSERT INTO counters (name, value) SELECT ?1, 1 {guard} \
                 ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
            ),
            values.clone(),
        ),
        Statement::new(
            format!(
                "INSERT INTO scope_views (scope, views) SELECT ?2, 1 {guard} \
                 ON CONFLICT(scope) DO UPDATE SET views = views + excluded.views"
            ),
            values,
        ),
    ]
}

/// The statement that adds `delta` to counter `name`, creating it at need.
pub fn bump(name: &str, delta: i64) -> Statement {
    Statement::new(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        vec![SqlValue::from(name), SqlValue::Integer(delta)],
    )
}

//! The `video_events` table: what happened to a video, in order (transcodes, lifecycle steps,
//! plugin answers).

use serde_json::Value;

use crate::ports::{SqlValue, Statement};
use crate::store::lifecycles::ANSWERED;

fn params(video_id: &str, kind: &str, detail: &Value, at_ms: i64) -> Vec<SqlValue> {
    vec![
        SqlValue::from(video_id),
        SqlValue::from(kind),
        SqlValue::from(detail.to_string()),
        SqlValue::Integer(at_ms),
    ]
}

/// The statement that records event `kind` of a video with its JSON `detail`.
pub fn record(video_id: &str, kind: &str, detail: &Value, at_ms: i64) -> Statement {
    Statement::new(
        "INSERT INTO video_events (video_id, kind, detail, created_at) VALUES (?1, ?2, ?3, ?4)",
        params(video_id, kind, detail, at_ms),
    )
}

/// As [`record`], as an `INSERT ... SELECT` (placeholders `?1`..`?4`) that a caller ends with
/// a `WHERE` guard numbered from `?5` (see [`crate::store::lifecycles::when_claimed`]).
pub fn record_select(video_id: &str, kind: &str, detail: &Value, at_ms: i64) -> Statement {
    Statement::new(
        "INSERT INTO video_events (video_id, kind, detail, created_at) SELECT ?1, ?2, ?3, ?4",
        params(video_id, kind, detail, at_ms),
    )
}

/// As [`record`], applied only when the answer guard holds (see
/// [`crate::store::lifecycles::when_answered`]).
pub fn record_when_answered(video_id: &str, kind: &str, detail: &Value, at_ms: i64) -> Statement {
    Statement::new(
        format!(
            "INSERT INTO video_events (video_id, kind, detail, created_at) \
             SELECT ?1, ?2, ?3, ?4 WHERE {ANSWERED}"
        ),
        params(video_id, kind, detail, at_ms),
    )
}

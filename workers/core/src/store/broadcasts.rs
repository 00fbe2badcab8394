//! The `broadcasts` table, and the rows written when a broadcast ends: the closed broadcast
//! row, its video (`processing`) and the video's first `video_events`. Every statement here
//! is idempotent, so a broadcast announced twice writes its rows once.

use serde_json::json;

use crate::error::StoreError;
use crate::model::room::EndedBroadcast;
use crate::ports::{SqlValue, Statement};

/// The statement that records a broadcast as `live` unless its row exists.
pub fn record_started(broadcast_id: &str, channel_id: &str, started_at_ms: u64) -> Statement {
    Statement::new(
        "INSERT OR IGNORE INTO broadcasts (id, channel_id, status, started_at) \
         VALUES (?1, ?2, 'live', ?3)",
        vec![
            SqlValue::from(broadcast_id),
            SqlValue::from(channel_id),
            SqlValue::Integer(started_at_ms as i64),
        ],
    )
}

/// The batch that records an ended broadcast, in order: its row (in case the start was not
/// recorded), the row closed (with its segment list only when it made no video), and when it made a video, the video
/// (`processing`, owned by `owner_id`, titled `title`) and its history events, once each.
///
/// # Errors
/// `Backend` when the segment list cannot be encoded.
pub fn record_ended(
    ended: &EndedBroadcast,
    owner_id: &str,
    title: &str,
) -> Result<Vec<Statement>, StoreError> {
    let duration_ms: u64 = ended.segments.iter().map(|s| s.duration_ms).sum();
    // The segment list of a recording that made a video is in the blob store (see
    // `services::videos::recording`); only a broadcast without one keeps it here.
    let segments = match ended.video_id {
        Some(_) => "[]".to_owned(),
        None => {
            serde_json::to_string(&ended.segments).map_err(|e| StoreError::backend("json", e))?
        }
    };
    let mut statements = vec![
        record_started(&ended.broadcast_id, &ended.channel_id, ended.started_at_ms),
        Statement::new(
            "UPDATE broadcasts SET status = 'ended', ended_at = ?2, end_reason = ?3, \
             segment_count = ?4, duration_ms = ?5, segments = ?6 WHERE id = ?1",
            vec![
                SqlValue::from(ended.broadcast_id.as_str()),
                SqlValue::Integer(ended.ended_at_ms as i64),
                SqlValue::from(ended.reason.as_str()),
                SqlValue::Integer(ended.segments.len() as i64),
                SqlValue::Integer(duration_ms as i64),
                SqlValue::from(segments),
            ],
        ),
    ];
    if let Some(video_id) = &ended.video_id {
        statements.push(recording_video(
            ended,
            video_id,
            owner_id,
            title,
            duration_ms,
        ));
        statements.extend(recording_events(ended, video_id, duration_ms));
    }
    Ok(statements)
}

/// The video of an ended broadcast, `processing`, unless it exists.
fn recording_video(
    ended: &EndedBroadcast,
    video_id: &str,
    owner_id: &str,
    title: &str,
    duration_ms: u64,
) -> Statement {
    Statement::new(
        "INSERT OR IGNORE INTO videos (id, channel_id, broadcast_id, owner_id, status, title, \
         duration_ms, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'processing', ?5, ?6, ?7, ?7)",
        vec![
            SqlValue::from(video_id),
            SqlValue::from(ended.channel_id.as_str()),
            SqlValue::from(ended.broadcast_id.as_str()),
            SqlValue::from(owner_id),
            SqlValue::from(title),
            SqlValue::Integer(duration_ms as i64),
            SqlValue::Integer(ended.ended_at_ms as i64),
        ],
    )
}

/// The recording's history (the catalogue's timeline), each kind once: `broadcast.ended`,
/// then `broadcast.started`, `segments.received`, `video.created` and `transcode.queued`.
fn recording_events(ended: &EndedBroadcast, video_id: &str, duration_ms: u64) -> Vec<Statement> {
    let mut statements = vec![Statement::new(
        "INSERT INTO video_events (video_id, kind, detail, created_at) \
         SELECT ?1, 'broadcast.ended', ?2, ?3 WHERE NOT EXISTS \
         (SELECT 1 FROM video_events WHERE video_id = ?1 AND kind = 'broadcast.ended')",
        vec![
            SqlValue::from(video_id),
            SqlValue::from(
                json!({
                    "broadcast_id": ended.broadcast_id,
                    "reason": ended.reason,
                    "segments": ended.segments.len(),
                    "duration_ms": duration_ms,
                    "started_at_ms": ended.started_at_ms,
                })
                .to_string(),
            ),
            SqlValue::Integer(ended.ended_at_ms as i64),
        ],
    )];
    let bytes: u64 = ended.segments.iter().map(|s| s.size).sum();
    for (kind, detail, at_ms) in [
        (
            "broadcast.started",
            json!({ "broadcast_id": ended.broadcast_id }),
            ended.started_at_ms,
        ),
        (
            "segments.received",
            json!({ "segments": ended.segments.len(), "bytes": bytes, "duration_ms": duration_ms }),
            ended.ended_at_ms,
        ),
        (
            "video.created",
            json!({ "status": "processing" }),
            ended.ended_at_ms,
        ),
        ("transcode.queued", json!({}), ended.ended_at_ms),
    ] {
        statements.push(Statement::new(
            "INSERT INTO video_events (video_id, kind, detail, created_at) \
             SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS \
             (SELECT 1 FROM video_events WHERE video_id = ?1 AND kind = ?2)",
            vec![
                SqlValue::from(video_id),
                SqlValue::from(kind),
                SqlValue::from(detail.to_string()),
                SqlValue::Integer(at_ms as i64),
            ],
        ));
    }
    statements
}

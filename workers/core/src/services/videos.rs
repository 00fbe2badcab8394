//! Videos in the catalogue: the recording of a broadcast, playable as VOD HLS at once and as
//! an MP4 once the transcoder has stitched it.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::hls::ListedSegment;
use crate::ports::{Sql, SqlExt as _, SqlValue, Statement};

/// A stored video (the columns playback and the catalogue need).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Video {
    /// Identifier (`vid_...`).
    pub id: String,
    /// The channel it was broadcast on.
    pub channel_id: String,
    /// The broadcast it records.
    pub broadcast_id: Option<String>,
    /// The channel's owner.
    pub owner_id: String,
    /// `processing`, `ready`, `published`, `rejected` or `failed`.
    pub status: String,
    /// `public` or `private`.
    pub visibility: String,
    /// Title.
    pub title: String,
    /// Duration in ms, when known.
    pub duration_ms: Option<i64>,
    /// The MP4's blob key, once transcoded.
    pub mp4_key: Option<String>,
    /// The poster's blob key, once transcoded.
    pub poster_key: Option<String>,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, channel_id, broadcast_id, owner_id, status, visibility, title, duration_ms, mp4_key, \
     poster_key, created_at";

/// Finds a video by id.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn by_id<S: Sql>(sql: &S, id: &str) -> Result<Option<Video>, StoreError> {
    sql.query_one(&Statement::new(
        format!("SELECT {COLUMNS} FROM videos WHERE id = ?1"),
        vec![SqlValue::from(id)],
    ))
    .await
}

#[derive(Deserialize)]
struct SegmentsRow {
    segments: String,
}

/// The recorded segments of a broadcast, in order.
///
/// # Errors
/// `NotFound` when the broadcast has no stored recording; `Backend` on a bad row.
pub async fn broadcast_segments<S: Sql>(
    sql: &S,
    broadcast_id: &str,
) -> Result<Vec<ListedSegment>, StoreError> {
    let row: SegmentsRow = sql
        .query_one(&Statement::new(
            "SELECT segments FROM broadcasts WHERE id = ?1 AND status = 'ended'",
            vec![SqlValue::from(broadcast_id)],
        ))
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("recording of {broadcast_id}")))?;
    serde_json::from_str(&row.segments)
        .map_err(|e| StoreError::backend("sql", format!("segments of {broadcast_id}: {e}")))
}

/// The blob key of a live or recorded segment.
pub fn segment_key(channel_id: &str, broadcast_id: &str, file: &str) -> String {
    format!("live/{channel_id}/{broadcast_id}/{file}")
}

/// The blob prefix under which a video's own files (MP4, poster) are stored.
pub fn files_prefix(video_id: &str) -> String {
    format!("videos/{video_id}/")
}

/// The blob key of a video's transcoded file: `mp4` or `poster`.
pub fn file_key(video_id: &str, kind: &str) -> Option<(String, &'static str)> {
    let (name, content_type) = match kind {
        "mp4" => ("video.mp4", "video/mp4"),
        "poster" => ("poster.jpg", "image/jpeg"),
        _ => return None,
    };
    Some((format!("{}{name}", files_prefix(video_id)), content_type))
}

//! The `videos` table: reads by id, the guarded status transitions (a video's status changes
//! only through [`mark_ready`], [`mark_failed`], [`publish`] and [`reject`]) and the merges of
//! plugin results into its title, description, tags and metadata.

use serde::Deserialize;

use crate::error::StoreError;
use crate::model::hls::ListedSegment;
use crate::model::video::{Transcoded, Video};
use crate::ports::{Sql, SqlExt as _, SqlValue, Statement};
use crate::store::lifecycles::ANSWERED;

const COLUMNS: &str =
    "id, channel_id, broadcast_id, owner_id, status, visibility, title, duration_ms, mp4_key, \
     poster_key, created_at";

/// A video by id.
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

/// Whether the video's row exists (a deleted video's row is gone).
///
/// # Errors
/// `Backend` when the query fails.
pub async fn exists<S: Sql>(sql: &S, id: &str) -> Result<bool, StoreError> {
    let rows = sql
        .query(&Statement::new(
            "SELECT 1 AS found FROM videos WHERE id = ?1",
            vec![SqlValue::from(id)],
        ))
        .await?;
    Ok(!rows.is_empty())
}

/// The channel of a video, `None` when the video does not exist.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn channel_of<S: Sql>(sql: &S, id: &str) -> Result<Option<String>, StoreError> {
    #[derive(Deserialize)]
    struct Row {
        channel_id: String,
    }
    let row: Option<Row> = sql
        .query_one(&Statement::new(
            "SELECT channel_id FROM videos WHERE id = ?1",
            vec![SqlValue::from(id)],
        ))
        .await?;
    Ok(row.map(|r| r.channel_id))
}

/// The recorded segments of an ended broadcast (a video's source), in order.
///
/// # Errors
/// `NotFound` when the broadcast has no stored recording; `Backend` on a bad row.
pub async fn recording<S: Sql>(
    sql: &S,
    broadcast_id: &str,
) -> Result<Vec<ListedSegment>, StoreError> {
    #[derive(Deserialize)]
    struct SegmentsRow {
        segments: String,
    }
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

/// `processing` to `ready` with the transcoder's files and dimensions; `false` when the
/// video was not `processing` (a repeated callback).
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn mark_ready<S: Sql>(
    sql: &S,
    id: &str,
    files: &Transcoded,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let changed = sql
        .execute(&Statement::new(
            "UPDATE videos SET status = 'ready', mp4_key = ?2, poster_key = ?3, \
             duration_ms = coalesce(?4, duration_ms), width = ?5, height = ?6, \
             size_bytes = ?7, updated_at = ?8 WHERE id = ?1 AND status = 'processing'",
            vec![
                SqlValue::from(id),
                SqlValue::from(files.mp4_key.clone()),
                SqlValue::from(files.poster_key.clone()),
                SqlValue::from(files.duration_ms),
                SqlValue::from(files.width),
                SqlValue::from(files.height),
                SqlValue::from(files.size_bytes),
                SqlValue::Integer(now_ms),
            ],
        ))
        .await?;
    Ok(changed == 1)
}

/// The statement that moves a `processing` video to `failed`.
pub fn mark_failed(id: &str, now_ms: i64) -> Statement {
    Statement::new(
        "UPDATE videos SET status = 'failed', updated_at = ?2 \
         WHERE id = ?1 AND status = 'processing'",
        vec![SqlValue::from(id), SqlValue::Integer(now_ms)],
    )
}

/// The statement that moves a `ready` video to `published`.
pub fn publish(id: &str, now_ms: i64) -> Statement {
    Statement::new(
        "UPDATE videos SET status = 'published', updated_at = ?2 \
         WHERE id = ?1 AND status = 'ready'",
        vec![SqlValue::from(id), SqlValue::Integer(now_ms)],
    )
}

/// The statement that marks a video `rejected` with the reason (its lifecycle, guarded on
/// `running`, is what only rejects once).
pub fn reject(id: &str, reason: &str, now_ms: i64) -> Statement {
    Statement::new(
        "UPDATE videos SET status = 'rejected', reject_reason = ?2, updated_at = ?3 \
         WHERE id = ?1",
        vec![
            SqlValue::from(id),
            SqlValue::from(reason),
            SqlValue::Integer(now_ms),
        ],
    )
}

/// Stores `json` (JSON text) under `path` (a JSON path such as `$.transcript`) of the
/// video's metadata, touching `updated_at` when `now_ms` is given. Guarded by
/// [`crate::store::lifecycles::when_answered`].
pub fn merge_metadata(id: &str, path: &str, json: &str, now_ms: Option<i64>) -> Statement {
    let mut params = vec![
        SqlValue::from(id),
        SqlValue::from(path),
        SqlValue::from(json),
    ];
    let sql = match now_ms {
        Some(now_ms) => {
            params.push(SqlValue::Integer(now_ms));
            format!(
                "UPDATE videos SET metadata = json_set(metadata, ?2, json(?3)), updated_at = ?4 \
                 WHERE id = ?1 AND {ANSWERED}"
            )
        }
        None => format!(
            "UPDATE videos SET metadata = json_set(metadata, ?2, json(?3)) \
             WHERE id = ?1 AND {ANSWERED}"
        ),
    };
    Statement::new(sql, params)
}

/// A text column plugins may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// `title`.
    Title,
    /// `description`.
    Description,
}

/// Sets the video's title or description. Guarded by
/// [`crate::store::lifecycles::when_answered`].
pub fn set_text(id: &str, field: TextField, text: &str) -> Statement {
    let column = match field {
        TextField::Title => "title",
        TextField::Description => "description",
    };
    Statement::new(
        format!("UPDATE videos SET {column} = ?2 WHERE id = ?1 AND {ANSWERED}"),
        vec![SqlValue::from(id), SqlValue::from(text)],
    )
}

/// Adds tags (a JSON array of strings) to the video's, without duplicates. Guarded by
/// [`crate::store::lifecycles::when_answered`].
pub fn merge_tags(id: &str, tags_json: &str) -> Statement {
    Statement::new(
        format!(
            "UPDATE videos SET tags = (SELECT json_group_array(value) FROM \
             (SELECT value FROM json_each(videos.tags) UNION SELECT value FROM json_each(?2))) \
             WHERE id = ?1 AND {ANSWERED}"
        ),
        vec![SqlValue::from(id), SqlValue::from(tags_json)],
    )
}

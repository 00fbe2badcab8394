//! The catalogue's reads and deletes over `videos`, `channels` and `video_events`: the
//! newest-first video listing (one fixed statement for every filter, keyset paging on
//! `(created_at, id)` descending), a video's detail and history, and the removal of a
//! video's rows.
//!
//! Every statement here is fixed SQL text with `?N` placeholders: filters and search strings
//! are bound as parameters, never spliced into SQL.

use serde::Deserialize;

use crate::error::StoreError;
use crate::model::video::Video;
use crate::ports::{Sql, SqlExt as _, SqlValue, Statement};

/// A position in a newest-first listing: the last item of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// `created_at` of the last item, Unix ms.
    pub created_at: i64,
    /// `id` of the last item.
    pub id: String,
}

/// What a video listing selects; every condition set must hold. Text values are bound as
/// given (trimmed by the caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListFilter<'a> {
    /// The caller is an admin: every video is visible.
    pub admin: bool,
    /// The caller, who also sees all of their own videos (others see published public ones).
    pub user_id: Option<&'a str>,
    /// Only this status.
    pub status: Option<&'a str>,
    /// Only this channel's videos.
    pub channel_id: Option<&'a str>,
    /// Only videos carrying this tag (exact match).
    pub tag: Option<&'a str>,
    /// Free text, matched case-insensitively (ASCII) inside title, description and tags.
    pub q: Option<&'a str>,
    /// Only this owner's videos.
    pub owner_id: Option<&'a str>,
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern and wraps it in `%`.
pub fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.trim().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// What the catalogue shows of a video besides its [`Video`] columns, in listings and in its
/// detail alike: the channel's name (joined in), its texts, dimensions and last change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CatalogueColumns {
    /// The channel's name (null once the channel is gone).
    pub channel_name: Option<String>,
    /// Description.
    pub description: String,
    /// Tags, as stored JSON text.
    pub tags: String,
    /// Width in pixels, once transcoded.
    pub width: Option<i64>,
    /// Height in pixels, once transcoded.
    pub height: Option<i64>,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

/// A row of a video listing ([`list`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VideoRow {
    /// The columns playback reads.
    #[serde(flatten)]
    pub video: Video,
    /// What the catalogue shows besides.
    #[serde(flatten)]
    pub shown: CatalogueColumns,
    /// Viewers who played it (one per viewer session row).
    #[serde(default)]
    pub views: Option<i64>,
}

/// A video's detail row ([`video_detail`]): every column; also what plugins are shown.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VideoDetailRow {
    /// The columns playback reads.
    #[serde(flatten)]
    pub video: Video,
    /// What the catalogue shows besides.
    #[serde(flatten)]
    pub shown: CatalogueColumns,
    /// Metadata merged from plugins (JSON text).
    pub metadata: String,
    /// MP4 size.
    pub size_bytes: Option<i64>,
    /// Why a plugin rejected it.
    pub reject_reason: Option<String>,
}

const LIST_SQL: &str = "SELECT v.id, v.channel_id, v.broadcast_id, c.name AS channel_name, \
     v.owner_id, v.status, v.visibility, v.title, v.description, v.tags, v.duration_ms, \
     v.width, v.height, v.mp4_key, v.poster_key, \
     (SELECT s.views FROM scope_views s WHERE s.scope = v.id) AS views, \
     v.created_at, v.updated_at \
     FROM videos v LEFT JOIN channels c ON c.id = v.channel_id \
     WHERE (?1 = 1 OR (v.status = 'published' AND v.visibility = 'public') OR v.owner_id = ?2) \
     AND (?3 IS NULL OR v.status = ?3) \
     AND (?4 IS NULL OR v.channel_id = ?4) \
     AND (?5 IS NULL OR EXISTS (SELECT 1 FROM json_each(v.tags) t WHERE t.value = ?5)) \
     AND (?6 IS NULL OR v.title LIKE ?6 ESCAPE '\\' OR v.description LIKE ?6 ESCAPE '\\' \
          OR EXISTS (SELECT 1 FROM json_each(v.tags) t WHERE t.value LIKE ?6 ESCAPE '\\')) \
     AND (?7 IS NULL OR v.owner_id = ?7) \
     AND (?8 IS NULL OR v.created_at < ?8 OR (v.created_at = ?8 AND v.id < ?9)) \
     ORDER BY v.created_at DESC, v.id DESC LIMIT ?10";

/// The statement of one page of a listing: `fetch` videos matching `filter` after `after`
/// (fixed SQL; everything user-supplied is bound).
pub fn list_statement(filter: &ListFilter, after: Option<&Position>, fetch: u32) -> Statement {
    Statement::new(
        LIST_SQL,
        vec![
            SqlValue::Integer(i64::from(filter.admin)),
            SqlValue::from(filter.user_id),
            SqlValue::from(filter.status),
            SqlValue::from(filter.channel_id),
            SqlValue::from(filter.tag),
            SqlValue::from(filter.q.map(like_pattern)),
            SqlValue::from(filter.owner_id),
            after.map_or(SqlValue::Null, |p| SqlValue::Integer(p.created_at)),
            SqlValue::from(after.map(|p| p.id.as_str())),
            SqlValue::Integer(i64::from(fetch)),
        ],
    )
}

/// Up to `fetch` videos of a listing, newest first, after `after`.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn list<S: Sql>(
    sql: &S,
    filter: &ListFilter<'_>,
    after: Option<&Position>,
    fetch: u32,
) -> Result<Vec<VideoRow>, StoreError> {
    sql.query_as(&list_statement(filter, after, fetch)).await
}

/// Loads every column of a video.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn video_detail<S: Sql>(sql: &S, id: &str) -> Result<Option<VideoDetailRow>, StoreError> {
    sql.query_one(&Statement::new(
        "SELECT v.id, v.channel_id, c.name AS channel_name, v.broadcast_id, v.owner_id, \
         v.status, v.visibility, v.title, v.description, v.tags, v.metadata, v.duration_ms, \
         v.width, v.height, v.size_bytes, v.mp4_key, v.poster_key, v.reject_reason, \
         v.created_at, v.updated_at \
         FROM videos v LEFT JOIN channels c ON c.id = v.channel_id WHERE v.id = ?1",
        vec![SqlValue::from(id)],
    ))
    .await
}

/// One `video_events` row.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VideoEvent {
    /// Row id (insertion order).
    pub id: i64,
    /// What happened (`broadcast.ended`, `plugin.preValidate`, ...).
    pub kind: String,
    /// Details, as stored JSON text.
    pub detail: String,
    /// When, Unix ms.
    pub created_at: i64,
}

/// The history of a video, oldest first.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn history<S: Sql>(sql: &S, video_id: &str) -> Result<Vec<VideoEvent>, StoreError> {
    sql.query_as(&Statement::new(
        "SELECT id, kind, detail, created_at FROM video_events WHERE video_id = ?1 \
         ORDER BY created_at, id",
        vec![SqlValue::from(video_id)],
    ))
    .await
}

/// Removes a video's catalogue rows in one batch: its events, plugin tasks, lifecycle, view
/// sessions and view count first (for the foreign keys), then the video.
///
/// # Errors
/// `Backend` when the batch fails; nothing is removed then.
pub async fn delete_video<S: Sql>(sql: &S, video_id: &str) -> Result<(), StoreError> {
    let statements: Vec<Statement> = [
        "DELETE FROM video_events WHERE video_id = ?1",
        "DELETE FROM plugin_tasks WHERE video_id = ?1",
        "DELETE FROM lifecycles WHERE video_id = ?1",
        "DELETE FROM view_sessions WHERE scope = ?1",
        "DELETE FROM scope_views WHERE scope = ?1",
        "DELETE FROM videos WHERE id = ?1",
    ]
    .into_iter()
    .map(|text| Statement::new(text, vec![SqlValue::from(video_id)]))
    .collect();
    sql.batch(&statements).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_a_bound_like_pattern() {
        assert_eq!(like_pattern(" cats "), "%cats%");
        assert_eq!(like_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
        let filter = ListFilter {
            q: Some("'; DROP TABLE videos; --"),
            ..ListFilter::default()
        };
        let statement = list_statement(&filter, None, 21);
        assert_eq!(statement.sql, LIST_SQL, "the SQL text never changes");
        assert_eq!(
            statement.params[5],
            SqlValue::Text("%'; DROP TABLE videos; --%".into())
        );
    }
}

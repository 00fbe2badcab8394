//! The catalogue: who sees which videos, newest-first listings with filters and free-text
//! search, keyset paging with tamper-evident cursors, video detail with the metadata merged
//! from plugins, a video's history, deletion with its media, and the hot lists cached in KV.
//!
//! The statements are [`crate::store::catalogue`]'s: fixed SQL text where filters and search
//! strings are bound as parameters, never spliced into SQL. Paging is keyset paging on
//! `(created_at, id)` descending, so pages neither repeat nor skip videos while new ones
//! arrive (new videos are newer than every cursor handed out before).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, StoreError};
use crate::model::video::{Video, VideoStatus};
use crate::ports::{Blobs, Kv, Sql};
use crate::services::videos;
use crate::store::catalogue::{
    self as store, CatalogueColumns, ListFilter, Position, VideoDetailRow, VideoRow,
};

/// Videos per page when the request does not say.
pub const DEFAULT_LIMIT: u32 = 20;
/// Most videos (or channels) per page.
pub const MAX_LIMIT: u32 = 100;
/// Videos in the unauthenticated preview.
pub const PREVIEW_SIZE: u32 = 12;
/// How long a cached hot list may be served, in seconds (also the bound on staleness when an
/// invalidation is missed; Workers KV's minimum).
pub const HOT_TTL_S: u64 = 60;
/// KV key of the cached preview.
pub const PREVIEW_CACHE_KEY: &str = "cache/catalogue/preview";
/// KV key of the cached first page of the anonymous listing.
pub const FIRST_PAGE_CACHE_KEY: &str = "cache/catalogue/first-page";
/// The statuses a video may have.
pub const STATUSES: [&str; 5] = ["processing", "ready", "published", "rejected", "failed"];

const CURSOR_DOMAIN: &[u8] = b"edgevideo/cursor/v1\n";

/// Why catalogue input was refused. Every variant is a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    /// The cursor was not issued by us, was altered, or belongs to other filters.
    #[error("the cursor is invalid: {0}")]
    InvalidCursor(&'static str),
    /// `limit` is not a number from 1 to [`MAX_LIMIT`].
    #[error("limit must be a whole number from 1 to {MAX_LIMIT}")]
    InvalidLimit,
    /// `status` is not one of [`STATUSES`].
    #[error("status must be one of processing, ready, published, rejected, failed")]
    InvalidStatus,
    /// A filter value is empty or too long.
    #[error("{0}")]
    InvalidFilter(String),
}

impl From<CatalogueError> for ApiError {
    fn from(err: CatalogueError) -> Self {
        let code = match err {
            CatalogueError::InvalidCursor(_) => "invalid_cursor",
            CatalogueError::InvalidLimit => "invalid_limit",
            CatalogueError::InvalidStatus => "invalid_status",
            CatalogueError::InvalidFilter(_) => "invalid_filter",
        };
        ApiError::bad_request(code, err.to_string())
    }
}

/// Who is asking: decides which videos are visible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// The signed-in user, if any.
    pub user_id: Option<String>,
    /// Whether the stored role is admin (sees everything).
    pub admin: bool,
}

impl Viewer {
    /// Whether this viewer may see `video` (owner id, status, visibility): published public
    /// videos for everyone, every video for its owner and for admins.
    pub fn may_see(&self, owner_id: &str, status: &str, visibility: &str) -> bool {
        self.admin
            || self.user_id.as_deref() == Some(owner_id)
            || (status == "published" && visibility == "public")
    }

    /// Whether this viewer may change or delete a video owned by `owner_id`.
    pub fn may_manage(&self, owner_id: &str) -> bool {
        self.admin || self.user_id.as_deref() == Some(owner_id)
    }
}

/// Filters of a video listing; all of them must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VideoFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this channel's videos.
    pub channel_id: Option<String>,
    /// Only videos carrying this tag (exact match).
    pub tag: Option<String>,
    /// Free text, matched case-insensitively (ASCII) inside title, description and tags.
    pub q: Option<String>,
    /// Only this owner's videos.
    pub owner_id: Option<String>,
}

impl VideoFilter {
    /// Checks the filter values.
    ///
    /// # Errors
    /// [`CatalogueError::InvalidStatus`] for an unknown status, `InvalidFilter` for empty or
    /// over-long values.
    pub fn validate(&self) -> Result<(), CatalogueError> {
        if let Some(status) = &self.status {
            if !STATUSES.contains(&status.as_str()) {
                return Err(CatalogueError::InvalidStatus);
            }
        }
        for (name, value, max) in [
            ("tag", &self.tag, 100),
            ("q", &self.q, 200),
            ("channel", &self.channel_id, 80),
        ] {
            if let Some(value) = value {
                if value.trim().is_empty() || value.chars().count() > max {
                    return Err(CatalogueError::InvalidFilter(format!(
                        "{name} must have 1 to {max} characters"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A short digest of the filters and the viewer, bound into cursors so that a cursor
    /// only continues the listing it came from.
    pub fn fingerprint(&self, viewer: &Viewer) -> String {
        let canonical = json!({
            "filter": self,
            "viewer": viewer.user_id,
            "admin": viewer.admin,
        });
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        URL_SAFE_NO_PAD.encode(&digest[..9])
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        *self == VideoFilter::default()
    }
}

#[derive(Serialize, Deserialize)]
struct CursorBody {
    /// `created_at` of the position.
    #[serde(rename = "t")]
    created_at: i64,
    /// `id` of the position.
    #[serde(rename = "i")]
    id: String,
    /// The listing's fingerprint.
    #[serde(rename = "f")]
    fingerprint: String,
}

fn cursor_mac(key: &[u8], payload: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(CURSOR_DOMAIN);
    mac.update(payload.as_bytes());
    mac
}

/// Encodes `position` of the listing `fingerprint` as an opaque cursor:
/// `base64url(json).base64url(HMAC-SHA256)`.
pub fn encode_cursor(position: &Position, fingerprint: &str, key: &[u8]) -> String {
    let body = CursorBody {
        created_at: position.created_at,
        id: position.id.clone(),
        fingerprint: fingerprint.to_owned(),
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default());
    let tag = cursor_mac(key, &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Decodes a cursor issued by [`encode_cursor`] for the listing `fingerprint`.
///
/// # Errors
/// [`CatalogueError::InvalidCursor`] when it is malformed, its signature does not verify
/// (compared in constant time), or it belongs to another listing.
pub fn decode_cursor(raw: &str, fingerprint: &str, key: &[u8]) -> Result<Position, CatalogueError> {
    if raw.len() > 512 {
        return Err(CatalogueError::InvalidCursor("too long"));
    }
    let (payload, tag) = raw
        .split_once('.')
        .ok_or(CatalogueError::InvalidCursor("malformed"))?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| CatalogueError::InvalidCursor("malformed"))?;
    cursor_mac(key, payload)
        .verify_slice(&tag)
        .map_err(|_| CatalogueError::InvalidCursor("signature does not verify"))?;
    let body: CursorBody = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(CatalogueError::InvalidCursor("malformed"))?;
    if body.fingerprint != fingerprint {
        return Err(CatalogueError::InvalidCursor(
            "it belongs to a listing with other filters",
        ));
    }
    Ok(Position {
        created_at: body.created_at,
        id: body.id,
    })
}

/// Parses a `limit` parameter.
///
/// # Errors
/// [`CatalogueError::InvalidLimit`] unless it is a whole number from 1 to `max`.
pub fn parse_limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, CatalogueError> {
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or(CatalogueError::InvalidLimit),
    }
}

/// What a listing and a detail both show of a video: its stored columns, tags parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VideoSummary {
    /// Identifier (`vid_...`).
    pub id: String,
    /// The channel it was broadcast on.
    pub channel_id: String,
    /// The channel's name (null once the channel is gone).
    pub channel_name: Option<String>,
    /// The channel's owner.
    pub owner_id: String,
    /// Where it is in its life.
    pub status: VideoStatus,
    /// `public` or `private`.
    pub visibility: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Tags.
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub tags: Value,
    /// Duration in ms, when known.
    pub duration_ms: Option<i64>,
    /// Width in pixels, once transcoded.
    pub width: Option<i64>,
    /// Height in pixels, once transcoded.
    pub height: Option<i64>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

impl VideoSummary {
    /// The summary of a video's stored columns and what the catalogue shows besides.
    pub fn new(video: &Video, shown: &CatalogueColumns) -> Self {
        VideoSummary {
            id: video.id.clone(),
            channel_id: video.channel_id.clone(),
            channel_name: shown.channel_name.clone(),
            owner_id: video.owner_id.clone(),
            status: video.status,
            visibility: video.visibility.clone(),
            title: video.title.clone(),
            description: shown.description.clone(),
            tags: parse_json_or(&shown.tags, json!([])),
            duration_ms: video.duration_ms,
            width: shown.width,
            height: shown.height,
            created_at: video.created_at,
            updated_at: shown.updated_at,
        }
    }
}

/// A video in a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VideoCard {
    /// What every view of a video shows.
    #[serde(flatten)]
    pub video: VideoSummary,
    /// Whether a poster exists.
    pub has_poster: bool,
    /// Views counted: one per viewer session that played it, ever.
    pub views: i64,
    /// A signed URL of the poster, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
}

impl From<&VideoRow> for VideoCard {
    fn from(row: &VideoRow) -> Self {
        VideoCard {
            video: VideoSummary::new(&row.video, &row.shown),
            has_poster: row.video.poster_key.is_some(),
            views: row.views.unwrap_or(0),
            poster_url: None,
        }
    }
}

/// A video's detail: the stored columns with tags and metadata parsed, and the transcript
/// (text or URL) lifted out of the metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VideoDetail {
    /// What every view of a video shows.
    #[serde(flatten)]
    pub video: VideoSummary,
    /// The broadcast it records.
    pub broadcast_id: Option<String>,
    /// Metadata merged from plugins.
    #[cfg_attr(feature = "schema", schemars(with = "serde_json::Map<String, Value>"))]
    pub metadata: Value,
    /// `metadata.transcript`, if any.
    pub transcript: Value,
    /// `metadata.transcript_url`, if any.
    pub transcript_url: Value,
    /// Size of the MP4 in bytes, once transcoded.
    pub size_bytes: Option<i64>,
    /// Whether the MP4 exists.
    pub has_mp4: bool,
    /// Whether the poster exists.
    pub has_poster: bool,
    /// Why a plugin rejected it.
    pub reject_reason: Option<String>,
    /// Whether the caller may change or delete it.
    pub may_manage: bool,
}

impl VideoDetail {
    /// The detail of `row` for a caller who may (or may not) manage it.
    pub fn new(row: &VideoDetailRow, may_manage: bool) -> Self {
        let metadata = parse_json_or(&row.metadata, json!({}));
        let transcript = metadata.get("transcript").cloned().unwrap_or(Value::Null);
        let transcript_url = metadata
            .get("transcript_url")
            .cloned()
            .unwrap_or(Value::Null);
        VideoDetail {
            video: VideoSummary::new(&row.video, &row.shown),
            broadcast_id: row.video.broadcast_id.clone(),
            metadata,
            transcript,
            transcript_url,
            size_bytes: row.size_bytes,
            has_mp4: row.video.mp4_key.is_some(),
            has_poster: row.video.poster_key.is_some(),
            reject_reason: row.reject_reason.clone(),
            may_manage,
        }
    }
}

/// One entry of a video's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HistoryEvent {
    /// Insertion order.
    pub id: i64,
    /// What happened (`broadcast.ended`, `plugin.preValidate`, ...).
    pub kind: String,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Details: the stored JSON, or its text when it is not JSON.
    pub detail: Value,
}

fn position(row: &VideoRow) -> Position {
    Position {
        created_at: row.video.created_at,
        id: row.video.id.clone(),
    }
}

fn parse_json_or(text: &str, fallback: Value) -> Value {
    serde_json::from_str(text).unwrap_or(fallback)
}

/// The store's listing filter for `viewer` and `filter` (text values trimmed).
fn list_filter<'a>(viewer: &'a Viewer, filter: &'a VideoFilter) -> ListFilter<'a> {
    let text = |v: &'a Option<String>| v.as_deref().map(str::trim);
    ListFilter {
        admin: viewer.admin,
        user_id: viewer.user_id.as_deref(),
        status: text(&filter.status),
        channel_id: text(&filter.channel_id),
        tag: text(&filter.tag),
        q: filter.q.as_deref(),
        owner_id: text(&filter.owner_id),
    }
}

/// One page of a newest-first listing and the position after it, if there is more.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn list_videos<S: Sql>(
    sql: &S,
    viewer: &Viewer,
    filter: &VideoFilter,
    after: Option<&Position>,
    limit: u32,
) -> Result<(Vec<VideoRow>, Option<Position>), StoreError> {
    let mut rows = store::list(sql, &list_filter(viewer, filter), after, limit + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(position)
    } else {
        None
    };
    Ok((rows, next))
}

/// The history of a video, oldest first: every `video_events` row with its detail parsed.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn history<S: Sql>(sql: &S, video_id: &str) -> Result<Vec<HistoryEvent>, StoreError> {
    let rows = store::history(sql, video_id).await?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryEvent {
            id: r.id,
            kind: r.kind,
            at_ms: r.created_at,
            detail: parse_json_or(&r.detail, Value::String(r.detail.clone())),
        })
        .collect())
}

/// Deletes a video's media: its recording's segments (`live/{channel}/{broadcast}/`), its
/// MP4 and poster, and anything else under `videos/{id}/`. Returns the keys that went.
/// Deleting twice is harmless.
///
/// # Errors
/// `Backend` when the blob store fails; nothing in the catalogue has changed yet then.
pub async fn delete_media<B: Blobs>(
    blobs: &B,
    video: &VideoDetailRow,
) -> Result<Vec<String>, StoreError> {
    let mut keys: Vec<String> = Vec::new();
    if let Some(broadcast_id) = &video.video.broadcast_id {
        keys.extend(
            blobs
                .list(&format!("live/{}/{broadcast_id}/", video.video.channel_id))
                .await?,
        );
    }
    keys.extend(blobs.list(&videos::files_prefix(&video.video.id)).await?);
    keys.extend(video.video.mp4_key.iter().cloned());
    keys.extend(video.video.poster_key.iter().cloned());
    keys.sort();
    keys.dedup();
    for key in &keys {
        blobs.delete(key).await?;
    }
    Ok(keys)
}

/// Drops the cached hot lists; call after any change to what they show (a video published,
/// changed or deleted).
///
/// # Errors
/// `Backend` when KV fails.
pub async fn invalidate<K: Kv>(kv: &K) -> Result<(), StoreError> {
    kv.delete(PREVIEW_CACHE_KEY).await?;
    kv.delete(FIRST_PAGE_CACHE_KEY).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SqlValue;

    const KEY: &[u8] = b"test-key-test-key-test-key-12345";

    fn position() -> Position {
        Position {
            created_at: 1_700_000_000_123,
            id: "vid_abcdefgh12345678".into(),
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let cursor = encode_cursor(&position(), "fp1", KEY);
        assert_eq!(decode_cursor(&cursor, "fp1", KEY).unwrap(), position());

        // Another listing's filters, another key, a flipped character, garbage: all refused.
        assert!(matches!(
            decode_cursor(&cursor, "fp2", KEY),
            Err(CatalogueError::InvalidCursor(_))
        ));
        assert!(decode_cursor(&cursor, "fp1", b"another-key-another-key-123456789").is_err());
        let (payload, tag) = cursor.split_once('.').unwrap();
        let forged_body =
            URL_SAFE_NO_PAD.encode(br#"{"t":9999999999999,"i":"vid_zzzzzzzzzzzzzzzz","f":"fp1"}"#);
        assert!(decode_cursor(&format!("{forged_body}.{tag}"), "fp1", KEY).is_err());
        let mut flipped = payload.as_bytes().to_vec();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
        assert!(decode_cursor(&flipped, "fp1", KEY).is_err());
        for bad in ["", ".", "abc", "a.b", &"x".repeat(600)] {
            assert!(decode_cursor(bad, "fp1", KEY).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_depend_on_filters_and_viewer() {
        let anonymous = Viewer::default();
        let user = Viewer {
            user_id: Some("usr_1".into()),
            admin: false,
        };
        let all = VideoFilter::default();
        let tagged = VideoFilter {
            tag: Some("cats".into()),
            ..VideoFilter::default()
        };
        assert_eq!(all.fingerprint(&anonymous), all.fingerprint(&anonymous));
        assert_ne!(all.fingerprint(&anonymous), tagged.fingerprint(&anonymous));
        assert_ne!(all.fingerprint(&anonymous), all.fingerprint(&user));
    }

    #[test]
    fn limits_and_filters_are_checked() {
        assert_eq!(parse_limit(None, 20, 100), Ok(20));
        assert_eq!(parse_limit(Some("5"), 20, 100), Ok(5));
        for bad in ["0", "101", "-1", "x", "1.5", ""] {
            assert_eq!(
                parse_limit(Some(bad), 20, 100),
                Err(CatalogueError::InvalidLimit)
            );
        }
        let bad_status = VideoFilter {
            status: Some("deleted".into()),
            ..VideoFilter::default()
        };
        assert_eq!(bad_status.validate(), Err(CatalogueError::InvalidStatus));
        let blank = VideoFilter {
            q: Some("  ".into()),
            ..VideoFilter::default()
        };
        assert!(matches!(
            blank.validate(),
            Err(CatalogueError::InvalidFilter(_))
        ));
    }

    #[test]
    fn listings_bind_trimmed_filters_into_one_fixed_statement() {
        let viewer = Viewer {
            user_id: Some("usr_1".into()),
            admin: false,
        };
        let filter = VideoFilter {
            tag: Some(" cats ".into()),
            q: Some(" dogs ".into()),
            ..VideoFilter::default()
        };
        let bound = store::list_statement(&list_filter(&viewer, &filter), None, 21);
        let plain = store::list_statement(
            &list_filter(&Viewer::default(), &VideoFilter::default()),
            None,
            21,
        );
        assert_eq!(bound.sql, plain.sql, "the SQL text never changes");
        assert_eq!(bound.params[1], SqlValue::Text("usr_1".into()));
        assert_eq!(bound.params[4], SqlValue::Text("cats".into()));
        assert_eq!(bound.params[5], SqlValue::Text("%dogs%".into()));
        assert_eq!(plain.params[4], SqlValue::Null);
    }

    #[test]
    fn visibility_rules() {
        let anonymous = Viewer::default();
        let owner = Viewer {
            user_id: Some("usr_o".into()),
            admin: false,
        };
        let admin = Viewer {
            user_id: Some("usr_a".into()),
            admin: true,
        };
        assert!(anonymous.may_see("usr_o", "published", "public"));
        assert!(!anonymous.may_see("usr_o", "ready", "public"));
        assert!(!anonymous.may_see("usr_o", "published", "private"));
        assert!(owner.may_see("usr_o", "rejected", "private"));
        assert!(admin.may_see("usr_o", "processing", "public"));
        assert!(owner.may_manage("usr_o") && admin.may_manage("usr_o"));
        assert!(!anonymous.may_manage("usr_o"));
    }
}

//! Catalogue routes: video listings (all, by channel, by tag, search, by status) with cursor
//! paging, the unauthenticated preview, video detail, history and deletion, and the channel
//! list with live status and viewer counts. The rules live in [`crate::services::catalogue`].

use http::header::HeaderName;
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::api::auth;
use crate::api::links;
use crate::api::routes::{channels, play};
use crate::api::{self, Request, Response};
use crate::error::ApiError;
use crate::model::ids;
use crate::model::role::{Principal, Role};
use crate::model::room::{RoomRequest, RoomResponse, LOBBY};
use crate::model::video::VideoStatus;
use crate::ports::{Kv as _, Live as _, Platform};
use crate::services::catalogue::{
    self, HistoryEvent, VideoCard, VideoDetail, VideoFilter, Viewer, DEFAULT_LIMIT,
    FIRST_PAGE_CACHE_KEY, HOT_TTL_S, MAX_LIMIT, PREVIEW_CACHE_KEY, PREVIEW_SIZE,
};
use crate::store::catalogue::{self as store_catalogue, Position, VideoDetailRow, VideoRow};
use crate::store::channels::{self as store_channels, Channel};
use crate::store::users;

/// Response header saying whether a hot list came from the KV cache (`hit`) or not (`miss`).
pub const CACHE_HEADER: &str = "x-edgevideo-cache";
/// Most channels per page.
const MAX_CHANNELS: u32 = 50;

/// A page of a video listing.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VideoPage {
    /// Newest first.
    pub videos: Vec<VideoCard>,
    /// Continues the same listing; null on the last page.
    pub next_cursor: Option<String>,
}

/// The newest published videos.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PreviewPage {
    /// Newest first.
    pub videos: Vec<VideoCard>,
}

/// A video's timeline.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct History {
    /// The video.
    pub video_id: String,
    /// Its status now.
    pub status: VideoStatus,
    /// Everything that happened to it, oldest first.
    pub events: Vec<HistoryEvent>,
}

/// A deleted video.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeletedVideo {
    /// The video.
    pub deleted: String,
    /// How many media objects were removed.
    pub objects_removed: usize,
}

/// A page of the channel list.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChannelPage {
    /// Newest first.
    pub channels: Vec<channels::ListedChannel>,
    /// Continues the same listing; null on the last page (and with `live=true`).
    pub next_cursor: Option<String>,
}

/// Decodes `%XX` escapes and `+` (form encoding) of one query component.
fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("invalid_query", "bad percent-encoding in the query")
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad_request("invalid_query", "the query is not UTF-8"))
}

/// The request's query parameters, decoded, in order.
///
/// # Errors
/// 400 `invalid_query` on bad percent-encoding or non-UTF-8 text.
pub fn query_params(request: &Request) -> Result<Vec<(String, String)>, ApiError> {
    let Some(query) = request.uri().query() else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name)?, percent_decode(value)?))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn flag(params: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match param(params, name) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "invalid_filter",
            format!("{name} must be true or false"),
        )),
    }
}

/// The caller as the catalogue sees it: anonymous, a user, or an admin by the stored role
/// (a revoked admin stops seeing everything at once).
///
/// # Errors
/// What the catalogue reports.
pub async fn viewer<P: Platform>(
    p: &P,
    request: &Request,
) -> Result<(Viewer, Option<Principal>), ApiError> {
    let Some(principal) = auth::optional_principal(p, request).await? else {
        return Ok((Viewer::default(), None));
    };
    let Some(user) = users::by_id(p.sql(), &principal.user_id).await? else {
        return Ok((Viewer::default(), None));
    };
    let viewer = Viewer {
        user_id: Some(user.id.clone()),
        admin: user.role == Role::Admin,
    };
    Ok((viewer, Some(principal)))
}

fn with_cache_header(mut response: Response, hit: bool) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(CACHE_HEADER),
        HeaderValue::from_static(if hit { "hit" } else { "miss" }),
    );
    response
}

/// A JSON body served from the KV cache under `key`, or built by `build` and cached.
async fn cached<P: Platform, T: Serialize>(
    p: &P,
    key: &str,
    build: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<Response, ApiError> {
    if let Some(bytes) = p.kv().get(key).await? {
        if serde_json::from_slice::<Value>(&bytes).is_ok() {
            let response = api::with_body(StatusCode::OK, "application/json", bytes);
            return Ok(with_cache_header(response, true));
        }
    }
    let body = build.await?;
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    p.kv().put(key, &bytes, Some(HOT_TTL_S)).await?;
    Ok(with_cache_header(
        api::with_body(StatusCode::OK, "application/json", bytes),
        false,
    ))
}

/// The listing's cards of `rows`, each with a signed `poster_url` once it has a poster.
fn cards<P: Platform>(p: &P, rows: &[VideoRow]) -> Vec<VideoCard> {
    rows.iter()
        .map(|row| {
            let mut card = VideoCard::from(row);
            if card.has_poster {
                card.poster_url = Some(links::poster_url(p, &row.video.id, &row.video.channel_id));
            }
            card
        })
        .collect()
}

async fn page<P: Platform>(
    p: &P,
    viewer: &Viewer,
    filter: &VideoFilter,
    params: &[(String, String)],
) -> Result<VideoPage, ApiError> {
    filter.validate()?;
    let limit = catalogue::parse_limit(param(params, "limit"), DEFAULT_LIMIT, MAX_LIMIT)?;
    let key = p.config().url_signing_secret.as_bytes();
    let fingerprint = filter.fingerprint(viewer);
    let after = param(params, "cursor")
        .map(|c| catalogue::decode_cursor(c, &fingerprint, key))
        .transpose()?;
    let (rows, next) =
        catalogue::list_videos(p.sql(), viewer, filter, after.as_ref(), limit).await?;
    Ok(VideoPage {
        videos: cards(p, &rows),
        next_cursor: next.map(|n: Position| catalogue::encode_cursor(&n, &fingerprint, key)),
    })
}

fn filter_from(
    params: &[(String, String)],
    principal: Option<&Principal>,
) -> Result<VideoFilter, ApiError> {
    let text = |name: &str| param(params, name).map(str::to_owned);
    let owner_id = if flag(params, "mine")? {
        Some(
            principal
                .ok_or_else(|| ApiError::Unauthorized("sign in to list your own videos".into()))?
                .user_id
                .clone(),
        )
    } else {
        None
    };
    Ok(VideoFilter {
        status: text("status"),
        channel_id: text("channel"),
        tag: text("tag"),
        q: text("q"),
        owner_id,
    })
}

/// `GET /api/videos?status=&channel=&tag=&q=&mine=&limit=&cursor=`: videos newest first.
/// Anonymous callers and viewers see published public videos; signed-in users also see all
/// of their own; admins see everything. `next_cursor` continues the same listing.
pub async fn list_videos<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let params = query_params(request)?;
    let (viewer, principal) = viewer(p, request).await?;
    let filter = filter_from(&params, principal.as_ref())?;
    let hot = principal.is_none() && filter.is_empty() && params.is_empty();
    if hot {
        let empty = VideoFilter::default();
        return cached(
            p,
            FIRST_PAGE_CACHE_KEY,
            page(p, &Viewer::default(), &empty, &[]),
        )
        .await;
    }
    let body = page(p, &viewer, &filter, &params).await?;
    Ok(api::json(StatusCode::OK, &body))
}

/// `GET /api/channels/{id}/videos`: the channel's videos, with the same filters and paging
/// as [`list_videos`].
pub async fn channel_videos<P: Platform>(
    p: &P,
    id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let channel = channels::load(p, id).await?;
    let params = query_params(request)?;
    let (viewer, principal) = viewer(p, request).await?;
    let mut filter = filter_from(&params, principal.as_ref())?;
    filter.channel_id = Some(channel.id);
    let body = page(p, &viewer, &filter, &params).await?;
    Ok(api::json(StatusCode::OK, &body))
}

/// `GET /api/videos/preview`: the newest published videos, for anyone (cached in KV).
pub async fn preview<P: Platform>(p: &P) -> Result<Response, ApiError> {
    cached(p, PREVIEW_CACHE_KEY, async {
        let filter = VideoFilter {
            status: Some("published".into()),
            ..VideoFilter::default()
        };
        let (rows, _) =
            catalogue::list_videos(p.sql(), &Viewer::default(), &filter, None, PREVIEW_SIZE)
                .await?;
        Ok(PreviewPage {
            videos: cards(p, &rows),
        })
    })
    .await
}

async fn visible_video<P: Platform>(
    p: &P,
    viewer: &Viewer,
    id: &str,
) -> Result<VideoDetailRow, ApiError> {
    let not_found = || ApiError::NotFound(format!("no video {id}"));
    if !ids::is_id(id, "vid") {
        return Err(not_found());
    }
    let row = store_catalogue::video_detail(p.sql(), id)
        .await?
        .ok_or_else(not_found)?;
    // Videos the caller may not see do not exist for them.
    let video = &row.video;
    if !viewer.may_see(&video.owner_id, video.status.as_str(), &video.visibility) {
        return Err(not_found());
    }
    Ok(row)
}

/// `GET /api/videos/{id}`: the video with its tags, metadata merged from plugins and
/// transcript; 404 for videos the caller may not see.
pub async fn get_video<P: Platform>(
    p: &P,
    id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (viewer, _) = viewer(p, request).await?;
    let row = visible_video(p, &viewer, id).await?;
    let body = VideoDetail::new(&row, viewer.may_manage(&row.video.owner_id));
    Ok(api::json(StatusCode::OK, &body))
}

/// `GET /api/videos/{id}/history`: everything that happened to the video, oldest first
/// (broadcast, transcode, each plugin task with hook, result and latency, status changes).
pub async fn history<P: Platform>(
    p: &P,
    id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (viewer, _) = viewer(p, request).await?;
    let row = visible_video(p, &viewer, id).await?;
    let events = catalogue::history(p.sql(), &row.video.id).await?;
    Ok(api::json(
        StatusCode::OK,
        &History {
            video_id: row.video.id,
            status: row.video.status,
            events,
        },
    ))
}

/// `DELETE /api/videos/{id}` (the owner or an admin): removes the video's media (segments,
/// MP4, poster) and then its catalogue rows; 403 for anyone else, with nothing removed.
pub async fn delete_video<P: Platform>(
    p: &P,
    id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (viewer, principal) = viewer(p, request).await?;
    if principal.is_none() {
        return Err(ApiError::Unauthorized("a session token is required".into()));
    }
    if !ids::is_id(id, "vid") {
        return Err(ApiError::NotFound(format!("no video {id}")));
    }
    let row = store_catalogue::video_detail(p.sql(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no video {id}")))?;
    let video = &row.video;
    if !viewer.may_manage(&video.owner_id) {
        if viewer.may_see(&video.owner_id, video.status.as_str(), &video.visibility) {
            return Err(ApiError::Forbidden(
                "only the video's owner or an admin may delete it".into(),
            ));
        }
        return Err(ApiError::NotFound(format!("no video {id}")));
    }
    let removed = catalogue::delete_media(p.blobs(), &row).await?;
    play::purge_video(p, request, &row, &removed).await;
    store_catalogue::delete_video(p.sql(), &row.video.id).await?;
    catalogue::invalidate(p.kv()).await?;
    Ok(api::json(
        StatusCode::OK,
        &DeletedVideo {
            deleted: row.video.id.clone(),
            objects_removed: removed.len(),
        },
    ))
}

/// `GET /api/channels?live=&mine=&limit=&cursor=`: channels newest first with their live
/// status and viewer count; `live=true` lists only the channels live now (no paging).
pub async fn list_channels<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let params = query_params(request)?;
    let (viewer, principal) = viewer(p, request).await?;
    let owner = if flag(&params, "mine")? {
        Some(
            principal
                .ok_or_else(|| ApiError::Unauthorized("sign in to list your own channels".into()))?
                .user_id,
        )
    } else {
        None
    };
    let limit = catalogue::parse_limit(param(&params, "limit"), DEFAULT_LIMIT, MAX_CHANNELS)?;
    let key = p.config().url_signing_secret.as_bytes();
    // Channel cursors are bound to the owner filter, like video cursors to theirs.
    let fingerprint = VideoFilter {
        owner_id: owner.clone(),
        status: Some("channels".into()),
        ..VideoFilter::default()
    }
    .fingerprint(&viewer);
    let (listed, next) = if flag(&params, "live")? {
        (live_channels(p, owner.as_deref()).await?, None)
    } else {
        let after = param(&params, "cursor")
            .map(|c| catalogue::decode_cursor(c, &fingerprint, key))
            .transpose()?;
        let mut rows =
            store_channels::page(p.sql(), owner.as_deref(), after.as_ref(), limit + 1).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = rows.last().filter(|_| more).map(|c| Position {
            created_at: c.created_at,
            id: c.id.clone(),
        });
        (rows, next)
    };
    let mut out = Vec::with_capacity(listed.len());
    for channel in listed {
        let status = channels::status(p, &channel.id).await?;
        out.push(channels::listed_channel(
            channel,
            status.live,
            status.viewers,
        ));
    }
    let next_cursor = next.map(|n| catalogue::encode_cursor(&n, &fingerprint, key));
    Ok(api::json(
        StatusCode::OK,
        &ChannelPage {
            channels: out,
            next_cursor,
        },
    ))
}

/// The channels live now (from the lobby), newest first, optionally only `owner`'s.
async fn live_channels<P: Platform>(p: &P, owner: Option<&str>) -> Result<Vec<Channel>, ApiError> {
    let RoomResponse::Lobby {
        channels: entries, ..
    } = p.live().call(LOBBY, &RoomRequest::LobbyList).await?
    else {
        return Err(ApiError::Internal("unexpected lobby answer".into()));
    };
    let mut listed = Vec::new();
    for entry in entries {
        if let Some(channel) = store_channels::by_id(p.sql(), &entry.channel_id).await? {
            if owner.is_none_or(|o| o == channel.owner_id) {
                listed.push(channel);
            }
        }
    }
    listed.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        http::Request::builder().uri(uri).body(Vec::new()).unwrap()
    }

    #[test]
    fn query_parameters_are_decoded() {
        let params = query_params(&request("/api/videos?q=hello+w%C3%B6rld&tag=a%26b&x")).unwrap();
        assert_eq!(param(&params, "q"), Some("hello wörld"));
        assert_eq!(param(&params, "tag"), Some("a&b"));
        assert_eq!(param(&params, "x"), Some(""));
        assert!(query_params(&request("/api/videos?q=%zz")).is_err());
        assert!(query_params(&request("/api/videos?q=%ff")).is_err());
    }

    #[test]
    fn mine_needs_a_signed_in_caller() {
        let params = query_params(&request("/api/videos?mine=true")).unwrap();
        assert!(matches!(
            filter_from(&params, None),
            Err(ApiError::Unauthorized(_))
        ));
        let params = query_params(&request("/api/videos?mine=maybe")).unwrap();
        assert!(matches!(
            filter_from(&params, None),
            Err(ApiError::BadRequest { .. })
        ));
    }
}

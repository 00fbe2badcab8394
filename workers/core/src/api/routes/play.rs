//! The routes signed playback URLs lead to (`/play/{token}/...`): the live playlist built
//! from the room's window, the VOD playlist of a recording, segments and MP4s from the blob
//! store with Range support and long caching, posters and thumbnails.
//!
//! Every route verifies its token (no I/O), then reads through the edge cache under a key
//! without the token ([`edge_cache::get_or_fill`]): viewers with different tokens share one
//! cached object, and a hit touches neither the catalogue, the room nor the blob store.
//!
//! Low latency: where rooms hold requests ([`Live::HOLDS`]), a rendition with parts is
//! served as a low-latency playlist ([`llhls`]); a blocking reload (`_HLS_msn`, `_HLS_part`)
//! is cached under its own key, so one room call per location answers every viewer waiting
//! for that part, and a request for the hinted next part gets its bytes as the pusher
//! sends them ([`growing`]).

use http::header::{ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use http::{HeaderValue, StatusCode};

use crate::api::chunked::{ChunkedBody, CHUNK_BYTES};
use crate::api::edge::{cache_key, from_cache};
use crate::api::growing::{self, GrowingPart};
use crate::api::{self, Request, Response};
use crate::error::ApiError;
use crate::model::hls::{self, ListedSegment, PLAYLIST_CONTENT_TYPE};
use crate::model::ids;
use crate::model::llhls::{self, BlockingReload, PartName};
use crate::model::room::{Block, LiveWindow, RoomRequest, RoomResponse};
use crate::model::signed_url::{Scope, UrlToken};
use crate::ports::{Blobs as _, CachedObject, EdgeCache as _, Live, Platform};
use crate::services::edge_cache;
use crate::services::videos;
use crate::store::catalogue::VideoDetailRow;

use super::playback::now_s;

/// Cache policy of segments and MP4s: they never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of live playlists: they change every segment.
const LIVE_PLAYLIST: &str = "public, max-age=1";
/// Cache policy of low-latency playlists: they change every part (and a blocking reload
/// answered when its hold ran out must not be kept for the same URL).
const LOW_LATENCY_PLAYLIST: &str = "no-cache";
/// How long a room holds a blocking reload or a request for the next part, in ms.
const HOLD_MS: u64 = 4_000;
/// How long a blocking reload's answer that holds what it asked for stays in the edge
/// cache (it stays a right answer to that reload).
const BLOCKED_TTL_MS: u64 = 10_000;
/// Cache-Control of a live channel's thumbnail.
const THUMBNAIL: &str = "public, max-age=10";
/// How long a thumbnail stays in the edge cache (the page sends one about every 10 s).
const THUMBNAIL_TTL_MS: u64 = 10_000;
/// Cache policy of VOD playlists: fixed once the broadcast ended.
const VOD_PLAYLIST: &str = "public, max-age=3600";
/// How long segments and MP4 chunks stay in the edge cache: they never change.
const IMMUTABLE_TTL_MS: u64 = 365 * 24 * 3600 * 1000;
/// How long VOD playlists, posters and MP4 sizes stay in the edge cache. They change only
/// when the video is deleted; a deletion purges them where it ran ([`purge_video`]) and
/// elsewhere they expire within this time. They gate the immutable MP4 chunks (read only
/// after the size) and, for players, the segments (listed only by the playlist).
const VOD_PLAYLIST_TTL_MS: u64 = 60 * 1000;
/// How long the broadcast a channel URL may read stays in the edge cache when a segment
/// request (not a live playlist refresh) asked the room for it.
const CHANNEL_BROADCAST_TTL_MS: u64 = 2_000;
/// How long a live multivariant playlist stays fresh: its ladder changes when a rendition
/// lists its first segment or the broadcaster drops one.
const LADDER_TTL_MS: u64 = 2_000;
fn verify<P: Platform>(p: &P, token: &str) -> Result<UrlToken, ApiError> {
    UrlToken::verify(token, p.config().url_signing_secret.as_bytes(), now_s(p))
        .map_err(|e| ApiError::Forbidden(e.to_string()))
}

fn with_cache(mut response: Response, policy: &'static str) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(policy));
    response
}

/// How long a live playlist stays fresh in the edge cache: half its last segment's
/// duration, so that a new segment is listed within one segment duration, from 0.5 s to 3 s.
fn live_playlist_ttl_ms(window: &[ListedSegment]) -> u64 {
    window
        .last()
        .map_or(1_000, |s| s.duration_ms / 2)
        .clamp(500, 3_000)
}

/// `GET /play/{token}/live.m3u8`: the channel's live playlist (ENDLIST once the broadcast
/// ended) — a multivariant playlist when the broadcaster pushed a ladder — from the edge
/// cache; the channel's room is asked at most once per freshness period per location.
pub async fn live_playlist<P: Platform>(
    p: &P,
    token: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    live(p, token, None, request).await
}

/// `GET /play/{token}/live/{rendition}.m3u8`: one rendition's live playlist, as
/// [`live_playlist`].
pub async fn live_rendition<P: Platform>(
    p: &P,
    token: &str,
    file: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    live(p, token, Some(rendition(file)?), request).await
}

/// The rendition a `{rendition}.m3u8` path names; 404 for any other file.
fn rendition(file: &str) -> Result<&str, ApiError> {
    hls::rendition_of(file).ok_or_else(|| ApiError::NotFound("no such rendition".into()))
}

async fn live<P: Platform>(
    p: &P,
    token: &str,
    rendition: Option<&str>,
    request: &Request,
) -> Result<Response, ApiError> {
    let Scope::PlayChannel { channel_id } = verify(p, token)?.scope else {
        return Err(ApiError::Forbidden(
            "this URL plays a video, not a channel".into(),
        ));
    };
    // Spin's rooms cannot hold a request: there the playlists stay ordinary ones and a
    // blocking reload's parameters are ignored.
    let reload = if <P::Live as Live>::HOLDS {
        BlockingReload::parse(request.uri().query().unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?
    } else {
        None
    };
    let mut path = match rendition {
        None => format!("live/{channel_id}.m3u8"),
        Some(r) => format!("live/{channel_id}/{r}.m3u8"),
    };
    if let Some(reload) = reload {
        path.push_str(&format!("?msn={}&part={:?}", reload.msn, reload.part));
    }
    let key = cache_key(request, &path);
    let (object, status) = edge_cache::get_or_fill(p, &key, || async {
        let now_ms = p.clock().now_ms();
        let ask = RoomRequest::Window {
            max_segments: usize::try_from(p.config().live_window_segments).unwrap_or(6),
            rendition: rendition.map(str::to_owned),
            now_ms,
            block: reload.map(|r| Block {
                msn: r.msn,
                part: r.part,
                until_ms: now_ms + HOLD_MS,
            }),
        };
        let window = match p.live().call(&channel_id, &ask).await? {
            RoomResponse::Window {
                window: Some(window),
            } => window,
            RoomResponse::Window { window: None } => {
                return Err(ApiError::NotFound(match rendition {
                    None => "the channel is not live".into(),
                    Some(r) => format!("the broadcast has no rendition {r:?}"),
                }))
            }
            other => {
                return Err(ApiError::Internal(format!(
                    "unexpected room answer {other:?}"
                )))
            }
        };
        let (body, ttl_ms) = live_body::<P>(&window, rendition, reload)?;
        // What segments this playlist lets channel URLs read, at least as fresh as it.
        let named = broadcast_object(p, Some(&window.broadcast_id), ttl_ms);
        let _ = p
            .edge_cache()
            .put(
                &cache_key(request, &channel_broadcast_path(&channel_id)),
                &named,
            )
            .await;
        Ok(CachedObject {
            content_type: PLAYLIST_CONTENT_TYPE.to_owned(),
            body,
            expires_at_ms: p.clock().now_ms() + ttl_ms,
        })
    })
    .await?;
    let part_inf = b"#EXT-X-PART-INF:";
    let low_latency = object.body.windows(part_inf.len()).any(|w| w == part_inf);
    let policy = if low_latency {
        LOW_LATENCY_PLAYLIST
    } else {
        LIVE_PLAYLIST
    };
    Ok(from_cache(object, status, policy))
}

/// A live playlist's text and how long it stays fresh in the edge cache: the multivariant
/// playlist of a ladder, a low-latency playlist when the rendition has parts (and rooms
/// hold requests), else the ordinary live playlist.
fn live_body<P: Platform>(
    window: &LiveWindow,
    rendition: Option<&str>,
    reload: Option<BlockingReload>,
) -> Result<(Vec<u8>, u64), ApiError> {
    if let Some(ladder) = &window.ladder {
        return Ok((hls::multivariant_playlist(ladder, "live/"), LADDER_TTL_MS));
    }
    let segments = match rendition {
        None => format!("seg/{}/", window.broadcast_id),
        Some(_) => format!("../seg/{}/", window.broadcast_id),
    };
    let low_latency = llhls::from_window(window, &segments).filter(|_| <P::Live as Live>::HOLDS);
    let Some(playlist) = low_latency else {
        return Ok((
            hls::live_playlist(&window.segments, &segments, window.ended),
            live_playlist_ttl_ms(&window.segments),
        ));
    };
    // Half a part: a new part is listed within one part duration.
    let fresh_ms = (playlist.part_target.0 / 2000).clamp(100, 1_000);
    let ttl_ms = match reload.map(|r| r.satisfied_by(&playlist)) {
        Some(Err(e)) => return Err(ApiError::bad_request(e.code(), e.to_string())),
        Some(Ok(true)) => BLOCKED_TTL_MS,
        Some(Ok(false)) | None => fresh_ms,
    };
    Ok((playlist.render().into_bytes(), ttl_ms))
}

/// The edge-cache path of the broadcast a channel's URLs may read segments of.
fn channel_broadcast_path(channel_id: &str) -> String {
    format!("live/{channel_id}/broadcast")
}

/// The cached object naming `broadcast_id` (empty: none), fresh for `ttl_ms`.
fn broadcast_object<P: Platform>(p: &P, broadcast_id: Option<&str>, ttl_ms: u64) -> CachedObject {
    CachedObject {
        content_type: "text/plain".to_owned(),
        body: broadcast_id.unwrap_or_default().as_bytes().to_vec(),
        expires_at_ms: p.clock().now_ms() + ttl_ms,
    }
}

/// The broadcast a channel URL may read segments of: the one the channel's live playlist
/// names (the live broadcast, or the last one once it ended), never an older recording. Each
/// live playlist refresh stores it, so a viewer never holds a playlist newer than it in this
/// location; otherwise the room is asked at most once per [`CHANNEL_BROADCAST_TTL_MS`].
async fn channel_broadcast<P: Platform>(
    p: &P,
    request: &Request,
    channel_id: &str,
) -> Result<Option<String>, ApiError> {
    let key = cache_key(request, &channel_broadcast_path(channel_id));
    let (object, _) = edge_cache::get_or_fill(p, &key, || async {
        let ask = RoomRequest::Window {
            max_segments: 0,
            rendition: None,
            now_ms: p.clock().now_ms(),
            block: None,
        };
        let named = match p.live().call(channel_id, &ask).await? {
            RoomResponse::Window { window } => window.map(|w| w.broadcast_id),
            other => {
                return Err(ApiError::Internal(format!(
                    "unexpected room answer {other:?}"
                )))
            }
        };
        Ok(broadcast_object(
            p,
            named.as_deref(),
            CHANNEL_BROADCAST_TTL_MS,
        ))
    })
    .await?;
    Ok(String::from_utf8(object.body)
        .ok()
        .filter(|id| !id.is_empty()))
}

/// The video a playback URL plays, with its channel and recording, from the token alone.
fn video_scope<P: Platform>(
    p: &P,
    token: &str,
) -> Result<(String, String, Option<String>), ApiError> {
    match verify(p, token)?.scope {
        Scope::PlayVideo {
            video_id,
            channel_id,
            broadcast_id,
        } => Ok((video_id, channel_id, broadcast_id)),
        _ => Err(ApiError::Forbidden(
            "this URL plays a channel, not a video".into(),
        )),
    }
}

/// `GET /play/{token}/index.m3u8`: the VOD playlist of a video's recording (a multivariant
/// one when it has renditions), written to the blob store when the broadcast ended and
/// served from the edge cache.
pub async fn vod_playlist<P: Platform>(
    p: &P,
    token: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    vod(p, token, None, request).await
}

/// `GET /play/{token}/vod/{rendition}.m3u8`: one rendition's VOD playlist, as
/// [`vod_playlist`].
pub async fn vod_rendition<P: Platform>(
    p: &P,
    token: &str,
    file: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    vod(p, token, Some(rendition(file)?), request).await
}

async fn vod<P: Platform>(
    p: &P,
    token: &str,
    rendition: Option<&str>,
    request: &Request,
) -> Result<Response, ApiError> {
    let (_, channel_id, broadcast_id) = video_scope(p, token)?;
    let broadcast_id =
        broadcast_id.ok_or_else(|| ApiError::NotFound("this video has no HLS recording".into()))?;
    let path = match rendition {
        None => format!("vod/{broadcast_id}.m3u8"),
        Some(r) => format!("vod/{broadcast_id}/{r}.m3u8"),
    };
    let key = cache_key(request, &path);
    let (object, status) = edge_cache::get_or_fill(p, &key, || async {
        let blob_key = match rendition {
            None => videos::recording_playlist_key(&channel_id, &broadcast_id),
            Some(r) => videos::rendition_playlist_key(&channel_id, &broadcast_id, r),
        };
        let body = match (p.blobs().get(&blob_key, None).await?, rendition) {
            (Some(blob), _) => blob.bytes,
            (None, Some(r)) => {
                return Err(ApiError::NotFound(format!(
                    "the recording has no rendition {r:?}"
                )))
            }
            // Recordings that ended before their playlist was written to the blob store.
            (None, None) => {
                let segments = videos::recording(p, &channel_id, &broadcast_id).await?;
                if segments.is_empty() {
                    return Err(ApiError::NotFound("this video has no HLS recording".into()));
                }
                hls::vod_playlist(&segments, &format!("seg/{broadcast_id}/"))
            }
        };
        Ok(CachedObject {
            content_type: PLAYLIST_CONTENT_TYPE.to_owned(),
            body,
            expires_at_ms: p.clock().now_ms() + VOD_PLAYLIST_TTL_MS,
        })
    })
    .await?;
    Ok(from_cache(object, status, VOD_PLAYLIST))
}

/// `GET /play/{token}/seg/{broadcast}/{file}`: one segment of the channel's current broadcast
/// (channel URLs) or of the video's recording (video URLs), from the edge cache, with Range
/// support.
pub async fn segment<P: Platform>(
    p: &P,
    token: &str,
    broadcast_id: &str,
    file: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let part = PartName::parse(file).is_some();
    let kind = hls::SegmentKind::of(file).or(part.then_some(hls::SegmentKind::Cmaf));
    let Some(kind) = kind.filter(|_| ids::is_id(broadcast_id, "brd")) else {
        return Err(ApiError::NotFound("no such segment".into()));
    };
    let channel_id = match verify(p, token)?.scope {
        Scope::PlayChannel { channel_id } => {
            if channel_broadcast(p, request, &channel_id).await?.as_deref() != Some(broadcast_id) {
                return Err(ApiError::Forbidden(
                    "a channel URL plays the channel's current broadcast only; recordings \
                     have their own URLs"
                        .into(),
                ));
            }
            channel_id
        }
        Scope::PlayVideo {
            channel_id,
            broadcast_id: recorded,
            ..
        } => {
            if recorded.as_deref() != Some(broadcast_id) {
                return Err(ApiError::Forbidden(
                    "this segment is not part of the video".into(),
                ));
            }
            channel_id
        }
        Scope::Ingest { .. } | Scope::Upload { .. } => {
            return Err(ApiError::Forbidden("this URL does not play".into()))
        }
    };
    let key = videos::segment_key(&channel_id, broadcast_id, file);
    let cache_key = cache_key(request, &key);
    let whole = serve_whole(
        p,
        &key,
        &cache_key,
        (kind.content_type(), IMMUTABLE),
        IMMUTABLE_TTL_MS,
        request,
    )
    .await;
    match whole {
        // A part not stored yet (the next one, a playlist's preload hint): its bytes as the
        // pusher sends them, where rooms hold requests.
        Err(ApiError::NotFound(_)) if part && <P::Live as Live>::HOLDS => {
            let place = (channel_id.as_str(), broadcast_id, file);
            growing::serve(p, GrowingPart::new(place, (&key, &cache_key), HOLD_MS)).await
        }
        other => other,
    }
}

/// `GET /play/{token}/video.mp4`: the transcoded MP4, with Range support. Read in chunks of
/// [`CHUNK_BYTES`] through the edge cache; the host streams the chunks, so memory per request
/// stays bounded whatever the range.
pub async fn mp4<P: Platform>(p: &P, token: &str, request: &Request) -> Result<Response, ApiError> {
    let (video_id, _, _) = video_scope(p, token)?;
    let (key, content_type) = videos::file_key(&video_id, "mp4")
        .ok_or_else(|| ApiError::Internal("no MP4 key".into()))?;
    let size_key = cache_key(request, &format!("size/{key}"));
    let (size, _) = edge_cache::get_or_fill(p, &size_key, || async {
        let meta = p
            .blobs()
            .head(&key)
            .await?
            .ok_or_else(|| ApiError::NotFound("the MP4 is not ready yet".into()))?;
        Ok(CachedObject {
            content_type: "text/plain".into(),
            body: meta.size.to_string().into_bytes(),
            expires_at_ms: p.clock().now_ms() + VOD_PLAYLIST_TTL_MS,
        })
    })
    .await?;
    let size: u64 = std::str::from_utf8(&size.body)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::Internal("unreadable cached size".into()))?;
    let range = request.headers().get(RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match range {
        None if size == 0 => {
            return Ok(with_ranges(api::with_body(
                StatusCode::OK,
                content_type,
                Vec::new(),
            )))
        }
        None => (StatusCode::OK, 0, size - 1),
        Some(range) => {
            let (start, end) = parse_range(range, size)?;
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
    };
    let body = ChunkedBody {
        key: key.clone(),
        cache_key: cache_key(request, &key),
        content_type,
        start,
        end,
        size,
    };
    let mut response = if request.method() == http::Method::HEAD {
        api::with_body(status, content_type, Vec::new())
    } else if end - start < CHUNK_BYTES {
        // One or two chunks: answered here.
        api::with_body(status, content_type, body.collect(p).await?)
    } else {
        let mut response = api::with_body(status, content_type, Vec::new());
        response.extensions_mut().insert(body);
        response
    };
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            response.headers_mut().insert(CONTENT_RANGE, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&(end - start + 1).to_string()) {
        response.headers_mut().insert(CONTENT_LENGTH, value);
    }
    Ok(with_cache(with_ranges(response), IMMUTABLE))
}

/// `GET /play/{token}/poster.jpg`: the video's poster (its first keyframe), once transcoded.
pub async fn poster<P: Platform>(
    p: &P,
    token: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (video_id, _, _) = video_scope(p, token)?;
    let (key, content_type) = videos::file_key(&video_id, "poster")
        .ok_or_else(|| ApiError::Internal("no poster key".into()))?;
    serve_whole(
        p,
        &key,
        &cache_key(request, &key),
        (content_type, IMMUTABLE),
        VOD_PLAYLIST_TTL_MS,
        request,
    )
    .await
}

/// `GET /play/{token}/thumb.jpg`: the channel's thumbnail — the latest picture its
/// broadcast page sent while live, else the poster of its latest recording.
pub async fn thumbnail<P: Platform>(
    p: &P,
    token: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let Scope::PlayChannel { channel_id } = verify(p, token)?.scope else {
        return Err(ApiError::Forbidden(
            "this URL plays a video, not a channel".into(),
        ));
    };
    let key = videos::thumbnail_key(&channel_id);
    serve_whole(
        p,
        &key,
        &cache_key(request, &key),
        ("image/jpeg", THUMBNAIL),
        THUMBNAIL_TTL_MS,
        request,
    )
    .await
}

/// Forgets a deleted video's playlists (the recording's, and each rendition's, named by the
/// `removed` blob keys), MP4 size and poster in this location's edge cache (best effort: an
/// object that stays expires within [`VOD_PLAYLIST_TTL_MS`]).
pub async fn purge_video<P: Platform>(
    p: &P,
    request: &Request,
    video: &VideoDetailRow,
    removed: &[String],
) {
    let mut keys = Vec::new();
    if let Some(broadcast_id) = video.video.broadcast_id.as_deref() {
        keys.push(cache_key(request, &format!("vod/{broadcast_id}.m3u8")));
        let prefix = format!("live/{}/{broadcast_id}/vod_", video.video.channel_id);
        for rendition in removed
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix)?.strip_suffix(".m3u8"))
        {
            keys.push(cache_key(
                request,
                &format!("vod/{broadcast_id}/{rendition}.m3u8"),
            ));
        }
    }
    if let Some((key, _)) = videos::file_key(&video.video.id, "mp4") {
        keys.push(cache_key(request, &format!("size/{key}")));
    }
    if let Some((key, _)) = videos::file_key(&video.video.id, "poster") {
        keys.push(cache_key(request, &key));
    }
    for key in keys {
        edge_cache::forget(p, &key).await;
    }
}

fn with_ranges(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response
}

/// A small blob (a segment, a poster, a thumbnail) from the edge cache, whole or one range
/// of it: kept `ttl_ms` at the edge, `policy` is what browsers are told.
async fn serve_whole<P: Platform>(
    p: &P,
    key: &str,
    cache_key: &str,
    (content_type, policy): (&'static str, &'static str),
    ttl_ms: u64,
    request: &Request,
) -> Result<Response, ApiError> {
    let (object, status) = edge_cache::get_or_fill(p, cache_key, || async {
        let blob = p.blobs().get(key, None).await?;
        let blob = blob.ok_or_else(|| ApiError::NotFound("no such object".into()))?;
        Ok(CachedObject {
            content_type: content_type.to_owned(),
            body: blob.bytes,
            expires_at_ms: p.clock().now_ms() + ttl_ms,
        })
    })
    .await?;
    let range = request.headers().get(RANGE).and_then(|v| v.to_str().ok());
    let mut response = match range {
        None => from_cache(object, status, policy),
        Some(range) => {
            let size = object.body.len() as u64;
            let (start, end) = parse_range(range, size)?;
            let slice = object.body[start as usize..=end as usize].to_vec();
            let mut response = from_cache(
                CachedObject {
                    body: slice,
                    ..object
                },
                status,
                policy,
            );
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
            response
        }
    };
    response = with_ranges(response);
    Ok(response)
}

/// Parses a single-range `Range: bytes=...` header against an object of `size` bytes.
///
/// # Errors
/// 416 when the range is malformed, multi-range, or outside the object.
pub fn parse_range(header: &str, size: u64) -> Result<(u64, u64), ApiError> {
    let unsatisfiable = || ApiError::RangeNotSatisfiable(size);
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(unsatisfiable)?;
    if spec.contains(',') {
        return Err(unsatisfiable());
    }
    let (start, end) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| unsatisfiable())?;
            if n == 0 {
                return Err(unsatisfiable());
            }
            (
                size.saturating_sub(n),
                size.checked_sub(1).ok_or_else(unsatisfiable)?,
            )
        }
        (start, "") => (
            start.parse().map_err(|_| unsatisfiable())?,
            size.saturating_sub(1),
        ),
        (start, end) => {
            let start: u64 = start.parse().map_err(|_| unsatisfiable())?;
            let end: u64 = end.parse().map_err(|_| unsatisfiable())?;
            (start, end.min(size.saturating_sub(1)))
        }
    };
    if start > end || start >= size {
        return Err(unsatisfiable());
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPlatform;
    use crate::ports::CachedObject;

    #[test]
    fn deleting_a_video_purges_every_playlist_of_its_recording() {
        let p = MemoryPlatform::development();
        let request = http::Request::builder()
            .uri("https://edge.example/api/videos/vid_0123456789abcdef")
            .body(Vec::new())
            .unwrap();
        let video: VideoDetailRow = serde_json::from_value(serde_json::json!({
            "id": "vid_0123456789abcdef", "channel_id": "ch_0123456789abcdef",
            "channel_name": null, "broadcast_id": "brd_0123456789abcdef",
            "owner_id": "usr_0123456789abcdef", "status": "published", "visibility": "public",
            "title": "t", "description": "", "tags": "[]", "metadata": "{}",
            "duration_ms": null, "width": null, "height": null, "size_bytes": null,
            "mp4_key": null, "poster_key": null, "created_at": 0, "updated_at": 0,
            "published_at": null, "views": 0
        }))
        .unwrap();
        let cached = [
            "vod/brd_0123456789abcdef.m3u8",
            "vod/brd_0123456789abcdef/v720.m3u8",
            "vod/brd_0123456789abcdef/v360.m3u8",
            "vod/brd_other0123456789/v360.m3u8",
        ];
        let object = CachedObject {
            content_type: PLAYLIST_CONTENT_TYPE.to_owned(),
            body: b"#EXTM3U".to_vec(),
            expires_at_ms: u64::MAX,
        };
        for path in cached {
            pollster::block_on(p.edge_cache.put(&cache_key(&request, path), &object)).unwrap();
        }
        let removed: Vec<String> = ["vod.m3u8", "vod_v720.m3u8", "vod_v360.m3u8", "index0.ts"]
            .iter()
            .map(|f| format!("live/ch_0123456789abcdef/brd_0123456789abcdef/{f}"))
            .collect();
        pollster::block_on(purge_video(&p, &request, &video, &removed));
        let left: Vec<&str> = cached
            .iter()
            .copied()
            .filter(|path| {
                pollster::block_on(p.edge_cache.get(&cache_key(&request, path)))
                    .unwrap()
                    .is_some()
            })
            .collect();
        assert_eq!(left, ["vod/brd_other0123456789/v360.m3u8"]);
    }

    #[test]
    fn ranges_parse_and_clamp() {
        assert_eq!(parse_range("bytes=0-99", 1000).unwrap(), (0, 99));
        assert_eq!(parse_range("bytes=900-", 1000).unwrap(), (900, 999));
        assert_eq!(parse_range("bytes=-100", 1000).unwrap(), (900, 999));
        assert_eq!(parse_range("bytes=990-2000", 1000).unwrap(), (990, 999));
        assert_eq!(parse_range("bytes=-5000", 1000).unwrap(), (0, 999));
        for bad in [
            "bytes=1000-",
            "bytes=5-1",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=-0",
            "bytes=x-",
        ] {
            assert!(
                matches!(
                    parse_range(bad, 1000),
                    Err(ApiError::RangeNotSatisfiable(1000))
                ),
                "{bad}"
            );
        }
        assert!(parse_range("bytes=0-", 0).is_err());
    }
}

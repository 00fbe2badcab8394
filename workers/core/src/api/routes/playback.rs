//! Playback: signed playback URLs for channels (live) and videos (VOD), and the routes those
//! URLs lead to: the live playlist built from the room's window, the VOD playlist of a
//! recording, segments and MP4s from the blob store with Range support and long caching.

use http::header::{ACCEPT_RANGES, CACHE_CONTROL, CONTENT_RANGE, RANGE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::api::auth;
use crate::api::routes::channels;
use crate::api::{self, Request, Response};
use crate::error::ApiError;
use crate::model::hls::{self, PLAYLIST_CONTENT_TYPE, SEGMENT_CONTENT_TYPE};
use crate::model::ids;
use crate::model::role::{Principal, Role};
use crate::model::room::{RoomRequest, RoomResponse};
use crate::model::signed_url::{Scope, UrlToken};
use crate::model::video::Video;
use crate::ports::{Blobs as _, ByteRange, Live as _, Platform};
use crate::services::videos;
use crate::services::views;
use crate::store::counters;
use crate::store::videos as stored_videos;

/// Cache policy of segments and MP4s: they never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of live playlists: they change every segment.
const LIVE_PLAYLIST: &str = "public, max-age=1";
/// Cache policy of VOD playlists: fixed once the broadcast ended.
const VOD_PLAYLIST: &str = "public, max-age=3600";

fn now_s<P: Platform>(p: &P) -> u64 {
    p.clock().now_ms() / 1000
}

fn sign<P: Platform>(p: &P, scope: Scope, viewer: Option<&Principal>) -> (String, u64) {
    let exp = now_s(p) + p.config().playback_url_ttl_s;
    let token = UrlToken {
        scope,
        viewer: viewer.map(|v| v.user_id.clone()),
        exp,
    }
    .sign(p.config().url_signing_secret.as_bytes());
    (token, exp)
}

/// `POST /api/channels/{id}/playback`: a signed URL of the channel's live playlist.
pub async fn channel_url<P: Platform>(
    p: &P,
    id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let channel = channels::load(p, id).await?;
    let viewer = auth::optional_principal(request, p.config(), now_s(p));
    // A live join counts once per viewer session, not per URL refresh or page reload.
    let recorded = views::record(
        p,
        auth::viewer_cookie(request),
        viewer.as_ref(),
        &channel.id,
        counters::VIEWS_LIVE,
    )
    .await?;
    let (token, exp) = sign(
        p,
        Scope::PlayChannel {
            channel_id: channel.id,
        },
        viewer.as_ref(),
    );
    let response = api::json(
        StatusCode::OK,
        &json!({
            "url": format!("{}/play/{token}/live.m3u8", api::origin(request)),
            "expires_at": exp,
            "view_counted": recorded.counted,
        }),
    );
    Ok(auth::with_viewer_cookie(response, &recorded))
}

/// Loads a video by a path id; 404 when malformed or unknown.
async fn load_video<P: Platform>(p: &P, id: &str) -> Result<Video, ApiError> {
    if !ids::is_id(id, "vid") {
        return Err(ApiError::NotFound(format!("no video {id}")));
    }
    stored_videos::by_id(p.sql(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no video {id}")))
}

/// Whether `viewer` may play `video`: public videos that were not rejected play for anyone;
/// private and rejected ones only for their owner and admins.
fn may_play(video: &Video, viewer: Option<&Principal>) -> Result<(), ApiError> {
    let open = video.visibility == "public"
        && matches!(video.status.as_str(), "processing" | "ready" | "published");
    let privileged = viewer.is_some_and(|v| v.user_id == video.owner_id || v.role == Role::Admin);
    match (open || privileged, viewer) {
        (true, _) => Ok(()),
        (false, None) => Err(ApiError::Unauthorized("sign in to play this video".into())),
        (false, Some(_)) => Err(ApiError::Forbidden(
            "this video is not available to you".into(),
        )),
    }
}

/// `POST /api/videos/{id}/playback`: signed URLs of the video's VOD playlist and, once
/// transcoded, its MP4.
pub async fn video_url<P: Platform>(
    p: &P,
    id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let video = load_video(p, id).await?;
    let viewer = auth::optional_principal(request, p.config(), now_s(p));
    may_play(&video, viewer.as_ref())?;
    let (token, exp) = sign(
        p,
        Scope::PlayVideo {
            video_id: video.id.clone(),
        },
        viewer.as_ref(),
    );
    // A VOD play counts once per viewer session, not per URL refresh or page reload.
    let recorded = views::record(
        p,
        auth::viewer_cookie(request),
        viewer.as_ref(),
        &video.id,
        counters::VIEWS_VOD,
    )
    .await?;
    let base = format!("{}/play/{token}", api::origin(request));
    let response = api::json(
        StatusCode::OK,
        &json!({
            "hls_url": format!("{base}/index.m3u8"),
            "mp4_url": video.mp4_key.as_ref().map(|_| format!("{base}/video.mp4")),
            "poster_url": video.poster_key.as_ref().map(|_| format!("{base}/poster.jpg")),
            "status": video.status,
            "expires_at": exp,
            "view_counted": recorded.counted,
        }),
    );
    Ok(auth::with_viewer_cookie(response, &recorded))
}

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

/// `GET /play/{token}/live.m3u8`: the live playlist (ENDLIST once the broadcast ended).
pub async fn live_playlist<P: Platform>(p: &P, token: &str) -> Result<Response, ApiError> {
    let Scope::PlayChannel { channel_id } = verify(p, token)?.scope else {
        return Err(ApiError::Forbidden(
            "this URL plays a video, not a channel".into(),
        ));
    };
    let max_segments = usize::try_from(p.config().live_window_segments).unwrap_or(6);
    let window = match p
        .live()
        .call(&channel_id, &RoomRequest::Window { max_segments })
        .await?
    {
        RoomResponse::Window {
            window: Some(window),
        } => window,
        RoomResponse::Window { window: None } => {
            return Err(ApiError::NotFound("the channel has not been live".into()))
        }
        other => {
            return Err(ApiError::Internal(format!(
                "unexpected room answer {other:?}"
            )))
        }
    };
    let body = hls::live_playlist(
        &window.segments,
        &format!("seg/{}/", window.broadcast_id),
        window.ended,
    );
    Ok(with_cache(
        api::with_body(StatusCode::OK, PLAYLIST_CONTENT_TYPE, body),
        LIVE_PLAYLIST,
    ))
}

/// `GET /play/{token}/index.m3u8`: the VOD playlist of a video's recording.
pub async fn vod_playlist<P: Platform>(p: &P, token: &str) -> Result<Response, ApiError> {
    let Scope::PlayVideo { video_id } = verify(p, token)?.scope else {
        return Err(ApiError::Forbidden(
            "this URL plays a channel, not a video".into(),
        ));
    };
    let video = load_video(p, &video_id).await?;
    let broadcast_id = video
        .broadcast_id
        .ok_or_else(|| ApiError::NotFound("this video has no HLS recording".into()))?;
    let segments = stored_videos::recording(p.sql(), &broadcast_id).await?;
    let body = hls::vod_playlist(&segments, &format!("seg/{broadcast_id}/"));
    Ok(with_cache(
        api::with_body(StatusCode::OK, PLAYLIST_CONTENT_TYPE, body),
        VOD_PLAYLIST,
    ))
}

/// `GET /play/{token}/seg/{broadcast}/{file}`: one segment of a channel's broadcasts (channel
/// URLs) or of the video's recording (video URLs).
pub async fn segment<P: Platform>(
    p: &P,
    token: &str,
    broadcast_id: &str,
    file: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    if !ids::is_id(broadcast_id, "brd") || !hls::is_segment_name(file) {
        return Err(ApiError::NotFound("no such segment".into()));
    }
    let channel_id = match verify(p, token)?.scope {
        Scope::PlayChannel { channel_id } => channel_id,
        Scope::PlayVideo { video_id } => {
            let video = load_video(p, &video_id).await?;
            if video.broadcast_id.as_deref() != Some(broadcast_id) {
                return Err(ApiError::Forbidden(
                    "this segment is not part of the video".into(),
                ));
            }
            video.channel_id
        }
        Scope::Ingest { .. } | Scope::Upload { .. } => {
            return Err(ApiError::Forbidden("this URL does not play".into()))
        }
    };
    let key = videos::segment_key(&channel_id, broadcast_id, file);
    serve_blob(p, &key, SEGMENT_CONTENT_TYPE, request).await
}

/// `GET /play/{token}/video.mp4`: the transcoded MP4, with Range support.
pub async fn mp4<P: Platform>(p: &P, token: &str, request: &Request) -> Result<Response, ApiError> {
    let Scope::PlayVideo { video_id } = verify(p, token)?.scope else {
        return Err(ApiError::Forbidden(
            "this URL plays a channel, not a video".into(),
        ));
    };
    let video = load_video(p, &video_id).await?;
    let key = video
        .mp4_key
        .ok_or_else(|| ApiError::NotFound("the MP4 is not ready yet".into()))?;
    serve_blob(p, &key, "video/mp4", request).await
}

/// `GET /play/{token}/poster.jpg`: the video's poster (its first keyframe), once transcoded.
pub async fn poster<P: Platform>(
    p: &P,
    token: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let Scope::PlayVideo { video_id } = verify(p, token)?.scope else {
        return Err(ApiError::Forbidden(
            "this URL plays a channel, not a video".into(),
        ));
    };
    let video = load_video(p, &video_id).await?;
    let key = video
        .poster_key
        .ok_or_else(|| ApiError::NotFound("the video has no poster yet".into()))?;
    serve_blob(p, &key, "image/jpeg", request).await
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

async fn serve_blob<P: Platform>(
    p: &P,
    key: &str,
    content_type: &'static str,
    request: &Request,
) -> Result<Response, ApiError> {
    let range = request.headers().get(RANGE).and_then(|v| v.to_str().ok());
    let mut response = match range {
        None => {
            let blob = p
                .blobs()
                .get(key, None)
                .await?
                .ok_or_else(|| ApiError::NotFound("no such object".into()))?;
            api::with_body(StatusCode::OK, content_type, blob.bytes)
        }
        Some(range) => {
            let meta = p
                .blobs()
                .head(key)
                .await?
                .ok_or_else(|| ApiError::NotFound("no such object".into()))?;
            let (start, end) = parse_range(range, meta.size)?;
            let blob = p
                .blobs()
                .get(
                    key,
                    Some(ByteRange::From {
                        offset: start,
                        length: Some(end - start + 1),
                    }),
                )
                .await?
                .ok_or_else(|| ApiError::NotFound("no such object".into()))?;
            let mut response =
                api::with_body(StatusCode::PARTIAL_CONTENT, content_type, blob.bytes);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{}", meta.size))
            {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
            response
        }
    };
    response
        .headers_mut()
        .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(with_cache(response, IMMUTABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

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

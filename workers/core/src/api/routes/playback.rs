//! Signed playback URLs: `POST /api/channels/{id}/playback` (live) and `POST
//! /api/videos/{id}/playback` (VOD) check who may watch, count the view and sign a token
//! carrying what the `/play/{token}/...` routes ([`super::play`]) need (the channel, the
//! recording's broadcast), so that no playback request queries the catalogue.

use http::StatusCode;
use serde::Serialize;

use crate::api::auth;
use crate::api::routes::channels;
use crate::api::{self, Request, Response};
use crate::error::ApiError;
use crate::model::ids;
use crate::model::role::{Principal, Role};
use crate::model::signed_url::{Scope, UrlToken};
use crate::model::video::{Video, VideoStatus};
use crate::ports::Platform;
use crate::services::views;
use crate::store::counters;
use crate::store::videos as stored_videos;

pub(super) fn now_s<P: Platform>(p: &P) -> u64 {
    p.clock().now_ms() / 1000
}

/// A signed URL of a channel's live playlist.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LivePlayback {
    /// The live playlist (`/play/{token}/live.m3u8`).
    pub url: String,
    /// When the URL expires, Unix seconds.
    pub expires_at: u64,
    /// Whether this request counted a new view (once per viewer session).
    pub view_counted: bool,
}

/// Signed URLs of a video.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VodPlayback {
    /// The VOD playlist (`/play/{token}/index.m3u8`).
    pub hls_url: String,
    /// The MP4, once transcoded.
    pub mp4_url: Option<String>,
    /// The poster, once transcoded.
    pub poster_url: Option<String>,
    /// Where the video is in its life.
    pub status: VideoStatus,
    /// When the URLs expire, Unix seconds.
    pub expires_at: u64,
    /// Whether this request counted a new view (once per viewer session).
    pub view_counted: bool,
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
    let viewer = auth::optional_principal(p, request).await?;
    // A live join counts once per viewer session, not per URL refresh or page reload.
    let recorded = views::record(
        p,
        auth::viewer_cookie(request),
        auth::client_address(request),
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
        &LivePlayback {
            url: format!("{}/play/{token}/live.m3u8", api::origin(request)),
            expires_at: exp,
            view_counted: recorded.counted,
        },
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
    let viewer = auth::optional_principal(p, request).await?;
    may_play(&video, viewer.as_ref())?;
    let (token, exp) = sign(
        p,
        Scope::PlayVideo {
            video_id: video.id.clone(),
            channel_id: video.channel_id.clone(),
            broadcast_id: video.broadcast_id.clone(),
        },
        viewer.as_ref(),
    );
    // A VOD play counts once per viewer session, not per URL refresh or page reload.
    let recorded = views::record(
        p,
        auth::viewer_cookie(request),
        auth::client_address(request),
        viewer.as_ref(),
        &video.id,
        counters::VIEWS_VOD,
    )
    .await?;
    let base = format!("{}/play/{token}", api::origin(request));
    let response = api::json(
        StatusCode::OK,
        &VodPlayback {
            hls_url: format!("{base}/index.m3u8"),
            mp4_url: video.mp4_key.as_ref().map(|_| format!("{base}/video.mp4")),
            poster_url: video
                .poster_key
                .as_ref()
                .map(|_| format!("{base}/poster.jpg")),
            status: video.status,
            expires_at: exp,
            view_counted: recorded.counted,
        },
    );
    Ok(auth::with_viewer_cookie(response, &recorded))
}

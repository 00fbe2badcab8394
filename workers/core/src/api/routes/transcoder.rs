//! `POST /api/transcoder/callback`: the transcoder reports a finished job, signed with the
//! Standard Webhooks scheme and `TRANSCODER_SECRET`. A completed job makes the video `ready`
//! (MP4 key, duration, dimensions, size, poster) and starts its plugin lifecycle; a failed
//! one marks it `failed`. Repeated callbacks change nothing.

use edgevideo_protocol::transcode::{CallbackType, TranscodeCallback};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{self, Request, Response};
use crate::config::MAX_UPLOAD_BYTES;
use crate::error::ApiError;
use crate::model::hook::Event;
use crate::model::room::RoomRequest;
use crate::model::signed_url::{Scope, UrlToken};
use crate::model::video::Transcoded;
use crate::ports::{Blobs as _, UploadedPart};
use crate::ports::{Live as _, Platform, Sql as _};
use crate::room::ServerMessage;
use crate::services::delivery;
use crate::services::lifecycle;
use crate::services::videos;
use crate::store::events;
use crate::store::videos as stored_videos;
use crate::webhooks;

/// Most parts in one multipart upload (R2's and S3's limit).
const MAX_PARTS: u16 = 10_000;

/// The object an upload URL may write: its key and content type. 404 when the video was
/// deleted meanwhile, so nothing is stored for it.
async fn upload_target<P: Platform>(
    p: &P,
    token: &str,
) -> Result<(String, &'static str), ApiError> {
    let now_s = p.clock().now_ms() / 1000;
    let token = UrlToken::verify(token, p.config().url_signing_secret.as_bytes(), now_s)
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let Scope::Upload { video_id, kind } = token.scope else {
        return Err(ApiError::Forbidden(
            "this URL does not allow uploads".into(),
        ));
    };
    let target = videos::file_key(&video_id, &kind)
        .ok_or_else(|| ApiError::Forbidden("unknown upload kind".into()))?;
    if !stored_videos::exists(p.sql(), &video_id).await? {
        return Err(ApiError::NotFound(format!(
            "no video {video_id} (deleted?)"
        )));
    }
    Ok(target)
}

/// The body of an upload request or part: not empty, at most one request's worth.
fn upload_body(request: Request) -> Result<Vec<u8>, ApiError> {
    let body = request.into_body();
    if body.is_empty() {
        return Err(ApiError::bad_request("empty_upload", "the upload is empty"));
    }
    if body.len() > MAX_UPLOAD_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "upload is {} bytes; the limit is {MAX_UPLOAD_BYTES} (larger files go in parts: \
             POST /upload/{{token}}/parts)",
            body.len()
        )));
    }
    Ok(body)
}

/// `PUT /upload/{token}`: the transcoder's output (MP4 or poster) for a video, in one request.
/// The host has read the whole body before this runs, so an interrupted upload stores
/// nothing.
pub async fn upload<P: Platform>(
    p: &P,
    token: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (key, content_type) = upload_target(p, token).await?;
    let body = upload_body(request)?;
    let size = body.len() as u64;
    p.blobs().put(&key, body, content_type).await?;
    Ok(api::json(StatusCode::CREATED, &StoredUpload { key, size }))
}

/// `POST /upload/{token}/parts`: starts a multipart upload of the URL's object, for files
/// larger than one request. Answers the upload id and the part size to use: every part but
/// the last has exactly that size.
pub async fn begin_parts<P: Platform>(p: &P, token: &str) -> Result<Response, ApiError> {
    let (key, content_type) = upload_target(p, token).await?;
    let upload_id = p.blobs().begin_upload(&key, content_type).await?;
    Ok(api::json(
        StatusCode::CREATED,
        &UploadStarted {
            upload_id,
            part_bytes: p.config().upload_part_bytes,
        },
    ))
}

/// `PUT /upload/{token}/parts/{number}?upload_id=...`: stores one part (1-based). Answers
/// the part's `etag`, which completing the upload needs.
pub async fn put_part<P: Platform>(
    p: &P,
    token: &str,
    number: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (key, _) = upload_target(p, token).await?;
    let number = number
        .parse::<u16>()
        .ok()
        .filter(|n| (1..=MAX_PARTS).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_part_number",
                format!("part numbers are 1 to {MAX_PARTS}"),
            )
        })?;
    let upload_id = super::catalogue::query_params(&request)?
        .into_iter()
        .find_map(|(name, value)| (name == "upload_id" && !value.is_empty()).then_some(value))
        .ok_or_else(|| ApiError::bad_request("missing_upload_id", "upload_id is required"))?;
    let body = upload_body(request)?;
    let part = p.blobs().put_part(&key, &upload_id, number, body).await?;
    Ok(api::json(StatusCode::OK, &part))
}

/// The body of `POST /upload/{token}/parts/complete`.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PartsCompletion {
    /// The upload, from `POST /upload/{token}/parts`.
    pub upload_id: String,
    /// Every part, in ascending order of number.
    pub parts: Vec<UploadedPart>,
}

/// An object stored through an upload URL.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StoredUpload {
    /// Its blob key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A multipart upload begun.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UploadStarted {
    /// The upload, for its parts and its completion.
    pub upload_id: String,
    /// The size of every part but the last, in bytes.
    pub part_bytes: u64,
}

/// The answer to a transcoder callback.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CallbackAnswer {
    /// Always `true`.
    pub ok: bool,
    /// `deleted` when the video was deleted meanwhile (its uploads are dropped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<&'static str>,
    /// How many uploaded objects were dropped, for a deleted video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_removed: Option<usize>,
}

/// `POST /upload/{token}/parts/complete` with `{"upload_id", "parts": [{"number", "etag"}]}`:
/// the object becomes the parts, in ascending order.
pub async fn complete_parts<P: Platform>(
    p: &P,
    token: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (key, _) = upload_target(p, token).await?;
    let completion: PartsCompletion = api::parse_json(request)?;
    let ascending = completion
        .parts
        .windows(2)
        .all(|w| w[0].number < w[1].number);
    if completion.parts.is_empty() || !ascending {
        return Err(ApiError::bad_request(
            "invalid_parts",
            "parts must be listed once each, in ascending order",
        ));
    }
    p.blobs()
        .complete_upload(&key, &completion.upload_id, &completion.parts)
        .await?;
    let size = p.blobs().head(&key).await?.map_or(0, |m| m.size);
    Ok(api::json(StatusCode::CREATED, &StoredUpload { key, size }))
}

/// Handles the transcoder's callback.
pub async fn callback<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let secret = p
        .config()
        .transcoder_secret
        .as_deref()
        .ok_or_else(|| ApiError::Misconfigured("TRANSCODER_SECRET is not set".into()))?;
    let key = webhooks::WebhookKey::from_secret(secret)
        .map_err(|_| ApiError::Misconfigured("TRANSCODER_SECRET is not a whsec_ secret".into()))?;
    let now_s = p.clock().now_ms() / 1000;
    let header = |name: &'static str| request.headers().get(name)?.to_str().ok();
    key.verify(header, request.body(), now_s)
        .map_err(|e| ApiError::Forbidden(format!("callback signature: {e}")))?;
    let body: TranscodeCallback = api::parse_json(request)?;
    let now = p.clock().now_ms() as i64;
    if !stored_videos::exists(p.sql(), &body.video_id).await? {
        return drop_uploads(p, &body.video_id).await;
    }
    match body.kind {
        CallbackType::Completed => completed(p, body, now).await?,
        CallbackType::Failed => {
            let error = serde_json::to_value(&body.error).unwrap_or_default();
            p.sql()
                .batch(&[
                    stored_videos::mark_failed(&body.video_id, now),
                    events::record(&body.video_id, "transcode.failed", &error, now),
                ])
                .await?;
        }
    }
    Ok(api::json(
        StatusCode::OK,
        &CallbackAnswer {
            ok: true,
            video: None,
            objects_removed: None,
        },
    ))
}

/// A callback for a video deleted while it was being transcoded: drop what the job uploaded
/// (the delete already removed the video's files), change nothing else.
async fn drop_uploads<P: Platform>(p: &P, video_id: &str) -> Result<Response, ApiError> {
    let keys = p.blobs().list(&videos::files_prefix(video_id)).await?;
    for key in &keys {
        p.blobs().delete(key).await?;
    }
    Ok(api::json(
        StatusCode::OK,
        &CallbackAnswer {
            ok: true,
            video: Some("deleted"),
            objects_removed: Some(keys.len()),
        },
    ))
}

/// A completed job: the video becomes `ready` (once), subscribers and its channel are told,
/// and its lifecycle starts.
async fn completed<P: Platform>(p: &P, body: TranscodeCallback, now: i64) -> Result<(), ApiError> {
    // The MP4 and the poster live at the video's own keys (`videos::file_key`), where
    // playback reads them without a catalogue row: a callback naming other keys is refused.
    let own = |kind: &str| videos::file_key(&body.video_id, kind).map(|(k, _)| k);
    for (named, kind) in [(&body.output_key, "mp4"), (&body.poster_key, "poster")] {
        if named.is_some() && *named != own(kind) {
            return Err(ApiError::bad_request(
                "invalid_callback",
                format!("the {kind} must be stored at the video's own key"),
            ));
        }
    }
    let mp4_key = own("mp4");
    let poster_key = body.poster_key.or_else(|| {
        body.poster
            .unwrap_or(false)
            .then(|| own("poster"))
            .flatten()
    });
    let files = Transcoded {
        mp4_key,
        poster_key,
        duration_ms: body.duration_seconds.map(|s| (s * 1000.0).round() as i64),
        width: body.width.map(i64::from),
        height: body.height.map(i64::from),
        size_bytes: body.size_bytes.and_then(|n| i64::try_from(n).ok()),
    };
    if stored_videos::mark_ready(p.sql(), &body.video_id, &files, now).await? {
        let detail = json!({
            "duration_ms": files.duration_ms,
            "width": files.width,
            "height": files.height,
            "size_bytes": files.size_bytes,
            "video_frames": body.video_frames,
        });
        p.sql()
            .execute(&events::record(
                &body.video_id,
                "transcode.finished",
                &detail,
                now,
            ))
            .await?;
        delivery::notify(
            p,
            Event::VideoReady.as_str(),
            &body.video_id,
            json!({ "video_id": body.video_id, "mp4": detail }),
        )
        .await?;
        notify_channel(p, &body.video_id).await?;
    }
    // A repeated callback finds the video past `processing`; starting is idempotent.
    lifecycle::start(p, &body.video_id).await?;
    Ok(())
}

async fn notify_channel<P: Platform>(p: &P, video_id: &str) -> Result<(), ApiError> {
    if let Some(channel_id) = stored_videos::channel_of(p.sql(), video_id).await? {
        let message = ServerMessage::VideoReady {
            video_id: video_id.to_owned(),
        }
        .to_value();
        p.live()
            .call(&channel_id, &RoomRequest::Notify { message })
            .await?;
    }
    Ok(())
}

//! Sending a finished recording to the transcoder: the queue consumer turns a
//! [`Job::Transcode`](crate::model::job::Job::Transcode) into a signed [`TranscodeJob`] for
//! `transcoder serve` (`schema/transcode-job.schema.json`). Inputs are signed segment URLs on
//! this deployment; the MP4 and poster come back through signed upload URLs (`PUT
//! /upload/{token}`, or in parts through `/upload/{token}/parts` above `UPLOAD_PART_BYTES`),
//! because locally R2 lives inside the Workers runtime. The transcoder's answer to a job id it has
//! seen is idempotent, so a retried job never runs twice.

use edgevideo_protocol::transcode::TranscodeJob;

use crate::error::StoreError;
use crate::model::job::JobError;
use crate::model::signed_url::{Scope, UrlToken};
use crate::ports::{Outbound as _, OutboundRequest, Platform};
use crate::services::videos;
use crate::webhooks;

/// Lifetime of the URLs handed to the transcoder, in seconds.
const JOB_URL_TTL_S: u64 = 6 * 3600;

/// Sends the transcode job of `video_id` (the recording of `broadcast_id`).
///
/// # Errors
/// [`JobError::Invalid`] when the transcoder refuses the job or nothing is configured to
/// take it; [`JobError::Store`] (retried) when it cannot be reached.
pub async fn send<P: Platform>(
    p: &P,
    video_id: &str,
    channel_id: &str,
    broadcast_id: &str,
) -> Result<(), JobError> {
    let config = p.config();
    let (Some(transcoder_url), Some(secret)) = (&config.transcoder_url, &config.transcoder_secret)
    else {
        // No transcoder: the video stays `processing` and plays as VOD HLS.
        return Ok(());
    };
    let key = webhooks::WebhookKey::from_secret(secret)
        .map_err(|_| JobError::Invalid("TRANSCODER_SECRET is not a whsec_ secret".into()))?;
    let public_url = config
        .public_url
        .as_deref()
        .ok_or_else(|| JobError::Invalid("PUBLIC_URL is not set".into()))?;
    let now_s = p.clock().now_ms() / 1000;
    let job = job(p, public_url, video_id, channel_id, broadcast_id, now_s).await?;
    job.validate()
        .map_err(|e| JobError::Invalid(format!("the transcode job is invalid: {e}")))?;
    let body = serde_json::to_vec(&job)
        .map_err(|e| JobError::Invalid(format!("cannot encode the job: {e}")))?;
    let message_id = format!("job_{}", video_id.trim_start_matches("vid_"));
    let mut headers: Vec<(String, String)> = webhooks::headers(&[key], &message_id, now_s, &body)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    headers.push(("content-type".into(), "application/json".into()));
    let response = p
        .outbound()
        .send(OutboundRequest {
            method: http::Method::POST,
            url: format!("{transcoder_url}/jobs"),
            headers,
            body,
            timeout_ms: 10_000,
        })
        .await
        .map_err(|e| StoreError::backend("transcoder", e))?;
    match response.status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => {
            Err(StoreError::backend("transcoder", format!("answered {}", response.status)).into())
        }
        status => Err(JobError::Invalid(format!(
            "the transcoder refused the job ({status}): {}",
            String::from_utf8_lossy(&response.body)
        ))),
    }
}

/// The job: signed URLs of the recorded segments (after the init segment of a CMAF one), signed upload URLs for the MP4 and the
/// poster, and where to call back.
async fn job<P: Platform>(
    p: &P,
    public_url: &str,
    video_id: &str,
    channel_id: &str,
    broadcast_id: &str,
    now_s: u64,
) -> Result<TranscodeJob, StoreError> {
    let config = p.config();
    let segments = videos::recording(p, channel_id, broadcast_id).await?;
    let sign = |scope: Scope| {
        UrlToken {
            scope,
            viewer: None,
            exp: now_s + JOB_URL_TTL_S,
        }
        .sign(config.url_signing_secret.as_bytes())
    };
    let play = sign(Scope::PlayVideo {
        video_id: video_id.to_owned(),
        channel_id: channel_id.to_owned(),
        broadcast_id: Some(broadcast_id.to_owned()),
    });
    // A CMAF recording starts with its init segment.
    let init = segments.first().and_then(|s| s.map.as_deref());
    let inputs: Vec<String> = init
        .into_iter()
        .chain(segments.iter().map(|s| s.file.as_str()))
        .map(|file| format!("{public_url}/play/{play}/seg/{broadcast_id}/{file}"))
        .collect();
    let upload = |kind: &str| {
        let token = sign(Scope::Upload {
            video_id: video_id.to_owned(),
            kind: kind.to_owned(),
        });
        format!("{public_url}/upload/{token}")
    };
    Ok(TranscodeJob {
        job_id: format!("tr_{}", video_id.trim_start_matches("vid_")),
        video_id: video_id.to_owned(),
        inputs,
        output_key: None,
        output_url: Some(upload("mp4")),
        callback_url: format!("{public_url}/api/transcoder/callback"),
        poster_key: None,
        poster_url: Some(upload("poster")),
        upload_part_bytes: Some(config.upload_part_bytes),
    })
}

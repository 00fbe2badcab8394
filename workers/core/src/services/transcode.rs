//! Sending a finished recording to the transcoder: the queue consumer turns a
//! [`Job::Transcode`](crate::model::job::Job::Transcode) into a signed [`TranscodeJob`] for
//! `transcoder serve` (`schema/transcode-job.schema.json`). Inputs are signed segment URLs on
//! this deployment; the MP4 and poster come back through signed upload URLs (`PUT
//! /upload/{token}`, or in parts through `/upload/{token}/parts` above `UPLOAD_PART_BYTES`),
//! because locally R2 lives inside the Workers runtime. The transcoder's answer to a job id it has
//! seen is idempotent, so a retried job never runs twice.
//!
//! **Re-drive.** A sent job is followed by a check `TRANSCODE_REDRIVE_SECONDS` later (a
//! delayed queue message, as durable as the queue): if the video is still `processing` the
//! transcoder lost the job (a container killed with its backlog, or replaced), so it is
//! sent again under the same job id — a job the transcoder still has is not run twice (it
//! answers the re-sending, whose URLs are signed afresh, `409 job_conflict`, which counts as
//! sent) — and checked again; after [`MAX_SENDS`] sendings without an answer the video is `failed`.

use edgevideo_protocol::transcode::TranscodeJob;

use crate::error::StoreError;
use crate::model::job::{Job, JobError};
use crate::model::signed_url::{Scope, UrlToken};
use crate::model::video::VideoStatus;
use crate::ports::{Jobs as _, Outbound as _, OutboundRequest, Platform, Sql as _};
use crate::services::videos;
use crate::store::{events, videos as stored_videos};
use crate::webhooks;

/// Most times one recording's job is sent before its video is given up as `failed`.
pub const MAX_SENDS: u32 = 5;

/// The recording a transcode job makes a video of.
#[derive(Debug, Clone, Copy)]
pub struct Recording<'a> {
    /// The video to produce.
    pub video_id: &'a str,
    /// Its channel.
    pub channel_id: &'a str,
    /// The broadcast whose segments make it.
    pub broadcast_id: &'a str,
}

/// Runs a [`Job::Transcode`]: the first sending (`attempt` 0), or a re-drive check, which
/// sends again only while the video is still `processing` (and gives it up as `failed`
/// after [`MAX_SENDS`]); after each sending the next check is queued.
///
/// # Errors
/// As [`send`]; the queue retries a [`JobError::Store`].
pub async fn run<P: Platform>(
    p: &P,
    recording: &Recording<'_>,
    attempt: u32,
) -> Result<(), JobError> {
    if attempt > 0 {
        let video = stored_videos::by_id(p.sql(), recording.video_id).await?;
        if video.is_none_or(|v| v.status != VideoStatus::Processing) {
            // Answered (or deleted) since: nothing was lost.
            return Ok(());
        }
        if attempt >= MAX_SENDS {
            let now = p.clock().now_ms() as i64;
            let error = serde_json::json!({
                "code": "no_answer",
                "message": format!("the transcoder did not answer after {MAX_SENDS} sendings"),
            });
            p.sql()
                .batch(&[
                    stored_videos::mark_failed(recording.video_id, now),
                    events::record(recording.video_id, "transcode.failed", &error, now),
                ])
                .await?;
            return Ok(());
        }
    }
    let sent = send(
        p,
        recording.video_id,
        recording.channel_id,
        recording.broadcast_id,
    )
    .await?;
    let redrive_s = p.config().transcode_redrive_s;
    if sent && redrive_s > 0 {
        let check = Job::Transcode {
            video_id: recording.video_id.to_owned(),
            channel_id: recording.channel_id.to_owned(),
            broadcast_id: recording.broadcast_id.to_owned(),
            attempt: attempt + 1,
        };
        p.jobs()
            .enqueue_after(&check, u32::try_from(redrive_s).unwrap_or(u32::MAX))
            .await?;
    }
    Ok(())
}

/// Lifetime of the URLs handed to the transcoder, in seconds.
const JOB_URL_TTL_S: u64 = 6 * 3600;

/// Sends the transcode job of `video_id` (the recording of `broadcast_id`); `false` when
/// no transcoder is configured (nothing was sent).
///
/// # Errors
/// [`JobError::Invalid`] when the transcoder refuses the job or nothing is configured to
/// take it; [`JobError::Store`] (retried) when it cannot be reached.
pub async fn send<P: Platform>(
    p: &P,
    video_id: &str,
    channel_id: &str,
    broadcast_id: &str,
) -> Result<bool, JobError> {
    let config = p.config();
    let (Some(transcoder_url), Some(secret)) = (&config.transcoder_url, &config.transcoder_secret)
    else {
        // No transcoder: the video stays `processing` and plays as VOD HLS.
        return Ok(false);
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
            url: format!(
                "{}/jobs",
                instance_url(transcoder_url, video_id, config.transcoder_instances)
            ),
            headers,
            body,
            timeout_ms: 10_000,
        })
        .await
        .map_err(|e| StoreError::backend("transcoder", e))?;
    match response.status {
        200..=299 => Ok(true),
        // The transcoder has a job of this id already (a re-sending carries freshly signed
        // URLs, so its body differs): it runs that one once and calls back; the re-drive
        // checks go on.
        409 if error_code(&response.body).as_deref() == Some("job_conflict") => Ok(true),
        408 | 429 | 500..=599 => {
            Err(StoreError::backend("transcoder", format!("answered {}", response.status)).into())
        }
        status => Err(JobError::Invalid(format!(
            "the transcoder refused the job ({status}): {}",
            String::from_utf8_lossy(&response.body)
        ))),
    }
}

/// The `error.code` of a JSON error body, if it has one.
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["error"]["code"].as_str().map(str::to_owned)
}

/// The container URL that names the transcoder's containers (`TRANSCODER_URL`).
pub const CONTAINER_URL: &str = "container://transcoder";

/// Where the job of `video_id` goes: with `container://transcoder` and several `instances`,
/// one container chosen by the video (`container://transcoder` for the first,
/// `container://transcoder-{k}` for the others), so a job and its re-sendings always reach
/// the same container and the jobs of many recordings spread evenly; any other URL as it is.
pub fn instance_url(transcoder_url: &str, video_id: &str, instances: u32) -> String {
    if transcoder_url != CONTAINER_URL || instances <= 1 {
        return transcoder_url.to_owned();
    }
    // FNV-1a: stable across hosts and releases, unlike the standard library's hasher.
    let hash = video_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    match hash % instances {
        0 => transcoder_url.to_owned(),
        k => format!("{transcoder_url}-{k}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_spread_over_the_containers_and_stay_on_theirs() {
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..300 {
            let video = format!("vid_{i:012}");
            let url = instance_url(CONTAINER_URL, &video, 3);
            assert_eq!(url, instance_url(CONTAINER_URL, &video, 3), "stable");
            *seen.entry(url).or_insert(0) += 1;
        }
        let urls: Vec<_> = seen.keys().cloned().collect();
        assert_eq!(
            urls,
            [
                "container://transcoder",
                "container://transcoder-1",
                "container://transcoder-2"
            ]
        );
        assert!(seen.values().all(|&n| n > 60), "{seen:?}");
        // One instance, or a plain URL: unchanged.
        assert_eq!(instance_url(CONTAINER_URL, "vid_a", 1), CONTAINER_URL);
        assert_eq!(
            instance_url("http://127.0.0.1:8790", "vid_a", 3),
            "http://127.0.0.1:8790"
        );
    }
}

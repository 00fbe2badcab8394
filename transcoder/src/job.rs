//! Transcode jobs: the signed request the worker sends, running it (download, stitch,
//! publish), and the signed callback reporting the result.
//!
//! Wire formats: `schema/transcode-job.schema.json` and `schema/transcode-callback.schema.json`.
//! Running a job is deterministic: the same inputs give the same MP4 bytes, and the callback
//! carries the same `webhook-id` (`transcode_{job_id}`) on every attempt so the receiver can
//! deduplicate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgevideo_protocol::transcode::{
    is_url, FailureCode, Mp4Facts, TranscodeCallback, TranscodeJob,
};
use edgevideo_protocol::webhooks::{self, WebhookKey};

use crate::demux::{DemuxError, ReadProgress};
use crate::mux::{Progress, RemuxError, RemuxSummary};
use crate::stitch::{self, StitchError};
use crate::storage::{redact_url, Bucket, Source, Storage, StorageError};

/// Callback delivery attempts before giving up.
pub const CALLBACK_ATTEMPTS: u32 = 6;

/// The inputs of `job` as storage sources: URLs are fetched, anything else is an object key
/// in the configured store.
pub fn sources(job: &TranscodeJob) -> Vec<Source> {
    job.inputs
        .iter()
        .map(|i| {
            if is_url(i) {
                Source::Url(i.clone())
            } else {
                Source::Object(i.clone())
            }
        })
        .collect()
}

/// What a completed callback reports about the MP4.
pub fn mp4_facts(summary: &RemuxSummary) -> Mp4Facts {
    Mp4Facts {
        duration_seconds: summary.duration_seconds,
        width: summary.width,
        height: summary.height,
        size_bytes: summary.size_bytes,
        video_frames: summary.video_frames,
        audio_frames: summary.audio_frames,
    }
}

/// The callback for a failed job: its [`JobError::code`] and message.
pub fn failed_callback(job: &TranscodeJob, error: &JobError) -> TranscodeCallback {
    TranscodeCallback::failed(job, error.code(), error.to_string())
}

/// Seconds since the Unix epoch (the time of signatures and their checks).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Downloading an input or publishing the output failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The media could not be stitched.
    #[error(transparent)]
    Stitch(#[from] StitchError),
    /// A job needs a store (object keys) but none is configured.
    #[error("the job uses object keys but no store is configured (TRANSCODER_STORE)")]
    NoStore,
    /// A temporary directory could not be made.
    #[error("cannot create a work directory: {0}")]
    WorkDir(std::io::Error),
}

impl JobError {
    /// The callback's failure code.
    pub fn code(&self) -> FailureCode {
        match self {
            JobError::Storage(StorageError::NotFound(_)) => FailureCode::InputNotFound,
            JobError::Storage(_) | JobError::NoStore => FailureCode::StorageError,
            JobError::Stitch(StitchError::MissingInput(_)) => FailureCode::InputNotFound,
            JobError::Stitch(StitchError::Remux(
                RemuxError::NoVideo
                | RemuxError::NoInputs
                | RemuxError::Demux(
                    DemuxError::VideoSizeChanged { .. }
                    | DemuxError::AudioFormatChanged { .. }
                    | DemuxError::CodecChanged { .. }
                    | DemuxError::InvalidInit { .. }
                    | DemuxError::MissingInit(_),
                ),
            )) => FailureCode::InvalidMedia,
            JobError::Stitch(_) | JobError::WorkDir(_) => FailureCode::Internal,
        }
    }
}

/// Byte counters a running job exposes for status queries.
#[derive(Debug, Default)]
pub struct JobProgress {
    /// Input bytes to read in total (both passes).
    pub total: AtomicU64,
    /// Input bytes read so far.
    pub done: AtomicU64,
}

impl JobProgress {
    /// Fraction done, 0 to 1.
    pub fn fraction(&self) -> f64 {
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            0.0
        } else {
            (self.done.load(Ordering::Relaxed) as f64 / total as f64).min(1.0)
        }
    }
}

impl ReadProgress for JobProgress {
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Progress for JobProgress {
    fn start(&self, total_bytes: u64) {
        self.total.store(total_bytes, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }
    fn phase(&self, _name: &str) {}
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// Facts about the MP4.
    pub summary: RemuxSummary,
    /// Whether the poster asked for was published (`None`: none asked for).
    pub poster: Option<bool>,
}

/// Runs a job: downloads the inputs into `work_root`, stitches, publishes. A poster that
/// cannot be made does not fail the job (the callback says `"poster": false`).
///
/// # Errors
/// [`JobError`] for the first failure; nothing is published then.
pub fn run_job(
    job: &TranscodeJob,
    bucket: Option<&Bucket>,
    work_root: &Path,
    progress: &JobProgress,
) -> Result<JobOutcome, JobError> {
    let sources = sources(job);
    if bucket.is_none()
        && (job.output_key.is_some()
            || job.poster_key.is_some()
            || sources.iter().any(|s| matches!(s, Source::Object(_))))
    {
        return Err(JobError::NoStore);
    }
    std::fs::create_dir_all(work_root).map_err(JobError::WorkDir)?;
    let work = tempfile::Builder::new()
        .prefix(&format!("job-{}-", job.job_id))
        .tempdir_in(work_root)
        .map_err(JobError::WorkDir)?;
    let storage = Storage::new()?;
    let staged: Vec<PathBuf> = storage.stage(bucket, &sources, work.path())?;
    let output = work.path().join("output.mp4");
    let summary = stitch::stitch_files(&staged, &output, progress)?;
    match (&job.output_key, &job.output_url, bucket) {
        (Some(key), _, Some(bucket)) => storage.upload_object(&output, bucket, key)?,
        (None, Some(url), _) => storage.upload_url(&output, url, job.upload_part_bytes)?,
        _ => return Err(JobError::NoStore),
    }
    let poster = if job.poster_key.is_some() || job.poster_url.is_some() {
        let jpeg = work.path().join("poster.jpg");
        let published = crate::poster::make_poster(&staged, &jpeg)
            .map_err(|e| e.to_string())
            .and_then(|_| match (&job.poster_key, &job.poster_url, bucket) {
                (Some(key), _, Some(bucket)) => storage
                    .upload_object(&jpeg, bucket, key)
                    .map_err(|e| e.to_string()),
                (None, Some(url), _) => storage
                    .upload_url(&jpeg, url, None)
                    .map_err(|e| e.to_string()),
                _ => Err("no store for the poster".to_string()),
            });
        if let Err(e) = &published {
            eprintln!("job {}: no poster: {e}", job.job_id);
        }
        Some(published.is_ok())
    } else {
        None
    };
    Ok(JobOutcome { summary, poster })
}

/// POSTs the callback signed with `key`, retrying with exponential backoff and jitter on
/// network errors and non-2xx answers. Returns whether it was delivered.
pub fn deliver_callback(
    storage: &Storage,
    key: &WebhookKey,
    url: &str,
    callback: &TranscodeCallback,
    first_delay: Duration,
) -> bool {
    let Ok(body) = serde_json::to_vec(callback) else {
        return false;
    };
    let id = callback.webhook_id();
    let mut delay = first_delay;
    for attempt in 1..=CALLBACK_ATTEMPTS {
        let headers = webhooks::headers(std::slice::from_ref(key), &id, unix_now(), &body);
        match storage.post_json(url, &headers, &body) {
            Ok(status) if (200..300).contains(&status) => return true,
            Ok(status) => eprintln!(
                "callback {id} to {} answered {status} (attempt {attempt})",
                redact_url(url)
            ),
            Err(e) => eprintln!("callback {id}: {e} (attempt {attempt})"),
        }
        if attempt < CALLBACK_ATTEMPTS {
            std::thread::sleep(delay + jitter(delay));
            delay = delay.saturating_mul(2);
        }
    }
    false
}

/// Up to a quarter of `delay`, from the clock's nanoseconds (no need for a real RNG here).
fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let quarter = delay.as_millis() as u64 / 4;
    Duration::from_millis(if quarter == 0 {
        0
    } else {
        u64::from(nanos) % quarter
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> TranscodeJob {
        TranscodeJob {
            job_id: "job_1".into(),
            video_id: "vid_1".into(),
            inputs: vec!["live/a/seg0.ts".into(), "https://h/seg1.ts?sig=x".into()],
            output_key: Some("videos/vid_1/video.mp4".into()),
            output_url: None,
            callback_url: "http://127.0.0.1:1/cb".into(),
            poster_key: None,
            poster_url: None,
            upload_part_bytes: None,
        }
    }

    #[test]
    fn classifies_inputs() {
        assert_eq!(
            sources(&job()),
            vec![
                Source::Object("live/a/seg0.ts".into()),
                Source::Url("https://h/seg1.ts?sig=x".into())
            ]
        );
    }

    #[test]
    fn failure_codes() {
        let err = JobError::Stitch(StitchError::Remux(RemuxError::NoVideo));
        assert_eq!(err.code(), FailureCode::InvalidMedia);
        assert_eq!(
            JobError::Storage(StorageError::NotFound("k".into())).code(),
            FailureCode::InputNotFound
        );
        assert_eq!(JobError::NoStore.code(), FailureCode::StorageError);
        let cb = failed_callback(&job(), &err);
        let value = serde_json::to_value(&cb).unwrap();
        assert_eq!(value["type"], "transcode.failed");
        assert_eq!(value["error"]["code"], "invalid_media");
        assert_eq!(value["error"]["message"], err.to_string());
        assert!(value.get("width").is_none());
        assert_eq!(cb.webhook_id(), "transcode_job_1");
    }
}

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

use serde::{Deserialize, Serialize};

use crate::demux::{DemuxError, ReadProgress};
use crate::mux::{Progress, RemuxError, RemuxSummary};
use crate::stitch::{self, StitchError};
use crate::storage::{redact_url, Bucket, Source, Storage, StorageError};
use crate::webhook::{unix_now, WebhookKey};

/// Callback delivery attempts before giving up.
pub const CALLBACK_ATTEMPTS: u32 = 6;

/// A transcode job as sent by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeJob {
    /// Unique id of the job; re-sending the same id is harmless.
    pub job_id: String,
    /// The video the recording becomes.
    pub video_id: String,
    /// Segments in playback order: object keys in the configured store, or signed
    /// `http://` / `https://` GET URLs.
    pub inputs: Vec<String>,
    /// Key of the MP4 in the configured store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    /// Signed `PUT` URL for the MP4 (instead of `output_key`, e.g. for a local worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_url: Option<String>,
    /// Where the signed completion or failure callback is POSTed.
    pub callback_url: String,
    /// Key in the configured store for a JPEG of the first keyframe (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_key: Option<String>,
    /// Signed `PUT` URL for that JPEG (optional, instead of `poster_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
    /// An MP4 larger than this many bytes goes to `output_url` in parts (see
    /// [`crate::storage::Storage::upload_url`]); without it, in one `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_part_bytes: Option<u64>,
}

/// Why a job was refused before running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobValidationError {
    /// `job_id` is empty, too long or has characters other than `A-Za-z0-9_.-`.
    #[error("job_id must be 1-128 characters of A-Z a-z 0-9 _ . -")]
    BadJobId,
    /// `video_id` is empty.
    #[error("video_id must not be empty")]
    BadVideoId,
    /// No inputs.
    #[error("inputs must not be empty")]
    NoInputs,
    /// Neither or both of `output_key` and `output_url`.
    #[error("exactly one of output_key and output_url is required")]
    Output,
    /// The callback URL is not HTTP(S).
    #[error("callback_url must be an http or https URL")]
    CallbackUrl,
    /// Both or an empty one of `poster_key` and `poster_url`.
    #[error("give at most one of poster_key and poster_url, non-empty")]
    Poster,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

impl TranscodeJob {
    /// Checks the fields that JSON parsing cannot.
    ///
    /// # Errors
    /// [`JobValidationError`] naming the first problem.
    pub fn validate(&self) -> Result<(), JobValidationError> {
        let id_ok = !self.job_id.is_empty()
            && self.job_id.len() <= 128
            && !self.job_id.starts_with('.')
            && self
                .job_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !id_ok {
            return Err(JobValidationError::BadJobId);
        }
        if self.video_id.trim().is_empty() {
            return Err(JobValidationError::BadVideoId);
        }
        if self.inputs.is_empty() || self.inputs.iter().any(|i| i.trim().is_empty()) {
            return Err(JobValidationError::NoInputs);
        }
        match (&self.output_key, &self.output_url) {
            (Some(key), None) if !key.trim().is_empty() => {}
            (None, Some(url)) if is_url(url) => {}
            _ => return Err(JobValidationError::Output),
        }
        if !is_url(&self.callback_url) {
            return Err(JobValidationError::CallbackUrl);
        }
        match (&self.poster_key, &self.poster_url) {
            (Some(_), Some(_)) => return Err(JobValidationError::Poster),
            (Some(key), None) if key.trim().is_empty() => return Err(JobValidationError::Poster),
            (None, Some(url)) if !is_url(url) => return Err(JobValidationError::Poster),
            _ => {}
        }
        Ok(())
    }

    /// The inputs as storage sources.
    pub fn sources(&self) -> Vec<Source> {
        self.inputs
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
}

/// Outcome of a job, as sent in the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallbackType {
    /// The MP4 is published.
    #[serde(rename = "transcode.completed")]
    Completed,
    /// The job failed; nothing was published.
    #[serde(rename = "transcode.failed")]
    Failed,
}

/// Machine-readable failure reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackError {
    /// `invalid_media`, `input_not_found`, `storage_error` or `internal`.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

/// The callback body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscodeCallback {
    /// Completed or failed.
    #[serde(rename = "type")]
    pub kind: CallbackType,
    /// The job.
    pub job_id: String,
    /// The video.
    pub video_id: String,
    /// Where the MP4 is (completed jobs with `output_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    /// Where the poster JPEG is (when the job asked for one with `poster_key` and it was made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_key: Option<String>,
    /// Whether the poster asked for was published (absent when none was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster: Option<bool>,
    /// Presentation duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Picture width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Picture height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// MP4 size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Video frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_frames: Option<u64>,
    /// AAC frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_frames: Option<u64>,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallbackError>,
}

impl TranscodeCallback {
    /// The callback for a published MP4; `poster` says whether the poster asked for was made.
    pub fn completed(job: &TranscodeJob, summary: &RemuxSummary, poster: Option<bool>) -> Self {
        Self {
            kind: CallbackType::Completed,
            job_id: job.job_id.clone(),
            video_id: job.video_id.clone(),
            output_key: job.output_key.clone(),
            poster_key: job.poster_key.clone().filter(|_| poster == Some(true)),
            poster,
            duration_seconds: Some((summary.duration_seconds * 1000.0).round() / 1000.0),
            width: Some(summary.width),
            height: Some(summary.height),
            size_bytes: Some(summary.size_bytes),
            video_frames: Some(summary.video_frames),
            audio_frames: Some(summary.audio_frames),
            error: None,
        }
    }

    /// The callback for a failed job.
    pub fn failed(job: &TranscodeJob, error: &JobError) -> Self {
        Self {
            kind: CallbackType::Failed,
            job_id: job.job_id.clone(),
            video_id: job.video_id.clone(),
            output_key: None,
            poster_key: None,
            poster: None,
            duration_seconds: None,
            width: None,
            height: None,
            size_bytes: None,
            video_frames: None,
            audio_frames: None,
            error: Some(CallbackError {
                code: error.code().to_string(),
                message: error.to_string(),
            }),
        }
    }

    /// The `webhook-id` of this job's callback (the same on every attempt).
    pub fn webhook_id(&self) -> String {
        format!("transcode_{}", self.job_id)
    }
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
    /// The callback error code.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::Storage(StorageError::NotFound(_)) => "input_not_found",
            JobError::Storage(_) | JobError::NoStore => "storage_error",
            JobError::Stitch(StitchError::MissingInput(_)) => "input_not_found",
            JobError::Stitch(StitchError::Remux(
                RemuxError::NoVideo
                | RemuxError::NoInputs
                | RemuxError::Demux(
                    DemuxError::VideoSizeChanged { .. } | DemuxError::AudioFormatChanged { .. },
                ),
            )) => "invalid_media",
            JobError::Stitch(_) | JobError::WorkDir(_) => "internal",
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
    let sources = job.sources();
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
        let timestamp = unix_now();
        let headers = [
            ("webhook-id", id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", key.sign(&id, timestamp, &body)),
        ];
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
    fn validates_jobs() {
        assert_eq!(job().validate(), Ok(()));
        let mut j = job();
        j.job_id = "../x".into();
        assert_eq!(j.validate(), Err(JobValidationError::BadJobId));
        let mut j = job();
        j.output_url = Some("https://h/put".into());
        assert_eq!(j.validate(), Err(JobValidationError::Output));
        let mut j = job();
        j.inputs.clear();
        assert_eq!(j.validate(), Err(JobValidationError::NoInputs));
        let mut j = job();
        j.callback_url = "ftp://x".into();
        assert_eq!(j.validate(), Err(JobValidationError::CallbackUrl));
    }

    #[test]
    fn classifies_inputs() {
        assert_eq!(
            job().sources(),
            vec![
                Source::Object("live/a/seg0.ts".into()),
                Source::Url("https://h/seg1.ts?sig=x".into())
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = r#"{"job_id":"a","video_id":"b","inputs":["k"],"output_key":"o",
            "callback_url":"http://x","extra":1}"#;
        assert!(serde_json::from_str::<TranscodeJob>(text).is_err());
    }

    #[test]
    fn schema_examples_match_the_types() {
        let job_schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schema/transcode-job.schema.json")).unwrap();
        let examples = job_schema["examples"].as_array().unwrap();
        assert_eq!(examples.len(), 2);
        for example in examples {
            let job: TranscodeJob = serde_json::from_value(example.clone()).unwrap();
            assert_eq!(job.validate(), Ok(()));
            assert_eq!(&serde_json::to_value(&job).unwrap(), example);
        }
        let callback_schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schema/transcode-callback.schema.json"))
                .unwrap();
        for example in callback_schema["examples"].as_array().unwrap() {
            let callback: TranscodeCallback = serde_json::from_value(example.clone()).unwrap();
            assert_eq!(&serde_json::to_value(&callback).unwrap(), example);
        }
    }

    #[test]
    fn failure_codes() {
        let err = JobError::Stitch(StitchError::Remux(RemuxError::NoVideo));
        assert_eq!(err.code(), "invalid_media");
        let cb = TranscodeCallback::failed(&job(), &err);
        let value = serde_json::to_value(&cb).unwrap();
        assert_eq!(value["type"], "transcode.failed");
        assert_eq!(value["error"]["code"], "invalid_media");
        assert!(value.get("width").is_none());
        assert_eq!(cb.webhook_id(), "transcode_job_1");
    }
}

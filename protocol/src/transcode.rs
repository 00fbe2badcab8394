//! The transcoder's contract: the job the worker POSTs to `transcoder serve` and the callback
//! the transcoder POSTs back when the job ends. Both are signed with [`crate::webhooks`] and the
//! secret the two share (`TRANSCODER_SECRET`).
//!
//! The doc comments of these types are the descriptions in `schema/transcode-job.schema.json`
//! and `schema/transcode-callback.schema.json`, which are generated from them
//! ([`crate::schema`]).

use serde::{Deserialize, Serialize};

/// The pattern of a job id: 1 to 128 characters of `A-Z a-z 0-9 _ . -`, not starting with `.`
/// (it names a file in the transcoder's state directory).
pub const JOB_ID_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$";
/// The pattern of the URLs in a job: HTTP or HTTPS.
pub const URL_PATTERN: &str = "^https?://";

/// Body of POST /jobs on the transcoder (`transcoder serve`). The request is signed with the
/// Standard Webhooks scheme: headers webhook-id, webhook-timestamp (Unix seconds, within 5
/// minutes of the transcoder's clock) and webhook-signature (`v1,` + base64 HMAC-SHA256 over
/// `{id}.{timestamp}.{body}` with the base64-decoded part of the `whsec_` secret shared
/// through TRANSCODER_SECRET). Answers: 202 {job_id, status: queued} for a new job; 200
/// {job_id, status} for a job_id already known with the same body (nothing runs twice, no
/// second callback); 409 job_conflict for a known job_id with another body; 400 invalid_job;
/// 401 unauthenticated (no signature headers); 403 invalid_signature (wrong or stale); 413
/// too_large (over 1 MiB). Errors are {"error":{"code","message"}}. GET /jobs/{job_id}
/// answers {job_id, status: queued|running|completed|failed, progress: 0..1}.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(
        title = "Transcode job",
        extend(
            "oneOf" = [
                {"required": ["output_key"], "not": {"required": ["output_url"]}},
                {"required": ["output_url"], "not": {"required": ["output_key"]}}
            ],
            "not" = {"required": ["poster_key", "poster_url"]}
        )
    )
)]
#[serde(deny_unknown_fields)]
pub struct TranscodeJob {
    /// Unique id of the job and the idempotency key: re-sending it never runs the job again.
    /// It also names the callback's webhook-id (`transcode_{job_id}`).
    #[cfg_attr(feature = "schema", schemars(pattern(JOB_ID_PATTERN)))]
    pub job_id: String,
    /// The video the recording becomes; echoed in the callback.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub video_id: String,
    /// MPEG-TS segments in playback order. An entry starting with http:// or https:// is
    /// fetched with GET (a signed URL); any other entry is an object key in the transcoder's
    /// configured store (TRANSCODER_STORE). A missing input fails the job with
    /// input_not_found.
    #[cfg_attr(feature = "schema", schemars(length(min = 1), inner(length(min = 1))))]
    pub inputs: Vec<String>,
    /// Object key of the MP4 in the configured store. It is written by a single PUT or a
    /// multipart upload, so it appears only when complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub output_key: Option<String>,
    /// Signed PUT URL that receives the MP4 (for a worker whose bucket the transcoder cannot
    /// reach directly, such as the local set-up): in one request with Content-Length, or in
    /// parts (see upload_part_bytes). The receiver must store the object only when the body
    /// is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(pattern(URL_PATTERN)))]
    pub output_url: Option<String>,
    /// Where the signed completion or failure callback is POSTed (see
    /// transcode-callback.schema.json). Delivery retries with exponential backoff and jitter
    /// on errors and non-2xx answers (6 attempts).
    #[cfg_attr(feature = "schema", schemars(pattern(URL_PATTERN)))]
    pub callback_url: String,
    /// Optional: object key in the configured store for a JPEG of the first keyframe (the
    /// poster). A poster that cannot be made does not fail the job; the callback then says
    /// "poster": false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub poster_key: Option<String>,
    /// Optional: signed PUT URL for the poster JPEG, instead of poster_key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(pattern(URL_PATTERN)))]
    pub poster_url: Option<String>,
    /// With output_url: an MP4 larger than this many bytes is uploaded in parts instead of
    /// one PUT: POST {output_url}/parts answers 201 {upload_id, part_bytes}; each part (every
    /// one but the last exactly part_bytes long) goes to PUT
    /// {output_url}/parts/{n}?upload_id=... (n from 1) and answers {number, etag}; POST
    /// {output_url}/parts/complete with {upload_id, parts: [{number, etag}, ...]} answers 201
    /// {key, size}. The object appears only when complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub upload_part_bytes: Option<u64>,
}

/// Why a job was refused before running (checks its JSON Schema makes that parsing cannot).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobValidationError {
    /// `job_id` does not match [`JOB_ID_PATTERN`].
    #[error("job_id must be 1-128 characters of A-Z a-z 0-9 _ . -, not starting with .")]
    BadJobId,
    /// `video_id` is empty.
    #[error("video_id must not be empty")]
    BadVideoId,
    /// No inputs, or an empty one.
    #[error("inputs must not be empty")]
    NoInputs,
    /// Neither or both of `output_key` and `output_url`, or an empty key or a URL that is not
    /// HTTP(S).
    #[error("exactly one of output_key and output_url is required")]
    Output,
    /// The callback URL is not HTTP(S).
    #[error("callback_url must be an http or https URL")]
    CallbackUrl,
    /// Both or an empty one of `poster_key` and `poster_url`.
    #[error("give at most one of poster_key and poster_url, non-empty")]
    Poster,
    /// `upload_part_bytes` is 0.
    #[error("upload_part_bytes must be at least 1")]
    PartBytes,
    /// More than [`MAX_INPUTS`] inputs, a URL or key longer than [`MAX_LOCATION_LEN`], or a
    /// storage key that climbs out of the store (`..`, a leading `/`).
    #[error("the job exceeds a limit or names a key outside the store: {0}")]
    Limits(&'static str),
}

/// Most inputs one job may name (48 hours of 2 s segments, with room).
pub const MAX_INPUTS: usize = 100_000;
/// Longest URL or storage key a job may name.
pub const MAX_LOCATION_LEN: usize = 4096;

/// Whether `key` is a storage key inside the store: relative, no `..` segment, not too long.
fn is_store_key(key: &str) -> bool {
    key.len() <= MAX_LOCATION_LEN
        && !key.starts_with('/')
        && !key.split(['/', '\\']).any(|part| part == "..")
}

/// Whether `s` is an HTTP(S) URL, as [`URL_PATTERN`] says.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Whether `id` is a job id, as [`JOB_ID_PATTERN`] says.
pub fn is_valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl TranscodeJob {
    /// The `webhook-id` of the job's callback: the same on every attempt, so the receiver
    /// can deduplicate.
    pub fn callback_webhook_id(&self) -> String {
        callback_webhook_id(&self.job_id)
    }

    /// Checks what JSON parsing cannot (the constraints of the job's JSON Schema).
    ///
    /// # Errors
    /// [`JobValidationError`] naming the first problem.
    pub fn validate(&self) -> Result<(), JobValidationError> {
        if !is_valid_job_id(&self.job_id) {
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
        if self.upload_part_bytes == Some(0) {
            return Err(JobValidationError::PartBytes);
        }
        if self.inputs.len() > MAX_INPUTS {
            return Err(JobValidationError::Limits("too many inputs"));
        }
        let urls = self.inputs.iter().chain([&self.callback_url]);
        let urls = urls
            .chain(self.output_url.iter())
            .chain(self.poster_url.iter());
        if urls.into_iter().any(|u| u.len() > MAX_LOCATION_LEN) {
            return Err(JobValidationError::Limits("a URL is too long"));
        }
        if self
            .output_key
            .iter()
            .chain(self.poster_key.iter())
            .any(|k| !is_store_key(k))
        {
            return Err(JobValidationError::Limits(
                "a key leaves the store or is too long",
            ));
        }
        Ok(())
    }
}

/// The `webhook-id` of the callback of job `job_id`: `transcode_{job_id}`.
pub fn callback_webhook_id(job_id: &str) -> String {
    format!("transcode_{job_id}")
}

/// transcode.completed: the MP4 is published; transcode.failed: nothing was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CallbackType {
    /// The MP4 is published.
    #[serde(rename = "transcode.completed")]
    Completed,
    /// The job failed; nothing was published.
    #[serde(rename = "transcode.failed")]
    Failed,
}

/// invalid_media (no decodable H.264, format change inside the recording), input_not_found,
/// storage_error, internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// No decodable H.264, or the format changes inside the recording.
    InvalidMedia,
    /// An input does not exist.
    InputNotFound,
    /// Reading an input or writing the output failed.
    StorageError,
    /// Anything else.
    Internal,
}

impl FailureCode {
    /// The code as it is written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::InvalidMedia => "invalid_media",
            FailureCode::InputNotFound => "input_not_found",
            FailureCode::StorageError => "storage_error",
            FailureCode::Internal => "internal",
        }
    }
}

/// Why the job failed (transcode.failed only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CallbackError {
    /// invalid_media (no decodable H.264, format change inside the recording),
    /// input_not_found, storage_error, internal.
    pub code: FailureCode,
    /// Human-readable detail.
    pub message: String,
}

/// Facts about a published MP4, as a completed callback reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mp4Facts {
    /// Presentation duration in seconds.
    pub duration_seconds: f64,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Size of the MP4 in bytes.
    pub size_bytes: u64,
    /// Number of video frames.
    pub video_frames: u64,
    /// Number of AAC frames.
    pub audio_frames: u64,
}

/// Body the transcoder POSTs to a job's callback_url when the job ends. Signed with the
/// Standard Webhooks scheme and the same secret as jobs (TRANSCODER_SECRET): webhook-id is
/// `transcode_{job_id}` on every attempt, so the receiver deduplicates on it;
/// webhook-timestamp and webhook-signature as in the specification. The body of a job is
/// deterministic: a re-run gives the same MP4 bytes and the same callback body. Any 2xx
/// answer ends delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(
        title = "Transcode callback",
        extend("allOf" = [{
            "if": {"properties": {"type": {"const": "transcode.completed"}}},
            "then": {
                "required": [
                    "duration_seconds", "width", "height", "size_bytes", "video_frames",
                    "audio_frames"
                ],
                "not": {"required": ["error"]}
            },
            "else": {"required": ["error"]}
        }])
    )
)]
#[serde(deny_unknown_fields)]
pub struct TranscodeCallback {
    /// transcode.completed: the MP4 is published; transcode.failed: nothing was published.
    #[serde(rename = "type")]
    pub kind: CallbackType,
    /// The job.
    pub job_id: String,
    /// The video.
    pub video_id: String,
    /// The job's output_key (absent when the job used output_url, or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    /// The job's poster_key, when a poster was asked for and published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_key: Option<String>,
    /// Whether the poster asked for (poster_key or poster_url) was published; absent when
    /// none was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster: Option<bool>,
    /// Presentation duration of the MP4, in seconds (millisecond precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub duration_seconds: Option<f64>,
    /// Picture width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub width: Option<u32>,
    /// Picture height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub height: Option<u32>,
    /// Size of the MP4 in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Number of video frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_frames: Option<u64>,
    /// Number of AAC frames (1024 samples each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_frames: Option<u64>,
    /// Why the job failed (transcode.failed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallbackError>,
}

impl TranscodeCallback {
    /// The callback for a job whose MP4 is published; `poster` says whether the poster asked
    /// for was published (`None`: none was asked for). The duration is rounded to the
    /// millisecond.
    pub fn completed(job: &TranscodeJob, mp4: &Mp4Facts, poster: Option<bool>) -> Self {
        Self {
            kind: CallbackType::Completed,
            job_id: job.job_id.clone(),
            video_id: job.video_id.clone(),
            output_key: job.output_key.clone(),
            poster_key: job.poster_key.clone().filter(|_| poster == Some(true)),
            poster,
            duration_seconds: Some((mp4.duration_seconds * 1000.0).round() / 1000.0),
            width: Some(mp4.width),
            height: Some(mp4.height),
            size_bytes: Some(mp4.size_bytes),
            video_frames: Some(mp4.video_frames),
            audio_frames: Some(mp4.audio_frames),
            error: None,
        }
    }

    /// The callback for a failed job.
    pub fn failed(job: &TranscodeJob, code: FailureCode, message: String) -> Self {
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
            error: Some(CallbackError { code, message }),
        }
    }

    /// The `webhook-id` of this callback (the same on every attempt).
    pub fn webhook_id(&self) -> String {
        callback_webhook_id(&self.job_id)
    }
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
        type Change = fn(&mut TranscodeJob);
        let cases: [(Change, JobValidationError); 15] = [
            (|j| j.job_id = "../x".into(), JobValidationError::BadJobId),
            (|j| j.job_id = ".x".into(), JobValidationError::BadJobId),
            (|j| j.job_id = "x".repeat(129), JobValidationError::BadJobId),
            (|j| j.video_id = " ".into(), JobValidationError::BadVideoId),
            (|j| j.inputs.clear(), JobValidationError::NoInputs),
            (
                |j| j.output_url = Some("https://h/put".into()),
                JobValidationError::Output,
            ),
            (
                |j| {
                    j.output_key = None;
                    j.output_url = Some("ftp://h/put".into());
                },
                JobValidationError::Output,
            ),
            (
                |j| j.callback_url = "ftp://x".into(),
                JobValidationError::CallbackUrl,
            ),
            (
                |j| {
                    j.poster_key = Some("p.jpg".into());
                    j.poster_url = Some("https://h/p".into());
                },
                JobValidationError::Poster,
            ),
            (
                |j| j.upload_part_bytes = Some(0),
                JobValidationError::PartBytes,
            ),
            (
                |j| j.inputs = vec!["k".into(); MAX_INPUTS + 1],
                JobValidationError::Limits("too many inputs"),
            ),
            (
                |j| j.callback_url = format!("https://h/{}", "x".repeat(MAX_LOCATION_LEN)),
                JobValidationError::Limits("a URL is too long"),
            ),
            (
                |j| j.output_key = Some("videos/../../etc/passwd".into()),
                JobValidationError::Limits("a key leaves the store or is too long"),
            ),
            (
                |j| j.output_key = Some("/abs/video.mp4".into()),
                JobValidationError::Limits("a key leaves the store or is too long"),
            ),
            (
                |j| j.poster_key = Some("videos\\..\\p.jpg".into()),
                JobValidationError::Limits("a key leaves the store or is too long"),
            ),
        ];
        for (change, expected) in cases {
            let mut j = job();
            change(&mut j);
            assert_eq!(j.validate(), Err(expected), "{j:?}");
        }
        let mut j = job();
        j.job_id = "x".repeat(128);
        assert_eq!(j.validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = r#"{"job_id":"a","video_id":"b","inputs":["k"],"output_key":"o",
            "callback_url":"http://x","extra":1}"#;
        assert!(serde_json::from_str::<TranscodeJob>(text).is_err());
        let text = r#"{"type":"transcode.failed","job_id":"a","video_id":"b",
            "error":{"code":"internal","message":"m"},"extra":1}"#;
        assert!(serde_json::from_str::<TranscodeCallback>(text).is_err());
        let text = r#"{"type":"transcode.retried","job_id":"a","video_id":"b"}"#;
        assert!(serde_json::from_str::<TranscodeCallback>(text).is_err());
    }

    #[test]
    fn callbacks_say_what_happened() {
        let facts = Mp4Facts {
            duration_seconds: 8.000_4,
            width: 640,
            height: 360,
            size_bytes: 1234,
            video_frames: 240,
            audio_frames: 375,
        };
        let mut with_poster = job();
        with_poster.poster_key = Some("videos/vid_1/poster.jpg".into());
        let done = TranscodeCallback::completed(&with_poster, &facts, Some(true));
        let value = serde_json::to_value(&done).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "transcode.completed", "job_id": "job_1", "video_id": "vid_1",
                "output_key": "videos/vid_1/video.mp4", "poster_key": "videos/vid_1/poster.jpg",
                "poster": true, "duration_seconds": 8.0, "width": 640, "height": 360,
                "size_bytes": 1234, "video_frames": 240, "audio_frames": 375
            })
        );
        assert_eq!(
            serde_json::from_value::<TranscodeCallback>(value).unwrap(),
            done
        );
        // A poster asked for but not made: no key, `"poster": false`.
        let no_poster = TranscodeCallback::completed(&with_poster, &facts, Some(false));
        assert_eq!(no_poster.poster_key, None);
        assert_eq!(no_poster.poster, Some(false));

        let failed =
            TranscodeCallback::failed(&job(), FailureCode::InvalidMedia, "no H.264".into());
        let value = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "transcode.failed", "job_id": "job_1", "video_id": "vid_1",
                "error": {"code": "invalid_media", "message": "no H.264"}
            })
        );
        assert_eq!(failed.webhook_id(), "transcode_job_1");
        assert_eq!(job().callback_webhook_id(), "transcode_job_1");
        for code in [
            FailureCode::InvalidMedia,
            FailureCode::InputNotFound,
            FailureCode::StorageError,
            FailureCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}

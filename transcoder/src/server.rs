//! `transcoder serve`: a small HTTP job server for the edge worker's queue consumer.
//!
//! * `POST /jobs` with a signed [`TranscodeJob`] body (Standard Webhooks headers, see
//!   [`edgevideo_protocol::webhooks`]) answers `202` and runs the job on a worker thread; the
//!   signed [`TranscodeCallback`] goes to the job's `callback_url` when it ends.
//! * `GET /jobs/{job_id}` answers the job's status and progress (0 to 1) to a caller holding
//!   the same secret: the request carries Standard Webhooks headers whose signed content is
//!   the request path (`/jobs/{job_id}`, no query) in place of a body. Without them the answer
//!   is `401`, so whoever reaches the container learns nothing about jobs, not even which
//!   ids exist. A path starts with `/` and a job body is a JSON object, so neither signature
//!   passes for the other.
//! * `GET /healthz` answers `200`.
//!
//! **Idempotency.** Jobs are keyed by `job_id`. Sending a known id again (the queue's
//! at-least-once redelivery) does not run it twice: the answer is the job's current status,
//! and a finished job's record is kept on disk (`{state_dir}/{job_id}.json`) so that this holds
//! across restarts. A finished job whose callback could not be delivered is delivered again.
//! The same id for a different job (another video, outputs or inputs) is refused with `409`;
//! a re-sending whose URLs are signed afresh is the same job. Errors follow the API's
//! `{"error":{"code","message"}}` shape.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tiny_http::{Header, Method, Request, Response};

use edgevideo_protocol::transcode::{
    is_valid_job_id, CallbackType, TranscodeCallback, TranscodeJob,
};
use edgevideo_protocol::webhooks::{WebhookKey, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

use crate::job::{self, unix_now, JobProgress};
use crate::storage::{Bucket, Storage};

/// Largest accepted job body.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:8790`.
    pub listen: String,
    /// Key that verifies jobs and signs callbacks.
    pub key: WebhookKey,
    /// Store for object-key inputs and outputs.
    pub bucket: Option<Bucket>,
    /// Where finished jobs are recorded and inputs are staged.
    pub state_dir: PathBuf,
    /// Jobs run at the same time.
    pub workers: usize,
    /// First retry delay of callback delivery (doubles each attempt).
    pub callback_retry_delay: Duration,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {message}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        message: String,
    },
    /// The state directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Being processed.
    Running,
    /// Published and reported.
    Completed,
    /// Failed and reported.
    Failed,
}

/// What is kept on disk about a finished job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    job: TranscodeJob,
    callback: TranscodeCallback,
    delivered: bool,
}

struct JobEntry {
    job: TranscodeJob,
    status: JobStatus,
    progress: Arc<JobProgress>,
}

struct Shared {
    config: ServerConfig,
    jobs: Mutex<HashMap<String, JobEntry>>,
    queue: Mutex<mpsc::Sender<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked cannot leave the map inconsistent (entries are replaced whole).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn record_path(&self, job_id: &str) -> PathBuf {
        self.config.state_dir.join(format!("{job_id}.json"))
    }

    fn load_record(&self, job_id: &str) -> Option<JobRecord> {
        let text = std::fs::read(self.record_path(job_id)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn save_record(&self, record: &JobRecord) {
        let path = self.record_path(&record.job.job_id);
        let temp = path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temp, bytes))
            .and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            eprintln!("cannot record job {}: {e}", record.job.job_id);
        }
    }
}

/// Runs the server until the process ends.
///
/// # Errors
/// [`ServerError`] when it cannot start.
pub fn serve(config: ServerConfig) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|source| ServerError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let server = tiny_http::Server::http(&config.listen).map_err(|e| ServerError::Listen {
        address: config.listen.clone(),
        message: e.to_string(),
    })?;
    let (sender, receiver) = mpsc::channel::<String>();
    let receiver = Arc::new(Mutex::new(receiver));
    let shared = Arc::new(Shared {
        config,
        jobs: Mutex::new(HashMap::new()),
        queue: Mutex::new(sender),
    });
    for _ in 0..shared.config.workers.max(1) {
        let shared = Arc::clone(&shared);
        let receiver = Arc::clone(&receiver);
        std::thread::spawn(move || loop {
            let next = lock(&receiver).recv();
            match next {
                Ok(job_id) => run_queued(&shared, &job_id),
                Err(_) => return,
            }
        });
    }
    eprintln!(
        "transcoder listening on http://{}",
        server
            .server_addr()
            .to_ip()
            .map_or_else(|| shared.config.listen.clone(), |a| a.to_string())
    );
    // Each request is answered on its own thread, so a client that sends its body slowly
    // holds only its own thread; at most MAX_CONNECTIONS are served at once (the rest wait
    // in the listen queue).
    let slots = Arc::new(Slots::new(MAX_CONNECTIONS));
    for request in server.incoming_requests() {
        let slot = slots.take();
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            handle(&shared, request);
            drop(slot);
        });
    }
    Ok(())
}

/// Requests answered at once, each on its own thread.
const MAX_CONNECTIONS: usize = 32;

/// A counting semaphore over the request threads.
struct Slots {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

/// One request thread's slot, given back when dropped.
struct Slot(Arc<Slots>);

impl Slots {
    fn new(count: usize) -> Self {
        Self {
            free: Mutex::new(count),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for a free slot.
    fn take(self: &Arc<Self>) -> Slot {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        Slot(Arc::clone(self))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

fn run_queued(shared: &Shared, job_id: &str) {
    let (job, progress) = {
        let mut jobs = lock(&shared.jobs);
        let Some(entry) = jobs.get_mut(job_id) else {
            return;
        };
        entry.status = JobStatus::Running;
        (entry.job.clone(), Arc::clone(&entry.progress))
    };
    let work_root = shared.config.state_dir.join("work");
    let started = std::time::Instant::now();
    let callback = match job::run_job(&job, shared.config.bucket.as_ref(), &work_root, &progress) {
        Ok(outcome) => {
            let summary = &outcome.summary;
            // The wall time (inputs read, MP4 and poster made and stored) is what the
            // backlog benchmark adds up.
            eprintln!(
                "job {job_id}: {} frames, {:.3} s, {} bytes, done in {:.3} s",
                summary.video_frames,
                summary.duration_seconds,
                summary.size_bytes,
                started.elapsed().as_secs_f64()
            );
            TranscodeCallback::completed(&job, &job::mp4_facts(summary), outcome.poster)
        }
        Err(e) => {
            eprintln!("job {job_id} failed: {e}");
            job::failed_callback(&job, &e)
        }
    };
    let status = match callback.kind {
        CallbackType::Completed => JobStatus::Completed,
        CallbackType::Failed => JobStatus::Failed,
    };
    let mut record = JobRecord {
        job,
        callback,
        delivered: false,
    };
    shared.save_record(&record);
    if let Some(entry) = lock(&shared.jobs).get_mut(job_id) {
        entry.status = status;
    }
    record.delivered = deliver(shared, &record);
    shared.save_record(&record);
}

fn deliver(shared: &Shared, record: &JobRecord) -> bool {
    match Storage::new() {
        Ok(storage) => job::deliver_callback(
            &storage,
            &shared.config.key,
            &record.job.callback_url,
            &record.callback,
            shared.config.callback_retry_delay,
        ),
        Err(e) => {
            eprintln!("cannot deliver callback for {}: {e}", record.job.job_id);
            false
        }
    }
}

fn json_response(status: u16, body: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut response =
        Response::from_data(serde_json::to_vec(body).unwrap_or_default()).with_status_code(status);
    if let Ok(header) = Header::from_bytes("Content-Type", "application/json") {
        response = response.with_header(header);
    }
    response
}

fn error_response(status: u16, code: &str, message: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    json_response(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn handle(shared: &Arc<Shared>, mut request: Request) {
    let url = request.url().split('?').next().unwrap_or("").to_string();
    let response = match (request.method(), url.as_str()) {
        (Method::Get, "/healthz") => json_response(200, &serde_json::json!({"status": "ok"})),
        (Method::Post, "/jobs") => submit(shared, &mut request),
        (Method::Get, path) if path.starts_with("/jobs/") => {
            let lookup = |name: &str| header(&request, name);
            match authorize_read(&shared.config.key, lookup, path, unix_now()) {
                Ok(()) => status(shared, &path[6..]),
                Err(refusal) => refusal,
            }
        }
        (_, "/jobs") => error_response(405, "method_not_allowed", "use POST"),
        _ => error_response(404, "not_found", "no such route"),
    };
    if let Err(e) = request.respond(response) {
        eprintln!("cannot answer a request: {e}");
    }
}

fn submit(shared: &Arc<Shared>, request: &mut Request) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body);
    if read.is_err() {
        return error_response(400, "bad_request", "cannot read the body");
    }
    if body.len() as u64 > MAX_BODY_BYTES {
        return error_response(413, "too_large", "job body is larger than 1 MiB");
    }
    let signed = [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE];
    if signed.iter().all(|name| header(request, name).is_none()) {
        return error_response(401, "unauthenticated", "signature headers are missing");
    }
    if let Err(e) = shared
        .config
        .key
        .verify(|name| header(request, name), &body, unix_now())
    {
        return error_response(403, "invalid_signature", &e.to_string());
    }
    let job: TranscodeJob = match serde_json::from_slice(&body) {
        Ok(job) => job,
        Err(e) => return error_response(400, "invalid_job", &e.to_string()),
    };
    if let Err(e) = job.validate() {
        return error_response(400, "invalid_job", &e.to_string());
    }
    let job_id = job.job_id.clone();

    let mut jobs = lock(&shared.jobs);
    if let Some(entry) = jobs.get(&job_id) {
        if !same_job(&entry.job, &job) {
            return error_response(409, "job_conflict", "job_id was used for another job");
        }
        return accepted(200, &job_id, entry.status);
    }
    if let Some(mut record) = shared.load_record(&job_id) {
        if !same_job(&record.job, &job) {
            return error_response(409, "job_conflict", "job_id was used for another job");
        }
        // A re-sending carries freshly signed URLs: an undelivered callback goes to its.
        record.job = job;
        let status = match record.callback.kind {
            CallbackType::Completed => JobStatus::Completed,
            CallbackType::Failed => JobStatus::Failed,
        };
        if !record.delivered {
            let shared = Arc::clone(shared);
            std::thread::spawn(move || {
                let mut record = record;
                record.delivered = deliver(&shared, &record);
                shared.save_record(&record);
            });
        }
        return accepted(200, &job_id, status);
    }
    jobs.insert(
        job_id.clone(),
        JobEntry {
            job,
            status: JobStatus::Queued,
            progress: Arc::new(JobProgress::default()),
        },
    );
    drop(jobs);
    if lock(&shared.queue).send(job_id.clone()).is_err() {
        return error_response(503, "unavailable", "no worker is running");
    }
    accepted(202, &job_id, JobStatus::Queued)
}

/// Whether `a` and `b` are the same job: the same id, video, outputs and inputs, whatever
/// the signatures in their URLs (the edge signs a re-sending's URLs afresh).
fn same_job(a: &TranscodeJob, b: &TranscodeJob) -> bool {
    // Signed URLs carry their token in the path (`/play/{token}/...`) and may carry more in
    // the query: compare the file names they end in.
    let files = |job: &'_ TranscodeJob| -> Vec<String> {
        job.inputs
            .iter()
            .map(|url| {
                let path = url.split(['?', '#']).next().unwrap_or_default();
                path.rsplit('/').next().unwrap_or_default().to_owned()
            })
            .collect()
    };
    a.job_id == b.job_id
        && a.video_id == b.video_id
        && a.output_key == b.output_key
        && a.poster_key == b.poster_key
        && files(a) == files(b)
}

/// Checks the signature of a read (`GET /jobs/{job_id}`): Standard Webhooks headers over
/// `path` as the signed content. A refusal is a `401` either way (missing headers or a
/// signature that does not verify).
fn authorize_read<'h>(
    key: &WebhookKey,
    header: impl Fn(&'static str) -> Option<&'h str>,
    path: &str,
    now_s: u64,
) -> Result<(), Response<std::io::Cursor<Vec<u8>>>> {
    let signed = [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE];
    if signed.iter().all(|name| header(name).is_none()) {
        return Err(error_response(
            401,
            "unauthenticated",
            "signature headers are missing",
        ));
    }
    key.verify(header, path.as_bytes(), now_s)
        .map(|_| ())
        .map_err(|e| error_response(401, "invalid_signature", &e.to_string()))
}

fn accepted(code: u16, job_id: &str, status: JobStatus) -> Response<std::io::Cursor<Vec<u8>>> {
    json_response(
        code,
        &serde_json::json!({"job_id": job_id, "status": status}),
    )
}

fn status(shared: &Shared, job_id: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    if let Some(entry) = lock(&shared.jobs).get(job_id) {
        return json_response(
            200,
            &serde_json::json!({
                "job_id": job_id,
                "status": entry.status,
                "progress": entry.progress.fraction(),
            }),
        );
    }
    if is_valid_job_id(job_id) {
        if let Some(record) = shared.load_record(job_id) {
            return json_response(
                200,
                &serde_json::json!({
                    "job_id": job_id,
                    "status": match record.callback.kind {
                        CallbackType::Completed => JobStatus::Completed,
                        CallbackType::Failed => JobStatus::Failed,
                    },
                    "progress": 1.0,
                }),
            );
        }
    }
    error_response(404, "not_found", "unknown job")
}

/// The default state directory: `$TMPDIR/edgevideo-transcoder`.
pub fn default_state_dir() -> PathBuf {
    std::env::temp_dir().join("edgevideo-transcoder")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const NOW: u64 = 1_700_000_000;

    /// The status and error code of a read signed with `secret` over `signed_path`
    /// (`None`: no headers at all), checked against `path`.
    fn read(secret: Option<&str>, signed_path: &str, path: &str) -> (u16, String) {
        let headers: Vec<(&'static str, String)> = secret
            .map(|s| {
                let key = WebhookKey::from_secret(s).unwrap();
                edgevideo_protocol::webhooks::headers(
                    &[key],
                    "msg_read",
                    NOW,
                    signed_path.as_bytes(),
                )
                .to_vec()
            })
            .unwrap_or_default();
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        let key = WebhookKey::from_secret(SECRET).unwrap();
        match authorize_read(&key, lookup, path, NOW) {
            Ok(()) => (200, String::new()),
            Err(response) => {
                let status = response.status_code().0;
                let mut body = Vec::new();
                response.into_reader().read_to_end(&mut body).unwrap();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                (status, body["error"]["code"].as_str().unwrap().to_owned())
            }
        }
    }

    #[test]
    fn status_reads_need_a_signature_over_their_path() {
        assert_eq!(
            read(Some(SECRET), "/jobs/tr_1", "/jobs/tr_1"),
            (200, String::new())
        );
        assert_eq!(
            read(None, "", "/jobs/tr_1"),
            (401, "unauthenticated".into())
        );
        assert_eq!(
            read(Some(OTHER), "/jobs/tr_1", "/jobs/tr_1"),
            (401, "invalid_signature".into())
        );
        // A signature for another job's path, or for an empty body, does not read this one.
        assert_eq!(
            read(Some(SECRET), "/jobs/tr_2", "/jobs/tr_1"),
            (401, "invalid_signature".into())
        );
        assert_eq!(
            read(Some(SECRET), "", "/jobs/tr_1"),
            (401, "invalid_signature".into())
        );
    }
}

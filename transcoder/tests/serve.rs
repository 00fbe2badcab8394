//! `transcoder serve` end to end: signed jobs in, signed callbacks out, output in a store,
//! idempotent re-runs (also across a restart), refused signatures.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use edgevideo_protocol::webhooks::WebhookKey;
use edgevideo_transcoder::job::unix_now;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(store: &Path, state: &Path) -> Result<Server> {
    let port = free_port()?;
    let child = transcoder()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("TRANSCODER_SECRET", SECRET)
        .env("TRANSCODER_STORE", store)
        .env("TRANSCODER_STATE_DIR", state)
        .env("TRANSCODER_CALLBACK_RETRY_MS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Server { child, port };
    wait_for_port(port, Duration::from_secs(10))?;
    Ok(server)
}

fn signed_headers(id: &str, timestamp: u64, body: &[u8]) -> Result<Vec<(&'static str, String)>> {
    let key = WebhookKey::from_secret(SECRET)?;
    Ok(vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", key.sign(id, timestamp, body)),
        ("content-type", "application/json".to_string()),
    ])
}

/// `GET /jobs/{job_id}` signed as the worker signs it: the path is the signed content.
fn get_status(port: u16, job_id: &str) -> Result<(u16, serde_json::Value)> {
    let path = format!("/jobs/{job_id}");
    let mut headers = signed_headers("msg_status", unix_now(), path.as_bytes())?;
    headers.retain(|(name, _)| *name != "content-type");
    let (status, body) = http(port, "GET", &path, &headers, b"")?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

fn post_job(port: u16, job: &serde_json::Value) -> Result<(u16, serde_json::Value)> {
    let body = serde_json::to_vec(job)?;
    let headers = signed_headers("msg_job", unix_now(), &body)?;
    let (status, body) = http(port, "POST", "/jobs", &headers, &body)?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// The shared recording, generated once per test run (the tests run in parallel threads).
fn fixture() -> &'static [PathBuf] {
    static FIXTURE: OnceLock<Vec<PathBuf>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-fixture-8s");
        if !dir.join(".complete").exists() {
            let _ = std::fs::remove_dir_all(&dir);
            generate_segments(&dir, 8, &[]).expect("generate test media");
            std::fs::write(dir.join(".complete"), b"").expect("mark fixture");
        }
        segments_in(&dir).expect("list fixture")
    })
}

fn setup_store(store: &Path) -> Result<Vec<String>> {
    let segs = fixture();
    let live = store.join("live/ch1/b1");
    std::fs::create_dir_all(&live)?;
    let mut keys = Vec::new();
    for seg in segs {
        let name = seg
            .file_name()
            .context("name")?
            .to_string_lossy()
            .into_owned();
        std::fs::copy(seg, live.join(&name))?;
        keys.push(format!("live/ch1/b1/{name}"));
    }
    Ok(keys)
}

#[test]
fn signed_job_runs_once_and_calls_back_signed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = tmp.path().join("store");
    let state = tmp.path().join("state");
    let keys = setup_store(&store)?;
    let source_segs: Vec<PathBuf> = keys.iter().map(|k| store.join(k)).collect();
    let source = probe(&concat_url(&source_segs))?;
    let receiver = Receiver::start()?;
    let server = start_server(&store, &state)?;

    let job = serde_json::json!({
        "job_id": "job_0001",
        "video_id": "vid_1",
        "inputs": keys,
        "output_key": "videos/vid_1/video.mp4",
        "poster_key": "videos/vid_1/poster.jpg",
        "callback_url": receiver.url(),
    });
    let (status, answer) = post_job(server.port, &job)?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "queued");

    let calls = receiver.wait_for(1, Duration::from_secs(60));
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let key = WebhookKey::from_secret(SECRET)?;
    key.verify(|name| call.header(name), &call.body, unix_now())?;
    assert_eq!(call.header("webhook-id"), Some("transcode_job_0001"));
    let callback: serde_json::Value = serde_json::from_slice(&call.body)?;
    assert_eq!(callback["type"], "transcode.completed", "{callback}");
    if !matches_schema("transcode-callback.schema.json", &callback)?
        || !matches_schema("transcode-job.schema.json", &job)?
    {
        eprintln!("schema check skipped: python3 jsonschema is not installed");
    } else {
        let incomplete =
            serde_json::json!({"type": "transcode.completed", "job_id": "j", "video_id": "v"});
        assert!(matches_schema("transcode-callback.schema.json", &incomplete).is_err());
    }
    assert_eq!(callback["job_id"], "job_0001");
    assert_eq!(callback["video_id"], "vid_1");
    assert_eq!(callback["output_key"], "videos/vid_1/video.mp4");
    assert_eq!(callback["poster"], true);
    assert_eq!(callback["poster_key"], "videos/vid_1/poster.jpg");
    let poster = probe(&store.join("videos/vid_1/poster.jpg").display().to_string())?;
    assert_eq!((poster.width, poster.height), (640, 360));
    assert_eq!(callback["width"], 640);
    assert_eq!(callback["height"], 360);
    assert_eq!(callback["video_frames"], source.video_frames);
    assert_eq!(callback["audio_frames"], source.audio_frames);

    let output = store.join("videos/vid_1/video.mp4");
    assert_eq!(media_errors(&output)?, "");
    let ours = probe(&output.display().to_string())?;
    assert_eq!(ours.video_frames, source.video_frames);
    assert_eq!(callback["size_bytes"], std::fs::metadata(&output)?.len());
    let duration = callback["duration_seconds"].as_f64().unwrap_or(0.0);
    assert!(
        (duration - ours.format_duration).abs() < 0.002,
        "{duration} {ours:?}"
    );
    let first_bytes = std::fs::read(&output)?;

    let (status, answer) = get_status(server.port, "job_0001")?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["progress"], 1.0);
    // Unsigned, or signed with another secret: refused, nothing said about the job.
    let (status, answer) = http(server.port, "GET", "/jobs/job_0001", &[], b"")?;
    assert_eq!(status, 401);
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["error"]["code"], "unauthenticated");
    assert!(answer.get("status").is_none());
    let other = WebhookKey::from_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
    let forged =
        edgevideo_protocol::webhooks::headers(&[other], "msg_x", unix_now(), b"/jobs/job_0001");
    let (status, answer) = http(server.port, "GET", "/jobs/job_0001", &forged, b"")?;
    assert_eq!(status, 401);
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["error"]["code"], "invalid_signature");

    // Redelivery of the same job: no second run, no second callback.
    let (status, answer) = post_job(server.port, &job)?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "completed");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver.wait_for(2, Duration::from_millis(10)).len(), 1);

    // A re-sending whose URLs are signed afresh (the edge's re-drive) is the same job: its
    // status, no second run, no second callback.
    let mut resent = job.clone();
    resent["callback_url"] = format!("{}?sig=fresh", receiver.url()).into();
    let (status, answer) = post_job(server.port, &resent)?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "completed");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.wait_for(2, Duration::from_millis(10)).len(), 1);

    // The same id for another job is a conflict.
    let mut other = job.clone();
    other["output_key"] = "videos/other.mp4".into();
    let (status, _) = post_job(server.port, &other)?;
    assert_eq!(status, 409);

    // After a restart the finished job is still known.
    drop(server);
    let server = start_server(&store, &state)?;
    let (status, answer) = post_job(server.port, &job)?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "completed");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.wait_for(2, Duration::from_millis(10)).len(), 1);
    assert!(std::fs::read(&output)? == first_bytes);

    // A job under a new id reproduces the same bytes.
    let mut rerun = job.clone();
    rerun["job_id"] = "job_0002".into();
    rerun["output_key"] = "videos/vid_1/again.mp4".into();
    rerun["poster_key"] = "videos/vid_1/again.jpg".into();
    assert_eq!(post_job(server.port, &rerun)?.0, 202);
    assert_eq!(receiver.wait_for(2, Duration::from_secs(60)).len(), 2);
    assert!(std::fs::read(store.join("videos/vid_1/again.mp4"))? == first_bytes);
    Ok(())
}

#[test]
fn failed_job_calls_back_with_a_reason() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = tmp.path().join("store");
    let mut keys = setup_store(&store)?;
    keys.insert(1, "live/ch1/b1/missing.ts".into());
    let receiver = Receiver::start()?;
    let server = start_server(&store, &tmp.path().join("state"))?;
    let job = serde_json::json!({
        "job_id": "job_missing",
        "video_id": "vid_2",
        "inputs": keys,
        "output_key": "videos/vid_2/video.mp4",
        "callback_url": receiver.url(),
    });
    assert_eq!(post_job(server.port, &job)?.0, 202);
    let calls = receiver.wait_for(1, Duration::from_secs(60));
    assert_eq!(calls.len(), 1);
    let callback: serde_json::Value = serde_json::from_slice(&calls[0].body)?;
    assert_eq!(callback["type"], "transcode.failed", "{callback}");
    matches_schema("transcode-callback.schema.json", &callback)?;
    assert_eq!(callback["error"]["code"], "input_not_found");
    assert!(!store.join("videos/vid_2/video.mp4").exists());
    Ok(())
}

#[test]
fn unsigned_stale_or_tampered_jobs_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = tmp.path().join("store");
    let server = start_server(&store, &tmp.path().join("state"))?;
    let body = serde_json::to_vec(&serde_json::json!({
        "job_id": "job_x", "video_id": "v", "inputs": ["a.ts"],
        "output_key": "o.mp4", "callback_url": "http://127.0.0.1:9/cb"
    }))?;

    let (status, answer) = http(server.port, "POST", "/jobs", &[], &body)?;
    assert_eq!(status, 401);
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["error"]["code"], "unauthenticated");

    let stale = signed_headers("msg_1", unix_now() - 600, &body)?;
    assert_eq!(http(server.port, "POST", "/jobs", &stale, &body)?.0, 403);

    let headers = signed_headers("msg_1", unix_now(), &body)?;
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (status, answer) = http(server.port, "POST", "/jobs", &headers, &tampered)?;
    assert_eq!(status, 403);
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["error"]["code"], "invalid_signature");

    let invalid = serde_json::to_vec(&serde_json::json!({"job_id": "x"}))?;
    let headers = signed_headers("msg_2", unix_now(), &invalid)?;
    assert_eq!(
        http(server.port, "POST", "/jobs", &headers, &invalid)?.0,
        400
    );

    // A status read: unsigned is refused before the job is looked up; signed, an unknown
    // job is a 404.
    assert_eq!(http(server.port, "GET", "/jobs/job_x", &[], b"")?.0, 401);
    assert_eq!(get_status(server.port, "job_x")?.0, 404);
    assert_eq!(http(server.port, "GET", "/healthz", &[], b"")?.0, 200);
    Ok(())
}

#[test]
fn a_client_that_sends_slowly_does_not_hold_up_others() -> Result<()> {
    use std::io::Write as _;
    let tmp = tempfile::tempdir()?;
    let server = start_server(&tmp.path().join("store"), &tmp.path().join("state"))?;
    // Headers announce a body that never comes.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", server.port))?;
    slow.write_all(b"POST /jobs HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")?;
    slow.flush()?;
    let started = std::time::Instant::now();
    assert_eq!(http(server.port, "GET", "/healthz", &[], b"")?.0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(slow);
    Ok(())
}

/// A CMAF recording (init segment + `.m4s` segments, Opus audio), generated once.
fn cmaf_fixture() -> &'static [PathBuf] {
    static FIXTURE: OnceLock<Vec<PathBuf>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-fixture-cmaf-4s");
        if !dir.join(".complete").exists() {
            let _ = std::fs::remove_dir_all(&dir);
            generate_cmaf(&dir, 4, "libopus", &[]).expect("generate CMAF test media");
            std::fs::write(dir.join(".complete"), b"").expect("mark fixture");
        }
        cmaf_segments_in(&dir).expect("list fixture")
    })
}

#[test]
fn cmaf_job_with_init_and_segments_completes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = tmp.path().join("store");
    let live = store.join("live/ch2/b7");
    std::fs::create_dir_all(&live)?;
    // The inputs are the init segment then the media segments, in order; the container is
    // recognised by content (the staged copies carry no meaningful names).
    let mut keys = Vec::new();
    for seg in cmaf_fixture() {
        let name = seg
            .file_name()
            .context("name")?
            .to_string_lossy()
            .into_owned();
        std::fs::copy(seg, live.join(&name))?;
        keys.push(format!("live/ch2/b7/{name}"));
    }
    let source = probe(
        &cmaf_fixture()[0]
            .with_file_name("index.m3u8")
            .display()
            .to_string(),
    )?;
    let receiver = Receiver::start()?;
    let server = start_server(&store, &tmp.path().join("state"))?;
    let job = serde_json::json!({
        "job_id": "job_cmaf",
        "video_id": "vid_cmaf",
        "inputs": keys,
        "output_key": "videos/vid_cmaf/video.mp4",
        "poster_key": "videos/vid_cmaf/poster.jpg",
        "callback_url": receiver.url(),
    });
    assert_eq!(post_job(server.port, &job)?.0, 202);
    let calls = receiver.wait_for(1, Duration::from_secs(60));
    assert_eq!(calls.len(), 1);
    let callback: serde_json::Value = serde_json::from_slice(&calls[0].body)?;
    assert_eq!(callback["type"], "transcode.completed", "{callback}");
    assert_eq!(callback["poster"], true);
    assert_eq!(callback["video_frames"], source.video_frames);
    assert_eq!(callback["audio_frames"], source.audio_frames);
    let output = store.join("videos/vid_cmaf/video.mp4");
    assert_eq!(media_errors(&output)?, "");
    assert_eq!(top_level_boxes(&output)?, vec!["ftyp", "moov", "mdat"]);
    let ours = probe(&output.display().to_string())?;
    assert_eq!(ours.video_frames, source.video_frames);
    assert_eq!(ours.audio_frames, source.audio_frames);
    let poster = probe(
        &store
            .join("videos/vid_cmaf/poster.jpg")
            .display()
            .to_string(),
    )?;
    assert_eq!((poster.width, poster.height), (640, 360));
    Ok(())
}

//! The S3 path against a real S3-compatible server (moto's, from PyPI: `moto[server]`, see
//! `tests/requirements.txt`): segments listed and downloaded from a bucket prefix, the MP4
//! uploaded with a multipart upload, and segments fetched through plain HTTP GET URLs.
//! Skipped, with a message, when `moto_server` is not on PATH, unless `EDGEVIDEO_REQUIRE_ALL=1`
//! (set by `make test`), which makes a missing `moto_server` a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Result};
use common::*;
use edgevideo_transcoder::storage::{Bucket, Storage, PART_SIZE};

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn start_moto() -> Result<Moto> {
    let port = free_port()?;
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let moto = Moto { child, port };
    wait_for_port(port, Duration::from_secs(30))?;
    Ok(moto)
}

fn aws_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

/// A recording whose MP4 is larger than one upload part (lossless, so it is big).
fn big_fixture() -> Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("s3-fixture-24s-lossless");
    if !dir.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        generate_segments(&dir, 24, &["-qp", "0"])?;
        std::fs::write(dir.join(".complete"), b"")?;
    }
    segments_in(&dir)
}

#[test]
fn stitches_from_and_to_an_s3_bucket() -> Result<()> {
    if !on_path("moto_server") {
        let why = "moto_server is not on PATH (pip install -r tests/requirements.txt)";
        if std::env::var_os("EDGEVIDEO_REQUIRE_ALL").is_some_and(|v| v == "1") {
            bail!("{why}, and EDGEVIDEO_REQUIRE_ALL=1 requires it");
        }
        eprintln!("SKIPPED: {why}");
        return Ok(());
    }
    let segs = big_fixture()?;
    let moto = start_moto()?;
    let env = aws_env(moto.port);
    for (name, value) in &env {
        // This test binary has a single test, so no other thread reads the environment.
        std::env::set_var(name, value);
    }
    let (status, _) = http(moto.port, "PUT", "/edgevideo", &[], b"")?;
    assert_eq!(status, 200, "create bucket");

    let bucket = Bucket::open("s3://edgevideo")?;
    let storage = Storage::new()?;
    for seg in &segs {
        let name = seg.file_name().unwrap_or_default().to_string_lossy();
        storage.upload_object(seg, &bucket, &format!("live/ch1/b1/{name}"))?;
    }

    let tmp = tempfile::tempdir()?;
    let output = transcoder()
        .args(["stitch", "--from", "s3://edgevideo/live/ch1/b1"])
        .args(["--to", "s3://edgevideo/videos/v1/video.mp4"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()?;
    if !output.status.success() {
        bail!("stitch failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let size = summary["size_bytes"].as_u64().unwrap_or(0);
    assert!(
        size > PART_SIZE as u64,
        "the MP4 must need a multipart upload ({size} bytes)"
    );

    let downloaded = tmp.path().join("from-s3.mp4");
    storage.download_object(&bucket, "videos/v1/video.mp4", &downloaded)?;
    let local = tmp.path().join("local.mp4");
    let files: Vec<&Path> = segs.iter().map(PathBuf::as_path).collect();
    stitch(&files, &local)?;
    assert!(
        std::fs::read(&downloaded)? == std::fs::read(&local)?,
        "the uploaded MP4 differs from a local stitch"
    );
    assert_eq!(media_errors(&downloaded)?, "");
    let source = probe(&concat_url(&segs))?;
    let ours = probe(&downloaded.display().to_string())?;
    assert_eq!(ours.video_frames, source.video_frames);
    assert_eq!(ours.audio_frames, source.audio_frames);

    // The same segments as HTTP GET URLs (moto serves them without a signature check).
    let urls: Vec<String> = segs
        .iter()
        .map(|s| {
            let name = s
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            format!(
                "http://127.0.0.1:{}/edgevideo/live/ch1/b1/{name}?X-Signature=x",
                moto.port
            )
        })
        .collect();
    let from_urls = tmp.path().join("from-urls.mp4");
    let output = transcoder()
        .args(["stitch", "--from"])
        .args(&urls)
        .arg("--to")
        .arg(&from_urls)
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(std::fs::read(&from_urls)? == std::fs::read(&local)?);

    // A missing object is a clear error.
    let output = transcoder()
        .args(["stitch", "--from", &urls[0]])
        .arg(format!(
            "http://127.0.0.1:{}/edgevideo/live/ch1/b1/nope.ts?sig=secret",
            moto.port
        ))
        .arg("--to")
        .arg(tmp.path().join("never.mp4"))
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "signatures must not be logged: {stderr}"
    );
    assert!(!tmp.path().join("never.mp4").exists());
    Ok(())
}

//! End-to-end tests of `transcoder stitch` on recordings generated with ffmpeg: the MP4 must
//! pass ffprobe and a full decode without a message, and hold the source's frames and
//! duration; damaged recordings must be recovered as documented or refused clearly.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use common::*;

/// Seconds of the shared recording (six 2 s segments).
const SECONDS: u32 = 12;

/// The shared recording, generated once per test run into the target's tmp dir.
fn fixture() -> &'static [PathBuf] {
    static FIXTURE: OnceLock<Vec<PathBuf>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stitch-fixture-12s");
        let marker = dir.join(".complete");
        if !marker.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            generate_segments(&dir, SECONDS, &[]).expect("generate test media");
            std::fs::write(&marker, b"").expect("mark fixture");
        }
        segments_in(&dir).expect("list fixture")
    })
}

/// Copies the fixture's segments into a fresh directory.
fn copy_fixture(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut copies = Vec::new();
    for seg in fixture() {
        let to = dir.join(seg.file_name().unwrap_or_default());
        std::fs::copy(seg, &to)?;
        copies.push(to);
    }
    Ok(copies)
}

fn frames_of(seg: &Path) -> Result<(u64, u64)> {
    let p = probe(&seg.display().to_string())?;
    Ok((p.video_frames, p.audio_frames))
}

#[test]
fn stitched_mp4_matches_the_source() -> Result<()> {
    let segs = fixture();
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("video.mp4");
    let dir = segs[0].parent().unwrap_or(Path::new("."));
    let summary = stitch(&[dir], &out)?;

    assert_eq!(media_errors(&out)?, "", "ffprobe/ffmpeg reported errors");
    assert_eq!(top_level_boxes(&out)?, vec!["ftyp", "moov", "mdat"]);

    let source = probe(&concat_url(segs))?;
    let ours = probe(&out.display().to_string())?;
    assert_eq!(source.video_frames, u64::from(SECONDS) * 30);
    assert_eq!(ours.video_frames, source.video_frames);
    assert_eq!(ours.audio_frames, source.audio_frames);
    assert!(source.audio_frames > 500, "{source:?}");
    assert!(
        (ours.video_duration - source.video_duration).abs() < 0.001,
        "{ours:?} {source:?}"
    );
    // ffprobe estimates the TS audio end; ours is exact, so allow one AAC frame.
    assert!(
        (ours.format_duration - source.format_duration).abs() < 0.022,
        "{ours:?} {source:?}"
    );
    assert_eq!((ours.width, ours.height), (640, 360));
    assert!(ours.has_b_frames > 0, "B-frames must survive: {ours:?}");

    // The same as ffmpeg's own remux.
    let reference = tmp.path().join("ffmpeg.mp4");
    ffmpeg_remux(segs, &reference)?;
    let theirs = probe(&reference.display().to_string())?;
    assert!(
        (ours.format_duration - theirs.format_duration).abs() < 0.002,
        "{ours:?} {theirs:?}"
    );
    assert_eq!(ours.video_frames, theirs.video_frames);
    assert_eq!(ours.audio_frames, theirs.audio_frames);

    // The summary tells the truth.
    assert_eq!(summary["width"], 640);
    assert_eq!(summary["height"], 360);
    assert_eq!(summary["video_frames"], ours.video_frames);
    assert_eq!(summary["audio_frames"], ours.audio_frames);
    assert_eq!(summary["size_bytes"], std::fs::metadata(&out)?.len());
    let duration = summary["duration_seconds"].as_f64().unwrap_or(0.0);
    assert!(
        (duration - ours.format_duration).abs() < 0.002,
        "{duration}"
    );

    // Re-running gives the same bytes; no temporary file is left behind.
    let again = tmp.path().join("again.mp4");
    let files: Vec<&Path> = segs.iter().map(PathBuf::as_path).collect();
    stitch(&files, &again)?;
    assert!(
        std::fs::read(&out)? == std::fs::read(&again)?,
        "output is not deterministic"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

#[test]
fn truncated_segment_keeps_what_is_whole() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let segs = copy_fixture(&tmp.path().join("in"))?;
    let (total_video, _) = frames_of(Path::new(&concat_url(&segs)))?;
    let victim = &segs[2];
    let len = std::fs::metadata(victim)?.len();
    // Cut in the middle of a packet.
    let file = std::fs::OpenOptions::new().write(true).open(victim)?;
    file.set_len(len / 2 + 100)?;
    drop(file);

    let out = tmp.path().join("out.mp4");
    let summary = stitch(&[tmp.path().join("in").as_path()], &out)?;
    assert_eq!(media_errors(&out)?, "");
    let ours = probe(&out.display().to_string())?;
    assert!(ours.video_frames < total_video, "{ours:?}");
    assert!(ours.video_frames > total_video - 60, "{ours:?}");
    assert_eq!(summary["video_frames"], ours.video_frames);
    Ok(())
}

#[test]
fn garbage_segment_is_skipped_and_reported() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let segs = copy_fixture(&tmp.path().join("in"))?;
    let (seg_video, seg_audio) = frames_of(&segs[3])?;
    let source = probe(&concat_url(&segs))?;
    let mut noise = Vec::with_capacity(200_000);
    let mut x = 0x9e37_79b9u32;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    std::fs::write(&segs[3], noise)?;

    let out = tmp.path().join("out.mp4");
    let summary = stitch(&[tmp.path().join("in").as_path()], &out)?;
    assert_eq!(media_errors(&out)?, "");
    assert_eq!(summary["skipped_inputs"], serde_json::json!([3]));
    let ours = probe(&out.display().to_string())?;
    assert_eq!(ours.video_frames, source.video_frames - seg_video);
    // Audio frames straddling the cut may be lost at the segment edges.
    assert!(
        ours.audio_frames <= source.audio_frames - seg_audio + 2,
        "{ours:?}"
    );
    assert!(
        ours.audio_frames + 2 >= source.audio_frames - seg_audio,
        "{ours:?}"
    );
    Ok(())
}

#[test]
fn missing_listed_segment_is_an_error_and_writes_nothing() -> Result<()> {
    let segs = fixture();
    let tmp = tempfile::tempdir()?;
    let missing = tmp.path().join("seg999.ts");
    let out = tmp.path().join("out.mp4");
    let output = transcoder()
        .arg("stitch")
        .arg("--from")
        .arg(&segs[0])
        .arg(&missing)
        .arg(&segs[1])
        .arg("--to")
        .arg(&out)
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing input segment"), "{stderr}");
    assert!(stderr.contains("seg999.ts"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(tmp.path())?.count(),
        0,
        "nothing may be written"
    );
    Ok(())
}

#[test]
fn gap_left_by_a_missing_segment_is_closed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let segs = copy_fixture(&tmp.path().join("in"))?;
    let source = probe(&concat_url(&segs))?;
    let (seg_video, _) = frames_of(&segs[2])?;
    std::fs::remove_file(&segs[2])?;

    let out = tmp.path().join("out.mp4");
    let summary = stitch(&[tmp.path().join("in").as_path()], &out)?;
    assert_eq!(media_errors(&out)?, "");
    assert_eq!(summary["repairs"]["discontinuities"], 1);
    let ours = probe(&out.display().to_string())?;
    assert_eq!(ours.video_frames, source.video_frames - seg_video);
    // Playback runs straight through: no 2 s hole.
    let expected = source.video_duration - seg_video as f64 / 30.0;
    assert!(
        (ours.video_duration - expected).abs() < 0.001,
        "{ours:?} vs {expected}"
    );
    assert!(
        (ours.format_duration - expected).abs() < 0.05,
        "{ours:?} vs {expected}"
    );
    Ok(())
}

#[test]
fn segment_without_video_keeps_its_audio() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let segs = copy_fixture(&tmp.path().join("in"))?;
    let source = probe(&concat_url(&segs))?;
    let (seg_video, _) = frames_of(&segs[1])?;
    let audio_only = tmp.path().join("audio.ts");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(&segs[1])
        .args(["-map", "0:a", "-c", "copy", "-copyts", "-f", "mpegts"])
        .arg(&audio_only)
        .status()?;
    assert!(status.success());
    std::fs::rename(&audio_only, &segs[1])?;

    let out = tmp.path().join("out.mp4");
    stitch(&[tmp.path().join("in").as_path()], &out)?;
    assert_eq!(media_errors(&out)?, "");
    let ours = probe(&out.display().to_string())?;
    assert_eq!(ours.video_frames, source.video_frames - seg_video);
    assert_eq!(ours.audio_frames, source.audio_frames);
    Ok(())
}

#[test]
fn recording_without_video_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let audio_only = tmp.path().join("a.ts");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(&fixture()[0])
        .args(["-map", "0:a", "-c", "copy", "-f", "mpegts"])
        .arg(&audio_only)
        .status()?;
    assert!(status.success());
    let out = tmp.path().join("out.mp4");
    let output = transcoder()
        .args(["stitch", "--from"])
        .arg(&audio_only)
        .arg("--to")
        .arg(&out)
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no H.264 video"), "{stderr}");
    assert!(!out.exists());
    Ok(())
}

#[test]
fn empty_directory_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let output = transcoder()
        .args(["stitch", "--from"])
        .arg(tmp.path())
        .arg("--to")
        .arg(tmp.path().join("out.mp4"))
        .output()?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no .ts segments"));
    Ok(())
}

#[test]
fn timestamps_wrapping_at_33_bits_stay_continuous() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wrap");
    // 2^33 / 90 kHz = 95443.7 s: the clock wraps about 3.7 s into the recording.
    let segs = generate_segments(&dir, 8, &["-output_ts_offset", "95440"])?;
    let source = probe(&concat_url(&segs))?;
    let out = tmp.path().join("out.mp4");
    let summary = stitch(&[dir.as_path()], &out)?;
    assert_eq!(media_errors(&out)?, "");
    assert_eq!(summary["repairs"]["discontinuities"], 0);
    let ours = probe(&out.display().to_string())?;
    assert_eq!(ours.video_frames, 240);
    assert_eq!(ours.audio_frames, source.audio_frames);
    assert!((ours.video_duration - 8.0).abs() < 0.001, "{ours:?}");
    Ok(())
}

/// Raw RGB pixels of the first picture of `input`, decoded by ffmpeg.
fn first_picture_rgb(input: &Path) -> Result<Vec<u8>> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(input)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()?;
    anyhow::ensure!(output.status.success(), "ffmpeg could not decode {input:?}");
    Ok(output.stdout)
}

#[test]
fn poster_is_the_first_keyframe() -> Result<()> {
    let segs = fixture();
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("video.mp4");
    let poster = tmp.path().join("poster.jpg");
    let output = transcoder()
        .args(["stitch", "--from"])
        .arg(&segs[0])
        .arg(&segs[1])
        .arg("--to")
        .arg(&out)
        .arg("--poster")
        .arg(&poster)
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let jpeg = first_picture_rgb(&poster)?;
    let reference = first_picture_rgb(&segs[0])?;
    assert_eq!(jpeg.len(), 640 * 360 * 3);
    assert_eq!(jpeg.len(), reference.len());
    let total: u64 = jpeg
        .iter()
        .zip(&reference)
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    let mean = total as f64 / jpeg.len() as f64;
    assert!(
        mean < 4.0,
        "poster differs from the first frame by {mean} per channel"
    );
    Ok(())
}

#[test]
fn resolution_change_is_refused_clearly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let small = generate_segments(&tmp.path().join("small"), 2, &["-vf", "scale=320:240"])?;
    let out = tmp.path().join("out.mp4");
    let output = transcoder()
        .args(["stitch", "--from"])
        .arg(&fixture()[0])
        .arg(&small[0])
        .arg("--to")
        .arg(&out)
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("video size changes from 640x360 to 320x240"),
        "{stderr}"
    );
    assert!(!out.exists());
    Ok(())
}

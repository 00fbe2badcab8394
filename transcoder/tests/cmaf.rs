//! CMAF (fragmented MP4) recordings, as ffmpeg's HLS muxer writes them with
//! `-hls_segment_type fmp4`: H.264 + AAC and H.264 + Opus. The MP4 must pass ffprobe and a
//! full decode without a message, hold the source's frames, last as long as ffmpeg's own
//! remux of the playlist (within one video frame), be byte-identical on a re-run, and carry
//! the audio configuration through (`esds`, or `Opus` + `dOps` with the pre-skip cut by the
//! edit list). Damaged fragments are skipped and reported, format changes refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use common::*;
use edgevideo_transcoder::fmp4;
use edgevideo_transcoder::mux::remux;

/// Seconds of the shared recordings (three 2 s segments).
const SECONDS: u32 = 6;
/// One video frame at 30 fps.
const FRAME: f64 = 1.0 / 30.0;

fn fixture(audio_codec: &'static str) -> &'static [PathBuf] {
    static AAC: OnceLock<Vec<PathBuf>> = OnceLock::new();
    static OPUS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let cell = if audio_codec == "aac" { &AAC } else { &OPUS };
    cell.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cmaf-fixture-{audio_codec}"));
        let marker = dir.join(".complete");
        if !marker.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            generate_cmaf(&dir, SECONDS, audio_codec, &[]).expect("generate CMAF test media");
            std::fs::write(&marker, b"").expect("mark fixture");
        }
        cmaf_segments_in(&dir).expect("list fixture")
    })
}

/// Copies a fixture into a fresh directory; returns the copies (init first).
fn copy_fixture(audio_codec: &'static str, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut copies = Vec::new();
    for seg in fixture(audio_codec) {
        let to = dir.join(seg.file_name().unwrap_or_default());
        std::fs::copy(seg, &to)?;
        copies.push(to);
    }
    Ok(copies)
}

fn playlist(segs: &[PathBuf]) -> String {
    segs[0]
        .parent()
        .unwrap_or(Path::new("."))
        .join("index.m3u8")
        .display()
        .to_string()
}

/// `ffmpeg -i index.m3u8 -c copy` (the reference for durations).
fn ffmpeg_copy(input: &str, out: &Path) -> Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i", input])
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(out)
        .status()?;
    if !status.success() {
        bail!("ffmpeg remux failed");
    }
    Ok(())
}

/// `codec_name` and `extradata`-related facts of the audio stream.
fn audio_stream(file: &Path) -> Result<serde_json::Value> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(file)
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(v["streams"][0].clone())
}

/// The body of the first box of type `kind` in `data` (boxes nest; good enough for tests).
fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let at = data.windows(4).position(|w| w == kind)?;
    let size = u32::from_be_bytes(data.get(at - 4..at)?.try_into().ok()?) as usize;
    data.get(at + 4..at - 4 + size)
}

/// The `moov` box of one of our MP4s (`ftyp`, `moov`, `mdat`).
fn moov_of(mp4: &[u8]) -> &[u8] {
    let ftyp = u32::from_be_bytes([mp4[0], mp4[1], mp4[2], mp4[3]]) as usize;
    let size = u32::from_be_bytes([mp4[ftyp], mp4[ftyp + 1], mp4[ftyp + 2], mp4[ftyp + 3]]);
    &mp4[ftyp..ftyp + size as usize]
}

fn check_recording(audio_codec: &'static str) -> Result<(serde_json::Value, Vec<u8>)> {
    let segs = fixture(audio_codec);
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("video.mp4");
    let dir = segs[0].parent().unwrap_or(Path::new("."));
    let summary = stitch(&[dir], &out)?;

    assert_eq!(media_errors(&out)?, "", "ffprobe/ffmpeg reported errors");
    assert_eq!(top_level_boxes(&out)?, vec!["ftyp", "moov", "mdat"]);

    let source = probe(&playlist(segs))?;
    let ours = probe(&out.display().to_string())?;
    assert_eq!(source.video_frames, u64::from(SECONDS) * 30);
    assert_eq!(
        ours.video_frames, source.video_frames,
        "{ours:?} {source:?}"
    );
    assert_eq!(
        ours.audio_frames, source.audio_frames,
        "{ours:?} {source:?}"
    );
    assert!(source.audio_frames > 250, "{source:?}");
    assert!(
        (ours.video_duration - f64::from(SECONDS)).abs() < 0.001,
        "{ours:?}"
    );
    assert_eq!((ours.width, ours.height), (640, 360));
    assert!(ours.has_b_frames > 0, "B-frames must survive: {ours:?}");

    // As long as ffmpeg's own remux of the playlist, within one video frame.
    let reference = tmp.path().join("ffmpeg.mp4");
    ffmpeg_copy(&playlist(segs), &reference)?;
    let theirs = probe(&reference.display().to_string())?;
    assert!(
        (ours.format_duration - theirs.format_duration).abs() < FRAME,
        "{ours:?} {theirs:?}"
    );
    assert_eq!(ours.video_frames, theirs.video_frames);

    // The summary tells the truth.
    assert_eq!(summary["container"], "cmaf");
    assert_eq!(summary["video_frames"], ours.video_frames);
    assert_eq!(summary["audio_frames"], ours.audio_frames);
    assert_eq!(summary["skipped_inputs"], serde_json::json!([]));
    assert_eq!(summary["size_bytes"], std::fs::metadata(&out)?.len());
    let duration = summary["duration_seconds"].as_f64().unwrap_or(0.0);
    assert!(
        (duration - ours.format_duration).abs() < 0.002,
        "{duration} {ours:?}"
    );

    // Explicit files in order give the same bytes as the directory, on a re-run too.
    let again = tmp.path().join("again.mp4");
    let files: Vec<&Path> = segs.iter().map(PathBuf::as_path).collect();
    stitch(&files, &again)?;
    let bytes = std::fs::read(&out)?;
    assert!(
        bytes == std::fs::read(&again)?,
        "output is not deterministic"
    );
    Ok((audio_stream(&out)?, bytes))
}

#[test]
fn aac_recording_matches_the_source() -> Result<()> {
    let (audio, mp4) = check_recording("aac")?;
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["sample_rate"], "48000");
    assert_eq!(audio["channels"], 1);
    // The init segment's AudioSpecificConfig is carried through byte for byte.
    let init = std::fs::read(&fixture("aac")[0])?;
    let theirs = fmp4::parse_esds(find_box(&init, b"esds").expect("esds in the init"))?;
    let ours = fmp4::parse_esds(find_box(moov_of(&mp4), b"esds").expect("esds in the output"))?;
    assert!(theirs.is_some());
    assert_eq!(ours, theirs);
    Ok(())
}

#[test]
fn opus_recording_matches_the_source() -> Result<()> {
    let (audio, mp4) = check_recording("libopus")?;
    assert_eq!(audio["codec_name"], "opus");
    assert_eq!(audio["sample_rate"], "48000");
    // Opus sample entry and dOps as in the init segment (pre-skip, input rate, gain, mapping).
    let init = std::fs::read(&fixture("libopus")[0])?;
    let theirs = find_box(&init, b"dOps").expect("dOps in the init segment");
    let ours = find_box(moov_of(&mp4), b"dOps").expect("dOps in the output");
    assert_eq!(ours, theirs);
    assert!(find_box(moov_of(&mp4), b"Opus").is_some());
    let pre_skip = u16::from_be_bytes([ours[2], ours[3]]);
    assert!(pre_skip > 0);
    // The audio edit list starts after the pre-skip.
    let moov = moov_of(&mp4);
    let audio_trak = &moov[moov.windows(4).rposition(|w| w == b"trak").unwrap_or(0)..];
    let elst = find_box(audio_trak, b"elst").expect("audio edit list");
    let count = u32::from_be_bytes(elst[4..8].try_into()?) as usize;
    let last = &elst[8 + (count - 1) * 12..8 + count * 12];
    assert_eq!(
        i32::from_be_bytes(last[4..8].try_into()?),
        i32::from(pre_skip)
    );
    Ok(())
}

#[test]
fn poster_comes_from_the_cmaf_recording() -> Result<()> {
    let segs = fixture("libopus");
    let tmp = tempfile::tempdir()?;
    let poster = tmp.path().join("poster.jpg");
    let output = transcoder()
        .args(["stitch", "--from"])
        .args(segs)
        .arg("--to")
        .arg(tmp.path().join("video.mp4"))
        .arg("--poster")
        .arg(&poster)
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decode = |input: &Path| -> Result<Vec<u8>> {
        let output = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(input)
            .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()?;
        Ok(output.stdout)
    };
    let jpeg = decode(&poster)?;
    let reference = decode(&tmp.path().join("video.mp4"))?;
    assert_eq!(jpeg.len(), 640 * 360 * 3);
    assert_eq!(jpeg.len(), reference.len());
    let total: u64 = jpeg
        .iter()
        .zip(&reference)
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    let mean = total as f64 / jpeg.len() as f64;
    assert!(mean < 4.0, "poster differs from the first frame by {mean}");
    Ok(())
}

#[test]
fn truncated_segment_keeps_whole_samples() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let segs = copy_fixture("aac", &tmp.path().join("in"))?;
    let source = probe(&playlist(fixture("aac")))?;
    let victim = &segs[2];
    let len = std::fs::metadata(victim)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(victim)?
        .set_len(len / 2 + 101)?;

    let out = tmp.path().join("out.mp4");
    let summary = stitch(&[tmp.path().join("in").as_path()], &out)?;
    assert_eq!(media_errors(&out)?, "");
    let ours = probe(&out.display().to_string())?;
    assert!(ours.video_frames < source.video_frames, "{ours:?}");
    assert!(ours.video_frames > source.video_frames - 60, "{ours:?}");
    assert!(summary["repairs"]["samples_dropped"].as_u64().unwrap_or(0) > 0);
    assert_eq!(summary["video_frames"], ours.video_frames);
    Ok(())
}

#[test]
fn garbage_and_corrupt_fragments_are_skipped_and_reported() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let segs = copy_fixture("aac", &tmp.path().join("in"))?;
    let source = probe(&playlist(fixture("aac")))?;
    let seg_frames = probe(&playlist(fixture("aac")))?.video_frames / 3;
    // Segment 1: noise. Segment 2: its moof's trun declares an absurd sample count.
    let mut x = 0x9e37_79b9u32;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&segs[1], noise)?;
    let mut seg = std::fs::read(&segs[2])?;
    let trun = seg.windows(4).position(|w| w == b"trun").expect("trun");
    seg[trun + 8..trun + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&segs[2], seg)?;

    let out = tmp.path().join("out.mp4");
    let summary = stitch(&[tmp.path().join("in").as_path()], &out)?;
    assert_eq!(media_errors(&out)?, "");
    assert_eq!(summary["skipped_inputs"], serde_json::json!([1, 2]));
    assert_eq!(summary["repairs"]["fragments_skipped"], 1);
    let ours = probe(&out.display().to_string())?;
    assert_eq!(ours.video_frames, source.video_frames - 2 * seg_frames);
    Ok(())
}

#[test]
fn missing_init_segment_is_refused() -> Result<()> {
    let segs = fixture("aac");
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out.mp4");
    let output = transcoder()
        .args(["stitch", "--from"])
        .args(&segs[1..])
        .arg("--to")
        .arg(&out)
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without an init segment"), "{stderr}");
    assert!(!out.exists());
    Ok(())
}

#[test]
fn codec_and_size_changes_are_refused() -> Result<()> {
    let aac = fixture("aac");
    let opus = fixture("libopus");
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out.mp4");
    let refused = |inputs: &[&Path]| -> Result<String> {
        let output = transcoder()
            .args(["stitch", "--from"])
            .args(inputs)
            .arg("--to")
            .arg(&out)
            .output()?;
        assert!(!output.status.success());
        assert!(!out.exists());
        Ok(String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let stderr = refused(&[&aac[0], &aac[1], &opus[0], &opus[2]])?;
    assert!(
        stderr.contains("codec changes from AAC to Opus"),
        "{stderr}"
    );

    let small = generate_cmaf(
        &tmp.path().join("small"),
        2,
        "aac",
        &["-vf", "scale=320:240"],
    )?;
    let stderr = refused(&[&aac[0], &aac[1], &small[0], &small[1]])?;
    assert!(
        stderr.contains("video size changes from 640x360 to 320x240"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn mutated_fragments_never_panic() -> Result<()> {
    let segs = fixture("libopus");
    let tmp = tempfile::tempdir()?;
    let original = std::fs::read(&segs[1])?;
    let mut state = 0x5eed_cafe_f00d_0001u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut failed) = (0, 0);
    for round in 0..60 {
        let mut data = original.clone();
        match round % 3 {
            0 => {
                // Flip bytes in the first 2 KiB, where the moof is.
                for _ in 0..1 + next() % 20 {
                    let at = (next() % 2048) as usize % data.len();
                    data[at] ^= 1 << (next() % 8);
                }
            }
            1 => data.truncate((next() as usize % data.len()).max(1)),
            _ => {
                for _ in 0..1 + next() % 200 {
                    let at = next() as usize % data.len();
                    data[at] ^= 1 << (next() % 8);
                }
            }
        }
        let seg = tmp.path().join("seg.m4s");
        std::fs::write(&seg, data)?;
        let out = tmp.path().join("out.mp4");
        match remux(
            &[segs[0].as_path(), seg.as_path(), segs[2].as_path()],
            &out,
            &(),
        ) {
            Ok(summary) => {
                ok += 1;
                assert_eq!(
                    top_level_boxes(&out)?,
                    vec!["ftyp", "moov", "mdat"],
                    "round {round}"
                );
                assert_eq!(summary.size_bytes, std::fs::metadata(&out)?.len());
            }
            Err(_) => failed += 1,
        }
    }
    assert!(ok > 40, "only {ok} of 60 recovered ({failed} refused)");
    Ok(())
}

#[test]
fn small_fragments_with_negative_composition_offsets() -> Result<()> {
    // One file holding the init segment and 200 ms fragments (as browser muxers write several
    // fragments per segment), with signed composition offsets (`trun` version 1).
    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("fragmented.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "4", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
        ])
        .args([
            "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mp4",
        ])
        .args([
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof+negative_cts_offsets",
        ])
        .args(["-frag_duration", "200000"])
        .arg(&input)
        .status()?;
    assert!(status.success());
    let raw = std::fs::read(&input)?;
    assert!(
        raw.windows(4).filter(|w| w == b"moof").count() >= 20,
        "expected many fragments"
    );
    let out = tmp.path().join("out.mp4");
    let summary = stitch(&[input.as_path()], &out)?;
    assert_eq!(media_errors(&out)?, "");
    let source = probe(&input.display().to_string())?;
    let ours = probe(&out.display().to_string())?;
    assert_eq!(ours.video_frames, 120);
    assert_eq!(ours.audio_frames, source.audio_frames);
    assert!((ours.video_duration - 4.0).abs() < 0.001, "{ours:?}");
    assert!(ours.has_b_frames > 0, "{ours:?}");
    assert_eq!(summary["repairs"]["dts_repairs"], 0);
    assert_eq!(summary["repairs"]["fragments_skipped"], 0);
    Ok(())
}

#[test]
fn mediabunny_fragments_remux_like_ffmpeg_ones() -> Result<()> {
    // Needs node and the repository's `mediabunny` package (npm install); skipped without
    // them unless EDGEVIDEO_REQUIRE_ALL=1.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mediabunny_remux.mjs");
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node_modules/mediabunny");
    let have_node = Command::new("node").arg("--version").output().is_ok();
    if !have_node || !module.exists() {
        if std::env::var_os("EDGEVIDEO_REQUIRE_ALL").is_some_and(|v| v == "1") {
            bail!("node and node_modules/mediabunny are required (EDGEVIDEO_REQUIRE_ALL=1)");
        }
        eprintln!("skipped: node or node_modules/mediabunny is missing");
        return Ok(());
    }
    for codec in ["aac", "libopus"] {
        let segs = fixture(codec);
        let tmp = tempfile::tempdir()?;
        let whole = tmp.path().join("ffmpeg.mp4");
        let mut bytes = Vec::new();
        for seg in segs {
            bytes.extend(std::fs::read(seg)?);
        }
        std::fs::write(&whole, bytes)?;
        let rewritten = tmp.path().join("mediabunny.mp4");
        let status = Command::new("node")
            .arg(&script)
            .arg(&whole)
            .arg(&rewritten)
            .status()?;
        assert!(status.success(), "mediabunny remux failed");
        // Mediabunny writes signed composition offsets (trun version 1).
        let data = std::fs::read(&rewritten)?;
        let trun = data.windows(4).position(|w| w == b"trun").expect("trun");
        assert_eq!(data[trun + 4], 1, "trun version");

        let ours = tmp.path().join("ours.mp4");
        let summary = stitch(&[rewritten.as_path()], &ours)?;
        let reference = tmp.path().join("reference.mp4");
        stitch(&[whole.as_path()], &reference)?;
        assert_eq!(media_errors(&ours)?, "");
        let source = probe(&playlist(segs))?;
        let a = probe(&ours.display().to_string())?;
        let b = probe(&reference.display().to_string())?;
        assert_eq!(a.video_frames, source.video_frames);
        assert_eq!(a.audio_frames, source.audio_frames);
        assert!(
            (a.video_duration - b.video_duration).abs() < 0.001,
            "{a:?} {b:?}"
        );
        assert!(
            (a.format_duration - b.format_duration).abs() < 0.002,
            "{a:?} {b:?}"
        );
        assert_eq!(summary["repairs"]["dts_repairs"], 0);
    }
    Ok(())
}

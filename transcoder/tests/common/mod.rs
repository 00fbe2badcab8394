//! Helpers shared by the integration tests: ffmpeg-generated recordings, ffprobe checks, and
//! a minimal HTTP client and callback receiver.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The transcoder binary built for these tests.
pub fn transcoder() -> Command {
    Command::new(env!("CARGO_BIN_EXE_transcoder"))
}

/// Encodes `seconds` of test video (H.264 with B-frames, GOP 60, AAC 48 kHz) as 2 s HLS
/// segments `seg000.ts`... in `dir`. `extra` goes before the output options.
pub fn generate_segments(dir: &Path, seconds: u32, extra: &[&str]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60",
        ])
        .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "96k", "-ar", "48000"])
        .args(extra)
        .args(["-f", "hls", "-hls_time", "2", "-hls_list_size", "0"])
        .arg("-hls_segment_filename")
        .arg(dir.join("seg%03d.ts"))
        .arg(dir.join("index.m3u8"))
        .status()
        .context("ffmpeg must be installed")?;
    if !status.success() {
        bail!("ffmpeg failed to generate test media");
    }
    segments_in(dir)
}

/// Encodes `seconds` of test video (H.264 with B-frames, GOP 60) and a 48 kHz tone with
/// `audio_codec` (`aac` or `libopus`) as a CMAF HLS recording in `dir`: `init.mp4`,
/// 2 s segments `seg000.m4s`... and `index.m3u8`. `extra` goes before the output options.
/// Returns the init segment followed by the media segments.
pub fn generate_cmaf(
    dir: &Path,
    seconds: u32,
    audio_codec: &str,
    extra: &[&str],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60",
        ])
        .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p"])
        .args(["-c:a", audio_codec, "-b:a", "96k", "-ar", "48000"])
        .args(extra)
        .args(["-f", "hls", "-hls_time", "2", "-hls_list_size", "0"])
        .args(["-hls_segment_type", "fmp4", "-hls_playlist_type", "vod"])
        .args(["-hls_fmp4_init_filename", "init.mp4"])
        .arg("-hls_segment_filename")
        .arg(dir.join("seg%03d.m4s"))
        .arg(dir.join("index.m3u8"))
        .status()
        .context("ffmpeg must be installed")?;
    if !status.success() {
        bail!("ffmpeg failed to generate CMAF test media");
    }
    cmaf_segments_in(dir)
}

/// The init segment and the `.m4s` files of `dir`, sorted.
pub fn cmaf_segments_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "m4s"))
        .collect();
    segs.sort();
    segs.insert(0, dir.join("init.mp4"));
    Ok(segs)
}

/// The `.ts` files of `dir`, sorted.
pub fn segments_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    segs.sort();
    Ok(segs)
}

/// `concat:` URL of segments, as ffmpeg reads them back to back.
pub fn concat_url(segs: &[PathBuf]) -> String {
    let joined: Vec<String> = segs.iter().map(|p| p.display().to_string()).collect();
    format!("concat:{}", joined.join("|"))
}

/// Stream facts from `ffprobe -count_frames`.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub video_duration: f64,
    pub format_duration: f64,
    pub width: u64,
    pub height: u64,
    pub has_b_frames: u64,
}

pub fn probe(input: &str) -> Result<Probe> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
        ])
        .args(["-of", "json", input])
        .output()?;
    if !output.status.success() {
        bail!(
            "ffprobe failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let streams = v["streams"].as_array().context("no streams")?;
    let num = |s: &serde_json::Value, k: &str| -> f64 {
        s[k].as_str()
            .and_then(|x| x.parse().ok())
            .or_else(|| s[k].as_f64())
            .unwrap_or(0.0)
    };
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    let audio = streams.iter().find(|s| s["codec_type"] == "audio");
    Ok(Probe {
        video_frames: video.map_or(0.0, |s| num(s, "nb_read_frames")) as u64,
        audio_frames: audio.map_or(0.0, |s| num(s, "nb_read_frames")) as u64,
        video_duration: video.map_or(0.0, |s| num(s, "duration")),
        format_duration: num(&v["format"], "duration"),
        width: video.map_or(0.0, |s| num(s, "width")) as u64,
        height: video.map_or(0.0, |s| num(s, "height")) as u64,
        has_b_frames: video.map_or(0.0, |s| num(s, "has_b_frames")) as u64,
    })
}

/// Everything `ffprobe -v error` and a full `ffmpeg -v error` decode print (must be empty).
pub fn media_errors(file: &Path) -> Result<String> {
    let probe = Command::new("ffprobe")
        .args(["-v", "error"])
        .arg(file)
        .output()?;
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()?;
    Ok(format!(
        "{}{}{}{}",
        String::from_utf8_lossy(&probe.stdout),
        String::from_utf8_lossy(&probe.stderr),
        String::from_utf8_lossy(&decode.stdout),
        String::from_utf8_lossy(&decode.stderr)
    ))
}

/// ffmpeg's own remux of the segments (the reference for durations).
pub fn ffmpeg_remux(segs: &[PathBuf], out: &Path) -> Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i", &concat_url(segs)])
        .args([
            "-c",
            "copy",
            "-bsf:a",
            "aac_adtstoasc",
            "-movflags",
            "+faststart",
        ])
        .arg(out)
        .status()?;
    if !status.success() {
        bail!("ffmpeg remux failed");
    }
    Ok(())
}

/// Top-level box types of an MP4 file, in order.
pub fn top_level_boxes(file: &Path) -> Result<Vec<String>> {
    let data = std::fs::read(file)?;
    let mut boxes = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let mut size = u32::from_be_bytes(data[pos..pos + 4].try_into()?) as u64;
        let kind = String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned();
        if size == 1 {
            size = u64::from_be_bytes(data[pos + 8..pos + 16].try_into()?);
        }
        if size < 8 {
            bail!("bad box size at {pos}");
        }
        boxes.push(kind);
        pos += size as usize;
    }
    if pos != data.len() {
        bail!("boxes do not end at the end of the file");
    }
    Ok(boxes)
}

/// Runs `transcoder stitch` and returns its JSON summary.
pub fn stitch(from: &[&Path], to: &Path) -> Result<serde_json::Value> {
    let output = transcoder()
        .arg("stitch")
        .arg("--from")
        .args(from)
        .arg("--to")
        .arg(to)
        .output()?;
    if !output.status.success() {
        bail!("stitch failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port}")
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    let status_line = String::from_utf8_lossy(&response[..split]).into_owned();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    Ok((status, response[split + 4..].to_vec()))
}

/// A request received by [`Receiver`].
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A callback receiver answering 200 to every request and recording it.
pub struct Receiver {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Ok(request) = read_request(stream) {
                    if let Ok(mut list) = sink.lock() {
                        list.push(request);
                    }
                }
            }
        });
        Ok(Self { port, received })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// Waits until `count` requests arrived.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let list = self.received.lock().map(|l| l.clone()).unwrap_or_default();
            if list.len() >= count || start.elapsed() > timeout {
                return list;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_request(mut stream: TcpStream) -> Result<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed");
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    Ok(Received { headers, body })
}

/// Validates `value` against a JSON Schema file of the repository with Python's `jsonschema`
/// (see `tests/requirements.txt`). Returns `Ok(false)` when that package is not installed,
/// or an error then if `EDGEVIDEO_REQUIRE_ALL=1` (as `make test` sets).
pub fn matches_schema(schema_file: &str, value: &serde_json::Value) -> Result<bool> {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schema")
        .join(schema_file);
    let script = "import json, sys\n\
try:\n    import jsonschema\nexcept ImportError:\n    sys.exit(3)\n\
schema = json.load(open(sys.argv[1]))\n\
jsonschema.validate(json.loads(sys.stdin.read()), schema)\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&serde_json::to_vec(value)?)?;
    }
    let output = child.wait_with_output()?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(3) if std::env::var_os("EDGEVIDEO_REQUIRE_ALL").is_some_and(|v| v == "1") => {
            bail!("python3 has no jsonschema, and EDGEVIDEO_REQUIRE_ALL=1 requires it")
        }
        Some(3) => Ok(false),
        _ => bail!(
            "{} does not match {schema_file}: {}",
            value,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

"""Media helpers for the end-to-end tests: a real ffmpeg broadcaster (one rendition or a
ladder), ffprobe, and small MPEG-TS and CMAF bodies made by ffmpeg."""

import functools
import json
import subprocess
import tempfile
import pathlib
import struct


def push(ingest_url: str, seconds: float, size: str = "640x360") -> subprocess.Popen:
    """Starts ffmpeg pushing a live test pattern with a tone (H.264 with B-frames + AAC,
    2 s segments, real time) to a signed ingest URL, as a broadcaster would."""
    args = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60", "-keyint_min", "60",
        "-sc_threshold", "0", "-c:a", "aac", "-ar", "48000", "-b:a", "96k",
        "-f", "hls", "-hls_time", "2", "-hls_list_size", "6", "-method", "PUT", ingest_url,
    ]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def probe(url: str) -> dict:
    """ffprobe's JSON view (format and streams) of a URL."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", url],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def decode_errors(url: str) -> str:
    """Everything ffmpeg reports while decoding the whole of `url` (empty when clean)."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", url, "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )
    return out.stderr.strip() + ("" if out.returncode == 0 else f" (exit {out.returncode})")


@functools.cache
def ts_segment(seconds: float = 1.0) -> bytes:
    """A short MPEG-TS segment made by ffmpeg."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "seg.ts"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
             "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", str(seconds),
             "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "mpegts", str(path)],
            check=True, timeout=60,
        )
        return path.read_bytes()


@functools.cache
def recording(seconds: int = 4, heavy: bool = False) -> tuple[list[tuple[str, bytes]], bytes]:
    """A short recording as ffmpeg's HLS muxer writes it (1 s segments, H.264 with B-frames +
    AAC): the segments in order, and the final playlist (with ENDLIST). `heavy`: 640x360 with
    noise that does not compress, about 3 MB per second."""
    size, noise = ("640x360", ["-vf", "noise=alls=30:allf=t"]) if heavy else ("320x180", [])
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
             "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", str(seconds), *noise,
             "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "30", "-keyint_min", "30",
             "-sc_threshold", "0", "-c:a", "aac", "-ar", "48000",
             "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
             "-hls_segment_filename", str(out / "index%d.ts"), str(out / "index.m3u8")],
            check=True, timeout=120,
        )
        playlist = (out / "index.m3u8").read_bytes()
        names = [line for line in playlist.decode().splitlines() if line.endswith(".ts")]
        return [(name, (out / name).read_bytes()) for name in names], playlist


def push_recording(session, ingest_url: str, seconds: int = 4, heavy: bool = False) -> None:
    """Pushes a short recording to an ingest URL as ffmpeg does (each segment, then the
    playlist), as fast as the worker takes it."""
    base = ingest_url.rsplit("/", 1)[0]
    segments, playlist = recording(seconds, heavy)
    for name, data in segments:
        r = session.put(f"{base}/{name}", data=data)
        assert r.status_code == 201, r.text
    r = session.put(f"{base}/index.m3u8", data=playlist)
    assert r.status_code == 200 and r.json()["ended"], r.text


def push_ladder(ingest_url: str, seconds: float, segment_type: str = "fmp4") -> subprocess.Popen:
    """Starts ffmpeg pushing a two-rendition ladder (1280x720 and 640x360, each with AAC)
    as a desktop broadcaster would: `-var_stream_map` with a multivariant playlist
    (`master.m3u8`) and one media playlist per rendition (`stream_0.m3u8`, `stream_1.m3u8`),
    CMAF (`fmp4`) or MPEG-TS (`mpegts`) segments."""
    args = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds),
        "-filter_complex", "[0:v]split=2[hi][lo0];[lo0]scale=640:360[lo]",
        "-map", "[hi]", "-map", "[lo]", "-map", "1:a", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60",
        "-sc_threshold", "0", "-b:v:0", "1500k", "-b:v:1", "400k",
        "-c:a", "aac", "-ar", "48000", "-b:a", "96k",
        "-f", "hls", "-hls_time", "2", "-hls_list_size", "6", "-hls_segment_type", segment_type,
        "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,a:0 v:1,a:1",
        "-method", "PUT", ingest_url.replace("index.m3u8", "stream_%v.m3u8"),
    ]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@functools.cache
def cmaf_recording(seconds: int = 2) -> dict[str, bytes]:
    """A short CMAF recording as ffmpeg's HLS muxer writes it (H.264 + AAC, 1 s segments):
    file name -> bytes (`init.mp4`, `index0.m4s`, ..., `index.m3u8` with ENDLIST)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
             "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", str(seconds),
             "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-keyint_min", "30",
             "-sc_threshold", "0", "-c:a", "aac", "-ar", "48000",
             "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_segment_type", "fmp4",
             "-hls_segment_filename", str(out / "index%d.m4s"), str(out / "index.m3u8")],
            check=True, timeout=120,
        )
        return {p.name: p.read_bytes() for p in out.iterdir()}


@functools.cache
def mp4_box(kind: bytes, body: bytes) -> bytes:
    """An ISO BMFF box: size, type, body."""
    return struct.pack(">I", len(body) + 8) + kind + body


def part_bytes(segment: int, index: int, repeat: int = 64) -> bytes:
    """A low-latency part's boxes (`styp` first in a segment's first part), told apart by
    their bytes (`repeat` copies of the segment and index in its `mdat`); not decodable."""
    tag = bytes([segment % 256, index])
    head = mp4_box(b"styp", b"msdhcmfs") if index == 0 else b""
    return head + mp4_box(b"moof", mp4_box(b"mfhd", b"\0" * 6 + tag)) + mp4_box(b"mdat", tag * repeat)


def thumbnail_jpeg() -> bytes:
    """A small JPEG of the test pattern, as the broadcast page sends its camera's picture."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=1",
         "-frames:v", "1", "-f", "mjpeg", "-"],
        capture_output=True, check=True, timeout=60,
    )
    return out.stdout

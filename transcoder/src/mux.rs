//! Two-pass, constant-memory remux of TS segments into a faststart MP4.
//!
//! * **Pass 1** demuxes every input and keeps only the sample tables (size, duration,
//!   composition offset, sync flag: a few bytes per sample) and the chunk plan.
//! * Then `ftyp`, the complete `moov` and the `mdat` header are written.
//! * **Pass 2** demuxes the inputs again and streams the sample payloads into `mdat` in the
//!   planned order, checking every sample against pass 1. The writes run on a second thread
//!   ([`crate::writer`]) so that they overlap with reading and parsing.
//!
//! **Interleaving.** `mdat` alternates video and audio chunks of about one second
//! ([`CHUNK_WINDOW`] of decoding time): the video of window *n* is written as it arrives, the
//! audio that arrived meanwhile is held (a few KiB) and written as one chunk when the first
//! video sample of window *n + 1* comes. The plan of pass 1 is replayed exactly in pass 2.
//!
//! **Timing.** Video keeps the 90 kHz timestamps (`stts` from decoding-time differences,
//! `ctts` from PTS - DTS); audio uses its sampling rate as timescale and each frame's declared
//! duration (1024 samples for AAC from ADTS) unless a timestamp says otherwise by more than
//! half a frame. An edit list starts the video at its first composition time and delays the
//! track that starts later. AAC priming is kept, as in the source (MPEG-TS cannot say how
//! long it is, and ffmpeg's own remux keeps it too); Opus pre-skip is cut by the audio edit
//! list (`media_time` = pre-skip), as the Opus-in-ISOBMFF specification asks, and the track
//! is placed so that its first audible sample keeps its time.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::Path;

use crate::demux::{
    AudioConfig, AudioSample, Container, DemuxError, DemuxStats, Demuxer, FileReport, ReadProgress,
    SampleSink, SinkError, VideoConfig, VideoSample,
};
use crate::mp4::{self, Chunk, Codecs, Edit, SampleTable, Track, TrackInfo};
use crate::timeline::TS_CLOCK;
use crate::writer::ThreadedWriter;

/// Decoding time covered by one video chunk (and the audio chunk after it): one second.
pub const CHUNK_WINDOW: i64 = TS_CLOCK;
/// Held audio is written as a chunk of its own beyond this size (audio without video).
const MAX_PENDING_AUDIO: u64 = 1024 * 1024;

/// Pass 1 result for the video track.
#[derive(Debug, Default)]
struct VideoTrackBuilder {
    table: SampleTable,
    first_dts: Option<i64>,
    last_dts: i64,
    last_duration: u32,
    min_pts: i64,
    bytes: u64,
}

impl VideoTrackBuilder {
    fn push(&mut self, sample: &VideoSample<'_>) {
        match self.first_dts {
            None => {
                self.first_dts = Some(sample.dts);
                self.min_pts = sample.pts;
            }
            Some(_) => {
                let duration = u32::try_from(sample.dts - self.last_dts).unwrap_or(u32::MAX);
                self.table.durations.push(duration);
                self.last_duration = duration;
                self.min_pts = self.min_pts.min(sample.pts);
            }
        }
        self.last_dts = sample.dts;
        let offset = u32::try_from(sample.pts - sample.dts).unwrap_or(0);
        self.table.composition_offsets.push(offset);
        self.table.sizes.push(sample.size);
        if sample.keyframe {
            self.table.sync_samples.push(self.table.sizes.len() as u32);
        }
        self.bytes += u64::from(sample.size);
    }

    fn finish(&mut self) {
        if self.first_dts.is_some() {
            let last = if self.last_duration == 0 {
                (TS_CLOCK / 30) as u32
            } else {
                self.last_duration
            };
            self.table.durations.push(last);
        }
    }
}

/// Pass 1 result for the audio track.
#[derive(Debug, Default)]
struct AudioTrackBuilder {
    table: SampleTable,
    sample_rate: u32,
    first_time: Option<i64>,
    last_position: i64,
    last_duration: u32,
    bytes: u64,
}

impl AudioTrackBuilder {
    fn push(&mut self, sample: &AudioSample<'_>) {
        let sample_rate = sample.sample_rate;
        self.sample_rate = sample_rate;
        let frame = i64::from(self.last_duration);
        match self.first_time {
            None => {
                self.first_time = Some(sample.time);
                self.last_position = 0;
            }
            Some(first) => {
                // Position in samples since the first frame; snap to the frame grid unless the
                // timestamp disagrees by more than half a frame (a gap or an overlap).
                let expected = self.last_position + frame;
                let measured = (sample.time - first) * i64::from(sample_rate) / TS_CLOCK;
                let position = if (measured - expected).abs() <= frame / 2 {
                    expected
                } else {
                    measured.max(self.last_position + 1)
                };
                let duration = u32::try_from(position - self.last_position).unwrap_or(u32::MAX);
                self.table.durations.push(duration);
                self.last_position = position;
            }
        }
        self.last_duration = sample.duration.max(1);
        self.table.sizes.push(sample.data.len() as u32);
        self.bytes += sample.data.len() as u64;
    }

    fn finish(&mut self) {
        if self.first_time.is_some() {
            self.table.durations.push(self.last_duration);
        }
    }
}

/// Decides the chunk layout of `mdat` from the sample order (see the module docs).
#[derive(Debug, Default)]
struct ChunkPlanner {
    origin: Option<i64>,
    window: i64,
    chunks: Vec<Chunk>,
    pending_audio: Chunk2,
    new_video_chunk: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Chunk2 {
    samples: u32,
    bytes: u64,
}

impl ChunkPlanner {
    fn video(&mut self, dts: i64, size: u32) {
        let origin = *self.origin.get_or_insert(dts);
        let window = (dts - origin).div_euclid(CHUNK_WINDOW);
        if window > self.window {
            self.window = window;
            self.flush_audio();
            self.new_video_chunk = true;
        }
        match self.chunks.last_mut() {
            Some(chunk) if chunk.track == Track::Video && !self.new_video_chunk => {
                chunk.samples += 1;
                chunk.bytes += u64::from(size);
            }
            _ => self.chunks.push(Chunk {
                track: Track::Video,
                samples: 1,
                bytes: u64::from(size),
            }),
        }
        self.new_video_chunk = false;
    }

    fn audio(&mut self, size: usize) {
        self.pending_audio.samples += 1;
        self.pending_audio.bytes += size as u64;
        if self.pending_audio.bytes >= MAX_PENDING_AUDIO {
            self.flush_audio();
        }
    }

    fn flush_audio(&mut self) {
        if self.pending_audio.samples > 0 {
            self.chunks.push(Chunk {
                track: Track::Audio,
                samples: self.pending_audio.samples,
                bytes: self.pending_audio.bytes,
            });
            self.pending_audio = Chunk2::default();
            self.new_video_chunk = true;
        }
    }
}

/// Pass 1 sink: builds the sample tables and the chunk plan.
#[derive(Debug, Default)]
struct TableBuilder {
    video: VideoTrackBuilder,
    audio: AudioTrackBuilder,
    planner: ChunkPlanner,
}

impl SampleSink for TableBuilder {
    fn video(&mut self, sample: &VideoSample<'_>) -> Result<(), SinkError> {
        self.video.push(sample);
        self.planner.video(sample.dts, sample.size);
        Ok(())
    }

    fn audio(&mut self, sample: &AudioSample<'_>) -> Result<(), SinkError> {
        self.audio.push(sample);
        self.planner.audio(sample.data.len());
        Ok(())
    }
}

/// Pass 2 sink: writes payloads into `mdat` following the plan of pass 1.
struct PayloadWriter<'a, W: Write> {
    out: W,
    chunks: &'a [Chunk],
    chunk_index: usize,
    left_in_chunk: u32,
    video_sizes: &'a [u32],
    audio_sizes: &'a [u32],
    video_done: usize,
    audio_done: usize,
    held_audio: Vec<u8>,
    held_sizes: VecDeque<u32>,
    written: u64,
}

impl<'a, W: Write> PayloadWriter<'a, W> {
    fn new(out: W, chunks: &'a [Chunk], video: &'a [u32], audio: &'a [u32]) -> Self {
        Self {
            out,
            chunks,
            chunk_index: 0,
            left_in_chunk: chunks.first().map_or(0, |c| c.samples),
            video_sizes: video,
            audio_sizes: audio,
            video_done: 0,
            audio_done: 0,
            held_audio: Vec::with_capacity(64 * 1024),
            held_sizes: VecDeque::new(),
            written: 0,
        }
    }

    fn current(&self) -> Option<Track> {
        self.chunks.get(self.chunk_index).map(|c| c.track)
    }

    fn sample_done(&mut self) {
        self.left_in_chunk -= 1;
        while self.left_in_chunk == 0 && self.chunk_index < self.chunks.len() {
            self.chunk_index += 1;
            self.left_in_chunk = self.chunks.get(self.chunk_index).map_or(0, |c| c.samples);
        }
    }

    /// Writes held audio while the plan is at an audio chunk.
    fn drain_audio(&mut self) -> Result<(), SinkError> {
        let mut consumed = 0usize;
        while self.current() == Some(Track::Audio) {
            let Some(size) = self.held_sizes.pop_front() else {
                break;
            };
            let size = size as usize;
            self.out
                .write_all(&self.held_audio[consumed..consumed + size])?;
            self.written += size as u64;
            consumed += size;
            self.sample_done();
        }
        if consumed > 0 {
            self.held_audio.drain(..consumed);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(W, u64), SinkError> {
        self.drain_audio()?;
        if self.chunk_index != self.chunks.len()
            || self.video_done != self.video_sizes.len()
            || self.audio_done != self.audio_sizes.len()
        {
            return Err(SinkError::InputChanged(format!(
                "second pass ended early ({} of {} video and {} of {} audio samples)",
                self.video_done,
                self.video_sizes.len(),
                self.audio_done,
                self.audio_sizes.len()
            )));
        }
        Ok((self.out, self.written))
    }
}

impl<W: Write> SampleSink for PayloadWriter<'_, W> {
    fn video(&mut self, sample: &VideoSample<'_>) -> Result<(), SinkError> {
        if self.video_sizes.get(self.video_done) != Some(&sample.size) {
            return Err(SinkError::InputChanged(format!(
                "video sample {} differs from the first pass",
                self.video_done + 1
            )));
        }
        self.drain_audio()?;
        if self.current() != Some(Track::Video) {
            return Err(SinkError::InputChanged(
                "samples arrived in a different order than in the first pass".into(),
            ));
        }
        for &(start, end) in sample.nals {
            let nal = &sample.data[start..end];
            self.out.write_all(&(nal.len() as u32).to_be_bytes())?;
            self.out.write_all(nal)?;
        }
        self.written += u64::from(sample.size);
        self.video_done += 1;
        self.sample_done();
        Ok(())
    }

    fn audio(&mut self, sample: &AudioSample<'_>) -> Result<(), SinkError> {
        if self.audio_sizes.get(self.audio_done).map(|&s| s as usize) != Some(sample.data.len()) {
            return Err(SinkError::InputChanged(format!(
                "audio sample {} differs from the first pass",
                self.audio_done + 1
            )));
        }
        self.audio_done += 1;
        self.held_audio.extend_from_slice(sample.data);
        self.held_sizes.push_back(sample.data.len() as u32);
        self.drain_audio()
    }
}

/// Errors of [`remux`].
#[derive(Debug, thiserror::Error)]
pub enum RemuxError {
    /// No input was given.
    #[error("no input segments")]
    NoInputs,
    /// Demuxing failed.
    #[error(transparent)]
    Demux(#[from] DemuxError),
    /// No decodable H.264 video (a keyframe with SPS and PPS) was found.
    #[error("no H.264 video with a keyframe found in the inputs")]
    NoVideo,
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Facts about the MP4 written by [`remux`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RemuxSummary {
    /// Presentation duration in seconds.
    pub duration_seconds: f64,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Number of video frames.
    pub video_frames: u64,
    /// Number of audio frames (AAC or Opus).
    pub audio_frames: u64,
    /// Audio sampling rate in Hz (0 without audio).
    pub audio_sample_rate: u32,
    /// Audio codec (`"aac"`, `"opus"`), if the movie has audio.
    pub audio_codec: Option<String>,
    /// Container of the inputs.
    pub container: Container,
    /// Size of the MP4 in bytes.
    pub size_bytes: u64,
    /// Inputs read.
    pub inputs: usize,
    /// Inputs that held no usable audio or video (garbage, empty), by position in the list.
    pub skipped_inputs: Vec<usize>,
    /// What the demuxer repaired or dropped.
    pub repairs: DemuxStats,
}

/// Progress of a remux: the byte total of both passes, then bytes as they are read.
pub trait Progress: ReadProgress {
    /// Announces the total number of input bytes to read (both passes).
    fn start(&self, total_bytes: u64);
    /// Announces a phase ("scanning", "writing").
    fn phase(&self, name: &str);
}

impl Progress for () {
    fn start(&self, _total_bytes: u64) {}
    fn phase(&self, _name: &str) {}
}

/// Remuxes `inputs` (MPEG-TS segments, or a CMAF init segment then its media segments, in
/// order) into the MP4 file `output`, which is created
/// or truncated. The caller is responsible for writing to a temporary name and publishing.
///
/// # Errors
/// [`RemuxError`] when an input cannot be read, the recording changes format, holds no video,
/// or the output cannot be written.
pub fn remux(
    inputs: &[&Path],
    output: &Path,
    progress: &impl Progress,
) -> Result<RemuxSummary, RemuxError> {
    if inputs.is_empty() {
        return Err(RemuxError::NoInputs);
    }
    let mut total = 0u64;
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|source| DemuxError::Read {
            path: input.to_path_buf(),
            source,
        })?;
        total += meta.len();
    }
    progress.start(total * 2);

    // Pass 1: sample tables.
    progress.phase("scanning");
    let mut demuxer = Demuxer::new();
    let mut builder = TableBuilder::default();
    let mut reports: Vec<FileReport> = Vec::with_capacity(inputs.len());
    for input in inputs {
        let report = demuxer.run_file(input, &mut builder, progress)?;
        reports.push(report);
    }
    builder.video.finish();
    builder.audio.finish();
    builder.planner.flush_audio();
    let video_config = demuxer.video_config().cloned().ok_or(RemuxError::NoVideo)?;
    let audio_config = demuxer.audio_config().cloned();
    if builder.video.table.sizes.is_empty() {
        return Err(RemuxError::NoVideo);
    }
    let stats = demuxer.stats();
    let demuxer_container = demuxer.container().unwrap_or(Container::MpegTs);
    let skipped_inputs = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| r.video_samples == 0 && r.audio_samples == 0 && !r.init_segment)
        .map(|(i, _)| i)
        .collect();

    // Header: ftyp, moov, mdat.
    progress.phase("writing");
    let tracks = track_infos(&builder, audio_config.as_ref());
    let codecs = Codecs {
        video: &video_config,
        audio: audio_config.as_ref(),
    };
    let chunks = &builder.planner.chunks;
    let payload_bytes: u64 = chunks.iter().map(|c| c.bytes).sum();
    let ftyp = mp4::ftyp();
    let mdat_header = mp4::mdat_header(payload_bytes);
    // The size of `moov` does not depend on the offset values, only on their width.
    let moov_len = mp4::moov(&tracks, codecs, chunks, 0, false).len();
    let data_start = (ftyp.len() + moov_len + mdat_header.len()) as u64;
    let co64 = data_start + payload_bytes > u64::from(u32::MAX);
    let moov = mp4::moov(&tracks, codecs, chunks, data_start, co64);
    let data_start = (ftyp.len() + moov.len() + mdat_header.len()) as u64;
    let moov = if co64 {
        mp4::moov(&tracks, codecs, chunks, data_start, co64)
    } else {
        moov
    };

    let write_error = |source| RemuxError::Write {
        path: output.to_path_buf(),
        source,
    };
    let file = File::create(output).map_err(write_error)?;
    let mut out = ThreadedWriter::new(file);
    out.write_all(&ftyp).map_err(write_error)?;
    out.write_all(&moov).map_err(write_error)?;
    out.write_all(&mdat_header).map_err(write_error)?;

    // Pass 2: payloads.
    let mut writer = PayloadWriter::new(
        out,
        chunks,
        &builder.video.table.sizes,
        &builder.audio.table.sizes,
    );
    let mut demuxer = Demuxer::new();
    for input in inputs {
        demuxer.run_file(input, &mut writer, progress)?;
    }
    let (out, written) = writer.finish().map_err(DemuxError::from)?;
    let mut file = out.finish().map_err(write_error)?;
    let size_bytes = file.stream_position().map_err(write_error)?;
    if written != payload_bytes || size_bytes != data_start + payload_bytes {
        return Err(RemuxError::Demux(DemuxError::Sink(
            SinkError::InputChanged(format!(
                "wrote {written} payload bytes, planned {payload_bytes}"
            )),
        )));
    }

    let duration = tracks
        .iter()
        .map(TrackInfo::movie_duration)
        .max()
        .unwrap_or(0);
    let precise_duration = precise_duration(&builder, audio_config.as_ref());
    Ok(RemuxSummary {
        duration_seconds: if precise_duration > 0.0 {
            precise_duration
        } else {
            duration as f64 / f64::from(mp4::MOVIE_TIMESCALE)
        },
        width: video_config.sps_info.width,
        height: video_config.sps_info.height,
        video_frames: builder.video.table.sizes.len() as u64,
        audio_frames: builder.audio.table.sizes.len() as u64,
        audio_sample_rate: audio_config.as_ref().map_or(0, |c| c.sample_rate),
        audio_codec: audio_config
            .as_ref()
            .map(|c| c.codec_name().to_ascii_lowercase()),
        container: demuxer_container,
        size_bytes,
        inputs: inputs.len(),
        skipped_inputs,
        repairs: stats,
    })
}

/// Audio priming (samples cut by the edit list) in 90 kHz ticks.
fn priming_ticks(audio: Option<&AudioConfig>) -> i64 {
    audio.map_or(0, |c| {
        i64::from(c.priming()) * TS_CLOCK / i64::from(c.sample_rate.max(1))
    })
}

/// Start of presentation of each track on the 90 kHz timeline (audio: its first sample
/// after the priming that the edit list cuts).
fn presentation_starts(builder: &TableBuilder, audio: Option<&AudioConfig>) -> (i64, Option<i64>) {
    (
        builder.video.min_pts,
        builder.audio.first_time.map(|t| t + priming_ticks(audio)),
    )
}

fn track_infos<'a>(builder: &'a TableBuilder, audio: Option<&AudioConfig>) -> Vec<TrackInfo<'a>> {
    let (video_start, audio_start) = presentation_starts(builder, audio);
    let movie_start = audio_start.map_or(video_start, |a| a.min(video_start));
    let delay_edit = |start: i64| -> Option<Edit> {
        let delay = start - movie_start;
        (delay > 0).then(|| Edit {
            // Rounded to the nearest millisecond, as ffmpeg does.
            duration: (delay as u64 * u64::from(mp4::MOVIE_TIMESCALE) + TS_CLOCK as u64 / 2)
                / TS_CLOCK as u64,
            media_time: -1,
        })
    };
    let video_table = &builder.video.table;
    let mut video_edits: Vec<Edit> = delay_edit(video_start).into_iter().collect();
    video_edits.push(Edit {
        duration: mp4::rescale_up(
            video_table.durations.total(),
            mp4::VIDEO_TIMESCALE,
            mp4::MOVIE_TIMESCALE,
        ),
        media_time: video_start - builder.video.first_dts.unwrap_or(video_start),
    });
    let mut tracks = vec![TrackInfo {
        track: Track::Video,
        timescale: mp4::VIDEO_TIMESCALE,
        table: video_table,
        edits: video_edits,
    }];
    if let (Some(config), Some(start)) = (audio, audio_start) {
        let audio_table = &builder.audio.table;
        let priming = u64::from(config.priming()).min(audio_table.durations.total());
        let media_edit = Edit {
            duration: mp4::rescale_up(
                audio_table.durations.total() - priming,
                config.sample_rate,
                mp4::MOVIE_TIMESCALE,
            ),
            media_time: priming as i64,
        };
        let edits = match (delay_edit(start), priming) {
            (Some(delay), _) => vec![delay, media_edit],
            (None, 0) => Vec::new(),
            (None, _) => vec![media_edit],
        };
        tracks.push(TrackInfo {
            track: Track::Audio,
            timescale: config.sample_rate,
            table: audio_table,
            edits,
        });
    }
    tracks
}

fn precise_duration(builder: &TableBuilder, audio: Option<&AudioConfig>) -> f64 {
    let (video_start, audio_start) = presentation_starts(builder, audio);
    let movie_start = audio_start.map_or(video_start, |a| a.min(video_start));
    let video_end = (video_start - movie_start) as f64 / TS_CLOCK as f64
        + builder.video.table.durations.total() as f64 / f64::from(mp4::VIDEO_TIMESCALE);
    let audio_end = match (audio, audio_start) {
        (Some(config), Some(start)) => {
            let total = builder.audio.table.durations.total();
            let priming = u64::from(config.priming()).min(total);
            (start - movie_start) as f64 / TS_CLOCK as f64
                + (total - priming) as f64 / f64::from(config.sample_rate)
        }
        _ => 0.0,
    };
    video_end.max(audio_end)
}

/// Describes the video configuration for logs.
pub fn describe_video(config: &VideoConfig) -> String {
    format!(
        "H.264 profile {} level {} {}x{}",
        config.sps_info.profile,
        config.sps_info.level,
        config.sps_info.width,
        config.sps_info.height
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planner_alternates_one_second_chunks() {
        let mut planner = ChunkPlanner::default();
        for frame in 0..90i64 {
            planner.video(frame * 3000, 100);
            if frame % 2 == 0 {
                planner.audio(10);
            }
        }
        planner.flush_audio();
        let tracks: Vec<(Track, u32)> = planner
            .chunks
            .iter()
            .map(|c| (c.track, c.samples))
            .collect();
        assert_eq!(
            tracks,
            vec![
                (Track::Video, 30),
                (Track::Audio, 15),
                (Track::Video, 30),
                (Track::Audio, 15),
                (Track::Video, 30),
                (Track::Audio, 15),
            ]
        );
    }

    #[test]
    fn payload_writer_follows_the_plan() {
        let chunks = [
            Chunk {
                track: Track::Video,
                samples: 2,
                bytes: 14,
            },
            Chunk {
                track: Track::Audio,
                samples: 2,
                bytes: 3,
            },
        ];
        let video_sizes = [7u32, 7];
        let audio_sizes = [1u32, 2];
        let mut writer = PayloadWriter::new(Vec::new(), &chunks, &video_sizes, &audio_sizes);
        let annexb = [0u8, 0, 1, 0x65, 1, 2];
        let nals = [(3usize, 6usize)];
        let video = |dts| VideoSample {
            dts,
            pts: dts,
            keyframe: true,
            size: 7,
            data: &annexb,
            nals: &nals,
        };
        writer
            .audio(&AudioSample {
                time: 0,
                sample_rate: 48_000,
                duration: 1024,
                data: &[0xa],
            })
            .unwrap();
        writer.video(&video(0)).unwrap();
        writer
            .audio(&AudioSample {
                time: 1,
                sample_rate: 48_000,
                duration: 1024,
                data: &[0xb, 0xc],
            })
            .unwrap();
        writer.video(&video(1)).unwrap();
        let (out, written) = writer.finish().unwrap();
        assert_eq!(written, 17);
        assert_eq!(
            out,
            vec![0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 3, 0x65, 1, 2, 0xa, 0xb, 0xc]
        );
    }

    #[test]
    fn payload_writer_detects_changed_input() {
        let chunks = [Chunk {
            track: Track::Audio,
            samples: 1,
            bytes: 1,
        }];
        let mut writer = PayloadWriter::new(Vec::new(), &chunks, &[], &[1]);
        let err = writer
            .audio(&AudioSample {
                time: 0,
                sample_rate: 48_000,
                duration: 1024,
                data: &[1, 2],
            })
            .unwrap_err();
        assert!(matches!(err, SinkError::InputChanged(_)));
    }
}

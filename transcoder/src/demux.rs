//! From segment files to timed samples. The first input decides the container
//! ([`Container::detect`]): CMAF recordings (an init segment, then `.m4s` media segments) are
//! read by [`crate::cmaf`]; MPEG-TS files here, with large buffered reads: the transport layer
//! ([`edgevideo_media::ts`]), then H.264 access units and ADTS frames. Both map timestamps onto
//! one continuous timeline ([`crate::timeline`]) and feed the same [`SampleSink`].
//!
//! The same [`Demuxer`] runs twice over the inputs (see [`crate::mux`]), so everything here is
//! deterministic: the same bytes give the same samples with the same sizes. Recovery rules on
//! top of the transport layer's (the CMAF ones are in [`crate::cmaf`]):
//!
//! * bytes that are not at a packet boundary (lost sync, junk between packets) are skipped
//!   until two sync bytes 188 bytes apart are found again;
//! * a file whose size is not a multiple of 188 bytes is treated as truncated: its last partial
//!   packet and the PES packets still open at its end are dropped;
//! * a file in which no transport stream packet is found is skipped and reported;
//! * video before the first keyframe of the recording is dropped (it cannot be decoded);
//! * decoding timestamps that do not increase are nudged to one tick after their predecessor;
//! * ADTS frames are resynchronised on the next sync word after garbage; frames with several
//!   raw data blocks (which MP4 cannot carry as one sample) are skipped;
//! * a change of picture size or audio format inside the recording is an error.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::timeline::{Timeline, TrackClock, TS_CLOCK};
use edgevideo_media::adts::{self, AdtsHeader};
use edgevideo_media::h264::{self, NalSplitter, SpsInfo};
use edgevideo_media::ts::{Pes, StreamKind, TsDemuxer, TsStats, PACKET_SIZE, SYNC_BYTE};

/// Read size: a whole number of packets, about 1.5 MiB.
const READ_CHUNK: usize = PACKET_SIZE * 8192;
/// Default video frame duration (30 fps) until two frames have been seen.
const DEFAULT_FRAME_TICKS: i64 = TS_CLOCK / 30;

/// Errors that stop demuxing.
#[derive(Debug, thiserror::Error)]
pub enum DemuxError {
    /// An input file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The input.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The picture size changed between keyframes.
    #[error("video size changes from {from_width}x{from_height} to {to_width}x{to_height} in {path}; a recording must keep one size")]
    VideoSizeChanged {
        /// The input where it changed.
        path: PathBuf,
        /// Width before.
        from_width: u32,
        /// Height before.
        from_height: u32,
        /// Width after.
        to_width: u32,
        /// Height after.
        to_height: u32,
    },
    /// The audio sampling rate or channel layout changed.
    #[error("audio format changes in {path} (from {from_rate} Hz/{from_channels} ch to {to_rate} Hz/{to_channels} ch)")]
    AudioFormatChanged {
        /// The input where it changed.
        path: PathBuf,
        /// Rate before.
        from_rate: u32,
        /// Channel configuration before.
        from_channels: u8,
        /// Rate after.
        to_rate: u32,
        /// Channel configuration after.
        to_channels: u8,
    },
    /// The codec changed inside the recording (a CMAF init segment with another codec).
    #[error("codec changes from {from} to {to} in {path}; a recording must keep one codec")]
    CodecChanged {
        /// The input where it changed.
        path: PathBuf,
        /// Codec before.
        from: String,
        /// Codec after.
        to: String,
    },
    /// A CMAF init segment (`moov`) could not be parsed.
    #[error("invalid CMAF init segment {path}: {source}")]
    InvalidInit {
        /// The input.
        path: PathBuf,
        /// What is wrong.
        source: crate::fmp4::Fmp4Error,
    },
    /// A CMAF recording does not start with an init segment.
    #[error("CMAF recording without an init segment (ftyp + moov) before {0}")]
    MissingInit(PathBuf),
    /// The sample consumer failed (for example, writing the output).
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// An error raised by a [`SampleSink`].
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Write(#[from] std::io::Error),
    /// The inputs gave different samples on the second pass than on the first.
    #[error("input changed while being read: {0}")]
    InputChanged(String),
    /// The sink has what it needs; reading stops early (not a failure for the sink's owner).
    #[error("stopped early")]
    Done,
}

/// The decoder configuration of the video track, from the first keyframe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// Parsed SPS fields.
    pub sps_info: SpsInfo,
    /// The SPS NAL unit.
    pub sps: Vec<u8>,
    /// The PPS NAL units.
    pub pps: Vec<Vec<u8>>,
}

/// The decoder configuration of the audio track: from the first ADTS header (MPEG-TS) or
/// from the init segment (CMAF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// Sampling rate in Hz (the media timescale of the output track; 48000 for Opus).
    pub sample_rate: u32,
    /// Channels: the AAC channel configuration, or the Opus output channel count.
    pub channels: u8,
    /// The codec and its decoder configuration.
    pub codec: AudioCodec,
}

/// An audio codec with what its MP4 sample entry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC (`mp4a` + `esds`).
    Aac {
        /// MPEG-4 audio object type.
        object_type: u8,
        /// AudioSpecificConfig bytes for `esds`.
        specific_config: Vec<u8>,
    },
    /// Opus (`Opus` + `dOps`).
    Opus(crate::fmp4::OpusSpecific),
}

impl AudioConfig {
    /// Samples to drop at the start of the track for playback (Opus pre-skip; 0 for AAC,
    /// whose priming is kept as the MPEG-TS path keeps it).
    pub fn priming(&self) -> u32 {
        match &self.codec {
            AudioCodec::Aac { .. } => 0,
            AudioCodec::Opus(opus) => u32::from(opus.pre_skip),
        }
    }

    /// A short name for logs and errors.
    pub fn codec_name(&self) -> &'static str {
        match self.codec {
            AudioCodec::Aac { .. } => "AAC",
            AudioCodec::Opus(_) => "Opus",
        }
    }
}

/// One video access unit.
#[derive(Debug)]
pub struct VideoSample<'a> {
    /// Decoding time on the continuous timeline (90 kHz).
    pub dts: i64,
    /// Presentation time on the continuous timeline (90 kHz), never before `dts`.
    pub pts: i64,
    /// Whether the access unit holds an IDR picture.
    pub keyframe: bool,
    /// Size of the sample in MP4 form (4-byte length before each kept NAL unit).
    pub size: u32,
    /// The bytes of the access unit: Annex B (MPEG-TS) or length-prefixed NAL units (CMAF).
    pub data: &'a [u8],
    /// Byte ranges in `data` of the NAL units to keep.
    pub nals: &'a [(usize, usize)],
}

/// One audio frame (AAC or Opus).
#[derive(Debug)]
pub struct AudioSample<'a> {
    /// Presentation time on the continuous timeline (90 kHz).
    pub time: i64,
    /// Sampling rate of the stream in Hz.
    pub sample_rate: u32,
    /// Duration in samples at `sample_rate` (1024 for AAC from ADTS).
    pub duration: u32,
    /// The raw frame (ADTS header removed).
    pub data: &'a [u8],
}

/// Consumes the samples of the recording in input order.
pub trait SampleSink {
    /// Takes a video access unit.
    ///
    /// # Errors
    /// Whatever stops the consumer; demuxing stops with it.
    fn video(&mut self, sample: &VideoSample<'_>) -> Result<(), SinkError>;
    /// Takes an audio frame.
    ///
    /// # Errors
    /// Whatever stops the consumer; demuxing stops with it.
    fn audio(&mut self, sample: &AudioSample<'_>) -> Result<(), SinkError>;
}

/// Reports bytes read, for progress display.
pub trait ReadProgress {
    /// `bytes` more input bytes were consumed.
    fn advance(&self, bytes: u64);
}

impl ReadProgress for () {
    fn advance(&self, _bytes: u64) {}
}

/// What happened to one input file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileReport {
    /// Bytes in the file.
    pub bytes: u64,
    /// Transport stream packets read.
    pub packets: u64,
    /// Bytes skipped while resynchronising.
    pub skipped_bytes: u64,
    /// Whether the file ended inside a packet.
    pub truncated: bool,
    /// Video samples delivered.
    pub video_samples: u64,
    /// Audio samples delivered.
    pub audio_samples: u64,
    /// Whether the file is a CMAF init segment (it holds no samples by design).
    pub init_segment: bool,
    /// CMAF fragments (`moof`) that could not be parsed and were skipped.
    pub fragments_skipped: u64,
}

/// Counters of what was repaired or dropped over the whole recording.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DemuxStats {
    /// Transport layer counters.
    pub transport: TsStats,
    /// Timestamp discontinuities closed.
    pub discontinuities: u32,
    /// Video access units dropped before the first keyframe.
    pub leading_frames_dropped: u64,
    /// Video access units without any NAL unit.
    pub empty_access_units: u64,
    /// Decoding timestamps that had to be moved forward.
    pub dts_repairs: u64,
    /// Bytes skipped between ADTS frames.
    pub audio_bytes_skipped: u64,
    /// ADTS frames skipped (several raw data blocks).
    pub audio_frames_skipped: u64,
    /// CMAF fragments that could not be parsed and were skipped.
    pub fragments_skipped: u64,
    /// CMAF samples dropped because their data lies outside the file (a cut segment) or is
    /// not a well-formed sequence of length-prefixed NAL units.
    pub samples_dropped: u64,
}

/// Per-recording demuxing state, kept across input files.
#[derive(Debug)]
pub struct Demuxer {
    pub(crate) ts: TsDemuxer,
    pub(crate) timeline: Timeline,
    pub(crate) splitter: NalSplitter,
    pub(crate) nal_ranges: Vec<(usize, usize)>,
    pub(crate) read_buf: Vec<u8>,
    pub(crate) video_clock: TrackClock,
    pub(crate) audio_clock: TrackClock,
    pub(crate) last_video_dts: Option<i64>,
    pub(crate) max_video_pts: Option<i64>,
    pub(crate) video_frame_ticks: i64,
    pub(crate) seen_keyframe: bool,
    pub(crate) video_config: Option<VideoConfig>,
    pub(crate) audio_config: Option<AudioConfig>,
    pub(crate) audio_pending: Vec<u8>,
    pub(crate) stats: DemuxStats,
    pub(crate) container: Option<Container>,
    pub(crate) cmaf: crate::cmaf::CmafState,
}

impl Default for Demuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl Demuxer {
    /// A demuxer at the start of a recording.
    pub fn new() -> Self {
        Self {
            ts: TsDemuxer::new(),
            timeline: Timeline::new(),
            splitter: NalSplitter::new(),
            nal_ranges: Vec::with_capacity(64),
            read_buf: Vec::new(),
            video_clock: TrackClock::default(),
            audio_clock: TrackClock::default(),
            last_video_dts: None,
            max_video_pts: None,
            video_frame_ticks: DEFAULT_FRAME_TICKS,
            seen_keyframe: false,
            video_config: None,
            audio_config: None,
            audio_pending: Vec::new(),
            stats: DemuxStats::default(),
            container: None,
            cmaf: crate::cmaf::CmafState::default(),
        }
    }

    /// Video configuration, once a keyframe with an SPS and PPS has been seen.
    pub fn video_config(&self) -> Option<&VideoConfig> {
        self.video_config.as_ref()
    }

    /// Audio configuration, once an ADTS frame or a CMAF init segment has been seen.
    pub fn audio_config(&self) -> Option<&AudioConfig> {
        self.audio_config.as_ref()
    }

    /// The container of the recording, once the first input has been read.
    pub fn container(&self) -> Option<Container> {
        self.container
    }

    /// Repair and drop counters so far.
    pub fn stats(&self) -> DemuxStats {
        let mut stats = self.stats.clone();
        stats.transport = self.ts.stats();
        stats.discontinuities = self.timeline.discontinuities();
        stats
    }

    /// Demuxes one input file into `sink`. The first input decides the container for the
    /// whole recording ([`Container::detect`]): CMAF when it starts with an ISO BMFF box,
    /// MPEG-TS otherwise.
    ///
    /// # Errors
    /// [`DemuxError`] when the file cannot be read, the stream changes format, or the sink
    /// fails. Damaged content is skipped and counted instead.
    pub fn run_file(
        &mut self,
        path: &Path,
        sink: &mut impl SampleSink,
        progress: &impl ReadProgress,
    ) -> Result<FileReport, DemuxError> {
        let read_error = |source| DemuxError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let container = match self.container {
            Some(container) => container,
            None => {
                let mut head = [0u8; 8];
                let n = read_full(&mut file, &mut head).map_err(read_error)?;
                std::io::Seek::rewind(&mut file).map_err(read_error)?;
                let container = Container::detect(&head[..n]);
                self.container = Some(container);
                container
            }
        };
        if container == Container::Cmaf {
            return self.run_cmaf_file(path, file, sink, progress);
        }
        let mut buf = std::mem::take(&mut self.read_buf);
        buf.resize(READ_CHUNK, 0);
        let mut report = FileReport::default();
        let result = self.read_packets(path, &mut file, &mut buf, &mut report, sink, progress);
        self.read_buf = buf;
        result.map_err(|e| match e {
            ReadLoopError::Io(source) => read_error(source),
            ReadLoopError::Demux(e) => e,
        })?;
        Ok(report)
    }

    fn read_packets(
        &mut self,
        path: &Path,
        file: &mut File,
        buf: &mut [u8],
        report: &mut FileReport,
        sink: &mut impl SampleSink,
        progress: &impl ReadProgress,
    ) -> Result<(), ReadLoopError> {
        self.ts.reset_streams();
        self.audio_pending.clear();
        let mut handler = PesHandler {
            path,
            state: PesState {
                timeline: &mut self.timeline,
                splitter: &self.splitter,
                nal_ranges: &mut self.nal_ranges,
                video_clock: &mut self.video_clock,
                audio_clock: &mut self.audio_clock,
                last_video_dts: &mut self.last_video_dts,
                max_video_pts: &mut self.max_video_pts,
                video_frame_ticks: &mut self.video_frame_ticks,
                seen_keyframe: &mut self.seen_keyframe,
                video_config: &mut self.video_config,
                audio_config: &mut self.audio_config,
                audio_pending: &mut self.audio_pending,
                stats: &mut self.stats,
            },
            sink,
            video_samples: 0,
            audio_samples: 0,
        };
        let mut filled = 0usize;
        let mut eof = false;
        while !eof {
            // Fill the buffer as far as possible.
            while filled < buf.len() {
                let n = read_retrying(file, &mut buf[filled..]).map_err(ReadLoopError::Io)?;
                if n == 0 {
                    eof = true;
                    break;
                }
                filled += n;
                report.bytes += n as u64;
                progress.advance(n as u64);
            }
            let mut pos = 0;
            while pos + PACKET_SIZE <= filled {
                let in_sync = buf[pos] == SYNC_BYTE
                    && (report.packets > 0
                        || pos + PACKET_SIZE == filled
                        || buf.get(pos + PACKET_SIZE) == Some(&SYNC_BYTE));
                if !in_sync {
                    match resync(&buf[..filled], pos + 1, eof) {
                        Some(next) => {
                            report.skipped_bytes += (next - pos) as u64;
                            pos = next;
                            continue;
                        }
                        None if eof => {
                            report.skipped_bytes += (filled - pos) as u64;
                            pos = filled;
                        }
                        None => {
                            // Keep the last bytes: a packet may start there.
                            let keep_from = filled.saturating_sub(PACKET_SIZE).max(pos + 1);
                            report.skipped_bytes += (keep_from - pos) as u64;
                            pos = keep_from;
                        }
                    }
                    break;
                }
                let Ok(packet) = <&[u8; PACKET_SIZE]>::try_from(&buf[pos..pos + PACKET_SIZE])
                else {
                    break;
                };
                report.packets += 1;
                self.ts
                    .push_packet(packet, &mut |pes| handler.on_pes(pes))
                    .map_err(ReadLoopError::Demux)?;
                pos += PACKET_SIZE;
            }
            if eof {
                if pos < filled {
                    report.truncated = true;
                    report.skipped_bytes += (filled - pos) as u64;
                }
            } else {
                buf.copy_within(pos..filled, 0);
                filled -= pos;
            }
        }
        self.ts
            .finish(report.truncated, &mut |pes| handler.on_pes(pes))
            .map_err(ReadLoopError::Demux)?;
        report.video_samples = handler.video_samples;
        report.audio_samples = handler.audio_samples;
        Ok(())
    }
}

/// The container format of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// MPEG-TS segments (H.264 + ADTS AAC).
    MpegTs,
    /// CMAF: an init segment (`ftyp` + `moov`) then `.m4s` media segments.
    Cmaf,
}

impl Container {
    /// Detects the container from the first bytes of the first input: an ISO BMFF box
    /// (`ftyp`, or `styp`/`moov`/`moof`/`sidx` for an init-less start) means CMAF; anything
    /// else is read as MPEG-TS (whose sync byte 0x47 cannot start such a box header).
    pub fn detect(head: &[u8]) -> Self {
        match head.get(4..8) {
            Some(b"ftyp" | b"styp" | b"moov" | b"moof" | b"sidx") => Container::Cmaf,
            _ => Container::MpegTs,
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub(crate) fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_retrying(file, &mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

enum ReadLoopError {
    Io(std::io::Error),
    Demux(DemuxError),
}

fn read_retrying(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Finds the next offset at or after `from` where a sync byte is followed by another one a
/// packet later (or by the end of the data, at end of file).
fn resync(data: &[u8], from: usize, eof: bool) -> Option<usize> {
    let mut pos = from;
    while let Some(rel) = memchr::memchr(SYNC_BYTE, data.get(pos..)?) {
        let at = pos + rel;
        match data.get(at + PACKET_SIZE) {
            Some(&SYNC_BYTE) => return Some(at),
            None if eof && at + PACKET_SIZE == data.len() => return Some(at),
            None => return None,
            Some(_) => pos = at + 1,
        }
    }
    None
}

/// The mutable demuxing state a PES callback needs (split out of [`Demuxer`] so that the
/// transport demuxer can be borrowed at the same time).
struct PesState<'a> {
    timeline: &'a mut Timeline,
    splitter: &'a NalSplitter,
    nal_ranges: &'a mut Vec<(usize, usize)>,
    video_clock: &'a mut TrackClock,
    audio_clock: &'a mut TrackClock,
    last_video_dts: &'a mut Option<i64>,
    max_video_pts: &'a mut Option<i64>,
    video_frame_ticks: &'a mut i64,
    seen_keyframe: &'a mut bool,
    video_config: &'a mut Option<VideoConfig>,
    audio_config: &'a mut Option<AudioConfig>,
    audio_pending: &'a mut Vec<u8>,
    stats: &'a mut DemuxStats,
}

struct PesHandler<'a, 'b, S> {
    path: &'a Path,
    state: PesState<'b>,
    sink: &'a mut S,
    video_samples: u64,
    audio_samples: u64,
}

impl<S: SampleSink> PesHandler<'_, '_, S> {
    fn on_pes(&mut self, pes: Pes<'_>) -> Result<(), DemuxError> {
        match pes.kind {
            StreamKind::Video => self.on_video(pes),
            StreamKind::Audio => self.on_audio(pes),
        }
    }

    fn on_video(&mut self, pes: Pes<'_>) -> Result<(), DemuxError> {
        let st = &mut self.state;
        st.splitter.split(pes.payload, st.nal_ranges);
        let data = pes.payload;
        let mut keyframe = false;
        let mut size: u64 = 0;
        let mut sps_range = None;
        let mut pps_count = 0;
        let mut write = 0;
        for read in 0..st.nal_ranges.len() {
            let (start, end) = st.nal_ranges[read];
            match h264::nal_type(&data[start..end]) {
                h264::NAL_AUD | h264::NAL_FILLER => continue,
                h264::NAL_IDR => keyframe = true,
                h264::NAL_SPS => sps_range = Some((start, end)),
                h264::NAL_PPS => pps_count += 1,
                _ => {}
            }
            size += 4 + (end - start) as u64;
            st.nal_ranges[write] = (start, end);
            write += 1;
        }
        st.nal_ranges.truncate(write);
        if st.nal_ranges.is_empty() {
            st.stats.empty_access_units += 1;
            return Ok(());
        }
        let Ok(size) = u32::try_from(size) else {
            st.stats.empty_access_units += 1;
            return Ok(());
        };

        // Timing.
        let raw_dts = pes.dts.or(pes.pts);
        let frame_ticks = *st.video_frame_ticks;
        let offset_before = st.timeline.offset();
        let mut dts = match raw_dts {
            Some(raw) => st.timeline.map(st.video_clock, raw, frame_ticks),
            None => {
                let next = st.video_clock.expected_next().unwrap_or(0);
                st.video_clock.advance_to(next + frame_ticks);
                next
            }
        };
        if let Some(last) = *st.last_video_dts {
            if dts <= last {
                st.stats.dts_repairs += 1;
                dts = last + 1;
            } else {
                *st.video_frame_ticks = dts - last;
            }
        }
        let mut pts = match (pes.pts, pes.dts) {
            (Some(pts), Some(raw_dts)) => {
                dts + crate::timeline::wrapped_difference(raw_dts, pts).max(0)
            }
            _ => dts,
        };
        // A closed gap lines up decoding times; the frames cut off before it may still have
        // been due for display later (B-frame reordering). Leave room so that no two frames
        // are presented at the same time.
        if st.timeline.offset() != offset_before {
            let room = room_after_gap(*st.max_video_pts, pts, frame_ticks);
            if room > 0 {
                st.timeline.shift(room);
                dts += room;
                pts += room;
                st.video_clock.advance_to(dts + frame_ticks);
            }
        }
        *st.max_video_pts = Some(st.max_video_pts.map_or(pts, |m| m.max(pts)));

        if keyframe {
            if let Some((start, end)) = sps_range {
                self.check_video_config(data, (start, end), pps_count)?;
            }
        }
        let st = &mut self.state;
        if !*st.seen_keyframe {
            if !keyframe || st.video_config.is_none() {
                st.stats.leading_frames_dropped += 1;
                return Ok(());
            }
            *st.seen_keyframe = true;
        }
        *st.last_video_dts = Some(dts);
        self.video_samples += 1;
        self.sink.video(&VideoSample {
            dts,
            pts,
            keyframe,
            size,
            data,
            nals: st.nal_ranges,
        })?;
        Ok(())
    }

    fn check_video_config(
        &mut self,
        data: &[u8],
        (start, end): (usize, usize),
        pps_count: usize,
    ) -> Result<(), DemuxError> {
        let st = &mut self.state;
        let sps = &data[start..end];
        // `avcC` stores parameter set lengths in 16 bits; real ones are a few dozen bytes.
        if sps.len() > usize::from(u16::MAX) {
            return Ok(());
        }
        if let Some(config) = st.video_config.as_ref() {
            if config.sps == sps {
                return Ok(());
            }
        }
        let Ok(info) = h264::parse_sps(sps) else {
            return Ok(());
        };
        match st.video_config.as_ref() {
            Some(config) => {
                same_size(self.path, &config.sps_info, &info)?;
            }
            None if pps_count > 0 => {
                let pps = st
                    .nal_ranges
                    .iter()
                    .map(|&(s, e)| &data[s..e])
                    .filter(|nal| {
                        h264::nal_type(nal) == h264::NAL_PPS && nal.len() <= usize::from(u16::MAX)
                    })
                    .map(<[u8]>::to_vec)
                    .collect();
                *st.video_config = Some(VideoConfig {
                    sps_info: info,
                    sps: sps.to_vec(),
                    pps,
                });
            }
            None => {}
        }
        Ok(())
    }

    fn on_audio(&mut self, pes: Pes<'_>) -> Result<(), DemuxError> {
        let carried = self.state.audio_pending.len();
        if carried == 0 {
            // Common case: parse in place without copying.
            let consumed = self.parse_adts(pes.payload, 0, pes.pts)?;
            if consumed < pes.payload.len() {
                self.state
                    .audio_pending
                    .extend_from_slice(&pes.payload[consumed..]);
            }
        } else {
            let mut pending = std::mem::take(self.state.audio_pending);
            pending.extend_from_slice(pes.payload);
            let consumed = self.parse_adts(&pending, carried, pes.pts);
            match consumed {
                Ok(n) => {
                    pending.drain(..n);
                    *self.state.audio_pending = pending;
                }
                Err(e) => {
                    pending.clear();
                    *self.state.audio_pending = pending;
                    return Err(e);
                }
            }
        }
        // A frame never exceeds 8 KiB: more pending bytes are garbage.
        if self.state.audio_pending.len() > 16 * 1024 {
            self.state.stats.audio_bytes_skipped += self.state.audio_pending.len() as u64;
            self.state.audio_pending.clear();
        }
        Ok(())
    }

    /// Splits `data` into ADTS frames and delivers them. Frames starting before `new_from`
    /// continue the previous PES and are timed by counting; the others are timed from `pts`.
    /// Returns how many bytes were consumed (the rest is a partial frame).
    fn parse_adts(
        &mut self,
        data: &[u8],
        new_from: usize,
        pts: Option<u64>,
    ) -> Result<usize, DemuxError> {
        let mut pos = 0;
        let mut frames_in_pes: u64 = 0;
        while pos < data.len() {
            let header = match AdtsHeader::parse(&data[pos..]) {
                Ok(h) => h,
                Err(adts::AdtsError::Truncated) => break,
                Err(_) => {
                    let next = adts::find_sync(data, pos + 1).unwrap_or(data.len());
                    self.state.stats.audio_bytes_skipped += (next - pos) as u64;
                    pos = next;
                    continue;
                }
            };
            let end = pos + header.frame_len;
            if end > data.len() {
                break;
            }
            // A real frame is followed by another sync word (or ends the data); otherwise the
            // "header" was garbage that happened to look like one.
            if end + 2 <= data.len() && adts::find_sync(&data[end..end + 2], 0) != Some(0) {
                let next = adts::find_sync(data, pos + 1).unwrap_or(data.len());
                self.state.stats.audio_bytes_skipped += (next - pos) as u64;
                pos = next;
                continue;
            }
            let frame = &data[pos + header.header_len..pos + header.frame_len];
            let start = pos;
            pos += header.frame_len;
            if header.extra_blocks != 0 {
                self.state.stats.audio_frames_skipped += 1;
                continue;
            }
            let sample_rate = self.audio_config_for(&header)?;
            let frame_ticks =
                i64::from(adts::SAMPLES_PER_FRAME) * TS_CLOCK / i64::from(sample_rate);
            let st = &mut self.state;
            let time = match pts {
                Some(pts) if start >= new_from => {
                    let offset = frames_in_pes * u64::from(adts::SAMPLES_PER_FRAME) * 90_000
                        / u64::from(sample_rate);
                    frames_in_pes += 1;
                    st.timeline.map(st.audio_clock, pts + offset, frame_ticks)
                }
                _ => {
                    let next = st.audio_clock.expected_next().unwrap_or(0);
                    st.audio_clock.advance_to(next + frame_ticks);
                    next
                }
            };
            self.audio_samples += 1;
            self.sink.audio(&AudioSample {
                time,
                sample_rate,
                duration: adts::SAMPLES_PER_FRAME,
                data: frame,
            })?;
        }
        Ok(pos)
    }

    /// The sampling rate of the stream, checking that the frame keeps the recording's format.
    fn audio_config_for(&mut self, header: &AdtsHeader) -> Result<u32, DemuxError> {
        let sample_rate = header.sample_rate();
        let specific_config = header.audio_specific_config();
        match self.state.audio_config.as_ref() {
            None => {
                *self.state.audio_config = Some(AudioConfig {
                    sample_rate,
                    channels: header.channels,
                    codec: AudioCodec::Aac {
                        object_type: header.object_type,
                        specific_config: specific_config.to_vec(),
                    },
                });
                Ok(sample_rate)
            }
            Some(existing)
                if existing.sample_rate == sample_rate
                    && existing.channels == header.channels
                    && matches!(&existing.codec, AudioCodec::Aac { specific_config: c, .. } if c[..] == specific_config[..]) =>
            {
                Ok(sample_rate)
            }
            Some(existing) => Err(DemuxError::AudioFormatChanged {
                path: self.path.to_path_buf(),
                from_rate: existing.sample_rate,
                from_channels: existing.channels,
                to_rate: sample_rate,
                to_channels: header.channels,
            }),
        }
    }
}

/// Checks that a new sequence parameter set keeps the recording's picture size.
///
/// # Errors
/// [`DemuxError::VideoSizeChanged`] naming `path`.
pub(crate) fn same_size(path: &Path, old: &SpsInfo, new: &SpsInfo) -> Result<(), DemuxError> {
    if (old.width, old.height) == (new.width, new.height) {
        return Ok(());
    }
    Err(DemuxError::VideoSizeChanged {
        path: path.to_path_buf(),
        from_width: old.width,
        from_height: old.height,
        to_width: new.width,
        to_height: new.height,
    })
}

/// After the timeline closed a gap, how far to shift a frame presented at `pts` so that it
/// comes after every frame already presented (`max_pts` is the latest, plus one frame): the
/// frames cut off before the gap may still have been due for display later (B-frame
/// reordering), and no two frames may be presented at the same time. 0 when none is needed.
pub(crate) fn room_after_gap(max_pts: Option<i64>, pts: i64, frame_ticks: i64) -> i64 {
    max_pts.map_or(0, |max_pts| (max_pts + frame_ticks - pts).max(0))
}

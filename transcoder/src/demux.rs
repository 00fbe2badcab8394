//! From segment files to timed samples: reads MPEG-TS files with large buffered reads, runs
//! the transport layer ([`crate::ts`]), splits H.264 access units and ADTS frames, and maps
//! timestamps onto one continuous timeline ([`crate::timeline`]).
//!
//! The same [`Demuxer`] runs twice over the inputs (see [`crate::mux`]), so everything here is
//! deterministic: the same bytes give the same samples with the same sizes. Recovery rules on
//! top of the transport layer's:
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

use crate::adts::{self, AdtsHeader};
use crate::h264::{self, NalSplitter, SpsInfo};
use crate::timeline::{Timeline, TrackClock, TS_CLOCK};
use crate::ts::{Pes, StreamKind, TsDemuxer, TsStats, PACKET_SIZE, SYNC_BYTE};

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

/// The decoder configuration of the audio track, from the first ADTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// ADTS channel configuration.
    pub channels: u8,
    /// MPEG-4 audio object type.
    pub object_type: u8,
    /// AudioSpecificConfig bytes for `esds`.
    pub specific_config: [u8; 2],
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
    /// The Annex B bytes of the access unit.
    pub data: &'a [u8],
    /// Byte ranges in `data` of the NAL units to keep.
    pub nals: &'a [(usize, usize)],
}

/// One AAC frame.
#[derive(Debug)]
pub struct AudioSample<'a> {
    /// Presentation time on the continuous timeline (90 kHz).
    pub time: i64,
    /// Sampling rate of the stream in Hz.
    pub sample_rate: u32,
    /// The raw AAC frame (ADTS header removed).
    pub data: &'a [u8],
}

/// Consumes the samples of the recording in input order.
pub trait SampleSink {
    /// Takes a video access unit.
    ///
    /// # Errors
    /// Whatever stops the consumer; demuxing stops with it.
    fn video(&mut self, sample: &VideoSample<'_>) -> Result<(), SinkError>;
    /// Takes an AAC frame.
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
}

/// Per-recording demuxing state, kept across input files.
#[derive(Debug)]
pub struct Demuxer {
    ts: TsDemuxer,
    timeline: Timeline,
    splitter: NalSplitter,
    nal_ranges: Vec<(usize, usize)>,
    read_buf: Vec<u8>,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    last_video_dts: Option<i64>,
    max_video_pts: Option<i64>,
    video_frame_ticks: i64,
    seen_keyframe: bool,
    video_config: Option<VideoConfig>,
    audio_config: Option<AudioConfig>,
    audio_pending: Vec<u8>,
    stats: DemuxStats,
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
        }
    }

    /// Video configuration, once a keyframe with an SPS and PPS has been seen.
    pub fn video_config(&self) -> Option<&VideoConfig> {
        self.video_config.as_ref()
    }

    /// Audio configuration, once an ADTS frame has been seen.
    pub fn audio_config(&self) -> Option<AudioConfig> {
        self.audio_config
    }

    /// Repair and drop counters so far.
    pub fn stats(&self) -> DemuxStats {
        let mut stats = self.stats.clone();
        stats.transport = self.ts.stats();
        stats.discontinuities = self.timeline.discontinuities();
        stats
    }

    /// Demuxes one input file into `sink`.
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
            if let Some(max_pts) = *st.max_video_pts {
                let earliest = max_pts + frame_ticks;
                if pts < earliest {
                    let room = earliest - pts;
                    st.timeline.shift(room);
                    dts += room;
                    pts += room;
                    st.video_clock.advance_to(dts + frame_ticks);
                }
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
                let old = config.sps_info;
                if (old.width, old.height) != (info.width, info.height) {
                    return Err(DemuxError::VideoSizeChanged {
                        path: self.path.to_path_buf(),
                        from_width: old.width,
                        from_height: old.height,
                        to_width: info.width,
                        to_height: info.height,
                    });
                }
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
            let config = self.audio_config_for(&header)?;
            let frame_ticks =
                i64::from(adts::SAMPLES_PER_FRAME) * TS_CLOCK / i64::from(config.sample_rate);
            let st = &mut self.state;
            let time = match pts {
                Some(pts) if start >= new_from => {
                    let offset = frames_in_pes * u64::from(adts::SAMPLES_PER_FRAME) * 90_000
                        / u64::from(config.sample_rate);
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
                sample_rate: config.sample_rate,
                data: frame,
            })?;
        }
        Ok(pos)
    }

    fn audio_config_for(&mut self, header: &AdtsHeader) -> Result<AudioConfig, DemuxError> {
        let config = AudioConfig {
            sample_rate: header.sample_rate(),
            channels: header.channels,
            object_type: header.object_type,
            specific_config: header.audio_specific_config(),
        };
        match *self.state.audio_config {
            None => {
                *self.state.audio_config = Some(config);
                Ok(config)
            }
            Some(existing) if existing == config => Ok(existing),
            Some(existing) => Err(DemuxError::AudioFormatChanged {
                path: self.path.to_path_buf(),
                from_rate: existing.sample_rate,
                from_channels: existing.channels,
                to_rate: config.sample_rate,
                to_channels: config.channels,
            }),
        }
    }
}

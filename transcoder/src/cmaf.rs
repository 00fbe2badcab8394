//! CMAF (fragmented MP4) demuxing: an init segment (`ftyp` + `moov`) followed by media
//! segments (`styp`, then `moof` + `mdat` pairs), as ffmpeg's HLS muxer
//! (`-hls_segment_type fmp4`) and browser muxers such as Mediabunny write them.
//!
//! Each file is walked box by box; only `moov` and `moof` are read into memory (they are
//! small), a `moof` is turned into samples with absolute file offsets ([`crate::fmp4`]), and
//! the samples' payloads are read from the file by offset, one fragment at a time (one read
//! of the fragment's span, or one read per sample when the span is unusually large), so
//! memory stays constant whatever the length of the recording. The samples of one fragment
//! are delivered in decoding-time order across tracks (stable, so the same bytes always give
//! the same order) to the same [`SampleSink`] the MPEG-TS path feeds.
//!
//! Timing: a sample's decode time plus its track's edit-list shift (empty edits minus the
//! media start, which is how ffmpeg's fragmented output keeps audio and video in sync) is
//! converted to 90 kHz and mapped onto the shared [`crate::timeline`], so gaps and jumps are
//! closed exactly as for MPEG-TS. Negative composition offsets (`trun` version 1) are made
//! non-negative by delaying decode times by the largest negative offset of the first video
//! fragment; a later, larger one is clamped to the decode time.
//!
//! Recovery rules (the MPEG-TS ones where they apply):
//! * a `moof` that cannot be parsed is skipped and counted; its `mdat` is ignored;
//! * a sample whose data lies past the end of the file (a cut segment) or is not a valid
//!   sequence of length-prefixed NAL units is dropped and counted;
//! * a box header that is implausible (size too small, not ASCII) ends the file: the rest is
//!   counted as skipped bytes, and a file that yields no sample is reported as skipped;
//! * video before the first keyframe is dropped; decode times that do not increase are
//!   nudged forward;
//! * a later init segment may repeat the configuration; a change of picture size, audio
//!   format or codec is an error. A recording whose first CMAF input has no `moov` is an
//!   error.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::demux::{
    self, AudioCodec, AudioConfig, AudioSample, DemuxError, Demuxer, FileReport, ReadProgress,
    SampleSink, VideoConfig, VideoSample,
};
use crate::fmp4::{self, BoxHeader, FragmentSample, SampleEntry, TrackCursor};
use crate::timeline::TS_CLOCK;
use edgevideo_media::h264;

/// `moov` and `moof` boxes larger than this are treated as corrupt (real ones are KiBs).
const MAX_HEADER_BOX: u64 = 64 << 20;
/// A fragment's payload span up to this size is read at once; larger spans sample by sample.
const MAX_SPAN_READ: u64 = 64 << 20;
/// Timestamps enter the shared timeline as 33-bit values, like MPEG-TS ones; the timeline
/// unwraps them, so 64-bit CMAF times keep their differences.
const TIMELINE_MASK: u64 = (1 << 33) - 1;

/// What a track of the init segment is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackRole {
    /// The H.264 track.
    Video {
        nal_length_size: u8,
        /// Decode-time delay that makes composition offsets non-negative (set from the
        /// first fragment with samples of this track).
        cto_shift: Option<i64>,
    },
    /// The AAC or Opus track.
    Audio,
    /// Another track, or a second track of a kind already used.
    Ignored,
}

#[derive(Debug, Clone, Copy)]
struct CmafTrack {
    timescale: u32,
    edit_shift: i64,
    role: TrackRole,
}

/// CMAF state kept across the files of a recording.
#[derive(Debug, Default)]
pub struct CmafState {
    tracks: Vec<CmafTrack>,
    cursors: Vec<TrackCursor>,
    samples: Vec<FragmentSample>,
    box_buf: Vec<u8>,
    data_buf: Vec<u8>,
    seen_init: bool,
}

fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// `t` in a track timescale converted to 90 kHz (rounded down).
fn to_90k(t: i128, timescale: u32) -> i64 {
    let scaled = (t * i128::from(TS_CLOCK)).div_euclid(i128::from(timescale.max(1)));
    scaled.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn describe_entry(entry: &SampleEntry) -> String {
    match entry {
        SampleEntry::Avc { .. } => "H.264".into(),
        SampleEntry::Aac { .. } => "AAC".into(),
        SampleEntry::Opus(_) => "Opus".into(),
        SampleEntry::Other(kind) => String::from_utf8_lossy(kind).into_owned(),
    }
}

impl Demuxer {
    /// Demuxes one CMAF file (init segment or media segment) into `sink`.
    pub(crate) fn run_cmaf_file(
        &mut self,
        path: &Path,
        mut file: File,
        sink: &mut impl SampleSink,
        progress: &impl ReadProgress,
    ) -> Result<FileReport, DemuxError> {
        let read_error = |source| DemuxError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = file.metadata().map_err(read_error)?.len();
        let mut report = FileReport {
            bytes: len,
            ..FileReport::default()
        };
        let mut pos = 0u64;
        let mut header = [0u8; 16];
        while pos < len {
            let avail = (len - pos).min(16) as usize;
            if avail < 8 {
                report.truncated = true;
                report.skipped_bytes += len - pos;
                break;
            }
            read_at(&mut file, pos, &mut header[..avail]).map_err(read_error)?;
            let Some(h) = BoxHeader::parse(&header[..avail])
                .ok()
                .filter(BoxHeader::plausible)
            else {
                report.skipped_bytes += len - pos;
                break;
            };
            let size = h.size.unwrap_or(len - pos);
            let end = pos.saturating_add(size);
            let cut = end > len;
            match &h.kind {
                b"moov" | b"moof" if cut || size > MAX_HEADER_BOX => {
                    if h.kind == *b"moof" {
                        self.stats.fragments_skipped += 1;
                        report.fragments_skipped += 1;
                    }
                    report.truncated |= cut;
                    report.skipped_bytes += len.min(end) - pos;
                    if cut {
                        break;
                    }
                }
                b"moov" => {
                    let mut body = std::mem::take(&mut self.cmaf.box_buf);
                    body.resize((size - h.header_len) as usize, 0);
                    let read = read_at(&mut file, pos + h.header_len, &mut body);
                    let result = read.map_err(read_error).and_then(|()| {
                        fmp4::parse_moov(&body).map_err(|source| DemuxError::InvalidInit {
                            path: path.to_path_buf(),
                            source,
                        })
                    });
                    self.cmaf.box_buf = body;
                    self.apply_init(path, result?)?;
                    report.init_segment = true;
                }
                b"moof" => {
                    let mut body = std::mem::take(&mut self.cmaf.box_buf);
                    body.resize((size - h.header_len) as usize, 0);
                    let read = read_at(&mut file, pos + h.header_len, &mut body);
                    let mut samples = std::mem::take(&mut self.cmaf.samples);
                    samples.clear();
                    let parsed = read.map_err(read_error).map(|()| {
                        fmp4::parse_moof(&body, pos, &mut self.cmaf.cursors, &mut samples)
                    });
                    self.cmaf.box_buf = body;
                    let result = match parsed {
                        Ok(Ok(())) => self.deliver_fragment(
                            path,
                            &mut file,
                            len,
                            &mut samples,
                            sink,
                            &mut report,
                        ),
                        Ok(Err(_)) => {
                            self.stats.fragments_skipped += 1;
                            report.fragments_skipped += 1;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                    self.cmaf.samples = samples;
                    result?;
                }
                _ => {}
            }
            progress.advance(len.min(end) - pos);
            pos = len.min(end);
            if cut {
                report.truncated = true;
                break;
            }
        }
        if pos < len {
            progress.advance(len - pos);
        }
        if !self.cmaf.seen_init {
            return Err(DemuxError::MissingInit(path.to_path_buf()));
        }
        if report.video_samples > 0 || report.audio_samples > 0 {
            report.init_segment = false;
        }
        Ok(report)
    }

    /// Takes the tracks of an init segment, checking them against the recording so far.
    fn apply_init(&mut self, path: &Path, init: fmp4::Init) -> Result<(), DemuxError> {
        let mut tracks = Vec::with_capacity(init.tracks.len());
        let mut cursors = Vec::with_capacity(init.tracks.len());
        let mut have_video = false;
        let mut have_audio = false;
        for track in &init.tracks {
            let role = match &track.entry {
                SampleEntry::Avc { config, .. } if !have_video => {
                    have_video = true;
                    self.init_video(path, config)?;
                    TrackRole::Video {
                        nal_length_size: config.nal_length_size,
                        cto_shift: None,
                    }
                }
                SampleEntry::Aac { .. } | SampleEntry::Opus(_) if !have_audio => {
                    have_audio = true;
                    self.init_audio(path, &track.entry)?;
                    TrackRole::Audio
                }
                entry => {
                    let changed = match &track.handler {
                        b"vide" if !have_video => self.video_config.is_some(),
                        b"soun" if !have_audio => self.audio_config.is_some(),
                        _ => false,
                    };
                    if changed {
                        let from = if &track.handler == b"vide" {
                            "H.264".to_string()
                        } else {
                            self.audio_config
                                .as_ref()
                                .map_or("audio", AudioConfig::codec_name)
                                .to_string()
                        };
                        return Err(DemuxError::CodecChanged {
                            path: path.to_path_buf(),
                            from,
                            to: describe_entry(entry),
                        });
                    }
                    TrackRole::Ignored
                }
            };
            tracks.push(CmafTrack {
                timescale: track.timescale,
                edit_shift: track.edit_shift,
                role,
            });
            cursors.push(TrackCursor {
                track_id: track.track_id,
                defaults: track.defaults,
                next_decode_time: 0,
            });
        }
        // Keep the negative-offset shift of a track that continues.
        for (new, old) in tracks.iter_mut().zip(&self.cmaf.tracks) {
            if let (
                TrackRole::Video { cto_shift, .. },
                TrackRole::Video {
                    cto_shift: Some(shift),
                    ..
                },
            ) = (&mut new.role, old.role)
            {
                *cto_shift = Some(shift);
            }
        }
        self.cmaf.tracks = tracks;
        self.cmaf.cursors = cursors;
        self.cmaf.seen_init = true;
        Ok(())
    }

    fn init_video(&mut self, path: &Path, config: &fmp4::AvcConfig) -> Result<(), DemuxError> {
        let sps = &config.sps[0];
        let Ok(info) = h264::parse_sps(sps) else {
            return Err(DemuxError::InvalidInit {
                path: path.to_path_buf(),
                source: fmp4::Fmp4Error::Invalid("H.264 sequence parameter set".into()),
            });
        };
        match &self.video_config {
            Some(existing) => {
                demux::same_size(path, &existing.sps_info, &info)?;
            }
            None => {
                self.video_config = Some(VideoConfig {
                    sps_info: info,
                    sps: sps.clone(),
                    pps: config.pps.clone(),
                });
            }
        }
        Ok(())
    }

    fn init_audio(&mut self, path: &Path, entry: &SampleEntry) -> Result<(), DemuxError> {
        let config = match entry {
            SampleEntry::Aac {
                channels,
                sample_rate,
                specific_config,
            } => {
                let (object_type, rate, channel_config) = fmp4::parse_audio_specific_config(
                    specific_config,
                )
                .unwrap_or((2, *sample_rate, 0));
                let channels = if channel_config == 0 {
                    (*channels).min(255) as u8
                } else {
                    channel_config
                };
                AudioConfig {
                    sample_rate: if rate == 0 { *sample_rate } else { rate },
                    channels,
                    codec: AudioCodec::Aac {
                        object_type,
                        specific_config: specific_config.clone(),
                    },
                }
            }
            SampleEntry::Opus(opus) => AudioConfig {
                sample_rate: 48_000,
                channels: opus.output_channels,
                codec: AudioCodec::Opus(opus.clone()),
            },
            _ => return Ok(()),
        };
        if config.sample_rate == 0 {
            return Err(DemuxError::InvalidInit {
                path: path.to_path_buf(),
                source: fmp4::Fmp4Error::Invalid("audio sampling rate 0".into()),
            });
        }
        match &self.audio_config {
            None => self.audio_config = Some(config),
            Some(existing) if *existing == config => {}
            Some(existing) if existing.codec_name() != config.codec_name() => {
                return Err(DemuxError::CodecChanged {
                    path: path.to_path_buf(),
                    from: existing.codec_name().into(),
                    to: config.codec_name().into(),
                })
            }
            Some(existing) => {
                return Err(DemuxError::AudioFormatChanged {
                    path: path.to_path_buf(),
                    from_rate: existing.sample_rate,
                    from_channels: existing.channels,
                    to_rate: config.sample_rate,
                    to_channels: config.channels,
                })
            }
        }
        Ok(())
    }

    /// Reads the payloads of a parsed fragment and delivers its samples in decode order.
    fn deliver_fragment(
        &mut self,
        path: &Path,
        file: &mut File,
        len: u64,
        samples: &mut Vec<FragmentSample>,
        sink: &mut impl SampleSink,
        report: &mut FileReport,
    ) -> Result<(), DemuxError> {
        let tracks = &mut self.cmaf.tracks;
        // Order across tracks by decoding time (stable: ties keep traf order).
        samples.sort_by_cached_key(|s| {
            let track = tracks[s.track];
            to_90k(
                i128::from(s.decode_time) + i128::from(track.edit_shift),
                track.timescale,
            )
        });
        // Negative composition offsets: fix the decode delay from the first fragment.
        for (index, track) in tracks.iter_mut().enumerate() {
            if let TrackRole::Video { cto_shift, .. } = &mut track.role {
                if cto_shift.is_none() {
                    let min = samples
                        .iter()
                        .filter(|s| s.track == index)
                        .map(|s| s.composition_offset)
                        .min();
                    if let Some(min) = min {
                        *cto_shift = Some((-min).max(0));
                    }
                }
            }
        }
        // Samples whose data is not inside the file are lost (a cut segment).
        let before = samples.len();
        samples.retain(|s| {
            s.offset
                .checked_add(u64::from(s.size))
                .is_some_and(|end| end <= len)
        });
        self.stats.samples_dropped += (before - samples.len()) as u64;
        let (Some(start), Some(end)) = (
            samples.iter().map(|s| s.offset).min(),
            samples.iter().map(|s| s.offset + u64::from(s.size)).max(),
        ) else {
            return Ok(());
        };
        let read_error = |source| DemuxError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut buf = std::mem::take(&mut self.cmaf.data_buf);
        let whole = end - start <= MAX_SPAN_READ;
        let result = (|| {
            if whole {
                buf.resize((end - start) as usize, 0);
                read_at(file, start, &mut buf).map_err(read_error)?;
            }
            for sample in samples.iter() {
                let data: &[u8] = if whole {
                    let at = (sample.offset - start) as usize;
                    &buf[at..at + sample.size as usize]
                } else {
                    buf.resize(sample.size as usize, 0);
                    read_at(file, sample.offset, &mut buf).map_err(read_error)?;
                    &buf
                };
                let track = self.cmaf.tracks[sample.track];
                match track.role {
                    TrackRole::Video {
                        nal_length_size,
                        cto_shift,
                    } => {
                        if self.cmaf_video(
                            path,
                            track,
                            nal_length_size,
                            cto_shift.unwrap_or(0),
                            sample,
                            data,
                            sink,
                        )? {
                            report.video_samples += 1;
                        }
                    }
                    TrackRole::Audio => {
                        if self.cmaf_audio(track, sample, data, sink)? {
                            report.audio_samples += 1;
                        }
                    }
                    TrackRole::Ignored => {}
                }
            }
            Ok(())
        })();
        self.cmaf.data_buf = buf;
        result
    }

    /// One video sample; returns whether it was delivered.
    #[allow(clippy::too_many_arguments)]
    fn cmaf_video(
        &mut self,
        path: &Path,
        track: CmafTrack,
        nal_length_size: u8,
        cto_shift: i64,
        sample: &FragmentSample,
        data: &[u8],
        sink: &mut impl SampleSink,
    ) -> Result<bool, DemuxError> {
        // Length-prefixed NAL units; AUD and filler are dropped as in the MPEG-TS path.
        self.nal_ranges.clear();
        let n = usize::from(nal_length_size);
        let mut pos = 0usize;
        let mut keyframe = false;
        let mut sps_range = None;
        let mut size: u64 = 0;
        while pos < data.len() {
            let Some(prefix) = data.get(pos..pos + n) else {
                self.stats.samples_dropped += 1;
                return Ok(false);
            };
            let len = prefix
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            pos += n;
            let Some(end) = pos.checked_add(len).filter(|&e| e <= data.len()) else {
                self.stats.samples_dropped += 1;
                return Ok(false);
            };
            if len > 0 {
                match h264::nal_type(&data[pos..end]) {
                    h264::NAL_AUD | h264::NAL_FILLER => {}
                    kind => {
                        if kind == h264::NAL_IDR {
                            keyframe = true;
                        } else if kind == h264::NAL_SPS {
                            sps_range = Some((pos, end));
                        }
                        size += 4 + len as u64;
                        self.nal_ranges.push((pos, end));
                    }
                }
            }
            pos = end;
        }
        let Ok(size) = u32::try_from(size) else {
            self.stats.samples_dropped += 1;
            return Ok(false);
        };
        if self.nal_ranges.is_empty() {
            self.stats.empty_access_units += 1;
            return Ok(false);
        }
        if keyframe {
            if let Some((start, end)) = sps_range {
                self.check_inband_sps(path, &data[start..end])?;
            }
        }

        // Timing on the shared 90 kHz timeline.
        let decode = i128::from(sample.decode_time) + i128::from(track.edit_shift);
        let dts90 = to_90k(decode - i128::from(cto_shift), track.timescale);
        let pts90 = to_90k(
            decode + i128::from(sample.composition_offset),
            track.timescale,
        );
        let frame_ticks = self.video_frame_ticks;
        let offset_before = self.timeline.offset();
        let mut dts = self.timeline.map(
            &mut self.video_clock,
            dts90 as u64 & TIMELINE_MASK,
            frame_ticks,
        );
        if let Some(last) = self.last_video_dts {
            if dts <= last {
                self.stats.dts_repairs += 1;
                dts = last + 1;
            } else {
                self.video_frame_ticks = dts - last;
            }
        }
        let mut pts = dts + (pts90 - dts90).max(0);
        if self.timeline.offset() != offset_before {
            let room = demux::room_after_gap(self.max_video_pts, pts, frame_ticks);
            if room > 0 {
                self.timeline.shift(room);
                dts += room;
                pts += room;
                self.video_clock.advance_to(dts + frame_ticks);
            }
        }
        self.max_video_pts = Some(self.max_video_pts.map_or(pts, |m| m.max(pts)));
        if !self.seen_keyframe {
            if !keyframe || self.video_config.is_none() {
                self.stats.leading_frames_dropped += 1;
                return Ok(false);
            }
            self.seen_keyframe = true;
        }
        self.last_video_dts = Some(dts);
        sink.video(&VideoSample {
            dts,
            pts,
            keyframe,
            size,
            data,
            nals: &self.nal_ranges,
        })?;
        Ok(true)
    }

    /// An SPS inside a keyframe must keep the picture size of the init segment.
    fn check_inband_sps(&mut self, path: &Path, sps: &[u8]) -> Result<(), DemuxError> {
        let Some(config) = self.video_config.as_ref() else {
            return Ok(());
        };
        if config.sps == sps {
            return Ok(());
        }
        let Ok(info) = h264::parse_sps(sps) else {
            return Ok(());
        };
        demux::same_size(path, &config.sps_info, &info)
    }

    /// One audio sample; returns whether it was delivered.
    fn cmaf_audio(
        &mut self,
        track: CmafTrack,
        sample: &FragmentSample,
        data: &[u8],
        sink: &mut impl SampleSink,
    ) -> Result<bool, DemuxError> {
        let Some(sample_rate) = self.audio_config.as_ref().map(|c| c.sample_rate) else {
            return Ok(false);
        };
        if data.is_empty() {
            self.stats.samples_dropped += 1;
            return Ok(false);
        }
        let duration = if track.timescale == sample_rate {
            sample.duration
        } else {
            (u64::from(sample.duration) * u64::from(sample_rate) / u64::from(track.timescale))
                .min(u64::from(u32::MAX)) as u32
        };
        let decode = i128::from(sample.decode_time) + i128::from(track.edit_shift);
        let t90 = to_90k(decode, track.timescale);
        let frame_ticks = to_90k(i128::from(sample.duration), track.timescale).max(1);
        let time = self.timeline.map(
            &mut self.audio_clock,
            t90 as u64 & TIMELINE_MASK,
            frame_ticks,
        );
        sink.audio(&AudioSample {
            time,
            sample_rate,
            duration,
            data,
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demux::SinkError;
    use crate::fmp4::build::{boxed, cat, full, u32s};

    /// A real 640x360 High-profile SPS and PPS (from ffmpeg's libx264 output).
    const SPS: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];
    const PPS: [u8; 4] = [0x68, 0xef, 0x8f, 0xcb];

    #[derive(Default)]
    struct Collect {
        video: Vec<(i64, i64, bool, u32)>,
        audio: Vec<(i64, u32, usize)>,
    }

    impl SampleSink for Collect {
        fn video(&mut self, s: &VideoSample<'_>) -> Result<(), SinkError> {
            self.video.push((s.dts, s.pts, s.keyframe, s.size));
            Ok(())
        }
        fn audio(&mut self, s: &AudioSample<'_>) -> Result<(), SinkError> {
            self.audio.push((s.time, s.duration, s.data.len()));
            Ok(())
        }
    }

    fn trak(id: u32, timescale: u32, handler: &[u8; 4], entry: &[u8]) -> Vec<u8> {
        let stsd = full(b"stsd", 0, 0, &cat(&[&u32s(&[1]), entry]));
        let mdia = boxed(
            b"mdia",
            &cat(&[
                &full(b"mdhd", 0, 0, &u32s(&[0, 0, timescale, 0, 0])),
                &full(b"hdlr", 0, 0, &cat(&[&u32s(&[0]), handler, &[0u8; 13]])),
                &boxed(b"minf", &boxed(b"stbl", &stsd)),
            ]),
        );
        boxed(
            b"trak",
            &cat(&[&full(b"tkhd", 0, 3, &u32s(&[0, 0, id, 0, 0])), &mdia]),
        )
    }

    fn init_segment() -> Vec<u8> {
        let mut avcc = vec![1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, SPS.len() as u8];
        avcc.extend_from_slice(&SPS);
        avcc.extend_from_slice(&[1, 0, PPS.len() as u8]);
        avcc.extend_from_slice(&PPS);
        let mut avc1 = vec![0u8; 24];
        avc1.extend_from_slice(&cat(&[&640u16.to_be_bytes(), &360u16.to_be_bytes()]));
        avc1.extend_from_slice(&[0u8; 50]);
        avc1.extend_from_slice(&boxed(b"avcC", &avcc));
        let mut opus = vec![0u8; 16];
        opus.extend_from_slice(&cat(&[&2u16.to_be_bytes(), &16u16.to_be_bytes(), &[0; 4]]));
        opus.extend_from_slice(&(48_000u32 << 16).to_be_bytes());
        opus.extend_from_slice(&boxed(b"dOps", &[0, 2, 1, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]));
        let mvex = boxed(
            b"mvex",
            &cat(&[
                &full(b"trex", 0, 0, &u32s(&[1, 1, 512, 0, 0x0001_0000])),
                &full(b"trex", 0, 0, &u32s(&[2, 1, 960, 3, 0])),
            ]),
        );
        let moov = boxed(
            b"moov",
            &cat(&[
                &full(b"mvhd", 0, 0, &u32s(&[0, 0, 1000, 0])),
                &trak(1, 15_360, b"vide", &boxed(b"avc1", &avc1)),
                &trak(2, 48_000, b"soun", &boxed(b"Opus", &opus)),
                &mvex,
            ]),
        );
        cat(&[&boxed(b"ftyp", b"iso5\0\0\0\0iso6"), &moov])
    }

    /// A media segment: a non-IDR frame (to be dropped), an IDR with a negative-offset B
    /// frame after it (trun version 1, flags and durations from trex), and 3 Opus frames
    /// with the size from trex.
    fn media_segment() -> Vec<u8> {
        let nal = |kind: u8, len: usize| {
            let mut v = (len as u32 + 1).to_be_bytes().to_vec();
            v.push(kind);
            v.extend(std::iter::repeat_n(0xab, len));
            v
        };
        let aud = [0, 0, 0, 2, 0x09, 0xf0];
        let video = [
            cat(&[&nal(0x41, 10)]),
            cat(&[&aud, &nal(0x65, 20)]),
            cat(&[&nal(0x41, 5), &nal(0x01, 3)]),
        ];
        let audio = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let sizes: Vec<u32> = video.iter().map(|v| v.len() as u32).collect();
        let build = |data_offset: u32| {
            let neg = (-512i32) as u32;
            let trun_v = full(
                b"trun",
                1,
                0x01 | 0x04 | 0x200 | 0x800,
                &u32s(&[
                    3,
                    data_offset,
                    0,
                    sizes[0],
                    1024,
                    sizes[1],
                    1024,
                    sizes[2],
                    neg,
                ]),
            );
            let traf_v = boxed(
                b"traf",
                &cat(&[
                    &full(b"tfhd", 0, 0x2_0000, &u32s(&[1])),
                    &full(b"tfdt", 1, 0, &0u64.to_be_bytes()),
                    &trun_v,
                ]),
            );
            let audio_offset = data_offset + sizes.iter().sum::<u32>();
            let traf_a = boxed(
                b"traf",
                &cat(&[
                    &full(b"tfhd", 0, 0x2_0000, &u32s(&[2])),
                    &full(b"tfdt", 0, 0, &u32s(&[0])),
                    &full(b"trun", 0, 0x01, &u32s(&[3, audio_offset])),
                ]),
            );
            boxed(
                b"moof",
                &cat(&[&full(b"mfhd", 0, 0, &u32s(&[1])), &traf_v, &traf_a]),
            )
        };
        let moof_len = build(0).len() as u32;
        let moof = build(moof_len + 8);
        let payload = cat(&[&video[0], &video[1], &video[2], &audio]);
        // Data offsets are relative to the moof (default-base-is-moof), wherever it starts.
        cat(&[
            &boxed(b"styp", b"msdh\0\0\0\0"),
            &moof,
            &boxed(b"mdat", &payload),
        ])
    }

    fn run(files: &[Vec<u8>]) -> (Result<(), DemuxError>, Collect, Demuxer) {
        let dir = tempfile::tempdir().unwrap();
        let mut demuxer = Demuxer::new();
        let mut sink = Collect::default();
        let mut result = Ok(());
        for (i, bytes) in files.iter().enumerate() {
            let path = dir.path().join(format!("{i}.bin"));
            std::fs::write(&path, bytes).unwrap();
            if let Err(e) = demuxer.run_file(&path, &mut sink, &()) {
                result = Err(e);
                break;
            }
        }
        (result, sink, demuxer)
    }

    #[test]
    fn fragments_become_timed_samples() {
        let (result, sink, demuxer) = run(&[init_segment(), media_segment()]);
        result.unwrap();
        assert_eq!(demuxer.container(), Some(crate::demux::Container::Cmaf));
        // The leading non-IDR frame is dropped; the AUD is not counted in the size.
        assert_eq!(demuxer.stats().leading_frames_dropped, 1);
        assert_eq!(sink.video.len(), 2);
        let (dts0, pts0, key0, size0) = sink.video[0];
        let (dts1, pts1, key1, size1) = sink.video[1];
        assert!(key0 && !key1);
        assert_eq!(size0, 4 + 21);
        assert_eq!(size1, 4 + 6 + 4 + 4);
        // 512 ticks at 15360 Hz = 3000 at 90 kHz; the -512 offset delays decoding by one
        // frame, so presentation never precedes decoding.
        assert_eq!(dts1 - dts0, 3000);
        assert!(pts0 >= dts0 && pts1 >= dts1);
        assert_eq!(pts0 - dts0, 3000 + 6000);
        assert_eq!(pts1 - dts1, 0);
        // Opus: size 3 and duration 960 from trex, 1800 ticks apart.
        assert_eq!(sink.audio.len(), 3);
        assert!(sink.audio.iter().all(|&(_, d, n)| d == 960 && n == 3));
        assert_eq!(sink.audio[1].0 - sink.audio[0].0, 1800);
        let config = demuxer.audio_config().unwrap();
        assert_eq!((config.sample_rate, config.priming()), (48_000, 312));
        assert_eq!(demuxer.video_config().unwrap().sps_info.width, 640);
    }

    #[test]
    fn a_cut_segment_keeps_whole_samples_and_garbage_is_skipped() {
        let segment = media_segment();
        // Cut inside the last video frame's data: the audio after it is lost too.
        let mdat = segment.windows(4).rposition(|w| w == b"mdat").unwrap();
        let cut = segment[..mdat + 4 + 25 + 4 + 21 + 3].to_vec();
        let (result, sink, demuxer) = run(&[init_segment(), cut]);
        result.unwrap();
        assert_eq!(sink.video.len(), 1);
        assert!(sink.audio.is_empty());
        assert_eq!(demuxer.stats().samples_dropped, 4);

        let (result, sink, demuxer) = run(&[init_segment(), vec![0x5a; 3000], media_segment()]);
        result.unwrap();
        assert_eq!(sink.video.len(), 2);
        assert_eq!(demuxer.stats().fragments_skipped, 0);

        // A media segment first: no init segment.
        let (result, _, _) = run(&[media_segment()]);
        assert!(matches!(result, Err(DemuxError::MissingInit(_))));
    }
}

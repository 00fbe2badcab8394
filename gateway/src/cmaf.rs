//! CMAF out of RTMP: the init segment (`ftyp` + `moov` with `avc1`/`avcC` and
//! `mp4a`/`esds`), and media segments (`styp` + `moof` + `mdat`) cut at video keyframes once
//! the target duration is reached. Boxes are written with `mp4-atom`.
//!
//! Parts (low-latency HLS partial segments), when on: each segment is written as a run of
//! `moof` + `mdat` fragments of at most the part target each, every one handed out as a
//! [`Part`] as soon as it is complete, the segment's first starting with the `styp`. A
//! segment's bytes are exactly its parts' bytes one after the other. A part ends before the
//! video frame that would take it past the target (that frame's duration foreseen from the
//! last few frame intervals; when a frame turns out longer, the part ends one frame earlier,
//! so only a single frame longer than the target makes a longer part) and always where its
//! segment ends; it carries the audio frames that start before its end.
//!
//! Timescales: video 90 kHz (RTMP's millisecond timestamps times 90), audio the AAC sample
//! rate (each frame 1024 samples, its first decode time from the RTMP timestamp).

use std::collections::VecDeque;

use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Dinf, Dref, Encode, Esds, Ftyp, Hdlr, Mdat, Mdhd, Mdia, Mfhd, Minf,
    Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Styp, Tfdt, Tfhd, Tkhd,
    Traf, Trak, Trex, Trun, TrunEntry, Url, Visual, Vmhd,
};

use crate::error::MediaError;
use crate::flv::{AacConfig, AvcConfig};

/// Video timescale (ticks per second).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Samples in one AAC frame.
const AAC_FRAME: u32 = 1024;
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
/// Sample flags: a sync sample.
const SYNC: u32 = 0x0200_0000;
/// Sample flags: not a sync sample, depends on others.
const NON_SYNC: u32 = 0x0101_0000;
/// Samples held for one segment at most (a stream that never sends a keyframe is cut off).
const MAX_SEGMENT_SAMPLES: usize = 20_000;
/// Bytes held for one segment at most.
const MAX_SEGMENT_BYTES: usize = 64 * 1024 * 1024;
/// Video frame intervals remembered to foresee the next frame's duration.
const RECENT_INTERVALS: usize = 4;

/// One media sample.
#[derive(Debug, Clone)]
struct Sample {
    /// Decode time in the track's timescale.
    dts: u64,
    /// Composition offset in the track's timescale.
    cts: i64,
    keyframe: bool,
    data: Vec<u8>,
}

/// A finished media segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// 1-based sequence number (without parts, also the `mfhd` sequence).
    pub sequence: u32,
    /// Duration in seconds.
    pub duration: f64,
    /// `styp` + `moof` + `mdat` (with parts: its parts' bytes, one after the other).
    pub bytes: Vec<u8>,
    /// How many parts it was cut into (0 without parts): with all of them at the edge, the
    /// segment can be committed from them instead of sent again.
    pub parts: u32,
}

/// A finished part (a low-latency HLS partial segment): one `moof` + `mdat` fragment of a
/// segment, the segment's first part starting with the `styp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Sequence number of the segment it belongs to.
    pub segment: u32,
    /// 0-based index within the segment.
    pub index: u32,
    /// Duration in microseconds; a segment's parts add up to its duration (rounded to the
    /// microsecond).
    pub duration_us: u64,
    /// The part target it was cut to, in microseconds.
    pub target_us: u64,
    /// Whether its first video sample is a keyframe.
    pub independent: bool,
    /// (`styp` +) `moof` + `mdat`.
    pub bytes: Vec<u8>,
}

/// What the segmenter produced from one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The init segment: written once, before the first media segment.
    Init(Vec<u8>),
    /// A part of the segment being written, before that segment's [`Output::Segment`].
    Part(Part),
    /// A media segment.
    Segment(Segment),
}

/// Microseconds in `ticks` of 90 kHz, rounded to the nearest.
fn micros(ticks: u64) -> u64 {
    ticks.saturating_mul(100).saturating_add(4) / 9
}

/// Cuts one RTMP stream into CMAF segments.
#[derive(Debug)]
pub struct Segmenter {
    target_ms: u64,
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    size: Option<(u32, u32)>,
    /// Whether the init segment has been written (the tracks are then fixed).
    started: bool,
    with_audio: bool,
    sequence: u32,
    video_samples: Vec<Sample>,
    audio_samples: Vec<Sample>,
    held_bytes: usize,
    /// Decode time (90 kHz) of the segment being gathered.
    segment_start: u64,
    /// Next audio decode time (audio timescale), once audio has started.
    next_audio_dts: Option<u64>,
    /// Last video frame duration, for the final sample of the stream.
    last_video_duration: u64,
    /// Decode time (90 kHz) of the last video sample taken, across cuts.
    last_video_dts: Option<u64>,
    /// Samples held for the segment being gathered (its parts written or not).
    held_samples: usize,
    /// The last few video frame intervals (90 kHz).
    recent_intervals: VecDeque<u64>,
    /// Part target in 90 kHz ticks; 0: no parts.
    part_ticks: u64,
    /// Part target in microseconds, as configured.
    part_target_us: u64,
    /// The `mfhd` sequence of the last part written (parts count across the stream).
    fragments: u32,
    /// Index of the next part of the segment being gathered.
    part_index: u32,
    /// The bytes of the parts of the segment being gathered.
    segment_bytes: Vec<u8>,
    /// Duration (90 kHz) of the parts of the segment being gathered.
    segment_ticks: u64,
}

impl Segmenter {
    /// A segmenter cutting segments of at least `target_ms` (at the next keyframe).
    pub fn new(target_ms: u64) -> Self {
        Self {
            target_ms: target_ms.max(100),
            video: None,
            audio: None,
            size: None,
            started: false,
            with_audio: false,
            sequence: 0,
            video_samples: Vec::new(),
            audio_samples: Vec::new(),
            held_bytes: 0,
            segment_start: 0,
            next_audio_dts: None,
            last_video_duration: 3000,
            last_video_dts: None,
            held_samples: 0,
            recent_intervals: VecDeque::with_capacity(RECENT_INTERVALS),
            part_ticks: 0,
            part_target_us: 0,
            fragments: 0,
            part_index: 0,
            segment_bytes: Vec::new(),
            segment_ticks: 0,
        }
    }

    /// The same segmenter also writing parts of at most `part_ms` (0: no parts, one
    /// fragment per segment).
    pub fn with_parts(mut self, part_ms: u64) -> Self {
        self.part_ticks = part_ms.saturating_mul(90);
        self.part_target_us = part_ms.saturating_mul(1000);
        self
    }

    /// The picture size from the stream's metadata, used when the SPS cannot be read.
    pub fn set_size_hint(&mut self, width: u32, height: u32) {
        if self.size.is_none() && width > 0 && height > 0 {
            self.size = Some((width, height));
        }
    }

    /// The codecs of the tracks (RFC 6381), once the init segment is written.
    pub fn codecs(&self) -> Option<String> {
        let video = self.video.as_ref()?.codec();
        Some(match (&self.audio, self.with_audio) {
            (Some(a), true) => format!("{video},{}", a.codec()),
            _ => video,
        })
    }

    /// The H.264 decoder configuration arrived.
    pub fn video_config(&mut self, record: &[u8]) -> Result<(), MediaError> {
        let config = AvcConfig::parse(record)?;
        if self.started {
            if self.video.as_ref().map(|v| &v.record) != Some(&config.record) {
                return Err(MediaError::Unsupported(
                    "the H.264 configuration changed mid-stream".into(),
                ));
            }
            return Ok(());
        }
        if let Some(size) = config.size {
            self.size = Some(size);
        }
        self.video = Some(config);
        Ok(())
    }

    /// The AAC configuration arrived.
    pub fn audio_config(&mut self, raw: &[u8]) -> Result<(), MediaError> {
        let config = AacConfig::parse(raw)?;
        if self.started {
            if self.with_audio && self.audio.as_ref().map(|a| &a.raw) != Some(&config.raw) {
                return Err(MediaError::Unsupported(
                    "the AAC configuration changed mid-stream".into(),
                ));
            }
            return Ok(());
        }
        self.audio = Some(config);
        Ok(())
    }

    /// One H.264 access unit at RTMP time `dts_ms`.
    pub fn video_frame(
        &mut self,
        dts_ms: u32,
        cts_ms: i32,
        keyframe: bool,
        data: &[u8],
    ) -> Result<Vec<Output>, MediaError> {
        let mut out = Vec::new();
        let mut dts = u64::from(dts_ms) * 90;
        if let Some(last) = self
            .last_video_dts
            .filter(|last| self.started && dts <= *last)
        {
            if last - dts < 90 {
                // Two frames stamped with the same millisecond (GStreamer's flvmux does this
                // now and then): one 90 kHz tick after the last keeps decode times strictly
                // increasing, which players and muxers require.
                dts = last + 1;
            }
        }
        if !self.started {
            if !keyframe || self.video.is_none() {
                // Nothing is decodable before the first keyframe after the configuration.
                return Ok(out);
            }
            out.push(Output::Init(self.init_segment()?));
            self.started = true;
            self.segment_start = dts;
        } else {
            if let Some(last) = self.video_samples.last() {
                if dts < last.dts {
                    return Err(MediaError::Invalid(format!(
                        "video timestamps go back ({} ms after {} ms)",
                        dts_ms,
                        last.dts / 90
                    )));
                }
            }
            if keyframe
                && dts.saturating_sub(self.segment_start) >= self.target_ms.saturating_mul(90)
            {
                self.cut_segment(dts, false, &mut out)?;
                self.segment_start = dts;
            } else if self.part_ticks > 0 {
                self.cut_part_before(dts, &mut out)?;
            }
        }
        self.hold(dts_ms, data.len())?;
        if let Some(last) = self.last_video_dts.filter(|last| dts > *last) {
            if self.recent_intervals.len() == RECENT_INTERVALS {
                self.recent_intervals.pop_front();
            }
            self.recent_intervals.push_back(dts - last);
        }
        self.last_video_dts = Some(dts);
        self.video_samples.push(Sample {
            dts,
            cts: i64::from(cts_ms) * 90,
            keyframe,
            data: data.to_vec(),
        });
        Ok(out)
    }

    /// One raw AAC frame at RTMP time `dts_ms`.
    pub fn audio_frame(&mut self, dts_ms: u32, data: &[u8]) -> Result<(), MediaError> {
        if !self.started || !self.with_audio {
            return Ok(());
        }
        let Some(config) = &self.audio else {
            return Ok(());
        };
        let rate = u64::from(config.sample_rate);
        let dts = match self.next_audio_dts {
            Some(next) => next,
            None => {
                // Audio from before the first keyframe is not kept.
                if u64::from(dts_ms) * 90 < self.segment_start {
                    return Ok(());
                }
                u64::from(dts_ms) * rate / 1000
            }
        };
        self.next_audio_dts = Some(dts + u64::from(AAC_FRAME));
        self.hold(dts_ms, data.len())?;
        self.audio_samples.push(Sample {
            dts,
            cts: 0,
            keyframe: true,
            data: data.to_vec(),
        });
        Ok(())
    }

    /// The end of the stream: the last segment (after its last parts), if any samples are
    /// held.
    pub fn finish(&mut self) -> Result<Vec<Output>, MediaError> {
        let mut out = Vec::new();
        if let Some(last) = self.video_samples.last() {
            let end = last.dts + self.last_video_duration;
            self.cut_segment(end, true, &mut out)?;
        }
        Ok(out)
    }

    fn hold(&mut self, dts_ms: u32, len: usize) -> Result<(), MediaError> {
        self.held_bytes += len;
        let samples = self.held_samples;
        self.held_samples += 1;
        if self.held_bytes > MAX_SEGMENT_BYTES || samples >= MAX_SEGMENT_SAMPLES {
            return Err(MediaError::Invalid(format!(
                "no keyframe to cut at by {dts_ms} ms: the segment outgrew its limits"
            )));
        }
        Ok(())
    }

    /// Ends the segment being gathered at `end` (90 kHz): its last parts (with parts on) and
    /// the segment, into `out`. `all_audio`: every audio frame held goes in (the stream's end).
    fn cut_segment(
        &mut self,
        end: u64,
        all_audio: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), MediaError> {
        if self.part_ticks == 0 {
            if let Some(segment) = self.cut(end)? {
                out.push(Output::Segment(segment));
            }
            return Ok(());
        }
        if let Some(first) = self.video_samples.first() {
            let count = self.video_samples.len();
            if end.saturating_sub(first.dts) > self.part_ticks && count >= 2 {
                let last = self.video_samples[count - 1].dts;
                self.write_part(count - 1, last, false, out)?;
            }
            let count = self.video_samples.len();
            self.write_part(count, end, all_audio, out)?;
        }
        if self.part_index == 0 {
            return Ok(());
        }
        self.sequence += 1;
        let duration = self.segment_ticks.max(1) as f64 / f64::from(VIDEO_TIMESCALE);
        let bytes = std::mem::take(&mut self.segment_bytes);
        let parts = self.part_index;
        self.part_index = 0;
        self.segment_ticks = 0;
        // Audio frames after the end (audio ahead of video) go into the next segment.
        self.held_samples = self.audio_samples.len();
        self.held_bytes = self.audio_samples.iter().map(|s| s.data.len()).sum();
        out.push(Output::Segment(Segment {
            sequence: self.sequence,
            duration,
            bytes,
            parts,
        }));
        Ok(())
    }

    /// With the video frame at `dts` (90 kHz) next, ends the part being gathered when that
    /// frame would take it past the part target (or the frame before it already has).
    fn cut_part_before(&mut self, dts: u64, out: &mut Vec<Output>) -> Result<(), MediaError> {
        let Some(first) = self.video_samples.first() else {
            return Ok(());
        };
        let count = self.video_samples.len();
        if dts.saturating_sub(first.dts) > self.part_ticks && count >= 2 {
            // The last frame lasted longer than foreseen: the part ends before it.
            let last = self.video_samples[count - 1].dts;
            self.write_part(count - 1, last, false, out)?;
        }
        let Some(first) = self.video_samples.first() else {
            return Ok(());
        };
        let foreseen = self
            .recent_intervals
            .iter()
            .copied()
            .max()
            .unwrap_or(self.last_video_duration)
            .max(1);
        if dts.saturating_sub(first.dts).saturating_add(foreseen) > self.part_ticks {
            let count = self.video_samples.len();
            self.write_part(count, dts, false, out)?;
        }
        Ok(())
    }

    /// Per-sample durations of `video` (90 kHz), the last one up to `end`.
    fn durations(&mut self, video: &[Sample], end: u64) -> Vec<u64> {
        let mut durations: Vec<u64> = video
            .windows(2)
            .map(|w| w[1].dts.saturating_sub(w[0].dts))
            .collect();
        let last = video.last().map_or(0, |s| end.saturating_sub(s.dts));
        let last = if last == 0 {
            self.last_video_duration
        } else {
            last
        };
        durations.push(last);
        if let Some(d) = durations.iter().rev().find(|d| **d > 0) {
            self.last_video_duration = *d;
        }
        durations
    }

    /// Writes the first `count` video samples held, ending at `end` (90 kHz), and the audio
    /// frames that start before `end` (every one held with `all_audio`) as the next part.
    fn write_part(
        &mut self,
        count: usize,
        end: u64,
        all_audio: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), MediaError> {
        let count = count.min(self.video_samples.len());
        if count == 0 {
            return Ok(());
        }
        let video: Vec<Sample> = self.video_samples.drain(..count).collect();
        let durations = self.durations(&video, end);
        let audio_count = if all_audio {
            self.audio_samples.len()
        } else {
            let rate = u128::from(self.audio.as_ref().map_or(1, |a| a.sample_rate.max(1)));
            let end = u128::from(end) * rate;
            self.audio_samples
                .iter()
                .take_while(|s| u128::from(s.dts) * u128::from(VIDEO_TIMESCALE) < end)
                .count()
        };
        let audio: Vec<Sample> = self.audio_samples.drain(..audio_count).collect();
        self.fragments = self.fragments.wrapping_add(1);
        let mut bytes = if self.part_index == 0 {
            styp()?
        } else {
            Vec::new()
        };
        bytes.extend_from_slice(&fragment(self.fragments, &video, &durations, &audio)?);
        self.segment_bytes.extend_from_slice(&bytes);
        let ticks: u64 = durations.iter().sum();
        let start_us = micros(self.segment_ticks);
        self.segment_ticks = self.segment_ticks.saturating_add(ticks);
        out.push(Output::Part(Part {
            segment: self.sequence.wrapping_add(1),
            index: self.part_index,
            duration_us: micros(self.segment_ticks) - start_us,
            target_us: self.part_target_us,
            independent: video[0].keyframe,
            bytes,
        }));
        self.part_index += 1;
        Ok(())
    }

    /// Writes the held samples before `end` (90 kHz) as one segment (parts off).
    fn cut(&mut self, end: u64) -> Result<Option<Segment>, MediaError> {
        if self.video_samples.is_empty() {
            return Ok(None);
        }
        let video = std::mem::take(&mut self.video_samples);
        let audio = std::mem::take(&mut self.audio_samples);
        self.held_bytes = 0;
        self.held_samples = 0;
        self.sequence += 1;
        let start = video[0].dts;
        let durations = self.durations(&video, end);
        let duration = (end.max(start + 1) - start) as f64 / f64::from(VIDEO_TIMESCALE);
        let bytes = media_segment(self.sequence, &video, &durations, &audio)?;
        Ok(Some(Segment {
            sequence: self.sequence,
            duration,
            bytes,
            parts: 0,
        }))
    }

    fn init_segment(&mut self) -> Result<Vec<u8>, MediaError> {
        let video = self
            .video
            .as_ref()
            .ok_or_else(|| MediaError::Invalid("no H.264 configuration".into()))?;
        self.with_audio = self.audio.is_some();
        let (width, height) = self.size.unwrap_or((0, 0));
        init_segment(
            video,
            self.audio.as_ref().filter(|_| self.with_audio),
            width,
            height,
        )
    }
}

fn encode_err(e: mp4_atom::Error) -> MediaError {
    MediaError::Invalid(format!("cannot write a box: {e}"))
}

fn dinf() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![Url {
                location: String::new(),
            }
            .into()],
        },
    }
}

fn empty_stbl(stsd: Stsd) -> Stbl {
    Stbl {
        stsd,
        stts: Stts::default(),
        stsc: Stsc::default(),
        stsz: Stsz::default(),
        stco: Some(Stco::default()),
        ..Default::default()
    }
}

/// `ftyp` + `moov` for an H.264 track and, if given, an AAC track.
pub fn init_segment(
    video: &AvcConfig,
    audio: Option<&AacConfig>,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, MediaError> {
    let avcc = Avcc::decode_body(&mut video.record.as_slice())
        .map_err(|e| MediaError::Invalid(format!("AVC configuration: {e}")))?;
    let w16 = u16::try_from(width).unwrap_or(0);
    let h16 = u16::try_from(height).unwrap_or(0);
    let mut traks = vec![Trak {
        tkhd: Tkhd {
            track_id: VIDEO_TRACK,
            enabled: true,
            in_movie: true,
            width: w16.into(),
            height: h16.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: VIDEO_TIMESCALE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: b"vide".into(),
                name: "VideoHandler".into(),
            },
            minf: Minf {
                vmhd: Some(Vmhd::default()),
                dinf: dinf(),
                stbl: empty_stbl(Stsd {
                    codecs: vec![Avc1 {
                        visual: Visual {
                            data_reference_index: 1,
                            width: w16,
                            height: h16,
                            horizresolution: 72.into(),
                            vertresolution: 72.into(),
                            frame_count: 1,
                            compressor: "".into(),
                            depth: 24,
                        },
                        avcc,
                        btrt: None,
                        colr: None,
                        pasp: None,
                        taic: None,
                        fiel: None,
                        spatial: Default::default(),
                    }
                    .into()],
                }),
                ..Default::default()
            },
        },
        ..Default::default()
    }];
    let mut trex = vec![Trex {
        track_id: VIDEO_TRACK,
        default_sample_description_index: 1,
        ..Default::default()
    }];
    if let Some(aac) = audio {
        let rate = u16::try_from(aac.sample_rate)
            .map_err(|_| MediaError::Unsupported(format!("AAC at {} Hz", aac.sample_rate)))?;
        traks.push(Trak {
            tkhd: Tkhd {
                track_id: AUDIO_TRACK,
                alternate_group: 1,
                enabled: true,
                in_movie: true,
                volume: 1.into(),
                ..Default::default()
            },
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale: aac.sample_rate,
                    language: "und".into(),
                    ..Default::default()
                },
                hdlr: Hdlr {
                    handler: b"soun".into(),
                    name: "SoundHandler".into(),
                },
                minf: Minf {
                    smhd: Some(Smhd::default()),
                    dinf: dinf(),
                    stbl: empty_stbl(Stsd {
                        codecs: vec![Mp4a {
                            audio: Audio {
                                data_reference_index: 1,
                                channel_count: u16::from(aac.channels.max(1)),
                                sample_size: 16,
                                sample_rate: rate.into(),
                            },
                            esds: Esds {
                                es_desc: mp4_atom::esds::EsDescriptor {
                                    es_id: AUDIO_TRACK as u16,
                                    depends_on_es_id: None,
                                    url: None,
                                    ocr_es_id: None,
                                    stream_priority: 0,
                                    dec_config: mp4_atom::esds::DecoderConfig {
                                        object_type_indication: 0x40,
                                        stream_type: 5,
                                        dec_specific: Some(mp4_atom::esds::DecoderSpecific {
                                            profile: aac.object_type,
                                            freq_index: aac.freq_index,
                                            chan_conf: aac.channels,
                                            raw: aac.raw.clone(),
                                        }),
                                        ..Default::default()
                                    },
                                    sl_config: mp4_atom::esds::SLConfig {},
                                },
                            },
                            btrt: None,
                            taic: None,
                        }
                        .into()],
                    }),
                    ..Default::default()
                },
            },
            ..Default::default()
        });
        trex.push(Trex {
            track_id: AUDIO_TRACK,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: traks.len() as u32 + 1,
            ..Default::default()
        },
        mvex: Some(Mvex {
            trex,
            ..Default::default()
        }),
        trak: traks,
        ..Default::default()
    };
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out).map_err(encode_err)?;
    moov.encode(&mut out).map_err(encode_err)?;
    Ok(out)
}

fn traf(track_id: u32, base: u64, entries: Vec<TrunEntry>, data_offset: i32) -> Traf {
    Traf {
        tfhd: Tfhd {
            track_id,
            default_base_is_moof: true,
            ..Default::default()
        },
        tfdt: Some(Tfdt {
            base_media_decode_time: base,
        }),
        trun: vec![Trun {
            data_offset: Some(data_offset),
            samples: entries.into(),
        }],
        ..Default::default()
    }
}

/// The `styp` a media segment starts with.
fn styp() -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    Styp {
        major_brand: b"msdh".into(),
        minor_version: 0,
        compatible_brands: vec![b"msdh".into(), b"msix".into()],
    }
    .encode(&mut out)
    .map_err(encode_err)?;
    Ok(out)
}

/// `styp` + `moof` + `mdat`: the video samples (with their durations), then the audio ones.
fn media_segment(
    sequence: u32,
    video: &[Sample],
    durations: &[u64],
    audio: &[Sample],
) -> Result<Vec<u8>, MediaError> {
    let mut out = styp()?;
    out.extend_from_slice(&fragment(sequence, video, durations, audio)?);
    Ok(out)
}

/// `moof` (with `mfhd` `sequence`) + `mdat`: the video samples (with their durations), then
/// the audio ones.
fn fragment(
    sequence: u32,
    video: &[Sample],
    durations: &[u64],
    audio: &[Sample],
) -> Result<Vec<u8>, MediaError> {
    let video_entries: Vec<TrunEntry> = video
        .iter()
        .zip(durations)
        .map(|(s, d)| TrunEntry {
            duration: Some(u32::try_from(*d).unwrap_or(u32::MAX)),
            size: Some(s.data.len() as u32),
            flags: Some(if s.keyframe { SYNC } else { NON_SYNC }),
            cts: Some(s.cts),
        })
        .collect();
    let audio_entries: Vec<TrunEntry> = audio
        .iter()
        .map(|s| TrunEntry {
            duration: Some(AAC_FRAME),
            size: Some(s.data.len() as u32),
            flags: None,
            cts: None,
        })
        .collect();
    let video_bytes: usize = video.iter().map(|s| s.data.len()).sum();
    let build = |video_offset: i32, audio_offset: i32| {
        let mut trafs = vec![traf(
            VIDEO_TRACK,
            video.first().map_or(0, |s| s.dts),
            video_entries.clone(),
            video_offset,
        )];
        if !audio.is_empty() {
            trafs.push(traf(
                AUDIO_TRACK,
                audio[0].dts,
                audio_entries.clone(),
                audio_offset,
            ));
        }
        Moof {
            mfhd: Mfhd {
                sequence_number: sequence,
            },
            traf: trafs,
        }
    };
    // The data offsets depend on the size of the moof, which does not depend on their values.
    let mut probe = Vec::new();
    build(0, 0).encode(&mut probe).map_err(encode_err)?;
    let moof_size = probe.len();
    let video_offset = i32::try_from(moof_size + 8)
        .map_err(|_| MediaError::Invalid("segment too large".into()))?;
    let audio_offset = i32::try_from(moof_size + 8 + video_bytes)
        .map_err(|_| MediaError::Invalid("segment too large".into()))?;
    let moof = build(video_offset, audio_offset);
    let mut data =
        Vec::with_capacity(video_bytes + audio.iter().map(|s| s.data.len()).sum::<usize>());
    for s in video.iter().chain(audio) {
        data.extend_from_slice(&s.data);
    }
    let mut out = Vec::with_capacity(data.len() + moof_size + 16);
    moof.encode(&mut out).map_err(encode_err)?;
    if data.len() + 8 > u32::MAX as usize {
        return Err(MediaError::Invalid("segment too large".into()));
    }
    Mdat { data }.encode(&mut out).map_err(encode_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::{Decode, Moof};

    use crate::flv::fixtures::{AAC_LC_48K_STEREO as ASC, AVC_RECORD_640X360 as AVC_RECORD};

    fn frame(i: u32) -> Vec<u8> {
        let mut f = vec![0, 0, 0, 4];
        f.extend_from_slice(&i.to_be_bytes());
        f
    }

    /// 30 fps video with a keyframe every second, AAC frames in between, for `seconds`.
    fn feed(seg: &mut Segmenter, seconds: u32) -> Vec<Output> {
        feed_gop(seg, seconds, 30)
    }

    /// 30 fps video with a keyframe every `gop` frames, AAC frames in between, for `seconds`.
    fn feed_gop(seg: &mut Segmenter, seconds: u32, gop: u32) -> Vec<Output> {
        let mut out = Vec::new();
        let mut audio_ms = 0.0f64;
        for i in 0..seconds * 30 {
            let ms = i * 100 / 3;
            while audio_ms <= f64::from(ms) {
                seg.audio_frame(audio_ms as u32, &[0xAA; 7]).unwrap();
                audio_ms += 1024.0 * 1000.0 / 48000.0;
            }
            out.extend(seg.video_frame(ms, 66, i % gop == 0, &frame(i)).unwrap());
        }
        out
    }

    fn started() -> Segmenter {
        let mut seg = Segmenter::new(2000);
        seg.video_config(AVC_RECORD).unwrap();
        seg.audio_config(ASC).unwrap();
        seg
    }

    #[test]
    fn cuts_at_the_first_keyframe_after_the_target() {
        let mut seg = started();
        // Frames before the first keyframe are not decodable: dropped, nothing written.
        assert!(seg.video_frame(0, 0, false, &frame(99)).unwrap().is_empty());
        let out = feed(&mut seg, 5);
        assert!(matches!(out[0], Output::Init(_)));
        let segments: Vec<&Segment> = out
            .iter()
            .filter_map(|o| match o {
                Output::Segment(s) => Some(s),
                Output::Init(_) | Output::Part(_) => None,
            })
            .collect();
        assert_eq!(segments.len(), 2, "cut at 2 s and 4 s");
        assert_eq!(segments[0].sequence, 1);
        assert!(
            (segments[0].duration - 2.0).abs() < 0.001,
            "{}",
            segments[0].duration
        );
        let Some(Output::Segment(last)) = seg.finish().unwrap().pop() else {
            panic!("no last segment");
        };
        assert_eq!(last.sequence, 3);
        assert!((last.duration - 1.0).abs() < 0.001, "{}", last.duration);
        assert_eq!(seg.codecs().as_deref(), Some("avc1.64001e,mp4a.40.2"));
    }

    #[test]
    fn frames_stamped_with_the_same_millisecond_keep_increasing_decode_times() {
        let mut seg = started();
        // As GStreamer's flvmux sends now and then: frames with the same RTMP timestamp,
        // one of them the keyframe that cuts the segment.
        let stamps = [0, 33, 33, 33, 66, 2000, 2000, 2033];
        let mut out = Vec::new();
        for (i, ms) in stamps.iter().enumerate() {
            let key = i == 0 || i == 6;
            out.extend(seg.video_frame(*ms, 0, key, &frame(i as u32)).unwrap());
        }
        out.extend(seg.finish().unwrap());
        let mut dts = Vec::new();
        for output in &out {
            let Output::Segment(segment) = output else {
                continue;
            };
            let mut buf = &segment.bytes[..];
            Styp::decode(&mut buf).unwrap();
            let moof = Moof::decode(&mut buf).unwrap();
            let video = &moof.traf[0];
            let mut at = video.tfdt.as_ref().unwrap().base_media_decode_time;
            for sample in video.trun[0].samples.iter() {
                dts.push(at);
                at += u64::from(sample.duration.unwrap());
            }
        }
        assert_eq!(dts, [0, 2970, 2971, 2972, 5940, 180_000, 180_001, 182_970]);
    }

    #[test]
    fn media_segments_parse_back_with_offsets_into_mdat() {
        let mut seg = started();
        let out = feed(&mut seg, 3);
        let Some(Output::Segment(first)) = out.get(1) else {
            panic!("no segment: {out:?}");
        };
        let mut buf = first.bytes.as_slice();
        let styp = Styp::decode(&mut buf).unwrap();
        assert_eq!(styp.major_brand, b"msdh".into());
        let moof_start = first.bytes.len() - buf.len();
        let moof = Moof::decode(&mut buf).unwrap();
        let mdat = Mdat::decode(&mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(moof.mfhd.sequence_number, 1);
        let video = &moof.traf[0];
        assert_eq!(video.tfhd.track_id, VIDEO_TRACK);
        assert_eq!(video.tfdt.as_ref().unwrap().base_media_decode_time, 0);
        let trun = &video.trun[0];
        assert_eq!(trun.samples.len(), 60, "two seconds at 30 fps");
        let firsts = trun.samples.get(0).unwrap();
        assert_eq!(firsts.flags, Some(SYNC));
        assert_eq!(firsts.cts, Some(66 * 90));
        assert_eq!(trun.samples.get(1).unwrap().flags, Some(NON_SYNC));
        let total: u64 = trun
            .samples
            .iter()
            .map(|s| u64::from(s.duration.unwrap()))
            .sum();
        assert_eq!(total, 2 * 90_000);
        // The data offset (from the moof) lands on the first sample's bytes.
        let offset = moof_start + trun.data_offset.unwrap() as usize;
        assert_eq!(&first.bytes[offset..offset + 8], frame(0).as_slice());
        let audio = &moof.traf[1];
        assert_eq!(audio.tfhd.track_id, AUDIO_TRACK);
        let audio_offset = moof_start + audio.trun[0].data_offset.unwrap() as usize;
        assert_eq!(&first.bytes[audio_offset..audio_offset + 7], &[0xAA; 7]);
        let audio_samples = audio.trun[0].samples.len();
        assert!(
            (93..=95).contains(&audio_samples),
            "{audio_samples} AAC frames in 2 s"
        );
        assert_eq!(mdat.data.len(), 60 * 8 + audio_samples * 7);
    }

    #[test]
    fn the_init_segment_parses_back_with_the_codec_configurations() {
        let mut seg = started();
        let out = feed(&mut seg, 1);
        let Some(Output::Init(init)) = out.first() else {
            panic!("no init segment");
        };
        let mut buf = init.as_slice();
        let ftyp = Ftyp::decode(&mut buf).unwrap();
        assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
        let moov = Moov::decode(&mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(moov.trak.len(), 2);
        assert_eq!(moov.mvex.as_ref().unwrap().trex.len(), 2);
        let video = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0];
        let mp4_atom::Codec::Avc1(avc1) = video else {
            panic!("not avc1: {video:?}");
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (640, 360));
        assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
        assert_eq!(avc1.avcc.length_size, 4);
        let audio = &moov.trak[1].mdia.minf.stbl.stsd.codecs[0];
        let mp4_atom::Codec::Mp4a(mp4a) = audio else {
            panic!("not mp4a: {audio:?}");
        };
        assert_eq!(moov.trak[1].mdia.mdhd.timescale, 48000);
        let specific = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
        assert_eq!(specific.raw, ASC);
    }

    #[test]
    fn hostile_streams_are_errors_not_panics() {
        let mut seg = started();
        seg.video_frame(1000, 0, true, &frame(0)).unwrap();
        assert!(
            seg.video_frame(500, 0, false, &frame(1)).is_err(),
            "time goes back"
        );
        assert!(seg.video_config(&[1, 2, 3]).is_err());
        assert!(seg.audio_config(&[0x11]).is_err());
        // A changed configuration mid-stream is refused (one init segment per stream).
        assert!(seg.audio_config(&[0x12, 0x10]).is_err());

        // No keyframe ever again: the held segment hits its limit and the stream is refused.
        let mut seg = started();
        seg.video_frame(0, 0, true, &frame(0)).unwrap();
        let big = vec![0u8; 1024 * 1024];
        let mut refused = false;
        for i in 1..200u32 {
            if seg.video_frame(i * 33, 0, false, &big).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "the held bytes are bounded");

        // Extreme timestamps and offsets.
        let mut seg = started();
        seg.video_frame(u32::MAX, i32::MIN >> 8, true, &frame(0))
            .unwrap();
        seg.audio_frame(u32::MAX, &[1]).unwrap();
        assert!(!seg.finish().unwrap().is_empty());
    }

    /// What one fragment (`moof` + `mdat`) holds.
    #[derive(Debug)]
    struct Fragment {
        sequence: u32,
        /// Video `tfdt` and the video samples' (duration, flags, first bytes).
        video_start: u64,
        video: Vec<(u64, u32, Vec<u8>)>,
        /// Audio `tfdt` and sample durations.
        audio_start: Option<u64>,
        audio: Vec<u64>,
    }

    /// Parses `bytes` as an optional `styp` then `moof` + `mdat` pairs, checking that each
    /// data offset lands inside its `mdat`.
    fn fragments(bytes: &[u8]) -> (bool, Vec<Fragment>) {
        let mut buf = bytes;
        let styp = buf.starts_with(&[0, 0, 0, 24]) && &buf[4..8] == b"styp";
        if styp {
            Styp::decode(&mut buf).unwrap();
        }
        let mut out = Vec::new();
        while !buf.is_empty() {
            let moof_start = bytes.len() - buf.len();
            let moof = Moof::decode(&mut buf).unwrap();
            let mdat_start = bytes.len() - buf.len();
            let mdat = Mdat::decode(&mut buf).unwrap();
            let mdat_end = bytes.len() - buf.len();
            let video = &moof.traf[0];
            assert_eq!(video.tfhd.track_id, VIDEO_TRACK);
            let trun = &video.trun[0];
            let mut at = moof_start + trun.data_offset.unwrap() as usize;
            assert!(at >= mdat_start + 8, "video data before the mdat");
            let mut samples = Vec::new();
            for sample in trun.samples.iter() {
                let size = sample.size.unwrap() as usize;
                assert!(at + size <= mdat_end, "a video sample past the mdat");
                samples.push((
                    u64::from(sample.duration.unwrap()),
                    sample.flags.unwrap(),
                    bytes[at..at + size].to_vec(),
                ));
                at += size;
            }
            let (audio_start, audio) = match moof.traf.get(1) {
                Some(audio) => {
                    assert_eq!(audio.tfhd.track_id, AUDIO_TRACK);
                    let trun = &audio.trun[0];
                    let offset = moof_start + trun.data_offset.unwrap() as usize;
                    let size: usize = trun.samples.iter().map(|s| s.size.unwrap() as usize).sum();
                    assert!(offset + size <= mdat_end, "audio past the mdat");
                    (
                        Some(audio.tfdt.as_ref().unwrap().base_media_decode_time),
                        trun.samples
                            .iter()
                            .map(|s| u64::from(s.duration.unwrap()))
                            .collect(),
                    )
                }
                None => (None, Vec::new()),
            };
            assert!(!mdat.data.is_empty());
            out.push(Fragment {
                sequence: moof.mfhd.sequence_number,
                video_start: video.tfdt.as_ref().unwrap().base_media_decode_time,
                video: samples,
                audio_start,
                audio,
            });
        }
        (styp, out)
    }

    /// The parts of each segment (in order) and the segments, checking that every part
    /// comes before its segment and right after the part before it.
    fn grouped(out: &[Output]) -> Vec<(Segment, Vec<Part>)> {
        let mut groups = Vec::new();
        let mut parts: Vec<Part> = Vec::new();
        for output in out {
            match output {
                Output::Init(_) => assert!(groups.is_empty() && parts.is_empty()),
                Output::Part(part) => {
                    assert_eq!(part.index as usize, parts.len(), "parts in order");
                    parts.push(part.clone());
                }
                Output::Segment(segment) => {
                    for part in &parts {
                        assert_eq!(part.segment, segment.sequence);
                    }
                    groups.push((segment.clone(), std::mem::take(&mut parts)));
                }
            }
        }
        assert!(parts.is_empty(), "parts after the last segment: {parts:?}");
        groups
    }

    #[test]
    fn segments_are_their_parts_one_after_the_other() {
        let mut seg = started().with_parts(334);
        // A keyframe every 2 s: the segments' only keyframes are their first frames.
        let mut out = feed_gop(&mut seg, 7, 60);
        out.extend(seg.finish().unwrap());
        let groups = grouped(&out);
        assert_eq!(groups.len(), 4, "cut at 2, 4 and 6 s, then the end");
        let mut last_sequence = 0;
        let mut video_end = 0;
        let mut audio_end: Option<u64> = None;
        for (segment, parts) in &groups {
            // 2 s of 30 fps in parts of at most 334 ms: 10 frames (333 ms) each.
            let expected = if segment.sequence == 4 { 3 } else { 6 };
            assert_eq!(parts.len(), expected, "segment {}", segment.sequence);
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.bytes.clone()).collect();
            assert_eq!(joined, segment.bytes, "segment {}", segment.sequence);
            let mut ticks = 0;
            for part in parts {
                assert_eq!(part.target_us, 334_000);
                assert!(part.duration_us <= 334_000, "{} us", part.duration_us);
                let (styp, fragments) = fragments(&part.bytes);
                assert_eq!(styp, part.index == 0, "styp only in the first part");
                assert_eq!(fragments.len(), 1, "one moof + mdat per part");
                let fragment = &fragments[0];
                assert!(
                    fragment.sequence > last_sequence,
                    "mfhd {} after {last_sequence}",
                    fragment.sequence
                );
                last_sequence = fragment.sequence;
                assert_eq!(fragment.video_start, video_end, "video continues");
                let part_ticks: u64 = fragment.video.iter().map(|(d, ..)| d).sum();
                assert!(part_ticks <= 334 * 90, "{part_ticks} ticks");
                assert!(part.duration_us.abs_diff(part_ticks * 100 / 9) <= 1);
                video_end += part_ticks;
                ticks += part_ticks;
                let first_sync = fragment.video[0].1 == SYNC;
                assert_eq!(part.independent, first_sync);
                assert_eq!(part.independent, part.index == 0);
                for (_, flags, _) in &fragment.video[1..] {
                    assert_eq!(*flags, NON_SYNC);
                }
                if let Some(start) = fragment.audio_start {
                    if let Some(end) = audio_end {
                        assert_eq!(start, end, "audio continues");
                    }
                    audio_end = Some(start + fragment.audio.iter().sum::<u64>());
                    // The part's audio starts within its video span.
                    let audio_at = start * 90_000 / 48_000;
                    assert!(
                        audio_at < video_end,
                        "audio at {audio_at}, video to {video_end}"
                    );
                }
            }
            let seconds = ticks as f64 / 90_000.0;
            assert!((seconds - segment.duration).abs() < 1e-9, "{seconds}");
            let sum_us: u64 = parts.iter().map(|p| p.duration_us).sum();
            assert_eq!(sum_us, (segment.duration * 1e6).round() as u64);
        }
        // The last frame (at 6966 ms) lasts as long as the one before it (33 ms).
        assert_eq!(video_end, 6999 * 90);
    }

    #[test]
    fn a_part_comes_out_with_the_first_frame_after_it() {
        let mut seg = started().with_parts(334);
        let mut parts = 0;
        for i in 0..150u32 {
            let ms = i * 100 / 3;
            for output in seg.video_frame(ms, 0, i % 60 == 0, &frame(i)).unwrap() {
                let Output::Part(part) = output else {
                    continue;
                };
                let (_, fragments) = fragments(&part.bytes);
                let fragment = &fragments[0];
                let end = fragment.video_start + fragment.video.iter().map(|v| v.0).sum::<u64>();
                assert_eq!(end, u64::from(ms) * 90, "part {} late", part.index);
                parts += 1;
            }
        }
        assert_eq!(parts, 14, "10 frames each");
    }

    #[test]
    fn a_keyframe_inside_a_segment_makes_its_part_independent() {
        let mut seg = started().with_parts(500);
        // Keyframes every second; parts of 15 frames (500 ms): every other part starts on one.
        let mut out = feed_gop(&mut seg, 5, 30);
        out.extend(seg.finish().unwrap());
        for (segment, parts) in grouped(&out) {
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.bytes.clone()).collect();
            assert_eq!(joined, segment.bytes);
            for part in parts {
                let (_, fragments) = fragments(&part.bytes);
                assert_eq!(part.independent, fragments[0].video[0].1 == SYNC);
                assert!(part.duration_us <= 500_000);
            }
        }
        let independent = out
            .iter()
            .filter(|o| matches!(o, Output::Part(p) if p.independent))
            .count();
        assert_eq!(independent, 5, "one per keyframe");
    }

    #[test]
    fn without_parts_each_segment_is_one_fragment_as_before() {
        let mut off = started().with_parts(0);
        let mut out = feed_gop(&mut off, 7, 60);
        out.extend(off.finish().unwrap());
        let mut plain = started();
        let mut before = feed_gop(&mut plain, 7, 60);
        before.extend(plain.finish().unwrap());
        assert_eq!(out, before);
        assert!(out.iter().all(|o| !matches!(o, Output::Part(_))));
        let segments: Vec<&Segment> = out
            .iter()
            .filter_map(|o| match o {
                Output::Segment(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(segments.len(), 4);
        for segment in segments {
            let (styp, fragments) = fragments(&segment.bytes);
            assert!(styp);
            assert_eq!(fragments.len(), 1, "one moof");
            assert_eq!(fragments[0].sequence, segment.sequence);
        }
        // The bytes written before parts existed (FNV-1a of every output's bytes).
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for output in &out {
            let bytes = match output {
                Output::Init(b) => b,
                Output::Segment(s) => &s.bytes,
                Output::Part(p) => &p.bytes,
            };
            for b in bytes {
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        assert_eq!(hash, 0xe8b6_fe18_000d_3bf8, "{hash:#x}");
    }

    #[test]
    fn irregular_frames_keep_parts_within_the_target() {
        let mut seg = started().with_parts(334);
        let mut out = Vec::new();
        // Frame intervals wandering between 20 and 60 ms, one 700 ms stall, a keyframe every
        // 2 s or so.
        let mut ms = 0u32;
        let mut last_key = 0u32;
        for i in 0..400u32 {
            let key = i == 0 || ms - last_key >= 2000;
            if key {
                last_key = ms;
            }
            out.extend(seg.video_frame(ms, 0, key, &frame(i)).unwrap());
            ms += if i == 200 { 700 } else { 20 + (i * 7919) % 41 };
        }
        out.extend(seg.finish().unwrap());
        let mut long = 0;
        for (segment, parts) in grouped(&out) {
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.bytes.clone()).collect();
            assert_eq!(joined, segment.bytes);
            let sum_us: u64 = parts.iter().map(|p| p.duration_us).sum();
            assert_eq!(sum_us, (segment.duration * 1e6).round() as u64);
            for part in parts {
                let (_, fragments) = fragments(&part.bytes);
                if part.duration_us > 334_000 {
                    // Only a single frame longer than the target makes a longer part.
                    assert_eq!(fragments[0].video.len(), 1, "{part:?}");
                    long += 1;
                }
            }
        }
        assert_eq!(long, 1, "the stall");
    }

    #[test]
    fn hostile_streams_with_parts_are_errors_not_panics() {
        let mut seg = started().with_parts(100);
        seg.video_frame(u32::MAX - 100, i32::MIN >> 8, true, &frame(0))
            .unwrap();
        seg.audio_frame(u32::MAX, &[1]).unwrap();
        seg.video_frame(u32::MAX, 0, false, &frame(1)).unwrap();
        seg.video_frame(u32::MAX, 0, true, &frame(2)).unwrap();
        assert!(!seg.finish().unwrap().is_empty());
        assert!(seg.finish().unwrap().is_empty());

        let mut seg = started().with_parts(1);
        let out = feed(&mut seg, 2);
        assert!(out.iter().filter(|o| matches!(o, Output::Part(_))).count() >= 59);
        assert!(
            seg.video_frame(0, 0, false, &frame(0)).is_err(),
            "time goes back"
        );
    }
}

//! CMAF out of RTMP: the init segment (`ftyp` + `moov` with `avc1`/`avcC` and
//! `mp4a`/`esds`), and media segments (`styp` + `moof` + `mdat`) cut at video keyframes once
//! the target duration is reached. Boxes are written with `mp4-atom`.
//!
//! Timescales: video 90 kHz (RTMP's millisecond timestamps times 90), audio the AAC sample
//! rate (each frame 1024 samples, its first decode time from the RTMP timestamp).

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
    /// 1-based sequence number (also the `mfhd` sequence).
    pub sequence: u32,
    /// Duration in seconds.
    pub duration: f64,
    /// `styp` + `moof` + `mdat`.
    pub bytes: Vec<u8>,
}

/// What the segmenter produced from one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The init segment: written once, before the first media segment.
    Init(Vec<u8>),
    /// A media segment.
    Segment(Segment),
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
        }
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
        } else if keyframe && dts.saturating_sub(self.segment_start) >= self.target_ms * 90 {
            if let Some(segment) = self.cut(dts)? {
                out.push(Output::Segment(segment));
            }
            self.segment_start = dts;
        }
        if let Some(last) = self.video_samples.last() {
            if dts < last.dts {
                return Err(MediaError::Invalid(format!(
                    "video timestamps go back ({} ms after {} ms)",
                    dts_ms,
                    last.dts / 90
                )));
            }
        }
        self.hold(dts_ms, data.len())?;
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

    /// The end of the stream: the last segment, if any samples are held.
    pub fn finish(&mut self) -> Result<Option<Segment>, MediaError> {
        let Some(last) = self.video_samples.last() else {
            return Ok(None);
        };
        let end = last.dts + self.last_video_duration;
        self.cut(end)
    }

    fn hold(&mut self, dts_ms: u32, len: usize) -> Result<(), MediaError> {
        self.held_bytes += len;
        if self.held_bytes > MAX_SEGMENT_BYTES
            || self.video_samples.len() + self.audio_samples.len() >= MAX_SEGMENT_SAMPLES
        {
            return Err(MediaError::Invalid(format!(
                "no keyframe to cut at by {dts_ms} ms: the segment outgrew its limits"
            )));
        }
        Ok(())
    }

    /// Writes the held samples before `end` (90 kHz) as one segment.
    fn cut(&mut self, end: u64) -> Result<Option<Segment>, MediaError> {
        if self.video_samples.is_empty() {
            return Ok(None);
        }
        let video = std::mem::take(&mut self.video_samples);
        let audio = std::mem::take(&mut self.audio_samples);
        self.held_bytes = 0;
        self.sequence += 1;
        let start = video[0].dts;
        let mut durations: Vec<u64> = video.windows(2).map(|w| w[1].dts - w[0].dts).collect();
        let last = end.saturating_sub(video[video.len() - 1].dts);
        let last = if last == 0 {
            self.last_video_duration
        } else {
            last
        };
        durations.push(last);
        if let Some(d) = durations.iter().rev().find(|d| **d > 0) {
            self.last_video_duration = *d;
        }
        let duration = (end.max(start + 1) - start) as f64 / f64::from(VIDEO_TIMESCALE);
        let bytes = media_segment(self.sequence, &video, &durations, &audio)?;
        Ok(Some(Segment {
            sequence: self.sequence,
            duration,
            bytes,
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

/// `styp` + `moof` + `mdat`: the video samples (with their durations), then the audio ones.
fn media_segment(
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
    let mut out = Vec::with_capacity(data.len() + moof_size + 64);
    Styp {
        major_brand: b"msdh".into(),
        minor_version: 0,
        compatible_brands: vec![b"msdh".into(), b"msix".into()],
    }
    .encode(&mut out)
    .map_err(encode_err)?;
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
        let mut out = Vec::new();
        let mut audio_ms = 0.0f64;
        for i in 0..seconds * 30 {
            let ms = i * 100 / 3;
            while audio_ms <= f64::from(ms) {
                seg.audio_frame(audio_ms as u32, &[0xAA; 7]).unwrap();
                audio_ms += 1024.0 * 1000.0 / 48000.0;
            }
            out.extend(seg.video_frame(ms, 66, i % 30 == 0, &frame(i)).unwrap());
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
                Output::Init(_) => None,
            })
            .collect();
        assert_eq!(segments.len(), 2, "cut at 2 s and 4 s");
        assert_eq!(segments[0].sequence, 1);
        assert!(
            (segments[0].duration - 2.0).abs() < 0.001,
            "{}",
            segments[0].duration
        );
        let last = seg.finish().unwrap().unwrap();
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
        out.extend(seg.finish().unwrap().map(Output::Segment));
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
        assert!(seg.finish().unwrap().is_some());
    }
}

//! MPEG-TS in (what SRT carries): the transport stream is demuxed with the shared
//! `edgevideo-media` demuxer and turned into the [`Media`] a [`Stream`](crate::stream::Stream)
//! takes. H.264 Annex B access units become 4-byte length-prefixed NAL units (access unit
//! delimiters, filler and parameter sets dropped: the parameter sets go into the `avcC`
//! record, sent again only when they change); AAC ADTS frames become raw frames and an
//! `AudioSpecificConfig`. Timestamps (33-bit, 90 kHz) are unwrapped and rebased to the first
//! video decode time, so the first frame is at 0 ms whatever the encoder's clock starts at.
//!
//! It is total: bytes that are not a transport stream, a lost sync, malformed PES packets or
//! parameter sets are skipped and counted, never a panic. Only the callback's errors stop it.

use edgevideo_media::adts::{self, AdtsError, AdtsHeader};
use edgevideo_media::h264::{self, NalSplitter};
use edgevideo_media::ts::{Pes, StreamKind, TsDemuxer, TsStats, PACKET_SIZE, SYNC_BYTE};

use crate::stream::Media;

/// Timestamps are 33-bit.
const WRAP: i64 = 1 << 33;
/// 90 kHz ticks per millisecond.
const TICKS_PER_MS: i64 = 90;
/// Longest the first video frames are held waiting for the first audio frame, so that the
/// audio configuration is known before the first keyframe fixes the tracks.
const HOLD_MS: u32 = 1500;
/// Most video frames held (whatever their timestamps say).
const HOLD_FRAMES: usize = 120;
/// Most bytes of video held.
const HOLD_BYTES: usize = 32 * 1024 * 1024;
/// Largest rebased time taken (the `u32` milliseconds of [`Media`]).
const MAX_MS: i64 = u32::MAX as i64;

/// What the adapter skipped (beside the transport layer's own counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TsInputStats {
    /// The transport layer's counters.
    pub transport: TsStats,
    /// Bytes skipped looking for the packet sync byte.
    pub bytes_skipped: u64,
    /// Video access units dropped (no timestamp, no picture, before the clock started).
    pub video_dropped: u64,
    /// Audio frames dropped (bad ADTS, before the first video frame).
    pub audio_dropped: u64,
    /// Parameter sets that could not be read.
    pub bad_parameter_sets: u64,
}

/// Turns a transport stream, fed in chunks of any size, into [`Media`].
#[derive(Debug, Default)]
pub struct TsInput {
    demuxer: TsDemuxer,
    /// Bytes of a packet not complete yet.
    pending: Vec<u8>,
    convert: Convert,
}

/// The PES-to-media half (apart from the demuxer, which borrows it from its callback).
#[derive(Debug, Default)]
struct Convert {
    splitter: NalSplitter,
    nals: Vec<(usize, usize)>,
    /// The access unit being written (length-prefixed NAL units).
    sample: Vec<u8>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// The `avcC` record last sent.
    avcc: Option<Vec<u8>>,
    /// The `AudioSpecificConfig` last sent.
    asc: Option<[u8; 2]>,
    clock: Clock,
    /// Video frames held at the start until the audio configuration is known.
    held: Vec<HeldFrame>,
    /// Whether video goes out as it comes (the start is over).
    released: bool,
    /// Whether the program announces an audio stream (from the PMT).
    audio_announced: bool,
    stats: TsInputStats,
}

/// A video frame held at the start: decode time, composition offset (ms), keyframe, data.
type HeldFrame = (u32, i32, bool, Vec<u8>);

/// Unwraps 33-bit timestamps into one growing clock and rebases it to the first video
/// decode time.
#[derive(Debug, Default)]
struct Clock {
    /// The last unwrapped time (any stream).
    last: Option<i64>,
    /// The unwrapped first video decode time.
    base: Option<i64>,
}

impl Clock {
    /// The unwrapped time of a 33-bit timestamp: the one nearest the last time seen.
    fn unwrap(&mut self, raw: u64) -> i64 {
        let raw = (raw as i64) & (WRAP - 1);
        let time = match self.last {
            None => raw,
            Some(last) => {
                let mut delta = (raw - last).rem_euclid(WRAP);
                if delta >= WRAP / 2 {
                    delta -= WRAP;
                }
                last + delta
            }
        };
        self.last = Some(time);
        time
    }

    /// Milliseconds since the base, when there is one and `time` is not before it.
    fn ms(&self, time: i64) -> Option<u32> {
        let since = time - self.base?;
        (0..=MAX_MS * TICKS_PER_MS)
            .contains(&since)
            .then_some((since / TICKS_PER_MS) as u32)
    }
}

impl TsInput {
    /// An adapter that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was skipped so far.
    pub fn stats(&self) -> TsInputStats {
        TsInputStats {
            transport: self.demuxer.stats(),
            ..self.convert.stats
        }
    }

    /// Feeds transport stream bytes (any chunking); what they complete goes to `out`.
    /// Errors come only from `out`.
    pub fn push<E>(
        &mut self,
        bytes: &[u8],
        out: &mut impl FnMut(Media<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut input = bytes;
        // Complete a packet begun in an earlier chunk.
        if !self.pending.is_empty() {
            let need = PACKET_SIZE - self.pending.len();
            let take = need.min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < PACKET_SIZE {
                return Ok(());
            }
            let mut packet = [0u8; PACKET_SIZE];
            packet.copy_from_slice(&self.pending);
            self.pending.clear();
            self.packet(&packet, out)?;
        }
        while !input.is_empty() {
            if input[0] != SYNC_BYTE {
                // Lost sync: skip to the next sync byte.
                let skip = input
                    .iter()
                    .position(|&b| b == SYNC_BYTE)
                    .unwrap_or(input.len());
                self.convert.stats.bytes_skipped += skip as u64;
                input = &input[skip..];
                continue;
            }
            if input.len() < PACKET_SIZE {
                self.pending.extend_from_slice(input);
                break;
            }
            // A sync byte in the payload is not a packet start when the next one is missing.
            if input.len() > PACKET_SIZE && input[PACKET_SIZE] != SYNC_BYTE {
                self.convert.stats.bytes_skipped += 1;
                input = &input[1..];
                continue;
            }
            let (packet, rest) = input.split_at(PACKET_SIZE);
            let packet: &[u8; PACKET_SIZE] = packet.try_into().unwrap_or(&[0; PACKET_SIZE]);
            self.packet(packet, out)?;
            input = rest;
        }
        Ok(())
    }

    /// Ends the input: the video held at the start goes to `out`. The PES packets still open
    /// are dropped, not sent: an encoder's video PES has no announced length, so the last
    /// access unit is complete only if nothing of its tail was lost, and an SRT caller that
    /// closes in live mode (no linger) discards what is still unacknowledged. One frame at
    /// the end is lost; a truncated one, which a decoder reports as corrupt, never goes out.
    pub fn finish<E>(&mut self, out: &mut impl FnMut(Media<'_>) -> Result<(), E>) -> Result<(), E> {
        let convert = &mut self.convert;
        self.pending.clear();
        self.demuxer
            .finish(true, &mut |pes: Pes<'_>| convert.pes(&pes, out))?;
        self.convert.release(out)
    }

    fn packet<E>(
        &mut self,
        packet: &[u8; PACKET_SIZE],
        out: &mut impl FnMut(Media<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let convert = &mut self.convert;
        convert.audio_announced = self.demuxer.has_audio_stream();
        self.demuxer
            .push_packet(packet, &mut |pes: Pes<'_>| convert.pes(&pes, out))
    }
}

impl Convert {
    fn pes<E>(
        &mut self,
        pes: &Pes<'_>,
        out: &mut impl FnMut(Media<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match pes.kind {
            StreamKind::Video => self.video(pes, out),
            StreamKind::Audio => self.audio(pes, out),
        }
    }

    fn video<E>(
        &mut self,
        pes: &Pes<'_>,
        out: &mut impl FnMut(Media<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(pts) = pes.pts else {
            self.stats.video_dropped += 1;
            return Ok(());
        };
        let data = pes.payload;
        self.splitter.split(data, &mut self.nals);
        self.sample.clear();
        let mut keyframe = false;
        let mut parameters_changed = false;
        for &(start, end) in &self.nals {
            let nal = &data[start..end];
            match h264::nal_type(nal) {
                h264::NAL_AUD | h264::NAL_FILLER => continue,
                h264::NAL_SPS => {
                    if h264::parse_sps(nal).is_ok() && nal.len() <= usize::from(u16::MAX) {
                        parameters_changed |= self.sps.as_deref() != Some(nal);
                        self.sps = Some(nal.to_vec());
                    } else {
                        self.stats.bad_parameter_sets += 1;
                    }
                    continue;
                }
                h264::NAL_PPS => {
                    if nal.len() > 1 && nal.len() <= usize::from(u16::MAX) {
                        parameters_changed |= self.pps.as_deref() != Some(nal);
                        self.pps = Some(nal.to_vec());
                    } else {
                        self.stats.bad_parameter_sets += 1;
                    }
                    continue;
                }
                h264::NAL_IDR => keyframe = true,
                _ => {}
            }
            let Ok(len) = u32::try_from(nal.len()) else {
                continue;
            };
            self.sample.extend_from_slice(&len.to_be_bytes());
            self.sample.extend_from_slice(nal);
        }
        if parameters_changed {
            if let Some(record) = self.avc_record() {
                if self.avcc.as_ref() != Some(&record) {
                    out(Media::VideoConfig(&record))?;
                    self.avcc = Some(record);
                }
            }
        }
        if self.sample.is_empty() {
            self.stats.video_dropped += 1;
            return Ok(());
        }
        // The decode time: absent means equal to the presentation time.
        let dts = self.clock.unwrap(pes.dts.unwrap_or(pts));
        let mut cts = (pts as i64 - pes.dts.unwrap_or(pts) as i64).rem_euclid(WRAP);
        if cts >= WRAP / 2 {
            cts -= WRAP;
        }
        if self.clock.base.is_none() {
            self.clock.base = Some(dts);
        }
        let (Some(dts_ms), Some(pts_ms)) = (self.clock.ms(dts), self.clock.ms(dts + cts)) else {
            self.stats.video_dropped += 1;
            return Ok(());
        };
        let cts_ms = i64::from(pts_ms) - i64::from(dts_ms);
        let Ok(cts_ms) = i32::try_from(cts_ms) else {
            self.stats.video_dropped += 1;
            return Ok(());
        };
        if !self.released {
            if self.audio_announced && self.asc.is_none() {
                self.held
                    .push((dts_ms, cts_ms, keyframe, self.sample.clone()));
                let held_bytes: usize = self.held.iter().map(|frame| frame.3.len()).sum();
                if dts_ms.saturating_sub(self.held[0].0) < HOLD_MS
                    && self.held.len() < HOLD_FRAMES
                    && held_bytes < HOLD_BYTES
                {
                    return Ok(());
                }
                // No audio after all this time: video goes without it.
                return self.release(out);
            }
            self.release(out)?;
        }
        out(Media::Video {
            dts_ms,
            cts_ms,
            keyframe,
            data: &self.sample,
        })
    }

    /// Ends the start: the held video frames go out, and any later ones as they come.
    fn release<E>(&mut self, out: &mut impl FnMut(Media<'_>) -> Result<(), E>) -> Result<(), E> {
        self.released = true;
        for (dts_ms, cts_ms, keyframe, data) in std::mem::take(&mut self.held) {
            out(Media::Video {
                dts_ms,
                cts_ms,
                keyframe,
                data: &data,
            })?;
        }
        Ok(())
    }

    /// The `AVCDecoderConfigurationRecord` of the current SPS and PPS (ISO/IEC 14496-15
    /// 5.3.3.1, with the High profile fields), when both are known.
    fn avc_record(&self) -> Option<Vec<u8>> {
        let (sps, pps) = (self.sps.as_deref()?, self.pps.as_deref()?);
        let info = h264::parse_sps(sps).ok()?;
        let mut record = vec![1, info.profile, info.compatibility, info.level, 0xFF, 0xE1];
        record.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
        record.extend_from_slice(sps);
        record.push(1);
        record.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
        record.extend_from_slice(pps);
        if matches!(info.profile, 100 | 110 | 122 | 144) {
            record.extend_from_slice(&[
                0xFC | (info.chroma_format & 0x03),
                0xF8 | (info.bit_depth_luma_minus8 & 0x07),
                0xF8 | (info.bit_depth_chroma_minus8 & 0x07),
                0,
            ]);
        }
        Some(record)
    }

    fn audio<E>(
        &mut self,
        pes: &Pes<'_>,
        out: &mut impl FnMut(Media<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let data = pes.payload;
        let Some(pts) = pes.pts else {
            self.stats.audio_dropped += 1;
            return Ok(());
        };
        let start = self.clock.unwrap(pts);
        let mut pos = 0;
        let mut frames: i64 = 0;
        while pos < data.len() {
            let header = match AdtsHeader::parse(&data[pos..]) {
                Ok(header) => header,
                Err(AdtsError::Truncated) => break,
                Err(_) => {
                    self.stats.audio_dropped += 1;
                    let Some(next) = adts::find_sync(data, pos + 1) else {
                        break;
                    };
                    pos = next;
                    continue;
                }
            };
            let Some(frame) = data.get(pos + header.header_len..pos + header.frame_len) else {
                self.stats.audio_dropped += 1;
                break;
            };
            pos += header.frame_len;
            if header.extra_blocks != 0 {
                // Several raw data blocks in one ADTS frame: not one MP4 sample.
                self.stats.audio_dropped += 1;
                continue;
            }
            let asc = header.audio_specific_config();
            if self.asc != Some(asc) {
                out(Media::AudioConfig(&asc))?;
                self.asc = Some(asc);
                // The tracks are known: the video held so far goes out before this audio.
                self.release(out)?;
            }
            let offset = frames * i64::from(adts::SAMPLES_PER_FRAME) * 90_000
                / i64::from(header.sample_rate());
            frames += 1;
            let Some(dts_ms) = self.clock.ms(start + offset) else {
                // Before the first video frame: nothing to play it with.
                self.stats.audio_dropped += 1;
                continue;
            };
            out(Media::Audio {
                dts_ms,
                data: frame,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Everything an input produced, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Got {
        VideoConfig(Vec<u8>),
        Video(u32, i32, bool, Vec<u8>),
        AudioConfig(Vec<u8>),
        Audio(u32, usize),
    }

    fn run(input: &mut TsInput, chunks: &[&[u8]]) -> Vec<Got> {
        let mut got = Vec::new();
        let mut sink = |media: Media<'_>| -> Result<(), ()> {
            got.push(match media {
                Media::VideoConfig(r) => Got::VideoConfig(r.to_vec()),
                Media::Video {
                    dts_ms,
                    cts_ms,
                    keyframe,
                    data,
                } => Got::Video(dts_ms, cts_ms, keyframe, data.to_vec()),
                Media::AudioConfig(c) => Got::AudioConfig(c.to_vec()),
                Media::Audio { dts_ms, data } => Got::Audio(dts_ms, data.len()),
                Media::SizeHint(..) => unreachable!("no size hints from TS"),
            });
            Ok(())
        };
        for chunk in chunks {
            input.push(chunk, &mut sink).unwrap();
        }
        input.finish(&mut sink).unwrap();
        got
    }

    /// A transport stream made by ffmpeg now: 2 s of 320x180 H.264 (B-frames, 1 s GOP) and
    /// 48 kHz AAC, with the clock starting at `offset` seconds.
    fn ffmpeg_ts(offset: &str) -> Vec<u8> {
        ffmpeg(&["-c:a", "aac", "-output_ts_offset", offset])
    }

    fn ffmpeg(extra: &[&str]) -> Vec<u8> {
        let out = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x180:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=sample_rate=48000",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-bf",
                "2",
                "-g",
                "30",
            ])
            .args(extra)
            .args(["-f", "mpegts", "-"])
            .output()
            .expect("ffmpeg runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn check_ffmpeg_stream(got: &[Got]) {
        let Some(Got::VideoConfig(record)) = got.first() else {
            panic!("the avcC comes first: {:?}", got.first());
        };
        let config = crate::flv::AvcConfig::parse(record).unwrap();
        assert_eq!(config.size, Some((320, 180)));
        assert_eq!(config.length_size, 4);
        assert_eq!(
            got.iter()
                .filter(|g| matches!(g, Got::VideoConfig(_)))
                .count(),
            1,
            "the same parameter sets are not sent again"
        );
        let video: Vec<_> = got
            .iter()
            .filter_map(|g| match g {
                Got::Video(dts, cts, key, data) => Some((*dts, *cts, *key, data)),
                _ => None,
            })
            .collect();
        // The last access unit is still open at the end (its PES has no length): dropped.
        assert_eq!(video.len(), 59);
        assert_eq!(video[0].0, 0, "rebased to the first decode time");
        assert!(video[0].2, "starts on a keyframe");
        assert_eq!(video.iter().filter(|v| v.2).count(), 2, "1 s GOP");
        assert!(video.windows(2).all(|w| w[1].0 > w[0].0), "increasing dts");
        assert!(video.iter().all(|v| v.1 >= 0), "pts >= dts");
        assert!(video.iter().any(|v| v.1 > 0), "B-frames reorder");
        let last = video.last().unwrap().0;
        assert!((1900..2000).contains(&last), "last dts {last} ms");
        for (_, _, _, data) in &video {
            // Length-prefixed NAL units that exactly fill the sample, no parameter sets.
            let mut at = 0;
            while at < data.len() {
                let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
                let kind = data[at + 4] & 0x1F;
                assert!(!(7..=9).contains(&kind), "NAL type {kind} in a sample");
                at += 4 + len;
            }
            assert_eq!(at, data.len());
        }
        let first_frame = got.iter().position(|g| matches!(g, Got::Video(..)));
        let audio_config = got.iter().position(|g| matches!(g, Got::AudioConfig(_)));
        assert!(
            audio_config < first_frame,
            "the audio track is known at the first frame"
        );
        assert!(
            got.contains(&Got::AudioConfig(vec![0x11, 0x88])),
            "AAC-LC 48 kHz mono"
        );
        let audio: Vec<u32> = got
            .iter()
            .filter_map(|g| match g {
                Got::Audio(dts, _) => Some(*dts),
                _ => None,
            })
            .collect();
        assert!(audio.len() >= 85, "{} audio frames", audio.len());
        assert!(audio.windows(2).all(|w| w[1] >= w[0]));
        assert!(
            audio[0] < 100,
            "audio starts with the video: {} ms",
            audio[0]
        );
    }

    #[test]
    fn converts_an_ffmpeg_transport_stream() {
        let ts = ffmpeg_ts("0");
        // SRT's chunks (7 packets), odd chunks, and all at once give the same media.
        let srt: Vec<&[u8]> = ts.chunks(1316).collect();
        let odd: Vec<&[u8]> = ts.chunks(1000).collect();
        let a = run(&mut TsInput::new(), &srt);
        let b = run(&mut TsInput::new(), &odd);
        let c = run(&mut TsInput::new(), &[&ts]);
        check_ffmpeg_stream(&a);
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn a_stream_cut_short_never_yields_a_truncated_frame() {
        // The caller closes with its last packets unsent: whatever the cut, every frame that
        // goes out is a whole frame of the full stream, in order.
        let ts = ffmpeg_ts("0");
        let full = run(&mut TsInput::new(), &[&ts]);
        let frames = |got: &[Got]| -> Vec<Vec<u8>> {
            got.iter()
                .filter_map(|g| match g {
                    Got::Video(_, _, _, data) => Some(data.clone()),
                    _ => None,
                })
                .collect()
        };
        let whole = frames(&full);
        let packets = ts.len() / PACKET_SIZE;
        for lost in [1, 2, 3, 7, 14, 40] {
            let cut = &ts[..(packets - lost) * PACKET_SIZE];
            let got = frames(&run(&mut TsInput::new(), &[cut]));
            assert!(!got.is_empty());
            assert_eq!(got[..], whole[..got.len()], "{lost} packets lost");
        }
    }

    #[test]
    fn rebases_a_clock_that_starts_late_and_wraps() {
        // 2^33 ticks is 95443.7 s: with ffmpeg's initial delay (under 1.5 s) this clock
        // wraps within the two seconds.
        let wrapping = ffmpeg_ts("95441.7");
        let mut raw = Vec::new();
        let mut demuxer = TsDemuxer::new();
        let mut collect = |pes: Pes<'_>| -> Result<(), ()> {
            raw.extend(pes.pts);
            Ok(())
        };
        for packet in wrapping.chunks_exact(PACKET_SIZE) {
            demuxer
                .push_packet(packet.try_into().unwrap(), &mut collect)
                .unwrap();
        }
        assert!(
            raw.iter().any(|&pts| pts < raw[0] / 2),
            "the clock wraps: {raw:?}"
        );
        let a = run(&mut TsInput::new(), &[&wrapping]);
        check_ffmpeg_stream(&a);
        let b = run(&mut TsInput::new(), &[&ffmpeg_ts("0")]);
        assert_eq!(a, b, "the same media whatever the clock");
    }

    #[test]
    fn video_without_audio_is_not_held() {
        let got = run(&mut TsInput::new(), &[&ffmpeg(&["-an"])]);
        let video = got.iter().filter(|g| matches!(g, Got::Video(..))).count();
        assert_eq!(video, 59);
        assert!(matches!(got[1], Got::Video(0, _, true, _)), "{:?}", got[1]);
    }

    #[test]
    fn holding_for_audio_is_bounded() {
        // Audio announced but never sent, video whose clock stands still: the frames held
        // for the audio configuration go out after HOLD_FRAMES, not never.
        let mut convert = Convert {
            audio_announced: true,
            ..Convert::default()
        };
        let pes = [0, 0, 0, 1, 0x65, 0x88, 0x84];
        let mut frames = 0;
        for _ in 0..HOLD_FRAMES + 5 {
            convert
                .pes(
                    &Pes {
                        kind: StreamKind::Video,
                        pts: Some(900),
                        dts: None,
                        payload: &pes,
                    },
                    &mut |media: Media<'_>| -> Result<(), ()> {
                        frames += usize::from(matches!(media, Media::Video { .. }));
                        Ok(())
                    },
                )
                .unwrap();
        }
        assert_eq!(frames, HOLD_FRAMES + 5);
        assert!(convert.held.is_empty());
    }

    #[test]
    fn unwraps_33_bit_timestamps() {
        let mut clock = Clock::default();
        assert_eq!(clock.unwrap((1 << 33) - 90), (1 << 33) - 90);
        clock.base = Some((1 << 33) - 90);
        assert_eq!(clock.unwrap(0), 1 << 33);
        assert_eq!(clock.ms(1 << 33), Some(1));
        // A little back (audio before video) stays on the same lap.
        assert_eq!(clock.unwrap((1 << 33) - 900), (1 << 33) - 900);
        assert_eq!(clock.ms((1 << 33) - 900), None, "before the base");
    }

    #[test]
    fn garbage_and_resync_never_panic() {
        let mut seed = 0x9E37_79B9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut input = TsInput::new();
        for len in [0, 1, 187, 188, 189, 1316, 5000] {
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = run(&mut input, &[&bytes]);
            // Packets with sync bytes and random headers reach the demuxer and the converter.
            let mut packets = vec![0u8; len / 188 * 188 + 188];
            for (i, b) in packets.iter_mut().enumerate() {
                *b = if i % 188 == 0 {
                    SYNC_BYTE
                } else {
                    next() as u8
                };
            }
            let _ = run(&mut input, &[&packets]);
        }
        // Real media after garbage is still read, once the sync is found again.
        let ts = ffmpeg_ts("0");
        let mut garbage: Vec<u8> = (0..777).map(|_| next() as u8).collect();
        garbage.extend_from_slice(&ts);
        let mut input = TsInput::new();
        let got = run(&mut input, &[&garbage]);
        assert!(input.stats().bytes_skipped >= 1);
        check_ffmpeg_stream(&got);
        // Corrupted copies of real media: every byte flipped somewhere.
        for round in 0..20 {
            let mut bad = ts.clone();
            for _ in 0..200 {
                let at = next() as usize % bad.len();
                bad[at] ^= (next() as u8) | 1;
            }
            let _ = run(&mut TsInput::new(), &[&bad[round..]]);
        }
    }
}

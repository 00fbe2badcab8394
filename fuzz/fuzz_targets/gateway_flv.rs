//! The gateway's media path on arbitrary input: FLV video and audio tag bodies through
//! `flv::parse_video` / `parse_audio`, and whatever parses into one `cmaf::Segmenter`, in any
//! order, with any timestamps, as a publisher could send them. The segmenter must never panic,
//! on any sequence of configurations, frames, timestamps, size hints and ends (it is fed on
//! after an error too); what it writes must hold together.
//!
//! Input: the first byte sets the target segment duration (`byte * 20` ms), then records of
//! `op` (1 byte), a timestamp (bit 3 of `op` set: 4 bytes absolute, else a 2-byte step from
//! the last one), a body length (2 bytes, big-endian) and the body. `op & 7`: 0-2 a video
//! tag body, 3-4 an audio tag body, 5 a size hint (two u16 of the body), 6 the end of the
//! stream (`finish`), 7 an RTMP timestamp wrap-around (the clock goes back to the value).
#![no_main]

use edgevideo_gateway::cmaf::{Output, Segmenter};
use edgevideo_gateway::flv::{self, AudioTag, VideoTag};
use libfuzzer_sys::fuzz_target;

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

/// Top-level ISO BMFF boxes of `bytes`: their types, or `None` when the sizes do not tile it.
fn boxes(bytes: &[u8]) -> Option<Vec<[u8; 4]>> {
    let mut at = 0usize;
    let mut kinds = Vec::new();
    while at < bytes.len() {
        let header = bytes.get(at..at + 8)?;
        let size = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
        if size < 8 || at + size > bytes.len() {
            return None;
        }
        kinds.push(header[4..8].try_into().ok()?);
        at += size;
    }
    Some(kinds)
}

struct Check {
    init: bool,
    sequence: u32,
    /// An error was answered: the stream would have ended there, and a segment may be lost.
    failed: bool,
}

impl Check {
    fn outputs(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Init(bytes) => {
                    assert!(!self.init, "a second init segment");
                    assert_eq!(self.sequence, 0, "the init segment after a media segment");
                    self.init = true;
                    let kinds = boxes(&bytes).expect("init segment boxes tile it");
                    assert_eq!(kinds, [*b"ftyp", *b"moov"]);
                }
                Output::Part(part) => {
                    assert!(self.init, "a part before the init segment");
                    let kinds = boxes(&part.bytes).expect("part boxes tile it");
                    let expected: &[[u8; 4]] = if part.index == 0 {
                        &[*b"styp", *b"moof", *b"mdat"]
                    } else {
                        &[*b"moof", *b"mdat"]
                    };
                    assert_eq!(kinds, expected);
                }
                Output::Segment(segment) => self.segment(segment),
            }
        }
    }

    fn segment(&mut self, segment: edgevideo_gateway::cmaf::Segment) {
        assert!(self.init, "a media segment before the init segment");
        if self.failed {
            assert!(segment.sequence > self.sequence, "sequence numbers go back");
        } else {
            assert_eq!(segment.sequence, self.sequence + 1, "sequence numbers");
        }
        self.sequence = segment.sequence;
        assert!(
            segment.duration.is_finite() && segment.duration > 0.0,
            "duration {}",
            segment.duration
        );
        // `styp`, then one `moof` + `mdat` per part (one without parts).
        let kinds = boxes(&segment.bytes).expect("media segment boxes tile it");
        assert_eq!(kinds.first(), Some(b"styp"));
        assert!(kinds.len() >= 3 && kinds.len() % 2 == 1, "{} boxes", kinds.len());
        for pair in kinds[1..].chunks(2) {
            assert_eq!(pair, [*b"moof", *b"mdat"]);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let Some(&[target]) = take(&mut input, 1) else {
        return;
    };
    let mut segmenter = Segmenter::new(u64::from(target) * 20);
    let mut check = Check {
        init: false,
        sequence: 0,
        failed: false,
    };
    let mut clock: u32 = 0;
    while let Some(&[op]) = take(&mut input, 1) {
        if op & 0x08 != 0 {
            let Some(ts) = take(&mut input, 4) else { break };
            clock = u32::from_be_bytes(ts.try_into().unwrap());
        } else {
            let Some(step) = take(&mut input, 2) else {
                break;
            };
            clock = clock.wrapping_add(u32::from(u16::from_be_bytes([step[0], step[1]])));
        }
        let Some(len) = take(&mut input, 2) else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]])).min(input.len());
        let body = take(&mut input, len).unwrap_or_default();
        match op & 0x07 {
            0..=2 => match flv::parse_video(body) {
                Ok(VideoTag::Config(record)) => {
                    let _ = segmenter.video_config(record);
                }
                Ok(VideoTag::Frame {
                    keyframe,
                    cts_ms,
                    data,
                }) => match segmenter.video_frame(clock, cts_ms, keyframe, data) {
                    Ok(outputs) => check.outputs(outputs),
                    Err(_) => check.failed = true,
                },
                Ok(VideoTag::Other) | Err(_) => {}
            },
            3 | 4 => match flv::parse_audio(body) {
                Ok(AudioTag::Config(raw)) => {
                    let _ = segmenter.audio_config(raw);
                }
                Ok(AudioTag::Frame(frame)) => {
                    if segmenter.audio_frame(clock, frame).is_err() {
                        check.failed = true;
                    }
                }
                Err(_) => {}
            },
            5 => {
                if body.len() >= 4 {
                    let w = u16::from_be_bytes([body[0], body[1]]);
                    let h = u16::from_be_bytes([body[2], body[3]]);
                    segmenter.set_size_hint(u32::from(w), u32::from(h));
                }
            }
            6 => match segmenter.finish() {
                Ok(outputs) => check.outputs(outputs),
                Err(_) => check.failed = true,
            },
            _ => clock = u32::from_be_bytes([0, 0, body.first().copied().unwrap_or(0), 0]),
        }
        let _ = segmenter.codecs();
    }
    if let Ok(outputs) = segmenter.finish() {
        check.outputs(outputs);
    }
});

//! Low-Latency HLS (RFC 8216bis): the media playlist with parts, written by a small typed
//! writer (`m3u8-rs` has no part tags), and the blocking playlist reload a player asks for
//! with `_HLS_msn` / `_HLS_part`.
//!
//! The writer renders [`LowLatencyPlaylist`]: `EXT-X-SERVER-CONTROL`, `EXT-X-PART-INF`, the
//! segments with the `EXT-X-PART`s they were made of (kept for the last few segments), the
//! parts of the segment still being made, `EXT-X-PRELOAD-HINT` for the next part, and
//! `EXT-X-RENDITION-REPORT`s for the other renditions. Its test renders the example playlist
//! of Apple's "Enabling Low-Latency HLS" byte for byte.
//!
//! [`BlockingReload`] is the reload a player asks for, parsed and checked as RFC 8216bis
//! 6.2.5.2 says: `_HLS_part` needs `_HLS_msn`, both are decimal integers, and a request too
//! far ahead of the playlist (more than two segments, or [`ADVANCE_PART_LIMIT`] parts) is a
//! bad request rather than a wait. [`BlockingReload::satisfied_by`] says whether a playlist
//! whose newest part is known answers it.
//!
//! [`PartName`] is how a pushed part is named (`{rendition}_{n}.part{i}.m4s`, part `i` of
//! segment `{rendition}_{n}.m4s`), and [`from_window`] turns a room's live window with its
//! parts into the playlist the edge serves.

use std::fmt::Write as _;

use thiserror::Error;

use crate::model::hls::{target_duration_s, ListedSegment};
use crate::model::room::{LiveWindow, PartWindow};

/// A blocking reload asking for a part this many past the newest one (or more) is a bad
/// request (RFC 8216bis 6.2.5.2).
pub const ADVANCE_PART_LIMIT: u64 = 3;

/// A duration or offset in microseconds, written in seconds with as few decimals as it
/// needs (at least one): `4.00008`, `0.33334`, `1.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Micros(pub u64);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whole = self.0 / 1_000_000;
        let fraction = format!("{:06}", self.0 % 1_000_000);
        let fraction = fraction.trim_end_matches('0');
        write!(
            f,
            "{whole}.{}",
            if fraction.is_empty() { "0" } else { fraction }
        )
    }
}

/// `EXT-X-SERVER-CONTROL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerControl {
    /// `CAN-BLOCK-RELOAD=YES`: the server holds a reload until what it asks for exists.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK`: how far from the live edge a low-latency player should play (at
    /// least three part targets).
    pub part_hold_back: Micros,
    /// `CAN-SKIP-UNTIL`: playlist delta updates may skip segments older than this.
    pub can_skip_until: Option<Micros>,
}

/// One `EXT-X-PART`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its URI.
    pub uri: String,
    /// Its duration.
    pub duration: Micros,
    /// `INDEPENDENT=YES`: it starts with a keyframe.
    pub independent: bool,
}

/// A complete segment and, while it is recent, the parts it was made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its URI.
    pub uri: String,
    /// Its duration (`EXTINF`).
    pub duration: Micros,
    /// `EXT-X-PROGRAM-DATE-TIME` before it (Unix ms), when written.
    pub program_date_ms: Option<u64>,
    /// `EXT-X-MAP` before it, when written.
    pub map: Option<String>,
    /// Its parts, listed before it (empty for older segments).
    pub parts: Vec<Part>,
}

/// One `EXT-X-RENDITION-REPORT`: where another rendition's newest segment and part are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// The rendition's playlist URI.
    pub uri: String,
    /// `LAST-MSN`.
    pub last_msn: u64,
    /// `LAST-PART`, when the rendition has parts of that segment.
    pub last_part: Option<u64>,
}

/// A low-latency media playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowLatencyPlaylist {
    /// `EXT-X-TARGETDURATION`, in whole seconds.
    pub target_duration_s: u64,
    /// `EXT-X-SERVER-CONTROL`.
    pub server_control: ServerControl,
    /// `EXT-X-PART-INF:PART-TARGET`.
    pub part_target: Micros,
    /// `EXT-X-MEDIA-SEQUENCE`: the sequence number of the first segment.
    pub media_sequence: u64,
    /// The complete segments, oldest first.
    pub segments: Vec<Segment>,
    /// The parts of the segment being made (the next sequence number).
    pub pending_parts: Vec<Part>,
    /// `EXT-X-PRELOAD-HINT:TYPE=PART`: the URI of the next part, before it exists.
    pub preload_hint: Option<String>,
    /// The other renditions' reports.
    pub rendition_reports: Vec<RenditionReport>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

fn yes(flag: bool) -> &'static str {
    if flag {
        "YES"
    } else {
        "NO"
    }
}

/// `2019-02-14T02:13:28.106Z`.
fn date(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// A quoted-string attribute value: `"` and line breaks cannot be written inside one, so a
/// URI carrying them (never one of ours) is refused by the caller's construction; here they
/// are dropped rather than break the playlist.
fn quoted(value: &str) -> String {
    value
        .chars()
        .filter(|c| !matches!(c, '"' | '\r' | '\n'))
        .collect()
}

fn write_part(out: &mut String, part: &Part) {
    let _ = write!(
        out,
        "#EXT-X-PART:DURATION={},URI=\"{}\"",
        part.duration,
        quoted(&part.uri)
    );
    if part.independent {
        out.push_str(",INDEPENDENT=YES");
    }
    out.push('\n');
}

impl LowLatencyPlaylist {
    /// The sequence number of the segment being made (after the last complete one).
    pub fn next_msn(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// The newest part listed: its segment's sequence number and index, if there is one.
    pub fn newest_part(&self) -> Option<(u64, u64)> {
        if let Some(last) = self.pending_parts.len().checked_sub(1) {
            return Some((self.next_msn(), last as u64));
        }
        let last = self.segments.last()?;
        let index = last.parts.len().checked_sub(1)?;
        Some((self.next_msn() - 1, index as u64))
    }

    /// The playlist's text.
    pub fn render(&self) -> String {
        let mut out = String::from("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration_s);
        // Version 6 (EXT-X-MAP without EXT-X-I-FRAMES-ONLY): clients without low-latency
        // support ignore the part tags and play the segments.
        out.push_str("#EXT-X-VERSION:6\n");
        let control = &self.server_control;
        let _ = write!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD={},PART-HOLD-BACK={}",
            yes(control.can_block_reload),
            control.part_hold_back
        );
        if let Some(until) = control.can_skip_until {
            let _ = write!(out, ",CAN-SKIP-UNTIL={until}");
        }
        out.push('\n');
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={}", self.part_target);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        for segment in &self.segments {
            if let Some(ms) = segment.program_date_ms {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", date(ms));
            }
            if let Some(map) = &segment.map {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", quoted(map));
            }
            for part in &segment.parts {
                write_part(&mut out, part);
            }
            let _ = writeln!(out, "#EXTINF:{},\n{}", segment.duration, segment.uri);
        }
        for part in &self.pending_parts {
            write_part(&mut out, part);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else if let Some(hint) = &self.preload_hint {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                quoted(hint)
            );
        }
        for report in &self.rendition_reports {
            let _ = write!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
                quoted(&report.uri),
                report.last_msn
            );
            if let Some(part) = report.last_part {
                let _ = write!(out, ",LAST-PART={part}");
            }
            out.push('\n');
        }
        out
    }
}

/// Why a blocking reload request is refused (a 400 with this code).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReloadError {
    /// `_HLS_part` without `_HLS_msn`.
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
    /// A value that is not a decimal integer.
    #[error("{0} must be a decimal integer")]
    NotAnInteger(&'static str),
    /// Further ahead than the playlist can soon reach.
    #[error("the playlist will not reach that segment or part soon")]
    TooFarAhead,
}

impl ReloadError {
    /// The JSON error code.
    pub fn code(&self) -> &'static str {
        match self {
            ReloadError::PartWithoutMsn | ReloadError::NotAnInteger(_) => "invalid_request",
            ReloadError::TooFarAhead => "too_far_ahead",
        }
    }
}

/// A blocking playlist reload: answer once the playlist holds segment `msn` (or, with
/// `part`, that part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingReload {
    /// `_HLS_msn`.
    pub msn: u64,
    /// `_HLS_part`.
    pub part: Option<u64>,
}

impl BlockingReload {
    /// The reload a query string asks for (`None`: an ordinary request). Other parameters
    /// (the playback token's, `_HLS_skip`) are ignored.
    ///
    /// # Errors
    /// [`ReloadError::PartWithoutMsn`] and [`ReloadError::NotAnInteger`].
    pub fn parse(query: &str) -> Result<Option<Self>, ReloadError> {
        let mut msn = None;
        let mut part = None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let integer = |name: &'static str| {
                // Decimal digits only: no sign, no spaces, no hex.
                (!value.is_empty()
                    && value.len() <= 19
                    && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .ok_or(ReloadError::NotAnInteger(name))
            };
            match name {
                "_HLS_msn" => msn = Some(integer("_HLS_msn")?),
                "_HLS_part" => part = Some(integer("_HLS_part")?),
                _ => {}
            }
        }
        match (msn, part) {
            (None, Some(_)) => Err(ReloadError::PartWithoutMsn),
            (None, None) => Ok(None),
            (Some(msn), part) => Ok(Some(Self { msn, part })),
        }
    }

    /// Whether `playlist` answers this reload now (`Ok(true)`), should be waited for
    /// (`Ok(false)`), or asks too far ahead of it.
    ///
    /// # Errors
    /// [`ReloadError::TooFarAhead`]: more than two segments past the last complete one, or
    /// [`ADVANCE_PART_LIMIT`] parts or more past the newest.
    pub fn satisfied_by(&self, playlist: &LowLatencyPlaylist) -> Result<bool, ReloadError> {
        if playlist.ended {
            return Ok(true);
        }
        let next = playlist.next_msn();
        // The last complete segment is `next - 1`; RFC 8216bis allows asking up to two past it.
        if self.msn > next + 1 {
            return Err(ReloadError::TooFarAhead);
        }
        if self.msn < next {
            // That segment is complete (all of its parts too).
            return Ok(true);
        }
        let Some(part) = self.part else {
            // The segment being made is not complete yet.
            return Ok(false);
        };
        // Parts counted from the first part of the segment being made.
        let wanted = (self.msn - next) * playlist.segment_parts() + part;
        let have = playlist.pending_parts.len() as u64;
        // The newest part is `have - 1` (the previous segment's last when `have` is 0).
        if wanted + 1 >= have + ADVANCE_PART_LIMIT {
            return Err(ReloadError::TooFarAhead);
        }
        Ok(self.msn == next && part < have)
    }
}

impl LowLatencyPlaylist {
    /// Parts a segment is made of, from the newest complete segment that lists them (at
    /// least 1).
    fn segment_parts(&self) -> u64 {
        self.segments
            .iter()
            .rev()
            .map(|s| s.parts.len() as u64)
            .find(|&n| n > 0)
            .unwrap_or(1)
    }
}

/// The name of a pushed part: `{rendition}_{n}.part{i}.m4s` is part `i` (from 0) of segment
/// `{rendition}_{n}.m4s`, the pusher's segment number `n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartName {
    /// The rendition (1 to 32 of `A-Z a-z 0-9 -`, or `_` inside).
    pub rendition: String,
    /// The file name of its segment.
    pub segment: String,
    /// The pusher's number of that segment.
    pub sequence: u64,
    /// The part's index within the segment.
    pub index: u64,
}

impl PartName {
    /// The part a file name names; `None` for any other name.
    pub fn parse(file: &str) -> Option<Self> {
        let (stem, index) = file.strip_suffix(".m4s")?.rsplit_once(".part")?;
        let (rendition, number) = stem.rsplit_once('_')?;
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        let name_ok = !rendition.is_empty()
            && rendition.len() <= 32
            && rendition
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !(name_ok && digits(number, 9) && digits(index, 3)) {
            return None;
        }
        Some(Self {
            rendition: rendition.to_owned(),
            segment: format!("{stem}.m4s"),
            sequence: number.parse().ok()?,
            index: index.parse().ok()?,
        })
    }

    /// The file name of part `index` of `segment` (`{stem}.m4s`).
    pub fn file_of(segment: &str, index: u64) -> String {
        format!("{}.part{index}.m4s", segment.trim_end_matches(".m4s"))
    }

    /// The pusher's number `n` of a segment named `{rendition}_{n}.m4s`.
    pub fn segment_number(segment: &str) -> Option<u64> {
        let (_, number) = segment.strip_suffix(".m4s")?.rsplit_once('_')?;
        if number.is_empty() || number.len() > 9 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        number.parse().ok()
    }

    /// The file name of the segment after `segment` (`{rendition}_{n}.m4s`, `n` written with
    /// as many digits), when it is named that way.
    pub fn next_segment(segment: &str) -> Option<String> {
        let next = Self::segment_number(segment)? + 1;
        let (rendition, number) = segment.strip_suffix(".m4s")?.rsplit_once('_')?;
        Some(format!(
            "{rendition}_{next:0width$}.m4s",
            width = number.len()
        ))
    }
}

/// The low-latency playlist of a live window whose rendition has parts (`None` when it has
/// none, no complete segment yet, or has ended: then the ordinary live playlist is served).
/// URIs are `uri_prefix` + file name.
pub fn from_window(window: &LiveWindow, uri_prefix: &str) -> Option<LowLatencyPlaylist> {
    let parts = window.low_latency.as_ref()?;
    let last = window.segments.last()?;
    if window.ended {
        return None;
    }
    let part = |p: &crate::model::room::WindowPart| Part {
        uri: format!("{uri_prefix}{}", p.file),
        duration: Micros(p.duration_us),
        independent: p.independent,
    };
    let mut previous_map: Option<&str> = None;
    let segments = window
        .segments
        .iter()
        .map(|s| {
            let map = s
                .map
                .as_deref()
                .filter(|m| previous_map != Some(*m))
                .map(|m| format!("{uri_prefix}{m}"));
            previous_map = s.map.as_deref();
            Segment {
                uri: format!("{uri_prefix}{}", s.file),
                duration: Micros(s.duration_ms * 1000),
                program_date_ms: Some(s.program_date_ms),
                map,
                parts: complete(parts, s).map_or_else(Vec::new, |p| p.map(part).collect()),
            }
        })
        .collect();
    let part_target = Micros(parts.part_target_us.max(1));
    Some(LowLatencyPlaylist {
        target_duration_s: target_duration_s(&window.segments),
        server_control: ServerControl {
            can_block_reload: true,
            part_hold_back: Micros(part_target.0 * 3),
            can_skip_until: None,
        },
        part_target,
        media_sequence: window.segments.first().map_or(0, |s: &ListedSegment| s.seq),
        segments,
        pending_parts: contiguous(parts, last.seq + 1).map(part).collect(),
        preload_hint: parts
            .preload_hint
            .as_ref()
            .map(|f| format!("{uri_prefix}{f}")),
        // Renditions are siblings: `live/{r}.m3u8` beside `live/{this}.m3u8`.
        rendition_reports: parts
            .reports
            .iter()
            .map(|r| RenditionReport {
                uri: format!("{}.m3u8", r.rendition),
                last_msn: r.last_msn,
                last_part: r.last_part,
            })
            .collect(),
        ended: false,
    })
}

/// Most a complete segment's parts may add up to more or less than its duration, in
/// microseconds (its `EXTINF` is rounded to the millisecond).
const PARTS_SUM_SLACK_US: u64 = 50_000;

/// The parts of a complete segment, when all of them are in the window (they add up to its
/// duration); otherwise it is listed without parts.
fn complete<'a>(
    window: &'a PartWindow,
    segment: &ListedSegment,
) -> Option<impl Iterator<Item = &'a crate::model::room::WindowPart>> {
    let total: u64 = contiguous(window, segment.seq).map(|p| p.duration_us).sum();
    (total > 0 && total.abs_diff(segment.duration_ms * 1000) <= PARTS_SUM_SLACK_US)
        .then(|| contiguous(window, segment.seq))
}

/// The parts of segment `msn` from part 0 on, up to the first missing one.
fn contiguous(
    window: &PartWindow,
    msn: u64,
) -> impl Iterator<Item = &crate::model::room::WindowPart> {
    window
        .parts
        .iter()
        .filter(move |p| p.msn == msn)
        .enumerate()
        .take_while(|(i, p)| p.index == *i as u64)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apple's example ("Enabling Low-Latency HLS", Examine a Low-Latency HLS Playlist),
    /// without its comment lines and the blank line before the rendition reports.
    const APPLE_EXAMPLE: &str = r#"#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:6
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,CAN-SKIP-UNTIL=24.0
#EXT-X-PART-INF:PART-TARGET=0.33334
#EXT-X-MEDIA-SEQUENCE:264
#EXT-X-PROGRAM-DATE-TIME:2019-02-14T02:13:28.106Z
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.00008,
fileSequence264.mp4
#EXTINF:4.00008,
fileSequence265.mp4
#EXTINF:4.00008,
fileSequence266.mp4
#EXTINF:4.00008,
fileSequence267.mp4
#EXTINF:4.00008,
fileSequence268.mp4
#EXTINF:4.00008,
fileSequence269.mp4
#EXTINF:4.00008,
fileSequence270.mp4
#EXT-X-PART:DURATION=0.33334,URI="filePart271.0.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.1.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.2.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.3.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.4.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI="filePart271.5.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.6.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.7.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.8.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI="filePart271.9.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.10.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart271.11.mp4"
#EXTINF:4.00008,
fileSequence271.mp4
#EXT-X-PROGRAM-DATE-TIME:2019-02-14T02:14:00.106Z
#EXT-X-PART:DURATION=0.33334,URI="filePart272.a.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.b.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.c.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.d.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.e.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.f.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI="filePart272.g.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.h.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.i.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.j.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.k.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart272.l.mp4"
#EXTINF:4.00008,
fileSequence272.mp4
#EXT-X-PART:DURATION=0.33334,URI="filePart273.0.mp4",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI="filePart273.1.mp4"
#EXT-X-PART:DURATION=0.33334,URI="filePart273.2.mp4"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="filePart273.3.mp4"
#EXT-X-RENDITION-REPORT:URI="../1M/waitForMSN.php",LAST-MSN=273,LAST-PART=2
#EXT-X-RENDITION-REPORT:URI="../4M/waitForMSN.php",LAST-MSN=273,LAST-PART=1
"#;

    const PART: Micros = Micros(333_340);

    fn parts(segment: u64, names: &[&str], independent: &[usize]) -> Vec<Part> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| Part {
                uri: format!("filePart{segment}.{name}.mp4"),
                duration: PART,
                independent: independent.contains(&i),
            })
            .collect()
    }

    fn apple_example() -> LowLatencyPlaylist {
        let numbered: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        let numbered: Vec<&str> = numbered.iter().map(String::as_str).collect();
        let lettered = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
        let segments = (264..=272)
            .map(|n| Segment {
                uri: format!("fileSequence{n}.mp4"),
                duration: Micros(4_000_080),
                // 2019-02-14T02:13:28.106Z and, 32 s later, before 272.
                program_date_ms: match n {
                    264 => Some(1_550_110_408_106),
                    272 => Some(1_550_110_440_106),
                    _ => None,
                },
                map: (n == 264).then(|| "init.mp4".to_owned()),
                parts: match n {
                    271 => parts(271, &numbered, &[4, 8]),
                    272 => parts(272, &lettered, &[5]),
                    _ => Vec::new(),
                },
            })
            .collect();
        LowLatencyPlaylist {
            target_duration_s: 4,
            server_control: ServerControl {
                can_block_reload: true,
                part_hold_back: Micros(1_000_000),
                can_skip_until: Some(Micros(24_000_000)),
            },
            part_target: PART,
            media_sequence: 264,
            segments,
            pending_parts: parts(273, &["0", "1", "2"], &[0]),
            preload_hint: Some("filePart273.3.mp4".into()),
            rendition_reports: vec![
                RenditionReport {
                    uri: "../1M/waitForMSN.php".into(),
                    last_msn: 273,
                    last_part: Some(2),
                },
                RenditionReport {
                    uri: "../4M/waitForMSN.php".into(),
                    last_msn: 273,
                    last_part: Some(1),
                },
            ],
            ended: false,
        }
    }

    #[test]
    fn renders_the_spec_example_byte_for_byte() {
        assert_eq!(apple_example().render(), APPLE_EXAMPLE);
    }

    #[test]
    fn the_example_reads_back_as_a_media_playlist_with_its_segments() {
        // A client without low-latency support (m3u8-rs here) sees the segments.
        let text = apple_example().render();
        let Ok((_, m3u8_rs::Playlist::MediaPlaylist(playlist))) =
            m3u8_rs::parse_playlist(text.as_bytes())
        else {
            panic!("not a media playlist");
        };
        assert_eq!(playlist.media_sequence, 264);
        assert_eq!(playlist.segments.len(), 9);
        assert_eq!(playlist.segments[8].uri, "fileSequence272.mp4");
    }

    #[test]
    fn durations_keep_the_decimals_they_need() {
        assert_eq!(Micros(4_000_080).to_string(), "4.00008");
        assert_eq!(Micros(333_340).to_string(), "0.33334");
        assert_eq!(Micros(1_000_000).to_string(), "1.0");
        assert_eq!(Micros(500_000).to_string(), "0.5");
        assert_eq!(Micros(1).to_string(), "0.000001");
        assert_eq!(Micros(0).to_string(), "0.0");
    }

    #[test]
    fn an_ended_playlist_has_no_preload_hint() {
        let mut playlist = apple_example();
        playlist.ended = true;
        let text = playlist.render();
        assert!(text.contains("#EXT-X-ENDLIST\n"));
        assert!(!text.contains("PRELOAD-HINT"));
    }

    #[test]
    fn blocking_reload_requests_parse_as_the_spec_says() {
        let parse = BlockingReload::parse;
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("t=abc&_HLS_skip=YES"), Ok(None));
        assert_eq!(
            parse("_HLS_msn=273&_HLS_part=2"),
            Ok(Some(BlockingReload {
                msn: 273,
                part: Some(2)
            }))
        );
        assert_eq!(
            parse("_HLS_msn=273"),
            Ok(Some(BlockingReload {
                msn: 273,
                part: None
            }))
        );
        assert_eq!(parse("_HLS_part=2"), Err(ReloadError::PartWithoutMsn));
        for bad in ["-1", "+1", "0x10", " 1", "1.5", "", "99999999999999999999"] {
            assert_eq!(
                parse(&format!("_HLS_msn={bad}")),
                Err(ReloadError::NotAnInteger("_HLS_msn")),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse("_HLS_msn=1&_HLS_part=x").unwrap_err().code(),
            "invalid_request"
        );
    }

    #[test]
    fn a_reload_waits_for_its_part_and_refuses_what_is_too_far_ahead() {
        // The example holds complete segments up to 272 and parts 0..=2 of 273.
        let playlist = apple_example();
        assert_eq!(playlist.next_msn(), 273);
        assert_eq!(playlist.newest_part(), Some((273, 2)));
        let ask = |msn, part| BlockingReload { msn, part }.satisfied_by(&playlist);
        // Already there: a complete segment, or a part that exists.
        assert_eq!(ask(270, None), Ok(true));
        assert_eq!(ask(272, Some(11)), Ok(true));
        assert_eq!(ask(273, Some(2)), Ok(true));
        // Not yet: the next part, the segment being made, the next segment.
        assert_eq!(ask(273, Some(3)), Ok(false));
        assert_eq!(ask(273, None), Ok(false));
        assert_eq!(ask(274, None), Ok(false));
        // Fewer than the advance part limit (3) past the newest part, then too far.
        assert_eq!(ask(273, Some(4)), Ok(false));
        assert_eq!(ask(273, Some(5)), Err(ReloadError::TooFarAhead));
        // 12 parts a segment: part 0 of 274 is the 13th part from 273's first.
        assert_eq!(ask(274, Some(0)), Err(ReloadError::TooFarAhead));
        // More than two segments past the last complete one.
        assert_eq!(ask(275, None), Err(ReloadError::TooFarAhead));
        // An ended playlist answers everything at once.
        let mut ended = playlist.clone();
        ended.ended = true;
        assert_eq!(
            BlockingReload {
                msn: 274,
                part: Some(0)
            }
            .satisfied_by(&ended),
            Ok(true)
        );
    }

    #[test]
    fn part_names_parse_and_name_the_next_segment() {
        let part = PartName::parse("720p_00012.part3.m4s").unwrap();
        assert_eq!(
            part,
            PartName {
                rendition: "720p".into(),
                segment: "720p_00012.m4s".into(),
                sequence: 12,
                index: 3,
            }
        );
        assert_eq!(PartName::file_of(&part.segment, 4), "720p_00012.part4.m4s");
        assert_eq!(
            PartName::next_segment("index_00099.m4s").as_deref(),
            Some("index_00100.m4s")
        );
        assert_eq!(PartName::segment_number("a_b_7.m4s"), Some(7));
        for bad in [
            "index_00012.m4s",
            "index_00012.part.m4s",
            "index_00012.part-1.m4s",
            "index_00012.part1234.m4s",
            "index.part1.m4s",
            "_1.part1.m4s",
            "in/dex_1.part1.m4s",
            "index_1.part1.ts",
            "index_1234567890.part1.m4s",
        ] {
            assert_eq!(PartName::parse(bad), None, "{bad}");
        }
    }
}

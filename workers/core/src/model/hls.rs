//! HLS: reading the playlists a broadcaster pushes (media playlists of MPEG-TS or CMAF
//! segments, and a multivariant playlist naming the renditions), writing the live, VOD and
//! multivariant playlists we serve (all with `m3u8-rs`), and checking that a segment is
//! MPEG-TS (CMAF segments are checked by [`crate::model::isobmff`]).

use m3u8_rs::{
    Map, MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, Playlist, Resolution,
    VariantStream,
};
use serde::{Deserialize, Serialize};

use crate::model::text;

/// The MIME type of HLS playlists.
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// The MIME type of MPEG-TS segments.
pub const SEGMENT_CONTENT_TYPE: &str = "video/mp2t";
/// The MIME type of CMAF init and media segments.
pub const CMAF_CONTENT_TYPE: &str = "video/mp4";
/// The most renditions (variant streams) one broadcast may push.
pub const MAX_RENDITIONS: usize = 4;
const TS_PACKET: usize = 188;

/// Why pushed media was refused (answered with 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The body is not MPEG-TS.
    #[error("segment is not MPEG-TS: {0}")]
    NotTransportStream(String),
    /// The body is not the ISO BMFF (CMAF) box structure its name promises.
    #[error("segment is not CMAF: {0}")]
    NotIsoBmff(String),
    /// The playlist does not parse as an HLS playlist we accept.
    #[error("playlist is not an HLS playlist we accept: {0}")]
    BadPlaylist(String),
    /// A multivariant playlist names more renditions than [`MAX_RENDITIONS`].
    #[error("{0} renditions; at most {MAX_RENDITIONS} are accepted")]
    TooManyRenditions(usize),
}

impl MediaError {
    /// The error code a client is told.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::NotTransportStream(_) | MediaError::NotIsoBmff(_) => "invalid_media",
            MediaError::BadPlaylist(_) => "invalid_playlist",
            MediaError::TooManyRenditions(_) => "too_many_renditions",
        }
    }
}

/// The kinds of segment file ingest takes, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// `.ts`: an MPEG-TS segment.
    Ts,
    /// `.m4s`: a CMAF media segment (`moof` + `mdat`).
    Cmaf,
    /// `.mp4`: a CMAF init segment (`ftyp` + `moov`), named by `EXT-X-MAP`.
    Init,
}

impl SegmentKind {
    /// The kind of a segment file name we accept: 1 to 64 of `A-Z a-z 0-9 _ -`, then `.ts`,
    /// `.m4s` or `.mp4`; `None` for any other name.
    pub fn of(name: &str) -> Option<SegmentKind> {
        let (stem, kind) = [
            (".ts", SegmentKind::Ts),
            (".m4s", SegmentKind::Cmaf),
            (".mp4", SegmentKind::Init),
        ]
        .into_iter()
        .find_map(|(ext, kind)| name.strip_suffix(ext).map(|stem| (stem, kind)))?;
        is_name(stem, 64).then_some(kind)
    }

    /// The MIME type the segment is stored and served with.
    pub fn content_type(self) -> &'static str {
        match self {
            SegmentKind::Ts => SEGMENT_CONTENT_TYPE,
            SegmentKind::Cmaf | SegmentKind::Init => CMAF_CONTENT_TYPE,
        }
    }
}

/// Whether `stem` is 1 to `max` of `A-Z a-z 0-9 _ -`.
fn is_name(stem: &str, max: usize) -> bool {
    !stem.is_empty()
        && stem.len() <= max
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The rendition a pushed media playlist file belongs to: its name without `.m3u8`, 1 to 32
/// of `A-Z a-z 0-9 _ -` (`index.m3u8` is rendition `index`).
pub fn rendition_of(playlist_file: &str) -> Option<&str> {
    playlist_file
        .strip_suffix(".m3u8")
        .filter(|stem| is_name(stem, 32))
}

/// Checks that `bytes` is whole MPEG-TS packets: a multiple of 188 bytes, each starting
/// with the 0x47 sync byte.
///
/// # Errors
/// [`MediaError::NotTransportStream`] saying what is wrong.
pub fn check_transport_stream(bytes: &[u8]) -> Result<(), MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::NotTransportStream("empty body".into()));
    }
    if bytes.len() % TS_PACKET != 0 {
        return Err(MediaError::NotTransportStream(format!(
            "{} bytes is not a whole number of 188-byte packets",
            bytes.len()
        )));
    }
    if let Some(i) = bytes.iter().step_by(TS_PACKET).position(|&b| b != 0x47) {
        return Err(MediaError::NotTransportStream(format!(
            "no sync byte at packet {i}"
        )));
    }
    Ok(())
}

/// Whether `name` is a segment file name we accept (see [`SegmentKind::of`]).
pub fn is_segment_name(name: &str) -> bool {
    SegmentKind::of(name).is_some()
}

/// One entry of a pushed playlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedEntry {
    /// The segment's file name (last path component of its URI).
    pub file: String,
    /// Its duration in milliseconds.
    pub duration_ms: u64,
    /// Its media sequence number in the pusher's numbering.
    pub sequence: u64,
}

/// A pushed media playlist, reduced to what the live window needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedPlaylist {
    /// The segments it lists, in order.
    pub entries: Vec<PushedEntry>,
    /// Whether it carries `#EXT-X-ENDLIST`.
    pub end_list: bool,
    /// Its `#EXT-X-TARGETDURATION`, in milliseconds.
    pub target_duration_ms: u64,
    /// The init segment (`#EXT-X-MAP`) of its CMAF segments; `None` for MPEG-TS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
}

/// One variant stream of a pushed multivariant playlist: a rendition and what players are
/// told of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The rendition (its media playlist is `{rendition}.m3u8`).
    pub rendition: String,
    /// Peak bits per second (`BANDWIDTH`).
    pub bandwidth: u64,
    /// Average bits per second (`AVERAGE-BANDWIDTH`), when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_bandwidth: Option<u64>,
    /// Picture size (`RESOLUTION`), when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<(u64, u64)>,
    /// RFC 6381 codecs (`CODECS`), when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs: Option<String>,
}

/// A playlist pushed by the broadcaster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The media playlist of one rendition.
    Media(PushedPlaylist),
    /// The multivariant playlist: the renditions, in the pusher's order.
    Multivariant(Vec<Variant>),
}

/// Parses a playlist pushed by the broadcaster: a media playlist, or a multivariant
/// playlist whose variants are media playlists pushed beside it.
///
/// # Errors
/// [`MediaError::BadPlaylist`] when it does not parse or names a file we would not accept
/// (a segment of an unknown kind, MPEG-TS and CMAF mixed, CMAF without `EXT-X-MAP`, a
/// variant outside the ingest URL, alternate renditions); [`MediaError::TooManyRenditions`].
pub fn parse_pushed(bytes: &[u8]) -> Result<Pushed, MediaError> {
    match m3u8_rs::parse_playlist_res(bytes) {
        Ok(Playlist::MediaPlaylist(p)) => parse_media(&p).map(Pushed::Media),
        Ok(Playlist::MasterPlaylist(p)) => parse_multivariant(&p).map(Pushed::Multivariant),
        Err(e) => Err(MediaError::BadPlaylist(text::truncate(e.to_string(), 200))),
    }
}

fn parse_multivariant(playlist: &MasterPlaylist) -> Result<Vec<Variant>, MediaError> {
    if !playlist.alternatives.is_empty() {
        return Err(MediaError::BadPlaylist(
            "alternate renditions (EXT-X-MEDIA) are not supported: mux the audio into every \
             variant"
                .into(),
        ));
    }
    let variants: Vec<Variant> = playlist
        .variants
        .iter()
        .filter(|v| !v.is_i_frame)
        .map(|v| {
            let rendition = rendition_of(&v.uri).ok_or_else(|| {
                MediaError::BadPlaylist(format!(
                    "variant {:?}: variants are media playlists pushed beside this one, \
                     named 1 to 32 of A-Z a-z 0-9 _ - followed by .m3u8",
                    text::truncate(v.uri.clone(), 80)
                ))
            })?;
            Ok(Variant {
                rendition: rendition.to_owned(),
                bandwidth: v.bandwidth,
                average_bandwidth: v.average_bandwidth,
                resolution: v.resolution.map(|r| (r.width, r.height)),
                codecs: v.codecs.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    if variants.is_empty() {
        return Err(MediaError::BadPlaylist(
            "the multivariant playlist names no variant".into(),
        ));
    }
    if variants.len() > MAX_RENDITIONS {
        return Err(MediaError::TooManyRenditions(variants.len()));
    }
    for (i, v) in variants.iter().enumerate() {
        if variants[..i].iter().any(|w| w.rendition == v.rendition) {
            return Err(MediaError::BadPlaylist(format!(
                "variant {:?} is named twice",
                v.rendition
            )));
        }
    }
    Ok(variants)
}

fn parse_media(playlist: &MediaPlaylist) -> Result<PushedPlaylist, MediaError> {
    let mut map: Option<String> = None;
    for (i, segment) in playlist.segments.iter().enumerate() {
        let Some(tag) = &segment.map else { continue };
        let file = bare_name(&tag.uri)
            .filter(|f| SegmentKind::of(f) == Some(SegmentKind::Init))
            .ok_or_else(|| {
                MediaError::BadPlaylist(format!(
                    "EXT-X-MAP {:?} is not an init segment (.mp4) beside the playlist",
                    text::truncate(tag.uri.clone(), 80)
                ))
            })?;
        if i > 0 || tag.byte_range.is_some() {
            return Err(MediaError::BadPlaylist(
                "one EXT-X-MAP, before the first segment and without BYTERANGE, is accepted".into(),
            ));
        }
        map = Some(file.to_owned());
    }
    let wanted = if map.is_some() {
        SegmentKind::Cmaf
    } else {
        SegmentKind::Ts
    };
    let entries = playlist
        .segments
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            let file = segment.uri.rsplit('/').next().unwrap_or_default();
            let file = file.split('?').next().unwrap_or_default();
            if !is_segment_name(file) || !segment.duration.is_finite() || segment.duration < 0.0 {
                return Err(MediaError::BadPlaylist(format!(
                    "unacceptable segment entry {:?}",
                    text::truncate(segment.uri.clone(), 80)
                )));
            }
            if SegmentKind::of(file) != Some(wanted) {
                return Err(MediaError::BadPlaylist(format!(
                    "segment {file:?}: a playlist lists .ts segments, or .m4s segments after \
                     an EXT-X-MAP init segment"
                )));
            }
            // MEDIA-SEQUENCE is the pusher's u64: near its maximum the entries' numbers
            // would overflow (a panic in debug builds, a silent wrap in release ones).
            let sequence = playlist
                .media_sequence
                .checked_add(i as u64)
                .ok_or_else(|| MediaError::BadPlaylist("media sequence out of range".into()))?;
            Ok(PushedEntry {
                file: file.to_owned(),
                duration_ms: (f64::from(segment.duration) * 1000.0).round() as u64,
                sequence,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PushedPlaylist {
        entries,
        end_list: playlist.end_list,
        target_duration_ms: playlist.target_duration.saturating_mul(1000),
        map,
    })
}

/// The last path component of a URI without its query, when the URI is a bare name.
fn bare_name(uri: &str) -> Option<&str> {
    (!uri.contains(['/', '?', '#', ':', '\\'])).then_some(uri)
}

/// A segment as listed in a playlist we serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedSegment {
    /// Our contiguous sequence number within the broadcast, from 0.
    pub seq: u64,
    /// File name in storage.
    pub file: String,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Size in bytes.
    pub size: u64,
    /// Wall-clock time of the segment's first frame (broadcast start + earlier durations), Unix ms.
    pub program_date_ms: u64,
    /// The init segment of a CMAF segment (`EXT-X-MAP`); `None` for MPEG-TS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
}

/// `segment` as an entry; `previous_map` is the init segment of the entry before (an
/// `EXT-X-MAP` is written where it changes).
fn media_segment(
    segment: &ListedSegment,
    uri_prefix: &str,
    with_date: bool,
    previous_map: Option<&str>,
) -> MediaSegment {
    let program_date_time = with_date
        .then(|| chrono::DateTime::from_timestamp_millis(segment.program_date_ms as i64))
        .flatten()
        .map(|t| t.fixed_offset());
    let map = segment
        .map
        .as_deref()
        .filter(|m| Some(*m) != previous_map)
        .map(|m| Map {
            uri: format!("{uri_prefix}{m}"),
            ..Map::default()
        });
    MediaSegment {
        uri: format!("{uri_prefix}{}", segment.file),
        duration: segment.duration_ms as f32 / 1000.0,
        program_date_time,
        map,
        ..MediaSegment::default()
    }
}

/// The entries of `segments`, `EXT-X-MAP` where the init segment changes; `dated` says
/// which carry `PROGRAM-DATE-TIME`.
fn media_segments(
    segments: &[ListedSegment],
    uri_prefix: &str,
    dated: impl Fn(usize) -> bool,
) -> Vec<MediaSegment> {
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let previous = i.checked_sub(1).and_then(|p| segments[p].map.as_deref());
            media_segment(s, uri_prefix, dated(i), previous)
        })
        .collect()
}

/// The playlist version: 6 when `EXT-X-MAP` is used (CMAF), 3 otherwise.
fn version(segments: &[ListedSegment]) -> usize {
    if segments.iter().any(|s| s.map.is_some()) {
        6
    } else {
        3
    }
}

/// `EXT-X-TARGETDURATION` of `segments`: the longest, rounded up to whole seconds.
pub fn target_duration_s(segments: &[ListedSegment]) -> u64 {
    segments
        .iter()
        .map(|s| s.duration_ms.div_ceil(1000))
        .max()
        .unwrap_or(2)
        .max(1)
}

fn render(playlist: &MediaPlaylist) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = playlist.write_to(&mut out);
    out
}

/// The live media playlist for a window of segments (the last ones of a broadcast):
/// `MEDIA-SEQUENCE` of the first, `PROGRAM-DATE-TIME` on each, `ENDLIST` once ended.
/// Segment URIs are `uri_prefix` + file name, relative to the playlist.
pub fn live_playlist(window: &[ListedSegment], uri_prefix: &str, ended: bool) -> Vec<u8> {
    render(&MediaPlaylist {
        version: Some(version(window)),
        target_duration: target_duration_s(window),
        media_sequence: window.first().map_or(0, |s| s.seq),
        segments: media_segments(window, uri_prefix, |_| true),
        end_list: ended,
        ..MediaPlaylist::default()
    })
}

/// The VOD playlist of a whole recording: `PLAYLIST-TYPE:VOD` and `ENDLIST`.
pub fn vod_playlist(segments: &[ListedSegment], uri_prefix: &str) -> Vec<u8> {
    render(&MediaPlaylist {
        version: Some(version(segments)),
        target_duration: target_duration_s(segments),
        media_sequence: 0,
        segments: media_segments(segments, uri_prefix, |i| i == 0),
        end_list: true,
        playlist_type: Some(MediaPlaylistType::Vod),
        ..MediaPlaylist::default()
    })
}

/// The multivariant playlist of `variants`, highest bandwidth first; a variant's URI is
/// `uri_prefix` + rendition + `.m3u8`, relative to the playlist.
pub fn multivariant_playlist(variants: &[Variant], uri_prefix: &str) -> Vec<u8> {
    let mut variants = variants.to_vec();
    variants.sort_by_key(|v| std::cmp::Reverse(v.bandwidth));
    let playlist = MasterPlaylist {
        version: Some(6),
        independent_segments: true,
        variants: variants
            .into_iter()
            .map(|v| VariantStream {
                uri: format!("{uri_prefix}{}.m3u8", v.rendition),
                bandwidth: v.bandwidth,
                average_bandwidth: v.average_bandwidth,
                codecs: v.codecs,
                resolution: v
                    .resolution
                    .map(|(width, height)| Resolution { width, height }),
                ..VariantStream::default()
            })
            .collect(),
        ..MasterPlaylist::default()
    };
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = playlist.write_to(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG_PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:2.000000,\nindex4.ts\n#EXTINF:2.000000,\nindex5.ts\n\
        #EXTINF:1.466667,\nindex6.ts\n#EXT-X-ENDLIST\n";

    #[test]
    fn ts_check_wants_whole_synced_packets() {
        let mut ts = vec![0u8; 188 * 3];
        for p in 0..3 {
            ts[p * 188] = 0x47;
        }
        assert!(check_transport_stream(&ts).is_ok());
        assert!(check_transport_stream(&ts[..300]).is_err());
        ts[188] = 0;
        assert!(check_transport_stream(&ts).is_err());
        assert!(check_transport_stream(b"").is_err());
        assert!(check_transport_stream(b"<html>").is_err());
    }

    fn media(bytes: &[u8]) -> Result<PushedPlaylist, MediaError> {
        match parse_pushed(bytes)? {
            Pushed::Media(p) => Ok(p),
            Pushed::Multivariant(_) => panic!("media playlist expected"),
        }
    }

    #[test]
    fn parses_what_ffmpeg_pushes() {
        let p = media(FFMPEG_PLAYLIST.as_bytes()).unwrap();
        assert!(p.end_list);
        assert_eq!(p.target_duration_ms, 2000);
        assert_eq!(p.entries.len(), 3);
        assert_eq!(
            p.entries[2],
            PushedEntry {
                file: "index6.ts".into(),
                duration_ms: 1467,
                sequence: 6
            }
        );
    }

    #[test]
    fn refuses_garbage_and_bad_names() {
        assert!(parse_pushed(b"hello").is_err());
        let evil = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n../../etc/passwd\n";
        assert!(parse_pushed(evil.as_bytes()).is_err());
        assert!(is_segment_name("index12.ts"));
        assert_eq!(SegmentKind::of("v720_12.m4s"), Some(SegmentKind::Cmaf));
        assert_eq!(SegmentKind::of("init_0.mp4"), Some(SegmentKind::Init));
        assert!(!is_segment_name(".ts") && !is_segment_name("a.b.ts") && !is_segment_name("a.mkv"));
        assert_eq!(rendition_of("stream_0.m3u8"), Some("stream_0"));
        assert_eq!(rendition_of("../x.m3u8"), None);
        assert_eq!(rendition_of(&format!("{}.m3u8", "a".repeat(33))), None);
    }

    /// What `ffmpeg -f hls -hls_segment_type fmp4 -master_pl_name master.m3u8
    /// -var_stream_map "v:0,a:0 v:1,a:1"` pushes (ffmpeg 5.1).
    const FFMPEG_MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:7\n\
        #EXT-X-STREAM-INF:BANDWIDTH=1210000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\n\
        stream_0.m3u8\n\n\
        #EXT-X-STREAM-INF:BANDWIDTH=440000,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\"\n\
        stream_1.m3u8\n";
    const FFMPEG_CMAF: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:2.000000,\n\
        stream_00.m4s\n#EXTINF:2.000000,\nstream_01.m4s\n";

    #[test]
    fn parses_a_cmaf_ladder() {
        let Pushed::Multivariant(variants) = parse_pushed(FFMPEG_MASTER.as_bytes()).unwrap() else {
            panic!("multivariant expected")
        };
        assert_eq!(variants.len(), 2);
        assert_eq!(variants[1].rendition, "stream_1");
        assert_eq!(variants[1].resolution, Some((640, 360)));
        assert_eq!(variants[0].codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        let p = media(FFMPEG_CMAF.as_bytes()).unwrap();
        assert_eq!(p.map.as_deref(), Some("init_0.mp4"));
        assert_eq!(p.entries[1].file, "stream_01.m4s");
    }

    #[test]
    fn refuses_ladders_and_cmaf_playlists_it_cannot_serve() {
        let nested = FFMPEG_MASTER.replace("stream_1.m3u8", "low/stream_1.m3u8");
        assert!(parse_pushed(nested.as_bytes()).is_err());
        let twice = FFMPEG_MASTER.replace("stream_1.m3u8", "stream_0.m3u8");
        assert!(parse_pushed(twice.as_bytes()).is_err());
        let mut five = String::from("#EXTM3U\n");
        for i in 0..5 {
            five += &format!(
                "#EXT-X-STREAM-INF:BANDWIDTH={}\nv{i}.m3u8\n",
                1000 * (i + 1)
            );
        }
        assert_eq!(
            parse_pushed(five.as_bytes()),
            Err(MediaError::TooManyRenditions(5))
        );
        let audio_group = format!(
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"a.m3u8\"\n{}",
            &FFMPEG_MASTER[8..]
        );
        assert!(parse_pushed(audio_group.as_bytes()).is_err());
        // CMAF segments without their init segment, TS and CMAF mixed, a map elsewhere.
        let no_map = FFMPEG_CMAF.replace("#EXT-X-MAP:URI=\"init_0.mp4\"\n", "");
        assert!(media(no_map.as_bytes()).is_err());
        let mixed = FFMPEG_CMAF.replace("stream_01.m4s", "stream_01.ts");
        assert!(media(mixed.as_bytes()).is_err());
        let outside = FFMPEG_CMAF.replace("init_0.mp4", "../init_0.mp4");
        assert!(media(outside.as_bytes()).is_err());
        let ts_init = FFMPEG_CMAF.replace("init_0.mp4", "init_0.ts");
        assert!(media(ts_init.as_bytes()).is_err());
    }

    #[test]
    fn cmaf_playlists_carry_their_map_and_the_ladder_its_variants() {
        let mut window = [listed(3, 2000), listed(4, 2000)];
        for s in &mut window {
            s.file = s.file.replace(".ts", ".m4s");
            s.map = Some("init_0.mp4".into());
        }
        let text = String::from_utf8(live_playlist(&window, "../seg/b/", false)).unwrap();
        assert!(text.contains("#EXT-X-VERSION:6"));
        assert_eq!(
            text.matches("#EXT-X-MAP:URI=\"../seg/b/init_0.mp4\"")
                .count(),
            1
        );
        let vod = String::from_utf8(vod_playlist(&window, "seg/b/")).unwrap();
        assert!(vod.find("#EXT-X-MAP").unwrap() < vod.find("index3.m4s").unwrap());
        let Pushed::Multivariant(variants) = parse_pushed(FFMPEG_MASTER.as_bytes()).unwrap() else {
            panic!("multivariant expected")
        };
        let mut reversed = variants.clone();
        reversed.reverse();
        let text = String::from_utf8(multivariant_playlist(&reversed, "live/")).unwrap();
        let Playlist::MasterPlaylist(parsed) =
            m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap()
        else {
            panic!("multivariant expected")
        };
        assert_eq!(parsed.variants[0].uri, "live/stream_0.m3u8");
        assert_eq!(parsed.variants[0].bandwidth, 1_210_000);
        assert_eq!(
            parsed.variants[1].codecs.as_deref(),
            Some("avc1.64001e,mp4a.40.2")
        );
        assert!(parsed.independent_segments);
    }

    #[test]
    fn refuses_a_media_sequence_that_would_overflow() {
        // Found with the fuzz target `pushed_playlist`: this panicked with "attempt to add
        // with overflow" (and wrapped to sequence 0 in release builds).
        let last = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n",
            u64::MAX
        );
        assert!(matches!(
            media(last.as_bytes()),
            Err(MediaError::BadPlaylist(m)) if m.contains("media sequence")
        ));
        let fits = last.replace("b.ts\n", "");
        assert_eq!(
            media(fits.as_bytes()).unwrap().entries[0].sequence,
            u64::MAX
        );
    }

    fn listed(seq: u64, ms: u64) -> ListedSegment {
        ListedSegment {
            seq,
            file: format!("index{seq}.ts"),
            duration_ms: ms,
            size: 1000,
            program_date_ms: 1_700_000_000_000 + seq * 2000,
            map: None,
        }
    }

    #[test]
    fn live_playlist_round_trips_through_the_parser() {
        let window = [listed(7, 2000), listed(8, 2000), listed(9, 2500)];
        let text = live_playlist(&window, "seg/brd_1/", false);
        let parsed = match m3u8_rs::parse_playlist_res(&text).unwrap() {
            Playlist::MediaPlaylist(p) => p,
            Playlist::MasterPlaylist(_) => panic!("media playlist expected"),
        };
        assert_eq!(parsed.media_sequence, 7);
        assert_eq!(parsed.target_duration, 3);
        assert!(!parsed.end_list);
        assert_eq!(parsed.segments[0].uri, "seg/brd_1/index7.ts");
        assert!(parsed
            .segments
            .iter()
            .all(|s| s.program_date_time.is_some()));
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:34"));
    }

    #[test]
    fn vod_playlist_is_typed_and_ended() {
        let text =
            String::from_utf8(vod_playlist(&[listed(0, 2000), listed(1, 1500)], "seg/b/")).unwrap();
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
        assert!(text.contains("#EXT-X-ENDLIST"));
        // MEDIA-SEQUENCE 0 is the default; m3u8-rs omits it.
        assert!(text.contains("#EXTINF:1.5,") || text.contains("#EXTINF:1.5"));
    }
}

//! HLS: reading the media playlists ffmpeg pushes, writing the live and VOD playlists we
//! serve (both with `m3u8-rs`), and checking that a segment is MPEG-TS.

use m3u8_rs::{MediaPlaylist, MediaPlaylistType, MediaSegment, Playlist};
use serde::{Deserialize, Serialize};

use crate::model::text;

/// The MIME type of HLS playlists.
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// The MIME type of MPEG-TS segments.
pub const SEGMENT_CONTENT_TYPE: &str = "video/mp2t";
const TS_PACKET: usize = 188;

/// Why pushed media was refused (answered with 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The body is not MPEG-TS.
    #[error("segment is not MPEG-TS: {0}")]
    NotTransportStream(String),
    /// The playlist does not parse as an HLS media playlist.
    #[error("playlist is not an HLS media playlist: {0}")]
    BadPlaylist(String),
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

/// Whether `name` is a segment file name we accept: 1 to 64 of `A-Z a-z 0-9 _ -`, then `.ts`.
pub fn is_segment_name(name: &str) -> bool {
    name.strip_suffix(".ts").is_some_and(|stem| {
        !stem.is_empty()
            && stem.len() <= 64
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
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
}

/// Parses a playlist pushed by the broadcaster.
///
/// # Errors
/// [`MediaError::BadPlaylist`] when it does not parse, is a master playlist, or names a
/// segment we would not accept.
pub fn parse_pushed(bytes: &[u8]) -> Result<PushedPlaylist, MediaError> {
    let playlist = match m3u8_rs::parse_playlist_res(bytes) {
        Ok(Playlist::MediaPlaylist(p)) => p,
        Ok(Playlist::MasterPlaylist(_)) => {
            return Err(MediaError::BadPlaylist(
                "a master playlist was pushed; push the media playlist".into(),
            ))
        }
        Err(e) => {
            return Err(MediaError::BadPlaylist(text::truncate(e.to_string(), 200)));
        }
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
                    segment.uri
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
    })
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
}

fn media_segment(segment: &ListedSegment, uri_prefix: &str, with_date: bool) -> MediaSegment {
    let program_date_time = with_date
        .then(|| chrono::DateTime::from_timestamp_millis(segment.program_date_ms as i64))
        .flatten()
        .map(|t| t.fixed_offset());
    MediaSegment {
        uri: format!("{uri_prefix}{}", segment.file),
        duration: segment.duration_ms as f32 / 1000.0,
        program_date_time,
        ..MediaSegment::default()
    }
}

fn target_duration_s(segments: &[ListedSegment]) -> u64 {
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
        version: Some(3),
        target_duration: target_duration_s(window),
        media_sequence: window.first().map_or(0, |s| s.seq),
        segments: window
            .iter()
            .map(|s| media_segment(s, uri_prefix, true))
            .collect(),
        end_list: ended,
        ..MediaPlaylist::default()
    })
}

/// The VOD playlist of a whole recording: `PLAYLIST-TYPE:VOD` and `ENDLIST`.
pub fn vod_playlist(segments: &[ListedSegment], uri_prefix: &str) -> Vec<u8> {
    render(&MediaPlaylist {
        version: Some(3),
        target_duration: target_duration_s(segments),
        media_sequence: 0,
        segments: segments
            .iter()
            .enumerate()
            .map(|(i, s)| media_segment(s, uri_prefix, i == 0))
            .collect(),
        end_list: true,
        playlist_type: Some(MediaPlaylistType::Vod),
        ..MediaPlaylist::default()
    })
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

    #[test]
    fn parses_what_ffmpeg_pushes() {
        let p = parse_pushed(FFMPEG_PLAYLIST.as_bytes()).unwrap();
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
    fn refuses_garbage_master_and_bad_names() {
        assert!(parse_pushed(b"hello").is_err());
        assert!(parse_pushed(b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n").is_err());
        let evil = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n../../etc/passwd\n";
        assert!(parse_pushed(evil.as_bytes()).is_err());
        assert!(is_segment_name("index12.ts"));
        assert!(!is_segment_name(".ts") && !is_segment_name("a.b.ts") && !is_segment_name("a.mp4"));
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
            parse_pushed(last.as_bytes()),
            Err(MediaError::BadPlaylist(m)) if m.contains("media sequence")
        ));
        let fits = last.replace("b.ts\n", "");
        assert_eq!(
            parse_pushed(fits.as_bytes()).unwrap().entries[0].sequence,
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

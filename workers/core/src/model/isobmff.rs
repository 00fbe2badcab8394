//! ISO BMFF (MP4) as ingest sees CMAF: an init segment (`ftyp` + `moov`) is read for the
//! codecs and picture size of its tracks, a media segment (`.m4s`) is checked to be whole
//! boxes with a `moof` and an `mdat`. Nothing else is decoded.
//!
//! Written here rather than taken from a box library: ingest needs box framing and the
//! sample entries of `stsd` only, and a full parser (every box type, decoded into owned
//! structures) would add to the Wasm every isolate loads for no use. The transcoder, which
//! reads the samples, has its own reader.

use serde::{Deserialize, Serialize};

use crate::model::hls::MediaError;

/// The first-level boxes a media segment may hold.
const SEGMENT_BOXES: [&[u8; 4]; 8] = [
    b"styp", b"sidx", b"ssix", b"prft", b"emsg", b"moof", b"mdat", b"free",
];
/// Sample entries of visual tracks whose codec parameters we write out.
const VIDEO_ENTRIES: [&[u8; 4]; 6] = [b"avc1", b"avc3", b"hvc1", b"hev1", b"av01", b"vp09"];
/// Sample entries of audio tracks we accept.
const AUDIO_ENTRIES: [&[u8; 4]; 4] = [b"mp4a", b"Opus", b"fLaC", b"ac-3"];
/// The fixed part of a visual sample entry before its child boxes.
const VISUAL_ENTRY_HEADER: usize = 78;
/// The fixed part of an audio sample entry (version 0) before its child boxes.
const AUDIO_ENTRY_HEADER: usize = 28;

/// What an init segment declares.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InitInfo {
    /// RFC 6381 codec strings of its tracks, video first (e.g. `avc1.64001f`, `mp4a.40.2`,
    /// `opus`).
    pub codecs: Vec<String>,
    /// The video track's picture size, when it has one.
    pub resolution: Option<(u32, u32)>,
}

/// One box: its type and its payload (after the header).
struct Bmff<'a> {
    kind: [u8; 4],
    payload: &'a [u8],
}

/// The boxes of `bytes`, in order; an error at the first one that does not fit.
fn boxes(bytes: &[u8]) -> Result<Vec<Bmff<'_>>, MediaError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let bad = |why: &str| MediaError::NotIsoBmff(format!("box {} {why}", out.len() + 1));
        if rest.len() < 8 {
            return Err(bad("is cut short"));
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        if !kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            return Err(bad("has no valid type"));
        }
        let (header, size) = match size32 {
            0 => (8, rest.len() as u64),
            1 => {
                let large = rest.get(8..16).ok_or_else(|| bad("is cut short"))?;
                let mut size = [0u8; 8];
                size.copy_from_slice(large);
                (16, u64::from_be_bytes(size))
            }
            n => (8, u64::from(n)),
        };
        let size = usize::try_from(size).map_err(|_| bad("is too large"))?;
        if size < header || size > rest.len() {
            return Err(bad("runs past the end of the data"));
        }
        out.push(Bmff {
            kind,
            payload: &rest[header..size],
        });
        rest = &rest[size..];
    }
    Ok(out)
}

fn child<'a>(parent: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, MediaError> {
    Ok(boxes(parent)?
        .into_iter()
        .find(|b| &b.kind == kind)
        .map(|b| b.payload))
}

fn fourcc(kind: &[u8; 4]) -> String {
    String::from_utf8_lossy(kind).into_owned()
}

/// Checks that `bytes` is a CMAF media segment: whole boxes, among those a segment may
/// hold, with at least one `moof` and one `mdat`.
///
/// # Errors
/// [`MediaError::NotIsoBmff`] saying what is wrong.
pub fn check_media_segment(bytes: &[u8]) -> Result<(), MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::NotIsoBmff("empty body".into()));
    }
    let boxes = boxes(bytes)?;
    if let Some(other) = boxes.iter().find(|b| !SEGMENT_BOXES.contains(&&b.kind)) {
        return Err(MediaError::NotIsoBmff(format!(
            "a media segment may not hold a {:?} box",
            fourcc(&other.kind)
        )));
    }
    for needed in [b"moof", b"mdat"] {
        if !boxes.iter().any(|b| &b.kind == needed) {
            return Err(MediaError::NotIsoBmff(format!(
                "a media segment needs a {:?} box",
                fourcc(needed)
            )));
        }
    }
    Ok(())
}

/// Reads an init segment: `ftyp` then `moov`, with at least one track whose sample entry is
/// a video or audio codec we know.
///
/// # Errors
/// [`MediaError::NotIsoBmff`] when it is not one.
pub fn read_init(bytes: &[u8]) -> Result<InitInfo, MediaError> {
    let top = boxes(bytes)?;
    if top.first().map(|b| &b.kind) != Some(b"ftyp") {
        return Err(MediaError::NotIsoBmff(
            "an init segment starts with an \"ftyp\" box".into(),
        ));
    }
    let moov = top
        .iter()
        .find(|b| &b.kind == b"moov")
        .ok_or_else(|| MediaError::NotIsoBmff("an init segment needs a \"moov\" box".into()))?;
    let mut info = InitInfo::default();
    let mut audio = Vec::new();
    for trak in boxes(moov.payload)?.iter().filter(|b| &b.kind == b"trak") {
        let stsd = [b"mdia", b"minf", b"stbl", b"stsd"]
            .iter()
            .try_fold(Some(trak.payload), |at, kind| match at {
                Some(at) => child(at, kind),
                None => Ok(None),
            })?
            .ok_or_else(|| MediaError::NotIsoBmff("a track has no sample description".into()))?;
        // Full box header (4) and entry count (4), then the sample entries.
        let entries = stsd
            .get(8..)
            .ok_or_else(|| MediaError::NotIsoBmff("the sample description is cut short".into()))?;
        for entry in boxes(entries)? {
            if VIDEO_ENTRIES.contains(&&entry.kind) {
                if info.resolution.is_some() {
                    return Err(MediaError::NotIsoBmff(
                        "an init segment may hold one video track".into(),
                    ));
                }
                let (codec, size) = video_codec(&entry)?;
                info.codecs.push(codec);
                info.resolution = Some(size);
            } else if AUDIO_ENTRIES.contains(&&entry.kind) {
                audio.push(audio_codec(&entry)?);
            } else {
                return Err(MediaError::NotIsoBmff(format!(
                    "unsupported sample entry {:?}",
                    fourcc(&entry.kind)
                )));
            }
        }
    }
    info.codecs.extend(audio);
    if info.codecs.is_empty() {
        return Err(MediaError::NotIsoBmff(
            "the init segment declares no track".into(),
        ));
    }
    Ok(info)
}

/// `avc1.PPCCLL` from the `avcC` of an H.264 entry (the family name for other codecs), and
/// the entry's picture size.
fn video_codec(entry: &Bmff<'_>) -> Result<(String, (u32, u32)), MediaError> {
    let short = || MediaError::NotIsoBmff("a video sample entry is cut short".into());
    let header = entry.payload.get(..VISUAL_ENTRY_HEADER).ok_or_else(short)?;
    let width = u32::from(u16::from_be_bytes([header[24], header[25]]));
    let height = u32::from(u16::from_be_bytes([header[26], header[27]]));
    let children = &entry.payload[VISUAL_ENTRY_HEADER..];
    let codec = match &entry.kind {
        b"avc1" | b"avc3" => {
            let avcc = child(children, b"avcC")?
                .ok_or_else(|| MediaError::NotIsoBmff("an H.264 entry has no avcC".into()))?;
            let p = avcc.get(1..4).ok_or_else(short)?;
            format!(
                "{}.{:02x}{:02x}{:02x}",
                fourcc(&entry.kind),
                p[0],
                p[1],
                p[2]
            )
        }
        other => fourcc(other),
    };
    Ok((codec, (width, height)))
}

/// `mp4a.40.N` (N the AAC object type from the `esds`), `opus`, `fLaC` or `ac-3`.
fn audio_codec(entry: &Bmff<'_>) -> Result<String, MediaError> {
    let children = entry
        .payload
        .get(AUDIO_ENTRY_HEADER..)
        .ok_or_else(|| MediaError::NotIsoBmff("an audio sample entry is cut short".into()))?;
    Ok(match &entry.kind {
        b"mp4a" => {
            let esds = child(children, b"esds")?
                .ok_or_else(|| MediaError::NotIsoBmff("an AAC entry has no esds".into()))?;
            format!("mp4a.40.{}", aac_object_type(esds).unwrap_or(2))
        }
        b"Opus" => "opus".to_owned(),
        other => fourcc(other),
    })
}

/// The audio object type of the AudioSpecificConfig inside an `esds` (ES, decoder config
/// and decoder-specific descriptors), if it can be found.
fn aac_object_type(esds: &[u8]) -> Option<u8> {
    // Full box header, then descriptors: tag, size (1 to 4 bytes of 7 bits), body.
    let mut at = esds.get(4..)?;
    loop {
        let tag = *at.first()?;
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let b = *at.get(i)?;
            len = (len << 7) | usize::from(b & 0x7f);
            i += 1;
            if b & 0x80 == 0 || i > 4 {
                break;
            }
        }
        let body = at.get(i..i.checked_add(len)?)?;
        match tag {
            // ES_Descriptor: id (2), flags (1), then nested descriptors (no optional fields
            // in what encoders write; flags would add them).
            0x03 => {
                let flags = *body.get(2)?;
                let mut skip = 3;
                if flags & 0x80 != 0 {
                    skip += 2;
                }
                if flags & 0x40 != 0 {
                    skip += 1 + usize::from(*body.get(skip)?);
                }
                if flags & 0x20 != 0 {
                    skip += 2;
                }
                at = body.get(skip..)?;
            }
            // DecoderConfigDescriptor: 13 fixed bytes, then the specific info.
            0x04 => at = body.get(13..)?,
            0x05 => return Some(body.first()? >> 3),
            _ => return None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A box of `kind` around `payload`.
    pub(crate) fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    fn track(entry: Vec<u8>) -> Vec<u8> {
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(entry);
        let stbl = mp4_box(b"stbl", &mp4_box(b"stsd", &stsd));
        let minf = mp4_box(b"minf", &stbl);
        mp4_box(b"trak", &mp4_box(b"mdia", &minf))
    }

    fn avc1(width: u16, height: u16) -> Vec<u8> {
        let mut entry = vec![0u8; VISUAL_ENTRY_HEADER];
        entry[24..26].copy_from_slice(&width.to_be_bytes());
        entry[26..28].copy_from_slice(&height.to_be_bytes());
        entry.extend(mp4_box(b"avcC", &[1, 0x64, 0x00, 0x1f, 0xff]));
        mp4_box(b"avc1", &entry)
    }

    fn mp4a(object_type: u8) -> Vec<u8> {
        // esds: ES_Descriptor { DecoderConfigDescriptor { DecoderSpecificInfo } }.
        let asc = [object_type << 3 | 0x01, 0x90];
        let mut dsi = vec![0x05, asc.len() as u8];
        dsi.extend(asc);
        let mut dcd = vec![0x04, (13 + dsi.len()) as u8, 0x40, 0x15];
        dcd.extend([0u8; 11]);
        dcd.extend(dsi);
        let mut es = vec![0x03, (3 + dcd.len()) as u8, 0, 1, 0];
        es.extend(dcd);
        let mut esds = vec![0, 0, 0, 0];
        esds.extend(es);
        let mut entry = vec![0u8; AUDIO_ENTRY_HEADER];
        entry.extend(mp4_box(b"esds", &esds));
        mp4_box(b"mp4a", &entry)
    }

    /// An init segment with an H.264 track and, if given, an audio entry.
    pub(crate) fn init_segment(audio: Option<Vec<u8>>) -> Vec<u8> {
        let mut moov = track(avc1(1280, 720));
        if let Some(audio) = audio {
            moov.extend(track(audio));
        }
        let mut out = mp4_box(b"ftyp", b"iso6\0\0\0\0");
        out.extend(mp4_box(b"moov", &moov));
        out
    }

    /// A media segment: `styp`, `moof`, `mdat`.
    pub(crate) fn media_segment() -> Vec<u8> {
        let mut out = mp4_box(b"styp", b"msdh\0\0\0\0");
        out.extend(mp4_box(b"moof", &mp4_box(b"mfhd", &[0; 8])));
        out.extend(mp4_box(b"mdat", &[1, 2, 3]));
        out
    }

    #[test]
    fn reads_codecs_and_size_of_an_init_segment() {
        let info = read_init(&init_segment(Some(mp4a(2)))).unwrap();
        assert_eq!(info.codecs, ["avc1.64001f", "mp4a.40.2"]);
        assert_eq!(info.resolution, Some((1280, 720)));
        let he = read_init(&init_segment(Some(mp4a(5)))).unwrap();
        assert_eq!(he.codecs[1], "mp4a.40.5");
        let opus = mp4_box(b"Opus", &[0u8; AUDIO_ENTRY_HEADER]);
        assert_eq!(
            read_init(&init_segment(Some(opus))).unwrap().codecs,
            ["avc1.64001f", "opus"]
        );
    }

    #[test]
    fn refuses_what_is_not_an_init_segment() {
        assert!(read_init(b"").is_err());
        assert!(read_init(&media_segment()).is_err());
        assert!(read_init(&[0x47; 188]).is_err());
        let init = init_segment(None);
        for cut in [1, 9, init.len() / 2, init.len() - 1] {
            assert!(read_init(&init[..cut]).is_err(), "cut at {cut}");
        }
        let unknown = mp4_box(b"ftyp", b"iso6");
        let moov = mp4_box(b"moov", &track(mp4_box(b"encv", &[0; 80])));
        assert!(read_init(&[unknown, moov].concat()).is_err());
    }

    #[test]
    fn checks_media_segments() {
        assert!(check_media_segment(&media_segment()).is_ok());
        let segment = media_segment();
        assert!(check_media_segment(&segment[..segment.len() - 1]).is_err());
        assert!(check_media_segment(&init_segment(None)).is_err());
        assert!(check_media_segment(&mp4_box(b"moof", &[])).is_err());
        assert!(check_media_segment(&[0x47; 376]).is_err());
        assert!(check_media_segment(b"").is_err());
        // A 64-bit size that claims more than there is.
        let mut huge = vec![0, 0, 0, 1];
        huge.extend_from_slice(b"mdat");
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(check_media_segment(&huge).is_err());
    }
}

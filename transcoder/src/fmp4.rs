//! ISO BMFF box parsing for CMAF (fragmented MP4) input: the init segment's `moov` (tracks,
//! timescales, edit lists, `avcC` / `esds` / `dOps`, `trex` defaults) and each media segment's
//! `moof` (`mfhd`, `traf`: `tfhd`, `tfdt`, `trun`), turned into a flat list of samples with
//! absolute file offsets. Sample payloads (`mdat`) are never parsed here: the caller reads
//! them from the file by offset, so memory stays at one fragment's sample list.
//!
//! This is a small reader of our own rather than the `mp4-atom` crate: `mp4-atom` decodes a
//! box as a whole (an `mdat` becomes a `Vec` of its payload, and a `moof` is only decoded
//! after its bytes are buffered, which is fine, but its `trun` entries keep optional fields
//! per sample and resolving defaults, base offsets and edit lists is still ours to do). The
//! part we need is a few hundred lines over byte slices, with explicit errors for every
//! truncated or inconsistent box, and no dependency. The layout follows ISO/IEC 14496-12
//! (boxes, fragments), 14496-15 (`avcC`), 14496-1 (`esds`) and "Encapsulation of Opus in ISO
//! Base Media File Format" (`dOps`).

/// Errors reading boxes. Every malformed input gives one of these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    /// A box or field ends after the data that holds it.
    #[error("box {0} is truncated")]
    Truncated(String),
    /// A field holds a value the format does not allow.
    #[error("invalid {0}")]
    Invalid(String),
}

fn kind_name(kind: [u8; 4]) -> String {
    kind.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// A box header: type, total size and header length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    /// The four-character type.
    pub kind: [u8; 4],
    /// Size of the whole box including the header; `None` for a box that extends to the end
    /// of its container (size field 0).
    pub size: Option<u64>,
    /// Header length (8, or 16 with a 64-bit size).
    pub header_len: u64,
}

impl BoxHeader {
    /// Parses a header from the start of `data` (at least 8 bytes, 16 for a 64-bit size).
    ///
    /// # Errors
    /// [`Fmp4Error::Truncated`] when `data` is too short, [`Fmp4Error::Invalid`] when the size
    /// is smaller than the header.
    pub fn parse(data: &[u8]) -> Result<Self, Fmp4Error> {
        let head = data
            .get(..8)
            .ok_or_else(|| Fmp4Error::Truncated("header".into()))?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        let (size, header_len) = match size32 {
            0 => (None, 8),
            1 => {
                let large = data
                    .get(8..16)
                    .ok_or_else(|| Fmp4Error::Truncated(kind_name(kind)))?;
                let mut b = [0u8; 8];
                b.copy_from_slice(large);
                (Some(u64::from_be_bytes(b)), 16)
            }
            n => (Some(u64::from(n)), 8),
        };
        if size.is_some_and(|s| s < header_len) {
            return Err(Fmp4Error::Invalid(format!(
                "size of box {}",
                kind_name(kind)
            )));
        }
        Ok(Self {
            kind,
            size,
            header_len,
        })
    }

    /// Whether the type is four printable ASCII characters (a cheap sanity check).
    pub fn plausible(&self) -> bool {
        self.kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
    }
}

/// Big-endian field reader over a box body; every read checks the bounds.
#[derive(Debug, Clone)]
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    kind: [u8; 4],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], kind: [u8; 4]) -> Self {
        Self { data, pos: 0, kind }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Fmp4Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| Fmp4Error::Truncated(kind_name(self.kind)))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), Fmp4Error> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, Fmp4Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Fmp4Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Fmp4Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Fmp4Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Version and flags of a full box.
    fn full(&mut self) -> Result<(u8, u32), Fmp4Error> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.data[self.pos..];
        self.pos = self.data.len();
        out
    }
}

/// Iterates over the child boxes of a container body: `(type, body)` pairs.
fn children(data: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8]), Fmp4Error>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= data.len() {
            return None;
        }
        let result = (|| {
            let header = BoxHeader::parse(&data[pos..])?;
            let remaining = (data.len() - pos) as u64;
            let size = header.size.unwrap_or(remaining);
            if size > remaining {
                return Err(Fmp4Error::Truncated(kind_name(header.kind)));
            }
            let body = &data[pos + header.header_len as usize..pos + size as usize];
            pos += size as usize;
            Ok((header.kind, body))
        })();
        if result.is_err() {
            failed = true;
        }
        Some(result)
    })
}

/// The first child of type `kind`, if any.
fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Fmp4Error> {
    for item in children(data) {
        let (k, body) = item?;
        if &k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

fn required<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], Fmp4Error> {
    child(data, kind)?.ok_or_else(|| Fmp4Error::Invalid(format!("missing {}", kind_name(*kind))))
}

/// Default sample values of a track (`trex`, overridden per fragment by `tfhd`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleDefaults {
    /// Default sample duration (track timescale).
    pub duration: u32,
    /// Default sample size in bytes.
    pub size: u32,
    /// Default sample flags.
    pub flags: u32,
}

/// `avcC`: the H.264 decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// Bytes of the length field before each NAL unit in a sample (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets.
    pub pps: Vec<Vec<u8>>,
}

/// `dOps`: the Opus decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusSpecific {
    /// Output channel count.
    pub output_channels: u8,
    /// Priming samples at 48 kHz to discard at the start.
    pub pre_skip: u16,
    /// Sampling rate of the original input (informative).
    pub input_sample_rate: u32,
    /// Output gain (Q7.8 dB).
    pub output_gain: i16,
    /// Channel mapping family.
    pub mapping_family: u8,
    /// Stream count, coupled count and channel mapping (present when the family is not 0).
    pub mapping_table: Vec<u8>,
}

/// The codec of a track, from its first sample entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleEntry {
    /// H.264 (`avc1` / `avc3`).
    Avc {
        /// Width from the sample entry.
        width: u16,
        /// Height from the sample entry.
        height: u16,
        /// The `avcC` record.
        config: AvcConfig,
    },
    /// AAC (`mp4a` with MPEG-4 audio in `esds`).
    Aac {
        /// Channel count of the sample entry.
        channels: u16,
        /// Sampling rate of the sample entry.
        sample_rate: u32,
        /// AudioSpecificConfig from `esds`.
        specific_config: Vec<u8>,
    },
    /// Opus (`Opus` with `dOps`).
    Opus(OpusSpecific),
    /// Any other sample entry (its type).
    Other([u8; 4]),
}

/// One track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInit {
    /// Track id.
    pub track_id: u32,
    /// Media timescale (`mdhd`).
    pub timescale: u32,
    /// Handler type (`vide`, `soun`, ...).
    pub handler: [u8; 4],
    /// The codec.
    pub entry: SampleEntry,
    /// Presentation time minus media time, in the media timescale, from the edit list: the
    /// empty edits' duration minus the first media edit's start (0 without an edit list).
    pub edit_shift: i64,
    /// Defaults from `trex`.
    pub defaults: SampleDefaults,
}

/// What an init segment (`moov`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    /// The tracks in `moov` order.
    pub tracks: Vec<TrackInit>,
}

/// Parses the body of a `moov` box.
///
/// # Errors
/// [`Fmp4Error`] when a needed box is missing, truncated or inconsistent.
pub fn parse_moov(moov: &[u8]) -> Result<Init, Fmp4Error> {
    let mut movie_timescale = 1000u32;
    let mut tracks = Vec::new();
    let mut trex = Vec::new();
    for item in children(moov) {
        let (kind, body) = item?;
        match &kind {
            b"mvhd" => {
                let mut r = Reader::new(body, kind);
                let (version, _) = r.full()?;
                r.skip(if version == 1 { 16 } else { 8 })?;
                movie_timescale = r.u32()?;
            }
            b"trak" => {
                if let Some(track) = parse_trak(body, movie_timescale)? {
                    tracks.push(track);
                }
            }
            b"mvex" => {
                for item in children(body) {
                    let (kind, body) = item?;
                    if &kind == b"trex" {
                        let mut r = Reader::new(body, kind);
                        r.full()?;
                        let track_id = r.u32()?;
                        r.u32()?; // sample description index
                        let defaults = SampleDefaults {
                            duration: r.u32()?,
                            size: r.u32()?,
                            flags: r.u32()?,
                        };
                        trex.push((track_id, defaults));
                    }
                }
            }
            _ => {}
        }
    }
    for track in &mut tracks {
        if let Some(&(_, defaults)) = trex.iter().find(|(id, _)| *id == track.track_id) {
            track.defaults = defaults;
        }
    }
    Ok(Init { tracks })
}

fn parse_trak(trak: &[u8], movie_timescale: u32) -> Result<Option<TrackInit>, Fmp4Error> {
    let tkhd = required(trak, b"tkhd")?;
    let mut r = Reader::new(tkhd, *b"tkhd");
    let (version, _) = r.full()?;
    r.skip(if version == 1 { 16 } else { 8 })?;
    let track_id = r.u32()?;

    let mdia = required(trak, b"mdia")?;
    let mdhd = required(mdia, b"mdhd")?;
    let mut r = Reader::new(mdhd, *b"mdhd");
    let (version, _) = r.full()?;
    r.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(Fmp4Error::Invalid("timescale 0".into()));
    }
    let hdlr = required(mdia, b"hdlr")?;
    let mut r = Reader::new(hdlr, *b"hdlr");
    r.full()?;
    r.u32()?;
    let mut handler = [0u8; 4];
    handler.copy_from_slice(r.take(4)?);

    let stsd = required(required(required(mdia, b"minf")?, b"stbl")?, b"stsd")?;
    let mut r = Reader::new(stsd, *b"stsd");
    r.full()?;
    let count = r.u32()?;
    if count == 0 {
        return Ok(None);
    }
    let entry = match children(r.rest()).next() {
        Some(item) => {
            let (kind, body) = item?;
            parse_sample_entry(kind, body)?
        }
        None => return Ok(None),
    };

    let edit_shift = match child(trak, b"edts")? {
        Some(edts) => match child(edts, b"elst")? {
            Some(elst) => edit_shift(elst, movie_timescale, timescale)?,
            None => 0,
        },
        None => 0,
    };
    Ok(Some(TrackInit {
        track_id,
        timescale,
        handler,
        entry,
        edit_shift,
        defaults: SampleDefaults::default(),
    }))
}

/// Empty edits (movie timescale) before the first media edit, minus that edit's media time,
/// in the media timescale.
fn edit_shift(elst: &[u8], movie_timescale: u32, timescale: u32) -> Result<i64, Fmp4Error> {
    let mut r = Reader::new(elst, *b"elst");
    let (version, _) = r.full()?;
    let count = r.u32()?;
    let mut empty: u64 = 0;
    for _ in 0..count.min(1024) {
        let (duration, media_time) = if version == 1 {
            (r.u64()?, r.u64()? as i64)
        } else {
            (u64::from(r.u32()?), i64::from(r.u32()? as i32))
        };
        r.u32()?; // media rate
        if media_time == -1 {
            empty = empty.saturating_add(duration);
            continue;
        }
        let empty_media =
            i128::from(empty) * i128::from(timescale) / i128::from(movie_timescale.max(1));
        let shift = empty_media - i128::from(media_time);
        return i64::try_from(shift).map_err(|_| Fmp4Error::Invalid("edit list".into()));
    }
    Ok(0)
}

fn parse_sample_entry(kind: [u8; 4], body: &[u8]) -> Result<SampleEntry, Fmp4Error> {
    match &kind {
        b"avc1" | b"avc3" => {
            let mut r = Reader::new(body, kind);
            r.skip(24)?;
            let width = r.u16()?;
            let height = r.u16()?;
            r.skip(50)?;
            let avcc = required(r.rest(), b"avcC")?;
            Ok(SampleEntry::Avc {
                width,
                height,
                config: parse_avcc(avcc)?,
            })
        }
        b"mp4a" | b"Opus" => {
            let mut r = Reader::new(body, kind);
            r.skip(8)?;
            let version = r.u16()?;
            r.skip(6)?;
            let channels = r.u16()?;
            r.skip(6)?;
            let sample_rate = r.u32()? >> 16;
            match version {
                1 => r.skip(16)?,
                2 => r.skip(36)?,
                _ => {}
            }
            let boxes = r.rest();
            if &kind == b"Opus" {
                let dops = required(boxes, b"dOps")?;
                return Ok(SampleEntry::Opus(parse_dops(dops)?));
            }
            let Some(esds) = child(boxes, b"esds")? else {
                return Ok(SampleEntry::Other(kind));
            };
            match parse_esds(esds)? {
                Some(specific_config) => Ok(SampleEntry::Aac {
                    channels,
                    sample_rate,
                    specific_config,
                }),
                None => Ok(SampleEntry::Other(kind)),
            }
        }
        _ => Ok(SampleEntry::Other(kind)),
    }
}

/// Parses an `avcC` body.
///
/// # Errors
/// [`Fmp4Error`] when it is truncated or has no SPS or PPS.
pub fn parse_avcc(avcc: &[u8]) -> Result<AvcConfig, Fmp4Error> {
    let mut r = Reader::new(avcc, *b"avcC");
    r.skip(4)?;
    let nal_length_size = (r.u8()? & 0x3) + 1;
    if nal_length_size == 3 {
        return Err(Fmp4Error::Invalid("avcC NAL length size 3".into()));
    }
    let mut sps = Vec::new();
    for _ in 0..(r.u8()? & 0x1f) {
        let len = usize::from(r.u16()?);
        sps.push(r.take(len)?.to_vec());
    }
    let mut pps = Vec::new();
    for _ in 0..r.u8()? {
        let len = usize::from(r.u16()?);
        pps.push(r.take(len)?.to_vec());
    }
    if sps.is_empty() || pps.is_empty() {
        return Err(Fmp4Error::Invalid("avcC without SPS or PPS".into()));
    }
    Ok(AvcConfig {
        nal_length_size,
        sps,
        pps,
    })
}

/// Parses a `dOps` body.
///
/// # Errors
/// [`Fmp4Error`] when it is truncated or of an unknown version.
pub fn parse_dops(dops: &[u8]) -> Result<OpusSpecific, Fmp4Error> {
    let mut r = Reader::new(dops, *b"dOps");
    if r.u8()? != 0 {
        return Err(Fmp4Error::Invalid("dOps version".into()));
    }
    let output_channels = r.u8()?;
    let pre_skip = r.u16()?;
    let input_sample_rate = r.u32()?;
    let output_gain = r.u16()? as i16;
    let mapping_family = r.u8()?;
    let mapping_table = if mapping_family == 0 {
        Vec::new()
    } else {
        r.take(2 + usize::from(output_channels))?.to_vec()
    };
    if output_channels == 0 {
        return Err(Fmp4Error::Invalid("dOps with no channels".into()));
    }
    Ok(OpusSpecific {
        output_channels,
        pre_skip,
        input_sample_rate,
        output_gain,
        mapping_family,
        mapping_table,
    })
}

/// Reads an MPEG-4 descriptor header: tag and (variable-length) size.
fn descriptor(r: &mut Reader<'_>) -> Result<(u8, usize), Fmp4Error> {
    let tag = r.u8()?;
    let mut size = 0usize;
    for _ in 0..4 {
        let b = r.u8()?;
        size = (size << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok((tag, size))
}

/// The AudioSpecificConfig of an `esds` body, when it describes MPEG-4 audio.
///
/// # Errors
/// [`Fmp4Error`] when the descriptors are truncated.
pub fn parse_esds(esds: &[u8]) -> Result<Option<Vec<u8>>, Fmp4Error> {
    let mut r = Reader::new(esds, *b"esds");
    r.full()?;
    let (tag, _) = descriptor(&mut r)?;
    if tag != 0x03 {
        return Err(Fmp4Error::Invalid("esds without ES_Descriptor".into()));
    }
    r.u16()?; // ES_ID
    let flags = r.u8()?;
    if flags & 0x80 != 0 {
        r.u16()?;
    }
    if flags & 0x40 != 0 {
        let len = usize::from(r.u8()?);
        r.skip(len)?;
    }
    if flags & 0x20 != 0 {
        r.u16()?;
    }
    let (tag, _) = descriptor(&mut r)?;
    if tag != 0x04 {
        return Err(Fmp4Error::Invalid(
            "esds without DecoderConfigDescriptor".into(),
        ));
    }
    let object_type = r.u8()?;
    r.skip(12)?;
    if object_type != 0x40 {
        return Ok(None);
    }
    let (tag, size) = descriptor(&mut r)?;
    if tag != 0x05 || size == 0 {
        return Err(Fmp4Error::Invalid(
            "esds without AudioSpecificConfig".into(),
        ));
    }
    Ok(Some(r.take(size)?.to_vec()))
}

/// Object type, sampling rate and channel configuration of an AudioSpecificConfig.
///
/// # Errors
/// [`Fmp4Error`] when it is truncated or uses a reserved frequency index.
pub fn parse_audio_specific_config(asc: &[u8]) -> Result<(u8, u32, u8), Fmp4Error> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let mut bits = 0u64;
    for (i, &b) in asc.iter().take(8).enumerate() {
        bits |= u64::from(b) << (56 - 8 * i);
    }
    let available = asc.len().min(8) * 8;
    let mut used = 0usize;
    let mut read = |n: usize| -> Result<u32, Fmp4Error> {
        if used + n > available {
            return Err(Fmp4Error::Truncated("AudioSpecificConfig".into()));
        }
        let v = (bits << used) >> (64 - n);
        used += n;
        Ok(v as u32)
    };
    let mut object_type = read(5)?;
    if object_type == 31 {
        object_type = 32 + read(6)?;
    }
    let index = read(4)? as usize;
    let rate = if index == 15 {
        read(24)?
    } else {
        *RATES
            .get(index)
            .ok_or_else(|| Fmp4Error::Invalid("AAC frequency index".into()))?
    };
    let channels = read(4)? as u8;
    Ok((object_type as u8, rate, channels))
}

/// Where a track stands across fragments: its defaults and the decode time that follows
/// its last sample (used when a `traf` has no `tfdt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackCursor {
    /// Track id.
    pub track_id: u32,
    /// Defaults from `trex`.
    pub defaults: SampleDefaults,
    /// Decode time after the last sample seen.
    pub next_decode_time: u64,
}

/// One sample of a fragment, with everything resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentSample {
    /// Index of the track in the cursor list given to [`parse_moof`].
    pub track: usize,
    /// Decode time (track timescale).
    pub decode_time: u64,
    /// Duration (track timescale).
    pub duration: u32,
    /// Size in bytes.
    pub size: u32,
    /// Absolute offset of the payload in the segment file.
    pub offset: u64,
    /// Composition time minus decode time (signed).
    pub composition_offset: i64,
    /// Whether the sample is a sync sample according to its flags.
    pub sync: bool,
}

const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_DURATION: u32 = 0x08;
const TFHD_DEFAULT_SIZE: u32 = 0x10;
const TFHD_DEFAULT_FLAGS: u32 = 0x20;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x2_0000;
const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_COMPOSITION_OFFSET: u32 = 0x800;
/// `sample_is_non_sync_sample` in sample flags.
pub const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;
/// A fragment may not declare more samples than this (about an hour of 30 fps video per
/// run); larger counts are corrupt and would only make us allocate.
pub const MAX_SAMPLES_PER_RUN: u32 = 1 << 17;

/// A fragment may not hold more samples than this in all (a corrupt `moof` with default
/// sizes could otherwise declare millions of samples in a few bytes).
pub const MAX_SAMPLES_PER_FRAGMENT: usize = 1 << 18;

/// Parses the body of a `moof` that starts at file offset `moof_offset` and appends its
/// samples to `out` in `traf`/`trun` order. Track fragments of tracks not in `tracks` are
/// skipped. The cursors' `next_decode_time` advance past the samples.
///
/// # Errors
/// [`Fmp4Error`] when a box is truncated or inconsistent (nothing is appended then).
pub fn parse_moof(
    moof: &[u8],
    moof_offset: u64,
    tracks: &mut [TrackCursor],
    out: &mut Vec<FragmentSample>,
) -> Result<(), Fmp4Error> {
    let start = out.len();
    let saved: Vec<u64> = tracks.iter().map(|t| t.next_decode_time).collect();
    let result = parse_moof_inner(moof, moof_offset, tracks, out);
    if result.is_err() {
        out.truncate(start);
        for (track, next) in tracks.iter_mut().zip(saved) {
            track.next_decode_time = next;
        }
    }
    result
}

fn parse_moof_inner(
    moof: &[u8],
    moof_offset: u64,
    tracks: &mut [TrackCursor],
    out: &mut Vec<FragmentSample>,
) -> Result<(), Fmp4Error> {
    // Base of a traf without an explicit base: the moof for the first, then the end of the
    // previous traf's data.
    let mut implicit_base = moof_offset;
    let mut seen_mfhd = false;
    for item in children(moof) {
        let (kind, body) = item?;
        match &kind {
            b"mfhd" => seen_mfhd = true,
            b"traf" => {
                implicit_base = parse_traf(body, moof_offset, implicit_base, tracks, out)?;
            }
            _ => {}
        }
    }
    if !seen_mfhd {
        return Err(Fmp4Error::Invalid("moof without mfhd".into()));
    }
    Ok(())
}

/// Parses one `traf`; returns the end offset of its data.
fn parse_traf(
    traf: &[u8],
    moof_offset: u64,
    implicit_base: u64,
    tracks: &mut [TrackCursor],
    out: &mut Vec<FragmentSample>,
) -> Result<u64, Fmp4Error> {
    let tfhd = required(traf, b"tfhd")?;
    let mut r = Reader::new(tfhd, *b"tfhd");
    let (_, flags) = r.full()?;
    let track_id = r.u32()?;
    let Some(index) = tracks.iter().position(|t| t.track_id == track_id) else {
        return Ok(implicit_base);
    };
    let mut defaults = tracks[index].defaults;
    let base = if flags & TFHD_BASE_DATA_OFFSET != 0 {
        r.u64()?
    } else if flags & TFHD_DEFAULT_BASE_IS_MOOF != 0 {
        moof_offset
    } else {
        implicit_base
    };
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
        r.u32()?;
    }
    if flags & TFHD_DEFAULT_DURATION != 0 {
        defaults.duration = r.u32()?;
    }
    if flags & TFHD_DEFAULT_SIZE != 0 {
        defaults.size = r.u32()?;
    }
    if flags & TFHD_DEFAULT_FLAGS != 0 {
        defaults.flags = r.u32()?;
    }

    let mut decode_time = match child(traf, b"tfdt")? {
        Some(tfdt) => {
            let mut r = Reader::new(tfdt, *b"tfdt");
            let (version, _) = r.full()?;
            if version == 1 {
                r.u64()?
            } else {
                u64::from(r.u32()?)
            }
        }
        None => tracks[index].next_decode_time,
    };

    let mut data_end = base;
    let mut first_run = true;
    for item in children(traf) {
        let (kind, body) = item?;
        if &kind != b"trun" {
            continue;
        }
        let mut r = Reader::new(body, kind);
        let (version, flags) = r.full()?;
        let count = r.u32()?;
        if count > MAX_SAMPLES_PER_RUN || out.len() + count as usize > MAX_SAMPLES_PER_FRAGMENT {
            return Err(Fmp4Error::Invalid(format!("trun with {count} samples")));
        }
        let mut offset = if flags & TRUN_DATA_OFFSET != 0 {
            let rel = i64::from(r.u32()? as i32);
            base.checked_add_signed(rel)
                .ok_or_else(|| Fmp4Error::Invalid("trun data offset".into()))?
        } else if first_run {
            base
        } else {
            data_end
        };
        first_run = false;
        let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        for i in 0..count {
            let duration = if flags & TRUN_DURATION != 0 {
                r.u32()?
            } else {
                defaults.duration
            };
            let size = if flags & TRUN_SIZE != 0 {
                r.u32()?
            } else {
                defaults.size
            };
            let sample_flags = if flags & TRUN_FLAGS != 0 {
                r.u32()?
            } else {
                match first_flags {
                    Some(f) if i == 0 => f,
                    _ => defaults.flags,
                }
            };
            let composition_offset = if flags & TRUN_COMPOSITION_OFFSET != 0 {
                let raw = r.u32()?;
                if version == 0 {
                    i64::from(raw)
                } else {
                    i64::from(raw as i32)
                }
            } else {
                0
            };
            out.push(FragmentSample {
                track: index,
                decode_time,
                duration,
                size,
                offset,
                composition_offset,
                sync: sample_flags & SAMPLE_IS_NON_SYNC == 0,
            });
            decode_time = decode_time
                .checked_add(u64::from(duration))
                .ok_or_else(|| Fmp4Error::Invalid("decode time overflows".into()))?;
            offset = offset
                .checked_add(u64::from(size))
                .ok_or_else(|| Fmp4Error::Invalid("sample offset overflows".into()))?;
        }
        data_end = offset;
    }
    tracks[index].next_decode_time = decode_time;
    Ok(data_end)
}

/// Test helpers: a tiny box writer for hand-built boxes.
#[cfg(test)]
pub(crate) mod build {
    /// A box of type `kind` around `body`.
    pub fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    /// A full box of type `kind` with `version` and `flags` around `body`.
    pub fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut inner = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
        inner.extend_from_slice(body);
        boxed(kind, &inner)
    }

    /// Concatenates byte strings.
    pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Big-endian u32 list.
    pub fn u32s(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn cursor(track_id: u32, defaults: SampleDefaults) -> TrackCursor {
        TrackCursor {
            track_id,
            defaults,
            next_decode_time: 0,
        }
    }

    #[test]
    fn header_sizes() {
        let h = BoxHeader::parse(&boxed(b"moof", &[0; 4])).unwrap();
        assert_eq!((h.kind, h.size, h.header_len), (*b"moof", Some(12), 8));
        let mut large = 1u32.to_be_bytes().to_vec();
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&100u64.to_be_bytes());
        let h = BoxHeader::parse(&large).unwrap();
        assert_eq!((h.size, h.header_len), (Some(100), 16));
        assert!(matches!(
            BoxHeader::parse(&[0, 0, 0, 4, b'f', b'r', b'e', b'e']),
            Err(Fmp4Error::Invalid(_))
        ));
        assert!(matches!(
            BoxHeader::parse(&[0, 0, 0]),
            Err(Fmp4Error::Truncated(_))
        ));
    }

    #[test]
    fn defaults_come_from_trex_then_tfhd() {
        // Track 1: everything from trex. Track 2: duration and size from tfhd, which also
        // says default-base-is-moof.
        let traf1 = boxed(
            b"traf",
            &cat(&[
                &full(b"tfhd", 0, 0, &u32s(&[1])),
                &full(b"tfdt", 1, 0, &1000u64.to_be_bytes()),
                &full(b"trun", 0, TRUN_DATA_OFFSET, &u32s(&[2, 200])),
            ]),
        );
        let traf2 = boxed(
            b"traf",
            &cat(&[
                &full(
                    b"tfhd",
                    0,
                    TFHD_DEFAULT_DURATION | TFHD_DEFAULT_SIZE | TFHD_DEFAULT_BASE_IS_MOOF,
                    &u32s(&[2, 1024, 7]),
                ),
                &full(b"tfdt", 0, 0, &u32s(&[48_000])),
                &full(b"trun", 0, TRUN_DATA_OFFSET, &u32s(&[3, 400])),
            ]),
        );
        let moof = cat(&[&full(b"mfhd", 0, 0, &u32s(&[1])), &traf1, &traf2]);
        let mut tracks = [
            cursor(
                1,
                SampleDefaults {
                    duration: 3000,
                    size: 50,
                    flags: SAMPLE_IS_NON_SYNC,
                },
            ),
            cursor(2, SampleDefaults::default()),
        ];
        let mut out = Vec::new();
        parse_moof(&moof, 10_000, &mut tracks, &mut out).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(
            out[0],
            FragmentSample {
                track: 0,
                decode_time: 1000,
                duration: 3000,
                size: 50,
                offset: 10_200,
                composition_offset: 0,
                sync: false,
            }
        );
        assert_eq!((out[1].decode_time, out[1].offset), (4000, 10_250));
        assert_eq!(
            out[2..]
                .iter()
                .map(|s| (s.track, s.decode_time, s.duration, s.size, s.offset))
                .collect::<Vec<_>>(),
            vec![
                (1, 48_000, 1024, 7, 10_400),
                (1, 49_024, 1024, 7, 10_407),
                (1, 50_048, 1024, 7, 10_414)
            ]
        );
        assert!(out[2].sync);
        assert_eq!(tracks[0].next_decode_time, 7000);
        assert_eq!(tracks[1].next_decode_time, 51_072);
    }

    #[test]
    fn signed_composition_offsets_and_first_sample_flags() {
        let flags = TRUN_DATA_OFFSET
            | TRUN_FIRST_SAMPLE_FLAGS
            | TRUN_DURATION
            | TRUN_SIZE
            | TRUN_COMPOSITION_OFFSET;
        let neg = (-512i32) as u32;
        let trun_body = u32s(&[3, 8, 0, 512, 10, 1024, 512, 11, neg, 512, 12, 0]);
        let traf = |version| {
            boxed(
                b"traf",
                &cat(&[
                    &full(
                        b"tfhd",
                        0,
                        TFHD_DEFAULT_FLAGS | TFHD_DEFAULT_BASE_IS_MOOF,
                        &u32s(&[1, SAMPLE_IS_NON_SYNC]),
                    ),
                    &full(b"trun", version, flags, &trun_body),
                ]),
            )
        };
        for (version, expected) in [(1u8, -512i64), (0, i64::from(neg))] {
            let moof = cat(&[&full(b"mfhd", 0, 0, &u32s(&[1])), &traf(version)]);
            let mut tracks = [cursor(1, SampleDefaults::default())];
            let mut out = Vec::new();
            parse_moof(&moof, 0, &mut tracks, &mut out).unwrap();
            let offsets: Vec<i64> = out.iter().map(|s| s.composition_offset).collect();
            assert_eq!(offsets, vec![1024, expected, 0]);
            let sync: Vec<bool> = out.iter().map(|s| s.sync).collect();
            assert_eq!(sync, vec![true, false, false]);
            assert_eq!(
                out.iter().map(|s| s.offset).collect::<Vec<_>>(),
                vec![8, 18, 29]
            );
        }
    }

    #[test]
    fn base_data_offset_and_runs_without_offsets() {
        let traf = boxed(
            b"traf",
            &cat(&[
                &full(
                    b"tfhd",
                    0,
                    TFHD_BASE_DATA_OFFSET | TFHD_DEFAULT_SIZE | TFHD_DEFAULT_DURATION,
                    &cat(&[&u32s(&[1]), &5000u64.to_be_bytes(), &u32s(&[10, 100])]),
                ),
                &full(b"trun", 0, 0, &u32s(&[2])),
                &full(b"trun", 0, 0, &u32s(&[1])),
            ]),
        );
        let moof = cat(&[&full(b"mfhd", 0, 0, &u32s(&[1])), &traf]);
        let mut tracks = [cursor(1, SampleDefaults::default())];
        tracks[0].next_decode_time = 77;
        let mut out = Vec::new();
        parse_moof(&moof, 0, &mut tracks, &mut out).unwrap();
        let got: Vec<(u64, u64)> = out.iter().map(|s| (s.decode_time, s.offset)).collect();
        // No tfdt: decode time continues from the cursor; the second run follows the first.
        assert_eq!(got, vec![(77, 5000), (87, 5100), (97, 5200)]);
    }

    #[test]
    fn truncated_boxes_are_errors_not_panics() {
        let traf = boxed(
            b"traf",
            &cat(&[
                &full(b"tfhd", 0, 0, &u32s(&[1])),
                &full(
                    b"trun",
                    0,
                    TRUN_DATA_OFFSET | TRUN_SIZE,
                    &u32s(&[3, 8, 1, 2, 3]),
                ),
            ]),
        );
        let moof = cat(&[&full(b"mfhd", 0, 0, &u32s(&[1])), &traf]);
        let mut tracks = [cursor(1, SampleDefaults::default())];
        // Every prefix, and every single-byte corruption, gives Ok or Err, never a panic.
        for cut in 0..moof.len() {
            let mut out = Vec::new();
            let result = parse_moof(&moof[..cut], 0, &mut tracks, &mut out);
            // Only the cut right after `mfhd` leaves a well-formed (empty) fragment.
            assert!(result.is_err() || cut == 16, "prefix of {cut} bytes parsed");
            assert!(out.is_empty());
        }
        for at in 0..moof.len() {
            let mut bad = moof.clone();
            bad[at] ^= 0xff;
            let mut out = Vec::new();
            let _ = parse_moof(&bad, 0, &mut tracks, &mut out);
        }
        // A trun that declares more samples than it holds.
        let short = boxed(
            b"traf",
            &cat(&[
                &full(b"tfhd", 0, 0, &u32s(&[1])),
                &full(b"trun", 0, TRUN_SIZE, &u32s(&[5, 1, 2])),
            ]),
        );
        let moof = cat(&[&full(b"mfhd", 0, 0, &u32s(&[1])), &short]);
        let mut out = Vec::new();
        assert_eq!(
            parse_moof(&moof, 0, &mut tracks, &mut out),
            Err(Fmp4Error::Truncated("trun".into()))
        );
        assert!(out.is_empty());
    }

    fn init_segment(elst: Option<Vec<u8>>) -> Vec<u8> {
        let avcc = boxed(
            b"avcC",
            &[
                1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
            ],
        );
        let mut avc1_body = vec![0u8; 24];
        avc1_body.extend_from_slice(&640u16.to_be_bytes());
        avc1_body.extend_from_slice(&360u16.to_be_bytes());
        avc1_body.extend_from_slice(&[0u8; 50]);
        avc1_body.extend_from_slice(&avcc);
        let video_stsd = full(
            b"stsd",
            0,
            0,
            &cat(&[&u32s(&[1]), &boxed(b"avc1", &avc1_body)]),
        );
        let dops = boxed(b"dOps", &[0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        let mut opus_body = vec![0u8; 8];
        opus_body.extend_from_slice(&[0u8; 8]);
        opus_body.extend_from_slice(&2u16.to_be_bytes());
        opus_body.extend_from_slice(&16u16.to_be_bytes());
        opus_body.extend_from_slice(&[0u8; 4]);
        opus_body.extend_from_slice(&(48_000u32 << 16).to_be_bytes());
        opus_body.extend_from_slice(&dops);
        let audio_stsd = full(
            b"stsd",
            0,
            0,
            &cat(&[&u32s(&[1]), &boxed(b"Opus", &opus_body)]),
        );
        let trak =
            |id: u32, timescale: u32, handler: &[u8; 4], stsd: &[u8], edts: Option<&[u8]>| {
                let tkhd = full(b"tkhd", 0, 3, &u32s(&[0, 0, id, 0, 0]));
                let mdhd = full(b"mdhd", 0, 0, &u32s(&[0, 0, timescale, 0, 0]));
                let hdlr = full(b"hdlr", 0, 0, &cat(&[&u32s(&[0]), handler, &[0u8; 13]]));
                let minf = boxed(b"minf", &boxed(b"stbl", stsd));
                let mdia = boxed(b"mdia", &cat(&[&mdhd, &hdlr, &minf]));
                boxed(b"trak", &cat(&[&tkhd, edts.unwrap_or(&[]), &mdia]))
            };
        let edts = elst.map(|e| boxed(b"edts", &e));
        let mvhd = full(b"mvhd", 0, 0, &u32s(&[0, 0, 1000, 0]));
        let trex = |id: u32, duration: u32| full(b"trex", 0, 0, &u32s(&[id, 1, duration, 0, 0]));
        let mvex = boxed(b"mvex", &cat(&[&trex(1, 512), &trex(2, 960)]));
        cat(&[
            &mvhd,
            &trak(1, 15_360, b"vide", &video_stsd, edts.as_deref()),
            &trak(2, 48_000, b"soun", &audio_stsd, None),
            &mvex,
        ])
    }

    #[test]
    fn init_segment_tracks() {
        // Edit list: 66 ms empty, then media from 1024.
        let elst = full(
            b"elst",
            0,
            0,
            &u32s(&[2, 66, u32::MAX, 0x1_0000, 0, 1024, 0x1_0000]),
        );
        let init = parse_moov(&init_segment(Some(elst))).unwrap();
        assert_eq!(init.tracks.len(), 2);
        let video = &init.tracks[0];
        assert_eq!((video.track_id, video.timescale), (1, 15_360));
        assert_eq!(&video.handler, b"vide");
        // 66 ms = 1013 ticks at 15360 Hz (rounded down), minus the media time 1024.
        assert_eq!(video.edit_shift, 1013 - 1024);
        assert_eq!(video.defaults.duration, 512);
        match &video.entry {
            SampleEntry::Avc {
                width,
                height,
                config,
            } => {
                assert_eq!((*width, *height), (640, 360));
                assert_eq!(config.nal_length_size, 4);
                assert_eq!(config.sps, vec![vec![0x67, 0x64, 0, 0x1f]]);
                assert_eq!(config.pps, vec![vec![0x68, 0xee]]);
            }
            other => panic!("{other:?}"),
        }
        let audio = &init.tracks[1];
        assert_eq!(audio.edit_shift, 0);
        assert_eq!(audio.defaults.duration, 960);
        assert_eq!(
            audio.entry,
            SampleEntry::Opus(OpusSpecific {
                output_channels: 2,
                pre_skip: 312,
                input_sample_rate: 48_000,
                output_gain: 0,
                mapping_family: 0,
                mapping_table: Vec::new(),
            })
        );
        // Truncated init segments fail cleanly.
        let bytes = init_segment(None);
        for cut in (0..bytes.len()).step_by(7) {
            let _ = parse_moov(&bytes[..cut]);
        }
    }

    #[test]
    fn esds_and_audio_specific_config() {
        // ffmpeg writes 4-byte descriptor sizes; others write one byte.
        let long = [
            0, 0, 0, 0, 0x03, 0x80, 0x80, 0x80, 0x25, 0, 2, 0, 0x04, 0x80, 0x80, 0x80, 0x17, 0x40,
            0x15, 0, 0, 0, 0, 1, 0x77, 0, 0, 1, 0x77, 0, 0x05, 0x80, 0x80, 0x80, 0x05, 0x11, 0x88,
            0x56, 0xe5, 0, 0x06, 0x80, 0x80, 0x80, 1, 2,
        ];
        let asc = parse_esds(&long).unwrap().unwrap();
        assert_eq!(asc, vec![0x11, 0x88, 0x56, 0xe5, 0]);
        assert_eq!(parse_audio_specific_config(&asc).unwrap(), (2, 48_000, 1));
        let short = [
            0, 0, 0, 0, 0x03, 0x19, 0, 1, 0, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0x05, 0x02, 0x12, 0x10, 0x06, 1, 2,
        ];
        let asc = parse_esds(&short).unwrap().unwrap();
        assert_eq!(parse_audio_specific_config(&asc).unwrap(), (2, 44_100, 2));
        for cut in 0..long.len() {
            assert!(parse_esds(&long[..cut]).is_err() || cut >= 40);
        }
        assert!(parse_audio_specific_config(&[0x17]).is_err());
    }
}

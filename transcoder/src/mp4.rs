//! MP4 (ISO BMFF) boxes for a progressive file: `ftyp`, `moov` and the `mdat` header.
//!
//! We write these few boxes ourselves rather than through the `mp4` crate (0.14), whose
//! `Mp4Writer` cannot produce what we need: it writes `mdat` first and `moov` at the end (no
//! faststart, so a player must fetch the end of the file before it can start), it writes no
//! edit lists (a stream with B-frames needs one to start presenting at its first composition
//! time, and a track that starts later needs an empty edit to stay in sync), and it adds every
//! sample's duration to `tkhd` after truncating it to the movie timescale (AAC frames of
//! 21.33 ms count as 21 ms: a 10-minute track comes out seconds short). Its box structs could
//! be filled by hand, but that means the same work as below plus its `Vec`-of-entries tables.
//! `mp4-atom` would also work at box level; the set we need is small and fixed, so writing
//! it from our compact run-length tables avoids a dependency and keeps memory at a few bytes
//! per sample. The layout follows ISO/IEC 14496-12 (boxes), 14496-15 (`avcC`), 14496-1
//! (`esds`) and "Encapsulation of Opus in ISO Base Media File Format" (`Opus`, `dOps`).

use crate::demux::{AudioCodec, AudioConfig, VideoConfig};

/// Movie timescale (`mvhd`, `tkhd` and edit durations): milliseconds, as ffmpeg writes.
pub const MOVIE_TIMESCALE: u32 = 1000;
/// Media timescale of the video track: the MPEG-TS clock, so timestamps map exactly.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Track id of the video track.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK_ID: u32 = 2;

/// Run-length list of `(count, value)` entries as in `stts`, `ctts` and `stsc`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Runs {
    entries: Vec<(u32, u32)>,
}

impl Runs {
    /// Appends one value, extending the last run when it is equal.
    pub fn push(&mut self, value: u32) {
        match self.entries.last_mut() {
            Some((count, last)) if *last == value && *count < u32::MAX => *count += 1,
            _ => self.entries.push((1, value)),
        }
    }

    /// The `(count, value)` entries.
    pub fn entries(&self) -> &[(u32, u32)] {
        &self.entries
    }

    /// Sum of `count * value` over the runs.
    pub fn total(&self) -> u64 {
        self.entries
            .iter()
            .map(|&(count, value)| u64::from(count) * u64::from(value))
            .sum()
    }
}

/// Which track a chunk of `mdat` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The H.264 track.
    Video,
    /// The AAC or Opus track.
    Audio,
}

/// A run of consecutive samples of one track stored together in `mdat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// The track.
    pub track: Track,
    /// Number of samples.
    pub samples: u32,
    /// Payload bytes.
    pub bytes: u64,
}

/// Sample table of one track, a few bytes per sample.
#[derive(Debug, Default, Clone)]
pub struct SampleTable {
    /// Size of every sample.
    pub sizes: Vec<u32>,
    /// Sample durations (media timescale).
    pub durations: Runs,
    /// Composition offsets (video only; empty when all are zero).
    pub composition_offsets: Runs,
    /// 1-based numbers of the sync samples (video only).
    pub sync_samples: Vec<u32>,
}

/// One entry of an edit list (`elst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    /// Duration in the movie timescale.
    pub duration: u64,
    /// Start in the media timescale, or -1 for an empty edit (a delay).
    pub media_time: i64,
}

/// Everything `moov` describes about one track.
#[derive(Debug, Clone)]
pub struct TrackInfo<'a> {
    /// Which track.
    pub track: Track,
    /// Media timescale.
    pub timescale: u32,
    /// The samples.
    pub table: &'a SampleTable,
    /// The edit list (empty: none).
    pub edits: Vec<Edit>,
}

impl TrackInfo<'_> {
    /// Presentation duration in the movie timescale (sum of the edits, or the media duration).
    pub fn movie_duration(&self) -> u64 {
        if self.edits.is_empty() {
            rescale_up(
                self.table.durations.total(),
                self.timescale,
                MOVIE_TIMESCALE,
            )
        } else {
            self.edits.iter().map(|e| e.duration).sum()
        }
    }
}

/// `value` in timescale `from` converted to timescale `to`, rounded up.
pub fn rescale_up(value: u64, from: u32, to: u32) -> u64 {
    let scaled = u128::from(value) * u128::from(to);
    u64::try_from(scaled.div_ceil(u128::from(from.max(1)))).unwrap_or(u64::MAX)
}

/// The codec configurations of the movie.
#[derive(Debug, Clone, Copy)]
pub struct Codecs<'a> {
    /// H.264 parameters.
    pub video: &'a VideoConfig,
    /// AAC or Opus parameters, if the movie has audio.
    pub audio: Option<&'a AudioConfig>,
}

/// Appends big-endian fields and nested boxes to a byte buffer.
#[derive(Debug, Default)]
pub struct BoxWriter {
    buf: Vec<u8>,
}

impl BoxWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn open(&mut self, kind: &[u8; 4]) -> usize {
        let at = self.buf.len();
        self.u32(0);
        self.buf.extend_from_slice(kind);
        at
    }

    fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.open(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        at
    }

    fn close(&mut self, at: usize) {
        let size = (self.buf.len() - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }
    fn matrix(&mut self) {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
    }
}

/// The `ftyp` box.
pub fn ftyp() -> Vec<u8> {
    let mut w = BoxWriter::new();
    let at = w.open(b"ftyp");
    w.bytes(b"isom");
    w.u32(0x200);
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        w.bytes(brand);
    }
    w.close(at);
    w.into_bytes()
}

/// The `mdat` header for `payload` bytes (64-bit size when needed).
pub fn mdat_header(payload: u64) -> Vec<u8> {
    let mut w = BoxWriter::new();
    match u32::try_from(payload + 8) {
        Ok(size) => {
            w.u32(size);
            w.bytes(b"mdat");
        }
        Err(_) => {
            w.u32(1);
            w.bytes(b"mdat");
            w.u64(payload + 16);
        }
    }
    w.into_bytes()
}

/// Builds `moov` for `tracks` whose chunks lie in `mdat` in the order of `chunks`, the first
/// one at file offset `data_start`. `co64` selects 64-bit chunk offsets.
pub fn moov(
    tracks: &[TrackInfo<'_>],
    codecs: Codecs<'_>,
    chunks: &[Chunk],
    data_start: u64,
    co64: bool,
) -> Vec<u8> {
    let mut w = BoxWriter::new();
    let moov = w.open(b"moov");
    let movie_duration = tracks
        .iter()
        .map(TrackInfo::movie_duration)
        .max()
        .unwrap_or(0);
    let long = movie_duration > u64::from(u32::MAX);
    let mvhd = w.open_full(b"mvhd", u8::from(long), 0);
    if long {
        w.u64(0);
        w.u64(0);
        w.u32(MOVIE_TIMESCALE);
        w.u64(movie_duration);
    } else {
        w.u32(0);
        w.u32(0);
        w.u32(MOVIE_TIMESCALE);
        w.u32(movie_duration as u32);
    }
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    w.matrix();
    w.zeros(24);
    w.u32(AUDIO_TRACK_ID + 1); // next_track_ID
    w.close(mvhd);

    for track in tracks {
        let offsets = chunk_layout(track.track, chunks, data_start);
        write_trak(&mut w, track, codecs, &offsets, co64);
    }
    w.close(moov);
    w.into_bytes()
}

/// File offsets and sample counts of one track's chunks.
struct ChunkLayout {
    offsets: Vec<u64>,
    samples_per_chunk: Vec<u32>,
}

fn chunk_layout(track: Track, chunks: &[Chunk], data_start: u64) -> ChunkLayout {
    let mut offset = data_start;
    let mut layout = ChunkLayout {
        offsets: Vec::new(),
        samples_per_chunk: Vec::new(),
    };
    for chunk in chunks {
        if chunk.track == track && chunk.samples > 0 {
            layout.offsets.push(offset);
            layout.samples_per_chunk.push(chunk.samples);
        }
        offset += chunk.bytes;
    }
    layout
}

fn write_trak(
    w: &mut BoxWriter,
    track: &TrackInfo<'_>,
    codecs: Codecs<'_>,
    layout: &ChunkLayout,
    co64: bool,
) {
    let is_video = track.track == Track::Video;
    let trak = w.open(b"trak");
    let duration = track.movie_duration();
    let long = duration > u64::from(u32::MAX);
    let tkhd = w.open_full(b"tkhd", u8::from(long), 0x3);
    let track_id = if is_video {
        VIDEO_TRACK_ID
    } else {
        AUDIO_TRACK_ID
    };
    if long {
        w.u64(0);
        w.u64(0);
        w.u32(track_id);
        w.u32(0);
        w.u64(duration);
    } else {
        w.u32(0);
        w.u32(0);
        w.u32(track_id);
        w.u32(0);
        w.u32(duration as u32);
    }
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if is_video { 0 } else { 0x0100 });
    w.u16(0);
    w.matrix();
    if is_video {
        w.u32(codecs.video.sps_info.width << 16);
        w.u32(codecs.video.sps_info.height << 16);
    } else {
        w.u32(0);
        w.u32(0);
    }
    w.close(tkhd);

    if !track.edits.is_empty() {
        let edts = w.open(b"edts");
        let long = track
            .edits
            .iter()
            .any(|e| e.duration > u64::from(u32::MAX) || i32::try_from(e.media_time).is_err());
        let elst = w.open_full(b"elst", u8::from(long), 0);
        w.u32(track.edits.len() as u32);
        for edit in &track.edits {
            if long {
                w.u64(edit.duration);
                w.u64(edit.media_time as u64);
            } else {
                w.u32(edit.duration as u32);
                w.u32(edit.media_time as i32 as u32);
            }
            w.u32(0x0001_0000); // media rate 1.0
        }
        w.close(elst);
        w.close(edts);
    }

    let mdia = w.open(b"mdia");
    let media_duration = track.table.durations.total();
    let long = media_duration > u64::from(u32::MAX);
    let mdhd = w.open_full(b"mdhd", u8::from(long), 0);
    if long {
        w.u64(0);
        w.u64(0);
        w.u32(track.timescale);
        w.u64(media_duration);
    } else {
        w.u32(0);
        w.u32(0);
        w.u32(track.timescale);
        w.u32(media_duration as u32);
    }
    w.u16(0x55c4); // language "und"
    w.u16(0);
    w.close(mdhd);

    let hdlr = w.open_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if is_video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if is_video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    w.close(hdlr);

    let minf = w.open(b"minf");
    if is_video {
        let vmhd = w.open_full(b"vmhd", 0, 1);
        w.zeros(8);
        w.close(vmhd);
    } else {
        let smhd = w.open_full(b"smhd", 0, 0);
        w.zeros(4);
        w.close(smhd);
    }
    let dinf = w.open(b"dinf");
    let dref = w.open_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.open_full(b"url ", 0, 1);
    w.close(url);
    w.close(dref);
    w.close(dinf);

    let stbl = w.open(b"stbl");
    let stsd = w.open_full(b"stsd", 0, 0);
    w.u32(1);
    match (is_video, codecs.audio) {
        (true, _) => write_avc1(w, codecs.video),
        (false, Some(audio)) => match &audio.codec {
            AudioCodec::Aac {
                specific_config, ..
            } => write_mp4a(w, audio, specific_config),
            AudioCodec::Opus(opus) => write_opus(w, opus),
        },
        (false, None) => {}
    }
    w.close(stsd);

    let stts = w.open_full(b"stts", 0, 0);
    write_runs(w, &track.table.durations);
    w.close(stts);

    if is_video
        && track
            .table
            .composition_offsets
            .entries()
            .iter()
            .any(|&(_, v)| v != 0)
    {
        let ctts = w.open_full(b"ctts", 0, 0);
        write_runs(w, &track.table.composition_offsets);
        w.close(ctts);
    }

    if is_video && track.table.sync_samples.len() != track.table.sizes.len() {
        let stss = w.open_full(b"stss", 0, 0);
        w.u32(track.table.sync_samples.len() as u32);
        for &n in &track.table.sync_samples {
            w.u32(n);
        }
        w.close(stss);
    }

    let stsc = w.open_full(b"stsc", 0, 0);
    let mut stsc_entries: Vec<(u32, u32)> = Vec::new();
    for (index, &samples) in layout.samples_per_chunk.iter().enumerate() {
        if stsc_entries.last().map(|&(_, s)| s) != Some(samples) {
            stsc_entries.push((index as u32 + 1, samples));
        }
    }
    w.u32(stsc_entries.len() as u32);
    for (first_chunk, samples) in stsc_entries {
        w.u32(first_chunk);
        w.u32(samples);
        w.u32(1);
    }
    w.close(stsc);

    let stsz = w.open_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(track.table.sizes.len() as u32);
    for &size in &track.table.sizes {
        w.u32(size);
    }
    w.close(stsz);

    if co64 {
        let co = w.open_full(b"co64", 0, 0);
        w.u32(layout.offsets.len() as u32);
        for &offset in &layout.offsets {
            w.u64(offset);
        }
        w.close(co);
    } else {
        let co = w.open_full(b"stco", 0, 0);
        w.u32(layout.offsets.len() as u32);
        for &offset in &layout.offsets {
            w.u32(offset as u32);
        }
        w.close(co);
    }
    if let (
        false,
        Some(AudioConfig {
            codec: AudioCodec::Opus(_),
            ..
        }),
    ) = (is_video, codecs.audio)
    {
        write_opus_roll_group(w, track.table);
    }
    w.close(stbl);
    w.close(minf);
    w.close(mdia);
    w.close(trak);
}

/// Opus pre-roll (Encapsulation of Opus in ISO Base Media File Format, 4.3.6.2): a `roll`
/// sample group with the number of samples that cover 80 ms, as ffmpeg writes it; the first
/// samples of the track have nothing before them to roll from, so they are in no group.
fn write_opus_roll_group(w: &mut BoxWriter, table: &SampleTable) {
    let frame = table
        .durations
        .entries()
        .first()
        .map_or(960, |&(_, d)| d.max(1));
    let distance = 3840u32.div_ceil(frame).clamp(1, 0x7fff);
    let samples = table.sizes.len() as u32;
    let sgpd = w.open_full(b"sgpd", 1, 0);
    w.bytes(b"roll");
    w.u32(2); // default_length
    w.u32(1); // entry_count
    w.u16((-(distance as i32)) as i16 as u16);
    w.close(sgpd);
    let sbgp = w.open_full(b"sbgp", 0, 0);
    w.bytes(b"roll");
    let lead = distance.min(samples);
    let rest = samples - lead;
    w.u32(if rest > 0 { 2 } else { 1 });
    w.u32(lead);
    w.u32(0);
    if rest > 0 {
        w.u32(rest);
        w.u32(1);
    }
    w.close(sbgp);
}

fn write_runs(w: &mut BoxWriter, runs: &Runs) {
    w.u32(runs.entries().len() as u32);
    for &(count, value) in runs.entries() {
        w.u32(count);
        w.u32(value);
    }
}

fn write_avc1(w: &mut BoxWriter, video: &VideoConfig) {
    let info = video.sps_info;
    let avc1 = w.open(b"avc1");
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(16);
    w.u16(info.width.min(u32::from(u16::MAX)) as u16);
    w.u16(info.height.min(u32::from(u16::MAX)) as u16);
    w.u32(0x0048_0000); // 72 dpi
    w.u32(0x0048_0000);
    w.u32(0);
    w.u16(1); // frame_count
    w.zeros(32); // compressorname
    w.u16(0x0018); // depth
    w.u16(0xffff); // pre_defined = -1

    let avcc = w.open(b"avcC");
    w.u8(1);
    w.u8(info.profile);
    w.u8(info.compatibility);
    w.u8(info.level);
    w.u8(0xff); // 4-byte NAL lengths
    w.u8(0xe1); // one SPS
    w.u16(video.sps.len() as u16);
    w.bytes(&video.sps);
    w.u8(video.pps.len().min(255) as u8);
    for pps in video.pps.iter().take(255) {
        w.u16(pps.len() as u16);
        w.bytes(pps);
    }
    if !matches!(info.profile, 66 | 77 | 88) {
        w.u8(0xfc | (info.chroma_format & 0x3));
        w.u8(0xf8 | (info.bit_depth_luma_minus8 & 0x7));
        w.u8(0xf8 | (info.bit_depth_chroma_minus8 & 0x7));
        w.u8(0); // no SPS extensions
    }
    w.close(avcc);
    w.close(avc1);
}

fn write_mp4a(w: &mut BoxWriter, audio: &AudioConfig, specific_config: &[u8]) {
    let mp4a = w.open(b"mp4a");
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    let channels = match audio.channels {
        0 => 2,
        7 => 8,
        n => u16::from(n),
    };
    w.u16(channels);
    w.u16(16); // sample size
    w.u32(0);
    w.u32(if audio.sample_rate <= 0xffff {
        audio.sample_rate << 16
    } else {
        0
    });

    let esds = w.open_full(b"esds", 0, 0);
    // ES_Descriptor: ES_ID, flags, DecoderConfigDescriptor, SLConfigDescriptor.
    // One-byte descriptor sizes: an AudioSpecificConfig is a few bytes (capped for safety).
    let asc = &specific_config[..specific_config.len().min(64)];
    let decoder_specific_len = asc.len() as u8;
    let decoder_config_len = 13 + 2 + decoder_specific_len;
    let es_len = 3 + 2 + decoder_config_len + 3;
    w.u8(0x03);
    w.u8(es_len);
    w.u16(AUDIO_TRACK_ID as u16);
    w.u8(0);
    w.u8(0x04);
    w.u8(decoder_config_len);
    w.u8(0x40); // MPEG-4 audio
    w.u8(0x15); // audio stream
    w.bytes(&[0, 0x18, 0]); // bufferSizeDB
    w.u32(0); // maxBitrate (unknown)
    w.u32(0); // avgBitrate (unknown)
    w.u8(0x05);
    w.u8(decoder_specific_len);
    w.bytes(asc);
    w.u8(0x06);
    w.u8(1);
    w.u8(0x02);
    w.close(esds);
    w.close(mp4a);
}

/// `Opus` sample entry with `dOps` (Encapsulation of Opus in ISO Base Media File Format,
/// 4.3.1 and 4.3.2): channel count from the configuration, sample size 16, rate 48 kHz.
fn write_opus(w: &mut BoxWriter, opus: &crate::fmp4::OpusSpecific) {
    let entry = w.open(b"Opus");
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    w.u16(u16::from(opus.output_channels));
    w.u16(16); // sample size
    w.u32(0);
    w.u32(48_000 << 16);
    let dops = w.open(b"dOps");
    w.u8(0); // version
    w.u8(opus.output_channels);
    w.u16(opus.pre_skip);
    w.u32(opus.input_sample_rate);
    w.u16(opus.output_gain as u16);
    w.u8(opus.mapping_family);
    if opus.mapping_family != 0 {
        w.bytes(&opus.mapping_table);
    }
    w.close(dops);
    w.close(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_equal_values() {
        let mut runs = Runs::default();
        for v in [3000, 3000, 3000, 6000, 3000] {
            runs.push(v);
        }
        assert_eq!(runs.entries(), &[(3, 3000), (1, 6000), (1, 3000)]);
        assert_eq!(runs.total(), 18_000);
    }

    #[test]
    fn mdat_header_switches_to_64_bit() {
        assert_eq!(mdat_header(10), vec![0, 0, 0, 18, b'm', b'd', b'a', b't']);
        let big = mdat_header(u64::from(u32::MAX));
        assert_eq!(big.len(), 16);
        assert_eq!(&big[..8], &[0, 0, 0, 1, b'm', b'd', b'a', b't']);
        assert_eq!(
            u64::from_be_bytes(big[8..].try_into().unwrap()),
            u64::from(u32::MAX) + 16
        );
    }

    /// Finds the payload of the first box of type `kind` anywhere in `data` (boxes nest).
    fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
        let at = data.windows(4).position(|w| w == kind)?;
        let size = u32::from_be_bytes(data[at - 4..at].try_into().ok()?) as usize;
        data.get(at + 4..at - 4 + size)
    }

    fn movie(co64: bool, data_start: u64) -> Vec<u8> {
        movie_with(
            co64,
            data_start,
            AudioConfig {
                sample_rate: 48_000,
                channels: 2,
                codec: AudioCodec::Aac {
                    object_type: 2,
                    specific_config: vec![0x11, 0x90],
                },
            },
        )
    }

    fn movie_with(co64: bool, data_start: u64, audio: AudioConfig) -> Vec<u8> {
        let video = VideoConfig {
            sps_info: edgevideo_media::h264::SpsInfo {
                profile: 100,
                compatibility: 0,
                level: 31,
                chroma_format: 1,
                bit_depth_luma_minus8: 0,
                bit_depth_chroma_minus8: 0,
                width: 1280,
                height: 720,
            },
            sps: vec![0x67, 0x64, 0, 0x1f],
            pps: vec![vec![0x68, 0xee]],
        };
        let mut video_table = SampleTable::default();
        let mut audio_table = SampleTable::default();
        for i in 0..4u32 {
            video_table.sizes.push(100 + i);
            video_table.durations.push(3000);
            video_table
                .composition_offsets
                .push(if i % 2 == 0 { 6000 } else { 0 });
            audio_table.sizes.push(10);
            audio_table.durations.push(1024);
        }
        video_table.sync_samples.push(1);
        let tracks = [
            TrackInfo {
                track: Track::Video,
                timescale: VIDEO_TIMESCALE,
                table: &video_table,
                edits: vec![Edit {
                    duration: 133,
                    media_time: 6000,
                }],
            },
            TrackInfo {
                track: Track::Audio,
                timescale: 48_000,
                table: &audio_table,
                edits: Vec::new(),
            },
        ];
        let chunks = [
            Chunk {
                track: Track::Video,
                samples: 2,
                bytes: 201,
            },
            Chunk {
                track: Track::Audio,
                samples: 2,
                bytes: 20,
            },
            Chunk {
                track: Track::Video,
                samples: 2,
                bytes: 205,
            },
            Chunk {
                track: Track::Audio,
                samples: 2,
                bytes: 20,
            },
        ];
        let codecs = Codecs {
            video: &video,
            audio: Some(&audio),
        };
        moov(&tracks, codecs, &chunks, data_start, co64)
    }

    #[test]
    fn chunk_offsets_follow_the_interleaving() {
        let moov = movie(false, 1000);
        let stco = find_box(&moov, b"stco").unwrap();
        // version/flags, count 2, then the video chunks at 1000 and 1000 + 201 + 20.
        assert_eq!(&stco[4..8], &2u32.to_be_bytes());
        assert_eq!(&stco[8..12], &1000u32.to_be_bytes());
        assert_eq!(&stco[12..16], &1221u32.to_be_bytes());
        let stss = find_box(&moov, b"stss").unwrap();
        assert_eq!(&stss[4..12], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let elst = find_box(&moov, b"elst").unwrap();
        assert_eq!(&elst[4..8], &1u32.to_be_bytes());
        assert_eq!(&elst[8..16], &[0, 0, 0, 133, 0, 0, 0x17, 0x70]);
        assert!(find_box(&moov, b"ctts").is_some());
        assert!(find_box(&moov, b"co64").is_none());
        let esds = find_box(&moov, b"esds").unwrap();
        assert!(esds.windows(4).any(|w| w == [0x05, 2, 0x11, 0x90]));
    }

    #[test]
    fn opus_sample_entry_dops_and_roll_group() {
        let opus = crate::fmp4::OpusSpecific {
            output_channels: 2,
            pre_skip: 312,
            input_sample_rate: 44_100,
            output_gain: -256,
            mapping_family: 1,
            mapping_table: vec![1, 1, 0, 1],
        };
        let moov = movie_with(
            false,
            1000,
            AudioConfig {
                sample_rate: 48_000,
                channels: 2,
                codec: AudioCodec::Opus(opus.clone()),
            },
        );
        assert!(find_box(&moov, b"esds").is_none());
        let entry = find_box(&moov, b"Opus").unwrap();
        // channelcount 2, samplesize 16, samplerate 48000 << 16.
        assert_eq!(&entry[16..20], &[0, 2, 0, 16]);
        assert_eq!(&entry[24..28], &(48_000u32 << 16).to_be_bytes());
        let dops = find_box(&moov, b"dOps").unwrap();
        assert_eq!(crate::fmp4::parse_dops(dops).unwrap(), opus);
        // 4 audio samples of 1024: an 80 ms roll is 4 samples, all in the lead-in.
        let sgpd = find_box(&moov, b"sgpd").unwrap();
        assert_eq!(&sgpd[4..8], b"roll");
        assert_eq!(&sgpd[16..18], &(-4i16).to_be_bytes());
        let sbgp = find_box(&moov, b"sbgp").unwrap();
        assert_eq!(&sbgp[8..20], &[0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn large_files_get_64_bit_chunk_offsets() {
        let start = 5u64 << 30;
        let moov = movie(true, start);
        assert!(find_box(&moov, b"stco").is_none());
        let co64 = find_box(&moov, b"co64").unwrap();
        assert_eq!(&co64[4..8], &2u32.to_be_bytes());
        assert_eq!(&co64[8..16], &start.to_be_bytes());
        assert_eq!(&co64[16..24], &(start + 221).to_be_bytes());
    }

    #[test]
    fn rescale_rounds_up() {
        assert_eq!(rescale_up(90_000, 90_000, 1000), 1000);
        assert_eq!(rescale_up(1, 90_000, 1000), 1);
        assert_eq!(rescale_up(1024, 48_000, 1000), 22);
    }
}

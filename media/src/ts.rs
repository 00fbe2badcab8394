//! MPEG transport stream layer: 188-byte packets, PAT/PMT, continuity counters and PES
//! reassembly for one H.264 and one AAC (ADTS) elementary stream.
//!
//! The demuxer is fed packets one at a time and hands every complete PES packet to a callback,
//! borrowing its payload from a reused buffer (no allocation per packet or per PES once the
//! buffers have grown). It never panics on malformed input; instead it counts what it skipped
//! in [`TsStats`]. The recovery rules are:
//!
//! * a packet with the transport-error flag set, or a gap in the continuity counter (without a
//!   signalled discontinuity), marks the PES being assembled as damaged: the whole PES (one
//!   access unit or a few audio frames) is dropped when it completes, since a decoder cannot
//!   use a frame with holes in it;
//! * a repeated continuity counter (a legal duplicate packet) is ignored;
//! * scrambled packets, PSI sections that do not fit one packet and PES packets whose header is
//!   malformed are skipped;
//! * a PES that grows beyond [`MAX_PES_BYTES`] is dropped, which bounds memory on garbage.

/// Size of one transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// Every packet starts with this byte.
pub const SYNC_BYTE: u8 = 0x47;
/// Upper bound on one reassembled PES packet; larger ones are treated as corrupt.
pub const MAX_PES_BYTES: usize = 32 * 1024 * 1024;

const PAT_PID: u16 = 0;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;

/// Which elementary stream a PES packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// H.264 video in Annex B byte-stream form.
    Video,
    /// AAC audio framed as ADTS.
    Audio,
}

/// One complete PES packet, borrowed from the demuxer's buffer.
#[derive(Debug)]
pub struct Pes<'a> {
    /// Stream the packet belongs to.
    pub kind: StreamKind,
    /// Presentation timestamp (33-bit, 90 kHz), if present.
    pub pts: Option<u64>,
    /// Decoding timestamp (33-bit, 90 kHz), if present; absent means equal to the PTS.
    pub dts: Option<u64>,
    /// The elementary stream bytes.
    pub payload: &'a [u8],
}

/// Counters of what the transport layer skipped or repaired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TsStats {
    /// Packets that carried the transport error indicator.
    pub transport_errors: u64,
    /// Continuity counter gaps (lost packets).
    pub continuity_errors: u64,
    /// Duplicate packets ignored.
    pub duplicate_packets: u64,
    /// PES packets dropped because they were damaged, malformed or oversized.
    pub dropped_pes: u64,
    /// Packets skipped because they were scrambled or otherwise unusable.
    pub skipped_packets: u64,
    /// Signalled discontinuities (adaptation field discontinuity indicator).
    pub signalled_discontinuities: u64,
}

/// Reassembles the PES packets of one PID.
#[derive(Debug)]
struct PesAssembler {
    buf: Vec<u8>,
    /// Total PES size when the header announces one (`PES_packet_length` != 0).
    announced_len: Option<usize>,
    last_cc: Option<u8>,
    active: bool,
    damaged: bool,
}

impl PesAssembler {
    fn new() -> Self {
        Self {
            buf: Vec::new(),
            announced_len: None,
            last_cc: None,
            active: false,
            damaged: false,
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.announced_len = None;
        self.last_cc = None;
        self.active = false;
        self.damaged = false;
    }
}

/// Parsed fields of one transport stream packet header.
#[derive(Debug, Clone, Copy)]
struct PacketHeader {
    transport_error: bool,
    unit_start: bool,
    pid: u16,
    scrambled: bool,
    has_payload: bool,
    continuity: u8,
    discontinuity: bool,
    payload_start: usize,
}

fn parse_packet_header(packet: &[u8; PACKET_SIZE]) -> Option<PacketHeader> {
    let afc = (packet[3] >> 4) & 0x3;
    let mut payload_start = 4;
    let mut discontinuity = false;
    if afc & 0x2 != 0 {
        let af_len = usize::from(packet[4]);
        if af_len > 0 {
            discontinuity = packet[5] & 0x80 != 0;
        }
        payload_start = 5 + af_len;
        if payload_start > PACKET_SIZE {
            return None;
        }
    }
    Some(PacketHeader {
        transport_error: packet[1] & 0x80 != 0,
        unit_start: packet[1] & 0x40 != 0,
        pid: (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]),
        scrambled: packet[3] & 0xc0 != 0,
        has_payload: afc & 0x1 != 0,
        continuity: packet[3] & 0x0f,
        discontinuity,
        payload_start,
    })
}

/// Decodes a 33-bit timestamp from the 5-byte PES encoding.
pub fn decode_timestamp(bytes: &[u8]) -> Option<u64> {
    let b = bytes.get(..5)?;
    if b[0] & 0x01 == 0 || b[2] & 0x01 == 0 || b[4] & 0x01 == 0 {
        return None;
    }
    Some(
        (u64::from(b[0] >> 1) & 0x7) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1),
    )
}

/// Streaming transport stream demuxer for one program with H.264 video and ADTS audio.
#[derive(Debug)]
pub struct TsDemuxer {
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    audio_pid: Option<u16>,
    video: PesAssembler,
    audio: PesAssembler,
    stats: TsStats,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    /// Creates a demuxer that has not seen a PAT yet.
    pub fn new() -> Self {
        Self {
            pmt_pid: None,
            video_pid: None,
            audio_pid: None,
            video: PesAssembler::new(),
            audio: PesAssembler::new(),
            stats: TsStats::default(),
        }
    }

    /// What was skipped or repaired so far.
    pub fn stats(&self) -> TsStats {
        self.stats
    }

    /// Whether a PMT announced an H.264 stream.
    pub fn has_video_stream(&self) -> bool {
        self.video_pid.is_some()
    }

    /// Whether a PMT announced an AAC (ADTS) stream.
    pub fn has_audio_stream(&self) -> bool {
        self.audio_pid.is_some()
    }

    /// Forgets partial PES packets and continuity state, keeping the known PIDs. Called between
    /// input files, which are independent transport streams of the same program.
    pub fn reset_streams(&mut self) {
        self.video.reset();
        self.audio.reset();
    }

    /// Feeds one packet (which must start with [`SYNC_BYTE`]); complete PES packets go to
    /// `on_pes`. Errors come only from the callback.
    pub fn push_packet<E>(
        &mut self,
        packet: &[u8; PACKET_SIZE],
        on_pes: &mut impl FnMut(Pes<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(header) = parse_packet_header(packet) else {
            self.stats.skipped_packets += 1;
            return Ok(());
        };
        if header.discontinuity {
            self.stats.signalled_discontinuities += 1;
        }
        let payload = &packet[header.payload_start..];
        if header.pid == PAT_PID {
            if header.unit_start && !header.transport_error {
                self.parse_pat(payload);
            }
            return Ok(());
        }
        if Some(header.pid) == self.pmt_pid {
            if header.unit_start && !header.transport_error {
                self.parse_pmt(payload);
            }
            return Ok(());
        }
        let kind = if Some(header.pid) == self.video_pid {
            StreamKind::Video
        } else if Some(header.pid) == self.audio_pid {
            StreamKind::Audio
        } else {
            return Ok(());
        };
        if header.scrambled {
            self.stats.skipped_packets += 1;
            return Ok(());
        }
        let stats = &mut self.stats;
        let assembler = match kind {
            StreamKind::Video => &mut self.video,
            StreamKind::Audio => &mut self.audio,
        };
        if header.transport_error {
            stats.transport_errors += 1;
            assembler.damaged = true;
            return Ok(());
        }
        if !header.has_payload {
            return Ok(());
        }
        if let Some(last) = assembler.last_cc {
            if header.continuity == last && !header.discontinuity {
                stats.duplicate_packets += 1;
                return Ok(());
            }
            if header.continuity != (last + 1) & 0x0f && !header.discontinuity {
                stats.continuity_errors += 1;
                assembler.damaged = true;
            }
        }
        assembler.last_cc = Some(header.continuity);
        if header.unit_start {
            Self::finish_pes(kind, assembler, stats, on_pes)?;
            assembler.active = true;
            assembler.damaged = false;
        } else if !assembler.active {
            // Continuation of a PES whose start we never saw (e.g. the file starts mid-PES).
            return Ok(());
        }
        if assembler.buf.len() + payload.len() > MAX_PES_BYTES {
            stats.dropped_pes += 1;
            assembler.buf.clear();
            assembler.active = false;
            return Ok(());
        }
        assembler.buf.extend_from_slice(payload);
        if assembler.announced_len.is_none() && assembler.buf.len() >= 6 {
            let len = usize::from(u16::from_be_bytes([assembler.buf[4], assembler.buf[5]]));
            assembler.announced_len = Some(if len == 0 { usize::MAX } else { 6 + len });
        }
        if let Some(total) = assembler.announced_len {
            if total != usize::MAX && assembler.buf.len() >= total {
                Self::finish_pes(kind, assembler, stats, on_pes)?;
            }
        }
        Ok(())
    }

    /// Ends the current input: complete PES packets still open are emitted, unless
    /// `truncated` says the input was cut short, in which case they are dropped (their end
    /// cannot be trusted).
    pub fn finish<E>(
        &mut self,
        truncated: bool,
        on_pes: &mut impl FnMut(Pes<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for kind in [StreamKind::Video, StreamKind::Audio] {
            let assembler = match kind {
                StreamKind::Video => &mut self.video,
                StreamKind::Audio => &mut self.audio,
            };
            if truncated && assembler.active {
                assembler.damaged = true;
            }
            Self::finish_pes(kind, assembler, &mut self.stats, on_pes)?;
            assembler.reset();
        }
        Ok(())
    }

    fn finish_pes<E>(
        kind: StreamKind,
        assembler: &mut PesAssembler,
        stats: &mut TsStats,
        on_pes: &mut impl FnMut(Pes<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !assembler.active {
            return Ok(());
        }
        let announced = assembler.announced_len.take();
        assembler.active = false;
        let result = if assembler.damaged {
            stats.dropped_pes += 1;
            Ok(())
        } else {
            match parse_pes(kind, &assembler.buf, announced) {
                Some(pes) => on_pes(pes),
                None => {
                    stats.dropped_pes += 1;
                    Ok(())
                }
            }
        };
        assembler.buf.clear();
        assembler.damaged = false;
        result
    }

    fn parse_pat(&mut self, payload: &[u8]) {
        let Some(section) = psi_section(payload, 0x00) else {
            return;
        };
        // Program loop: 4 bytes per program, after the 8-byte header, before the CRC.
        for entry in section[8..].chunks_exact(4) {
            let program = u16::from_be_bytes([entry[0], entry[1]]);
            if program != 0 {
                let pid = (u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]);
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                }
                return;
            }
        }
    }

    fn parse_pmt(&mut self, payload: &[u8]) {
        let Some(section) = psi_section(payload, 0x02) else {
            return;
        };
        if section.len() < 12 {
            return;
        }
        let info_len = usize::from(u16::from_be_bytes([section[10], section[11]]) & 0x0fff);
        let mut pos = 12 + info_len;
        let mut video = None;
        let mut audio = None;
        while pos + 5 <= section.len() {
            let stream_type = section[pos];
            let pid = (u16::from(section[pos + 1] & 0x1f) << 8) | u16::from(section[pos + 2]);
            let es_info_len =
                usize::from(u16::from_be_bytes([section[pos + 3], section[pos + 4]]) & 0x0fff);
            match stream_type {
                STREAM_TYPE_H264 if video.is_none() => video = Some(pid),
                STREAM_TYPE_AAC_ADTS if audio.is_none() => audio = Some(pid),
                _ => {}
            }
            pos += 5 + es_info_len;
        }
        if video != self.video_pid {
            self.video.reset();
            self.video_pid = video;
        }
        if audio != self.audio_pid {
            self.audio.reset();
            self.audio_pid = audio;
        }
    }
}

/// Returns the PSI section (from `table_id` up to, not including, the CRC) when it fits in
/// this packet's payload and has the expected table id.
fn psi_section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let section = payload.get(1 + pointer..)?;
    if *section.first()? != table_id || section.len() < 3 {
        return None;
    }
    let section_len = usize::from(u16::from_be_bytes([section[1], section[2]]) & 0x0fff);
    // 3 header bytes + section_length, of which the last 4 are the CRC.
    let end = (3 + section_len).checked_sub(4)?;
    if end < 8 {
        return None;
    }
    section.get(..end)
}

/// Parses a reassembled PES packet. Returns `None` when the header is malformed.
fn parse_pes(kind: StreamKind, buf: &[u8], announced: Option<usize>) -> Option<Pes<'_>> {
    if buf.len() < 9 || buf[0] != 0 || buf[1] != 0 || buf[2] != 1 {
        return None;
    }
    let end = match announced {
        Some(total) if total != usize::MAX => {
            if buf.len() < total {
                // Announced length not reached: the PES was cut short.
                return None;
            }
            total
        }
        _ => buf.len(),
    };
    let flags = buf[7];
    let header_len = usize::from(buf[8]);
    let payload_start = 9 + header_len;
    if payload_start > end {
        return None;
    }
    let (pts, dts) = match flags >> 6 {
        0b10 => (Some(decode_timestamp(buf.get(9..14)?)?), None),
        0b11 => (
            Some(decode_timestamp(buf.get(9..14)?)?),
            Some(decode_timestamp(buf.get(14..19)?)?),
        ),
        _ => (None, None),
    };
    Some(Pes {
        kind,
        pts,
        dts,
        payload: &buf[payload_start..end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_timestamp(prefix: u8, ts: u64) -> [u8; 5] {
        [
            (prefix << 4) | (((ts >> 30) as u8 & 0x7) << 1) | 1,
            (ts >> 22) as u8,
            (((ts >> 15) as u8) << 1) | 1,
            (ts >> 7) as u8,
            ((ts as u8) << 1) | 1,
        ]
    }

    fn packet(pid: u16, unit_start: bool, cc: u8, payload: &[u8]) -> [u8; PACKET_SIZE] {
        let mut p = [0xffu8; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = ((pid >> 8) as u8 & 0x1f) | if unit_start { 0x40 } else { 0 };
        p[2] = pid as u8;
        let stuffing = PACKET_SIZE - 4 - payload.len();
        if stuffing == 0 {
            p[3] = 0x10 | cc;
            p[4..].copy_from_slice(payload);
        } else {
            p[3] = 0x30 | cc;
            p[4] = (stuffing - 1) as u8;
            if stuffing > 1 {
                p[5] = 0;
            }
            p[4 + stuffing..].copy_from_slice(payload);
        }
        p
    }

    fn pat() -> [u8; PACKET_SIZE] {
        // pointer, table 0, len 13, tsid 1, version, section 0/0, program 1 -> PMT 0x1000, CRC.
        let section = [
            0u8, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00, 0, 0, 0, 0,
        ];
        packet(0, true, 0, &section)
    }

    fn pmt() -> [u8; PACKET_SIZE] {
        let section = [
            0u8, 0x02, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0,
            0x00, // header, PCR 0x100
            0x1b, 0xe1, 0x00, 0xf0, 0x00, // H.264 on 0x100
            0x0f, 0xe1, 0x01, 0xf0, 0x00, // AAC on 0x101
            0, 0, 0, 0,
        ];
        packet(0x1000, true, 0, &section)
    }

    fn audio_pes(pts: u64, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 1, 0xc0];
        let len = 3 + 5 + body.len();
        v.extend_from_slice(&(len as u16).to_be_bytes());
        v.extend_from_slice(&[0x80, 0x80, 5]);
        v.extend_from_slice(&encode_timestamp(0x2, pts));
        v.extend_from_slice(body);
        v
    }

    fn collect(demuxer: &mut TsDemuxer, packets: &[[u8; PACKET_SIZE]]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for p in packets {
            demuxer
                .push_packet(p, &mut |pes: Pes<'_>| -> Result<(), ()> {
                    out.push((pes.pts.unwrap_or(0), pes.payload.to_vec()));
                    Ok(())
                })
                .unwrap();
        }
        demuxer
            .finish(false, &mut |pes: Pes<'_>| -> Result<(), ()> {
                out.push((pes.pts.unwrap_or(0), pes.payload.to_vec()));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn timestamps_roundtrip_all_33_bits() {
        for ts in [0u64, 1, 90_000, (1 << 32) + 5, (1 << 33) - 1] {
            assert_eq!(decode_timestamp(&encode_timestamp(2, ts)), Some(ts));
        }
        // Missing marker bits mean a corrupt header.
        assert_eq!(decode_timestamp(&[0, 0, 0, 0, 0]), None);
        assert_eq!(decode_timestamp(&[1, 0]), None);
    }

    #[test]
    fn reassembles_a_pes_split_over_packets() {
        let body: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let pes = audio_pes(1234, &body);
        let mut d = TsDemuxer::new();
        let out = collect(
            &mut d,
            &[
                pat(),
                pmt(),
                packet(0x101, true, 0, &pes[..184]),
                packet(0x101, false, 1, &pes[184..]),
            ],
        );
        assert_eq!(out, vec![(1234, body)]);
        assert_eq!(d.stats(), TsStats::default());
        assert!(d.has_video_stream() && d.has_audio_stream());
    }

    #[test]
    fn continuity_gap_drops_the_damaged_pes() {
        let body = vec![7u8; 300];
        let pes = audio_pes(10, &body);
        let good = audio_pes(20, &[1, 2, 3]);
        let mut d = TsDemuxer::new();
        let out = collect(
            &mut d,
            &[
                pat(),
                pmt(),
                packet(0x101, true, 0, &pes[..184]),
                // cc 2 instead of 1: a packet was lost.
                packet(0x101, false, 2, &pes[184..]),
                packet(0x101, true, 3, &good),
            ],
        );
        assert_eq!(out, vec![(20, vec![1, 2, 3])]);
        assert_eq!(d.stats().continuity_errors, 1);
        assert_eq!(d.stats().dropped_pes, 1);
    }

    #[test]
    fn duplicate_packets_are_ignored() {
        let pes = audio_pes(10, &[9; 10]);
        let mut d = TsDemuxer::new();
        let p = packet(0x101, true, 5, &pes);
        let out = collect(&mut d, &[pat(), pmt(), p, p]);
        assert_eq!(out, vec![(10, vec![9; 10])]);
        assert_eq!(d.stats().duplicate_packets, 1);
    }

    #[test]
    fn corrupt_packets_never_panic() {
        let mut d = TsDemuxer::new();
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut p = [0u8; PACKET_SIZE];
            for b in p.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *b = seed as u8;
            }
            p[0] = SYNC_BYTE;
            // Steer some packets to the interesting PIDs.
            if seed % 3 == 0 {
                p[1] = (p[1] & 0xe0) | 0x01;
                p[2] = 0x01;
            }
            let _ = d.push_packet(&p, &mut |_pes: Pes<'_>| -> Result<(), ()> { Ok(()) });
        }
        let _ = d.finish(true, &mut |_pes: Pes<'_>| -> Result<(), ()> { Ok(()) });
    }

    #[test]
    fn truncated_input_drops_open_pes() {
        let pes = audio_pes(10, &[1u8; 300]);
        let mut d = TsDemuxer::new();
        for p in [pat(), pmt(), packet(0x101, true, 0, &pes[..184])] {
            d.push_packet(&p, &mut |_pes: Pes<'_>| -> Result<(), ()> {
                panic!("no PES yet")
            })
            .unwrap();
        }
        let mut seen = 0;
        d.finish(true, &mut |_pes: Pes<'_>| -> Result<(), ()> {
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 0);
        assert_eq!(d.stats().dropped_pes, 1);
    }
}

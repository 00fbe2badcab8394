//! H.264 Annex B helpers: splitting an access unit into NAL units, and reading the picture
//! size and the profile fields that `avcC` needs from a sequence parameter set.

use memchr::memmem::Finder;

/// NAL unit type of an IDR slice (a keyframe).
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter (dropped in MP4).
pub const NAL_AUD: u8 = 9;
/// NAL unit type of filler data (dropped in MP4).
pub const NAL_FILLER: u8 = 12;

/// Errors reading a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpsError {
    /// The SPS ended before all needed fields were read.
    #[error("sequence parameter set is truncated")]
    Truncated,
    /// A field holds a value the standard does not allow.
    #[error("sequence parameter set has an invalid {0}")]
    Invalid(&'static str),
}

/// Finds the NAL units of an Annex B buffer.
#[derive(Debug)]
pub struct NalSplitter {
    start_code: Finder<'static>,
}

impl Default for NalSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl NalSplitter {
    /// Creates a splitter (the start-code searcher is built once and reused).
    pub fn new() -> Self {
        Self {
            start_code: Finder::new(&[0u8, 0, 1]).into_owned(),
        }
    }

    /// Appends to `out` the byte ranges of the NAL units in `data` (without start codes and
    /// without trailing zero bytes). Bytes before the first start code are ignored.
    pub fn split(&self, data: &[u8], out: &mut Vec<(usize, usize)>) {
        out.clear();
        let mut iter = self.start_code.find_iter(data);
        let Some(first) = iter.next() else {
            return;
        };
        let mut start = first + 3;
        for next in iter {
            push_trimmed(data, start, next, out);
            start = next + 3;
        }
        push_trimmed(data, start, data.len(), out);
    }
}

fn push_trimmed(data: &[u8], start: usize, mut end: usize, out: &mut Vec<(usize, usize)>) {
    while end > start && data[end - 1] == 0 {
        end -= 1;
    }
    if end > start {
        out.push((start, end));
    }
}

/// Type of a NAL unit from its first byte.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// What `avcC` and the track header need from an SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc`.
    pub profile: u8,
    /// The constraint-flags byte.
    pub compatibility: u8,
    /// `level_idc`.
    pub level: u8,
    /// `chroma_format_idc` (1 = 4:2:0 unless signalled).
    pub chroma_format: u8,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u8,
    /// Displayed width in pixels (after cropping).
    pub width: u32,
    /// Displayed height in pixels (after cropping).
    pub height: u32,
}

/// Reads bits MSB-first from an RBSP (emulation prevention already removed).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = self.data.get(self.pos / 8).ok_or(SpsError::Truncated)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    /// Unsigned Exp-Golomb code.
    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::Invalid("exp-golomb code"));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// Signed Exp-Golomb code.
    fn se(&mut self) -> Result<i32, SpsError> {
        let k = self.ue()?;
        let magnitude = k.div_ceil(2) as i32;
        Ok(if k % 2 == 1 { magnitude } else { -magnitude })
    }
}

/// Removes emulation prevention bytes (`00 00 03` -> `00 00`).
pub fn to_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: u32) -> Result<(), SpsError> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Parses a sequence parameter set NAL unit (including its one-byte NAL header).
///
/// # Errors
/// [`SpsError`] when the SPS is truncated or holds impossible values.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal_type(nal) != NAL_SPS {
        return Err(SpsError::Invalid("NAL unit type"));
    }
    let rbsp = to_rbsp(&nal[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile = r.bits(8)? as u8;
    let compatibility = r.bits(8)? as u8;
    let level = r.bits(8)? as u8;
    let _sps_id = r.ue()?;
    let mut chroma_format = 1u32;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma_minus8 = 0;
    let mut bit_depth_chroma_minus8 = 0;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format > 3 {
            return Err(SpsError::Invalid("chroma_format_idc"));
        }
        if chroma_format == 3 {
            separate_colour_plane = r.bit()? == 1;
        }
        bit_depth_luma_minus8 = r.ue()?;
        bit_depth_chroma_minus8 = r.ue()?;
        if bit_depth_luma_minus8 > 6 || bit_depth_chroma_minus8 > 6 {
            return Err(SpsError::Invalid("bit depth"));
        }
        let _qpprime_y_zero_transform_bypass = r.bit()?;
        if r.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    let _log2_max_frame_num = r.ue()?;
    match r.ue()? {
        0 => {
            let _log2_max_poc_lsb = r.ue()?;
        }
        1 => {
            let _delta_pic_order_always_zero = r.bit()?;
            let _offset_for_non_ref_pic = r.se()?;
            let _offset_for_top_to_bottom_field = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(SpsError::Invalid("num_ref_frames_in_pic_order_cnt_cycle"));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return Err(SpsError::Invalid("pic_order_cnt_type")),
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_allowed = r.bit()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        let _mb_adaptive_frame_field = r.bit()?;
    }
    let _direct_8x8_inference = r.bit()?;
    let (mut crop_left, mut crop_right, mut crop_top, mut crop_bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? == 1 {
        crop_left = u64::from(r.ue()?);
        crop_right = u64::from(r.ue()?);
        crop_top = u64::from(r.ue()?);
        crop_bottom = u64::from(r.ue()?);
    }
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format
    };
    let (crop_unit_x, crop_unit_y) = if chroma_array_type == 0 {
        (1, 2 - frame_mbs_only)
    } else {
        let sub_width = if chroma_array_type == 3 { 1 } else { 2 };
        let sub_height = if chroma_array_type == 1 { 2 } else { 1 };
        (sub_width, sub_height * (2 - frame_mbs_only))
    };
    let full_width = width_mbs * 16;
    let full_height = (2 - frame_mbs_only) * height_map_units * 16;
    let width = full_width
        .checked_sub(crop_unit_x * (crop_left + crop_right))
        .ok_or(SpsError::Invalid("cropping"))?;
    let height = full_height
        .checked_sub(crop_unit_y * (crop_top + crop_bottom))
        .ok_or(SpsError::Invalid("cropping"))?;
    if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
        return Err(SpsError::Invalid("picture size"));
    }
    Ok(SpsInfo {
        profile,
        compatibility,
        level,
        chroma_format: chroma_format as u8,
        bit_depth_luma_minus8: bit_depth_luma_minus8 as u8,
        bit_depth_chroma_minus8: bit_depth_chroma_minus8 as u8,
        width: width as u32,
        height: height as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS written by libx264 (High profile) for 1280x720: 45 macroblock rows, no cropping.
    const SPS_720P: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    /// SPS written by libx264 for 1920x1080: 68 macroblock rows cropped by 8 lines.
    const SPS_1080P: [u8; 27] = [
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];
    /// SPS written by libx264 for 640x360: 23 macroblock rows cropped by 8 lines.
    const SPS_360P: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];

    #[test]
    fn sps_dimensions() {
        let info = parse_sps(&SPS_720P).unwrap();
        assert_eq!((info.width, info.height), (1280, 720));
        assert_eq!((info.profile, info.level, info.chroma_format), (100, 31, 1));
        let info = parse_sps(&SPS_1080P).unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
        let info = parse_sps(&SPS_360P).unwrap();
        assert_eq!((info.width, info.height), (640, 360));
    }

    #[test]
    fn truncated_sps_is_an_error() {
        for len in 1..8 {
            assert!(parse_sps(&SPS_720P[..len]).is_err(), "len {len}");
        }
        assert_eq!(
            parse_sps(&[0x68, 1, 2]),
            Err(SpsError::Invalid("NAL unit type"))
        );
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65, 0, 0, 3, 1, 0, 0,
        ];
        let mut out = Vec::new();
        NalSplitter::new().split(&data, &mut out);
        let nals: Vec<&[u8]> = out.iter().map(|&(s, e)| &data[s..e]).collect();
        assert_eq!(
            nals,
            vec![
                &[0x09, 0xf0][..],
                &[0x67, 1, 2][..],
                &[0x65, 0, 0, 3, 1][..]
            ]
        );
        NalSplitter::new().split(&[1, 2, 3], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn removes_emulation_prevention() {
        assert_eq!(to_rbsp(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }
}

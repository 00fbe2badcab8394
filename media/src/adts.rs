//! AAC in ADTS framing: header parsing, and the two-byte AudioSpecificConfig that MP4's
//! `esds` carries instead of per-frame headers.

/// Sampling rates by ADTS `sampling_frequency_index`.
const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// PCM samples per AAC frame (AAC-LC and HE-AAC core).
pub const SAMPLES_PER_FRAME: u32 = 1024;

/// Why bytes are not a usable ADTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdtsError {
    /// Fewer than 7 bytes are available.
    #[error("ADTS header is truncated")]
    Truncated,
    /// The 12-bit sync word `0xFFF` is missing.
    #[error("no ADTS sync word")]
    NoSync,
    /// A field holds a reserved or impossible value.
    #[error("ADTS header has an invalid {0}")]
    Invalid(&'static str),
}

/// The fields of an ADTS header that matter for remuxing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type (profile + 1; 2 = AAC-LC).
    pub object_type: u8,
    /// `sampling_frequency_index`.
    pub sampling_index: u8,
    /// `channel_configuration`.
    pub channels: u8,
    /// Header size: 7 bytes, or 9 with a CRC.
    pub header_len: usize,
    /// Whole frame size including the header.
    pub frame_len: usize,
    /// Raw data blocks in the frame minus one (0 for ordinary streams).
    pub extra_blocks: u8,
}

impl AdtsHeader {
    /// Parses the header at the start of `data`.
    ///
    /// # Errors
    /// [`AdtsError`] when there is no valid header at the start of `data`.
    pub fn parse(data: &[u8]) -> Result<Self, AdtsError> {
        let h = data.get(..7).ok_or(AdtsError::Truncated)?;
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return Err(AdtsError::NoSync);
        }
        if h[1] & 0x06 != 0 {
            return Err(AdtsError::Invalid("layer"));
        }
        let protection_absent = h[1] & 0x01 == 1;
        let object_type = (h[2] >> 6) + 1;
        let sampling_index = (h[2] >> 2) & 0x0f;
        if usize::from(sampling_index) >= SAMPLE_RATES.len() {
            return Err(AdtsError::Invalid("sampling frequency index"));
        }
        let channels = ((h[2] & 0x01) << 2) | (h[3] >> 6);
        let frame_len =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let header_len = if protection_absent { 7 } else { 9 };
        if frame_len <= header_len {
            return Err(AdtsError::Invalid("frame length"));
        }
        Ok(Self {
            object_type,
            sampling_index,
            channels,
            header_len,
            frame_len,
            extra_blocks: h[6] & 0x03,
        })
    }

    /// Sampling rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATES[usize::from(self.sampling_index)]
    }

    /// The MPEG-4 AudioSpecificConfig for this stream (object type, rate index, channels).
    pub fn audio_specific_config(&self) -> [u8; 2] {
        [
            (self.object_type << 3) | (self.sampling_index >> 1),
            ((self.sampling_index & 1) << 7) | (self.channels << 3),
        ]
    }
}

/// Finds the next plausible ADTS sync word at or after `from`.
pub fn find_sync(data: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    while let Some(rel) = memchr::memchr(0xff, data.get(pos..)?) {
        let at = pos + rel;
        match data.get(at + 1) {
            Some(b) if b & 0xf6 == 0xf0 => return Some(at),
            Some(_) => pos = at + 1,
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ADTS header of a 48 kHz stereo AAC-LC frame of 371 bytes, no CRC.
    fn header(frame_len: usize) -> [u8; 7] {
        [
            0xff,
            0xf1,
            (1 << 6) | (3 << 2),
            (2 << 6) | ((frame_len >> 11) as u8 & 0x3),
            (frame_len >> 3) as u8,
            ((frame_len as u8 & 0x7) << 5) | 0x1f,
            0xfc,
        ]
    }

    #[test]
    fn parses_header_and_audio_specific_config() {
        let h = AdtsHeader::parse(&header(371)).unwrap();
        assert_eq!(h.object_type, 2);
        assert_eq!(h.sample_rate(), 48_000);
        assert_eq!(h.channels, 2);
        assert_eq!((h.header_len, h.frame_len, h.extra_blocks), (7, 371, 0));
        // AAC-LC (2), index 3, stereo: 00010 0011 0010 000 = 0x11 0x90.
        assert_eq!(h.audio_specific_config(), [0x11, 0x90]);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            AdtsHeader::parse(&header(371)[..6]),
            Err(AdtsError::Truncated)
        );
        assert_eq!(AdtsHeader::parse(&[0; 7]), Err(AdtsError::NoSync));
        assert_eq!(
            AdtsHeader::parse(&header(5)),
            Err(AdtsError::Invalid("frame length"))
        );
        let mut bad_rate = header(371);
        bad_rate[2] = (1 << 6) | (14 << 2);
        assert_eq!(
            AdtsHeader::parse(&bad_rate),
            Err(AdtsError::Invalid("sampling frequency index"))
        );
    }

    #[test]
    fn finds_sync_after_garbage() {
        let mut data = vec![0x12, 0xff, 0x00, 0xff];
        data.extend_from_slice(&header(9));
        assert_eq!(find_sync(&data, 0), Some(4));
        assert_eq!(find_sync(&data, 5), None);
        assert_eq!(find_sync(&[0xff], 0), None);
    }
}

//! FLV tag bodies as RTMP carries them: H.264 video (`AVCDecoderConfigurationRecord` and
//! length-prefixed NAL units) and AAC audio (`AudioSpecificConfig` and raw frames). Every
//! parser answers an error for bytes it cannot read; none panics.

use edgevideo_media::h264;

use crate::error::MediaError;

/// A video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag<'a> {
    /// The decoder configuration (`AVCDecoderConfigurationRecord`).
    Config(&'a [u8]),
    /// One access unit: length-prefixed NAL units.
    Frame {
        /// A keyframe (FLV frame type 1).
        keyframe: bool,
        /// Composition time offset in milliseconds.
        cts_ms: i32,
        /// The NAL units as carried (AVCC layout).
        data: &'a [u8],
    },
    /// End of sequence or another packet type carrying no picture.
    Other,
}

/// An audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag<'a> {
    /// The `AudioSpecificConfig`.
    Config(&'a [u8]),
    /// One raw AAC frame.
    Frame(&'a [u8]),
}

/// Reads an FLV video tag body; only H.264 (codec id 7) is accepted.
pub fn parse_video(body: &[u8]) -> Result<VideoTag<'_>, MediaError> {
    let (&first, rest) = body
        .split_first()
        .ok_or(MediaError::Truncated("video tag"))?;
    if first & 0x80 != 0 {
        return Err(MediaError::Unsupported(
            "enhanced RTMP video (HEVC/AV1); send H.264".into(),
        ));
    }
    let frame_type = first >> 4;
    let codec = first & 0x0F;
    if codec != 7 {
        return Err(MediaError::Unsupported(format!(
            "video codec id {codec}; only H.264 (7) is taken"
        )));
    }
    if frame_type == 5 {
        // Video info / command frame: no picture.
        return Ok(VideoTag::Other);
    }
    if rest.len() < 4 {
        return Err(MediaError::Truncated("AVC packet header"));
    }
    let packet_type = rest[0];
    let cts = i32::from_be_bytes([0, rest[1], rest[2], rest[3]]);
    // Sign-extend the 24-bit offset.
    let cts_ms = (cts << 8) >> 8;
    let data = &rest[4..];
    match packet_type {
        0 => Ok(VideoTag::Config(data)),
        1 => Ok(VideoTag::Frame {
            keyframe: frame_type == 1,
            cts_ms,
            data,
        }),
        _ => Ok(VideoTag::Other),
    }
}

/// Reads an FLV audio tag body; only AAC (sound format 10) is accepted.
pub fn parse_audio(body: &[u8]) -> Result<AudioTag<'_>, MediaError> {
    let (&first, rest) = body
        .split_first()
        .ok_or(MediaError::Truncated("audio tag"))?;
    let format = first >> 4;
    if format != 10 {
        return Err(MediaError::Unsupported(format!(
            "audio sound format {format}; only AAC (10) is taken"
        )));
    }
    let (&packet_type, data) = rest
        .split_first()
        .ok_or(MediaError::Truncated("AAC packet header"))?;
    Ok(if packet_type == 0 {
        AudioTag::Config(data)
    } else {
        AudioTag::Frame(data)
    })
}

/// What the decoder configuration of an H.264 stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// The record as received (it becomes the `avcC` box).
    pub record: Vec<u8>,
    /// Profile, compatibility and level bytes.
    pub profile: [u8; 3],
    /// Bytes of each NAL unit length prefix (1, 2 or 4).
    pub length_size: u8,
    /// Picture width and height from the first SPS, when it could be read.
    pub size: Option<(u32, u32)>,
}

impl AvcConfig {
    /// Reads an `AVCDecoderConfigurationRecord`.
    pub fn parse(record: &[u8]) -> Result<Self, MediaError> {
        if record.len() < 7 {
            return Err(MediaError::Truncated("AVC decoder configuration"));
        }
        if record[0] != 1 {
            return Err(MediaError::Invalid(format!(
                "AVC configuration version {}",
                record[0]
            )));
        }
        let length_size = (record[4] & 0x03) + 1;
        if length_size == 3 {
            return Err(MediaError::Invalid("NAL length size of 3 bytes".into()));
        }
        let sps_count = usize::from(record[5] & 0x1F);
        if sps_count == 0 {
            return Err(MediaError::Invalid(
                "no SPS in the AVC configuration".into(),
            ));
        }
        let mut at = 6;
        let mut first_sps = None;
        for _ in 0..sps_count {
            let len = usize::from(u16::from_be_bytes([
                *record.get(at).ok_or(MediaError::Truncated("SPS length"))?,
                *record
                    .get(at + 1)
                    .ok_or(MediaError::Truncated("SPS length"))?,
            ]));
            let sps = record
                .get(at + 2..at + 2 + len)
                .ok_or(MediaError::Truncated("SPS"))?;
            first_sps.get_or_insert(sps);
            at += 2 + len;
        }
        let pps_count = *record.get(at).ok_or(MediaError::Truncated("PPS count"))?;
        if pps_count == 0 {
            return Err(MediaError::Invalid(
                "no PPS in the AVC configuration".into(),
            ));
        }
        Ok(Self {
            record: record.to_vec(),
            profile: [record[1], record[2], record[3]],
            length_size,
            // The shared SPS parser (`edgevideo-media`), the transcoder's too.
            size: first_sps
                .and_then(|sps| h264::parse_sps(sps).ok())
                .map(|info| (info.width, info.height)),
        })
    }

    /// The RFC 6381 codec string (`avc1.64001f`).
    pub fn codec(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile[0], self.profile[1], self.profile[2]
        )
    }
}

/// What an AAC `AudioSpecificConfig` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The config as received (it goes into `esds`).
    pub raw: Vec<u8>,
    /// Audio object type (2 = AAC-LC).
    pub object_type: u8,
    /// Sampling frequency index.
    pub freq_index: u8,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// Channel configuration.
    pub channels: u8,
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

impl AacConfig {
    /// Reads an `AudioSpecificConfig` (the first two bytes; explicit rates are refused).
    pub fn parse(raw: &[u8]) -> Result<Self, MediaError> {
        if raw.len() < 2 {
            return Err(MediaError::Truncated("AudioSpecificConfig"));
        }
        let object_type = raw[0] >> 3;
        let freq_index = ((raw[0] & 0x07) << 1) | (raw[1] >> 7);
        let channels = (raw[1] >> 3) & 0x0F;
        let sample_rate = *AAC_RATES
            .get(usize::from(freq_index))
            .ok_or_else(|| MediaError::Invalid(format!("AAC frequency index {freq_index}")))?;
        if object_type == 0 || object_type == 31 {
            return Err(MediaError::Invalid(format!(
                "AAC object type {object_type}"
            )));
        }
        Ok(Self {
            raw: raw.to_vec(),
            object_type,
            freq_index,
            sample_rate,
            channels,
        })
    }

    /// The RFC 6381 codec string (`mp4a.40.2`).
    pub fn codec(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// Codec configurations real encoders send, for the gateway's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    /// The decoder configuration ffmpeg (x264) sends over RTMP for 640x360 High profile.
    pub(crate) const AVC_RECORD_640X360: &[u8] = &[
        0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40,
        0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c,
        0x0f, 0x16, 0x2d, 0x96, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
        0xf8, 0x00,
    ];
    /// The `AudioSpecificConfig` of AAC LC, 48 kHz, stereo.
    pub(crate) const AAC_LC_48K_STEREO: &[u8] = &[0x11, 0x90];
}

#[cfg(test)]
mod tests {
    use super::fixtures::AVC_RECORD_640X360;
    use super::*;

    #[test]
    fn reads_an_x264_configuration_and_its_picture_size() {
        let config = AvcConfig::parse(AVC_RECORD_640X360).unwrap();
        assert_eq!(config.codec(), "avc1.64001e");
        assert_eq!(config.length_size, 4);
        assert_eq!(config.size, Some((640, 360)));
    }

    #[test]
    fn refuses_truncated_or_empty_configurations() {
        for cut in 0..AVC_RECORD_640X360.len() - 1 {
            // Any prefix is either refused or read without a panic.
            let _ = AvcConfig::parse(&AVC_RECORD_640X360[..cut]);
        }
        assert!(AvcConfig::parse(&[]).is_err());
        assert!(
            AvcConfig::parse(&[1, 0x64, 0, 0x1e, 0xff, 0xe0, 0]).is_err(),
            "no SPS"
        );
        assert!(AvcConfig::parse(&[2, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 0]).is_err());
    }

    #[test]
    fn reads_aac_lc_48k_stereo() {
        let config = AacConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (2, 48000, 2)
        );
        assert_eq!(config.codec(), "mp4a.40.2");
        assert!(
            AacConfig::parse(&[0x17, 0x90]).is_err(),
            "frequency index 14"
        );
        assert!(AacConfig::parse(&[0x11]).is_err());
    }

    #[test]
    fn reads_flv_video_and_audio_tags() {
        assert_eq!(
            parse_video(&[0x17, 0x00, 0, 0, 0, 1, 2]).unwrap(),
            VideoTag::Config(&[1, 2])
        );
        assert_eq!(
            parse_video(&[0x27, 0x01, 0xff, 0xff, 0xfe, 9]).unwrap(),
            VideoTag::Frame {
                keyframe: false,
                cts_ms: -2,
                data: &[9]
            }
        );
        assert_eq!(
            parse_video(&[0x17, 0x01, 0, 0, 0x42, 9]).unwrap(),
            VideoTag::Frame {
                keyframe: true,
                cts_ms: 0x42,
                data: &[9]
            }
        );
        assert!(parse_video(&[0x12, 0, 0, 0, 0]).is_err(), "Sorenson H.263");
        assert!(parse_video(&[0x17, 0, 0]).is_err(), "cut short");
        assert!(parse_video(&[]).is_err());
        assert_eq!(
            parse_audio(&[0xaf, 0x00, 0x11, 0x90]).unwrap(),
            AudioTag::Config(&[0x11, 0x90])
        );
        assert_eq!(
            parse_audio(&[0xaf, 0x01, 7]).unwrap(),
            AudioTag::Frame(&[7])
        );
        assert!(parse_audio(&[0x2f, 0x01]).is_err(), "MP3");
        assert!(parse_audio(&[0xaf]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let _ = parse_video(&bytes);
            let _ = parse_audio(&bytes);
            let _ = AvcConfig::parse(&bytes);
            let _ = AacConfig::parse(&bytes);
            let _ = h264::parse_sps(&bytes);
        }
    }
}

//! Poster image: the recording's first keyframe, decoded with OpenH264 and saved as a JPEG.
//!
//! The inputs are read only up to the first decodable keyframe (the same rule as the remux:
//! an IDR access unit with an SPS and PPS), normally within the first segment (for CMAF, the
//! first media segment after the init segment). The access unit is rebuilt as Annex B from
//! its NAL units, with the recording's SPS and PPS put in front when it carries none (CMAF
//! keeps them in the init segment's `avcC`). The JPEG is written under a temporary name and
//! renamed, like the MP4.

use std::path::{Path, PathBuf};

use crate::demux::{AudioSample, DemuxError, Demuxer, SampleSink, SinkError, VideoSample};
use edgevideo_media::h264;

/// JPEG quality (1-100).
pub const JPEG_QUALITY: u8 = 85;

/// Errors making a poster.
#[derive(Debug, thiserror::Error)]
pub enum PosterError {
    /// No input given.
    #[error("no input to take a poster from")]
    NoInput,
    /// No input has a decodable keyframe.
    #[error("no keyframe found in the inputs starting with {0}")]
    NoKeyframe(PathBuf),
    /// Reading the input failed.
    #[error(transparent)]
    Demux(#[from] DemuxError),
    /// The decoder refused the keyframe.
    #[error("cannot decode the first keyframe: {0}")]
    Decode(String),
    /// JPEG encoding or writing failed.
    #[error("cannot write the poster {path}: {message}")]
    Write {
        /// The JPEG file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Captures the first keyframe's NAL units and stops demuxing.
#[derive(Default)]
struct FirstKeyframe {
    nals: Option<Vec<Vec<u8>>>,
}

impl SampleSink for FirstKeyframe {
    fn video(&mut self, sample: &VideoSample<'_>) -> Result<(), SinkError> {
        if sample.keyframe {
            self.nals = Some(
                sample
                    .nals
                    .iter()
                    .map(|&(start, end)| sample.data[start..end].to_vec())
                    .collect(),
            );
            return Err(SinkError::Done);
        }
        Ok(())
    }

    fn audio(&mut self, _sample: &AudioSample<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Returns the Annex B bytes (with SPS and PPS) of the recording's first keyframe, reading
/// the inputs in order only as far as needed.
///
/// # Errors
/// [`PosterError`] when an input cannot be read or no input has a keyframe.
pub fn first_keyframe(inputs: &[PathBuf]) -> Result<Vec<u8>, PosterError> {
    let first = inputs.first().ok_or(PosterError::NoInput)?;
    let mut demuxer = Demuxer::new();
    let mut sink = FirstKeyframe::default();
    for input in inputs {
        match demuxer.run_file(input, &mut sink, &()) {
            Ok(_) | Err(DemuxError::Sink(SinkError::Done)) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(nals) = sink.nals.take() {
            let mut units: Vec<&[u8]> = Vec::new();
            let has_sps = nals.iter().any(|n| h264::nal_type(n) == h264::NAL_SPS);
            if let (false, Some(config)) = (has_sps, demuxer.video_config()) {
                units.push(&config.sps);
                units.extend(config.pps.iter().map(Vec::as_slice));
            }
            units.extend(nals.iter().map(Vec::as_slice));
            let mut annexb = Vec::new();
            for unit in units {
                annexb.extend_from_slice(&[0, 0, 0, 1]);
                annexb.extend_from_slice(unit);
            }
            return Ok(annexb);
        }
    }
    Err(PosterError::NoKeyframe(first.clone()))
}

/// Decodes an Annex B keyframe into RGB pixels; returns `(width, height, rgb)`.
///
/// # Errors
/// [`PosterError::Decode`] when OpenH264 cannot decode it.
pub fn decode_rgb(annexb: &[u8]) -> Result<(usize, usize, Vec<u8>), PosterError> {
    use openh264::formats::YUVSource;
    let decode_error = |e: openh264::Error| PosterError::Decode(e.to_string());
    let mut decoder = openh264::decoder::Decoder::new().map_err(decode_error)?;
    if let Some(image) = decoder.decode(annexb).map_err(decode_error)? {
        let (width, height) = image.dimensions();
        let mut rgb = vec![0u8; width * height * 3];
        image.write_rgb8(&mut rgb);
        return Ok((width, height, rgb));
    }
    let frames = decoder.flush_remaining().map_err(decode_error)?;
    let image = frames
        .first()
        .ok_or_else(|| PosterError::Decode("the decoder returned no picture".into()))?;
    let (width, height) = image.dimensions();
    let mut rgb = vec![0u8; width * height * 3];
    image.write_rgb8(&mut rgb);
    Ok((width, height, rgb))
}

/// Writes a JPEG of the recording's first keyframe to `output`; returns its size in pixels.
///
/// # Errors
/// [`PosterError`] when there is no keyframe, it cannot be decoded or the file not written.
pub fn make_poster(inputs: &[PathBuf], output: &Path) -> Result<(u32, u32), PosterError> {
    let annexb = first_keyframe(inputs)?;
    let (width, height, rgb) = decode_rgb(&annexb)?;
    let write_error = |message: String| PosterError::Write {
        path: output.to_path_buf(),
        message,
    };
    let (w16, h16) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(write_error("picture too large for JPEG".into())),
    };
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, JPEG_QUALITY)
        .encode(&rgb, w16, h16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| write_error(e.to_string()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(output.file_name().unwrap_or_default());
    temp_name.push(format!(".partial-{}", std::process::id()));
    let temp = output.with_file_name(temp_name);
    std::fs::write(&temp, &jpeg)
        .and_then(|()| std::fs::rename(&temp, output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            write_error(e.to_string())
        })?;
    Ok((u32::from(w16), u32::from(h16)))
}

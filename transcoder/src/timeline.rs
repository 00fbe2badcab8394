//! One continuous 90 kHz timeline for all input segments.
//!
//! MPEG-TS timestamps are 33-bit counters that wrap every 26.5 hours, and a recording may
//! contain jumps (a lost segment, an encoder restart). This module turns raw timestamps into a
//! signed 64-bit timeline:
//!
//! * **Wrap**: each timestamp is unwrapped against the last one seen on any track, taking the
//!   33-bit difference as signed, so a wrap from `2^33 - 1` to `0` continues forward.
//! * **Discontinuities**: every track predicts its next timestamp (last + frame duration). When
//!   a timestamp misses the prediction by more than [`DISCONTINUITY_THRESHOLD`], the timeline
//!   shifts all later timestamps (of every track, one shared offset) so that this one lands
//!   where it was predicted: the gap or the backward jump is closed and playback runs straight
//!   through. The previous offset is kept so that samples of the other track that were muxed
//!   before the jump but arrive after it still land correctly.

/// Ticks per second of MPEG-TS timestamps.
pub const TS_CLOCK: i64 = 90_000;
/// A jump larger than this (0.5 s) against a track's prediction is a discontinuity.
pub const DISCONTINUITY_THRESHOLD: i64 = TS_CLOCK / 2;

const WRAP: i64 = 1 << 33;

/// Takes the 33-bit difference `to - from` as a signed value in `[-2^32, 2^32)`.
pub fn wrapped_difference(from: u64, to: u64) -> i64 {
    let diff = (to as i64 - from as i64).rem_euclid(WRAP);
    if diff >= WRAP / 2 {
        diff - WRAP
    } else {
        diff
    }
}

/// Where a track expects its next timestamp.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrackClock {
    expected_next: Option<i64>,
    /// The timeline's discontinuity count when this track last used the current offset.
    epoch: u32,
}

impl TrackClock {
    /// The predicted next timestamp, once the track has had a sample.
    pub fn expected_next(&self) -> Option<i64> {
        self.expected_next
    }

    /// Sets the prediction directly (for samples timed by counting, not by a timestamp).
    pub fn advance_to(&mut self, next: i64) {
        self.expected_next = Some(next);
    }
}

/// The shared timeline of all tracks.
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    reference: Option<(u64, i64)>,
    offset: i64,
    previous_offset: Option<i64>,
    discontinuities: u32,
}

impl Timeline {
    /// A timeline that has not seen a timestamp yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many discontinuities were closed.
    pub fn discontinuities(&self) -> u32 {
        self.discontinuities
    }

    /// The current shift applied to unwrapped timestamps (changes when a gap is closed).
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Moves all later timestamps by `ticks` (used to leave room after a closed gap).
    pub fn shift(&mut self, ticks: i64) {
        self.offset += ticks;
    }

    /// Unwraps a raw 33-bit timestamp against the last one seen.
    pub fn unwrap(&mut self, raw: u64) -> i64 {
        let raw = raw & (WRAP as u64 - 1);
        let unwrapped = match self.reference {
            None => raw as i64,
            Some((last_raw, last)) => last + wrapped_difference(last_raw, raw),
        };
        self.reference = Some((raw, unwrapped));
        unwrapped
    }

    /// Maps a raw timestamp of a track to the continuous timeline, closing discontinuities.
    /// `duration` is the track's current frame duration in 90 kHz ticks; the track then
    /// expects its next timestamp at the result plus `duration`.
    pub fn map(&mut self, clock: &mut TrackClock, raw: u64, duration: i64) -> i64 {
        let unwrapped = self.unwrap(raw);
        let mut mapped = unwrapped + self.offset;
        let first_since_jump = clock.epoch != self.discontinuities;
        if let Some(expected) = clock.expected_next {
            let deviation = mapped - expected;
            if deviation.abs() > DISCONTINUITY_THRESHOLD {
                let fits_previous = self
                    .previous_offset
                    .filter(|prev| (unwrapped + prev - expected).abs() <= DISCONTINUITY_THRESHOLD);
                if let Some(prev) = fits_previous {
                    // A sample muxed before the jump: keep the old offset, stay in the old epoch.
                    let mapped = unwrapped + prev;
                    clock.expected_next = Some(mapped + duration);
                    return mapped;
                }
                self.previous_offset = Some(self.offset);
                self.offset -= deviation;
                self.discontinuities += 1;
                mapped = expected;
            } else if first_since_jump && deviation < -(duration / 2) {
                // Another track closed the gap by more than this track lost: shift less, so
                // this track does not overlap itself (the other one gets a short hole instead).
                self.offset -= deviation;
                mapped = expected;
            }
        }
        clock.epoch = self.discontinuities;
        clock.expected_next = Some(mapped + duration);
        mapped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_difference_is_signed() {
        assert_eq!(wrapped_difference(100, 250), 150);
        assert_eq!(wrapped_difference(250, 100), -150);
        assert_eq!(wrapped_difference((1 << 33) - 10, 5), 15);
        assert_eq!(wrapped_difference(5, (1 << 33) - 10), -15);
    }

    #[test]
    fn unwraps_across_the_33_bit_boundary() {
        let mut timeline = Timeline::new();
        let mut clock = TrackClock::default();
        let start = (1u64 << 33) - 3 * 3000;
        let mapped: Vec<i64> = (0..6u64)
            .map(|i| timeline.map(&mut clock, (start + i * 3000) % (1 << 33), 3000))
            .collect();
        let expected: Vec<i64> = (0..6).map(|i| start as i64 + i * 3000).collect();
        assert_eq!(mapped, expected);
        assert_eq!(timeline.discontinuities(), 0);
    }

    #[test]
    fn closes_a_gap_for_all_tracks() {
        let mut timeline = Timeline::new();
        let mut video = TrackClock::default();
        let mut audio = TrackClock::default();
        assert_eq!(timeline.map(&mut video, 90_000, 3000), 90_000);
        assert_eq!(timeline.map(&mut audio, 90_000, 1920), 90_000);
        // Two seconds are missing on both tracks.
        let gap = 2 * TS_CLOCK as u64;
        assert_eq!(timeline.map(&mut video, 93_000 + gap, 3000), 93_000);
        assert_eq!(timeline.map(&mut audio, 91_920 + gap, 1920), 91_920);
        assert_eq!(timeline.discontinuities(), 1);
    }

    #[test]
    fn a_track_with_a_shorter_gap_does_not_overlap_itself() {
        let mut timeline = Timeline::new();
        let mut video = TrackClock::default();
        let mut audio = TrackClock::default();
        timeline.map(&mut video, 0, 3000);
        timeline.map(&mut audio, 0, 1920);
        // Audio lost 1.2 s and closes the gap first; video lost only 1.0 s.
        assert_eq!(timeline.map(&mut audio, 1920 + 108_000, 1920), 1920);
        let video_after = timeline.map(&mut video, 3000 + 90_000, 3000);
        assert_eq!(video_after, 3000, "video must continue without overlap");
        // Audio now has a short hole instead (0.2 s), which is not a new discontinuity.
        let audio_after = timeline.map(&mut audio, 3840 + 108_000, 1920);
        assert_eq!(audio_after, 3840 + 18_000);
        assert_eq!(timeline.discontinuities(), 1);
    }

    #[test]
    fn late_samples_from_before_a_jump_keep_their_place() {
        let mut timeline = Timeline::new();
        let mut video = TrackClock::default();
        let mut audio = TrackClock::default();
        timeline.map(&mut video, 1_000_000, 3000);
        timeline.map(&mut audio, 1_000_000, 1920);
        // Encoder restart: video jumps back to 0 first.
        assert_eq!(timeline.map(&mut video, 0, 3000), 1_003_000);
        // An audio frame muxed before the restart still follows its predecessor.
        assert_eq!(timeline.map(&mut audio, 1_001_920, 1920), 1_001_920);
        // Audio after the restart lands next to the video.
        assert_eq!(timeline.map(&mut audio, 1920, 1920), 1_004_920);
        assert_eq!(timeline.discontinuities(), 1);
    }
}

//! The transcoder's demuxer (`edgevideo_transcoder::demux`) on arbitrary bytes, split into two
//! input files of one recording (the first byte picks where), so state carried across files
//! (timeline, codec configuration, pending audio) is exercised too. Beyond "never panics",
//! every sample must keep the invariants the muxer relies on.
#![no_main]

use std::io::Write as _;
use std::path::PathBuf;

use edgevideo_transcoder::demux::{AudioSample, Demuxer, SampleSink, SinkError, VideoSample};
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Checks {
    last_video_dts: Option<i64>,
}

impl SampleSink for Checks {
    fn video(&mut self, s: &VideoSample<'_>) -> Result<(), SinkError> {
        assert!(s.pts >= s.dts, "pts {} before dts {}", s.pts, s.dts);
        if let Some(last) = self.last_video_dts {
            assert!(s.dts > last, "video dts {} after {last}", s.dts);
        }
        self.last_video_dts = Some(s.dts);
        let mut size = 0u64;
        for &(start, end) in s.nals {
            assert!(
                start <= end && end <= s.data.len(),
                "NAL range out of bounds"
            );
            size += 4 + (end - start) as u64;
        }
        assert_eq!(
            u64::from(s.size),
            size,
            "sample size disagrees with its NAL units"
        );
        Ok(())
    }

    fn audio(&mut self, s: &AudioSample<'_>) -> Result<(), SinkError> {
        assert!(s.sample_rate > 0);
        Ok(())
    }
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("edgevideo-fuzz-{}-{name}.ts", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = rest.len() * usize::from(split) / 255;
    let files = [scratch("a"), scratch("b")];
    for (path, part) in files.iter().zip([&rest[..at], &rest[at..]]) {
        let mut f = std::fs::File::create(path).expect("scratch file");
        f.write_all(part).expect("write scratch file");
    }
    let mut demuxer = Demuxer::new();
    let mut sink = Checks::default();
    for path in &files {
        // Errors (format changes) are fine; panics and broken invariants are not.
        if demuxer.run_file(path, &mut sink, &()).is_err() {
            break;
        }
    }
    let _ = demuxer.stats();
});

//! The core's parser of the playlists ffmpeg pushes (`edgevideo_core::model::hls::parse_pushed`):
//! arbitrary bytes give a playlist or a `MediaError`, never a panic, and an accepted
//! playlist names only segment files ingest would accept.
#![no_main]

use edgevideo_core::model::hls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(playlist) = hls::parse_pushed(data) {
        for entry in &playlist.entries {
            assert!(
                hls::is_segment_name(&entry.file),
                "accepted {:?}",
                entry.file
            );
        }
    }
});

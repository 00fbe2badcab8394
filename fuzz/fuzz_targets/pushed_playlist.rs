//! The core's parsers of what a broadcaster pushes: playlists
//! (`edgevideo_core::model::hls::parse_pushed`) and CMAF init and media segments
//! (`edgevideo_core::model::isobmff`). Arbitrary bytes give a result or a `MediaError`, never
//! a panic; an accepted media playlist names only segment files ingest would accept, and an
//! accepted multivariant playlist only rendition names.
#![no_main]

use edgevideo_core::model::{hls, isobmff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match hls::parse_pushed(data) {
        Ok(hls::Pushed::Media(playlist)) => {
            for entry in &playlist.entries {
                assert!(
                    hls::is_segment_name(&entry.file),
                    "accepted {:?}",
                    entry.file
                );
            }
        }
        Ok(hls::Pushed::Multivariant(variants)) => {
            assert!(variants.len() <= hls::MAX_RENDITIONS);
            for v in &variants {
                let name = format!("{}.m3u8", v.rendition);
                assert!(hls::rendition_of(&name).is_some(), "accepted {name:?}");
            }
        }
        Err(_) => {}
    }
    if let Ok(info) = isobmff::read_init(data) {
        assert!(!info.codecs.is_empty());
    }
    let _ = isobmff::check_media_segment(data);
});

//! The gateway's SRT input (`edgevideo_gateway::tsin::TsInput`: MPEG-TS bytes to the media a
//! stream takes) on arbitrary bytes, fed in chunks whose sizes the first byte picks. Beyond
//! "never panics": video samples are 4-byte length-prefixed NAL units that exactly fill the
//! sample, none empty. (Decode times may go back when the input's do: the stream's segmenter
//! refuses them and the stream ends.)
#![no_main]

use edgevideo_gateway::stream::Media;
use edgevideo_gateway::tsin::TsInput;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1) * 8;
    let mut input = TsInput::new();
    let mut check = |media: Media<'_>| -> Result<(), ()> {
        if let Media::Video { data, .. } = media {
            assert!(!data.is_empty(), "an empty video sample");
            let mut at = 0usize;
            while at < data.len() {
                let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
                at += 4 + len;
                assert!(at <= data.len(), "NAL unit past the sample's end");
            }
        }
        Ok(())
    };
    for part in rest.chunks(chunk) {
        let _ = input.push(part, &mut check);
    }
    let _ = input.finish(&mut check);
    let _ = input.stats();
});

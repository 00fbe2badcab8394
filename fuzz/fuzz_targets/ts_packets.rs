//! The transport layer (`edgevideo_media::ts::TsDemuxer`) on arbitrary 188-byte
//! packets: PAT/PMT parsing, PES reassembly and timestamps. Complete PES payloads must stay
//! within the documented size bound.
#![no_main]

use edgevideo_media::ts::{TsDemuxer, MAX_PES_BYTES, PACKET_SIZE, SYNC_BYTE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut demuxer = TsDemuxer::new();
    let mut on_pes = |pes: edgevideo_media::ts::Pes<'_>| -> Result<(), ()> {
        assert!(pes.payload.len() <= MAX_PES_BYTES);
        Ok(())
    };
    for chunk in data.chunks_exact(PACKET_SIZE) {
        let mut packet = [0u8; PACKET_SIZE];
        packet.copy_from_slice(chunk);
        // push_packet's contract: packets start with the sync byte.
        packet[0] = SYNC_BYTE;
        let _ = demuxer.push_packet(&packet, &mut on_pes);
    }
    let _ = demuxer.finish(data.len() % PACKET_SIZE != 0, &mut on_pes);
    let _ = demuxer.stats();
});

//! The gateway's RTMP front on arbitrary bytes, driven as `gateway/src/server.rs` drives it:
//! `rml_rtmp`'s server `Handshake`, then a `ServerSession` fed the rest in reads of varying
//! size, connections and publishes accepted, plays refused, and the media tags it raises
//! read by `flv::parse_video` / `parse_audio`. Nothing may panic outside the containment the
//! server puts around `rml_rtmp` (`server::contained`: rml_rtmp 0.8 subtracts past zero on
//! some chunk streams, which ends that connection only); a protocol error ends the
//! connection, as it does in the server.
//!
//! Input: the first byte chooses the read size (`(byte >> 1) * 67 + 1` bytes) and, with bit 0
//! set, puts a valid plain handshake (C0, C1 and C2 of zeros) before the rest, so most runs
//! spend their time in the session rather than in the handshake.
#![no_main]

use edgevideo_gateway::{flv, server};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

/// C1 and C2 are 1536 bytes each.
const PACKET: usize = 1536;

/// Runs a contained call with a silent panic hook (libFuzzer's aborts on any panic, caught
/// or not); the hook is put back after, so a panic anywhere else still aborts.
fn quietly<T>(call: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = call();
    std::panic::set_hook(hook);
    outcome
}

/// Answers the events the way the gateway does; `Err` ends the connection.
fn apply(session: &mut ServerSession, results: Vec<ServerSessionResult>) -> Result<(), ()> {
    for result in results {
        let ServerSessionResult::RaisedEvent(event) = result else {
            continue;
        };
        let answers = match event {
            ServerSessionEvent::ConnectionRequested { request_id, .. }
            | ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                session.accept_request(request_id).map_err(|_| ())?
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => session
                .reject_request(request_id, "NetStream.Play.Failed", "publishes only")
                .map_err(|_| ())?,
            ServerSessionEvent::VideoDataReceived { data, .. } => {
                let _ = flv::parse_video(&data);
                Vec::new()
            }
            ServerSessionEvent::AudioDataReceived { data, .. } => {
                let _ = flv::parse_audio(&data);
                Vec::new()
            }
            _ => Vec::new(),
        };
        // Accepting or refusing answers packets only, never new events (as in server.rs).
        for answer in answers {
            assert!(
                !matches!(answer, ServerSessionResult::RaisedEvent(_)),
                "an answer raised an event"
            );
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let read = usize::from(mode >> 1) * 67 + 1;
    let mut bytes = Vec::with_capacity(rest.len() + 1 + 2 * PACKET);
    if mode & 1 != 0 {
        bytes.push(3);
        bytes.resize(1 + 2 * PACKET, 0);
    }
    bytes.extend_from_slice(rest);

    let mut handshake = Handshake::new(PeerType::Server);
    let mut chunks = bytes.chunks(read);
    let remaining = loop {
        let Some(chunk) = chunks.next() else { return };
        match quietly(|| server::contained(|| handshake.process_bytes(chunk))) {
            Ok(Ok(HandshakeProcessResult::InProgress { .. })) => {}
            Ok(Ok(HandshakeProcessResult::Completed {
                remaining_bytes, ..
            })) => break remaining_bytes,
            Ok(Err(_)) | Err(_) => return,
        }
    };
    let Ok((mut session, results)) = ServerSession::new(ServerSessionConfig::new()) else {
        return;
    };
    if apply(&mut session, results).is_err() {
        return;
    }
    for chunk in std::iter::once(remaining.as_slice()).chain(chunks) {
        if chunk.is_empty() {
            continue;
        }
        let Ok(results) = quietly(|| server::session_input(&mut session, chunk)) else {
            return;
        };
        if apply(&mut session, results).is_err() {
            return;
        }
    }
});

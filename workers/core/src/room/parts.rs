//! The channel room's low-latency parts: each rendition's recent parts (those of its last
//! few listed segments and of the segment being made), the part window a low-latency
//! playlist lists, and what a held request for the next part or playlist waits for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::hls::ListedSegment;
use crate::model::llhls::{self, BlockingReload, PartName};
use crate::model::room::{
    base64_bytes, Block, LiveWindow, PartReport, PartWindow, RoomResponse, StoredPart, WindowPart,
};
use crate::ports::RoomStore;

use super::state::{load, save, LiveState, Rendition, RoomState, STATE_KEY};

/// Listed segments whose parts are kept (RFC 8216bis: parts older than three target
/// durations may go).
const SEGMENTS_WITH_PARTS: u64 = 3;
/// Most parts kept per rendition (a pusher whose playlists never come cannot grow it).
const MAX_PARTS: usize = 64;

/// One rendition's recent parts, ordered by segment and index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct PartTrack {
    /// The largest part target a part declared, in microseconds.
    pub target_us: u64,
    pub parts: Vec<StoredPart>,
}

/// A part is stored: kept in its rendition's parts (a late copy of one already kept, or one
/// of a broadcast that ended, changes nothing). Unless it was made of the chunks the room
/// holds (`from_chunks`), those are dropped: the stored part may differ from them.
pub(super) async fn part_stored<S: RoomStore>(
    store: &S,
    session: &str,
    broadcast_id: &str,
    (part, from_chunks): (StoredPart, bool),
    now_ms: u64,
) -> Result<RoomResponse, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let Some(live) = state.live_of(broadcast_id, session) else {
        return Ok(RoomResponse::Stored { ended: None });
    };
    live.last_activity_ms = now_ms;
    if !from_chunks && live.chunked.contains(&part.file) {
        live.chunked.retain(|f| *f != part.file);
        forget_chunks(store, broadcast_id, std::slice::from_ref(&part.file)).await?;
    }
    let listed = live.renditions.get(&part.rendition).and_then(last_listed);
    let track = live.parts.entry(part.rendition.clone()).or_default();
    track.target_us = track.target_us.max(part.target_us).max(part.duration_us);
    let at = track
        .parts
        .partition_point(|p| (p.sequence, p.index) < (part.sequence, part.index));
    if track
        .parts
        .get(at)
        .is_none_or(|p| (p.sequence, p.index) != (part.sequence, part.index))
    {
        track.parts.insert(at, part);
    }
    prune(track, listed);
    save(store, STATE_KEY, &state).await?;
    Ok(RoomResponse::Stored { ended: None })
}

/// The pusher's number of the last segment a rendition listed (parts name their segment by
/// that number, whatever the pusher's playlist numbering).
fn last_listed(rendition: &Rendition) -> Option<u64> {
    rendition
        .window
        .last()
        .and_then(|s| PartName::segment_number(&s.file))
}

/// Drops the parts of segments listed more than [`SEGMENTS_WITH_PARTS`] ago, and the oldest
/// beyond [`MAX_PARTS`].
fn prune(track: &mut PartTrack, last_listed: Option<u64>) {
    if let Some(listed) = last_listed {
        track
            .parts
            .retain(|p| p.sequence + SEGMENTS_WITH_PARTS > listed);
    }
    let extra = track.parts.len().saturating_sub(MAX_PARTS);
    track.parts.drain(..extra);
}

/// Keeps each rendition's parts bounded once its playlist listed more segments.
pub(super) fn prune_all(live: &mut LiveState) {
    for (name, track) in &mut live.parts {
        let listed = live.renditions.get(name).and_then(last_listed);
        prune(track, listed);
    }
}

/// The part window of rendition `name` for a playlist listing `tail` (its last segments):
/// the parts of those segments and of the one being made, and the next part's name.
pub(super) fn window(live: &LiveState, name: &str, tail: &[ListedSegment]) -> Option<PartWindow> {
    let track = live.parts.get(name).filter(|t| !t.parts.is_empty())?;
    let rendition = live.renditions.get(name)?;
    let by_file: BTreeMap<&str, u64> = tail.iter().map(|s| (s.file.as_str(), s.seq)).collect();
    let mut parts: Vec<WindowPart> = track
        .parts
        .iter()
        .filter_map(|p| {
            let msn = *by_file.get(p.segment.as_str())?;
            Some(window_part(p, msn))
        })
        .collect();
    // The segment being made: the first one with parts after the last listed one.
    let open = track
        .parts
        .iter()
        .map(|p| p.sequence)
        .find(|s| last_listed(rendition).is_none_or(|l| *s > l));
    let mut hint = rendition
        .window
        .last()
        .and_then(|s| PartName::next_segment(&s.file))
        .map(|next| PartName::file_of(&next, 0));
    if let Some(open) = open {
        let made: Vec<&StoredPart> = track.parts.iter().filter(|p| p.sequence == open).collect();
        let contiguous = made
            .iter()
            .enumerate()
            .take_while(|(i, p)| p.index == *i as u64)
            .count();
        parts.extend(
            made.iter()
                .take(contiguous)
                .map(|p| window_part(p, rendition.listed)),
        );
        if let Some(first) = made.first() {
            hint = Some(PartName::file_of(&first.segment, contiguous as u64));
        }
    }
    Some(PartWindow {
        part_target_us: track.target_us,
        parts,
        preload_hint: hint,
        reports: Vec::new(),
    })
}

/// Where rendition `name`'s newest part is, for the other renditions' playlists.
pub(super) fn report(live: &LiveState, name: &str) -> Option<PartReport> {
    let rendition = live.renditions.get(name)?;
    let window = window(live, name, &rendition.window)?;
    let newest = window.parts.last()?;
    Some(PartReport {
        rendition: name.to_owned(),
        last_msn: newest.msn,
        last_part: Some(newest.index),
    })
}

fn window_part(p: &StoredPart, msn: u64) -> WindowPart {
    WindowPart {
        msn,
        index: p.index,
        file: p.file.clone(),
        duration_us: p.duration_us,
        independent: p.independent,
    }
}

/// Whether a held playlist reload must keep waiting for `window` to hold what it asks for.
pub(super) fn must_wait(window: &LiveWindow, block: &Block) -> bool {
    let Some(playlist) = llhls::from_window(window, "") else {
        // No parts (or ended): an ordinary playlist answers at once.
        return false;
    };
    let reload = BlockingReload {
        msn: block.msn,
        part: block.part,
    };
    // A reload too far ahead is answered at once (the edge refuses it).
    reload.satisfied_by(&playlist) == Ok(false)
}

/// Parts whose chunks a room keeps at most (the newest): a viewer of an older one reads
/// the blob.
const MAX_CHUNKED_PARTS: usize = 8;

/// Where the chunks of part `file` of `broadcast_id` are kept: its bytes so far, base64.
fn chunks_key(broadcast_id: &str, file: &str) -> String {
    format!("part_chunks/{broadcast_id}/{file}")
}

/// The bytes of a part the room keeps (empty when none), stored as one base64 string.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct Chunks(#[serde(with = "base64_bytes")] Vec<u8>);

/// Deletes the chunks kept of `files` (a broadcast's end, or parts pushed out by newer ones).
pub(super) async fn forget_chunks<S: RoomStore>(
    store: &S,
    broadcast_id: &str,
    files: &[String],
) -> Result<(), StoreError> {
    if files.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = files.iter().map(|f| chunks_key(broadcast_id, f)).collect();
    store.delete(&keys).await
}

/// A chunk of a part being made: appended to the part's bytes when it starts where they
/// end (a chunk sent again, the same bytes, changes nothing); a chunk past their end, or
/// other bytes where some already are, is a [`RoomResponse::Conflict`]. A chunk of a part
/// already stored, or of a broadcast no longer live, changes nothing.
pub(super) async fn part_chunk<S: RoomStore>(
    store: &S,
    session: &str,
    (broadcast_id, file): (&str, &str),
    offset: u64,
    chunk: &[u8],
    now_ms: u64,
) -> Result<RoomResponse, StoreError> {
    let conflict = |reason: String| Ok(RoomResponse::Conflict { reason });
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let Some(live) = state.live_of(broadcast_id, session) else {
        return Ok(RoomResponse::Stored { ended: None });
    };
    let Some(name) = PartName::parse(file) else {
        return conflict(format!("{file} is not a part's name"));
    };
    if is_stored(live, &name, file) {
        return Ok(RoomResponse::Stored { ended: None });
    }
    let key = chunks_key(broadcast_id, file);
    let Chunks(mut bytes) = load(store, &key).await?;
    let (Ok(start), held) = (usize::try_from(offset), bytes.len()) else {
        return conflict("the chunk's offset is out of range".into());
    };
    if start > held {
        return conflict(format!(
            "{file} has {held} bytes: a chunk at {start} would leave a gap"
        ));
    }
    let overlap = chunk.len().min(held - start);
    if bytes[start..start + overlap] != chunk[..overlap] {
        return conflict(format!(
            "the chunk differs from {file}'s bytes already sent"
        ));
    }
    if overlap < chunk.len() {
        bytes.extend_from_slice(&chunk[overlap..]);
        save(store, &key, &Chunks(bytes)).await?;
    }
    live.last_activity_ms = now_ms;
    if !live.chunked.iter().any(|f| f == file) {
        live.chunked.push(file.to_owned());
        let extra = live.chunked.len().saturating_sub(MAX_CHUNKED_PARTS);
        let old: Vec<String> = live.chunked.drain(..extra).collect();
        forget_chunks(store, broadcast_id, &old).await?;
        save(store, STATE_KEY, &state).await?;
    }
    Ok(RoomResponse::Stored { ended: None })
}

/// Whether part `file` is stored (listed in its rendition's parts).
fn is_stored(live: &LiveState, name: &PartName, file: &str) -> bool {
    live.parts
        .get(&name.rendition)
        .is_some_and(|t| t.parts.iter().any(|p| p.file == file))
}

/// The bytes of part `file` from byte `from` on, for a viewer (see
/// [`crate::model::room::RoomRequest::PartBytes`]): the chunks kept past `from`; else
/// [`RoomResponse::Pending`] while the part is expected (being made, or the next one the
/// playlists hint) and the hold lasts; else [`RoomResponse::Done`] (read the blob).
pub(super) async fn part_bytes<S: RoomStore>(
    store: &S,
    (broadcast_id, file): (&str, &str),
    from: u64,
    until_ms: u64,
) -> Result<RoomResponse, StoreError> {
    let state: RoomState = load(store, STATE_KEY).await?;
    let Some(live) = state.live.filter(|l| l.broadcast_id == broadcast_id) else {
        return Ok(RoomResponse::Done);
    };
    let Some(name) = PartName::parse(file) else {
        return Ok(RoomResponse::Done);
    };
    let complete = is_stored(&live, &name, file);
    let kept = live.chunked.iter().any(|f| f == file);
    if kept {
        let Chunks(bytes) = load(store, &chunks_key(broadcast_id, file)).await?;
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        if start < bytes.len() || complete {
            return Ok(RoomResponse::PartBytes {
                data: bytes[start..].to_vec(),
                complete,
            });
        }
    }
    if complete || until_ms == 0 {
        return Ok(RoomResponse::Done);
    }
    let tail = live
        .renditions
        .get(&name.rendition)
        .map(|r| r.window.clone())
        .unwrap_or_default();
    let next = window(&live, &name.rendition, &tail).and_then(|w| w.preload_hint);
    Ok(if kept || next.as_deref() == Some(file) {
        RoomResponse::Pending
    } else {
        RoomResponse::Done
    })
}

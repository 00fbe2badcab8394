//! The channel room's broadcast as it is pushed: segments begin and land, each rendition's
//! playlist lists them into its live window, a multivariant playlist sets the ladder viewers
//! are offered, and a second pusher or a rotated key is refused. The end of a broadcast is in
//! [`super::ending`], what readers get in [`super::status`].

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::model::hls::{ListedSegment, PushedPlaylist, Variant, MAX_RENDITIONS};
use crate::model::isobmff::InitInfo;
use crate::model::room::{BroadcastLimits, Contradiction, Refusal, RoomResponse, StartedBroadcast};
use crate::ports::{RoomSockets, RoomStore};

use super::ending::settle;
use super::messages::ServerMessage;
use super::state::{
    load, load_segment, save, schedule, segment_key, EarlyLadder, LiveState, Rendition, RoomState,
    SegmentRecord, STATE_KEY,
};
use super::state::{DEFAULT_TARGET_MS, ENDING_GRACE_MS};
use super::WINDOW_KEEP;

/// How long an unstored playlist entry may hold back later stored ones, in ms.
const SKIP_MISSING_AFTER_MS: u64 = 10_000;
/// How long a multivariant playlist pushed before its broadcast's first segment is kept.
const EARLY_LADDER_MS: u64 = 60_000;
/// Why a second pusher is refused.
const ANOTHER_BROADCAST: &str = "another broadcast is live on this channel";

/// Why an ingest URL of an older stream-key version is refused.
pub const KEY_ROTATED: &str = "the stream key was rotated; request a new ingest URL";
/// The room-storage key of the channel's current stream-key version.
const KEY_VERSION_KEY: &str = "stream_key_version";

/// Checks an ingest request's stream-key version against the channel's: `None` when it is
/// current; [`RoomResponse::KeyUnknown`] when the room has not been told the version yet;
/// [`RoomResponse::KeyRefused`] (recorded in the status) when it is another one.
pub(super) async fn check_key<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    key_version: i64,
    now_ms: u64,
) -> Result<Option<RoomResponse>, StoreError> {
    let current: Option<i64> = load(store, KEY_VERSION_KEY).await?;
    match current {
        None => Ok(Some(RoomResponse::KeyUnknown)),
        Some(current) if current == key_version => Ok(None),
        Some(_) => {
            ingest_refused(store, sockets, KEY_ROTATED, now_ms).await?;
            Ok(Some(RoomResponse::KeyRefused {
                reason: KEY_ROTATED.to_owned(),
            }))
        }
    }
}

/// Records the channel's current stream-key version.
pub(super) async fn set_key_version<S: RoomStore>(
    store: &S,
    version: i64,
) -> Result<RoomResponse, StoreError> {
    save(store, KEY_VERSION_KEY, &version).await?;
    Ok(RoomResponse::Done)
}

/// What a segment that begins uploading needs to know.
pub(super) struct Begin {
    pub channel_id: String,
    pub session: String,
    pub file: String,
    pub new_broadcast_id: String,
    pub now_ms: u64,
    pub idle_timeout_ms: u64,
    /// A low-latency part: no segment record, no check for a file already received.
    pub part: bool,
    /// The file's size in bytes.
    pub size: u64,
    /// The broadcast's quotas.
    pub limits: BroadcastLimits,
}

/// A segment (or part) upload begins: starts a broadcast if none is live (pushing `live`),
/// refuses another session, a segment already received, or a file past the broadcast's
/// quota ([`BroadcastLimits`]: nothing is counted or stored then, and what the broadcast
/// stored stays; it ends when its pusher goes quiet).
pub(super) async fn begin_segment<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    begin: Begin,
) -> Result<RoomResponse, StoreError> {
    let now_ms = begin.now_ms;
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let mut started = None;
    let (segments, bytes) = match &state.live {
        Some(live) if live.session == begin.session => (live.segments, live.bytes),
        _ => (0, 0),
    };
    let quota = begin
        .limits
        .refusal(segments, bytes, begin.size, begin.part);
    let live = match state.live.as_mut() {
        Some(live) => {
            if let Some(reason) = second_pusher(store, live, &begin).await? {
                refuse(store, sockets, &mut state, &reason, now_ms).await?;
                return Ok(RoomResponse::Conflict { reason });
            }
            if let Some(reason) = quota {
                return Ok(RoomResponse::Invalid {
                    code: Contradiction::QuotaExceeded,
                    reason,
                });
            }
            live
        }
        None if quota.is_some() => {
            return Ok(RoomResponse::Invalid {
                code: Contradiction::QuotaExceeded,
                reason: quota.unwrap_or_default(),
            })
        }
        None => {
            state.refusal = None;
            started = Some(StartedBroadcast {
                channel_id: begin.channel_id.clone(),
                broadcast_id: begin.new_broadcast_id.clone(),
                started_at_ms: now_ms,
            });
            ServerMessage::Live {
                channel_id: begin.channel_id.clone(),
                broadcast_id: begin.new_broadcast_id.clone(),
                started_at_ms: now_ms,
            }
            .send_to(sockets);
            // The lobby lists the channel now: it hears the audience already waiting.
            super::sockets::lobby_forget(store, sockets, now_ms).await?;
            let mut live = new_live(&begin);
            if let Some(early) = state.early_ladder.take().filter(|e| {
                e.session == begin.session && now_ms.saturating_sub(e.at_ms) <= EARLY_LADDER_MS
            }) {
                live.declared.clone_from(&early.variants);
                live.ladder = Some(early.variants);
            }
            state.live.insert(live)
        }
    };
    live.last_activity_ms = now_ms;
    live.segments += u64::from(!begin.part);
    live.bytes = live.bytes.saturating_add(begin.size);
    let broadcast_id = live.broadcast_id.clone();
    if !begin.part {
        let record = SegmentRecord::new(begin.file.clone(), 0, false, now_ms);
        save(store, &segment_key(&broadcast_id, &begin.file), &record).await?;
    }
    schedule(store, now_ms + live.idle_timeout_ms).await?;
    save(store, STATE_KEY, &state).await?;
    Ok(RoomResponse::Began {
        broadcast_id,
        started,
    })
}

/// Why a segment upload conflicts with the live broadcast, if it does: another session, or
/// a file this broadcast already received.
async fn second_pusher<S: RoomStore>(
    store: &S,
    live: &LiveState,
    begin: &Begin,
) -> Result<Option<String>, StoreError> {
    if live.session != begin.session {
        return Ok(Some(ANOTHER_BROADCAST.to_owned()));
    }
    if begin.part {
        return Ok(None);
    }
    let key = segment_key(&live.broadcast_id, &begin.file);
    Ok(store.load(&key).await?.is_some().then(|| {
        format!(
            "segment {} was already received: is a second encoder pushing to the same URL?",
            begin.file
        )
    }))
}

/// The state of a broadcast that `begin` starts.
fn new_live(begin: &Begin) -> LiveState {
    LiveState {
        chunked: Vec::new(),
        channel_id: begin.channel_id.clone(),
        broadcast_id: begin.new_broadcast_id.clone(),
        session: begin.session.clone(),
        started_at_ms: begin.now_ms,
        last_activity_ms: begin.now_ms,
        idle_timeout_ms: begin.idle_timeout_ms,
        renditions: BTreeMap::new(),
        first_rendition: None,
        declared: Vec::new(),
        ladder: None,
        inits: BTreeMap::new(),
        stored: BTreeMap::new(),
        ending_since_ms: None,
        parts: BTreeMap::new(),
        segments: 0,
        bytes: 0,
    }
}

/// A new rendition's empty window.
fn new_rendition(map: Option<String>) -> Rendition {
    Rendition {
        listed: 0,
        listed_duration_ms: 0,
        last_listed_sequence: None,
        window: Vec::new(),
        known: Vec::new(),
        target_duration_ms: DEFAULT_TARGET_MS,
        map,
        end_list: false,
    }
}

/// What a stored segment's upload tells the room.
pub(super) struct Stored {
    pub session: String,
    pub broadcast_id: String,
    pub file: String,
    pub size: u64,
    /// What it declares, when it is an init segment.
    pub init: Option<InitInfo>,
    pub now_ms: u64,
}

/// An [`RoomResponse::Invalid`] answer.
fn invalid(code: Contradiction, reason: String) -> RoomResponse {
    RoomResponse::Invalid { code, reason }
}

/// A segment is stored: records it (an init segment with what it declares), lists what can
/// be listed, and ends an ending broadcast once complete.
pub(super) async fn segment_stored<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    stored: Stored,
) -> Result<RoomResponse, StoreError> {
    let Stored {
        session,
        broadcast_id,
        file,
        size,
        init,
        now_ms,
    } = stored;
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let Some(live) = state.live_of(&broadcast_id, &session) else {
        // The broadcast ended while this segment was uploading; it is not part of it.
        return Ok(RoomResponse::Stored { ended: None });
    };
    let key = segment_key(&broadcast_id, &file);
    let mut record = load_segment(store, &key)
        .await?
        .unwrap_or_else(|| SegmentRecord::new(file.clone(), size, true, now_ms));
    record.size = size;
    record.stored = true;
    record.stored_at_ms = now_ms;
    record.init = init.is_some();
    save(store, &key, &record).await?;
    match init {
        Some(info) => {
            live.inits.insert(file, info);
        }
        None => {
            live.stored.insert(file, size);
        }
    }
    live.last_activity_ms = now_ms;
    advance_all(store, live, now_ms).await?;
    let ended = settle(store, sockets, &mut state, now_ms).await?;
    save(store, STATE_KEY, &state).await?;
    Ok(RoomResponse::Stored { ended })
}

/// The media playlist of one rendition: learns its entries, lists what can be listed, and
/// starts the end of the broadcast on `ENDLIST`. A rendition the ladder does not name, one
/// too many, or one whose init segment or container changes is refused.
pub(super) async fn playlist<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    session: String,
    rendition: String,
    playlist: PushedPlaylist,
    now_ms: u64,
) -> Result<RoomResponse, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let Some(live) = state.live.as_mut() else {
        // A playlist with nothing live: before the first segment, or a late copy
        // after the end. Nothing to apply.
        return Ok(RoomResponse::PlaylistAccepted {
            listed: 0,
            ended: None,
        });
    };
    if live.session != session {
        let reason = ANOTHER_BROADCAST.to_owned();
        refuse(store, sockets, &mut state, &reason, now_ms).await?;
        return Ok(RoomResponse::Conflict { reason });
    }
    if let Some(refused) = check_rendition(live, &rendition, &playlist) {
        return Ok(refused);
    }
    live.first_rendition
        .get_or_insert_with(|| rendition.clone());
    let track = live
        .renditions
        .entry(rendition.clone())
        .or_insert_with(|| new_rendition(playlist.map.clone()));
    for entry in playlist.entries {
        let listed = track
            .last_listed_sequence
            .is_some_and(|s| entry.sequence <= s);
        let known = track
            .known
            .iter()
            .any(|(k, _)| k.sequence == entry.sequence);
        if !listed && !known {
            track.known.push((entry, now_ms));
        }
    }
    track.known.sort_by_key(|(e, _)| e.sequence);
    track.target_duration_ms = playlist.target_duration_ms.max(1000);
    track.end_list |= playlist.end_list;
    live.last_activity_ms = now_ms;
    if playlist.end_list && live.ending_since_ms.is_none() {
        live.ending_since_ms = Some(now_ms);
        schedule(store, now_ms + ENDING_GRACE_MS).await?;
    }
    advance_all(store, live, now_ms).await?;
    super::parts::prune_all(live);
    let listed = live.renditions.get(&rendition).map_or(0, |r| r.listed);
    let ended = settle(store, sockets, &mut state, now_ms).await?;
    save(store, STATE_KEY, &state).await?;
    Ok(RoomResponse::PlaylistAccepted { listed, ended })
}

/// Why a rendition's playlist contradicts the broadcast, if it does.
fn check_rendition(
    live: &LiveState,
    rendition: &str,
    playlist: &PushedPlaylist,
) -> Option<RoomResponse> {
    match live.renditions.get(rendition) {
        Some(track) if track.map != playlist.map => Some(invalid(
            Contradiction::CodecsChanged,
            format!(
                "rendition {rendition:?} changed its init segment or container mid-broadcast \
                 ({:?} to {:?}); start a new broadcast to change codecs",
                track.map, playlist.map
            ),
        )),
        Some(_) => None,
        None if !live.declared.is_empty()
            && !live.declared.iter().any(|v| v.rendition == rendition) =>
        {
            Some(invalid(
                Contradiction::UnknownRendition,
                format!("rendition {rendition:?} is not in the multivariant playlist"),
            ))
        }
        None if live.renditions.len() >= MAX_RENDITIONS => Some(invalid(
            Contradiction::TooManyRenditions,
            format!("rendition {rendition:?} would be one more than the {MAX_RENDITIONS} accepted"),
        )),
        None => codecs_mismatch(
            &live.declared,
            &live.inits,
            rendition,
            playlist.map.as_deref(),
        ),
    }
}

/// The codec families of RFC 6381 codec strings (`avc1.64001f` -> `avc1`), sorted.
fn families<'a>(codecs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = codecs
        .into_iter()
        .map(|c| {
            c.trim()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty())
        .collect();
    out.sort();
    out
}

/// Whether the codecs the ladder declares for `rendition` differ from its init segment's.
fn codecs_mismatch(
    declared: &[Variant],
    inits: &BTreeMap<String, InitInfo>,
    rendition: &str,
    map: Option<&str>,
) -> Option<RoomResponse> {
    let declared = declared
        .iter()
        .find(|v| v.rendition == rendition)?
        .codecs
        .as_deref()?;
    let init = inits.get(map?)?;
    let (want, have) = (
        families(declared.split(',')),
        families(init.codecs.iter().map(String::as_str)),
    );
    (want != have).then(|| {
        invalid(
            Contradiction::CodecsMismatch,
            format!(
                "rendition {rendition:?} declares {declared:?} but its init segment holds {}",
                init.codecs.join(",")
            ),
        )
    })
}

/// The multivariant playlist: the first one declares the renditions; a later one may drop
/// some (they are no longer offered to viewers) but not add any or change their codecs.
/// Longer than most: each refusal is a few lines of its own, in the order the checks apply.
pub(super) async fn ladder<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    session: String,
    variants: Vec<Variant>,
    now_ms: u64,
) -> Result<RoomResponse, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let Some(live) = state.live.as_mut() else {
        // Before the first segment: kept for the broadcast this session starts.
        state.early_ladder = Some(EarlyLadder {
            session,
            variants,
            at_ms: now_ms,
        });
        save(store, STATE_KEY, &state).await?;
        return Ok(RoomResponse::PlaylistAccepted {
            listed: 0,
            ended: None,
        });
    };
    if live.session != session {
        let reason = ANOTHER_BROADCAST.to_owned();
        refuse(store, sockets, &mut state, &reason, now_ms).await?;
        return Ok(RoomResponse::Conflict { reason });
    }
    if live.declared.is_empty() {
        if let Some(name) = live
            .renditions
            .keys()
            .find(|name| !variants.iter().any(|v| &v.rendition == *name))
        {
            return Ok(invalid(
                Contradiction::UnknownRendition,
                format!("the media playlist of {name:?} was pushed but the multivariant playlist does not name it"),
            ));
        }
    } else {
        for variant in &variants {
            let Some(first) = live
                .declared
                .iter()
                .find(|d| d.rendition == variant.rendition)
            else {
                return Ok(invalid(
                    Contradiction::UnknownRendition,
                    format!(
                        "rendition {:?} was not in the first multivariant playlist; a new one may drop renditions, not add them",
                        variant.rendition
                    ),
                ));
            };
            if first.codecs.is_some() && variant.codecs.is_some() && first.codecs != variant.codecs
            {
                return Ok(invalid(
                    Contradiction::CodecsChanged,
                    format!(
                        "rendition {:?} changed codecs from {:?} to {:?} mid-broadcast",
                        variant.rendition, first.codecs, variant.codecs
                    ),
                ));
            }
        }
    }
    let mut declared = if live.declared.is_empty() {
        variants.clone()
    } else {
        live.declared.clone()
    };
    // Codecs declared for the first time by a later ladder hold from then on.
    for variant in &variants {
        if let Some(first) = declared
            .iter_mut()
            .find(|d| d.rendition == variant.rendition && d.codecs.is_none())
        {
            first.codecs.clone_from(&variant.codecs);
        }
    }
    for variant in &variants {
        let map = live
            .renditions
            .get(&variant.rendition)
            .and_then(|r| r.map.as_deref());
        if let Some(refused) = codecs_mismatch(&declared, &live.inits, &variant.rendition, map) {
            return Ok(refused);
        }
    }
    live.declared = declared;
    live.ladder = Some(variants);
    live.last_activity_ms = now_ms;
    save(store, STATE_KEY, &state).await?;
    Ok(RoomResponse::PlaylistAccepted {
        listed: 0,
        ended: None,
    })
}

/// An ingest request was refused: kept for the status, pushed as `ingest_refused`.
pub(super) async fn ingest_refused<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    reason: &str,
    now_ms: u64,
) -> Result<RoomResponse, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    refuse(store, sockets, &mut state, reason, now_ms).await?;
    Ok(RoomResponse::Done)
}

async fn refuse<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    state: &mut RoomState,
    reason: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    state.refusal = Some(Refusal {
        reason: reason.to_owned(),
        at_ms: now_ms,
    });
    save(store, STATE_KEY, state).await?;
    ServerMessage::IngestRefused {
        reason: reason.to_owned(),
    }
    .send_to(sockets);
    Ok(())
}

/// Lists what each rendition can list.
async fn advance_all<S: RoomStore>(
    store: &S,
    live: &mut LiveState,
    now_ms: u64,
) -> Result<(), StoreError> {
    let names: Vec<String> = live.renditions.keys().cloned().collect();
    for name in names {
        advance(store, live, &name, now_ms).await?;
    }
    Ok(())
}

/// Lists, in the pusher's order, every known entry of `name` whose segment (and init
/// segment) is stored. An entry that is still not stored holds later ones back for at most
/// [`SKIP_MISSING_AFTER_MS`].
async fn advance<S: RoomStore>(
    store: &S,
    live: &mut LiveState,
    name: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    let LiveState {
        broadcast_id,
        started_at_ms,
        renditions,
        inits,
        stored,
        ..
    } = live;
    let Some(track) = renditions.get_mut(name) else {
        return Ok(());
    };
    if track.map.as_ref().is_some_and(|m| !inits.contains_key(m)) {
        // Nothing plays before its init segment is in.
        return Ok(());
    }
    while let Some((entry, first_seen_ms)) = track.known.first().cloned() {
        if track
            .last_listed_sequence
            .is_some_and(|s| entry.sequence <= s)
        {
            track.known.remove(0);
            continue;
        }
        if let Some(size) = stored.remove(&entry.file) {
            let listed = ListedSegment {
                seq: track.listed,
                file: entry.file.clone(),
                duration_ms: entry.duration_ms,
                size,
                program_date_ms: *started_at_ms + track.listed_duration_ms,
                map: track.map.clone(),
            };
            let key = segment_key(broadcast_id, &entry.file);
            if let Some(mut record) = load_segment(store, &key).await? {
                record.sequence = Some(entry.sequence);
                record.duration_ms = Some(entry.duration_ms);
                record.listed = Some(listed.clone());
                record.rendition = Some(name.to_owned());
                save(store, &key, &record).await?;
            }
            track.listed += 1;
            track.listed_duration_ms += entry.duration_ms;
            track.last_listed_sequence = Some(entry.sequence);
            track.window.push(listed);
            if track.window.len() > WINDOW_KEEP {
                track.window.remove(0);
            }
            track.known.remove(0);
            continue;
        }
        let later_stored = track
            .known
            .iter()
            .skip(1)
            .any(|(e, _)| stored.contains_key(&e.file));
        if later_stored && now_ms.saturating_sub(first_seen_ms) > SKIP_MISSING_AFTER_MS {
            // Give up on a segment that never arrived rather than stall the live window.
            track.last_listed_sequence = Some(entry.sequence);
            track.known.remove(0);
            continue;
        }
        break;
    }
    Ok(())
}

//! The channel room's broadcast: segments begin and land, playlists list them into the live
//! window, a second pusher is refused, and the broadcast ends on `ENDLIST` (once every listed
//! segment is in) or on silence (the alarm). An ended broadcast's segment records stay until
//! the catalogue confirms it ([`finished`]); the alarm re-announces it until then.

use crate::error::StoreError;
use crate::model::hls::{ListedSegment, PushedPlaylist};
use crate::model::room::{
    EndedBroadcast, LastSummary, LiveSummary, LiveWindow, Refusal, RoomResponse, RoomStatus,
    StartedBroadcast,
};
use crate::ports::{RoomSockets, RoomStore};

use super::messages::ServerMessage;
use super::state::{
    backend, load, load_segment, save, schedule, segment_key, segments_prefix, video_id_for,
    LastBroadcast, LiveState, RoomState, SegmentRecord, Unfinished, STATE_KEY,
};
use super::WINDOW_KEEP;

/// How long an unstored playlist entry may hold back later stored ones, in ms.
const SKIP_MISSING_AFTER_MS: u64 = 10_000;
/// How long after `#EXT-X-ENDLIST` the room waits for uploads still in flight, in ms.
const ENDING_GRACE_MS: u64 = 5_000;
/// How often an unconfirmed ended broadcast is re-announced, in ms.
const FINISH_RETRY_MS: u64 = 30_000;
/// How long an ingest refusal stays in the channel status, in ms.
const REFUSAL_SHOWN_MS: u64 = 10 * 60_000;
/// The segment duration assumed until a playlist names one, in ms.
const DEFAULT_TARGET_MS: u64 = 2000;
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
}

/// A segment upload begins: starts a broadcast if none is live (pushing `live`), refuses
/// another session or a file already received.
pub(super) async fn begin_segment<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    begin: Begin,
) -> Result<RoomResponse, StoreError> {
    let now_ms = begin.now_ms;
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let mut started = None;
    let live = match state.live.as_mut() {
        Some(live) => {
            if let Some(reason) = second_pusher(store, live, &begin).await? {
                refuse(store, sockets, &mut state, &reason, now_ms).await?;
                return Ok(RoomResponse::Conflict { reason });
            }
            live
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
            state.live.insert(new_live(&begin))
        }
    };
    live.last_activity_ms = now_ms;
    let broadcast_id = live.broadcast_id.clone();
    let record = SegmentRecord::new(begin.file.clone(), 0, false, now_ms);
    save(store, &segment_key(&broadcast_id, &begin.file), &record).await?;
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
        channel_id: begin.channel_id.clone(),
        broadcast_id: begin.new_broadcast_id.clone(),
        session: begin.session.clone(),
        started_at_ms: begin.now_ms,
        last_activity_ms: begin.now_ms,
        idle_timeout_ms: begin.idle_timeout_ms,
        listed: 0,
        listed_duration_ms: 0,
        last_listed_sequence: None,
        window: Vec::new(),
        stored: Default::default(),
        known: Vec::new(),
        target_duration_ms: DEFAULT_TARGET_MS,
        ending_since_ms: None,
    }
}

/// A segment is stored: records it, lists what can be listed, and ends an ending broadcast
/// once complete.
pub(super) async fn segment_stored<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    session: String,
    broadcast_id: String,
    file: String,
    size: u64,
    now_ms: u64,
) -> Result<RoomResponse, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let Some(live) = state
        .live
        .as_mut()
        .filter(|l| l.broadcast_id == broadcast_id && l.session == session)
    else {
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
    save(store, &key, &record).await?;
    live.stored.insert(file, size);
    live.last_activity_ms = now_ms;
    advance(store, live, now_ms).await?;
    let ended = settle(store, sockets, &mut state, now_ms).await?;
    save(store, STATE_KEY, &state).await?;
    Ok(RoomResponse::Stored { ended })
}

/// The pusher's playlist: learns its entries, lists what can be listed, and starts the end
/// of the broadcast on `ENDLIST`.
pub(super) async fn playlist<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    session: String,
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
    for entry in playlist.entries {
        let listed = live
            .last_listed_sequence
            .is_some_and(|s| entry.sequence <= s);
        let known = live.known.iter().any(|(k, _)| k.sequence == entry.sequence);
        if !listed && !known {
            live.known.push((entry, now_ms));
        }
    }
    live.known.sort_by_key(|(e, _)| e.sequence);
    live.target_duration_ms = playlist.target_duration_ms.max(1000);
    live.last_activity_ms = now_ms;
    if playlist.end_list && live.ending_since_ms.is_none() {
        live.ending_since_ms = Some(now_ms);
        schedule(store, now_ms + ENDING_GRACE_MS).await?;
    }
    advance(store, live, now_ms).await?;
    let listed = live.listed;
    let ended = settle(store, sockets, &mut state, now_ms).await?;
    save(store, STATE_KEY, &state).await?;
    Ok(RoomResponse::PlaylistAccepted { listed, ended })
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

/// The catalogue recorded the ended broadcast: drops its segment records.
pub(super) async fn finished<S: RoomStore>(
    store: &S,
    broadcast_id: &str,
) -> Result<RoomResponse, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let keys: Vec<String> = store
        .list(&segments_prefix(broadcast_id))
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    store.delete(&keys).await?;
    if state
        .unfinished
        .as_ref()
        .is_some_and(|u| u.broadcast_id == broadcast_id)
    {
        state.unfinished = None;
        save(store, STATE_KEY, &state).await?;
    }
    Ok(RoomResponse::Done)
}

/// The channel's status: live broadcast, viewers, a recent refusal, the last broadcast.
pub(super) async fn status<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<RoomStatus, StoreError> {
    let state: RoomState = load(store, STATE_KEY).await?;
    Ok(RoomStatus {
        live: state.live.as_ref().map(|l| LiveSummary {
            broadcast_id: l.broadcast_id.clone(),
            started_at_ms: l.started_at_ms,
            segments: l.listed,
            duration_ms: l.listed_duration_ms,
        }),
        viewers: sockets.count() as u64,
        ingest_refused: state
            .refusal
            .filter(|r| now_ms.saturating_sub(r.at_ms) < REFUSAL_SHOWN_MS),
        last_broadcast: state.last.map(|l| l.summary),
    })
}

/// The last `max_segments` of the live window, or of the last broadcast's once it ended.
pub(super) async fn window<S: RoomStore>(
    store: &S,
    max_segments: usize,
) -> Result<Option<LiveWindow>, StoreError> {
    let state: RoomState = load(store, STATE_KEY).await?;
    let tail = |w: &[ListedSegment]| w[w.len().saturating_sub(max_segments)..].to_vec();
    Ok(match (&state.live, &state.last) {
        (Some(live), _) => Some(LiveWindow {
            broadcast_id: live.broadcast_id.clone(),
            segments: tail(&live.window),
            ended: false,
        }),
        (None, Some(last)) => Some(LiveWindow {
            broadcast_id: last.summary.broadcast_id.clone(),
            segments: tail(&last.window),
            ended: true,
        }),
        (None, None) => None,
    })
}

/// Lists, in the pusher's order, every known entry whose segment is stored. An entry that
/// is still not stored holds later ones back for at most [`SKIP_MISSING_AFTER_MS`].
async fn advance<S: RoomStore>(
    store: &S,
    live: &mut LiveState,
    now_ms: u64,
) -> Result<(), StoreError> {
    while let Some((entry, first_seen_ms)) = live.known.first().cloned() {
        if live
            .last_listed_sequence
            .is_some_and(|s| entry.sequence <= s)
        {
            live.known.remove(0);
            continue;
        }
        if let Some(size) = live.stored.remove(&entry.file) {
            let listed = ListedSegment {
                seq: live.listed,
                file: entry.file.clone(),
                duration_ms: entry.duration_ms,
                size,
                program_date_ms: live.started_at_ms + live.listed_duration_ms,
            };
            let key = segment_key(&live.broadcast_id, &entry.file);
            if let Some(mut record) = load_segment(store, &key).await? {
                record.sequence = Some(entry.sequence);
                record.duration_ms = Some(entry.duration_ms);
                record.listed = Some(listed.clone());
                save(store, &key, &record).await?;
            }
            live.listed += 1;
            live.listed_duration_ms += entry.duration_ms;
            live.last_listed_sequence = Some(entry.sequence);
            live.window.push(listed);
            if live.window.len() > WINDOW_KEEP {
                live.window.remove(0);
            }
            live.known.remove(0);
            continue;
        }
        let later_stored = live
            .known
            .iter()
            .skip(1)
            .any(|(e, _)| live.stored.contains_key(&e.file));
        if later_stored && now_ms.saturating_sub(first_seen_ms) > SKIP_MISSING_AFTER_MS {
            // Give up on a segment that never arrived rather than stall the live window.
            live.last_listed_sequence = Some(entry.sequence);
            live.known.remove(0);
            continue;
        }
        break;
    }
    Ok(())
}

/// Ends the live broadcast when the pusher's `ENDLIST` has been seen and every segment it
/// listed is in.
async fn settle<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    state: &mut RoomState,
    now_ms: u64,
) -> Result<Option<EndedBroadcast>, StoreError> {
    let complete = state
        .live
        .as_ref()
        .is_some_and(|l| l.ending_since_ms.is_some() && l.known.is_empty());
    if complete {
        return finalize(store, sockets, state, "endlist", now_ms)
            .await
            .map(Some);
    }
    Ok(None)
}

/// The alarm's work: ends a broadcast that fell silent (or whose end grace passed), and
/// re-announces an ended broadcast the catalogue has not confirmed.
pub(super) async fn alarm<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<Option<EndedBroadcast>, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    if let Some(live) = &state.live {
        let ending_due = live.ending_since_ms.map(|t| t + ENDING_GRACE_MS);
        let idle_due = live.last_activity_ms + live.idle_timeout_ms;
        let reason = if ending_due.is_some_and(|due| due <= now_ms) {
            "endlist"
        } else if idle_due <= now_ms {
            "timeout"
        } else {
            // Woken early (a presence push): ask again for the nearer deadline.
            schedule(store, ending_due.map_or(idle_due, |due| due.min(idle_due))).await?;
            return Ok(None);
        };
        let ended = finalize(store, sockets, &mut state, reason, now_ms).await?;
        save(store, STATE_KEY, &state).await?;
        return Ok(Some(ended));
    }
    if let Some(unfinished) = state.unfinished {
        schedule(store, now_ms + FINISH_RETRY_MS).await?;
        let segments =
            recorded_segments(store, &unfinished.broadcast_id, DEFAULT_TARGET_MS).await?;
        return Ok(Some(EndedBroadcast {
            video_id: (!segments.is_empty()).then(|| video_id_for(&unfinished.broadcast_id)),
            channel_id: unfinished.channel_id,
            broadcast_id: unfinished.broadcast_id,
            started_at_ms: unfinished.started_at_ms,
            ended_at_ms: unfinished.ended_at_ms,
            reason: unfinished.reason,
            segments,
        }));
    }
    Ok(None)
}

/// Every stored segment of a broadcast in order: listed ones by our sequence, then stored
/// ones no playlist listed (the pusher was cut off) by the pusher's order or arrival, with
/// `estimated_ms` when their duration is unknown.
async fn recorded_segments<S: RoomStore>(
    store: &S,
    broadcast_id: &str,
    estimated_ms: u64,
) -> Result<Vec<ListedSegment>, StoreError> {
    let mut listed = Vec::new();
    let mut unlisted = Vec::new();
    for (_, value) in store.list(&segments_prefix(broadcast_id)).await? {
        let record: SegmentRecord = serde_json::from_value(value).map_err(backend)?;
        match record.listed {
            Some(l) => listed.push(l),
            None if record.stored => unlisted.push(record),
            None => {}
        }
    }
    listed.sort_by_key(|s| s.seq);
    unlisted.sort_by_key(|r| (r.sequence.unwrap_or(u64::MAX), r.stored_at_ms));
    let first_unlisted_seq = listed.last().map_or(0, |s| s.seq + 1);
    let mut next_date = listed.last().map(|s| s.program_date_ms + s.duration_ms);
    for (seq, record) in (first_unlisted_seq..).zip(unlisted) {
        let duration_ms = record.duration_ms.unwrap_or(estimated_ms);
        let program_date_ms = next_date.unwrap_or(record.stored_at_ms);
        listed.push(ListedSegment {
            seq,
            file: record.file,
            duration_ms,
            size: record.size,
            program_date_ms,
        });
        next_date = Some(program_date_ms + duration_ms);
    }
    Ok(listed)
}

/// Ends the live broadcast: keeps its summary and last window, keeps it as unfinished until
/// the catalogue confirms it (alarm set), and pushes `ended`.
async fn finalize<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    state: &mut RoomState,
    reason: &str,
    now_ms: u64,
) -> Result<EndedBroadcast, StoreError> {
    let Some(live) = state.live.take() else {
        return Err(StoreError::Precondition("no live broadcast".into()));
    };
    // Durations the last playlists named for segments that were stored but not listed.
    for (entry, _) in &live.known {
        let key = segment_key(&live.broadcast_id, &entry.file);
        if let Some(mut record) = load_segment(store, &key).await? {
            if record.listed.is_none() {
                record.sequence = Some(entry.sequence);
                record.duration_ms = Some(entry.duration_ms);
                save(store, &key, &record).await?;
            }
        }
    }
    let segments = recorded_segments(store, &live.broadcast_id, live.target_duration_ms).await?;
    let video_id = (!segments.is_empty()).then(|| video_id_for(&live.broadcast_id));
    let window = segments[segments.len().saturating_sub(WINDOW_KEEP)..].to_vec();
    state.last = Some(LastBroadcast {
        summary: LastSummary {
            broadcast_id: live.broadcast_id.clone(),
            video_id: video_id.clone(),
            ended_at_ms: now_ms,
            reason: reason.to_owned(),
        },
        window,
    });
    state.unfinished = Some(Unfinished {
        channel_id: live.channel_id.clone(),
        broadcast_id: live.broadcast_id.clone(),
        started_at_ms: live.started_at_ms,
        ended_at_ms: now_ms,
        reason: reason.to_owned(),
    });
    schedule(store, now_ms + FINISH_RETRY_MS).await?;
    ServerMessage::Ended {
        channel_id: live.channel_id.clone(),
        broadcast_id: live.broadcast_id.clone(),
        video_id: video_id.clone(),
        reason: reason.to_owned(),
    }
    .send_to(sockets);
    Ok(EndedBroadcast {
        channel_id: live.channel_id,
        broadcast_id: live.broadcast_id,
        video_id,
        started_at_ms: live.started_at_ms,
        ended_at_ms: now_ms,
        reason: reason.to_owned(),
        segments,
    })
}

//! The channel room: the logic of the one stateful object per channel (a Durable Object on
//! Cloudflare). It keeps the live window of the channel's broadcast (which segments are
//! stored, which are listed, their durations and sequence numbers), decides when a broadcast
//! starts and ends, refuses a second pusher, and pushes `live`/`ended`/`viewers` messages to
//! the WebSockets it holds. A room named [`LOBBY`](crate::model::room::LOBBY) keeps the list of live channels instead.
//!
//! The host forwards [`RoomRequest`]s and alarms; storage and sockets come in through the
//! [`RoomStore`] and [`RoomSockets`] ports. Catalogue work (D1 rows, queue jobs) is not done
//! here: answers carry [`StartedBroadcast`] / [`EndedBroadcast`] for the caller to apply
//! (see [`crate::services::broadcasts`]), and the room keeps an ended broadcast's segments until the caller
//! confirms with [`RoomRequest::Finished`], re-announcing it from its alarm until then.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::StoreError;
use crate::model::hls::{ListedSegment, PushedEntry};
use crate::model::room::{
    EndedBroadcast, LastSummary, LiveSummary, LiveWindow, LobbyEntry, Refusal, RoomRequest,
    RoomResponse, RoomStatus, StartedBroadcast,
};
use crate::ports::{RoomSockets, RoomStore};

/// Segments kept for the live window.
pub const WINDOW_KEEP: usize = 10;
/// How long an unstored playlist entry may hold back later stored ones, in ms.
const SKIP_MISSING_AFTER_MS: u64 = 10_000;
/// How long after `#EXT-X-ENDLIST` the room waits for uploads still in flight, in ms.
const ENDING_GRACE_MS: u64 = 5_000;
/// How often an unconfirmed ended broadcast is re-announced, in ms.
const FINISH_RETRY_MS: u64 = 30_000;
/// How long an ingest refusal stays in the channel status, in ms.
const REFUSAL_SHOWN_MS: u64 = 10 * 60_000;
const STATE_KEY: &str = "state";
const LOBBY_KEY: &str = "lobby";
const PINGS_KEY: &str = "pings";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RoomState {
    live: Option<LiveState>,
    last: Option<LastBroadcast>,
    refusal: Option<Refusal>,
    unfinished: Option<Unfinished>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LiveState {
    channel_id: String,
    broadcast_id: String,
    session: String,
    started_at_ms: u64,
    last_activity_ms: u64,
    idle_timeout_ms: u64,
    listed: u64,
    listed_duration_ms: u64,
    last_listed_sequence: Option<u64>,
    window: Vec<ListedSegment>,
    /// Stored segments not listed yet: file -> size.
    stored: BTreeMap<String, u64>,
    /// Playlist entries not listed yet, with when they were first seen.
    known: Vec<(PushedEntry, u64)>,
    target_duration_ms: u64,
    ending_since_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastBroadcast {
    summary: LastSummary,
    window: Vec<ListedSegment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Unfinished {
    channel_id: String,
    broadcast_id: String,
    started_at_ms: u64,
    ended_at_ms: u64,
    reason: String,
}

/// One segment's record in room storage, under `seg/{broadcast}/{file}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SegmentRecord {
    file: String,
    size: u64,
    stored: bool,
    stored_at_ms: u64,
    /// Pusher's sequence number, once a playlist named it.
    sequence: Option<u64>,
    duration_ms: Option<u64>,
    /// Our listing, once listed.
    listed: Option<ListedSegment>,
}

fn segment_key(broadcast_id: &str, file: &str) -> String {
    format!("seg/{broadcast_id}/{file}")
}

/// The video id derived from a broadcast id (`brd_X` -> `vid_X`), so that finishing a
/// broadcast twice names the same video.
pub fn video_id_for(broadcast_id: &str) -> String {
    format!(
        "vid_{}",
        broadcast_id.strip_prefix("brd_").unwrap_or(broadcast_id)
    )
}

fn backend(e: serde_json::Error) -> StoreError {
    StoreError::backend("room_state", e)
}

async fn load<S: RoomStore, T: for<'de> Deserialize<'de> + Default>(
    store: &S,
    key: &str,
) -> Result<T, StoreError> {
    match store.load(key).await? {
        Some(v) => serde_json::from_value(v).map_err(backend),
        None => Ok(T::default()),
    }
}

async fn save<S: RoomStore, T: Serialize>(
    store: &S,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    store
        .save(key, &serde_json::to_value(value).map_err(backend)?)
        .await
}

/// The `viewers` message for `count` clients.
pub fn viewers_message(count: usize) -> String {
    json!({ "type": "viewers", "count": count }).to_string()
}

/// Handles one request inside the room whose storage is `store`.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn handle<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    request: RoomRequest,
) -> Result<RoomResponse, StoreError> {
    match request {
        RoomRequest::Ping => {
            let pings = store
                .load(PINGS_KEY)
                .await?
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
                + 1;
            store.save(PINGS_KEY, &pings.into()).await?;
            Ok(RoomResponse::Pong { pings })
        }
        RoomRequest::BeginSegment {
            channel_id,
            session,
            file,
            new_broadcast_id,
            now_ms,
            idle_timeout_ms,
        } => {
            let mut state: RoomState = load(store, STATE_KEY).await?;
            let mut started = None;
            let live = match state.live.as_mut() {
                Some(live) => {
                    let reason = if live.session != session {
                        Some("another broadcast is live on this channel".to_owned())
                    } else if store
                        .load(&segment_key(&live.broadcast_id, &file))
                        .await?
                        .is_some()
                    {
                        Some(format!(
                            "segment {file} was already received: is a second encoder pushing to the same URL?"
                        ))
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        refuse(store, sockets, &mut state, &reason, now_ms).await?;
                        return Ok(RoomResponse::Conflict { reason });
                    }
                    live
                }
                None => {
                    let live = LiveState {
                        channel_id: channel_id.clone(),
                        broadcast_id: new_broadcast_id.clone(),
                        session,
                        started_at_ms: now_ms,
                        last_activity_ms: now_ms,
                        idle_timeout_ms,
                        listed: 0,
                        listed_duration_ms: 0,
                        last_listed_sequence: None,
                        window: Vec::new(),
                        stored: BTreeMap::new(),
                        known: Vec::new(),
                        target_duration_ms: 2000,
                        ending_since_ms: None,
                    };
                    state.refusal = None;
                    started = Some(StartedBroadcast {
                        channel_id: channel_id.clone(),
                        broadcast_id: new_broadcast_id.clone(),
                        started_at_ms: now_ms,
                    });
                    sockets.send_all(
                        &json!({
                            "type": "live",
                            "channel_id": channel_id,
                            "broadcast_id": new_broadcast_id,
                            "started_at_ms": now_ms,
                        })
                        .to_string(),
                    );
                    state.live.insert(live)
                }
            };
            live.last_activity_ms = now_ms;
            let broadcast_id = live.broadcast_id.clone();
            let record = SegmentRecord {
                file: file.clone(),
                size: 0,
                stored: false,
                stored_at_ms: now_ms,
                sequence: None,
                duration_ms: None,
                listed: None,
            };
            save(store, &segment_key(&broadcast_id, &file), &record).await?;
            store.set_alarm(now_ms + live.idle_timeout_ms).await?;
            save(store, STATE_KEY, &state).await?;
            Ok(RoomResponse::Began {
                broadcast_id,
                started,
            })
        }
        RoomRequest::SegmentStored {
            session,
            broadcast_id,
            file,
            size,
            now_ms,
        } => {
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
            let mut record: SegmentRecord = match store.load(&key).await? {
                Some(v) => serde_json::from_value(v).map_err(backend)?,
                None => SegmentRecord {
                    file: file.clone(),
                    size,
                    stored: true,
                    stored_at_ms: now_ms,
                    sequence: None,
                    duration_ms: None,
                    listed: None,
                },
            };
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
        RoomRequest::Playlist {
            session,
            playlist,
            now_ms,
        } => {
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
                let reason = "another broadcast is live on this channel".to_owned();
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
                store.set_alarm(now_ms + ENDING_GRACE_MS).await?;
            }
            advance(store, live, now_ms).await?;
            let listed = live.listed;
            let ended = settle(store, sockets, &mut state, now_ms).await?;
            save(store, STATE_KEY, &state).await?;
            Ok(RoomResponse::PlaylistAccepted { listed, ended })
        }
        RoomRequest::IngestRefused { reason, now_ms } => {
            let mut state: RoomState = load(store, STATE_KEY).await?;
            refuse(store, sockets, &mut state, &reason, now_ms).await?;
            Ok(RoomResponse::Done)
        }
        RoomRequest::Finished { broadcast_id } => {
            let mut state: RoomState = load(store, STATE_KEY).await?;
            let keys: Vec<String> = store
                .list(&format!("seg/{broadcast_id}/"))
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
        RoomRequest::Status { now_ms } => {
            let state: RoomState = load(store, STATE_KEY).await?;
            Ok(RoomResponse::Status(RoomStatus {
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
            }))
        }
        RoomRequest::Window { max_segments } => {
            let state: RoomState = load(store, STATE_KEY).await?;
            let tail = |w: &[ListedSegment]| w[w.len().saturating_sub(max_segments)..].to_vec();
            let window = match (&state.live, &state.last) {
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
            };
            Ok(RoomResponse::Window { window })
        }
        RoomRequest::Notify { message } => {
            sockets.send_all(&message.to_string());
            Ok(RoomResponse::Done)
        }
        RoomRequest::LobbyUpdate { entry, live } => {
            let mut channels: BTreeMap<String, LobbyEntry> = load(store, LOBBY_KEY).await?;
            let message = json!({
                "type": if live { "live" } else { "ended" },
                "channel_id": entry.channel_id,
                "name": entry.name,
                "broadcast_id": entry.broadcast_id,
                "started_at_ms": entry.started_at_ms,
            });
            if live {
                channels.insert(entry.channel_id.clone(), entry);
            } else if channels
                .get(&entry.channel_id)
                .is_some_and(|e| e.broadcast_id == entry.broadcast_id)
            {
                channels.remove(&entry.channel_id);
            }
            save(store, LOBBY_KEY, &channels).await?;
            sockets.send_all(&message.to_string());
            Ok(RoomResponse::Done)
        }
        RoomRequest::LobbyList => {
            let channels: BTreeMap<String, LobbyEntry> = load(store, LOBBY_KEY).await?;
            Ok(RoomResponse::Lobby {
                channels: channels.into_values().collect(),
            })
        }
    }
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
    sockets.send_all(&json!({ "type": "ingest_refused", "reason": reason }).to_string());
    Ok(())
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
            if let Some(v) = store.load(&key).await? {
                let mut record: SegmentRecord = serde_json::from_value(v).map_err(backend)?;
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

/// The alarm: ends a broadcast that fell silent (or whose end grace passed), and re-announces
/// an ended broadcast the catalogue has not confirmed.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn alarm<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<Option<EndedBroadcast>, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    if let Some(live) = &state.live {
        let ending_due = live
            .ending_since_ms
            .map(|t| t + ENDING_GRACE_MS)
            .filter(|due| *due <= now_ms);
        let idle_due = live.last_activity_ms + live.idle_timeout_ms;
        let reason = if ending_due.is_some() {
            "endlist"
        } else if idle_due <= now_ms {
            "timeout"
        } else {
            store.set_alarm(idle_due).await?;
            return Ok(None);
        };
        let ended = finalize(store, sockets, &mut state, reason, now_ms).await?;
        save(store, STATE_KEY, &state).await?;
        return Ok(Some(ended));
    }
    if let Some(unfinished) = state.unfinished.clone() {
        store.set_alarm(now_ms + FINISH_RETRY_MS).await?;
        let segments = recorded_segments(store, &unfinished.broadcast_id, 2000).await?;
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
    for (_, value) in store.list(&format!("seg/{broadcast_id}/")).await? {
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
        if let Some(v) = store.load(&key).await? {
            let mut record: SegmentRecord = serde_json::from_value(v).map_err(backend)?;
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
    store.set_alarm(now_ms + FINISH_RETRY_MS).await?;
    sockets.send_all(
        &json!({
            "type": "ended",
            "channel_id": live.channel_id,
            "broadcast_id": live.broadcast_id,
            "video_id": video_id,
            "reason": reason,
        })
        .to_string(),
    );
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

/// A client joined: everyone gets the new viewer count; the joiner also gets a `hello` with
/// the live status, returned for the host to send.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn on_join<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<String, StoreError> {
    sockets.send_all(&viewers_message(sockets.count()));
    let status = match handle(store, sockets, RoomRequest::Status { now_ms }).await? {
        RoomResponse::Status(status) => serde_json::to_value(status).map_err(backend)?,
        _ => serde_json::Value::Null,
    };
    Ok(json!({ "type": "hello", "status": status }).to_string())
}

/// A client left: everyone gets the new viewer count.
pub fn on_leave(sockets: &dyn RoomSockets) {
    sockets.send_all(&viewers_message(sockets.count()));
}

/// The emoji a viewer may react with.
pub const REACTIONS: [&str; 8] = ["🔥", "❤️", "👏", "😂", "😮", "🎉", "👍", "💯"];
/// Reactions one connection may send per [`REACTION_WINDOW_MS`]; more are refused.
pub const REACTIONS_PER_WINDOW: u32 = 5;
/// The reaction rate-limit window, in ms.
pub const REACTION_WINDOW_MS: u64 = 2_000;
/// Largest incoming socket message read, in bytes.
const MAX_SOCKET_MESSAGE: usize = 1024;

/// Per-connection state, kept with each WebSocket (its attachment on Cloudflare, so it
/// survives hibernation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketState {
    /// The connection is in the lobby, which relays no reactions.
    #[serde(default)]
    pub lobby: bool,
    /// The channel whose room holds the connection (for the lobby's viewer counts).
    #[serde(default)]
    pub channel_id: Option<String>,
    /// Start of the current rate-limit window, Unix ms.
    #[serde(default)]
    pub window_start_ms: u64,
    /// Reactions accepted in the current window.
    #[serde(default)]
    pub window_count: u32,
}

/// The request that tells the lobby a channel's viewer count, so that the home page's live
/// list updates without polling: `{"type":"viewers","channel_id","count"}`.
pub fn lobby_viewers(channel_id: &str, count: usize) -> RoomRequest {
    RoomRequest::Notify {
        message: json!({ "type": "viewers", "channel_id": channel_id, "count": count }),
    }
}

fn socket_error(code: &str, message: &str) -> String {
    json!({ "type": "error", "code": code, "message": message }).to_string()
}

/// A client sent `text`: `ping` (plain or `{"type":"ping"}`) gets a pong; a
/// `{"type":"reaction","emoji":"🔥"}` from the allow-list ([`REACTIONS`]) goes to everyone
/// in the room as `{"type":"reaction","emoji","at_ms"}`, at most [`REACTIONS_PER_WINDOW`]
/// per [`REACTION_WINDOW_MS`] per connection. Returns the reply for the sender only (a
/// pong, or an `error` message with a `code`); `state` is updated in place.
pub fn on_message(
    sockets: &dyn RoomSockets,
    state: &mut SocketState,
    text: &str,
    now_ms: u64,
) -> Option<String> {
    if text == "ping" {
        return Some(json!({ "type": "pong" }).to_string());
    }
    if text.len() > MAX_SOCKET_MESSAGE {
        return Some(socket_error("invalid_message", "the message is too long"));
    }
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
        return Some(socket_error("invalid_message", "messages are JSON objects"));
    };
    match message.get("type").and_then(|t| t.as_str()) {
        Some("ping") => Some(json!({ "type": "pong" }).to_string()),
        Some("reaction") => {
            if state.lobby {
                return Some(socket_error(
                    "invalid_message",
                    "react on a channel, not in the lobby",
                ));
            }
            let emoji = message.get("emoji").and_then(|e| e.as_str()).unwrap_or("");
            let Some(emoji) = REACTIONS.iter().find(|r| **r == emoji) else {
                return Some(socket_error(
                    "invalid_reaction",
                    &format!("reactions are one of {}", REACTIONS.join(" ")),
                ));
            };
            if now_ms.saturating_sub(state.window_start_ms) >= REACTION_WINDOW_MS {
                state.window_start_ms = now_ms;
                state.window_count = 0;
            }
            if state.window_count >= REACTIONS_PER_WINDOW {
                return Some(socket_error(
                    "rate_limited",
                    "too many reactions; wait a moment",
                ));
            }
            state.window_count += 1;
            sockets.send_all(
                &json!({ "type": "reaction", "emoji": emoji, "at_ms": now_ms }).to_string(),
            );
            None
        }
        _ => Some(socket_error(
            "invalid_message",
            "unknown message type; expected ping or reaction",
        )),
    }
}

#[cfg(test)]
mod reaction_tests {
    use std::cell::RefCell;

    use super::*;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<String>>);

    impl RoomSockets for Recorder {
        fn count(&self) -> usize {
            2
        }
        fn send_all(&self, message: &str) {
            self.0.borrow_mut().push(message.to_owned());
        }
    }

    fn code(reply: Option<String>) -> String {
        let reply: serde_json::Value = serde_json::from_str(&reply.unwrap()).unwrap();
        reply["code"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn reactions_are_relayed_allow_listed_and_rate_limited() {
        let sockets = Recorder::default();
        let mut state = SocketState::default();
        let fire = r#"{"type":"reaction","emoji":"🔥"}"#;
        for i in 0..REACTIONS_PER_WINDOW {
            assert_eq!(
                on_message(&sockets, &mut state, fire, 10_000 + u64::from(i)),
                None
            );
        }
        assert_eq!(sockets.0.borrow().len(), REACTIONS_PER_WINDOW as usize);
        let sent: serde_json::Value = serde_json::from_str(&sockets.0.borrow()[0]).unwrap();
        assert_eq!(sent["type"], "reaction");
        assert_eq!(sent["emoji"], "🔥");

        assert_eq!(
            code(on_message(&sockets, &mut state, fire, 10_500)),
            "rate_limited"
        );
        assert_eq!(sockets.0.borrow().len(), REACTIONS_PER_WINDOW as usize);
        // A new window lets the connection react again.
        assert_eq!(
            on_message(&sockets, &mut state, fire, 10_000 + REACTION_WINDOW_MS),
            None
        );

        let not_allowed = r#"{"type":"reaction","emoji":"<script>"}"#;
        assert_eq!(
            code(on_message(&sockets, &mut state, not_allowed, 20_000)),
            "invalid_reaction"
        );
        assert_eq!(
            code(on_message(&sockets, &mut state, "{", 20_000)),
            "invalid_message"
        );
        assert_eq!(
            code(on_message(&sockets, &mut state, r#"{"type":"x"}"#, 20_000)),
            "invalid_message"
        );
        let pong = on_message(&sockets, &mut state, "ping", 20_000).unwrap();
        assert!(pong.contains("pong"));

        let mut lobby = SocketState {
            lobby: true,
            ..SocketState::default()
        };
        let before = sockets.0.borrow().len();
        assert_eq!(
            code(on_message(&sockets, &mut lobby, fire, 30_000)),
            "invalid_message"
        );
        assert_eq!(sockets.0.borrow().len(), before);
    }
}

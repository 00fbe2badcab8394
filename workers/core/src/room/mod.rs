//! The channel room: the logic of the one stateful object per channel (a Durable Object on
//! Cloudflare). It keeps the live window of each rendition of the channel's broadcast (which
//! segments are stored, which are listed, their durations and sequence numbers) and the
//! ladder the pusher declared, decides when a broadcast
//! starts and ends, refuses a second pusher, and pushes `live`/`ended`/`viewers`/`reactions`
//! messages to the WebSockets it holds. A room named [`LOBBY`](crate::model::room::LOBBY) keeps the list
//! of live channels instead.
//!
//! The host forwards [`RoomRequest`]s and alarms; storage and sockets come in through the
//! [`RoomStore`] and [`RoomSockets`] ports. Catalogue work (D1 rows, queue jobs) is not done
//! here: answers carry [`StartedBroadcast`](crate::model::room::StartedBroadcast) /
//! [`EndedBroadcast`] for the caller to apply (see [`crate::services::broadcasts`]), and the
//! room keeps an ended broadcast's segments until the caller confirms with
//! [`RoomRequest::Finished`], re-announcing it from its alarm until then.
//!
//! ## Layout
//! - this module: the entry points a host calls ([`handle`], [`alarm`], and the socket
//!   events [`on_join`], [`on_leave`], [`on_message`]) and the dispatch of each request;
//! - `state`: what the room stores and under which keys;
//! - `ingest`: segments, playlists, the ladder, refusals and the stream-key check;
//! - `parts`: low-latency parts, the part window and what held requests wait for;
//! - `ending`: the end of a broadcast (`ENDLIST`, silence, the alarm's work) and its recording;
//! - `status`: what readers get: the channel's status and a rendition's live window;
//! - `lobby`: the lobby's list of live channels;
//! - `sockets`: joining, leaving, pings and reactions ([`SocketState`]);
//! - `shards`: presence shards, the objects a big channel's sockets are spread over
//!   ([`shard_room`], [`join_shard`], [`ticked`]);
//! - [`relay`]: a room's relays, one per location, sharing its reads among that location's
//!   isolates;
//! - [`messages`]: every message pushed to browsers ([`ServerMessage`]).

mod ending;
mod ingest;
mod lobby;
pub mod messages;
mod parts;
pub mod relay;
mod shards;
mod sockets;
mod state;
mod status;

use crate::error::StoreError;
use crate::model::room::{EndedBroadcast, RoomRequest, RoomResponse};
use crate::ports::{RoomSockets, RoomStore};

pub use lobby::{lobby_viewers, BIG_AUDIENCE};
pub use messages::{ServerMessage, SocketErrorCode};
pub use shards::{
    join_shard, join_shards, overflow_shard, pick_shard, shard_room, shards_for, ticked,
    MAX_SHARDS, OVERFLOW_SHARDS, SHARD_REPORT_TTL_MS, SHARD_TICK_MS,
};
pub use sockets::{
    on_join, on_leave, on_message, SocketState, LOBBY_TELL_MS, PRESENCE_PUSH_MS, REACTIONS,
    REACTIONS_PER_WINDOW, REACTION_PUSH_MS, REACTION_WINDOW_MS,
};
pub use state::video_id_for;

/// Segments kept for the live window.
pub const WINDOW_KEEP: usize = 10;

/// How long the live playlist keeps listing a broadcast after it ended (with `ENDLIST`),
/// in ms; then the channel is not live and the recording plays as a video.
pub const ENDED_LISTED_MS: u64 = 2 * 60_000;

/// Handles one request inside the room whose storage is `store`. Long only because it is
/// the dispatch: one arm per [`RoomRequest`], each a call into `ingest`, `ending`, `status`
/// or `lobby`.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn handle<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    request: RoomRequest,
) -> Result<RoomResponse, StoreError> {
    // What this request pushes to the room's sockets goes to its shards' sockets too.
    let relayed = shards::Relayed::new(sockets);
    let answer = dispatch(store, &relayed, request).await?;
    relayed.relay(store).await?;
    Ok(answer)
}

/// [`handle`]'s dispatch.
async fn dispatch<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    request: RoomRequest,
) -> Result<RoomResponse, StoreError> {
    if let RoomRequest::BeginSegment {
        key_version,
        now_ms,
        ..
    }
    | RoomRequest::Playlist {
        key_version,
        now_ms,
        ..
    }
    | RoomRequest::Ladder {
        key_version,
        now_ms,
        ..
    }
    | RoomRequest::CheckKey {
        key_version,
        now_ms,
    } = &request
    {
        if let Some(refusal) = ingest::check_key(store, sockets, *key_version, *now_ms).await? {
            return Ok(refusal);
        }
    }
    match request {
        RoomRequest::Ping => ping(store).await,
        RoomRequest::BeginSegment {
            channel_id,
            session,
            file,
            new_broadcast_id,
            now_ms,
            idle_timeout_ms,
            part,
            size,
            limits,
            ..
        } => {
            let begin = ingest::Begin {
                channel_id,
                session,
                file,
                new_broadcast_id,
                now_ms,
                idle_timeout_ms,
                part,
                size,
                limits,
            };
            ingest::begin_segment(store, sockets, begin).await
        }
        RoomRequest::SegmentStored {
            session,
            broadcast_id,
            file,
            size,
            init,
            now_ms,
        } => {
            let stored = ingest::Stored {
                session,
                broadcast_id,
                file,
                size,
                init,
                now_ms,
            };
            ingest::segment_stored(store, sockets, stored).await
        }
        RoomRequest::PartStored {
            session,
            broadcast_id,
            part,
            from_chunks,
            now_ms,
        } => {
            let stored = (part, from_chunks);
            parts::part_stored(store, &session, &broadcast_id, stored, now_ms).await
        }
        RoomRequest::PartChunk {
            session,
            broadcast_id,
            file,
            offset,
            data,
            now_ms,
        } => {
            let part = (broadcast_id.as_str(), file.as_str());
            parts::part_chunk(store, &session, part, offset, &data, now_ms).await
        }
        RoomRequest::PartBytes {
            broadcast_id,
            file,
            from,
            until_ms,
        } => parts::part_bytes(store, (&broadcast_id, &file), from, until_ms).await,
        RoomRequest::Playlist {
            session,
            rendition,
            playlist,
            now_ms,
            ..
        } => ingest::playlist(store, sockets, session, rendition, playlist, now_ms).await,
        RoomRequest::Ladder {
            session,
            variants,
            now_ms,
            ..
        } => ingest::ladder(store, sockets, session, variants, now_ms).await,
        RoomRequest::SetKeyVersion { version } => ingest::set_key_version(store, version).await,
        RoomRequest::CheckKey { .. } => Ok(RoomResponse::Done),
        RoomRequest::IngestRefused { reason, now_ms } => {
            ingest::ingest_refused(store, sockets, &reason, now_ms).await
        }
        RoomRequest::Finished { broadcast_id } => ending::finished(store, &broadcast_id).await,
        RoomRequest::Status { now_ms } => status::status(store, sockets, now_ms)
            .await
            .map(RoomResponse::Status),
        RoomRequest::Window {
            max_segments,
            rendition,
            now_ms,
            block,
        } => {
            let window = status::window(store, max_segments, rendition.as_deref(), now_ms).await?;
            let wait = block
                .zip(window.as_ref())
                .is_some_and(|(block, window)| parts::must_wait(window, &block));
            Ok(if wait {
                RoomResponse::Pending
            } else {
                RoomResponse::Window { window }
            })
        }
        RoomRequest::Notify { message } => {
            sockets.send_all(&message.to_string());
            Ok(RoomResponse::Done)
        }
        RoomRequest::LobbyUpdate { entry, live } => {
            lobby::update(store, sockets, entry, live).await
        }
        RoomRequest::LobbyList => lobby::list(store).await,
        RoomRequest::LobbyViewers { channel_id, count } => {
            lobby::viewers(store, sockets, channel_id, count).await
        }
        RoomRequest::ShardTick {
            shard,
            sockets: count,
            reactions,
            cursor,
            now_ms,
        } => shards::tick(store, sockets, shard, count, &reactions, cursor, now_ms).await,
    }
}

/// What the alarm did that the host must follow up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlarmOutcome {
    /// A broadcast ended (or an unconfirmed one is re-announced): record it.
    pub ended: Option<EndedBroadcast>,
    /// The viewer count to tell the lobby (at most every few seconds, see
    /// [`LOBBY_TELL_MS`]).
    pub viewers: Option<u64>,
    /// A presence shard's tick: the room to send it to and the request; hand the answer to
    /// [`ticked`].
    pub tick: Option<(String, RoomRequest)>,
}

/// The alarm: in a presence shard, its tick (see `shards`); in a room, pushes the gathered
/// viewer-count changes and reactions, ends a broadcast that fell silent (or whose end grace
/// passed), and re-announces an ended broadcast the catalogue has not confirmed. The sockets' push is asked for before the broadcast's deadlines, so a
/// deadline that replaces it stays the earlier one.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn alarm<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<AlarmOutcome, StoreError> {
    if let Some(tick) = shards::alarm(store, sockets, now_ms).await? {
        return Ok(AlarmOutcome {
            tick: Some(tick),
            ..AlarmOutcome::default()
        });
    }
    // Shards push their own viewer counts; the rest goes to them too.
    let pushed = sockets::presence_due(store, sockets, now_ms).await?;
    let viewers = sockets::lobby_count(store, sockets, pushed, now_ms).await?;
    let relayed = shards::Relayed::new(sockets);
    sockets::reactions_due(store, &relayed, now_ms).await?;
    let ended = ending::alarm(store, &relayed, now_ms).await?;
    relayed.relay(store).await?;
    Ok(AlarmOutcome {
        ended,
        viewers,
        tick: None,
    })
}

/// Liveness probe: counts the pings the room has answered, across requests.
async fn ping<S: RoomStore>(store: &S) -> Result<RoomResponse, StoreError> {
    let pings = store
        .load(state::PINGS_KEY)
        .await?
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
        + 1;
    store.save(state::PINGS_KEY, &pings.into()).await?;
    Ok(RoomResponse::Pong { pings })
}

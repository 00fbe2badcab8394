//! What a room keeps in its storage: the channel's state under [`STATE_KEY`], one
//! [`SegmentRecord`] per segment under [`segment_key`], the lobby's channels under
//! [`LOBBY_KEY`] and the ping counter under [`PINGS_KEY`], with the typed load/save helpers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::hls::{ListedSegment, PushedEntry};
use crate::model::room::{LastSummary, Refusal};
use crate::ports::RoomStore;

/// The channel's [`RoomState`].
pub(super) const STATE_KEY: &str = "state";
/// The lobby's live channels, by channel id.
pub(super) const LOBBY_KEY: &str = "lobby";
/// The number of pings the room has answered.
pub(super) const PINGS_KEY: &str = "pings";
/// When the gathered viewer-count changes are pushed (Unix ms); absent when none wait.
pub(super) const PRESENCE_DUE_KEY: &str = "presence_due_ms";

/// A channel room's state, saved whole after each change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct RoomState {
    /// The live broadcast, if any.
    pub live: Option<LiveState>,
    /// The last ended broadcast, for the status and the ended playlist.
    pub last: Option<LastBroadcast>,
    /// The last ingest refusal.
    pub refusal: Option<Refusal>,
    /// An ended broadcast the catalogue has not confirmed yet.
    pub unfinished: Option<Unfinished>,
}

/// The live broadcast and its live window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LiveState {
    pub channel_id: String,
    pub broadcast_id: String,
    /// The pusher's ingest session; another session is refused.
    pub session: String,
    pub started_at_ms: u64,
    pub last_activity_ms: u64,
    pub idle_timeout_ms: u64,
    /// Segments listed so far.
    pub listed: u64,
    pub listed_duration_ms: u64,
    /// The pusher's sequence number of the last entry listed (or skipped).
    pub last_listed_sequence: Option<u64>,
    /// The last [`super::WINDOW_KEEP`] listed segments.
    pub window: Vec<ListedSegment>,
    /// Stored segments not listed yet: file -> size.
    pub stored: BTreeMap<String, u64>,
    /// Playlist entries not listed yet, with when they were first seen.
    pub known: Vec<(PushedEntry, u64)>,
    pub target_duration_ms: u64,
    /// When the pusher's `ENDLIST` was first seen.
    pub ending_since_ms: Option<u64>,
}

/// The last ended broadcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LastBroadcast {
    pub summary: LastSummary,
    /// Its last segments, for the ended live playlist.
    pub window: Vec<ListedSegment>,
}

/// An ended broadcast whose segments are kept until the catalogue confirms it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Unfinished {
    pub channel_id: String,
    pub broadcast_id: String,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub reason: String,
}

/// One segment's record in room storage, under `seg/{broadcast}/{file}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SegmentRecord {
    pub file: String,
    pub size: u64,
    pub stored: bool,
    pub stored_at_ms: u64,
    /// Pusher's sequence number, once a playlist named it.
    pub sequence: Option<u64>,
    pub duration_ms: Option<u64>,
    /// Our listing, once listed.
    pub listed: Option<ListedSegment>,
}

impl SegmentRecord {
    /// A record of `file`, neither named by a playlist nor listed yet.
    pub fn new(file: String, size: u64, stored: bool, now_ms: u64) -> Self {
        SegmentRecord {
            file,
            size,
            stored,
            stored_at_ms: now_ms,
            sequence: None,
            duration_ms: None,
            listed: None,
        }
    }
}

/// The prefix of every segment record of a broadcast.
pub(super) fn segments_prefix(broadcast_id: &str) -> String {
    format!("seg/{broadcast_id}/")
}

/// The key of one segment record.
pub(super) fn segment_key(broadcast_id: &str, file: &str) -> String {
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

/// A stored value that does not decode (or a value that does not encode).
pub(super) fn backend(e: serde_json::Error) -> StoreError {
    StoreError::backend("room_state", e)
}

/// The value under `key`, or the type's default when there is none.
pub(super) async fn load<S: RoomStore, T: for<'de> Deserialize<'de> + Default>(
    store: &S,
    key: &str,
) -> Result<T, StoreError> {
    match store.load(key).await? {
        Some(v) => serde_json::from_value(v).map_err(backend),
        None => Ok(T::default()),
    }
}

/// The segment record under `key`, if there is one.
pub(super) async fn load_segment<S: RoomStore>(
    store: &S,
    key: &str,
) -> Result<Option<SegmentRecord>, StoreError> {
    match store.load(key).await? {
        Some(v) => serde_json::from_value(v).map(Some).map_err(backend),
        None => Ok(None),
    }
}

/// Saves `value` under `key`.
pub(super) async fn save<S: RoomStore, T: Serialize>(
    store: &S,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    store
        .save(key, &serde_json::to_value(value).map_err(backend)?)
        .await
}

/// Asks for the alarm at `at_ms`, or earlier when a viewer-count push is due before it: the
/// one alarm serves both the broadcast's deadlines and presence ([`super::sockets`]).
pub(super) async fn schedule<S: RoomStore>(store: &S, at_ms: u64) -> Result<(), StoreError> {
    let presence: Option<u64> = load(store, PRESENCE_DUE_KEY).await?;
    store
        .set_alarm(presence.map_or(at_ms, |due| due.min(at_ms)))
        .await
}

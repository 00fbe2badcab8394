//! What a room keeps in its storage: the channel's state under [`STATE_KEY`], one
//! [`SegmentRecord`] per segment under [`segment_key`], the lobby's channels under
//! [`LOBBY_KEY`] and their big audiences under [`AUDIENCES_KEY`], the ping counter under
//! [`PINGS_KEY`], and the sockets' pending pushes under
//! [`PRESENCE_DUE_KEY`], [`REACTIONS_KEY`] and [`LOBBY_DUE_KEY`], with the typed load/save
//! helpers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::hls::{ListedSegment, PushedEntry, Variant};
use crate::model::isobmff::InitInfo;
use crate::model::room::{LastSummary, Refusal};
use crate::ports::RoomStore;

/// The channel's [`RoomState`].
pub(super) const STATE_KEY: &str = "state";
/// The lobby's live channels, by channel id.
pub(super) const LOBBY_KEY: &str = "lobby";
/// The lobby's remembered big audiences, by channel id (see `lobby`).
pub(super) const AUDIENCES_KEY: &str = "lobby_audiences";
/// The number of pings the room has answered.
pub(super) const PINGS_KEY: &str = "pings";
/// When the gathered viewer-count changes are pushed (Unix ms); absent when none wait.
pub(super) const PRESENCE_DUE_KEY: &str = "presence_due_ms";
/// The reactions gathered since the last push ([`PendingReactions`]); absent when none wait.
pub(super) const REACTIONS_KEY: &str = "reactions_pending";
/// When a viewer count held back from the lobby is told after all (Unix ms); absent when
/// none waits (see `sockets::lobby_count`).
pub(super) const LOBBY_DUE_KEY: &str = "lobby_due_ms";

/// Reactions accepted since the last push, counted per emoji, and when they are pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PendingReactions {
    /// When they go out (Unix ms).
    pub due_ms: u64,
    /// How many of each emoji.
    pub counts: BTreeMap<String, u32>,
}

/// How long after `#EXT-X-ENDLIST` the room waits for uploads still in flight, in ms.
pub(super) const ENDING_GRACE_MS: u64 = 5_000;
/// How often an unconfirmed ended broadcast is re-announced, in ms.
pub(super) const FINISH_RETRY_MS: u64 = 30_000;
/// How long an ingest refusal stays in the channel status, in ms.
pub(super) const REFUSAL_SHOWN_MS: u64 = 10 * 60_000;
/// The segment duration assumed until a playlist names one, in ms.
pub(super) const DEFAULT_TARGET_MS: u64 = 2000;
/// The rendition of a plain push (ffmpeg's `index.m3u8`).
pub(super) const DEFAULT_RENDITION: &str = "index";

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
    /// A multivariant playlist pushed before the broadcast's first segment (ffmpeg pushes
    /// it once, and with MPEG-TS before any segment is in), for the broadcast it starts.
    #[serde(default)]
    pub early_ladder: Option<EarlyLadder>,
}

impl RoomState {
    /// The live broadcast `broadcast_id` of the ingest session `session`, if it is still the
    /// live one (an upload that outlived its broadcast, or another pusher's, gets `None`).
    pub fn live_of(&mut self, broadcast_id: &str, session: &str) -> Option<&mut LiveState> {
        self.live
            .as_mut()
            .filter(|l| l.broadcast_id == broadcast_id && l.session == session)
    }
}

/// A multivariant playlist that came before its broadcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EarlyLadder {
    pub session: String,
    pub variants: Vec<Variant>,
    pub at_ms: u64,
}

/// The live broadcast: its renditions' live windows and what the pusher declared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LiveState {
    pub channel_id: String,
    pub broadcast_id: String,
    /// The pusher's ingest session; another session is refused.
    pub session: String,
    pub started_at_ms: u64,
    pub last_activity_ms: u64,
    pub idle_timeout_ms: u64,
    /// Each rendition's window, by name (`index` for a plain ffmpeg push).
    #[serde(default)]
    pub renditions: BTreeMap<String, Rendition>,
    /// The rendition whose playlist came first (the primary one until a ladder is pushed).
    #[serde(default)]
    pub first_rendition: Option<String>,
    /// The renditions the first multivariant playlist declared (later ones may only drop
    /// some), and the current ladder viewers are offered.
    #[serde(default)]
    pub declared: Vec<Variant>,
    #[serde(default)]
    pub ladder: Option<Vec<Variant>>,
    /// Stored init segments: file -> what they declare.
    #[serde(default)]
    pub inits: BTreeMap<String, InitInfo>,
    /// Stored segments not listed yet: file -> size.
    pub stored: BTreeMap<String, u64>,
    /// When the pusher's first `ENDLIST` was seen.
    pub ending_since_ms: Option<u64>,
    /// Each rendition's recent low-latency parts, by name.
    #[serde(default)]
    pub parts: BTreeMap<String, super::parts::PartTrack>,
    /// Segments begun in this broadcast (its quota counts them).
    #[serde(default)]
    pub segments: u64,
    /// Bytes of segments and parts begun in this broadcast.
    #[serde(default)]
    pub bytes: u64,
    /// The parts whose chunks the room keeps (see `parts::part_chunk`), oldest first.
    #[serde(default)]
    pub chunked: Vec<String>,
}

/// One rendition's live window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Rendition {
    /// Segments listed so far.
    pub listed: u64,
    pub listed_duration_ms: u64,
    /// The pusher's sequence number of the last entry listed (or skipped).
    pub last_listed_sequence: Option<u64>,
    /// The last [`super::WINDOW_KEEP`] listed segments.
    pub window: Vec<ListedSegment>,
    /// Playlist entries not listed yet, with when they were first seen.
    pub known: Vec<(PushedEntry, u64)>,
    pub target_duration_ms: u64,
    /// The init segment of its CMAF segments (fixed by its first playlist; `None`: MPEG-TS).
    pub map: Option<String>,
    /// Whether its playlist carried `ENDLIST`.
    pub end_list: bool,
}

impl LiveState {
    /// The rendition recorded as the video and counted in the status: the ladder's highest
    /// bandwidth one that has a playlist, else the first that had one.
    pub fn primary(&self) -> Option<&str> {
        self.ladder
            .iter()
            .flatten()
            .filter(|v| self.renditions.contains_key(&v.rendition))
            .max_by_key(|v| v.bandwidth)
            .map(|v| v.rendition.as_str())
            .or(self.first_rendition.as_deref())
    }

    /// The primary rendition's window.
    pub fn primary_rendition(&self) -> Option<&Rendition> {
        self.primary().and_then(|name| self.renditions.get(name))
    }
}

/// The last ended broadcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LastBroadcast {
    pub summary: LastSummary,
    /// The primary rendition's last segments, for the ended live playlist.
    pub window: Vec<ListedSegment>,
    /// Every rendition's last segments, and the ladder when one was pushed.
    #[serde(default)]
    pub renditions: BTreeMap<String, Vec<ListedSegment>>,
    #[serde(default)]
    pub ladder: Option<Vec<Variant>>,
}

/// An ended broadcast whose segments are kept until the catalogue confirms it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Unfinished {
    pub channel_id: String,
    pub broadcast_id: String,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub reason: String,
    /// The primary rendition, the ladder and each rendition's init segment, to rebuild the
    /// recording's renditions when it is re-announced.
    #[serde(default)]
    pub primary: Option<String>,
    /// Whether it had several renditions (then a segment no playlist named is left out).
    #[serde(default)]
    pub several: bool,
    #[serde(default)]
    pub ladder: Option<Vec<Variant>>,
    #[serde(default)]
    pub maps: BTreeMap<String, String>,
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
    /// The rendition whose playlist named it.
    #[serde(default)]
    pub rendition: Option<String>,
    /// Whether it is an init segment (never listed itself).
    #[serde(default)]
    pub init: bool,
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
            rendition: None,
            init: false,
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

/// The pending push under `key` (a [`PRESENCE_DUE_KEY`] time, [`PendingReactions`]) once it
/// is due at `now_ms`, taken out of storage. Not yet due (an earlier deadline woke the room):
/// the alarm is asked again for it, and `None`. Nothing pending: `None`.
pub(super) async fn take_due<S: RoomStore, T: for<'de> Deserialize<'de>>(
    store: &S,
    key: &str,
    now_ms: u64,
    due_ms: impl Fn(&T) -> u64,
) -> Result<Option<T>, StoreError> {
    let Some(pending) = load::<S, Option<T>>(store, key).await? else {
        return Ok(None);
    };
    let due = due_ms(&pending);
    if due > now_ms {
        schedule(store, due).await?;
        return Ok(None);
    }
    store.delete(&[key.to_owned()]).await?;
    Ok(Some(pending))
}

/// Asks for the alarm at `at_ms`, or earlier when a viewer-count or reaction push is due
/// before it: the one alarm serves the broadcast's deadlines and the sockets' pushes
/// ([`super::sockets`]).
pub(super) async fn schedule<S: RoomStore>(store: &S, at_ms: u64) -> Result<(), StoreError> {
    let presence: Option<u64> = load(store, PRESENCE_DUE_KEY).await?;
    let reactions: Option<PendingReactions> = load(store, REACTIONS_KEY).await?;
    let lobby: Option<u64> = load(store, LOBBY_DUE_KEY).await?;
    let due = [presence, reactions.map(|r| r.due_ms), lobby]
        .into_iter()
        .flatten()
        .fold(at_ms, u64::min);
    store.set_alarm(due).await
}

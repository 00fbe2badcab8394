//! The messages a live room answers (the [`crate::ports::Live`] port carries them): what the
//! worker asks a channel's room or the lobby ([`RoomRequest`]) and what it answers
//! ([`RoomResponse`]), with the broadcasts and statuses they carry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::hls::{ListedSegment, PushedPlaylist, Variant};
use crate::model::isobmff::InitInfo;

/// Bytes that a room message carries (and a room stores) as one base64 string in JSON.
pub mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Writes `bytes` as a base64 string.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    /// Reads a base64 string.
    ///
    /// # Errors
    /// Not a string, or not base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(D::Error::custom)
    }
}

/// The name of the lobby room.
pub const LOBBY: &str = "lobby";

/// A request to a room, sent by the worker as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RoomRequest {
    /// Liveness probe: the room counts the pings it has answered, across requests.
    Ping,
    /// A segment upload begins: starts a broadcast if none is live, refuses another pusher.
    BeginSegment {
        /// The channel.
        channel_id: String,
        /// The ingest session of the pusher.
        session: String,
        /// The stream-key version the ingest URL was signed with.
        key_version: i64,
        /// The segment's file name.
        file: String,
        /// The id to use if this starts a broadcast.
        new_broadcast_id: String,
        /// Now, Unix ms.
        now_ms: u64,
        /// Silence after which the broadcast ends, in ms.
        idle_timeout_ms: u64,
        /// Whether the file is a low-latency part (no segment record is kept for it).
        #[serde(default)]
        part: bool,
        /// The file's size in bytes (counted toward the broadcast's byte quota).
        #[serde(default)]
        size: u64,
        /// The broadcast's quotas.
        #[serde(default)]
        limits: BroadcastLimits,
    },
    /// A segment is stored in the blob store.
    SegmentStored {
        /// The ingest session.
        session: String,
        /// The broadcast it belongs to.
        broadcast_id: String,
        /// The segment's file name.
        file: String,
        /// Its size in bytes.
        size: u64,
        /// What it declares, when it is a CMAF init segment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init: Option<InitInfo>,
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// A low-latency part is stored in the blob store: listed in its rendition's part window.
    PartStored {
        /// The ingest session.
        session: String,
        /// The broadcast it belongs to.
        broadcast_id: String,
        /// The part.
        part: StoredPart,
        /// Whether it was made of the chunks the room holds (else any chunks of it the
        /// room holds are dropped: its viewers read the blob).
        #[serde(default)]
        from_chunks: bool,
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// A chunk of a low-latency part still being made (a pusher that streams its parts
    /// sends each as chunks, `offset` its first byte's place in the part, then commits the
    /// part): kept by the room so that viewers of the preload hint get the part's bytes as
    /// they come (answers [`RoomResponse::Stored`], or [`RoomResponse::Conflict`] for a
    /// chunk that does not follow the part's bytes).
    PartChunk {
        /// The ingest session.
        session: String,
        /// The broadcast it belongs to.
        broadcast_id: String,
        /// The part's file name.
        file: String,
        /// Where the chunk starts in the part.
        offset: u64,
        /// The chunk's bytes (base64 in JSON).
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// The bytes of a part of the live broadcast from byte `from` on: the room's chunks
    /// past `from` ([`RoomResponse::PartBytes`]); [`RoomResponse::Pending`] while the part is
    /// the next one expected (the one its playlists hint) and nothing past `from` has come
    /// yet; [`RoomResponse::Done`] when the room keeps no chunks of it (read the blob).
    PartBytes {
        /// The broadcast.
        broadcast_id: String,
        /// The part's file name.
        file: String,
        /// The first byte wanted.
        from: u64,
        /// Until when a host that holds requests keeps this one waiting, Unix ms (0: answer
        /// at once).
        until_ms: u64,
    },
    /// The pusher sent the media playlist of one rendition.
    Playlist {
        /// The ingest session.
        session: String,
        /// The stream-key version the ingest URL was signed with.
        key_version: i64,
        /// The rendition (the playlist's file name without `.m3u8`).
        rendition: String,
        /// The parsed playlist.
        playlist: PushedPlaylist,
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// The pusher sent its multivariant playlist: the renditions viewers are offered.
    Ladder {
        /// The ingest session.
        session: String,
        /// The stream-key version the ingest URL was signed with.
        key_version: i64,
        /// The variants, in the pusher's order.
        variants: Vec<Variant>,
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// The channel's current stream-key version (after a rotation, or learned from the
    /// catalogue): ingest URLs of any other version are refused from now on.
    SetKeyVersion {
        /// The version.
        version: i64,
    },
    /// Checks an ingest URL's stream-key version without changing anything (answers
    /// [`RoomResponse::Done`], `KeyUnknown` or `KeyRefused`).
    CheckKey {
        /// The stream-key version the ingest URL was signed with.
        key_version: i64,
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// An ingest request for this channel was refused; shown in the status and pushed.
    IngestRefused {
        /// Why.
        reason: String,
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// The catalogue has recorded the ended broadcast; its segment list may be dropped.
    Finished {
        /// The broadcast.
        broadcast_id: String,
    },
    /// The channel's live status and viewer count.
    Status {
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// The live window for the live playlist.
    Window {
        /// Most segments to return.
        max_segments: usize,
        /// The rendition; `None` for the channel's playlist (the ladder when one was
        /// pushed, the only rendition's window otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rendition: Option<String>,
        /// The time of the request (an ended broadcast is listed for a while only).
        #[serde(default)]
        now_ms: u64,
        /// A blocking playlist reload: answer [`RoomResponse::Pending`] until the window
        /// holds this segment or part.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        block: Option<Block>,
    },
    /// Pushes a message to every connected client.
    Notify {
        /// The message.
        message: serde_json::Value,
    },
    /// Lobby: a channel went live or ended.
    LobbyUpdate {
        /// The channel.
        entry: LobbyEntry,
        /// Whether it is live now.
        live: bool,
    },
    /// Lobby: the live channels.
    LobbyList,
    /// From a presence shard of the channel (see [`crate::room::shard_room`]), once per
    /// tick while it holds sockets: how many it holds and the reactions they sent since its
    /// last tick. Answered [`RoomResponse::ShardTicked`].
    ShardTick {
        /// The shard's number (1 and up; 0 is the room itself).
        shard: u32,
        /// The sockets it holds now.
        sockets: u64,
        /// Reactions its sockets sent since its last tick, per emoji.
        #[serde(default)]
        reactions: std::collections::BTreeMap<String, u32>,
        /// The first message of the room's relay the shard has not had; `None` for a shard
        /// that has had none yet (it starts from the next one).
        #[serde(default)]
        cursor: Option<u64>,
        /// The time of the tick.
        now_ms: u64,
    },
    /// Lobby: a channel's connected viewers (told by its room once per presence push);
    /// kept with the channel's entry and pushed to the lobby's sockets.
    LobbyViewers {
        /// The channel.
        channel_id: String,
        /// Its connected viewers, over all its presence shards.
        count: u64,
    },
}

impl RoomRequest {
    /// The request's `op` tag, for counters and logs.
    pub fn op(&self) -> &'static str {
        match self {
            RoomRequest::Ping => "ping",
            RoomRequest::BeginSegment { .. } => "begin_segment",
            RoomRequest::SegmentStored { .. } => "segment_stored",
            RoomRequest::PartStored { .. } => "part_stored",
            RoomRequest::PartChunk { .. } => "part_chunk",
            RoomRequest::PartBytes { .. } => "part_bytes",
            RoomRequest::Playlist { .. } => "playlist",
            RoomRequest::Ladder { .. } => "ladder",
            RoomRequest::SetKeyVersion { .. } => "set_key_version",
            RoomRequest::CheckKey { .. } => "check_key",
            RoomRequest::IngestRefused { .. } => "ingest_refused",
            RoomRequest::Finished { .. } => "finished",
            RoomRequest::Status { .. } => "status",
            RoomRequest::Window { .. } => "window",
            RoomRequest::Notify { .. } => "notify",
            RoomRequest::LobbyUpdate { .. } => "lobby_update",
            RoomRequest::LobbyList => "lobby_list",
            RoomRequest::LobbyViewers { .. } => "lobby_viewers",
            RoomRequest::ShardTick { .. } => "shard_tick",
        }
    }

    /// Whether the request leaves the live windows and parts as they were (it only reads
    /// them): a held request waits for one that does not. Presence (shard ticks, viewer
    /// counts) never changes what a held request waits for.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            RoomRequest::Ping
                | RoomRequest::Status { .. }
                | RoomRequest::Window { .. }
                | RoomRequest::PartBytes { .. }
                | RoomRequest::CheckKey { .. }
                | RoomRequest::LobbyList
                | RoomRequest::LobbyViewers { .. }
                | RoomRequest::ShardTick { .. }
        )
    }

    /// Until when a host that holds requests may keep this one waiting (Unix ms), when it
    /// may wait at all.
    pub fn hold_until_ms(&self) -> Option<u64> {
        match self {
            RoomRequest::Window {
                block: Some(block), ..
            } => Some(block.until_ms),
            RoomRequest::PartBytes { until_ms, .. } => Some(*until_ms),
            _ => None,
        }
    }

    /// The request that answers at once with what the room has (the hold is over).
    #[must_use]
    pub fn without_hold(self) -> Self {
        match self {
            RoomRequest::Window {
                max_segments,
                rendition,
                now_ms,
                ..
            } => RoomRequest::Window {
                max_segments,
                rendition,
                now_ms,
                block: None,
            },
            RoomRequest::PartBytes {
                broadcast_id,
                file,
                from,
                ..
            } => RoomRequest::PartBytes {
                broadcast_id,
                file,
                from,
                until_ms: 0,
            },
            other => other,
        }
    }
}

/// What a blocking playlist reload waits for: segment `msn`, or part `part` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// `_HLS_msn`.
    pub msn: u64,
    /// `_HLS_part`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u64>,
    /// Until when a host that holds requests keeps the request waiting, Unix ms.
    pub until_ms: u64,
}

/// A low-latency part as its upload describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPart {
    /// The rendition.
    pub rendition: String,
    /// The file name of the segment it is part of.
    pub segment: String,
    /// The pusher's sequence number of that segment.
    pub sequence: u64,
    /// Its index within the segment, from 0.
    pub index: u64,
    /// Its file name.
    pub file: String,
    /// Its duration, in microseconds.
    pub duration_us: u64,
    /// The pusher's part target duration, in microseconds.
    pub target_us: u64,
    /// Whether it starts with a keyframe.
    pub independent: bool,
}

/// A room's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RoomResponse {
    /// Answer to [`RoomRequest::Ping`].
    Pong {
        /// Pings answered by this room, this one included.
        pings: u64,
    },
    /// The segment may be stored under this broadcast.
    Began {
        /// The live broadcast.
        broadcast_id: String,
        /// Set when this segment started the broadcast.
        started: Option<StartedBroadcast>,
    },
    /// The room does not know the channel's stream-key version yet: send
    /// [`RoomRequest::SetKeyVersion`] and ask again.
    KeyUnknown,
    /// The ingest URL's stream-key version is not the channel's (the key was rotated);
    /// the refusal is recorded in the status, nothing else changed.
    KeyRefused {
        /// Why.
        reason: String,
    },
    /// The request conflicts with the live broadcast (a second pusher); nothing changed.
    Conflict {
        /// Why.
        reason: String,
    },
    /// The pushed playlist contradicts the broadcast (an unknown rendition, changed codecs,
    /// too many renditions); nothing changed.
    Invalid {
        /// What is contradicted.
        code: Contradiction,
        /// Why.
        reason: String,
    },
    /// The segment is recorded; `ended` is set when it completed an ending broadcast.
    Stored {
        /// The broadcast that ended, if any.
        ended: Option<EndedBroadcast>,
    },
    /// The playlist is applied.
    PlaylistAccepted {
        /// Segments listed in the live window so far.
        listed: u64,
        /// The broadcast that ended, if any.
        ended: Option<EndedBroadcast>,
    },
    /// The channel status.
    Status(RoomStatus),
    /// The live window, if the channel has one.
    Window {
        /// The window; `None` when the channel has never been live.
        window: Option<LiveWindow>,
    },
    /// Answer to [`RoomRequest::PartBytes`]: the part's bytes the room has past `from`
    /// (base64; empty when it has none past it) and whether the part is complete (then
    /// nothing more comes).
    PartBytes {
        /// The bytes (base64 in JSON).
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        /// Whether the part is stored whole.
        complete: bool,
    },
    /// Done.
    Done,
    /// A held request cannot be answered yet: a host that holds requests asks again after
    /// the room changed or once the hold is over (then with [`RoomRequest::without_hold`]).
    Pending,
    /// The live channels.
    Lobby {
        /// One entry per live channel.
        channels: Vec<LobbyEntry>,
        /// The audience expected on channels that had a big one, by channel id: while live,
        /// the peak viewer count of the broadcast before; while not, of the last one (see
        /// `room::lobby`).
        #[serde(default)]
        expected: BTreeMap<String, u64>,
    },
    /// Answer to [`RoomRequest::ShardTick`]: what the shard passes on to its sockets.
    ShardTicked {
        /// The channel's status, its viewers counted over every shard (for joiners'
        /// `hello`).
        status: RoomStatus,
        /// The messages the room pushed to its own sockets since the tick's cursor (JSON
        /// texts, in order; viewer counts excepted: the shard pushes `status.viewers`).
        messages: Vec<String>,
        /// The cursor of the shard's next tick.
        cursor: u64,
    },
}

/// How a pushed playlist contradicts the live broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Contradiction {
    /// A rendition the multivariant playlist does not name (or a new one in a later ladder).
    UnknownRendition,
    /// One rendition more than [`crate::model::hls::MAX_RENDITIONS`].
    TooManyRenditions,
    /// A rendition's codecs, init segment or container changed mid-broadcast.
    CodecsChanged,
    /// The codecs declared for a rendition are not those of its init segment.
    CodecsMismatch,
    /// The broadcast has had its quota of segments or bytes ([`BroadcastLimits`]).
    QuotaExceeded,
}

/// How much one broadcast may store (`MAX_BROADCAST_SEGMENTS`, `MAX_BROADCAST_BYTES`); 0 is
/// no limit (rooms told by an older worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastLimits {
    /// Segments, all renditions together (parts are not segments).
    pub segments: u64,
    /// Bytes of segments and parts.
    pub bytes: u64,
}

impl BroadcastLimits {
    /// Why a broadcast that has begun `segments` segments and `bytes` bytes may not take
    /// one more file of `size` bytes (a segment unless `part`), if it may not.
    pub fn refusal(self, segments: u64, bytes: u64, size: u64, part: bool) -> Option<String> {
        let next_segments = segments + u64::from(!part);
        if self.segments > 0 && next_segments > self.segments {
            return Some(format!(
                "this broadcast has stored its {} segments, the most one broadcast may; \
                 start a new one",
                self.segments
            ));
        }
        if self.bytes > 0 && bytes.saturating_add(size) > self.bytes {
            return Some(format!(
                "this broadcast has stored {bytes} of its {} bytes, the most one broadcast \
                 may; start a new one",
                self.bytes
            ));
        }
        None
    }
}

impl Contradiction {
    /// The error code the pusher is told.
    pub fn code(self) -> &'static str {
        match self {
            Contradiction::UnknownRendition => "unknown_rendition",
            Contradiction::TooManyRenditions => "too_many_renditions",
            Contradiction::CodecsChanged => "codecs_changed",
            Contradiction::CodecsMismatch => "codecs_mismatch",
            Contradiction::QuotaExceeded => "quota_exceeded",
        }
    }
}

/// A broadcast that has just started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedBroadcast {
    /// The channel.
    pub channel_id: String,
    /// The broadcast.
    pub broadcast_id: String,
    /// Start, Unix ms.
    pub started_at_ms: u64,
}

/// A broadcast that has ended, with its whole recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedBroadcast {
    /// The channel.
    pub channel_id: String,
    /// The broadcast.
    pub broadcast_id: String,
    /// The video made of it (`None` when no segment was received).
    pub video_id: Option<String>,
    /// Start, Unix ms.
    pub started_at_ms: u64,
    /// End, Unix ms.
    pub ended_at_ms: u64,
    /// `endlist` (the pusher said so) or `timeout` (silence).
    pub reason: String,
    /// Every stored segment of the top rendition (the one recorded as the video), in order.
    pub segments: Vec<ListedSegment>,
    /// Every rendition of the last ladder with its segments, when the pusher pushed a
    /// multivariant playlist (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<RecordedRendition>,
}

/// One rendition of a recording: what players are told of it and its segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRendition {
    /// The variant (codecs resolved from the init segment where the pusher declared none).
    pub variant: Variant,
    /// Its stored segments, in order.
    pub segments: Vec<ListedSegment>,
}

/// A channel's status as the room knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoomStatus {
    /// The live broadcast, if any.
    pub live: Option<LiveSummary>,
    /// Connected viewers.
    pub viewers: u64,
    /// The last ingest refusal, if recent.
    pub ingest_refused: Option<Refusal>,
    /// The last ended broadcast.
    pub last_broadcast: Option<LastSummary>,
}

/// The live broadcast in a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LiveSummary {
    /// The broadcast.
    pub broadcast_id: String,
    /// Start, Unix ms.
    pub started_at_ms: u64,
    /// Segments listed so far.
    pub segments: u64,
    /// Duration listed so far, ms.
    pub duration_ms: u64,
}

/// The last ended broadcast in a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LastSummary {
    /// The broadcast.
    pub broadcast_id: String,
    /// Its video.
    pub video_id: Option<String>,
    /// End, Unix ms.
    pub ended_at_ms: u64,
    /// Why it ended.
    pub reason: String,
}

/// A refused ingest request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Refusal {
    /// Why.
    pub reason: String,
    /// When, Unix ms.
    pub at_ms: u64,
}

/// The segments a live playlist lists, or the ladder of a multivariant one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveWindow {
    /// The broadcast.
    pub broadcast_id: String,
    /// The last segments, in order.
    pub segments: Vec<ListedSegment>,
    /// Whether the broadcast has ended (the playlist gets `ENDLIST`).
    pub ended: bool,
    /// The renditions offered, with their codecs, when the channel's playlist is a
    /// multivariant one (then `segments` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Vec<Variant>>,
    /// The rendition's recent parts, when the pusher sends low-latency parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_latency: Option<PartWindow>,
}

/// The parts a low-latency playlist lists: those of its last few segments and of the
/// segment being made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartWindow {
    /// `PART-TARGET`, in microseconds.
    pub part_target_us: u64,
    /// The parts, in order; a part of the segment being made has the sequence number after
    /// the window's last segment.
    pub parts: Vec<WindowPart>,
    /// The file name of the next part, before it exists.
    pub preload_hint: Option<String>,
    /// Where the ladder's other renditions with parts are (`EXT-X-RENDITION-REPORT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<PartReport>,
}

/// Where another rendition's newest segment and part are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartReport {
    /// The rendition.
    pub rendition: String,
    /// The sequence number of its newest segment with parts (the one being made, when it
    /// has parts).
    pub last_msn: u64,
    /// The index of its newest part in that segment.
    pub last_part: Option<u64>,
}

/// One part in a [`PartWindow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPart {
    /// The sequence number of its segment (our numbering, as [`ListedSegment::seq`]).
    pub msn: u64,
    /// Its index within the segment.
    pub index: u64,
    /// Its file name.
    pub file: String,
    /// Its duration, in microseconds.
    pub duration_us: u64,
    /// Whether it starts with a keyframe.
    pub independent: bool,
}

/// A live channel in the lobby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LobbyEntry {
    /// The channel.
    pub channel_id: String,
    /// Its name.
    pub name: String,
    /// The live broadcast.
    pub broadcast_id: String,
    /// Start, Unix ms.
    pub started_at_ms: u64,
    /// Its connected viewers, as its room last told the lobby (0 until it does).
    #[serde(default)]
    pub viewers: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_bytes_travel_as_one_base64_string() {
        let answer = RoomResponse::PartBytes {
            data: b"moof".to_vec(),
            complete: false,
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["data"], "bW9vZg==");
        assert_eq!(
            serde_json::from_value::<RoomResponse>(json).unwrap(),
            answer
        );
        let bad = serde_json::json!({"op": "part_bytes", "data": "not base64!", "complete": true});
        assert!(serde_json::from_value::<RoomResponse>(bad).is_err());
    }
}

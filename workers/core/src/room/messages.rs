//! Every message a room pushes to the sockets it holds (the watch page in a channel's room,
//! API clients in the lobby), as one typed [`ServerMessage`] tagged by `type`.
//!
//! The JSON is the wire contract of `web/*.js` and the end-to-end tests: each variant has a
//! test below that pins its exact text.

use serde::Serialize;

use crate::model::room::{LobbyEntry, RoomStatus};
use crate::ports::RoomSockets;

/// Why a client's message was refused (the `code` of an [`ServerMessage::Error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketErrorCode {
    /// Not JSON, too long, of an unknown type, or not allowed here.
    InvalidMessage,
    /// A reaction outside [`super::REACTIONS`].
    InvalidReaction,
    /// Too many reactions in the rate-limit window.
    RateLimited,
}

/// A message pushed to browsers over a room's WebSockets.
///
/// Some types have two shapes: one in a channel's room and one in the lobby (which names the
/// channel), e.g. [`ServerMessage::Live`] and [`ServerMessage::LobbyLive`] are both `live`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Channel room: a broadcast started.
    Live {
        /// The channel.
        channel_id: String,
        /// The broadcast.
        broadcast_id: String,
        /// Start, Unix ms.
        started_at_ms: u64,
    },
    /// Lobby: a channel went live.
    #[serde(rename = "live")]
    LobbyLive(LobbyEntry),
    /// Channel room: the broadcast ended.
    Ended {
        /// The channel.
        channel_id: String,
        /// The broadcast.
        broadcast_id: String,
        /// The video made of it (`null` when no segment was received).
        video_id: Option<String>,
        /// `endlist` or `timeout`.
        reason: String,
    },
    /// Lobby: a channel's broadcast ended.
    #[serde(rename = "ended")]
    LobbyEnded(LobbyEntry),
    /// Channel room: the number of connected viewers changed.
    Viewers {
        /// Connected viewers (over all the channel's presence shards).
        count: u64,
    },
    /// Lobby: a channel's viewer count changed.
    #[serde(rename = "viewers")]
    LobbyViewers {
        /// The channel.
        channel_id: String,
        /// Its connected viewers.
        count: u64,
    },
    /// Channel room: an ingest request was refused (e.g. a second pusher).
    IngestRefused {
        /// Why.
        reason: String,
    },
    /// To a client that just joined: the channel's status.
    Hello {
        /// The status, as `GET /api/channels/{id}` reports the live part of it.
        status: RoomStatus,
        /// The presence shard that holds the connection (0: the channel's room itself).
        shard: u32,
    },
    /// The answer to a client's ping.
    Pong,
    /// To one client: its message was refused.
    Error {
        /// Why, for programs.
        code: SocketErrorCode,
        /// Why, for people.
        message: String,
    },
    /// Channel room: the reactions viewers sent since the last push (one push per
    /// [`super::REACTION_PUSH_MS`] at most).
    Reactions {
        /// How many of each emoji (one of [`super::REACTIONS`]).
        counts: std::collections::BTreeMap<String, u32>,
        /// When the room pushed them, Unix ms.
        at_ms: u64,
    },
    /// Channel room and lobby: a recording was published.
    VideoPublished {
        /// The video.
        video_id: String,
        /// Its channel.
        channel_id: String,
        /// Its title.
        title: String,
    },
    /// Channel room: the transcoder delivered the recording's MP4.
    VideoReady {
        /// The video.
        video_id: String,
    },
}

impl ServerMessage {
    /// The message as a JSON value (what [`crate::model::room::RoomRequest::Notify`] carries).
    ///
    /// Its keys are sorted (serde_json's map without `preserve_order`), so the text is the
    /// same as the `json!` literals these messages used to be.
    pub fn to_value(&self) -> serde_json::Value {
        // Strings, numbers, options and derived structs: serialising cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The message's JSON text, as sent on a socket.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// Sends the message to every socket of the room.
    pub fn send_to(&self, sockets: &dyn RoomSockets) {
        sockets.send_all(&self.to_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::room::{LastSummary, LiveSummary, Refusal};

    fn entry() -> LobbyEntry {
        LobbyEntry {
            channel_id: "ch_a".into(),
            name: "A".into(),
            broadcast_id: "brd_1".into(),
            started_at_ms: 5,
            viewers: 0,
        }
    }

    #[track_caller]
    fn pins(message: ServerMessage, json: &str) {
        assert_eq!(message.to_json(), json);
    }

    #[test]
    fn live() {
        pins(
            ServerMessage::Live {
                channel_id: "ch_a".into(),
                broadcast_id: "brd_1".into(),
                started_at_ms: 5,
            },
            r#"{"broadcast_id":"brd_1","channel_id":"ch_a","started_at_ms":5,"type":"live"}"#,
        );
    }

    #[test]
    fn lobby_live() {
        pins(
            ServerMessage::LobbyLive(entry()),
            r#"{"broadcast_id":"brd_1","channel_id":"ch_a","name":"A","started_at_ms":5,"type":"live","viewers":0}"#,
        );
    }

    #[test]
    fn ended() {
        pins(
            ServerMessage::Ended {
                channel_id: "ch_a".into(),
                broadcast_id: "brd_1".into(),
                video_id: Some("vid_1".into()),
                reason: "endlist".into(),
            },
            r#"{"broadcast_id":"brd_1","channel_id":"ch_a","reason":"endlist","type":"ended","video_id":"vid_1"}"#,
        );
        pins(
            ServerMessage::Ended {
                channel_id: "ch_a".into(),
                broadcast_id: "brd_1".into(),
                video_id: None,
                reason: "timeout".into(),
            },
            r#"{"broadcast_id":"brd_1","channel_id":"ch_a","reason":"timeout","type":"ended","video_id":null}"#,
        );
    }

    #[test]
    fn lobby_ended() {
        pins(
            ServerMessage::LobbyEnded(entry()),
            r#"{"broadcast_id":"brd_1","channel_id":"ch_a","name":"A","started_at_ms":5,"type":"ended","viewers":0}"#,
        );
    }

    #[test]
    fn viewers() {
        pins(
            ServerMessage::Viewers { count: 2 },
            r#"{"count":2,"type":"viewers"}"#,
        );
    }

    #[test]
    fn lobby_viewers() {
        pins(
            ServerMessage::LobbyViewers {
                channel_id: "ch_a".into(),
                count: 2,
            },
            r#"{"channel_id":"ch_a","count":2,"type":"viewers"}"#,
        );
    }

    #[test]
    fn ingest_refused() {
        pins(
            ServerMessage::IngestRefused {
                reason: "another broadcast is live on this channel".into(),
            },
            r#"{"reason":"another broadcast is live on this channel","type":"ingest_refused"}"#,
        );
    }

    #[test]
    fn hello() {
        pins(
            ServerMessage::Hello {
                status: RoomStatus {
                    live: None,
                    viewers: 0,
                    ingest_refused: None,
                    last_broadcast: None,
                },
                shard: 0,
            },
            r#"{"shard":0,"status":{"ingest_refused":null,"last_broadcast":null,"live":null,"viewers":0},"type":"hello"}"#,
        );
        pins(
            ServerMessage::Hello {
                status: RoomStatus {
                    live: Some(LiveSummary {
                        broadcast_id: "brd_2".into(),
                        started_at_ms: 7,
                        segments: 3,
                        duration_ms: 6000,
                    }),
                    viewers: 2,
                    ingest_refused: Some(Refusal {
                        reason: "r".into(),
                        at_ms: 8,
                    }),
                    last_broadcast: Some(LastSummary {
                        broadcast_id: "brd_1".into(),
                        video_id: Some("vid_1".into()),
                        ended_at_ms: 6,
                        reason: "endlist".into(),
                    }),
                },
                shard: 3,
            },
            concat!(
                r#"{"shard":3,"status":{"ingest_refused":{"at_ms":8,"reason":"r"},"#,
                r#""last_broadcast":{"broadcast_id":"brd_1","ended_at_ms":6,"reason":"endlist","video_id":"vid_1"},"#,
                r#""live":{"broadcast_id":"brd_2","duration_ms":6000,"segments":3,"started_at_ms":7},"#,
                r#""viewers":2},"type":"hello"}"#
            ),
        );
    }

    #[test]
    fn pong() {
        pins(ServerMessage::Pong, r#"{"type":"pong"}"#);
    }

    #[test]
    fn error() {
        pins(
            ServerMessage::Error {
                code: SocketErrorCode::InvalidMessage,
                message: "messages are JSON objects".into(),
            },
            r#"{"code":"invalid_message","message":"messages are JSON objects","type":"error"}"#,
        );
        pins(
            ServerMessage::Error {
                code: SocketErrorCode::InvalidReaction,
                message: "m".into(),
            },
            r#"{"code":"invalid_reaction","message":"m","type":"error"}"#,
        );
        pins(
            ServerMessage::Error {
                code: SocketErrorCode::RateLimited,
                message: "m".into(),
            },
            r#"{"code":"rate_limited","message":"m","type":"error"}"#,
        );
    }

    #[test]
    fn reactions() {
        pins(
            ServerMessage::Reactions {
                counts: [("🔥".to_owned(), 3), ("👏".to_owned(), 1)].into(),
                at_ms: 9,
            },
            r#"{"at_ms":9,"counts":{"👏":1,"🔥":3},"type":"reactions"}"#,
        );
    }

    #[test]
    fn video_published() {
        pins(
            ServerMessage::VideoPublished {
                video_id: "vid_1".into(),
                channel_id: "ch_a".into(),
                title: "Cats \"live\"".into(),
            },
            r#"{"channel_id":"ch_a","title":"Cats \"live\"","type":"video_published","video_id":"vid_1"}"#,
        );
    }

    #[test]
    fn video_ready() {
        pins(
            ServerMessage::VideoReady {
                video_id: "vid_1".into(),
            },
            r#"{"type":"video_ready","video_id":"vid_1"}"#,
        );
    }
}

//! The browsers a room holds: joining and leaving (viewer counts, the joiner's `hello`), and
//! what a client may send: pings, and reactions from an allow-list, rate-limited per
//! connection and relayed to the whole room.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ports::{RoomSockets, RoomStore};

use super::ingest;
use super::messages::{ServerMessage, SocketErrorCode};
use super::state::{load, save, PRESENCE_DUE_KEY};

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

/// How long viewer-count changes are gathered before one `viewers` push to everyone, in ms:
/// joins and leaves cost O(1) messages each, whatever the number of sockets, and the count
/// everyone sees is at most this late.
pub const PRESENCE_PUSH_MS: u64 = 2_000;

/// A client joined: the joiner gets the viewer count and a `hello` with the live status at
/// once (returned, in order, for the host to send); everyone else hears the new count with
/// the next presence push ([`presence_due`]).
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn on_join<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<Vec<String>, StoreError> {
    presence_changed(store, now_ms).await?;
    let viewers = ServerMessage::Viewers {
        count: sockets.count(),
    }
    .to_json();
    let status = ingest::status(store, sockets, now_ms).await?;
    Ok(vec![viewers, ServerMessage::Hello { status }.to_json()])
}

/// A client left: everyone hears the new count with the next presence push.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn on_leave<S: RoomStore>(store: &S, now_ms: u64) -> Result<(), StoreError> {
    presence_changed(store, now_ms).await
}

/// Gathers a viewer-count change: the first change after a push asks for the alarm in
/// [`PRESENCE_PUSH_MS`]; later ones wait for the same push.
async fn presence_changed<S: RoomStore>(store: &S, now_ms: u64) -> Result<(), StoreError> {
    let due: Option<u64> = load(store, PRESENCE_DUE_KEY).await?;
    if due.is_none() {
        let at_ms = now_ms + PRESENCE_PUSH_MS;
        save(store, PRESENCE_DUE_KEY, &Some(at_ms)).await?;
        store.set_alarm(at_ms).await?;
    }
    Ok(())
}

/// The alarm's presence work: when a push is due, everyone gets the current count (one
/// message per socket), and the count is returned (for the lobby).
///
/// # Errors
/// Whatever the room's storage reports.
pub(super) async fn presence_due<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<Option<usize>, StoreError> {
    let due: Option<u64> = load(store, PRESENCE_DUE_KEY).await?;
    match due {
        Some(at_ms) if at_ms <= now_ms => {
            store.delete(&[PRESENCE_DUE_KEY.to_owned()]).await?;
            let count = sockets.count();
            ServerMessage::Viewers { count }.send_to(sockets);
            Ok(Some(count))
        }
        // Not yet (an earlier deadline woke the room): ask again for it.
        Some(at_ms) => {
            store.set_alarm(at_ms).await?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// An `error` reply for the sender.
fn socket_error(code: SocketErrorCode, message: &str) -> String {
    ServerMessage::Error {
        code,
        message: message.to_owned(),
    }
    .to_json()
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
        return Some(ServerMessage::Pong.to_json());
    }
    if text.len() > MAX_SOCKET_MESSAGE {
        return Some(socket_error(
            SocketErrorCode::InvalidMessage,
            "the message is too long",
        ));
    }
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
        return Some(socket_error(
            SocketErrorCode::InvalidMessage,
            "messages are JSON objects",
        ));
    };
    match message.get("type").and_then(|t| t.as_str()) {
        Some("ping") => Some(ServerMessage::Pong.to_json()),
        Some("reaction") => {
            let emoji = message.get("emoji").and_then(|e| e.as_str()).unwrap_or("");
            react(sockets, state, emoji, now_ms).err()
        }
        _ => Some(socket_error(
            SocketErrorCode::InvalidMessage,
            "unknown message type; expected ping or reaction",
        )),
    }
}

/// Relays a reaction to the room, or returns the `error` reply for the sender.
fn react(
    sockets: &dyn RoomSockets,
    state: &mut SocketState,
    emoji: &str,
    now_ms: u64,
) -> Result<(), String> {
    if state.lobby {
        return Err(socket_error(
            SocketErrorCode::InvalidMessage,
            "react on a channel, not in the lobby",
        ));
    }
    let Some(emoji) = REACTIONS.iter().find(|r| **r == emoji) else {
        return Err(socket_error(
            SocketErrorCode::InvalidReaction,
            &format!("reactions are one of {}", REACTIONS.join(" ")),
        ));
    };
    if now_ms.saturating_sub(state.window_start_ms) >= REACTION_WINDOW_MS {
        state.window_start_ms = now_ms;
        state.window_count = 0;
    }
    if state.window_count >= REACTIONS_PER_WINDOW {
        return Err(socket_error(
            SocketErrorCode::RateLimited,
            "too many reactions; wait a moment",
        ));
    }
    state.window_count += 1;
    ServerMessage::Reaction {
        emoji: (*emoji).to_owned(),
        at_ms: now_ms,
    }
    .send_to(sockets);
    Ok(())
}
#[cfg(test)]
mod tests {
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

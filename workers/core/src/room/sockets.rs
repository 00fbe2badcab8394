//! The browsers a room holds: joining and leaving (viewer counts, the joiner's `hello`), and
//! what a client may send: pings, and reactions from an allow-list, rate-limited per
//! connection, counted, and pushed to the whole room as one `reactions` message per
//! [`REACTION_PUSH_MS`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ports::{RoomSockets, RoomStore};

use super::messages::{ServerMessage, SocketErrorCode};
use super::state::{
    load, save, schedule, take_due, PendingReactions, LOBBY_DUE_KEY, PRESENCE_DUE_KEY,
    REACTIONS_KEY,
};
use super::{shards, status};

/// The emoji a viewer may react with.
pub const REACTIONS: [&str; 8] = ["🔥", "❤️", "👏", "😂", "😮", "🎉", "👍", "💯"];
/// Reactions one connection may send per [`REACTION_WINDOW_MS`]; more are refused.
pub const REACTIONS_PER_WINDOW: u32 = 5;
/// The reaction rate-limit window, in ms.
pub const REACTION_WINDOW_MS: u64 = 2_000;
/// How long reactions are gathered before one `reactions` push to everyone, in ms: a burst
/// of reactions from N viewers costs one message per socket per push, not N.
pub const REACTION_PUSH_MS: u64 = 500;
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
    if let Some(greeting) = shards::greet(store, sockets, now_ms).await? {
        return Ok(greeting);
    }
    presence_changed(store, now_ms).await?;
    let viewers = ServerMessage::Viewers {
        count: shards::viewers(store, sockets, now_ms).await?,
    }
    .to_json();
    let status = status::status(store, sockets, now_ms).await?;
    let hello = ServerMessage::Hello { status, shard: 0 };
    Ok(vec![viewers, hello.to_json()])
}

/// A client left: everyone hears the new count with the next presence push.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn on_leave<S: RoomStore>(store: &S, now_ms: u64) -> Result<(), StoreError> {
    if shards::changed(store, now_ms).await? {
        return Ok(());
    }
    presence_changed(store, now_ms).await
}

/// Gathers a viewer-count change: the first change after a push asks for the alarm in
/// [`PRESENCE_PUSH_MS`]; later ones wait for the same push.
pub(super) async fn presence_changed<S: RoomStore>(
    store: &S,
    now_ms: u64,
) -> Result<(), StoreError> {
    presence_due_in(store, now_ms, PRESENCE_PUSH_MS).await
}

/// Asks for the presence work (a room's count push, a shard's tick) in `delay_ms` unless it
/// is already asked for.
pub(super) async fn presence_due_in<S: RoomStore>(
    store: &S,
    now_ms: u64,
    delay_ms: u64,
) -> Result<(), StoreError> {
    let due: Option<u64> = load(store, PRESENCE_DUE_KEY).await?;
    if due.is_none() {
        let at_ms = now_ms + delay_ms;
        save(store, PRESENCE_DUE_KEY, &Some(at_ms)).await?;
        schedule(store, at_ms).await?;
    }
    Ok(())
}

/// The alarm's presence work: when a push is due, everyone gets the current count (one
/// message per socket; the room's shards push it to theirs), and the count is returned (for
/// the lobby).
///
/// # Errors
/// Whatever the room's storage reports.
pub(super) async fn presence_due<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<Option<u64>, StoreError> {
    if take_due(store, PRESENCE_DUE_KEY, now_ms, |at_ms: &u64| *at_ms)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let count = shards::viewers(store, sockets, now_ms).await?;
    ServerMessage::Viewers { count }.send_to(sockets);
    Ok(Some(count))
}

/// How long a channel's room may hold a changed viewer count back from the lobby, in ms: the
/// lobby (one object for every live channel) hears each channel at most this often, unless
/// the count moved by [`LOBBY_STEP`] or to or from zero.
pub const LOBBY_TELL_MS: u64 = 10_000;
/// A change of at least this fraction (and 5 viewers) is told to the lobby at once.
const LOBBY_STEP: f64 = 0.1;
/// Storage key of the count last told to the lobby ([`Told`]).
const LOBBY_TOLD_KEY: &str = "lobby_told";

/// The viewer count last told to the lobby, and when.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Told {
    count: u64,
    at_ms: u64,
}

/// Whether a count is worth telling the lobby now.
fn worth_telling(told: Option<Told>, count: u64, now_ms: u64) -> bool {
    let Some(told) = told else {
        return true;
    };
    let moved = count.abs_diff(told.count);
    let step = ((told.count as f64 * LOBBY_STEP) as u64).max(5);
    moved > 0
        && (count == 0
            || told.count == 0
            || moved >= step
            || now_ms.saturating_sub(told.at_ms) >= LOBBY_TELL_MS)
}

/// A broadcast started (the lobby lists the channel from now on): the audience already
/// waiting is told to the lobby with the next presence push, whatever the lobby last heard.
///
/// # Errors
/// Whatever the room's storage reports.
pub(super) async fn lobby_forget<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<(), StoreError> {
    store.delete(&[LOBBY_TOLD_KEY.to_owned()]).await?;
    if shards::viewers(store, sockets, now_ms).await? > 0 {
        presence_changed(store, now_ms).await?;
    }
    Ok(())
}

/// The alarm's lobby work: the count to tell the lobby now, if any. A count just pushed to
/// the sockets (`pushed`), or one held back earlier whose time came, is told when it is worth
/// it ([`LOBBY_TELL_MS`], [`LOBBY_STEP`]); otherwise it is held back until
/// [`LOBBY_TELL_MS`] after the last one told, so that the lobby's list is never more than that
/// late. At 10,000 live channels whose audiences change all the time the lobby takes at most
/// about 1,000 calls a second, not one per channel per presence push (5,000).
///
/// # Errors
/// Whatever the room's storage reports.
pub(super) async fn lobby_count<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    pushed: Option<u64>,
    now_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let held = take_due(store, LOBBY_DUE_KEY, now_ms, |at_ms: &u64| *at_ms).await?;
    let count = match (pushed, held) {
        (Some(count), _) => count,
        (None, Some(_)) => shards::viewers(store, sockets, now_ms).await?,
        (None, None) => return Ok(None),
    };
    let told: Option<Told> = load(store, LOBBY_TOLD_KEY).await?;
    if worth_telling(told, count, now_ms) {
        save(
            store,
            LOBBY_TOLD_KEY,
            &Told {
                count,
                at_ms: now_ms,
            },
        )
        .await?;
        store.delete(&[LOBBY_DUE_KEY.to_owned()]).await?;
        return Ok(Some(count));
    }
    let waiting: Option<u64> = load(store, LOBBY_DUE_KEY).await?;
    if let (Some(told), None) = (told, waiting) {
        if told.count != count {
            let at_ms = told.at_ms + LOBBY_TELL_MS;
            save(store, LOBBY_DUE_KEY, &Some(at_ms)).await?;
            schedule(store, at_ms).await?;
        }
    }
    Ok(None)
}

/// The alarm's reaction work: when a push is due, everyone gets the reactions counted since
/// the last one in one `reactions` message.
///
/// # Errors
/// Whatever the room's storage reports.
pub(super) async fn reactions_due<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<(), StoreError> {
    let due = take_due(store, REACTIONS_KEY, now_ms, |r: &PendingReactions| {
        r.due_ms
    })
    .await?;
    if let Some(pending) = due {
        ServerMessage::Reactions {
            counts: pending.counts,
            at_ms: now_ms,
        }
        .send_to(sockets);
    }
    Ok(())
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
/// `{"type":"reaction","emoji":"🔥"}` from the allow-list ([`REACTIONS`]) is counted, at
/// most [`REACTIONS_PER_WINDOW`] per [`REACTION_WINDOW_MS`] per connection, and goes to
/// everyone in the room with the next push (`{"type":"reactions","counts":{"🔥":n},"at_ms"}`
/// within [`REACTION_PUSH_MS`]). Returns the reply for the sender only (a pong, or an
/// `error` message with a `code`); `state` is updated in place.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn on_message<S: RoomStore>(
    store: &S,
    state: &mut SocketState,
    text: &str,
    now_ms: u64,
) -> Result<Option<String>, StoreError> {
    if text == "ping" {
        return Ok(Some(ServerMessage::Pong.to_json()));
    }
    if text.len() > MAX_SOCKET_MESSAGE {
        return Ok(Some(socket_error(
            SocketErrorCode::InvalidMessage,
            "the message is too long",
        )));
    }
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(Some(socket_error(
            SocketErrorCode::InvalidMessage,
            "messages are JSON objects",
        )));
    };
    match message.get("type").and_then(|t| t.as_str()) {
        Some("ping") => Ok(Some(ServerMessage::Pong.to_json())),
        Some("reaction") => {
            let emoji = message.get("emoji").and_then(|e| e.as_str()).unwrap_or("");
            match accept_reaction(state, emoji, now_ms) {
                Ok(emoji) => {
                    let one = BTreeMap::from([(emoji.to_owned(), 1)]);
                    count_reactions(store, &one, now_ms).await?;
                    Ok(None)
                }
                Err(reply) => Ok(Some(reply)),
            }
        }
        _ => Ok(Some(socket_error(
            SocketErrorCode::InvalidMessage,
            "unknown message type; expected ping or reaction",
        ))),
    }
}

/// Adds accepted reactions (a socket's, or a shard's since its last tick) to the next push,
/// asking for the alarm when they are the first since the last push.
pub(super) async fn count_reactions<S: RoomStore>(
    store: &S,
    reactions: &BTreeMap<String, u32>,
    now_ms: u64,
) -> Result<(), StoreError> {
    if reactions.is_empty() {
        return Ok(());
    }
    let pending: Option<PendingReactions> = load(store, REACTIONS_KEY).await?;
    let first = pending.is_none();
    let mut pending = pending.unwrap_or(PendingReactions {
        due_ms: now_ms + REACTION_PUSH_MS,
        counts: Default::default(),
    });
    for (emoji, n) in reactions {
        let count = pending.counts.entry(emoji.clone()).or_default();
        *count = count.saturating_add(*n);
    }
    save(store, REACTIONS_KEY, &pending).await?;
    if first {
        schedule(store, pending.due_ms).await?;
    }
    Ok(())
}

/// The allow-listed emoji of a reaction the connection may send now, or the `error` reply
/// for the sender.
fn accept_reaction(
    state: &mut SocketState,
    emoji: &str,
    now_ms: u64,
) -> Result<&'static str, String> {
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
    Ok(*emoji)
}
#[cfg(test)]
mod tests {
    use pollster::block_on;

    use crate::memory::{MemoryRoomStore, MemorySockets};

    use super::*;

    fn code(reply: Option<String>) -> String {
        let reply: serde_json::Value = serde_json::from_str(&reply.unwrap()).unwrap();
        reply["code"].as_str().unwrap_or_default().to_owned()
    }

    fn send(
        store: &MemoryRoomStore,
        state: &mut SocketState,
        text: &str,
        now_ms: u64,
    ) -> Option<String> {
        block_on(on_message(store, state, text, now_ms)).unwrap()
    }

    #[test]
    fn reactions_are_counted_pushed_together_allow_listed_and_rate_limited() {
        let store = MemoryRoomStore::default();
        let sockets = MemorySockets::default();
        let (mut alice, mut bob) = (SocketState::default(), SocketState::default());
        let fire = r#"{"type":"reaction","emoji":"🔥"}"#;
        let clap = r#"{"type":"reaction","emoji":"👏"}"#;
        for i in 0..REACTIONS_PER_WINDOW {
            assert_eq!(send(&store, &mut alice, fire, 10_000 + u64::from(i)), None);
        }
        assert_eq!(send(&store, &mut bob, clap, 10_100), None);
        // Over the limit: refused, not counted.
        assert_eq!(code(send(&store, &mut alice, fire, 10_200)), "rate_limited");
        // Nothing goes out per reaction: the first asked for the push's alarm.
        assert!(sockets.sent.borrow().is_empty());
        assert_eq!(store.alarm_at.get(), Some(10_000 + REACTION_PUSH_MS));

        // Woken early (another deadline): nothing yet, the push's alarm is asked for again.
        store.alarm_at.set(None);
        block_on(reactions_due(&store, &sockets, 10_300)).unwrap();
        assert!(sockets.sent.borrow().is_empty());
        assert_eq!(store.alarm_at.get(), Some(10_000 + REACTION_PUSH_MS));

        block_on(reactions_due(&store, &sockets, 10_000 + REACTION_PUSH_MS)).unwrap();
        assert_eq!(
            *sockets.sent.borrow(),
            [serde_json::json!({
                "type": "reactions",
                "counts": {"🔥": REACTIONS_PER_WINDOW, "👏": 1},
                "at_ms": 10_000 + REACTION_PUSH_MS,
            })]
        );
        // Pushed once: the next alarm sends nothing, the next reaction starts a new push.
        block_on(reactions_due(&store, &sockets, 20_000)).unwrap();
        assert_eq!(sockets.sent.borrow().len(), 1);
        assert_eq!(
            send(&store, &mut alice, fire, 10_000 + REACTION_WINDOW_MS),
            None
        );
        assert_eq!(
            store.alarm_at.get(),
            Some(10_000 + REACTION_WINDOW_MS + REACTION_PUSH_MS)
        );

        let not_allowed = r#"{"type":"reaction","emoji":"<script>"}"#;
        assert_eq!(
            code(send(&store, &mut alice, not_allowed, 20_000)),
            "invalid_reaction"
        );
        assert_eq!(
            code(send(&store, &mut alice, "{", 20_000)),
            "invalid_message"
        );
        assert_eq!(
            code(send(&store, &mut alice, r#"{"type":"x"}"#, 20_000)),
            "invalid_message"
        );
        let pong = send(&store, &mut alice, "ping", 20_000).unwrap();
        assert!(pong.contains("pong"));

        let mut lobby = SocketState {
            lobby: true,
            ..SocketState::default()
        };
        assert_eq!(
            code(send(&store, &mut lobby, fire, 30_000)),
            "invalid_message"
        );
    }

    #[test]
    fn the_lobby_hears_a_channels_count_at_most_every_few_seconds_unless_it_moves_much() {
        let store = MemoryRoomStore::default();
        let sockets = MemorySockets::default();
        let told = |now: u64| {
            block_on(crate::room::alarm(&store, &sockets, now))
                .unwrap()
                .viewers
        };
        let change = |count: usize, now: u64| {
            sockets.connected.set(count);
            block_on(presence_changed(&store, now)).unwrap();
        };
        change(10, 0);
        assert_eq!(told(PRESENCE_PUSH_MS), Some(10), "the first count is told");
        // A small change is pushed to the sockets but held back from the lobby ...
        change(12, 3_000);
        assert_eq!(told(3_000 + PRESENCE_PUSH_MS), None);
        assert_eq!(sockets.sent.borrow().last().unwrap()["count"], 12);
        // ... until LOBBY_TELL_MS after the last count told, when the alarm tells it.
        let due = PRESENCE_PUSH_MS + LOBBY_TELL_MS;
        assert_eq!(store.alarm_at.get(), Some(due));
        assert_eq!(told(due), Some(12));
        assert_eq!(told(due + 1), None, "told once");
        // A big move, and a channel emptying, are told at once.
        change(40, due + 100);
        assert_eq!(told(due + 100 + PRESENCE_PUSH_MS), Some(40));
        change(0, due + 3_000);
        assert_eq!(told(due + 3_000 + PRESENCE_PUSH_MS), Some(0));
        // No change, nothing to tell.
        change(0, due + 6_000);
        assert_eq!(told(due + 6_000 + PRESENCE_PUSH_MS), None);
    }

    #[test]
    fn the_alarm_serves_the_earliest_push() {
        let store = MemoryRoomStore::default();
        let mut viewer = SocketState::default();
        // A viewer joins (count push in PRESENCE_PUSH_MS), then reacts (push sooner).
        block_on(presence_changed(&store, 1_000)).unwrap();
        assert_eq!(store.alarm_at.get(), Some(1_000 + PRESENCE_PUSH_MS));
        send(
            &store,
            &mut viewer,
            r#"{"type":"reaction","emoji":"🎉"}"#,
            1_100,
        );
        assert_eq!(store.alarm_at.get(), Some(1_100 + REACTION_PUSH_MS));
        // A broadcast deadline after both does not push them back.
        block_on(schedule(&store, 60_000)).unwrap();
        assert_eq!(store.alarm_at.get(), Some(1_100 + REACTION_PUSH_MS));
    }
}

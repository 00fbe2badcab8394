//! Presence shards: a channel's viewer sockets spread over several objects, so that no one
//! object holds them all (a Durable Object takes at most 32,768 sockets, and every push to
//! them is one send per socket).
//!
//! Shard 0 is the channel's room itself; shard `k > 0` is an object of its own, named by
//! [`shard_room`], that holds sockets and nothing else. While it holds sockets, a shard
//! ticks every [`SHARD_TICK_MS`]: it tells the room how many sockets it holds and the
//! reactions they sent ([`RoomRequest::ShardTick`]), and the room answers with the channel's
//! status (viewers counted over every shard) and the messages it pushed to its own sockets
//! since the shard's last tick ([`RoomResponse::ShardTicked`]), which the shard passes on.
//! So a join, a leave or a reaction in a shard costs the room nothing; the room takes one
//! call per shard per tick; and every viewer gets the same counts, reactions and
//! live/ended messages, at most a tick or two later than the room's own sockets.
//!
//! How many shards a channel has is the worker's choice at each join ([`join_shards`] of the
//! channel's last known viewer count); the room counts whichever shards report. That count
//! reaches the worker a few seconds late, so the room also keeps at most as many sockets as
//! a shard: past that it sends a join on to one of [`OVERFLOW_SHARDS`] shards
//! ([`overflow_shard`]) instead of taking it, and a crowd arriving faster than the count
//! never piles up in the object that serves ingest and the playlists.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::room::{RoomRequest, RoomResponse, RoomStatus};
use crate::ports::{RoomSockets, RoomStore};

use super::messages::ServerMessage;
use super::sockets::{self, PRESENCE_PUSH_MS};
use super::state::{load, save, PendingReactions, PRESENCE_DUE_KEY, REACTIONS_KEY};
use super::status;

/// How often a shard holding sockets reports to its channel's room, in ms.
pub const SHARD_TICK_MS: u64 = 500;
/// How long a shard's last report counts toward the viewers without a newer one, in ms (a
/// shard that went away stops being counted after this).
pub const SHARD_REPORT_TTL_MS: u64 = 5_000;
/// Most shards one channel is spread over.
pub const MAX_SHARDS: u32 = 256;
/// Messages the room keeps for its shards (a shard ticks every [`SHARD_TICK_MS`]; the room
/// pushes a few messages a second at most).
const RELAY_KEEP: usize = 64;

/// Room: the shards' last reports, by shard number.
const SHARDS_KEY: &str = "shards";
/// Room: the messages kept for the shards ([`Relay`]).
const RELAY_KEY: &str = "relay";
/// Shard: what it is and what it last heard ([`ShardState`]).
const SHARD_KEY: &str = "shard";

/// A full room sends its joins on to shards 1 to `OVERFLOW_SHARDS - 1`: 15 shards of a few
/// thousand sockets take a crowd of tens of thousands until the worker knows its size.
pub const OVERFLOW_SHARDS: u32 = 16;

/// Shard `k` in `1..shards` for a join, from a random number (0 when `shards` is 1: the room).
pub fn pick_shard(shards: u32, random: u32) -> u32 {
    if shards <= 1 {
        0
    } else {
        1 + random % (shards - 1)
    }
}

/// The shard a channel's room holding `sockets` sends a new join on to, or `None` while it
/// holds fewer than `per_shard` (it takes the join itself).
pub fn overflow_shard(sockets: usize, per_shard: u64, random: u32) -> Option<u32> {
    (u64::try_from(sockets).unwrap_or(u64::MAX) >= per_shard)
        .then(|| pick_shard(OVERFLOW_SHARDS, random))
}

/// The shards a new join of a channel with `viewers` picks from ([`pick_shard`]): 1, the
/// room alone, while they fit in one object (`per_shard`); else enough shards besides the
/// room for `per_shard` each ([`shards_for`] of one share more: the room keeps its own for
/// ingest and the playlists, and the count the worker knows is a few seconds behind a
/// growing crowd).
pub fn join_shards(viewers: u64, per_shard: u64) -> u32 {
    if viewers <= per_shard {
        1
    } else {
        shards_for(viewers.saturating_add(per_shard), per_shard)
    }
}

/// The number of shards a channel with `viewers` is spread over: enough for at most
/// `per_shard` each, rounded up to a power of two, at most [`MAX_SHARDS`].
pub fn shards_for(viewers: u64, per_shard: u64) -> u32 {
    let wanted = viewers.div_ceil(per_shard.max(1)).max(1);
    let shards = wanted
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .min(u64::from(MAX_SHARDS));
    u32::try_from(shards).unwrap_or(MAX_SHARDS)
}

/// The room name of a channel's presence shard `shard` (0: the channel's room).
pub fn shard_room(channel_id: &str, shard: u32) -> String {
    if shard == 0 {
        channel_id.to_owned()
    } else {
        format!("{channel_id}/presence/{shard}")
    }
}

/// A shard's last report, as the room keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Report {
    sockets: u64,
    at_ms: u64,
}

/// The messages the room pushed to its own sockets, numbered, for its shards to pass on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Relay {
    /// The number the next message gets.
    next: u64,
    /// The last [`RELAY_KEEP`] messages, the last one numbered `next - 1`.
    messages: VecDeque<String>,
}

impl Relay {
    /// The kept messages numbered `cursor` and up.
    fn since(&self, cursor: u64) -> Vec<String> {
        let first = self.next - self.messages.len() as u64;
        let skip = cursor.saturating_sub(first).min(self.messages.len() as u64);
        self.messages.iter().skip(skip as usize).cloned().collect()
    }
}

/// What a shard keeps: which channel and number it is, and what it last heard from the room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ShardState {
    channel_id: String,
    shard: u32,
    /// The cursor of its next tick.
    cursor: Option<u64>,
    /// The channel's status at the last tick; `None` before the first.
    status: Option<RoomStatus>,
    /// The sockets its last tick reported.
    reported: u64,
    /// The viewer count last pushed to its sockets, and when.
    pushed_viewers: Option<u64>,
    pushed_at_ms: u64,
}

/// The reports still counted at `now_ms`.
fn fresh(reports: &mut BTreeMap<u32, Report>, now_ms: u64) {
    reports.retain(|_, r| r.sockets > 0 && now_ms.saturating_sub(r.at_ms) < SHARD_REPORT_TTL_MS);
}

/// The channel's viewers: the room's own sockets and every shard's fresh report.
pub(super) async fn viewers<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<u64, StoreError> {
    let mut reports: BTreeMap<u32, Report> = load(store, SHARDS_KEY).await?;
    fresh(&mut reports, now_ms);
    Ok(sockets.count() as u64 + reports.values().map(|r| r.sockets).sum::<u64>())
}

/// Room: a shard's tick. Records its count (a change is pushed to everyone with the next
/// presence push), adds its reactions to the next reactions push, and answers the status and
/// the relayed messages since its cursor.
pub(super) async fn tick<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    shard: u32,
    count: u64,
    reactions: &BTreeMap<String, u32>,
    cursor: Option<u64>,
    now_ms: u64,
) -> Result<RoomResponse, StoreError> {
    let mut reports: BTreeMap<u32, Report> = load(store, SHARDS_KEY).await?;
    let loaded = reports.len();
    fresh(&mut reports, now_ms);
    let previous = reports.remove(&shard).unwrap_or_default();
    if count > 0 {
        let report = Report {
            sockets: count,
            at_ms: now_ms,
        };
        reports.insert(shard, report);
    }
    // The time of a report is refreshed every few ticks, not at each: a write per tick per
    // shard would be most of the room's storage writes.
    let stale = now_ms.saturating_sub(previous.at_ms) >= SHARD_REPORT_TTL_MS / 2;
    if previous.sockets != count || stale || reports.len() != loaded {
        save(store, SHARDS_KEY, &reports).await?;
    }
    if previous.sockets != count {
        sockets::presence_changed(store, now_ms).await?;
    }
    sockets::count_reactions(store, reactions, now_ms).await?;
    let relay: Relay = load(store, RELAY_KEY).await?;
    let messages = cursor.map(|c| relay.since(c)).unwrap_or_default();
    Ok(RoomResponse::ShardTicked {
        status: status::status(store, sockets, now_ms).await?,
        messages,
        cursor: relay.next,
    })
}

/// Room: keeps what it pushed to its own sockets for its shards, when it has any.
async fn relay<S: RoomStore>(store: &S, messages: Vec<String>) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let reports: BTreeMap<u32, Report> = load(store, SHARDS_KEY).await?;
    if reports.is_empty() {
        return Ok(());
    }
    let mut relay: Relay = load(store, RELAY_KEY).await?;
    for message in messages {
        relay.messages.push_back(message);
        relay.next += 1;
    }
    while relay.messages.len() > RELAY_KEEP {
        relay.messages.pop_front();
    }
    save(store, RELAY_KEY, &relay).await
}

/// The room's sockets, remembering what is pushed to them (for [`relay`]).
pub(super) struct Relayed<'a> {
    sockets: &'a dyn RoomSockets,
    sent: RefCell<Vec<String>>,
}

impl<'a> Relayed<'a> {
    /// Wraps the room's sockets.
    pub fn new(sockets: &'a dyn RoomSockets) -> Self {
        Relayed {
            sockets,
            sent: RefCell::new(Vec::new()),
        }
    }

    /// Keeps what was pushed for the room's shards.
    pub async fn relay<S: RoomStore>(self, store: &S) -> Result<(), StoreError> {
        relay(store, self.sent.into_inner()).await
    }
}

impl RoomSockets for Relayed<'_> {
    fn count(&self) -> usize {
        self.sockets.count()
    }

    fn send_all(&self, message: &str) {
        self.sockets.send_all(message);
        self.sent.borrow_mut().push(message.to_owned());
    }
}

/// Shard: what it is, when this object is a shard (a channel's room or the lobby: `None`).
async fn shard_state<S: RoomStore>(store: &S) -> Result<Option<ShardState>, StoreError> {
    load(store, SHARD_KEY).await
}

/// Shard: a socket joined shard `shard` of `channel_id`. Returns the tick to make before the
/// joiner is greeted when the shard has not heard from the room yet (its first join): the
/// room's name and the request, for the host to send and hand to [`ticked`].
///
/// # Errors
/// Whatever the shard's storage reports.
pub async fn join_shard<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    channel_id: &str,
    shard: u32,
    now_ms: u64,
) -> Result<Option<(String, RoomRequest)>, StoreError> {
    let state = shard_state(store).await?;
    if state
        .as_ref()
        .is_some_and(|s| s.channel_id == channel_id && s.shard == shard && s.status.is_some())
    {
        return Ok(None);
    }
    let state = ShardState {
        channel_id: channel_id.to_owned(),
        shard,
        ..ShardState::default()
    };
    save(store, SHARD_KEY, &state).await?;
    tick_request(store, sockets, state, now_ms).await.map(Some)
}

/// Shard: the joiner's greeting (the viewer count and a `hello` with the status the shard
/// last heard), and the next tick asked for. `None` when this object is not a shard.
pub(super) async fn greet<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<Option<Vec<String>>, StoreError> {
    let Some(state) = shard_state(store).await? else {
        return Ok(None);
    };
    tick_soon(store, now_ms).await?;
    let mut status = state.status.unwrap_or_default();
    status.viewers = status.viewers.max(sockets.count() as u64);
    Ok(Some(vec![
        ServerMessage::Viewers {
            count: status.viewers,
        }
        .to_json(),
        ServerMessage::Hello {
            status,
            shard: state.shard,
        }
        .to_json(),
    ]))
}

/// Shard: a socket left or sent a reaction: the next tick reports it. Returns whether this
/// object is a shard.
pub(super) async fn changed<S: RoomStore>(store: &S, now_ms: u64) -> Result<bool, StoreError> {
    if shard_state(store).await?.is_none() {
        return Ok(false);
    }
    tick_soon(store, now_ms).await?;
    Ok(true)
}

/// Asks for a tick in [`SHARD_TICK_MS`] unless one is due sooner.
async fn tick_soon<S: RoomStore>(store: &S, now_ms: u64) -> Result<(), StoreError> {
    sockets::presence_due_in(store, now_ms, SHARD_TICK_MS).await
}

/// Shard: the alarm. A shard's alarm is its tick: the gathered reactions are taken and the
/// tick to send is returned with the room's name. `None` when this object is not a shard.
pub(super) async fn alarm<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<Option<(String, RoomRequest)>, StoreError> {
    let Some(state) = shard_state(store).await? else {
        return Ok(None);
    };
    tick_request(store, sockets, state, now_ms).await.map(Some)
}

/// The tick a shard sends now (its sockets and the reactions gathered, taken out).
async fn tick_request<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    mut state: ShardState,
    now_ms: u64,
) -> Result<(String, RoomRequest), StoreError> {
    let pending: Option<PendingReactions> = load(store, REACTIONS_KEY).await?;
    store
        .delete(&[PRESENCE_DUE_KEY.to_owned(), REACTIONS_KEY.to_owned()])
        .await?;
    state.reported = sockets.count() as u64;
    save(store, SHARD_KEY, &state).await?;
    Ok((
        shard_room(&state.channel_id, 0),
        RoomRequest::ShardTick {
            shard: state.shard,
            sockets: state.reported,
            reactions: pending.map(|p| p.counts).unwrap_or_default(),
            cursor: state.cursor,
            now_ms,
        },
    ))
}

/// Shard: the room's answer to its tick (or why there is none). Passes the relayed messages
/// on to the shard's sockets, pushes the viewer count when it changed (at most once per
/// [`PRESENCE_PUSH_MS`]), and asks for the next tick while the shard holds sockets or has
/// not reported that it holds none. A failed tick's reactions are not sent again.
///
/// # Errors
/// Whatever the shard's storage reports.
pub async fn ticked<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    answer: Result<RoomResponse, StoreError>,
    now_ms: u64,
) -> Result<(), StoreError> {
    let Some(mut state) = shard_state(store).await? else {
        return Ok(());
    };
    match answer {
        Ok(RoomResponse::ShardTicked {
            status,
            messages,
            cursor,
        }) => {
            for message in &messages {
                sockets.send_all(message);
            }
            let due = now_ms.saturating_sub(state.pushed_at_ms) >= PRESENCE_PUSH_MS;
            if state.pushed_viewers != Some(status.viewers) && due {
                ServerMessage::Viewers {
                    count: status.viewers,
                }
                .send_to(sockets);
                state.pushed_viewers = Some(status.viewers);
                state.pushed_at_ms = now_ms;
            }
            state.cursor = Some(cursor);
            state.status = Some(status);
        }
        Ok(other) => {
            return Err(StoreError::backend(
                "presence_shard",
                format!("unexpected answer to a tick: {other:?}"),
            ))
        }
        Err(e) => {
            // Ticked again soon; the viewers there meanwhile hear nothing new.
            tick_soon(store, now_ms).await?;
            return Err(e);
        }
    }
    save(store, SHARD_KEY, &state).await?;
    if sockets.count() > 0 || state.reported > 0 {
        tick_soon(store, now_ms).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pollster::block_on;
    use serde_json::json;

    use super::*;
    use crate::memory::MemoryRoom;
    use crate::room::{alarm, handle, on_join, on_message, SocketState, REACTION_PUSH_MS};

    #[test]
    fn a_full_room_sends_joins_on_to_the_overflow_shards() {
        assert_eq!(overflow_shard(0, 2_000, 7), None);
        assert_eq!(overflow_shard(1_999, 2_000, 7), None);
        let picked: std::collections::BTreeSet<u32> = (0..64)
            .filter_map(|random| overflow_shard(2_000, 2_000, random))
            .collect();
        assert_eq!(
            picked,
            (1..OVERFLOW_SHARDS).collect(),
            "every shard, never the room"
        );
        assert_eq!(
            overflow_shard(5_000, 2_000, u32::MAX).map(|k| k > 0),
            Some(true)
        );
        assert_eq!(pick_shard(1, 9), 0, "one shard is the room");
        assert_eq!(pick_shard(0, 9), 0);
    }

    #[test]
    fn joins_pick_from_enough_shards_besides_the_room() {
        assert_eq!(join_shards(0, 1_000), 1);
        assert_eq!(join_shards(1_000, 1_000), 1, "one object's worth: the room");
        // 1,001 to 2,000 viewers: three shards besides the room, not one.
        assert_eq!(join_shards(1_001, 1_000), 4);
        assert_eq!(join_shards(2_000, 1_000), 4);
        assert_eq!(join_shards(3_000, 1_000), 4);
        assert_eq!(join_shards(3_001, 1_000), 8);
        assert_eq!(join_shards(u64::MAX, 1_000), MAX_SHARDS);
    }

    /// A shard's tick: built by its alarm (or its first join), sent to the room, answered.
    fn tick_through(room: &MemoryRoom, shard: &MemoryRoom, tick: (String, RoomRequest), now: u64) {
        assert_eq!(tick.0, "ch_a", "a shard ticks its channel's room");
        let answer = block_on(handle(&room.store, &room.sockets, tick.1));
        block_on(ticked(&shard.store, &shard.sockets, answer, now)).unwrap();
    }

    fn shard_alarm(room: &MemoryRoom, shard: &MemoryRoom, now: u64) {
        let outcome = block_on(alarm(&shard.store, &shard.sockets, now)).unwrap();
        tick_through(
            room,
            shard,
            outcome.tick.expect("a shard's alarm ticks"),
            now,
        );
    }

    fn sent_types(room: &MemoryRoom) -> Vec<String> {
        room.sockets
            .sent
            .borrow()
            .iter()
            .map(|m| m["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn shard_counts_grow_in_powers_of_two_and_stop_at_the_maximum() {
        assert_eq!(shards_for(0, 2_000), 1);
        assert_eq!(shards_for(2_000, 2_000), 1);
        assert_eq!(shards_for(2_001, 2_000), 2);
        assert_eq!(shards_for(5_000, 2_000), 4);
        assert_eq!(shards_for(1_000_000, 2_000), MAX_SHARDS);
        assert_eq!(shards_for(u64::MAX, 0), MAX_SHARDS);
        assert_eq!(shard_room("ch_a", 0), "ch_a");
        assert_eq!(shard_room("ch_a", 3), "ch_a/presence/3");
    }

    #[test]
    fn a_shards_viewers_hear_the_channels_counts_reactions_and_messages() {
        let (room, shard) = (MemoryRoom::default(), MemoryRoom::default());
        room.sockets.connected.set(2);
        // The shard's first join ticks before greeting: the joiner hears the whole count.
        shard.sockets.connected.set(3);
        let first = block_on(join_shard(&shard.store, &shard.sockets, "ch_a", 1, 1_000))
            .unwrap()
            .expect("a new shard ticks first");
        assert!(matches!(
            first.1,
            RoomRequest::ShardTick {
                shard: 1,
                sockets: 3,
                cursor: None,
                ..
            }
        ));
        tick_through(&room, &shard, first, 1_000);
        let greeting = block_on(on_join(&shard.store, &shard.sockets, 1_000)).unwrap();
        assert_eq!(
            greeting[0],
            json!({"type": "viewers", "count": 5}).to_string()
        );
        let hello: serde_json::Value = serde_json::from_str(&greeting[1]).unwrap();
        assert_eq!(hello["status"]["viewers"], 5);
        assert_eq!(hello["shard"], 1);
        // A second join does not tick first.
        assert_eq!(
            block_on(join_shard(&shard.store, &shard.sockets, "ch_a", 1, 1_100)).unwrap(),
            None
        );
        // The room's own sockets hear the new total with its next presence push, and the
        // lobby is told it.
        let pushed = block_on(alarm(&room.store, &room.sockets, 1_000 + PRESENCE_PUSH_MS));
        assert_eq!(pushed.unwrap().viewers, Some(5));
        assert_eq!(
            room.sockets.sent.borrow().last(),
            Some(&json!({"type": "viewers", "count": 5}))
        );

        // A reaction in the shard is not pushed there: it goes to the room with the tick,
        // out with the room's next reactions push, and back to the shard with the next tick.
        let mut viewer = SocketState::default();
        let fire = r#"{"type":"reaction","emoji":"🔥"}"#;
        assert_eq!(
            block_on(on_message(&shard.store, &mut viewer, fire, 3_000)).unwrap(),
            None
        );
        shard_alarm(&room, &shard, 3_000 + REACTION_PUSH_MS);
        let reactions = json!({"🔥": 1});
        assert!(!sent_types(&shard).contains(&"reactions".to_owned()));
        let at = 3_000 + 2 * REACTION_PUSH_MS;
        block_on(alarm(&room.store, &room.sockets, at)).unwrap();
        assert_eq!(
            room.sockets.sent.borrow().last().unwrap()["counts"],
            reactions
        );
        shard_alarm(&room, &shard, at + SHARD_TICK_MS);
        assert_eq!(
            shard.sockets.sent.borrow().last().unwrap()["counts"],
            reactions
        );

        // What the worker tells the room's sockets reaches the shard's once, in order.
        for video_id in ["vid_1", "vid_2"] {
            let message = ServerMessage::VideoReady {
                video_id: video_id.into(),
            };
            block_on(handle(
                &room.store,
                &room.sockets,
                RoomRequest::Notify {
                    message: message.to_value(),
                },
            ))
            .unwrap();
        }
        shard_alarm(&room, &shard, at + 2 * SHARD_TICK_MS);
        shard_alarm(&room, &shard, at + 3 * SHARD_TICK_MS);
        let ready: Vec<_> = shard
            .sockets
            .sent
            .borrow()
            .iter()
            .filter(|m| m["type"] == "video_ready")
            .map(|m| m["video_id"].clone())
            .collect();
        assert_eq!(ready, ["vid_1", "vid_2"]);
    }

    #[test]
    fn a_shard_that_empties_reports_it_once_and_one_that_vanishes_stops_counting() {
        let (room, shard, other) = (
            MemoryRoom::default(),
            MemoryRoom::default(),
            MemoryRoom::default(),
        );
        shard.sockets.connected.set(4);
        other.sockets.connected.set(6);
        for (n, s) in [(1, &shard), (2, &other)] {
            let tick = block_on(join_shard(&s.store, &s.sockets, "ch_a", n, 1_000));
            tick_through(&room, s, tick.unwrap().unwrap(), 1_000);
        }
        let viewers = |now| block_on(viewers(&room.store, &room.sockets, now)).unwrap();
        assert_eq!(viewers(1_000), 10);
        // The last socket leaves: one more tick reports 0, then the shard stops ticking.
        shard.sockets.connected.set(0);
        block_on(crate::room::on_leave(&shard.store, 1_200)).unwrap();
        shard.store.alarm_at.set(None);
        shard_alarm(&room, &shard, 1_200 + SHARD_TICK_MS);
        assert_eq!(viewers(1_800), 6);
        assert_eq!(shard.store.alarm_at.get(), None, "an empty shard sleeps");
        // A shard that stops reporting (its object was evicted) stops counting.
        assert_eq!(viewers(1_000 + SHARD_REPORT_TTL_MS), 0);
        // A failed tick is tried again.
        let outcome = block_on(alarm(&other.store, &other.sockets, 2_000)).unwrap();
        assert!(outcome.tick.is_some());
        other.store.alarm_at.set(None);
        let failed = Err(StoreError::backend("durable_object", "unreachable"));
        assert!(block_on(ticked(&other.store, &other.sockets, failed, 2_000)).is_err());
        assert_eq!(other.store.alarm_at.get(), Some(2_000 + SHARD_TICK_MS));
    }

    #[test]
    fn the_relay_keeps_the_last_messages_and_a_late_shard_gets_what_is_left() {
        let mut relay = Relay::default();
        for i in 0..(RELAY_KEEP as u64 + 10) {
            relay.messages.push_back(i.to_string());
            relay.next += 1;
            if relay.messages.len() > RELAY_KEEP {
                relay.messages.pop_front();
            }
        }
        assert_eq!(relay.since(relay.next), Vec::<String>::new());
        assert_eq!(relay.since(relay.next - 2), ["72", "73"]);
        assert_eq!(relay.since(0).len(), RELAY_KEEP);
        assert_eq!(relay.since(0)[0], "10");
    }
}

//! The lobby room ([`LOBBY`](crate::model::room::LOBBY)): the list of live channels, kept
//! from the channel rooms' `live`/`ended` updates and counts (the home page reads it through
//! `/api/live`), and pushed to the WebSocket clients it holds.
//!
//! The lobby also remembers the channels that drew a big audience ([`BIG_AUDIENCE`] viewers
//! or more): the peak count of their latest broadcast. Until such a channel's next broadcast
//! has drawn as many, the list says how many viewers to expect, and the worker spreads the
//! joins over presence shards at once (the audience waiting for the broadcast, and the first
//! joins after it starts) instead of sending them to the channel's room until the new
//! broadcast's own count reaches the edge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::room::{LobbyEntry, RoomRequest, RoomResponse};
use crate::ports::{RoomSockets, RoomStore};

use super::messages::ServerMessage;
use super::state::{load, save, AUDIENCES_KEY, LOBBY_KEY};

/// A peak audience the lobby remembers for a channel's next broadcast, in viewers.
pub const BIG_AUDIENCE: u64 = 1_000;
/// How many channels' audiences the lobby remembers (the biggest).
const MAX_AUDIENCES: usize = 1_024;

/// A channel's big audience.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Audience {
    /// The broadcast `peak` is of.
    broadcast_id: String,
    /// The highest count its room told for that broadcast.
    peak: u64,
    /// The peak of the broadcast before it (0 if small or none): the audience expected.
    previous: u64,
}

/// A channel went live (`live`) or its broadcast ended: updates the list and pushes a
/// `live` or `ended` message naming the channel. An end only removes the broadcast it names.
pub(super) async fn update<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    entry: LobbyEntry,
    live: bool,
) -> Result<RoomResponse, StoreError> {
    let mut channels: BTreeMap<String, LobbyEntry> = load(store, LOBBY_KEY).await?;
    let message = if live {
        ServerMessage::LobbyLive(entry.clone())
    } else {
        ServerMessage::LobbyEnded(entry.clone())
    };
    if live {
        // A re-announcement keeps the count the channel's room told.
        let viewers = channels
            .get(&entry.channel_id)
            .map_or(entry.viewers, |known| known.viewers);
        new_broadcast(store, &entry.channel_id, &entry.broadcast_id).await?;
        channels.insert(entry.channel_id.clone(), LobbyEntry { viewers, ..entry });
    } else if channels
        .get(&entry.channel_id)
        .is_some_and(|e| e.broadcast_id == entry.broadcast_id)
    {
        channels.remove(&entry.channel_id);
    }
    save(store, LOBBY_KEY, &channels).await?;
    message.send_to(sockets);
    Ok(RoomResponse::Done)
}

/// A channel's broadcast `broadcast_id` went live: if the lobby remembers the channel's
/// audience of an earlier broadcast, that peak becomes the audience expected (a big one is
/// kept, a small one forgotten).
async fn new_broadcast<S: RoomStore>(
    store: &S,
    channel_id: &str,
    broadcast_id: &str,
) -> Result<(), StoreError> {
    let mut audiences: BTreeMap<String, Audience> = load(store, AUDIENCES_KEY).await?;
    let Some(audience) = audiences.get_mut(channel_id) else {
        return Ok(());
    };
    if audience.broadcast_id == broadcast_id {
        return Ok(()); // announced again
    }
    if audience.peak >= BIG_AUDIENCE {
        audience.previous = audience.peak;
        audience.peak = 0;
        audience.broadcast_id = broadcast_id.to_owned();
    } else {
        audiences.remove(channel_id);
    }
    save(store, AUDIENCES_KEY, &audiences).await
}

/// The live channels, by channel id, with the audience expected on the channels that had a
/// big one: while live, the peak of the broadcast before; while not, the peak of the last
/// (its audience waits for the next).
pub(super) async fn list<S: RoomStore>(store: &S) -> Result<RoomResponse, StoreError> {
    let channels: BTreeMap<String, LobbyEntry> = load(store, LOBBY_KEY).await?;
    let audiences: BTreeMap<String, Audience> = load(store, AUDIENCES_KEY).await?;
    let expected = audiences
        .into_iter()
        .map(|(id, a)| {
            let live = channels
                .get(&id)
                .is_some_and(|e| e.broadcast_id == a.broadcast_id);
            let waiting = if a.peak >= BIG_AUDIENCE { a.peak } else { 0 };
            (id, if live { a.previous } else { waiting })
        })
        .filter(|(_, viewers)| *viewers > 0)
        .collect();
    Ok(RoomResponse::Lobby {
        channels: channels.into_values().collect(),
        expected,
    })
}

/// A channel's viewer count: kept with its entry when it is live (`/api/live` reads it
/// from there), and pushed to its sockets as `{"type":"viewers","channel_id","count"}`.
/// A big count raises the peak the lobby remembers for the channel's next broadcast.
pub(super) async fn viewers<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    channel_id: String,
    count: u64,
) -> Result<RoomResponse, StoreError> {
    let mut channels: BTreeMap<String, LobbyEntry> = load(store, LOBBY_KEY).await?;
    if let Some(entry) = channels.get_mut(&channel_id) {
        let broadcast_id = entry.broadcast_id.clone();
        if entry.viewers != count {
            entry.viewers = count;
            save(store, LOBBY_KEY, &channels).await?;
        }
        if count >= BIG_AUDIENCE {
            remember_peak(store, &channel_id, &broadcast_id, count).await?;
        }
    }
    ServerMessage::LobbyViewers { channel_id, count }.send_to(sockets);
    Ok(RoomResponse::Done)
}

/// Raises the remembered peak of `channel_id`'s broadcast to `count` (one write when it
/// rises); beyond [`MAX_AUDIENCES`] channels, the smallest audience is forgotten.
async fn remember_peak<S: RoomStore>(
    store: &S,
    channel_id: &str,
    broadcast_id: &str,
    count: u64,
) -> Result<(), StoreError> {
    let mut audiences: BTreeMap<String, Audience> = load(store, AUDIENCES_KEY).await?;
    let audience = audiences
        .entry(channel_id.to_owned())
        .or_insert_with(|| Audience {
            broadcast_id: broadcast_id.to_owned(),
            ..Audience::default()
        });
    if audience.broadcast_id != broadcast_id {
        // A broadcast whose announcement the lobby did not hear.
        *audience = Audience {
            broadcast_id: broadcast_id.to_owned(),
            peak: 0,
            previous: audience.peak.max(audience.previous),
        };
    }
    if count <= audience.peak {
        return Ok(());
    }
    audience.peak = count;
    if audiences.len() > MAX_AUDIENCES {
        let smallest = audiences
            .iter()
            .filter(|(id, _)| id.as_str() != channel_id)
            .min_by_key(|(_, a)| a.peak.max(a.previous))
            .map(|(id, _)| id.clone());
        if let Some(id) = smallest {
            audiences.remove(&id);
        }
    }
    save(store, AUDIENCES_KEY, &audiences).await
}

/// The request that tells the lobby a channel's viewer count, for the live list and the
/// lobby's sockets.
pub fn lobby_viewers(channel_id: &str, count: u64) -> RoomRequest {
    RoomRequest::LobbyViewers {
        channel_id: channel_id.to_owned(),
        count,
    }
}

#[cfg(test)]
mod tests {
    use pollster::block_on;

    use crate::memory::{MemoryRoomStore, MemorySockets};

    use super::*;

    fn announce(store: &MemoryRoomStore, channel: &str, broadcast: &str, live: bool) {
        let entry = LobbyEntry {
            channel_id: channel.into(),
            name: channel.into(),
            broadcast_id: broadcast.into(),
            started_at_ms: 0,
            viewers: 0,
        };
        block_on(update(store, &MemorySockets::default(), entry, live)).unwrap();
    }

    fn live(store: &MemoryRoomStore, channel: &str, broadcast: &str) {
        announce(store, channel, broadcast, true);
    }

    fn ended(store: &MemoryRoomStore, channel: &str, broadcast: &str) {
        announce(store, channel, broadcast, false);
    }

    fn count(store: &MemoryRoomStore, channel: &str, viewers: u64) {
        block_on(super::viewers(
            store,
            &MemorySockets::default(),
            channel.into(),
            viewers,
        ))
        .unwrap();
    }

    fn expected(store: &MemoryRoomStore) -> BTreeMap<String, u64> {
        match block_on(list(store)).unwrap() {
            RoomResponse::Lobby { expected, .. } => expected,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_peak_of_a_big_broadcast_is_expected_of_the_next_one_only() {
        let store = MemoryRoomStore::default();
        live(&store, "ch_a", "brd_1");
        count(&store, "ch_a", 5_000);
        count(&store, "ch_a", 1_200); // the peak stays
        assert!(expected(&store).is_empty(), "nothing known before brd_1");
        // Announced again: still the same broadcast.
        live(&store, "ch_a", "brd_1");
        assert!(expected(&store).is_empty());
        // Ended: its audience waits for the next one.
        ended(&store, "ch_a", "brd_1");
        assert_eq!(expected(&store).get("ch_a"), Some(&5_000));
        live(&store, "ch_a", "brd_2");
        assert_eq!(expected(&store).get("ch_a"), Some(&5_000));
        live(&store, "ch_a", "brd_2");
        assert_eq!(expected(&store).get("ch_a"), Some(&5_000));
        // brd_2 stays small: nobody is expected after it, nor for brd_3.
        count(&store, "ch_a", BIG_AUDIENCE - 1);
        ended(&store, "ch_a", "brd_2");
        assert!(expected(&store).is_empty());
        live(&store, "ch_a", "brd_3");
        assert!(expected(&store).is_empty());
    }

    #[test]
    fn the_smallest_audience_is_forgotten_beyond_the_cap() {
        let store = MemoryRoomStore::default();
        // A full memory: channels 1.. with growing audiences.
        let full: BTreeMap<String, Audience> = (1..=MAX_AUDIENCES as u64)
            .map(|i| {
                let audience = Audience {
                    broadcast_id: "brd_1".into(),
                    peak: BIG_AUDIENCE + i,
                    previous: 0,
                };
                (format!("ch_{i:05}"), audience)
            })
            .collect();
        block_on(save(&store, AUDIENCES_KEY, &full)).unwrap();
        // A new big channel (smaller than all of them) is remembered; the smallest other goes.
        live(&store, "ch_00000", "brd_1");
        count(&store, "ch_00000", BIG_AUDIENCE);
        let audiences: BTreeMap<String, Audience> = block_on(load(&store, AUDIENCES_KEY)).unwrap();
        assert_eq!(audiences.len(), MAX_AUDIENCES);
        assert!(
            audiences.contains_key("ch_00000"),
            "the one just told stays"
        );
        assert!(
            !audiences.contains_key("ch_00001"),
            "the smallest other went"
        );
        assert!(audiences.contains_key(&format!("ch_{MAX_AUDIENCES:05}")));
    }
}

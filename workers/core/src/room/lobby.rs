//! The lobby room ([`LOBBY`](crate::model::room::LOBBY)): the list of live channels, kept
//! from the channel rooms' `live`/`ended` updates, and pushed to the home pages it holds.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::model::room::{LobbyEntry, RoomRequest, RoomResponse};
use crate::ports::{RoomSockets, RoomStore};

use super::messages::ServerMessage;
use super::state::{load, save, LOBBY_KEY};

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

/// The live channels, by channel id.
pub(super) async fn list<S: RoomStore>(store: &S) -> Result<RoomResponse, StoreError> {
    let channels: BTreeMap<String, LobbyEntry> = load(store, LOBBY_KEY).await?;
    Ok(RoomResponse::Lobby {
        channels: channels.into_values().collect(),
    })
}

/// A channel's viewer count: kept with its entry when it is live (`/api/live` reads it
/// from there), and pushed to the home pages as `{"type":"viewers","channel_id","count"}`.
pub(super) async fn viewers<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    channel_id: String,
    count: u64,
) -> Result<RoomResponse, StoreError> {
    let mut channels: BTreeMap<String, LobbyEntry> = load(store, LOBBY_KEY).await?;
    if let Some(entry) = channels.get_mut(&channel_id) {
        if entry.viewers != count {
            entry.viewers = count;
            save(store, LOBBY_KEY, &channels).await?;
        }
    }
    ServerMessage::LobbyViewers { channel_id, count }.send_to(sockets);
    Ok(RoomResponse::Done)
}

/// The request that tells the lobby a channel's viewer count, so that the home page's live
/// list updates without polling.
pub fn lobby_viewers(channel_id: &str, count: u64) -> RoomRequest {
    RoomRequest::LobbyViewers {
        channel_id: channel_id.to_owned(),
        count,
    }
}

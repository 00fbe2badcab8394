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
        channels.insert(entry.channel_id.clone(), entry);
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

/// The request that tells the lobby a channel's viewer count, so that the home page's live
/// list updates without polling: `{"type":"viewers","channel_id","count"}`.
pub fn lobby_viewers(channel_id: &str, count: usize) -> RoomRequest {
    RoomRequest::Notify {
        message: ServerMessage::LobbyViewers {
            channel_id: channel_id.to_owned(),
            count,
        }
        .to_value(),
    }
}

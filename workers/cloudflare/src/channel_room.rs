//! The `ChannelRoom` Durable Object class (SQLite-backed): one instance per channel, plus the
//! lobby and the presence shards of big channels (`{channel}/presence/{k}`, told by the
//! worker's [`rooms::SHARD_HEADER`] at each join; their alarm is their tick to the channel's
//! room). It only adapts: JSON requests are decoded into the core's [`RoomRequest`] and
//! handled by [`edgevideo_core::room`] over the object's storage and its hibernatable
//! WebSockets; the alarm ends silent broadcasts and records them with
//! [`edgevideo_core::services::broadcasts::broadcast_ended`].
//!
//! A request the room answers [`RoomResponse::Pending`] (a blocking playlist reload, the
//! next low-latency part) is held: it is asked again after each request that changes the
//! room, and once its hold is over it gets what the room has. A held request costs no
//! storage and no CPU while it waits.

use std::cell::RefCell;
use std::time::Duration;

use edgevideo_core::model::room::{RoomRequest, RoomResponse, LOBBY};
use edgevideo_core::ports::metered::{self, Metered};
use edgevideo_core::ports::{Entropy as _, Live as _, Platform as _, RoomSockets, RoomStore};
use edgevideo_core::room;
use edgevideo_core::{ApiError, StoreError};
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use worker::{
    durable_object, DurableObject, Env, ListOptions, Request, Response, State, Storage, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use crate::platform::CloudflarePlatform;
use crate::{bindings, rooms};

/// Storage key of the channel whose viewers this room holds (for the lobby's counts).
const WATCHED_CHANNEL_KEY: &str = "watched_channel";

/// The Durable Object holding one channel's live state and viewers (or, named as a relay,
/// sharing a room's reads among one location's isolates).
#[durable_object]
pub struct ChannelRoom {
    state: State,
    env: Env,
    /// Wakes the held requests: each waits on one of these until the room changes.
    held: RefCell<Vec<oneshot::Sender<()>>>,
    /// As a relay: the answers being asked for and just given.
    relay: room::relay::Relay,
}

/// [`RoomStore`] over the object's transactional storage and alarm.
pub struct DurableRoomStore(pub Storage);

fn storage_error(e: worker::Error) -> StoreError {
    StoreError::backend("durable_object_storage", e)
}

impl RoomStore for DurableRoomStore {
    async fn load(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.0.get(key).await.map_err(storage_error)
    }

    async fn save(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.0.put(key, value).await.map_err(storage_error)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        // The storage API deletes at most 128 keys per call.
        for chunk in keys.chunks(128) {
            self.0
                .delete_multiple(chunk.to_vec())
                .await
                .map_err(storage_error)?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let map = self
            .0
            .list_with_options(ListOptions::new().prefix(prefix))
            .await
            .map_err(storage_error)?;
        let mut entries = Vec::new();
        for entry in map.entries() {
            let pair: js_sys::Array = entry.map_err(|e| storage_error(e.into()))?.into();
            let key = pair.get(0).as_string().unwrap_or_default();
            let value = serde_wasm_bindgen::from_value(pair.get(1))
                .map_err(|e| StoreError::backend("durable_object_storage", e))?;
            entries.push((key, value));
        }
        Ok(entries)
    }

    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError> {
        let offset_ms = at_ms as i64 - worker::Date::now().as_millis() as i64;
        self.0
            .set_alarm(offset_ms.max(0))
            .await
            .map_err(storage_error)
    }
}

/// [`RoomSockets`] over the object's accepted WebSockets; `leaving` is left out of the count
/// and the sends (it is closing).
pub struct DurableSockets<'a> {
    state: &'a State,
    leaving: Option<&'a WebSocket>,
}

impl DurableSockets<'_> {
    fn open(&self) -> Vec<WebSocket> {
        self.state
            .get_websockets()
            .into_iter()
            .filter(|ws| self.leaving != Some(ws))
            .collect()
    }
}

impl RoomSockets for DurableSockets<'_> {
    fn count(&self) -> usize {
        self.open().len()
    }

    fn send_all(&self, message: &str) {
        for ws in self.open() {
            // A socket that cannot take a message is going away; its close event follows.
            let _ = ws.send_with_str(message);
        }
    }
}

fn error_response(err: &ApiError) -> worker::Result<Response> {
    Response::from_json(&err.body()).map(|r| r.with_status(err.status().as_u16()))
}

impl ChannelRoom {
    fn sockets<'a>(&'a self, leaving: Option<&'a WebSocket>) -> DurableSockets<'a> {
        DurableSockets {
            state: &self.state,
            leaving,
        }
    }

    async fn join(
        &self,
        lobby: bool,
        channel_id: Option<String>,
        shard: u32,
    ) -> worker::Result<Response> {
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        // Per-connection state (reaction rate limit, channel) lives in the socket's
        // attachment, which survives hibernation.
        let _ = pair.server.serialize_attachment(room::SocketState {
            lobby,
            channel_id: channel_id.clone(),
            ..room::SocketState::default()
        });
        let store = DurableRoomStore(self.state.storage());
        let now_ms = worker::Date::now().as_millis();
        if let (Some(channel_id), 0) = (&channel_id, shard) {
            // Kept for the room's alarm, which tells the lobby this channel's count (also
            // after the last viewer left, when no socket remains to name it); a shard's alarm
            // only ticks the room.
            if let Err(e) = store
                .save(
                    WATCHED_CHANNEL_KEY,
                    &serde_json::Value::from(channel_id.as_str()),
                )
                .await
            {
                worker::console_error!("room join: {e}");
            }
        }
        if let (Some(channel_id), true) = (&channel_id, shard > 0) {
            // A presence shard: the first join hears from the channel's room before greeting.
            match room::join_shard(&store, &self.sockets(None), channel_id, shard, now_ms).await {
                Ok(Some(tick)) => self.tick(&store, tick, now_ms).await,
                Ok(None) => {}
                Err(e) => worker::console_error!("shard join: {e}"),
            }
        }
        // Everyone else (and the lobby) hears the new count with the next presence push.
        match room::on_join(&store, &self.sockets(None), now_ms).await {
            Ok(messages) => {
                for message in messages {
                    let _ = pair.server.send_with_str(message);
                }
            }
            Err(e) => worker::console_error!("room join: {e}"),
        }
        Response::from_websocket(pair.client)
    }

    async fn leave(&self, ws: &WebSocket) {
        let _ = ws.close(Some(1000), Some("bye"));
        let store = DurableRoomStore(self.state.storage());
        if let Err(e) = room::on_leave(&store, worker::Date::now().as_millis()).await {
            worker::console_error!("room leave: {e}");
        }
    }

    /// Handles a request; holds it while the room answers [`RoomResponse::Pending`] and its
    /// hold lasts, and wakes the held requests after one that may change the room.
    async fn answer(&self, mut request: RoomRequest) -> Result<RoomResponse, StoreError> {
        let store = DurableRoomStore(self.state.storage());
        let until_ms = request.hold_until_ms();
        loop {
            // Listening before asking: a change made while the room answers still wakes it.
            let (wake, woken) = oneshot::channel();
            if until_ms.is_some() {
                self.held.borrow_mut().push(wake);
            }
            let answer = room::handle(&store, &self.sockets(None), request.clone()).await;
            if !request.is_read() {
                self.wake_held();
            }
            if answer != Ok(RoomResponse::Pending) {
                return answer;
            }
            let left_ms = until_ms
                .unwrap_or_default()
                .saturating_sub(worker::Date::now().as_millis());
            if left_ms == 0 {
                request = request.without_hold();
                continue;
            }
            let timer = worker::Delay::from(Duration::from_millis(left_ms));
            if let Either::Right(_) = select(woken, timer).await {
                request = request.without_hold();
            }
        }
    }

    /// As the relay of `room_name`: answers a read from what this relay shares, asking
    /// through the relays of `next` (or the room itself, when none) when no answer is under
    /// way or fresh.
    async fn relay(
        &self,
        room_name: &str,
        next: Vec<String>,
        request: RoomRequest,
    ) -> worker::Result<Response> {
        let Some(key) = room::relay::relay_key(room_name, &request) else {
            return error_response(&ApiError::bad_request(
                "not_relayed",
                format!("a relay does not pass on {}", request.op()),
            ));
        };
        // Only the rooms are needed: not the whole platform (its configuration) per call.
        let mut rooms = rooms::DurableRooms::new(self.env.durable_object(bindings::CHANNEL_ROOM)?);
        // Counted apart: the last relay's calls are the room's.
        let counter = if next.is_empty() {
            "live.relayed"
        } else {
            "live.relayed_up"
        };
        rooms.set_relays(next);
        let now_ms = worker::Date::now().as_millis();
        let relayed = self
            .relay
            .answer(&key, now_ms, || rooms.call_relayed(room_name, &request))
            .await;
        match relayed {
            Ok(relayed) => {
                if relayed.asked {
                    metered::count(counter);
                    metered::count(&format!("{counter}.{}", request.op()));
                }
                let headers = worker::Headers::new();
                headers.set(rooms::RELAY_UNTIL_HEADER, &relayed.until_ms.to_string())?;
                Ok(Response::from_json(&relayed.answer)?.with_headers(headers))
            }
            Err(e) => error_response(&ApiError::from(e)),
        }
    }

    /// Wakes every held request (each asks the room again).
    fn wake_held(&self) {
        for wake in self.held.borrow_mut().drain(..) {
            let _ = wake.send(());
        }
    }

    /// A presence shard's tick: sent to the channel's room, its answer passed on to the
    /// shard's sockets.
    async fn tick(
        &self,
        store: &DurableRoomStore,
        (room_name, request): (String, RoomRequest),
        now_ms: u64,
    ) {
        let answer = match CloudflarePlatform::from_env(&self.env) {
            Ok(platform) => platform.live().call(&room_name, &request).await,
            Err(e) => Err(StoreError::backend("durable_object", e)),
        };
        if let Err(e) = room::ticked(store, &self.sockets(None), answer, now_ms).await {
            worker::console_warn!("presence shard tick: {e}");
        }
    }

    /// The channel this room's viewer sockets watch (recorded at their joins), for the lobby.
    async fn watched_channel(&self, store: &DurableRoomStore) -> Option<String> {
        match store.load(WATCHED_CHANNEL_KEY).await {
            Ok(Some(serde_json::Value::String(channel_id))) => Some(channel_id),
            _ => None,
        }
    }

    /// Tells the lobby a channel's viewer count (the live list's, and its sockets').
    async fn tell_lobby(&self, channel_id: &str, count: u64) {
        let told = match CloudflarePlatform::from_env(&self.env) {
            Ok(platform) => platform
                .live()
                .call(LOBBY, &room::lobby_viewers(channel_id, count))
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = told {
            worker::console_warn!("lobby viewer count of {channel_id}: {e}");
        }
    }
}

impl DurableObject for ChannelRoom {
    fn new(state: State, env: Env) -> Self {
        ChannelRoom {
            state,
            env,
            held: RefCell::new(Vec::new()),
            relay: room::relay::Relay::new(),
        }
    }

    async fn fetch(&self, mut request: Request) -> worker::Result<Response> {
        let upgrade = request.headers().get("upgrade")?.unwrap_or_default();
        if upgrade.eq_ignore_ascii_case("websocket") {
            let path = request.path();
            let lobby = path == "/api/live/ws";
            // `/api/channels/{id}/ws`: the channel whose viewers the lobby hears about.
            let channel_id = path
                .strip_prefix("/api/channels/")
                .and_then(|rest| rest.strip_suffix("/ws"))
                .filter(|id| !id.contains('/'))
                .map(str::to_owned);
            let shard = request
                .headers()
                .get(rooms::SHARD_HEADER)?
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0);
            let room_sockets = request
                .headers()
                .get(rooms::ROOM_SOCKETS_HEADER)?
                .and_then(|v| v.parse::<u64>().ok());
            if let (Some(_), 0, Some(most)) = (&channel_id, shard, room_sockets) {
                // A full channel room sends the join on to a shard instead of taking it.
                let mut random = [0u8; 4];
                crate::platform::WorkersEntropy.fill(&mut random);
                let held = self.sockets(None).count();
                if let Some(to) = room::overflow_shard(held, most, u32::from_le_bytes(random)) {
                    let headers = worker::Headers::new();
                    headers.set(rooms::SHARD_HEADER, &to.to_string())?;
                    return Ok(Response::empty()?.with_headers(headers));
                }
            }
            return self.join(lobby, channel_id, shard).await;
        }
        let relay_for = request.headers().get(rooms::RELAY_FOR_HEADER)?;
        let relay_next = request.headers().get(rooms::RELAY_NEXT_HEADER)?;
        let request: RoomRequest = match request.json().await {
            Ok(r) => r,
            Err(e) => {
                return error_response(&ApiError::bad_request(
                    "invalid_room_request",
                    e.to_string(),
                ))
            }
        };
        if let Some(room_name) = relay_for {
            let next = relay_next
                .unwrap_or_default()
                .split(',')
                .filter(|place| !place.is_empty())
                .map(str::to_owned)
                .collect();
            return self.relay(&room_name, next, request).await;
        }
        match self.answer(request).await {
            Ok(answer) => Response::from_json(&answer),
            Err(e) => error_response(&ApiError::from(e)),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let store = DurableRoomStore(self.state.storage());
        let now_ms = worker::Date::now().as_millis();
        let outcome = match room::alarm(&store, &self.sockets(None), now_ms).await {
            Ok(outcome) => outcome,
            Err(e) => {
                worker::console_error!("room alarm: {e}");
                return Response::ok("error");
            }
        };
        if let Some(tick) = outcome.tick {
            self.tick(&store, tick, now_ms).await;
            return Response::ok("ticked");
        }
        if let Some(count) = outcome.viewers {
            if let Some(channel_id) = self.watched_channel(&store).await {
                // The lobby hears a channel's count once per presence push, not per join.
                self.tell_lobby(&channel_id, count).await;
            }
        }
        // A broadcast that ended answers the held requests (with its `ENDLIST`).
        self.wake_held();
        let Some(ended) = outcome.ended else {
            return Response::ok("idle");
        };
        let recorded = match CloudflarePlatform::from_env(&self.env) {
            Ok(platform) => {
                // Metered: the same instantiation of the services as the worker's requests.
                edgevideo_core::services::broadcasts::broadcast_ended(
                    &Metered::new(&platform),
                    &ended,
                )
                .await
                .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match recorded {
            Ok(()) => {
                let finished = RoomRequest::Finished {
                    broadcast_id: ended.broadcast_id.clone(),
                };
                if let Err(e) = room::handle(&store, &self.sockets(None), finished).await {
                    worker::console_error!("room finish: {e}");
                }
            }
            // The room keeps the broadcast and its alarm announces it again.
            Err(e) => worker::console_error!("recording broadcast {}: {e}", ended.broadcast_id),
        }
        Response::ok("ended")
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let WebSocketIncomingMessage::String(text) = message else {
            return Ok(());
        };
        let mut socket_state: room::SocketState = ws
            .deserialize_attachment()
            .ok()
            .flatten()
            .unwrap_or_default();
        let before = socket_state.clone();
        let now_ms = worker::Date::now().as_millis();
        let store = DurableRoomStore(self.state.storage());
        let reply = match room::on_message(&store, &mut socket_state, &text, now_ms).await {
            Ok(reply) => reply,
            Err(e) => {
                worker::console_error!("room message: {e}");
                None
            }
        };
        if socket_state != before {
            let _ = ws.serialize_attachment(&socket_state);
        }
        if let Some(reply) = reply {
            let _ = ws.send_with_str(reply);
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        self.leave(&ws).await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.leave(&ws).await;
        Ok(())
    }
}

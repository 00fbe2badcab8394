//! [`Live`] over the `ChannelRoom` Durable Object namespace: one object per room name, called
//! with the core's [`RoomRequest`] as JSON. A request's reads of a channel's window and parts
//! go through the room's relays in the data center and the continent the request arrived at
//! (other `ChannelRoom` objects, named by [`room::relay::relay_room`]), which share one room
//! call among those places' isolates.

use edgevideo_core::api::RoomUpgrade;
use edgevideo_core::model::room::{RoomRequest, RoomResponse};
use edgevideo_core::ports::Live;
use edgevideo_core::room;
use edgevideo_core::StoreError;
use worker::{Env, Headers, Method, ObjectNamespace, Request, RequestInit, Response};

use crate::bindings;

/// The live-room port over Durable Objects.
pub struct DurableRooms {
    namespace: ObjectNamespace,
    /// The places whose relays this request's reads go through, nearest first (the data
    /// center, then the continent: see [`DurableRooms::set_relays`]). Empty: straight to
    /// the room (queue batches, alarms, the last relay).
    relays: Vec<String>,
}

impl DurableRooms {
    /// Rooms called directly.
    pub fn new(namespace: ObjectNamespace) -> Self {
        DurableRooms {
            namespace,
            relays: Vec::new(),
        }
    }

    /// Sends the reads a relay shares through the relays of `places`, nearest first: the
    /// first one's relay asks the next one's, the last one's asks the room. Two tiers (data
    /// center, continent) keep a room's calls to a few per continent however many data
    /// centers have viewers.
    pub fn set_relays(&mut self, places: Vec<String>) {
        self.relays = places;
    }

    /// Sends `request` to `room`, through its relays when it is a read they share; returns
    /// the answer and, when a relay gave it, until when relays reuse it
    /// ([`RELAY_UNTIL_HEADER`]).
    ///
    /// # Errors
    /// `Backend` when the room cannot be reached or answers with something unreadable.
    pub async fn call_relayed(
        &self,
        room: &str,
        request: &RoomRequest,
    ) -> Result<(RoomResponse, Option<u64>), StoreError> {
        let relayed = room::relay::relayed(request);
        if let (true, Some((place, next))) = (relayed, self.relays.split_first()) {
            if let Some(relay) = room::relay::relay_room(room, place) {
                match self.post(&relay, request, Some((room, next))).await {
                    Ok(answer) => return Ok(answer),
                    // The relay is a shortcut: without it the room still answers.
                    Err(e) => worker::console_warn!("relay {relay}: {e}; asking the room"),
                }
            }
        }
        self.post(room, request, None).await
    }

    /// Posts `request` to the object named `object`; as a relay's, with the room it is for
    /// and the places of the relays after it.
    async fn post(
        &self,
        object: &str,
        request: &RoomRequest,
        relay: Option<(&str, &[String])>,
    ) -> Result<(RoomResponse, Option<u64>), StoreError> {
        let stub = self
            .namespace
            .id_from_name(object)
            .and_then(|id| id.get_stub())
            .map_err(do_error)?;
        let body = serde_json::to_string(request).map_err(do_error)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.into()));
        if let Some((room, next)) = relay {
            let headers = Headers::new();
            headers.set(RELAY_FOR_HEADER, room).map_err(do_error)?;
            headers
                .set(RELAY_NEXT_HEADER, &next.join(","))
                .map_err(do_error)?;
            init.with_headers(headers);
        }
        let request = Request::new_with_init(ROOM_CALL_URL, &init).map_err(do_error)?;
        let mut response = stub.fetch_with_request(request).await.map_err(do_error)?;
        if response.status_code() != 200 {
            let text = response.text().await.unwrap_or_default();
            return Err(do_error(format!(
                "room answered {}: {text}",
                response.status_code()
            )));
        }
        let until_ms = response
            .headers()
            .get(RELAY_UNTIL_HEADER)
            .ok()
            .flatten()
            .and_then(|v| v.parse::<u64>().ok());
        let answer = response.json().await.map_err(do_error)?;
        Ok((answer, until_ms))
    }
}

fn do_error(err: impl std::fmt::Display) -> StoreError {
    StoreError::backend("durable_object", err)
}

/// The internal URL rooms are called on; only the path matters to the object.
pub const ROOM_CALL_URL: &str = "https://room.internal/call";

/// The header that tells a `ChannelRoom` which presence shard a forwarded socket joins (set
/// by the worker only: a client's own is replaced).
pub const SHARD_HEADER: &str = "x-edgevideo-presence-shard";

/// The header that makes a `ChannelRoom` object the relay of the room it names: it answers
/// the request from what it shares ([`room::relay::Relay`]) or asks that room.
pub const RELAY_FOR_HEADER: &str = "x-edgevideo-relay-for";

/// The header naming, comma-separated, the places of the relays a relay asks through (empty:
/// it asks the room).
pub const RELAY_NEXT_HEADER: &str = "x-edgevideo-relay-next";

/// The header of a relay's answer: until when (Unix ms) relays hand that answer out again, so
/// the relay that asked keeps it no longer ([`room::relay::Relayed::until_ms`]).
pub const RELAY_UNTIL_HEADER: &str = "x-edgevideo-relay-until";

/// The header that tells a channel's room the most sockets it keeps (set by the worker only).
/// A full room answers a join with no socket and a [`SHARD_HEADER`] naming the shard to join
/// instead ([`edgevideo_core::room::overflow_shard`]).
pub const ROOM_SOCKETS_HEADER: &str = "x-edgevideo-room-sockets";

/// Forwards a WebSocket upgrade request to the room's Durable Object, telling it the presence
/// shard it is (see [`edgevideo_core::room::shard_room`]) and, for a channel's room, the most
/// sockets it keeps, and returns its answer (101 with the client end of the socket); a full
/// room's join goes on to the shard it names.
///
/// # Errors
/// `Backend` when the namespace or the object cannot be reached.
pub async fn connect(
    env: &Env,
    upgrade: &RoomUpgrade,
    request: &Request,
) -> Result<Response, StoreError> {
    let namespace = env
        .durable_object(bindings::CHANNEL_ROOM)
        .map_err(do_error)?;
    let response = forward(
        &namespace,
        &upgrade.room,
        upgrade.shard,
        upgrade.room_sockets,
        request,
    )
    .await?;
    let sent_on = (response.status_code() != 101)
        .then(|| response.headers().get(SHARD_HEADER).ok().flatten())
        .flatten()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|shard| (1..room::MAX_SHARDS).contains(shard));
    match sent_on {
        Some(shard) => {
            let to = room::shard_room(&upgrade.room, shard);
            forward(&namespace, &to, shard, None, request).await
        }
        None => Ok(response),
    }
}

async fn forward(
    namespace: &ObjectNamespace,
    room: &str,
    shard: u32,
    room_sockets: Option<u64>,
    request: &Request,
) -> Result<Response, StoreError> {
    let headers = Headers::new();
    for (name, value) in request.headers().entries() {
        if !name.eq_ignore_ascii_case(SHARD_HEADER)
            && !name.eq_ignore_ascii_case(ROOM_SOCKETS_HEADER)
        {
            headers.set(&name, &value).map_err(do_error)?;
        }
    }
    headers
        .set(SHARD_HEADER, &shard.to_string())
        .map_err(do_error)?;
    if let Some(most) = room_sockets {
        headers
            .set(ROOM_SOCKETS_HEADER, &most.to_string())
            .map_err(do_error)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let url = request.url().map_err(do_error)?;
    let forwarded = Request::new_with_init(url.as_str(), &init).map_err(do_error)?;
    namespace
        .id_from_name(room)
        .and_then(|id| id.get_stub())
        .map_err(do_error)?
        .fetch_with_request(forwarded)
        .await
        .map_err(do_error)
}

/// A `ChannelRoom` object holds a request that asks to wait (see its `fetch`).
impl Live for DurableRooms {
    const HOLDS: bool = true;

    async fn call(&self, room: &str, request: &RoomRequest) -> Result<RoomResponse, StoreError> {
        self.call_relayed(room, request)
            .await
            .map(|(answer, _)| answer)
    }
}

//! The `ChannelRoom` Durable Object class (SQLite-backed): one instance per channel. It only
//! adapts: requests are decoded into the core's [`RoomRequest`] and handled by
//! [`edgevideo_core::room::handle`] over the object's own storage.

use edgevideo_core::platform::RoomStore;
use edgevideo_core::room::{self, RoomRequest};
use edgevideo_core::{ApiError, StoreError};
use worker::{durable_object, DurableObject, Env, Request, Response, State, Storage};

/// The Durable Object holding one channel's live state.
#[durable_object]
pub struct ChannelRoom {
    state: State,
}

/// [`RoomStore`] over the object's transactional storage.
pub struct DurableRoomStore(pub Storage);

impl RoomStore for DurableRoomStore {
    async fn load(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.0
            .get(key)
            .await
            .map_err(|e| StoreError::backend("durable_object_storage", e))
    }

    async fn save(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.0
            .put(key, value)
            .await
            .map_err(|e| StoreError::backend("durable_object_storage", e))
    }
}

impl DurableObject for ChannelRoom {
    fn new(state: State, _env: Env) -> Self {
        ChannelRoom { state }
    }

    async fn fetch(&self, mut request: Request) -> worker::Result<Response> {
        let request: RoomRequest = match request.json().await {
            Ok(r) => r,
            Err(e) => {
                let err = ApiError::bad_request("invalid_room_request", e.to_string());
                return Response::from_json(&err.body()).map(|r| r.with_status(400));
            }
        };
        let store = DurableRoomStore(self.state.storage());
        match room::handle(&store, request).await {
            Ok(answer) => Response::from_json(&answer),
            Err(e) => {
                let err = ApiError::from(e);
                Response::from_json(&err.body()).map(|r| r.with_status(err.status().as_u16()))
            }
        }
    }
}

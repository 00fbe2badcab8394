//! The channel room: the logic of the one stateful object per channel (a Durable Object on
//! Cloudflare). The host forwards [`RoomRequest`]s to it and stores its state through the
//! [`RoomStore`] port; everything it decides is here.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::platform::RoomStore;

/// A request to a room, sent by the worker as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RoomRequest {
    /// Liveness probe: the room counts the pings it has answered, across requests.
    Ping,
}

/// A room's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RoomResponse {
    /// Answer to [`RoomRequest::Ping`] with the number of pings answered so far.
    Pong {
        /// Pings answered by this room, this one included.
        pings: u64,
    },
}

const PINGS_KEY: &str = "pings";

/// Handles one request inside the room whose storage is `store`.
///
/// # Errors
/// Whatever the room's storage reports.
pub async fn handle<S: RoomStore>(
    store: &S,
    request: RoomRequest,
) -> Result<RoomResponse, StoreError> {
    match request {
        RoomRequest::Ping => {
            let pings = store
                .load(PINGS_KEY)
                .await?
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
                + 1;
            store.save(PINGS_KEY, &pings.into()).await?;
            Ok(RoomResponse::Pong { pings })
        }
    }
}

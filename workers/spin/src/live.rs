//! [`Live`] without Durable Objects: the core's room logic ([`edgevideo_core::room`]) runs in
//! process, with each room's state in the host-private SQLite table `_edgevideo_rooms` and
//! its alarm in `_edgevideo_room_alarms`.
//!
//! - Every room call runs inside one `BEGIN IMMEDIATE` transaction, so calls to a room from
//!   concurrent requests are serialized, as a Durable Object serializes them.
//! - Spin has no timers: due alarms run after the response of the next request to the
//!   component ([`run_due_alarms`]), then record an ended broadcast as the Cloudflare room's
//!   alarm does ([`edgevideo_core::services::broadcasts::confirm_ended`]).
//! - Spin has no WebSockets: rooms hold no sockets ([`NoSockets`], zero viewers, pushes
//!   dropped), the WebSocket routes answer 501, and clients poll `GET /api/channels/{id}`.

use std::rc::Rc;

use edgevideo_core::model::room::{RoomRequest, RoomResponse};
use edgevideo_core::ports::{Live, Platform, RoomSockets, RoomStore, Statement};
use edgevideo_core::room;
use edgevideo_core::StoreError;

use crate::platform::now_ms;
use crate::sql::SpinDb;

/// Most due alarms run after one request.
pub const MAX_ALARMS_PER_REQUEST: usize = 10;

/// The live-room port over Spin SQLite.
pub struct SqlLive {
    db: Rc<SpinDb>,
}

impl SqlLive {
    /// The port over an opened database.
    pub fn new(db: Rc<SpinDb>) -> Self {
        SqlLive { db }
    }
}

/// One room's storage: rows of `_edgevideo_rooms` with its name, and its alarm row.
pub struct SqlRoomStore<'a> {
    db: &'a SpinDb,
    room: &'a str,
}

/// The sockets of a room on Spin: none (no WebSockets); pushes are dropped.
pub struct NoSockets;

impl RoomSockets for NoSockets {
    fn count(&self) -> usize {
        0
    }
    fn send_all(&self, _message: &str) {}
}

fn decode_error(e: serde_json::Error) -> StoreError {
    StoreError::backend("spin_sqlite", format!("room state: {e}"))
}

fn decode_value(value: Option<serde_json::Value>) -> Result<serde_json::Value, StoreError> {
    match value {
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text).map_err(decode_error),
        _ => Err(StoreError::backend("spin_sqlite", "room state is not text")),
    }
}

impl RoomStore for SqlRoomStore<'_> {
    async fn load(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let rows = self.db.query_rows(&Statement::new(
            "SELECT value FROM _edgevideo_rooms WHERE room = ?1 AND key = ?2",
            vec![self.room.into(), key.into()],
        ))?;
        match rows.into_iter().next() {
            Some(mut row) => decode_value(row.remove("value")).map(Some),
            None => Ok(None),
        }
    }

    async fn save(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        let text = serde_json::to_string(value).map_err(decode_error)?;
        self.db.execute_counted(&Statement::new(
            "INSERT INTO _edgevideo_rooms (room, key, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (room, key) DO UPDATE SET value = excluded.value",
            vec![self.room.into(), key.into(), text.into()],
        ))?;
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.db.execute_counted(&Statement::new(
                "DELETE FROM _edgevideo_rooms WHERE room = ?1 AND key = ?2",
                vec![self.room.into(), key.as_str().into()],
            ))?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        // SQLite's default (binary) collation orders UTF-8 keys as Rust strings do.
        let rows = self.db.query_rows(&Statement::new(
            "SELECT key, value FROM _edgevideo_rooms \
             WHERE room = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
            vec![self.room.into(), prefix.into()],
        ))?;
        rows.into_iter()
            .map(|mut row| {
                let key = match row.remove("key") {
                    Some(serde_json::Value::String(key)) => key,
                    _ => return Err(StoreError::backend("spin_sqlite", "room key is not text")),
                };
                Ok((key, decode_value(row.remove("value"))?))
            })
            .collect()
    }

    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError> {
        self.db.execute_counted(&Statement::new(
            "INSERT INTO _edgevideo_room_alarms (room, at_ms) VALUES (?1, ?2) \
             ON CONFLICT (room) DO UPDATE SET at_ms = excluded.at_ms",
            vec![
                self.room.into(),
                i64::try_from(at_ms).unwrap_or(i64::MAX).into(),
            ],
        ))?;
        Ok(())
    }
}

impl Live for SqlLive {
    async fn call(&self, room: &str, request: &RoomRequest) -> Result<RoomResponse, StoreError> {
        self.db.ensure_migrated()?;
        self.db.begin()?;
        let store = SqlRoomStore { db: &self.db, room };
        let result = room::handle(&store, &NoSockets, request.clone()).await;
        self.db.finish(result)
    }
}

impl SqlLive {
    /// Runs one room's alarm if it is still due: clears it and calls the room's alarm logic,
    /// in one transaction. Returns the broadcast it ended (or re-announces), if any.
    async fn fire(
        &self,
        room: &str,
        now_ms: u64,
    ) -> Result<Option<edgevideo_core::model::room::EndedBroadcast>, StoreError> {
        self.db.begin()?;
        let result = async {
            let cleared = self.db.execute_counted(&Statement::new(
                "DELETE FROM _edgevideo_room_alarms WHERE room = ?1 AND at_ms <= ?2",
                vec![
                    room.into(),
                    i64::try_from(now_ms).unwrap_or(i64::MAX).into(),
                ],
            ))?;
            if cleared == 0 {
                return Ok(None);
            }
            let store = SqlRoomStore { db: &self.db, room };
            room::alarm(&store, &NoSockets, now_ms)
                .await
                .map(|outcome| outcome.ended)
        }
        .await;
        self.db.finish(result)
    }
}

/// Runs the room alarms that are due (at most [`MAX_ALARMS_PER_REQUEST`]) and records the
/// broadcasts they end; returns how many alarms ran. Failures are logged to stderr; a room
/// whose ended broadcast could not be recorded announces it again from its next alarm.
pub async fn run_due_alarms<P: Platform>(platform: &P, live: &SqlLive) -> usize {
    let now = now_ms();
    let due = live.db.ensure_migrated().and_then(|()| {
        live.db.query_rows(&Statement::new(
            "SELECT room FROM _edgevideo_room_alarms WHERE at_ms <= ?1 ORDER BY at_ms LIMIT ?2",
            vec![
                i64::try_from(now).unwrap_or(i64::MAX).into(),
                i64::try_from(MAX_ALARMS_PER_REQUEST).unwrap_or(10).into(),
            ],
        ))
    });
    let rooms: Vec<String> = match due {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|mut row| match row.remove("room") {
                Some(serde_json::Value::String(room)) => Some(room),
                _ => None,
            })
            .collect(),
        Err(err) => {
            eprintln!("edgevideo: reading due room alarms: {err}");
            return 0;
        }
    };
    let mut ran = 0;
    for room in rooms {
        match live.fire(&room, now).await {
            Ok(Some(ended)) => {
                ran += 1;
                if let Err(err) =
                    edgevideo_core::services::broadcasts::confirm_ended(platform, &ended).await
                {
                    eprintln!(
                        "edgevideo: recording broadcast {}: {err}",
                        ended.broadcast_id
                    );
                }
            }
            Ok(None) => ran += 1,
            Err(err) => eprintln!("edgevideo: alarm of room {room}: {err}"),
        }
    }
    ran
}

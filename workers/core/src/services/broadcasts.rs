//! What a broadcast's start and end change outside the room: the catalogue rows, the KPI
//! counters, the lobby, the transcode job. Called by the worker with what the room answered,
//! and by the room's host from its alarm. Safe to run twice for the same broadcast.

use serde_json::json;

use crate::error::StoreError;
use crate::model::job::Job;
use crate::model::room::{EndedBroadcast, LobbyEntry, RoomRequest, StartedBroadcast, LOBBY};
use crate::ports::{JobsExt as _, Live as _, Platform, Sql as _, SqlValue, Statement};
use crate::services::channels;
use crate::store::counters;

/// Records a started broadcast: its row, the broadcasts counter, the lobby.
///
/// # Errors
/// Whatever the ports report.
pub async fn broadcast_started<P: Platform>(
    p: &P,
    started: &StartedBroadcast,
) -> Result<(), StoreError> {
    let channel = channels::by_id(p.sql(), &started.channel_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("channel {}", started.channel_id)))?;
    p.sql()
        .batch(&[
            Statement::new(
                "INSERT OR IGNORE INTO broadcasts (id, channel_id, status, started_at) \
                 VALUES (?1, ?2, 'live', ?3)",
                vec![
                    SqlValue::from(started.broadcast_id.as_str()),
                    SqlValue::from(started.channel_id.as_str()),
                    SqlValue::Integer(started.started_at_ms as i64),
                ],
            ),
            counters::bump(counters::BROADCASTS, 1),
        ])
        .await?;
    update_lobby(
        p,
        channel,
        &started.broadcast_id,
        started.started_at_ms,
        true,
    )
    .await
}

/// Tells the lobby that a channel's broadcast went live or ended.
async fn update_lobby<P: Platform>(
    p: &P,
    channel: crate::services::channels::Channel,
    broadcast_id: &str,
    started_at_ms: u64,
    live: bool,
) -> Result<(), StoreError> {
    let entry = LobbyEntry {
        channel_id: channel.id,
        name: channel.name,
        broadcast_id: broadcast_id.to_owned(),
        started_at_ms,
    };
    p.live()
        .call(LOBBY, &RoomRequest::LobbyUpdate { entry, live })
        .await?;
    Ok(())
}

fn default_title(channel_name: &str, started_at_ms: u64) -> String {
    let when = chrono::DateTime::from_timestamp_millis(started_at_ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    format!("{channel_name} — {when}")
}

/// Records an ended broadcast: closes its row with the segment list, creates its video
/// (`processing`, playable as VOD HLS at once), queues the transcode job and updates the
/// lobby. The caller then confirms to the room with [`RoomRequest::Finished`] (see
/// [`confirm_ended`]), so that the room may drop its segment list.
///
/// # Errors
/// Whatever the ports report; the room re-announces the broadcast until it is confirmed.
pub async fn broadcast_ended<P: Platform>(p: &P, ended: &EndedBroadcast) -> Result<(), StoreError> {
    let channel = channels::by_id(p.sql(), &ended.channel_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("channel {}", ended.channel_id)))?;
    let duration_ms: u64 = ended.segments.iter().map(|s| s.duration_ms).sum();
    let segments =
        serde_json::to_string(&ended.segments).map_err(|e| StoreError::backend("json", e))?;
    let mut statements = vec![
        // The start may not have been recorded (a failed write); make sure the row exists.
        Statement::new(
            "INSERT OR IGNORE INTO broadcasts (id, channel_id, status, started_at) \
             VALUES (?1, ?2, 'live', ?3)",
            vec![
                SqlValue::from(ended.broadcast_id.as_str()),
                SqlValue::from(ended.channel_id.as_str()),
                SqlValue::Integer(ended.started_at_ms as i64),
            ],
        ),
        Statement::new(
            "UPDATE broadcasts SET status = 'ended', ended_at = ?2, end_reason = ?3, \
             segment_count = ?4, duration_ms = ?5, segments = ?6 WHERE id = ?1",
            vec![
                SqlValue::from(ended.broadcast_id.as_str()),
                SqlValue::Integer(ended.ended_at_ms as i64),
                SqlValue::from(ended.reason.as_str()),
                SqlValue::Integer(ended.segments.len() as i64),
                SqlValue::Integer(duration_ms as i64),
                SqlValue::from(segments),
            ],
        ),
    ];
    if let Some(video_id) = &ended.video_id {
        statements.push(Statement::new(
            "INSERT OR IGNORE INTO videos (id, channel_id, broadcast_id, owner_id, status, title, \
             duration_ms, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'processing', ?5, ?6, ?7, ?7)",
            vec![
                SqlValue::from(video_id.as_str()),
                SqlValue::from(ended.channel_id.as_str()),
                SqlValue::from(ended.broadcast_id.as_str()),
                SqlValue::from(channel.owner_id.as_str()),
                SqlValue::from(default_title(&channel.name, ended.started_at_ms)),
                SqlValue::Integer(duration_ms as i64),
                SqlValue::Integer(ended.ended_at_ms as i64),
            ],
        ));
        statements.push(Statement::new(
            "INSERT INTO video_events (video_id, kind, detail, created_at) \
             SELECT ?1, 'broadcast.ended', ?2, ?3 WHERE NOT EXISTS \
             (SELECT 1 FROM video_events WHERE video_id = ?1 AND kind = 'broadcast.ended')",
            vec![
                SqlValue::from(video_id.as_str()),
                SqlValue::from(
                    json!({
                        "broadcast_id": ended.broadcast_id,
                        "reason": ended.reason,
                        "segments": ended.segments.len(),
                        "duration_ms": duration_ms,
                        "started_at_ms": ended.started_at_ms,
                    })
                    .to_string(),
                ),
                SqlValue::Integer(ended.ended_at_ms as i64),
            ],
        ));
        // The rest of the recording's history (the catalogue's timeline), once each.
        let bytes: u64 = ended.segments.iter().map(|s| s.size).sum();
        for (kind, detail, at_ms) in [
            (
                "broadcast.started",
                json!({ "broadcast_id": ended.broadcast_id }),
                ended.started_at_ms,
            ),
            (
                "segments.received",
                json!({ "segments": ended.segments.len(), "bytes": bytes, "duration_ms": duration_ms }),
                ended.ended_at_ms,
            ),
            (
                "video.created",
                json!({ "status": "processing" }),
                ended.ended_at_ms,
            ),
            ("transcode.queued", json!({}), ended.ended_at_ms),
        ] {
            statements.push(Statement::new(
                "INSERT INTO video_events (video_id, kind, detail, created_at) \
                 SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS \
                 (SELECT 1 FROM video_events WHERE video_id = ?1 AND kind = ?2)",
                vec![
                    SqlValue::from(video_id.as_str()),
                    SqlValue::from(kind),
                    SqlValue::from(detail.to_string()),
                    SqlValue::Integer(at_ms as i64),
                ],
            ));
        }
    }
    p.sql().batch(&statements).await?;
    if let Some(video_id) = &ended.video_id {
        p.jobs()
            .enqueue(&Job::Transcode {
                video_id: video_id.clone(),
                channel_id: ended.channel_id.clone(),
                broadcast_id: ended.broadcast_id.clone(),
            })
            .await?;
    }
    update_lobby(p, channel, &ended.broadcast_id, ended.started_at_ms, false).await
}

/// Records an ended broadcast and confirms it to its room (the worker's path; the room's own
/// alarm confirms in process).
///
/// # Errors
/// Whatever the ports report.
pub async fn confirm_ended<P: Platform>(p: &P, ended: &EndedBroadcast) -> Result<(), StoreError> {
    broadcast_ended(p, ended).await?;
    let finished = RoomRequest::Finished {
        broadcast_id: ended.broadcast_id.clone(),
    };
    p.live().call(&ended.channel_id, &finished).await?;
    Ok(())
}

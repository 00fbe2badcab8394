//! What a broadcast's start and end change outside the room: the catalogue rows, the KPI
//! counters, the lobby, the transcode job. Called by the worker with what the room answered,
//! and by the room's host from its alarm. Safe to run twice for the same broadcast.

use crate::error::StoreError;
use crate::model::hls;
use crate::model::job::{Job, PARTS_KEPT_AFTER_END_S};
use crate::model::llhls::PartName;
use crate::model::room::{EndedBroadcast, LobbyEntry, RoomRequest, StartedBroadcast, LOBBY};
use crate::ports::{Blobs as _, Jobs as _, JobsExt as _, Live as _, Platform, Sql as _};
use crate::services::videos;
use crate::store::channels;
use crate::store::{broadcasts, counters};

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
            broadcasts::record_started(
                &started.broadcast_id,
                &started.channel_id,
                started.started_at_ms,
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
    channel: channels::Channel,
    broadcast_id: &str,
    started_at_ms: u64,
    live: bool,
) -> Result<(), StoreError> {
    let entry = LobbyEntry {
        channel_id: channel.id,
        name: channel.name,
        broadcast_id: broadcast_id.to_owned(),
        started_at_ms,
        viewers: 0,
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

/// Records an ended broadcast: closes its row, writes its segment list beside its segments,
/// creates its video
/// (`processing`, playable as VOD HLS at once), queues the transcode job and the deletion of
/// its low-latency parts ([`drop_parts`]) and updates the lobby. The caller then confirms to the room with [`RoomRequest::Finished`] (see
/// [`confirm_ended`]), so that the room may drop its segment list.
///
/// # Errors
/// Whatever the ports report; the room re-announces the broadcast until it is confirmed.
pub async fn broadcast_ended<P: Platform>(p: &P, ended: &EndedBroadcast) -> Result<(), StoreError> {
    let channel = channels::by_id(p.sql(), &ended.channel_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("channel {}", ended.channel_id)))?;
    let title = default_title(&channel.name, ended.started_at_ms);
    let statements = broadcasts::record_ended(ended, &channel.owner_id, &title)?;
    if ended.video_id.is_some() {
        // Before the row: once a video row exists its playlists must be there (a re-run
        // after a failed batch rewrites the same bytes).
        write_recording_playlists(p, ended).await?;
    }
    p.sql().batch(&statements).await?;
    if let Some(video_id) = &ended.video_id {
        p.jobs()
            .enqueue(&Job::Transcode {
                video_id: video_id.clone(),
                channel_id: ended.channel_id.clone(),
                broadcast_id: ended.broadcast_id.clone(),
                attempt: 0,
            })
            .await?;
    }
    let drop_parts = Job::DropParts {
        channel_id: ended.channel_id.clone(),
        broadcast_id: ended.broadcast_id.clone(),
    };
    p.jobs()
        .enqueue_after(&drop_parts, PARTS_KEPT_AFTER_END_S)
        .await?;
    update_lobby(p, channel, &ended.broadcast_id, ended.started_at_ms, false).await
}

/// Writes the segment list and the VOD playlist of an ended broadcast to the blob store: a
/// media playlist, or a multivariant one (`vod/{rendition}.m3u8` variants) and one per
/// rendition.
async fn write_recording_playlists<P: Platform>(
    p: &P,
    ended: &EndedBroadcast,
) -> Result<(), StoreError> {
    let (channel, broadcast) = (&ended.channel_id, &ended.broadcast_id);
    let list = serde_json::to_vec(&ended.segments).map_err(|e| StoreError::backend("json", e))?;
    p.blobs()
        .put(
            &videos::recording_segments_key(channel, broadcast),
            list,
            "application/json",
        )
        .await?;
    let segments = format!("seg/{broadcast}/");
    let top = if ended.renditions.is_empty() {
        hls::vod_playlist(&ended.segments, &segments)
    } else {
        for rendition in &ended.renditions {
            let name = &rendition.variant.rendition;
            let playlist = hls::vod_playlist(&rendition.segments, &format!("../{segments}"));
            let key = videos::rendition_playlist_key(channel, broadcast, name);
            p.blobs()
                .put(&key, playlist, hls::PLAYLIST_CONTENT_TYPE)
                .await?;
        }
        let variants: Vec<_> = ended.renditions.iter().map(|r| r.variant.clone()).collect();
        hls::multivariant_playlist(&variants, "vod/")
    };
    let key = videos::recording_playlist_key(channel, broadcast);
    p.blobs().put(&key, top, hls::PLAYLIST_CONTENT_TYPE).await
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

/// Low-latency parts one [`Job::DropParts`] deletes (one blob-store call each, well inside a
/// Worker invocation's subrequest budget); the job queues itself again for the rest.
pub const PARTS_DROPPED_PER_JOB: usize = 200;

/// Deletes up to [`PARTS_DROPPED_PER_JOB`] low-latency parts of a finished broadcast (its
/// segments, init segments and playlists stay: the recording is made of them), queueing
/// [`Job::DropParts`] again when more are left. Idempotent.
///
/// # Errors
/// Whatever the blob store or the queue reports (the job is retried).
pub async fn drop_parts<P: Platform>(
    p: &P,
    channel_id: &str,
    broadcast_id: &str,
) -> Result<(), StoreError> {
    let prefix = videos::segment_key(channel_id, broadcast_id, "");
    let parts: Vec<String> = p
        .blobs()
        .list(&prefix)
        .await?
        .into_iter()
        .filter(|key| {
            key.strip_prefix(&prefix)
                .is_some_and(|file| PartName::parse(file).is_some())
        })
        .collect();
    for key in parts.iter().take(PARTS_DROPPED_PER_JOB) {
        p.blobs().delete(key).await?;
    }
    if parts.len() > PARTS_DROPPED_PER_JOB {
        let next = Job::DropParts {
            channel_id: channel_id.to_owned(),
            broadcast_id: broadcast_id.to_owned(),
        };
        p.jobs().enqueue(&next).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPlatform;

    #[test]
    fn a_long_broadcasts_parts_go_a_batch_per_job_and_nothing_else_goes() {
        let p = MemoryPlatform::development();
        let key = |file: &str| videos::segment_key("ch_1", "br_1", file);
        pollster::block_on(async {
            for segment in 0..100 {
                for part in 0..3 {
                    let file = format!("index_{segment:05}.part{part}.m4s");
                    p.blobs()
                        .put(&key(&file), vec![1], "video/mp4")
                        .await
                        .unwrap();
                }
                let file = format!("index_{segment:05}.m4s");
                p.blobs()
                    .put(&key(&file), vec![1], "video/mp4")
                    .await
                    .unwrap();
            }
            p.blobs()
                .put(&key("index.m3u8"), vec![1], "x")
                .await
                .unwrap();
            // Another broadcast's parts are not touched.
            let other = videos::segment_key("ch_1", "br_2", "index_00000.part0.m4s");
            p.blobs().put(&other, vec![1], "video/mp4").await.unwrap();

            drop_parts(&p, "ch_1", "br_1").await.unwrap();
            let left = p.blobs().list(&key("")).await.unwrap();
            assert_eq!(left.len(), 300 + 100 + 1 - PARTS_DROPPED_PER_JOB);
            assert_eq!(p.jobs.enqueued.borrow().len(), 1, "the rest is queued");
            drop_parts(&p, "ch_1", "br_1").await.unwrap();
            let left = p.blobs().list(&key("")).await.unwrap();
            assert_eq!(left.len(), 101, "segments and the playlist stay: {left:?}");
            assert!(left.iter().all(|k| !k.contains(".part")));
            assert_eq!(p.jobs.enqueued.borrow().len(), 1, "nothing more to queue");
            assert!(p.blobs().head(&other).await.unwrap().is_some());
        });
    }
}

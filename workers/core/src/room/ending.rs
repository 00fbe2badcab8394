//! The end of a broadcast: the pusher's `ENDLIST` once every listed segment is in
//! ([`settle`]), silence or the end grace passing ([`alarm`]), the recording it leaves (every
//! stored segment of each rendition, [`finalize`]), and the catalogue's confirmation
//! ([`finished`]), until which the alarm re-announces it.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::model::hls::{ListedSegment, Variant};
use crate::model::room::{EndedBroadcast, LastSummary, RecordedRendition, RoomResponse};
use crate::ports::{RoomSockets, RoomStore};

use super::messages::ServerMessage;
use super::state::{
    backend, load, load_segment, save, schedule, segment_key, segments_prefix, video_id_for,
    LastBroadcast, RoomState, SegmentRecord, Unfinished, STATE_KEY,
};
use super::state::{DEFAULT_RENDITION, DEFAULT_TARGET_MS, ENDING_GRACE_MS, FINISH_RETRY_MS};
use super::status::resolved;
use super::WINDOW_KEEP;

/// The catalogue recorded the ended broadcast: drops its segment records.
pub(super) async fn finished<S: RoomStore>(
    store: &S,
    broadcast_id: &str,
) -> Result<RoomResponse, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    let keys: Vec<String> = store
        .list(&segments_prefix(broadcast_id))
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    store.delete(&keys).await?;
    if state
        .unfinished
        .as_ref()
        .is_some_and(|u| u.broadcast_id == broadcast_id)
    {
        state.unfinished = None;
        save(store, STATE_KEY, &state).await?;
    }
    Ok(RoomResponse::Done)
}

/// Ends the live broadcast when the pusher's `ENDLIST` has been seen and every segment it
/// listed is in.
pub(super) async fn settle<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    state: &mut RoomState,
    now_ms: u64,
) -> Result<Option<EndedBroadcast>, StoreError> {
    // A rendition the ladder no longer offers (the page dropped it) is not waited for.
    let complete = state.live.as_ref().is_some_and(|l| {
        let offered = |name: &String| {
            l.ladder
                .as_ref()
                .is_none_or(|ladder| ladder.iter().any(|v| &v.rendition == name))
        };
        l.ending_since_ms.is_some()
            && l.renditions
                .iter()
                .filter(|(name, _)| offered(name))
                .all(|(_, r)| r.end_list && r.known.is_empty())
    });
    if complete {
        return finalize(store, sockets, state, "endlist", now_ms)
            .await
            .map(Some);
    }
    Ok(None)
}

/// The alarm's work: ends a broadcast that fell silent (or whose end grace passed), and
/// re-announces an ended broadcast the catalogue has not confirmed.
pub(super) async fn alarm<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<Option<EndedBroadcast>, StoreError> {
    let mut state: RoomState = load(store, STATE_KEY).await?;
    if let Some(live) = &state.live {
        let ending_due = live.ending_since_ms.map(|t| t + ENDING_GRACE_MS);
        let idle_due = live.last_activity_ms + live.idle_timeout_ms;
        let reason = if ending_due.is_some_and(|due| due <= now_ms) {
            "endlist"
        } else if idle_due <= now_ms {
            "timeout"
        } else {
            // Woken early (a presence push): ask again for the nearer deadline.
            schedule(store, ending_due.map_or(idle_due, |due| due.min(idle_due))).await?;
            return Ok(None);
        };
        let ended = finalize(store, sockets, &mut state, reason, now_ms).await?;
        save(store, STATE_KEY, &state).await?;
        return Ok(Some(ended));
    }
    if let Some(unfinished) = state.unfinished {
        schedule(store, now_ms + FINISH_RETRY_MS).await?;
        // Records of before renditions have no primary: the plain push's.
        let primary = unfinished.primary.as_deref().unwrap_or(DEFAULT_RENDITION);
        let unnamed_to = (!unfinished.several).then_some(primary);
        let groups = recorded_segments(
            store,
            &unfinished.broadcast_id,
            unnamed_to,
            &unfinished.maps,
            DEFAULT_TARGET_MS,
        )
        .await?;
        let (segments, renditions) = recording(groups, Some(primary), unfinished.ladder.as_deref());
        return Ok(Some(EndedBroadcast {
            video_id: (!segments.is_empty()).then(|| video_id_for(&unfinished.broadcast_id)),
            channel_id: unfinished.channel_id,
            broadcast_id: unfinished.broadcast_id,
            started_at_ms: unfinished.started_at_ms,
            ended_at_ms: unfinished.ended_at_ms,
            reason: unfinished.reason,
            segments,
            renditions,
        }));
    }
    Ok(None)
}

/// Every stored segment of a broadcast in order, by rendition: listed ones by our sequence,
/// then stored ones no playlist listed (the pusher was cut off) by the pusher's order or
/// arrival, with `estimated_ms` when their duration is unknown. A segment no playlist named
/// goes to `unnamed_to` (the one rendition of a broadcast that has one; with several, which
/// one it belongs to is unknown and it is left out); init segments are not listed.
async fn recorded_segments<S: RoomStore>(
    store: &S,
    broadcast_id: &str,
    unnamed_to: Option<&str>,
    maps: &BTreeMap<String, String>,
    estimated_ms: u64,
) -> Result<BTreeMap<String, Vec<ListedSegment>>, StoreError> {
    let mut listed: BTreeMap<String, Vec<ListedSegment>> = BTreeMap::new();
    let mut unlisted: BTreeMap<String, Vec<SegmentRecord>> = BTreeMap::new();
    for (_, value) in store.list(&segments_prefix(broadcast_id)).await? {
        let record: SegmentRecord = serde_json::from_value(value).map_err(backend)?;
        if record.init {
            continue;
        }
        let Some(rendition) = record
            .rendition
            .clone()
            .or_else(|| unnamed_to.map(str::to_owned))
        else {
            continue;
        };
        match record.listed {
            Some(l) => listed.entry(rendition).or_default().push(l),
            None if record.stored => unlisted.entry(rendition).or_default().push(record),
            None => {}
        }
    }
    for group in listed.values_mut() {
        group.sort_by_key(|s| s.seq);
    }
    for (rendition, mut records) in unlisted {
        let group = listed.entry(rendition.clone()).or_default();
        records.sort_by_key(|r| (r.sequence.unwrap_or(u64::MAX), r.stored_at_ms));
        let first_unlisted_seq = group.last().map_or(0, |s| s.seq + 1);
        let mut next_date = group.last().map(|s| s.program_date_ms + s.duration_ms);
        let map = maps.get(&rendition).cloned();
        // A CMAF rendition's segments are CMAF; a stray file of the other kind is not part
        // of it.
        records.retain(|r| map.is_some() == r.file.ends_with(".m4s"));
        for (seq, record) in (first_unlisted_seq..).zip(records) {
            let duration_ms = record.duration_ms.unwrap_or(estimated_ms);
            let program_date_ms = next_date.unwrap_or(record.stored_at_ms);
            group.push(ListedSegment {
                seq,
                file: record.file,
                duration_ms,
                size: record.size,
                program_date_ms,
                map: map.clone(),
            });
            next_date = Some(program_date_ms + duration_ms);
        }
    }
    Ok(listed)
}

/// The recording of a broadcast from its renditions' segments: the primary rendition's
/// segments (what the video is made of) and, when a ladder was pushed, every offered
/// rendition of it that has segments.
fn recording(
    mut groups: BTreeMap<String, Vec<ListedSegment>>,
    primary: Option<&str>,
    ladder: Option<&[Variant]>,
) -> (Vec<ListedSegment>, Vec<RecordedRendition>) {
    let renditions = ladder
        .into_iter()
        .flatten()
        .filter_map(|variant| {
            let segments = groups.get(&variant.rendition).filter(|g| !g.is_empty())?;
            Some(RecordedRendition {
                variant: variant.clone(),
                segments: segments.clone(),
            })
        })
        .collect();
    let segments = primary.and_then(|p| groups.remove(p)).unwrap_or_default();
    (segments, renditions)
}

/// Ends the live broadcast: keeps its summary and last windows, keeps it as unfinished
/// until the catalogue confirms it (alarm set), and pushes `ended`. Longer than most
/// functions here: it is one transaction over the room state (what it keeps, what it
/// announces and the alarm must change together), read top to bottom.
async fn finalize<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    state: &mut RoomState,
    reason: &str,
    now_ms: u64,
) -> Result<EndedBroadcast, StoreError> {
    let Some(live) = state.live.take() else {
        return Err(StoreError::Precondition("no live broadcast".into()));
    };
    super::parts::forget_chunks(store, &live.broadcast_id, &live.chunked).await?;
    // Durations (and renditions) the last playlists named for segments that were stored
    // but not listed.
    for (name, track) in &live.renditions {
        for (entry, _) in &track.known {
            let key = segment_key(&live.broadcast_id, &entry.file);
            if let Some(mut record) = load_segment(store, &key).await? {
                if record.listed.is_none() {
                    record.sequence = Some(entry.sequence);
                    record.duration_ms = Some(entry.duration_ms);
                    record.rendition = Some(name.clone());
                    save(store, &key, &record).await?;
                }
            }
        }
    }
    // Segments of a pusher cut off before its first playlist belong to the default one.
    let primary = live.primary().unwrap_or(DEFAULT_RENDITION).to_owned();
    let several = live.renditions.len() > 1;
    let maps: BTreeMap<String, String> = live
        .renditions
        .iter()
        .filter_map(|(name, r)| Some((name.clone(), r.map.clone()?)))
        .collect();
    let ladder: Option<Vec<Variant>> = live.ladder.as_ref().map(|ladder| {
        ladder
            .iter()
            .map(|v| {
                let init = maps.get(&v.rendition).and_then(|m| live.inits.get(m));
                resolved(v, init)
            })
            .collect()
    });
    let estimated = live
        .primary_rendition()
        .map_or(DEFAULT_TARGET_MS, |r| r.target_duration_ms);
    let unnamed_to = (!several).then_some(primary.as_str());
    let groups = recorded_segments(store, &live.broadcast_id, unnamed_to, &maps, estimated).await?;
    let tails: BTreeMap<String, Vec<ListedSegment>> = groups
        .iter()
        .map(|(name, g)| {
            (
                name.clone(),
                g[g.len().saturating_sub(WINDOW_KEEP)..].to_vec(),
            )
        })
        .collect();
    let (segments, renditions) = recording(groups, Some(&primary), ladder.as_deref());
    let video_id = (!segments.is_empty()).then(|| video_id_for(&live.broadcast_id));
    let window = segments[segments.len().saturating_sub(WINDOW_KEEP)..].to_vec();
    state.last = Some(LastBroadcast {
        summary: LastSummary {
            broadcast_id: live.broadcast_id.clone(),
            video_id: video_id.clone(),
            ended_at_ms: now_ms,
            reason: reason.to_owned(),
        },
        window,
        renditions: tails,
        ladder: ladder
            .is_some()
            .then(|| renditions.iter().map(|r| r.variant.clone()).collect()),
    });
    state.unfinished = Some(Unfinished {
        channel_id: live.channel_id.clone(),
        broadcast_id: live.broadcast_id.clone(),
        started_at_ms: live.started_at_ms,
        ended_at_ms: now_ms,
        reason: reason.to_owned(),
        primary: Some(primary),
        several,
        ladder,
        maps,
    });
    schedule(store, now_ms + FINISH_RETRY_MS).await?;
    ServerMessage::Ended {
        channel_id: live.channel_id.clone(),
        broadcast_id: live.broadcast_id.clone(),
        video_id: video_id.clone(),
        reason: reason.to_owned(),
    }
    .send_to(sockets);
    Ok(EndedBroadcast {
        channel_id: live.channel_id,
        broadcast_id: live.broadcast_id,
        video_id,
        started_at_ms: live.started_at_ms,
        ended_at_ms: now_ms,
        reason: reason.to_owned(),
        segments,
        renditions,
    })
}

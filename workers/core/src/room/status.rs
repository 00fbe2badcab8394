//! What the room answers readers: the channel's status (live broadcast, viewers, a recent
//! refusal, the last broadcast) and a rendition's live window with the ladder viewers are
//! offered.

use crate::error::StoreError;
use crate::model::hls::{ListedSegment, Variant};
use crate::model::isobmff::InitInfo;
use crate::model::room::{LiveSummary, LiveWindow, RoomStatus};
use crate::ports::{RoomSockets, RoomStore};

use super::state::REFUSAL_SHOWN_MS;
use super::state::{load, LiveState, RoomState, STATE_KEY};
use super::ENDED_LISTED_MS;

/// The channel's status: live broadcast, viewers, a recent refusal, the last broadcast (once
/// the catalogue confirmed it).
pub(super) async fn status<S: RoomStore>(
    store: &S,
    sockets: &dyn RoomSockets,
    now_ms: u64,
) -> Result<RoomStatus, StoreError> {
    let state: RoomState = load(store, STATE_KEY).await?;
    Ok(RoomStatus {
        live: state.live.as_ref().map(|l| {
            let primary = l.primary_rendition();
            LiveSummary {
                broadcast_id: l.broadcast_id.clone(),
                started_at_ms: l.started_at_ms,
                segments: primary.map_or(0, |r| r.listed),
                duration_ms: primary.map_or(0, |r| r.listed_duration_ms),
            }
        }),
        viewers: super::shards::viewers(store, sockets, now_ms).await?,
        ingest_refused: state
            .refusal
            .filter(|r| now_ms.saturating_sub(r.at_ms) < REFUSAL_SHOWN_MS),
        // Shown once the catalogue has recorded it (its video then exists), not while the
        // room still re-announces it: a client reading the video at once finds it.
        last_broadcast: state.last.map(|l| l.summary).filter(|summary| {
            state
                .unfinished
                .as_ref()
                .is_none_or(|u| u.broadcast_id != summary.broadcast_id)
        }),
    })
}

/// The last `max_segments` of a rendition's live window (of the primary one when
/// `rendition` is `None`), or of the last broadcast's for [`ENDED_LISTED_MS`] after it
/// ended (players reach its `ENDLIST`); for the channel's playlist of a broadcast with a
/// ladder, the ladder instead. `None` when nothing is live.
pub(super) async fn window<S: RoomStore>(
    store: &S,
    max_segments: usize,
    rendition: Option<&str>,
    now_ms: u64,
) -> Result<Option<LiveWindow>, StoreError> {
    let state: RoomState = load(store, STATE_KEY).await?;
    let tail = |w: &[ListedSegment]| w[w.len().saturating_sub(max_segments)..].to_vec();
    let window = |broadcast_id: &str, segments: Vec<ListedSegment>, ended: bool| LiveWindow {
        broadcast_id: broadcast_id.to_owned(),
        segments,
        ended,
        ladder: None,
        low_latency: None,
    };
    Ok(match (&state.live, &state.last) {
        (Some(live), _) => match rendition {
            None if live.ladder.is_some() => Some(LiveWindow {
                ladder: Some(offered(live)),
                ..window(&live.broadcast_id, Vec::new(), false)
            }),
            // Live before its first playlist: an empty window (players retry).
            None => Some(match live.primary() {
                Some(name) => live_window(live, name, &tail),
                None => window(&live.broadcast_id, Vec::new(), false),
            }),
            Some(name) => live
                .renditions
                .contains_key(name)
                .then(|| live_window(live, name, &tail)),
        },
        (None, Some(last)) if now_ms.saturating_sub(last.summary.ended_at_ms) < ENDED_LISTED_MS => {
            let id = &last.summary.broadcast_id;
            match (rendition, &last.ladder) {
                (None, Some(ladder)) => Some(LiveWindow {
                    ladder: Some(ladder.clone()),
                    ..window(id, Vec::new(), true)
                }),
                (None, None) => Some(window(id, tail(&last.window), true)),
                (Some(name), _) => last.renditions.get(name).map(|w| window(id, tail(w), true)),
            }
        }
        (None, _) => None,
    })
}

/// Rendition `name`'s window of the live broadcast, with its parts when it has some.
fn live_window(
    live: &LiveState,
    name: &str,
    tail: &dyn Fn(&[ListedSegment]) -> Vec<ListedSegment>,
) -> LiveWindow {
    let segments = live
        .renditions
        .get(name)
        .map(|r| tail(&r.window))
        .unwrap_or_default();
    let mut low_latency = super::parts::window(live, name, &segments);
    if let Some(parts) = low_latency.as_mut() {
        // The ladder's other renditions, for a player switching between them.
        parts.reports = live
            .ladder
            .iter()
            .flatten()
            .filter(|v| v.rendition != name)
            .filter_map(|v| super::parts::report(live, &v.rendition))
            .collect();
    }
    LiveWindow {
        broadcast_id: live.broadcast_id.clone(),
        low_latency,
        segments,
        ended: false,
        ladder: None,
    }
}

/// The ladder viewers are offered: the pushed one's renditions that have listed a segment,
/// with their codecs from the init segment where the pusher declared none.
fn offered(live: &LiveState) -> Vec<Variant> {
    live.ladder
        .iter()
        .flatten()
        .filter_map(|v| {
            let track = live.renditions.get(&v.rendition).filter(|r| r.listed > 0)?;
            Some(resolved(
                v,
                track.map.as_deref().and_then(|m| live.inits.get(m)),
            ))
        })
        .collect()
}

/// `variant` with the codecs of `init` (what players will find, written as RFC 6381 says;
/// the pusher's declaration was checked against them) and its picture size where the
/// pusher declared none.
pub(super) fn resolved(variant: &Variant, init: Option<&InitInfo>) -> Variant {
    let mut variant = variant.clone();
    if let Some(init) = init {
        variant.codecs = Some(init.codecs.join(","));
        if variant.resolution.is_none() {
            variant.resolution = init.resolution.map(|(w, h)| (u64::from(w), u64::from(h)));
        }
    }
    variant
}

//! Videos in the catalogue: the recording of a broadcast, playable as VOD HLS at once and as
//! an MP4 once the transcoder has stitched it. The rows and status changes are
//! [`crate::store::videos`]'s; here are the blob keys of a video's files and its recording's
//! segment list.

use crate::error::StoreError;
use crate::model::hls::ListedSegment;
use crate::ports::{Blobs as _, Platform};
use crate::store::videos as stored;

/// The blob key of a live or recorded segment.
pub fn segment_key(channel_id: &str, broadcast_id: &str, file: &str) -> String {
    format!("live/{channel_id}/{broadcast_id}/{file}")
}

/// The blob key of a recording's segment list (JSON, the primary rendition's segments in
/// order): in the blob store, not the catalogue row, as a long broadcast's list outgrows a
/// row (D1's limit is 2 MB, about 20,000 segments).
pub fn recording_segments_key(channel_id: &str, broadcast_id: &str) -> String {
    format!("live/{channel_id}/{broadcast_id}/recording.json")
}

/// The recorded segments of an ended broadcast (a video's source), in order: from the blob
/// store, or from the catalogue row for broadcasts recorded before the list moved there.
///
/// # Errors
/// `NotFound` when the broadcast has no recording; `Backend` on an unreadable list.
pub async fn recording<P: Platform>(
    p: &P,
    channel_id: &str,
    broadcast_id: &str,
) -> Result<Vec<ListedSegment>, StoreError> {
    let key = recording_segments_key(channel_id, broadcast_id);
    match p.blobs().get(&key, None).await? {
        Some(blob) => serde_json::from_slice(&blob.bytes)
            .map_err(|e| StoreError::backend("blobs", format!("{key}: {e}"))),
        None => stored::recording(p.sql(), broadcast_id).await,
    }
}

/// The blob key of a recording's VOD playlist, written when its broadcast ends so that
/// playing a recording reads no catalogue row.
pub fn recording_playlist_key(channel_id: &str, broadcast_id: &str) -> String {
    format!("live/{channel_id}/{broadcast_id}/vod.m3u8")
}

/// The blob key of one rendition's VOD playlist, beside the recording's multivariant one.
pub fn rendition_playlist_key(channel_id: &str, broadcast_id: &str, rendition: &str) -> String {
    format!("live/{channel_id}/{broadcast_id}/vod_{rendition}.m3u8")
}

/// The blob key of a channel's thumbnail: the latest picture its broadcast page sent, or the
/// poster of its latest recording.
pub fn thumbnail_key(channel_id: &str) -> String {
    format!("thumbs/{channel_id}.jpg")
}

/// The blob prefix under which a video's own files (MP4, poster) are stored.
pub fn files_prefix(video_id: &str) -> String {
    format!("videos/{video_id}/")
}

/// The blob key of a video's transcoded file: `mp4` or `poster`.
pub fn file_key(video_id: &str, kind: &str) -> Option<(String, &'static str)> {
    let (name, content_type) = match kind {
        "mp4" => ("video.mp4", "video/mp4"),
        "poster" => ("poster.jpg", "image/jpeg"),
        _ => return None,
    };
    Some((format!("{}{name}", files_prefix(video_id)), content_type))
}

//! Videos in the catalogue: the recording of a broadcast, playable as VOD HLS at once and as
//! an MP4 once the transcoder has stitched it. The rows and status changes are
//! [`crate::store::videos`]'s; here are the blob keys of a video's files.

/// The blob key of a live or recorded segment.
pub fn segment_key(channel_id: &str, broadcast_id: &str, file: &str) -> String {
    format!("live/{channel_id}/{broadcast_id}/{file}")
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

//! Videos as the catalogue stores them: the [`VideoStatus`] they move through and the
//! [`Video`] columns playback reads. The catalogue's listing and detail rows (the detail is
//! also what plugins are shown) flatten [`Video`] and add what they select besides; they are
//! [`crate::store::catalogue`]'s.

use serde::{Deserialize, Serialize};

/// Where a video is in its life. Stored and sent as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    /// Recorded; plays as VOD HLS while the transcoder works.
    Processing,
    /// Transcoded; its plugin lifecycle runs.
    Ready,
    /// Through the lifecycle; listed in the catalogue.
    Published,
    /// Refused by a `preValidate` plugin.
    Rejected,
    /// The transcoder failed.
    Failed,
}

impl VideoStatus {
    /// All statuses, in the order a video moves through them.
    pub const ALL: [VideoStatus; 5] = [
        VideoStatus::Processing,
        VideoStatus::Ready,
        VideoStatus::Published,
        VideoStatus::Rejected,
        VideoStatus::Failed,
    ];

    /// The status as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::Processing => "processing",
            VideoStatus::Ready => "ready",
            VideoStatus::Published => "published",
            VideoStatus::Rejected => "rejected",
            VideoStatus::Failed => "failed",
        }
    }

    /// Parses a stored status.
    pub fn parse(name: &str) -> Option<VideoStatus> {
        VideoStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A stored video (the columns playback and the catalogue need).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Video {
    /// Identifier (`vid_...`).
    pub id: String,
    /// The channel it was broadcast on.
    pub channel_id: String,
    /// The broadcast it records.
    pub broadcast_id: Option<String>,
    /// The channel's owner.
    pub owner_id: String,
    /// Where it is in its life.
    pub status: VideoStatus,
    /// `public` or `private`.
    pub visibility: String,
    /// Title.
    pub title: String,
    /// Duration in ms, when known.
    pub duration_ms: Option<i64>,
    /// The MP4's blob key, once transcoded.
    pub mp4_key: Option<String>,
    /// The poster's blob key, once transcoded.
    pub poster_key: Option<String>,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// What a finished transcode adds to a video that becomes [`VideoStatus::Ready`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcoded {
    /// The MP4's blob key.
    pub mp4_key: Option<String>,
    /// The poster's blob key.
    pub poster_key: Option<String>,
    /// Duration in ms (the recorded one stays when `None`).
    pub duration_ms: Option<i64>,
    /// Width in pixels.
    pub width: Option<i64>,
    /// Height in pixels.
    pub height: Option<i64>,
    /// Size of the MP4 in bytes.
    pub size_bytes: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_as_their_stored_names() {
        for status in VideoStatus::ALL {
            assert_eq!(VideoStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).expect("serialize");
            assert_eq!(json, serde_json::Value::from(status.as_str()));
        }
        assert_eq!(VideoStatus::parse("Ready"), None);
    }
}

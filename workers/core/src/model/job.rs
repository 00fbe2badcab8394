//! The queue's message: what the worker puts on its queue ([`Job`]) and why running one
//! failed ([`JobError`]). The consumer that runs them is [`crate::queue`].

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// A queued job. The JSON form (`{"kind": ..., ...}`) is the queue's message format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Round-trip probe of the queue: the consumer records that it ran `id`.
    Probe {
        /// Caller-chosen identifier.
        id: String,
    },
    /// Make attempt `attempt` of a webhook delivery.
    Deliver {
        /// The delivery.
        delivery_id: String,
        /// Which attempt (1 for the first); a job for an attempt already made is dropped.
        attempt: u32,
    },
    /// A plugin task's deadline has come.
    TaskDeadline {
        /// The task.
        task_id: String,
    },
    /// Stitch a finished broadcast's segments into one MP4 (handled by the transcoder).
    Transcode {
        /// The video to produce.
        video_id: String,
        /// The channel.
        channel_id: String,
        /// The broadcast whose segments make the video.
        broadcast_id: String,
        /// Which sending this is: 0 the first; a later one is the re-drive check, which
        /// sends again only while the video is still processing.
        #[serde(default)]
        attempt: u32,
    },
    /// Deletes a finished broadcast's low-latency parts (its segments hold the same media;
    /// queued when it ends, run [`PARTS_KEPT_AFTER_END_S`] later; a long broadcast's parts
    /// are deleted a batch per job, each job queueing the next).
    DropParts {
        /// The channel.
        channel_id: String,
        /// The broadcast.
        broadcast_id: String,
    },
    /// Deletes a batch of finished viewer sessions (queued now and then by a counted view,
    /// so the table stays the size of the current audience).
    SweepViewSessions,
    /// A viewer asked for a playback URL of `scope`: open a viewer session, and count a view
    /// under `counter` when it opens one and `may_count` allows it. Sent by the request, so
    /// the join writes nothing to the catalogue; the consumer applies a batch of them
    /// together ([`crate::services::views::apply`]).
    CountView {
        /// The channel or video watched.
        scope: String,
        /// The viewer: a user id, or an anonymous viewer's `vw_` id.
        viewer: String,
        /// The counter a new session adds one to.
        counter: String,
        /// Whether a new session may count (false for an anonymous viewer over its
        /// address's cap: the session opens, uncounted).
        may_count: bool,
        /// When the viewer asked, Unix ms (a session's start).
        at_ms: u64,
        /// An anonymous viewer's network address, as a keyed hash: its views of one scope
        /// count up to a cap per address and session period, whatever cookies it sends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
}

/// Seconds a finished broadcast's low-latency parts are kept: a player that had its last
/// low-latency playlist may still fetch the last parts; the ended playlist lists none.
pub const PARTS_KEPT_AFTER_END_S: u32 = 60;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A storage port failed; worth retrying.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message cannot be run (bad shape); retrying will not help.
    #[error("invalid job: {0}")]
    Invalid(String),
}

impl JobError {
    /// Whether the queue should deliver the message again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobError::Store(StoreError::Backend { .. }))
    }
}

/// Decodes a queue message body into a [`Job`].
///
/// # Errors
/// [`JobError::Invalid`] when the JSON is not a known job.
pub fn decode(body: serde_json::Value) -> Result<Job, JobError> {
    serde_json::from_value(body).map_err(|e| JobError::Invalid(e.to_string()))
}

/// The KV key where a probe job records that it ran.
pub fn probe_key(id: &str) -> String {
    format!("diag:probe:{id}")
}

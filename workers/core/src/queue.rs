//! The queue consumer, beside the router: the host's queue handler decodes each message with
//! [`crate::model::job::decode`] and calls [`run`], then acknowledges or retries it as
//! [`JobError::is_retryable`] says.

use crate::model::job::{probe_key, Job, JobError};
use crate::ports::{Kv as _, Platform};

/// Runs one job.
///
/// # Errors
/// [`JobError::Store`] when a port fails (retryable).
pub async fn run<P: Platform>(platform: &P, job: Job) -> Result<(), JobError> {
    match job {
        Job::Probe { id } => {
            let handled_at = platform.clock().now_ms().to_string();
            platform
                .kv()
                .put(&probe_key(&id), handled_at.as_bytes(), Some(3600))
                .await?;
            Ok(())
        }
        Job::Deliver {
            delivery_id,
            attempt,
        } => crate::services::delivery::attempt(platform, &delivery_id, attempt).await,
        Job::TaskDeadline { task_id } => {
            Ok(crate::services::lifecycle::deadline(platform, &task_id).await?)
        }
        Job::Transcode {
            video_id,
            channel_id,
            broadcast_id,
        } => {
            crate::services::transcode::send(platform, &video_id, &channel_id, &broadcast_id).await
        }
        Job::SweepViewSessions => {
            crate::services::views::sweep(platform).await?;
            Ok(())
        }
    }
}

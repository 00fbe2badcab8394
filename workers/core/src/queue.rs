//! The queue consumer, beside the router: the host's queue handler decodes each message with
//! [`crate::model::job::decode`] and calls [`run_batch`] with the batch (or [`run`] with one
//! job), then acknowledges or retries each message as [`JobError::is_retryable`] says.

use futures_util::future::join_all;

use crate::model::job::{probe_key, Job, JobError};
use crate::ports::{Kv as _, Platform};
use crate::store::views::SessionStart;

/// The session start of a [`Job::CountView`]; `None` for any other job.
fn session_start(job: &Job) -> Option<SessionStart> {
    match job {
        Job::CountView {
            scope,
            viewer,
            counter,
            may_count,
            at_ms,
            address,
        } => Some(SessionStart {
            scope: scope.clone(),
            viewer: viewer.clone(),
            counter: counter.clone(),
            may_count: *may_count,
            at_ms: i64::try_from(*at_ms).unwrap_or(i64::MAX),
            address: address.clone(),
        }),
        _ => None,
    }
}

/// Runs a batch of messages (each decoded, or why not) and returns each one's outcome, in
/// order. The views of the batch ([`Job::CountView`]) are applied together, in one SQL batch
/// ([`crate::services::views::apply`]), first: they succeed or fail together. The other
/// jobs are independent (deliveries to different plugins) and run concurrently after them, so
/// one slow receiver does not hold the others back.
pub async fn run_batch<P: Platform>(
    platform: &P,
    jobs: Vec<Result<Job, JobError>>,
) -> Vec<Result<(), JobError>> {
    let mut views = Vec::new();
    let mut view_indices = Vec::new();
    let mut others = Vec::new();
    let mut outcomes: Vec<Option<Result<(), JobError>>> = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.into_iter().enumerate() {
        outcomes.push(None);
        match job {
            Ok(job) => match session_start(&job) {
                Some(start) => {
                    views.push(start);
                    view_indices.push(index);
                }
                None => others.push((index, job)),
            },
            Err(err) => outcomes[index] = Some(Err(err)),
        }
    }
    // The views first (one SQL batch, milliseconds): a job sent after them and handled in
    // the same batch (a probe) then shows that they are applied.
    let views_outcome = if views.is_empty() {
        Ok(())
    } else {
        crate::services::views::apply(platform, views).await
    };
    let other_outcomes = join_all(
        others
            .into_iter()
            .map(|(index, job)| async move { (index, run(platform, job).await) }),
    )
    .await;
    for (index, outcome) in other_outcomes {
        outcomes[index] = Some(outcome);
    }
    for index in view_indices {
        outcomes[index] = Some(views_outcome.clone().map_err(JobError::from));
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Ok(())))
        .collect()
}

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
            attempt,
        } => {
            let recording = crate::services::transcode::Recording {
                video_id: &video_id,
                channel_id: &channel_id,
                broadcast_id: &broadcast_id,
            };
            crate::services::transcode::run(platform, &recording, attempt).await
        }
        Job::CountView { .. } => {
            let start = session_start(&job).into_iter().collect();
            Ok(crate::services::views::apply(platform, start).await?)
        }
        Job::SweepViewSessions => {
            crate::services::views::sweep(platform).await?;
            Ok(())
        }
        Job::DropParts {
            channel_id,
            broadcast_id,
        } => Ok(
            crate::services::broadcasts::drop_parts(platform, &channel_id, &broadcast_id).await?,
        ),
    }
}

//! [`Jobs`] over a Queue producer.

use edgevideo_core::jobs::Job;
use edgevideo_core::platform::Jobs;
use edgevideo_core::StoreError;
use worker::Queue;

/// The job port over a Workers Queue.
pub struct QueueJobs(pub Queue);

impl Jobs for QueueJobs {
    async fn enqueue(&self, job: &Job) -> Result<(), StoreError> {
        self.0
            .send(job)
            .await
            .map_err(|e| StoreError::backend("queue", e))
    }
}

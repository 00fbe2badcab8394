//! [`Jobs`] over a Queue producer.

use edgevideo_core::model::job::Job;
use edgevideo_core::ports::Jobs;
use edgevideo_core::StoreError;
use worker::{MessageBuilder, Queue};

/// The job port over a Workers Queue.
pub struct QueueJobs(pub Queue);

/// Longest delay Queues accepts, in seconds (12 hours).
const MAX_DELAY_S: u32 = 43_200;

impl Jobs for QueueJobs {
    async fn enqueue_after(&self, job: &Job, delay_s: u32) -> Result<(), StoreError> {
        let message = MessageBuilder::new(job)
            .delay_seconds(delay_s.min(MAX_DELAY_S))
            .build();
        self.0
            .send(message)
            .await
            .map_err(|e| StoreError::backend("queue", e))
    }

    async fn enqueue_many(&self, jobs: &[(Job, u32)]) -> Result<(), StoreError> {
        // Queues takes at most 100 messages per batch.
        for chunk in jobs.chunks(100) {
            let messages: Vec<_> = chunk
                .iter()
                .map(|(job, delay_s)| {
                    MessageBuilder::new(job.clone())
                        .delay_seconds((*delay_s).min(MAX_DELAY_S))
                        .build()
                })
                .collect();
            self.0
                .send_batch(messages)
                .await
                .map_err(|e| StoreError::backend("queue", e))?;
        }
        Ok(())
    }
}

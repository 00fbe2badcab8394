//! [`Jobs`] without a queue: jobs are rows of the host-private SQLite table `_edgevideo_jobs`
//! (JSON body, due time, attempts), and every request runs the due ones after its response
//! has been sent ([`run_due`]), through the core's consumer ([`edgevideo_core::queue::run`]).
//!
//! So a job enqueued without delay runs right after the response of the request that
//! enqueued it; a delayed or retried job runs after the first response once it is due (Spin
//! has no timers). A job is claimed with a lease of [`LEASE_MS`] before it runs, so two
//! instances never run it at once and a job whose instance died runs again after the lease.
//! Failures the core marks retryable are retried with exponential backoff up to
//! [`MAX_ATTEMPTS`] attempts, then dropped (logged), like a queue's dead letters.

use std::rc::Rc;

use edgevideo_core::model::job::{self, Job, JobError};
use edgevideo_core::ports::{Jobs, Platform, Statement};
use edgevideo_core::queue;
use edgevideo_core::StoreError;

use crate::platform::now_ms;
use crate::sql::SpinDb;

/// Attempts per job.
pub const MAX_ATTEMPTS: i64 = 5;
/// Most jobs run after one request.
pub const MAX_JOBS_PER_REQUEST: usize = 20;
/// How long a claimed job is reserved for the instance that runs it, in ms.
pub const LEASE_MS: u64 = 120_000;

/// The job port over Spin SQLite.
pub struct SqlJobs {
    db: Rc<SpinDb>,
}

impl SqlJobs {
    /// The port over an opened database.
    pub fn new(db: Rc<SpinDb>) -> Self {
        SqlJobs { db }
    }

    /// Claims the oldest due job: leases it and counts the attempt. Returns its id, attempt
    /// number and body.
    fn claim(&self, now: u64) -> Result<Option<(i64, i64, String)>, StoreError> {
        self.db.transaction(|| {
            let rows = self.db.query_rows(&Statement::new(
                "SELECT id, attempts, body FROM _edgevideo_jobs WHERE run_at_ms <= ?1 \
                 ORDER BY run_at_ms, id LIMIT 1",
                vec![ms(now).into()],
            ))?;
            let Some(row) = rows.into_iter().next() else {
                return Ok(None);
            };
            let id = row.get("id").and_then(|v| v.as_i64()).unwrap_or_default();
            let attempts = row
                .get("attempts")
                .and_then(|v| v.as_i64())
                .unwrap_or_default()
                + 1;
            let body = row
                .get("body")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            self.db.execute_counted(&Statement::new(
                "UPDATE _edgevideo_jobs SET run_at_ms = ?2, attempts = ?3 WHERE id = ?1",
                vec![id.into(), ms(now + LEASE_MS).into(), attempts.into()],
            ))?;
            Ok(Some((id, attempts, body)))
        })
    }

    fn finish(&self, id: i64) -> Result<(), StoreError> {
        self.db
            .execute_counted(&Statement::new(
                "DELETE FROM _edgevideo_jobs WHERE id = ?1",
                vec![id.into()],
            ))
            .map(drop)
    }

    fn retry_at(&self, id: i64, at_ms: u64) -> Result<(), StoreError> {
        self.db
            .execute_counted(&Statement::new(
                "UPDATE _edgevideo_jobs SET run_at_ms = ?2 WHERE id = ?1",
                vec![id.into(), ms(at_ms).into()],
            ))
            .map(drop)
    }
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Backoff before attempt `attempt + 1`: 2 s, 4 s, 8 s, ... capped at 10 minutes.
fn backoff_ms(attempt: i64) -> u64 {
    let exponent = u32::try_from(attempt.clamp(1, 20)).unwrap_or(1);
    (1000u64 << exponent).min(600_000)
}

impl Jobs for SqlJobs {
    async fn enqueue_after(&self, job: &Job, delay_s: u32) -> Result<(), StoreError> {
        self.db.ensure_migrated()?;
        let body = serde_json::to_string(job)
            .map_err(|e| StoreError::backend("spin_sqlite", format!("job encoding: {e}")))?;
        let run_at = now_ms().saturating_add(u64::from(delay_s) * 1000);
        self.db.execute_counted(&Statement::new(
            "INSERT INTO _edgevideo_jobs (run_at_ms, attempts, body) VALUES (?1, 0, ?2)",
            vec![ms(run_at).into(), body.into()],
        ))?;
        Ok(())
    }
}

/// Runs the due jobs (at most [`MAX_JOBS_PER_REQUEST`], including those they enqueue) and
/// returns how many succeeded. Failures are logged to the component's stderr.
pub async fn run_due<P: Platform<Jobs = SqlJobs>>(platform: &P) -> usize {
    let queue = platform.jobs();
    if let Err(err) = queue.db.ensure_migrated() {
        eprintln!("edgevideo: jobs unavailable: {err}");
        return 0;
    }
    let mut succeeded = 0;
    for _ in 0..MAX_JOBS_PER_REQUEST {
        let (id, attempt, body) = match queue.claim(now_ms()) {
            Ok(Some(claimed)) => claimed,
            Ok(None) => break,
            Err(err) => {
                eprintln!("edgevideo: claiming a job: {err}");
                break;
            }
        };
        let outcome = match serde_json::from_str(&body) {
            Ok(value) => match job::decode(value) {
                Ok(job) => queue::run(platform, job).await,
                Err(err) => Err(err),
            },
            Err(err) => Err(JobError::Invalid(err.to_string())),
        };
        let settled = match outcome {
            Ok(()) => {
                succeeded += 1;
                queue.finish(id)
            }
            Err(err) if err.is_retryable() && attempt < MAX_ATTEMPTS => {
                eprintln!("edgevideo: job {id} attempt {attempt} failed, will retry: {err}");
                queue.retry_at(id, now_ms().saturating_add(backoff_ms(attempt)))
            }
            Err(err) => {
                eprintln!("edgevideo: job {id} dropped after attempt {attempt}: {err} ({body})");
                queue.finish(id)
            }
        };
        if let Err(err) = settled {
            eprintln!("edgevideo: settling job {id}: {err}");
        }
    }
    succeeded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1), 2_000);
        assert_eq!(backoff_ms(2), 4_000);
        assert_eq!(backoff_ms(12), 600_000);
        assert_eq!(backoff_ms(i64::MAX), 600_000);
    }
}

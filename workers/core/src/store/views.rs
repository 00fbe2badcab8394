//! The `view_sessions` table: one row per viewer and watched thing (channel or video), whose
//! start time decides whether a new view begins.

use crate::error::StoreError;
use crate::ports::{Sql, SqlValue, Statement};
use crate::store::counters;

/// A viewer session to open, and the view it counts when it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStart {
    /// The channel or video watched.
    pub scope: String,
    /// The viewer (a user id or an anonymous `vw_` id).
    pub viewer: String,
    /// The counter a new session adds one to.
    pub counter: String,
    /// Whether a new session counts.
    pub may_count: bool,
    /// The session's start, Unix ms.
    pub at_ms: i64,
}

/// The statement that opens a session of `viewer` on `scope` at `now_ms` unless one started
/// after `expired_before_ms` is open: it changes one row when a session starts and none
/// otherwise, in one statement, so concurrent requests open it once.
fn open_session_statement(
    scope: &str,
    viewer: &str,
    now_ms: i64,
    expired_before_ms: i64,
) -> Statement {
    Statement::new(
        "INSERT INTO view_sessions (scope, viewer, started_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(scope, viewer) DO UPDATE SET started_at = excluded.started_at \
         WHERE view_sessions.started_at <= ?4",
        vec![
            SqlValue::from(scope),
            SqlValue::from(viewer),
            SqlValue::Integer(now_ms),
            SqlValue::Integer(expired_before_ms),
        ],
    )
}

/// Opens the sessions of `starts` (in order; each one unless a session of its viewer and
/// scope started less than `session_ms` before it) and counts a view for each one it opens
/// whose `may_count` is set: one batch, one transaction, two statements per start. Whether a
/// start opens a session is decided inside the transaction, so concurrent batches and a batch
/// delivered twice count each session once.
///
/// # Errors
/// `Backend` when the batch fails (nothing of it is applied).
pub async fn open_sessions<S: Sql>(
    sql: &S,
    starts: &[SessionStart],
    session_ms: i64,
) -> Result<(), StoreError> {
    let mut statements = Vec::with_capacity(starts.len() * 2);
    for start in starts {
        let expired_before_ms = start.at_ms - session_ms;
        if start.may_count {
            statements.push(counters::bump_unless_session_open(
                &start.counter,
                &start.scope,
                &start.viewer,
                expired_before_ms,
            ));
        }
        statements.push(open_session_statement(
            &start.scope,
            &start.viewer,
            start.at_ms,
            expired_before_ms,
        ));
    }
    if statements.is_empty() {
        return Ok(());
    }
    sql.batch(&statements).await?;
    Ok(())
}

/// Deletes up to `batch` sessions that started before `expired_before_ms` (the oldest
/// first); returns how many went.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn sweep<S: Sql>(sql: &S, expired_before_ms: i64, batch: u32) -> Result<u64, StoreError> {
    sql.execute(&Statement::new(
        "DELETE FROM view_sessions WHERE rowid IN (SELECT rowid FROM view_sessions \
         WHERE started_at <= ?1 ORDER BY started_at LIMIT ?2)",
        vec![
            SqlValue::Integer(expired_before_ms),
            SqlValue::Integer(i64::from(batch)),
        ],
    ))
    .await
}

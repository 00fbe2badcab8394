//! The `view_sessions` table: one row per viewer and watched thing (channel or video), whose
//! start time decides whether a new view begins.

use crate::error::StoreError;
use crate::ports::{Sql, SqlValue, Statement};

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

/// Opens a session of `viewer` on `scope` at `now_ms` unless one started after
/// `expired_before_ms` is open; `true` when a session started.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn open_session<S: Sql>(
    sql: &S,
    scope: &str,
    viewer: &str,
    now_ms: i64,
    expired_before_ms: i64,
) -> Result<bool, StoreError> {
    let changed = sql
        .execute(&open_session_statement(
            scope,
            viewer,
            now_ms,
            expired_before_ms,
        ))
        .await?;
    Ok(changed > 0)
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

//! The `view_sessions` table: one row per viewer and watched thing (channel or video), whose
//! start time decides whether a new view begins; and `scope_views`, the views each thing
//! has counted (kept when its sessions are swept).

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
    /// An anonymous viewer's address key: its new session counts only while the address
    /// has counted fewer than the cap of views of `scope` in the start's slot.
    pub address: Option<String>,
}

/// The cap on anonymous views one address counts per scope and slot ([`open_sessions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressCap {
    /// Views counted at most per address, scope and slot.
    pub views: i64,
    /// The length of a slot, in ms (slot = start time / this).
    pub slot_ms: i64,
}

/// The statement that counts a view in the address's slot unless the viewer's session of
/// `scope` is open (the same guard as the counter's).
fn address_view_statement(
    start: &SessionStart,
    address: &str,
    slot: i64,
    expired_before_ms: i64,
) -> Statement {
    Statement::new(
        "INSERT INTO view_addresses (scope, address, slot, views) SELECT ?1, ?2, ?3, 1 \
         WHERE NOT EXISTS (SELECT 1 FROM view_sessions WHERE scope = ?1 AND viewer = ?4 \
         AND started_at > ?5) \
         ON CONFLICT(scope, address, slot) DO UPDATE SET views = views + 1",
        vec![
            SqlValue::from(start.scope.as_str()),
            SqlValue::from(address),
            SqlValue::Integer(slot),
            SqlValue::from(start.viewer.as_str()),
            SqlValue::Integer(expired_before_ms),
        ],
    )
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
/// whose `may_count` is set and, for an anonymous start, whose address has counted fewer
/// than `cap.views` views of the scope in the start's slot (in the global counter and the
/// scope's own count): one batch, one transaction, three statements per start (four for an
/// anonymous one). Whether a start opens a session is decided inside the transaction, so
/// concurrent batches and a batch delivered twice count each session once.
///
/// # Errors
/// `Backend` when the batch fails (nothing of it is applied).
pub async fn open_sessions<S: Sql>(
    sql: &S,
    starts: &[SessionStart],
    session_ms: i64,
    cap: AddressCap,
) -> Result<(), StoreError> {
    let mut statements = Vec::with_capacity(starts.len() * 4);
    for start in starts {
        let expired_before_ms = start.at_ms - session_ms;
        let slot = start.at_ms / cap.slot_ms.max(1);
        if start.may_count {
            // The counts first: they read the address's count before this view adds to it.
            statements.extend(counters::count_view_unless_session_open(
                &start.counter,
                &start.scope,
                &start.viewer,
                expired_before_ms,
                start
                    .address
                    .as_deref()
                    .map(|address| (address, slot, cap.views)),
            ));
        }
        if let Some(address) = &start.address {
            statements.push(address_view_statement(
                start,
                address,
                slot,
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

/// Deletes the address counts of slots before `slot` (at most `batch` rows).
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn sweep_addresses<S: Sql>(sql: &S, slot: i64, batch: u32) -> Result<u64, StoreError> {
    sql.execute(&Statement::new(
        "DELETE FROM view_addresses WHERE rowid IN (SELECT rowid FROM view_addresses \
         WHERE slot < ?1 LIMIT ?2)",
        vec![SqlValue::Integer(slot), SqlValue::Integer(i64::from(batch))],
    ))
    .await
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

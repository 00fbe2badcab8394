//! The `rate_limits` table: fixed-window attempt counters, each counted by one upsert.

use crate::ports::{SqlValue, Statement};

/// Counts one hit on `scope` in window `window_no` (a new window starts again at 1) and
/// returns the new count as the column `count`, in one statement: concurrent hits each see
/// their own count. The row is kept until `expires_at` (Unix seconds).
pub fn hit(scope: &str, window_no: i64, expires_at: i64) -> Statement {
    Statement::new(
        "INSERT INTO rate_limits (scope, window_no, count, expires_at) VALUES (?1, ?2, 1, ?3) \
         ON CONFLICT (scope) DO UPDATE SET \
         count = CASE WHEN rate_limits.window_no = excluded.window_no \
         THEN rate_limits.count + 1 ELSE 1 END, \
         window_no = excluded.window_no, expires_at = excluded.expires_at \
         RETURNING count",
        vec![
            SqlValue::from(scope),
            SqlValue::Integer(window_no),
            SqlValue::Integer(expires_at),
        ],
    )
}

/// Deletes up to `limit` counters whose window ended before `now_s`, oldest first.
pub fn sweep(now_s: i64, limit: i64) -> Statement {
    Statement::new(
        "DELETE FROM rate_limits WHERE scope IN (SELECT scope FROM rate_limits \
         WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)",
        vec![SqlValue::Integer(now_s), SqlValue::Integer(limit)],
    )
}

//! The `rate_limits` table: fixed-window attempt counters, each counted by one upsert; and
//! `login_failures`: the backoff of failed logins per account, each attempt claimed by one upsert.

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

/// The delay, in ms, earned by `n` failures (an SQL expression over the parameters of
/// [`claim_login`]: `?3` failures are free, then `?4` ms doubling per failure, at most `?5`).
fn login_delay(n: &str) -> String {
    format!("(CASE WHEN {n} < ?3 THEN 0 ELSE MIN(?5, ?4 << MIN({n} - ?3, 30)) END)")
}

/// The rules of [`claim_login`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBackoff {
    /// Failures that earn no delay.
    pub free_failures: i64,
    /// The delay earned by the first failure past the free ones, in ms; each further one
    /// doubles it.
    pub base_ms: i64,
    /// The longest delay, in ms.
    pub cap_ms: i64,
    /// How long after its delay ended a row is forgotten (its failures count again from 0).
    pub forget_ms: i64,
}

/// Claims one login attempt on `scope` at `now_ms`, in one statement. When the account's
/// delay has passed (or it has no row) the attempt is granted and counted as a failure
/// in advance (a success deletes the row: [`login_succeeded`]), which sets the delay the
/// next attempt waits; otherwise the row is left as it is. Returns the columns `granted`
/// (1 or 0), `failures` and `next_at` (Unix ms before which the next attempt is refused).
pub fn claim_login(scope: &str, now_ms: i64, rules: &LoginBackoff) -> Statement {
    let fresh = "login_failures.expires_at <= ?2";
    let open = "login_failures.next_at <= ?2";
    let counted = format!(
        "(CASE WHEN {fresh} THEN 1 WHEN {open} THEN login_failures.failures + 1 \
         ELSE login_failures.failures END)"
    );
    let first = login_delay("1");
    let delay = login_delay(&counted);
    Statement::new(
        format!(
            "INSERT INTO login_failures (scope, failures, next_at, expires_at, granted) \
             VALUES (?1, 1, ?2 + {first}, ?2 + {first} + ?6, 1) \
             ON CONFLICT (scope) DO UPDATE SET \
             failures = {counted}, \
             next_at = CASE WHEN {open} THEN ?2 + {delay} ELSE login_failures.next_at END, \
             expires_at = CASE WHEN {open} THEN ?2 + {delay} + ?6 \
             ELSE login_failures.expires_at END, \
             granted = CASE WHEN {open} THEN 1 ELSE 0 END \
             RETURNING granted, failures, next_at"
        ),
        vec![
            SqlValue::from(scope),
            SqlValue::Integer(now_ms),
            SqlValue::Integer(rules.free_failures),
            SqlValue::Integer(rules.base_ms),
            SqlValue::Integer(rules.cap_ms),
            SqlValue::Integer(rules.forget_ms),
        ],
    )
}

/// Forgets the failures of `scope` (a successful login).
pub fn login_succeeded(scope: &str) -> Statement {
    Statement::new(
        "DELETE FROM login_failures WHERE scope = ?1",
        vec![SqlValue::from(scope)],
    )
}

/// Deletes up to `limit` rows of failed logins forgotten before `now_ms`, oldest first.
pub fn sweep_login_failures(now_ms: i64, limit: i64) -> Statement {
    Statement::new(
        "DELETE FROM login_failures WHERE scope IN (SELECT scope FROM login_failures \
         WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)",
        vec![SqlValue::Integer(now_ms), SqlValue::Integer(limit)],
    )
}

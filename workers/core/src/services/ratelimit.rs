//! Rate limits and the backoff of failed logins.
//!
//! * [`claim_login`], per account: failed logins make the account's next attempt wait a
//!   delay that doubles with each failure (none for the first `free_failures`, then
//!   [`LOGIN_BACKOFF_BASE_MS`] up to [`LOGIN_BACKOFF_CAP_MS`]), so wrong passwords slow an
//!   account down but never lock its owner out; a success resets it. Each attempt is one
//!   upsert (`login_failures`), so concurrent attempts cannot all pass on the same state.
//! * [`hit_counted`], for login and signup attempts: counters in the SQL store
//!   (`rate_limits`), each hit one upsert that returns the new count, so concurrent attempts
//!   cannot read the same count and all pass (a burst of guesses gets no more password
//!   checks than the limit). One batch, one round trip for all the scopes of a request.
//! * [`hit`], for the looser limits (view counting, redeliveries): KV counters
//!   (`rl:{scope}:{window}`), a read then a write, so a concurrent burst can exceed them.

use crate::error::StoreError;
use crate::ports::{Kv, Platform, Sql as _};
use crate::store::ratelimits;

/// Counters of ended windows deleted by one sweep.
const SWEEP_BATCH: i64 = 500;

/// The delay earned by the first failed login past the free ones, in ms (1 s).
pub const LOGIN_BACKOFF_BASE_MS: u64 = 1_000;
/// The longest delay between attempts on one account, in ms (5 minutes).
pub const LOGIN_BACKOFF_CAP_MS: u64 = 300_000;
/// How long an account's failures are remembered after its delay ended, in ms (15 minutes).
pub const LOGIN_BACKOFF_FORGET_MS: u64 = 900_000;

/// What [`claim_login`] decided about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginClaim {
    /// The password may be checked.
    Granted,
    /// Refused without a check: the account's delay has this long to run, in ms (at least 1).
    Wait {
        /// Until the next attempt is let through, in ms.
        retry_after_ms: u64,
    },
}

/// Whether the dice say to sweep now (about one call in 64).
fn sweep_now<P: Platform>(p: &P) -> bool {
    let mut dice = [0u8; 1];
    p.entropy().fill(&mut dice);
    dice[0] < 4
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Claims one login attempt on the account `scope` at `now_ms`: granted when the delay its
/// past failures earned has passed (the attempt counts as a failure until
/// [`login_succeeded`] resets the account), refused with the time left otherwise; a refused
/// attempt changes nothing. The first `free_failures` failures earn no delay; the next one
/// [`LOGIN_BACKOFF_BASE_MS`], each further one twice the last, at most
/// [`LOGIN_BACKOFF_CAP_MS`]. Failures are forgotten [`LOGIN_BACKOFF_FORGET_MS`] after their
/// delay ended. One statement (about one call in 64 also sweeps forgotten rows, in the same
/// batch).
///
/// # Errors
/// Whatever the SQL store reports.
pub async fn claim_login<P: Platform>(
    p: &P,
    scope: &str,
    free_failures: u64,
    now_ms: u64,
) -> Result<LoginClaim, StoreError> {
    let rules = ratelimits::LoginBackoff {
        free_failures: to_i64(free_failures),
        base_ms: to_i64(LOGIN_BACKOFF_BASE_MS),
        cap_ms: to_i64(LOGIN_BACKOFF_CAP_MS),
        forget_ms: to_i64(LOGIN_BACKOFF_FORGET_MS),
    };
    let now = to_i64(now_ms);
    let mut statements = vec![ratelimits::claim_login(scope, now, &rules)];
    if sweep_now(p) {
        statements.push(ratelimits::sweep_login_failures(now, SWEEP_BATCH));
    }
    let results = p.sql().batch(&statements).await?;
    let row = results
        .first()
        .and_then(|rows| rows.first())
        .ok_or_else(|| StoreError::backend("login_failures", "the claim returned no row"))?;
    let number = |column: &str| {
        row.get(column).and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .or_else(|| v.as_bool().map(i64::from))
        })
    };
    let (Some(granted), Some(next_at)) = (number("granted"), number("next_at")) else {
        return Err(StoreError::backend(
            "login_failures",
            "the claim returned no state",
        ));
    };
    if granted != 0 {
        return Ok(LoginClaim::Granted);
    }
    let left = u64::try_from(next_at.saturating_sub(now)).unwrap_or(0);
    Ok(LoginClaim::Wait {
        retry_after_ms: left.max(1),
    })
}

/// Resets the backoff of the account `scope` after a successful login.
///
/// # Errors
/// Whatever the SQL store reports.
pub async fn login_succeeded<P: Platform>(p: &P, scope: &str) -> Result<(), StoreError> {
    p.sql().execute(&ratelimits::login_succeeded(scope)).await?;
    Ok(())
}

/// Counts one hit on each of `scopes` (scope, hits allowed per window of `window_s`) and
/// says whether every one is within its limit. Every scope is counted, also when another
/// is already over its limit. About one call in 64 also sweeps ended windows.
///
/// # Errors
/// Whatever the SQL store reports.
pub async fn hit_counted<P: Platform>(
    p: &P,
    scopes: &[(&str, u64)],
    window_s: u64,
    now_s: u64,
) -> Result<bool, StoreError> {
    let window_s = window_s.max(1);
    let window_no = i64::try_from(now_s / window_s).unwrap_or(i64::MAX);
    let expires_at = window_no.saturating_add(1).saturating_mul(window_s as i64);
    let mut statements: Vec<_> = scopes
        .iter()
        .map(|(scope, _)| ratelimits::hit(scope, window_no, expires_at))
        .collect();
    if sweep_now(p) {
        statements.push(ratelimits::sweep(
            i64::try_from(now_s).unwrap_or(i64::MAX),
            SWEEP_BATCH,
        ));
    }
    let results = p.sql().batch(&statements).await?;
    let mut allowed = true;
    for ((_, limit), rows) in scopes.iter().zip(&results) {
        let count = rows
            .first()
            .and_then(|row| row.get("count"))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| StoreError::backend("rate_limits", "the upsert returned no count"))?;
        allowed &= count <= *limit;
    }
    Ok(allowed)
}

/// Counts one hit on `scope` and says whether it is within `limit` hits per `window_s`.
///
/// # Errors
/// Whatever the KV store reports.
pub async fn hit<K: Kv>(
    kv: &K,
    scope: &str,
    limit: u64,
    window_s: u64,
    now_s: u64,
) -> Result<bool, StoreError> {
    let window = now_s / window_s.max(1);
    let key = format!("rl:{scope}:{window}");
    let count = kv
        .get(&key)
        .await?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    kv.put(&key, count.to_string().as_bytes(), Some(window_s * 2))
        .await?;
    Ok(count <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryKv;

    #[test]
    fn allows_up_to_the_limit_per_window() {
        let kv = MemoryKv::default();
        let results: Vec<bool> = (0..4)
            .map(|_| pollster::block_on(hit(&kv, "ip:1", 3, 60, 1000)).unwrap())
            .collect();
        assert_eq!(results, vec![true, true, true, false]);
        assert!(
            pollster::block_on(hit(&kv, "ip:2", 3, 60, 1000)).unwrap(),
            "scopes are separate"
        );
        assert!(
            pollster::block_on(hit(&kv, "ip:1", 3, 60, 1080)).unwrap(),
            "a new window resets"
        );
    }
}

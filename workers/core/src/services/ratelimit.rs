//! Fixed-window rate limits.
//!
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
    let mut dice = [0u8; 1];
    p.entropy().fill(&mut dice);
    if dice[0] < 4 {
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

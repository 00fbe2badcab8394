//! Fixed-window rate limits over KV counters (`rl:{scope}:{window}`), for login attempts.
//! KV is eventually consistent, so a burst across edge locations can exceed the limit
//! slightly; the limit still bounds guessing to a few attempts per window.

use crate::error::StoreError;
use crate::ports::Kv;

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

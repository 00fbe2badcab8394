//! Revocable sessions. Session tokens are stateless JWTs (see `api::auth::session`); each
//! carries a session id (`sid`). Logging out revokes that session (`session-revoked:{sid}`,
//! kept until the token would have expired); logging out everywhere refuses every token of
//! the user issued before then (`sessions-not-before:{user}`). (A role change needs no
//! revocation: routes that need a role check the stored one.) An authenticated request reads both keys from KV: two
//! edge-cached reads, no catalogue query. KV is eventually consistent, so another location
//! may accept a revoked token for up to a minute.

use crate::error::StoreError;
use crate::ports::Kv;

fn revoked_key(sid: &str) -> String {
    format!("session-revoked:{sid}")
}

fn not_before_key(user_id: &str) -> String {
    format!("sessions-not-before:{user_id}")
}

/// How long a user-wide cut-off is kept: the longest a session token may live.
const NOT_BEFORE_KEEP_S: u64 = 400 * 24 * 3600;

/// Revokes session `sid`, whose token expires at `exp_s`.
///
/// # Errors
/// Whatever the KV store reports.
pub async fn revoke<K: Kv>(kv: &K, sid: &str, exp_s: u64, now_s: u64) -> Result<(), StoreError> {
    // KV forgets keys no sooner than 60 s; the token is refused by its expiry after that.
    let ttl = exp_s.saturating_sub(now_s).max(60);
    kv.put(&revoked_key(sid), b"1", Some(ttl)).await
}

/// Refuses every session of `user_id` issued before `now_ms`.
///
/// # Errors
/// Whatever the KV store reports.
pub async fn revoke_all<K: Kv>(kv: &K, user_id: &str, now_ms: u64) -> Result<(), StoreError> {
    kv.put(
        &not_before_key(user_id),
        now_ms.to_string().as_bytes(),
        Some(NOT_BEFORE_KEEP_S),
    )
    .await
}

/// Whether the session `sid` of `user_id`, issued at `issued_ms`, is still valid.
///
/// # Errors
/// Whatever the KV store reports.
pub async fn is_valid<K: Kv>(
    kv: &K,
    user_id: &str,
    sid: &str,
    issued_ms: u64,
) -> Result<bool, StoreError> {
    if kv.get(&revoked_key(sid)).await?.is_some() {
        return Ok(false);
    }
    let not_before = kv
        .get(&not_before_key(user_id))
        .await?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok());
    Ok(not_before.is_none_or(|cut| issued_ms >= cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryKv;
    use pollster::block_on;

    #[test]
    fn logout_revokes_one_session_and_everywhere_revokes_older_ones() {
        let kv = MemoryKv::default();
        let valid = |sid: &str, iat| block_on(is_valid(&kv, "usr_1", sid, iat)).unwrap();
        assert!(valid("a", 100_000) && valid("b", 100_000));
        block_on(revoke(&kv, "a", 1000, 200)).unwrap();
        assert!(!valid("a", 100_000), "the logged-out session");
        assert!(valid("b", 100_000), "another device");
        block_on(revoke_all(&kv, "usr_1", 300_500)).unwrap();
        assert!(
            !valid("b", 100_000) && !valid("c", 300_499),
            "issued before the cut-off"
        );
        assert!(
            valid("d", 300_500) && valid("e", 300_501),
            "a login from the cut-off on"
        );
        assert!(
            block_on(is_valid(&kv, "usr_2", "f", 100_000)).unwrap(),
            "other users"
        );
    }
}

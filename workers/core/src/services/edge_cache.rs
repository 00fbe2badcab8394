//! Reading through the edge cache: a playback object is looked up under a key without the
//! viewer's token; on a miss it is produced once (`fill`) and stored. Concurrent misses of
//! one key in one isolate share that one fill (single flight): the first request fills, the
//! others wait for its result, so a thousand viewers polling a new live playlist at the same
//! instant cost one room call, not a thousand.
//!
//! Waiters poll the isolate's table of fills on their own timer ([`Platform::sleep`]) rather
//! than being woken by the filling request: in workerd a request woken from another
//! request's callback runs in that request's context, and I/O done there is refused. The
//! poll backs off (5 ms doubling to 40 ms): a low-latency viewer's blocking reload waits on a
//! fill the channel's room holds for up to a part's duration, and a thousand waiters polling
//! every 5 ms would spend the isolate's CPU on timers.
//!
//! A fill's result stays in the table for a second ([`RESULT_KEPT_MS`], at most until it
//! expires); a request finding it there is answered from it without asking the edge cache,
//! and a request for a key this isolate is filling waits for that fill without asking the
//! edge cache either (a thousand viewers blocked on the next part cost one lookup, not a
//! thousand).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use crate::error::ApiError;
use crate::ports::metered::count;
use crate::ports::{CachedObject, EdgeCache as _, Platform};

/// How soon a waiting request first looks for the fill's result, in ms.
const POLL_MS: u64 = 5;
/// The longest a waiting request's poll interval grows to, in ms.
const MAX_POLL_MS: u64 = 40;
/// How long a request waits for another's fill before filling itself, in ms.
const WAIT_MS: u64 = 5_000;
/// How long a failed fill's error is handed to requests that arrive after it, in ms.
const ERROR_KEPT_MS: u64 = 250;
/// How long a finished fill's object is handed to requests that arrive after it, in ms
/// (at most until it expires).
const RESULT_KEPT_MS: u64 = 1_000;
/// Objects larger than this are not kept in the table (the isolate has 128 MB): waiters
/// read them from the edge cache, where the filling request stored them first.
const KEEP_MAX_BYTES: usize = 256 * 1024;

/// How an object was obtained; answered in the `X-Edge-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Found fresh in the edge cache (or in this isolate's copy of a fill that just ended).
    Hit,
    /// Produced by another request of this isolate that was already producing it.
    Shared,
    /// Produced by this request (and stored).
    Miss,
}

impl CacheStatus {
    /// The header value: `HIT`, `SHARED` or `MISS`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Shared => "SHARED",
            CacheStatus::Miss => "MISS",
        }
    }
}

/// A key's fill in this isolate.
#[derive(Debug, Clone)]
enum Fill {
    /// A request is filling it since this time (Unix ms).
    Running { since_ms: u64 },
    /// The last fill's result (`None`: too large to keep, read it from the edge cache),
    /// usable until this time (Unix ms).
    Done {
        result: Option<Result<CachedObject, ApiError>>,
        until_ms: u64,
    },
}

thread_local! {
    /// The fills of this isolate, by key.
    static FILLS: RefCell<HashMap<String, Fill>> = RefCell::new(HashMap::new());
}

/// What a request does about a key that missed the cache.
enum Role {
    /// Fill it (and hold the guard until done).
    Lead(Leader),
    /// Use this result of another request's fill (`None`: it is in the edge cache).
    Take(Option<Result<CachedObject, ApiError>>),
    /// Another request is filling it: look again later.
    Wait,
}

/// The filling request of a key. Dropped without [`Leader::finish`] (the request was
/// cancelled), it releases the key and a waiter fills instead.
struct Leader {
    key: Option<String>,
}

impl Leader {
    /// Hands `result` to the waiting and arriving requests; a large object is handed as "in
    /// the edge cache", so it must be stored there before this is called.
    fn finish(mut self, result: &Result<CachedObject, ApiError>, now_ms: u64) {
        if let Some(key) = self.key.take() {
            let (kept, until_ms) = match result {
                Ok(object) if object.body.len() > KEEP_MAX_BYTES => {
                    (None, object.expires_at_ms.min(now_ms + RESULT_KEPT_MS))
                }
                Ok(object) => (
                    Some(result.clone()),
                    object.expires_at_ms.min(now_ms + RESULT_KEPT_MS),
                ),
                Err(_) => (Some(result.clone()), now_ms + ERROR_KEPT_MS),
            };
            FILLS.with(|fills| {
                let mut fills = fills.borrow_mut();
                fills.retain(|_, fill| match fill {
                    Fill::Running { .. } => true,
                    Fill::Done { until_ms, .. } => *until_ms > now_ms,
                });
                fills.insert(
                    key,
                    Fill::Done {
                        result: kept,
                        until_ms,
                    },
                );
            });
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            FILLS.with(|fills| fills.borrow_mut().remove(&key));
        }
    }
}

/// The object of a fill of `key` that ended in this isolate and is still fresh, if any.
fn recent(key: &str, now_ms: u64) -> Option<CachedObject> {
    FILLS.with(|fills| match fills.borrow().get(key) {
        Some(Fill::Done {
            result: Some(Ok(object)),
            until_ms,
        }) if *until_ms > now_ms => Some(object.clone()),
        _ => None,
    })
}

/// Whether a request of this isolate is filling `key`.
fn filling(key: &str) -> bool {
    FILLS.with(|fills| matches!(fills.borrow().get(key), Some(Fill::Running { .. })))
}

fn role(key: &str, now_ms: u64, waited_ms: u64, take_errors: bool) -> Role {
    FILLS.with(|fills| {
        let mut fills = fills.borrow_mut();
        match fills.get(key) {
            Some(Fill::Done { result, until_ms })
                if *until_ms > now_ms && (take_errors || !matches!(result, Some(Err(_)))) =>
            {
                return Role::Take(result.clone())
            }
            Some(Fill::Running { since_ms })
                if waited_ms < WAIT_MS && now_ms.saturating_sub(*since_ms) < WAIT_MS =>
            {
                return Role::Wait
            }
            _ => {}
        }
        fills.insert(key.to_owned(), Fill::Running { since_ms: now_ms });
        Role::Lead(Leader {
            key: Some(key.to_owned()),
        })
    })
}

/// The object under `key`: from the edge cache when fresh, else from the fill already
/// running in this isolate (or just finished), else from `fill`, which is then stored.
/// Errors of `fill` are shared with the waiters for a moment but never stored in the cache.
/// A cache that fails to answer counts as a miss. With `BYPASS_EDGE_CACHE` every call fills.
///
/// # Errors
/// What `fill` returned.
pub async fn get_or_fill<P, F, Fut>(
    p: &P,
    key: &str,
    fill: F,
) -> Result<(CachedObject, CacheStatus), ApiError>
where
    P: Platform,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<CachedObject, ApiError>>,
{
    get_or_fill_with(p, key, fill, true).await
}

/// [`get_or_fill`] for an object known to exist now although a fill of this isolate just
/// failed (a low-latency part stored since): such an error is not handed on, a fill runs.
///
/// # Errors
/// What `fill` returned.
pub async fn get_or_refill<P, F, Fut>(
    p: &P,
    key: &str,
    fill: F,
) -> Result<(CachedObject, CacheStatus), ApiError>
where
    P: Platform,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<CachedObject, ApiError>>,
{
    get_or_fill_with(p, key, fill, false).await
}

async fn get_or_fill_with<P, F, Fut>(
    p: &P,
    key: &str,
    fill: F,
    take_errors: bool,
) -> Result<(CachedObject, CacheStatus), ApiError>
where
    P: Platform,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<CachedObject, ApiError>>,
{
    if p.config().bypass_edge_cache {
        count("edge_cache.bypass");
        return fill().await.map(|object| (object, CacheStatus::Miss));
    }
    if let Some(object) = recent(key, p.clock().now_ms()) {
        count("edge_cache.hit");
        return Ok((object, CacheStatus::Hit));
    }
    if !filling(key) {
        if let Ok(Some(object)) = p.edge_cache().get(key).await {
            if object.expires_at_ms > p.clock().now_ms() {
                count("edge_cache.hit");
                return Ok((object, CacheStatus::Hit));
            }
        }
    }
    let (mut waited_ms, mut poll_ms) = (0, POLL_MS);
    let leader = loop {
        match role(key, p.clock().now_ms(), waited_ms, take_errors) {
            Role::Lead(leader) => break Some(leader),
            Role::Take(Some(result)) => {
                count("edge_cache.shared");
                return result.map(|object| (object, CacheStatus::Shared));
            }
            Role::Take(None) => match p.edge_cache().get(key).await {
                Ok(Some(object)) => {
                    count("edge_cache.shared");
                    return Ok((object, CacheStatus::Shared));
                }
                // The cache did not keep it: fill without the table.
                _ => break None,
            },
            Role::Wait => {
                p.sleep(poll_ms).await;
                waited_ms += poll_ms;
                poll_ms = (poll_ms * 2).min(MAX_POLL_MS);
            }
        }
    };
    count("edge_cache.miss");
    let result = fill().await;
    let large = result
        .as_ref()
        .is_ok_and(|object| object.body.len() > KEEP_MAX_BYTES);
    if let (true, Ok(object)) = (large, &result) {
        // Stored before the waiters are told to read it from the cache. Best effort: a cache
        // that refuses costs a later miss, not this answer.
        let _ = p.edge_cache().put(key, object).await;
    }
    if let Some(leader) = leader {
        leader.finish(&result, p.clock().now_ms());
    }
    let object = result?;
    if !large {
        let _ = p.edge_cache().put(key, &object).await;
    }
    Ok((object, CacheStatus::Miss))
}

/// Forgets `key` in this location: in the edge cache and in this isolate's table of fills
/// (best effort: a cache that fails to delete keeps the object until it expires).
pub async fn forget<P: Platform>(p: &P, key: &str) {
    FILLS.with(|fills| fills.borrow_mut().remove(key));
    let _ = p.edge_cache().delete(key).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPlatform;
    use futures_channel::oneshot;
    use std::cell::{Cell, RefCell};

    fn platform() -> MemoryPlatform {
        let p = MemoryPlatform::development();
        p.clock.now_ms.set(1_000_000);
        p
    }

    fn object(body: &str, expires_at_ms: u64) -> CachedObject {
        CachedObject {
            content_type: "text/plain".into(),
            body: body.as_bytes().to_vec(),
            expires_at_ms,
        }
    }

    #[test]
    fn a_miss_fills_and_stores_then_hits_until_stale() {
        let p = platform();
        let fills = Cell::new(0);
        let fill = || async {
            fills.set(fills.get() + 1);
            Ok(object("v1", 1_001_000))
        };
        let (first, status) = pollster::block_on(get_or_fill(&p, "k", fill)).unwrap();
        assert_eq!(
            (first.body.as_slice(), status),
            (&b"v1"[..], CacheStatus::Miss)
        );
        let (_, status) = pollster::block_on(get_or_fill(&p, "k", fill)).unwrap();
        assert_eq!(status, CacheStatus::Hit);
        assert_eq!(fills.get(), 1);
        p.clock.now_ms.set(1_001_000);
        let (_, status) = pollster::block_on(get_or_fill(&p, "k", fill)).unwrap();
        assert_eq!(status, CacheStatus::Miss, "a stale object is a miss");
        assert_eq!(fills.get(), 2);
    }

    #[test]
    fn errors_are_shared_for_a_moment_but_never_cached() {
        let p = platform();
        let failing = || async { Err(ApiError::NotFound("nothing yet".into())) };
        assert!(pollster::block_on(get_or_fill(&p, "k", failing)).is_err());
        let fills = Cell::new(0);
        let ok = || async {
            fills.set(fills.get() + 1);
            Ok(object("v", 2_000_000))
        };
        // Within the moment an error is kept, arrivals get it without a fill of their own.
        assert!(pollster::block_on(get_or_fill(&p, "k", ok)).is_err());
        assert_eq!(fills.get(), 0);
        p.clock.now_ms.set(1_000_000 + ERROR_KEPT_MS);
        let (_, status) = pollster::block_on(get_or_fill(&p, "k", ok)).unwrap();
        assert_eq!((status, fills.get()), (CacheStatus::Miss, 1));
        assert!(p.edge_cache.len() == 1, "only the success was stored");
    }

    #[test]
    fn a_refill_does_not_take_a_kept_error() {
        let p = platform();
        let failing = || async { Err(ApiError::NotFound("nothing yet".into())) };
        assert!(pollster::block_on(get_or_fill(&p, "k", failing)).is_err());
        // Stored since: a refill fills (and then shares its object) though the error is kept.
        let (_, status) = pollster::block_on(get_or_refill(&p, "k", || async {
            Ok(object("v", 2_000_000))
        }))
        .unwrap();
        assert_eq!(status, CacheStatus::Miss);
        let (taken, _) = pollster::block_on(get_or_fill(&p, "k", failing)).unwrap();
        assert_eq!(taken.body, b"v");
    }

    #[test]
    fn concurrent_misses_share_one_fill() {
        let p = platform();
        let fills = Cell::new(0);
        let (release, gate) = oneshot::channel::<()>();
        let gate = RefCell::new(Some(gate));
        let fill = || async {
            fills.set(fills.get() + 1);
            let taken = gate.borrow_mut().take();
            if let Some(gate) = taken {
                let _ = gate.await;
            }
            Ok(object("shared", 2_000_000))
        };
        let results = pollster::block_on(async {
            let all = futures_util::future::join_all((0..10).map(|_| get_or_fill(&p, "k", fill)));
            let release = async {
                let _ = release.send(());
            };
            futures_util::future::join(all, release).await.0
        });
        assert_eq!(fills.get(), 1, "one fill for ten concurrent misses");
        let statuses: Vec<CacheStatus> = results.into_iter().map(|r| r.unwrap().1).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == CacheStatus::Miss).count(),
            1
        );
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == CacheStatus::Shared)
                .count(),
            9
        );
        FILLS.with(|fills| {
            assert!(fills
                .borrow()
                .values()
                .all(|fill| matches!(fill, Fill::Done { .. })))
        });
    }
}

//! Views, counted once per viewer session: a live join or a VOD play counts when a viewer
//! starts watching something, not on every playback-URL refresh or page reload within
//! [`SESSION_MS`]. A viewer is a signed-in user, or an anonymous browser recognised by the
//! [`VIEWER_COOKIE`] — signed, so made-up ids are not viewers; clients without a valid
//! cookie count up to [`NEW_VIEWERS_PER_ADDRESS`] per network address, and anonymous
//! viewers, cookies or not, up to [`ANONYMOUS_VIEWS_PER_ADDRESS`] per address and session
//! period (so hoarded cookies do not count one view each).
//!
//! Counting is off the request's path: [`record`] identifies the viewer and queues a
//! [`Job::CountView`] (no catalogue query, no write); the queue consumer applies a whole
//! batch of them with [`apply`] in one SQL batch. Sessions are rows of `view_sessions`
//! ([`crate::store::views`]); whether a view opens one is decided inside that batch's
//! transaction, so concurrent batches, and a batch delivered again, count a session once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::StoreError;
use crate::model::job::Job;
use crate::model::role::Principal;
use crate::model::{ids, keyed};
use crate::ports::{JobsExt as _, Platform};
use crate::services::ratelimit;
use crate::store::views;
use crate::store::views::SessionStart;
use std::collections::HashMap;

/// How long one viewer session lasts, in ms: watching the same thing again within it is not
/// another view.
pub const SESSION_MS: u64 = 30 * 60 * 1000;
/// The cookie that identifies an anonymous viewer: `{id}.{signature}`.
pub const VIEWER_COOKIE: &str = "ev_viewer";
/// Lifetime of the viewer cookie, in seconds.
const VIEWER_COOKIE_MAX_AGE_S: u64 = 365 * 24 * 3600;
/// New anonymous viewers one network address may add to one channel or video per
/// [`SESSION_MS`] (people behind one NAT each count, up to this many).
pub const NEW_VIEWERS_PER_ADDRESS: u64 = 20;
/// Views of one channel or video one network address counts per [`SESSION_MS`] slot as an
/// anonymous viewer, whatever cookies it sends: signed cookies are free to collect (every
/// cookieless request gets one), so without this cap a script replaying N hoarded cookies
/// would count N views every session period. Applied by the queue consumer ([`apply`]).
pub const ANONYMOUS_VIEWS_PER_ADDRESS: i64 = 20;
/// Signature characters kept in the cookie (base64url of HMAC-SHA256: 128 bits).
const SIGNATURE_CHARS: usize = 22;

/// The cookie value of anonymous viewer `id`.
pub fn sign_viewer(secret: &[u8], id: &str) -> String {
    let tag = keyed::tag(secret, b"viewer\0", id.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(tag);
    format!("{id}.{}", &signature[..SIGNATURE_CHARS])
}

/// The viewer id of a cookie value this deployment signed; `None` for any other value. The
/// signature is compared in constant time.
pub fn verify_viewer(secret: &[u8], cookie: &str) -> Option<String> {
    let (id, signature) = cookie.split_once('.')?;
    if !ids::is_id(id, "vw") || signature.len() != SIGNATURE_CHARS {
        return None;
    }
    let tag = keyed::tag(secret, b"viewer\0", id.as_bytes());
    let expected = URL_SAFE_NO_PAD.encode(tag);
    let same: bool = subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes()[..SIGNATURE_CHARS].as_ref(),
        signature.as_bytes(),
    )
    .into();
    same.then(|| id.to_owned())
}

/// A network address as a key (a keyed hash: no address is stored).
fn address_key(secret: &[u8], address: &str) -> String {
    let tag = keyed::tag(secret, b"viewer-address\0", address.as_bytes());
    URL_SAFE_NO_PAD.encode(tag)[..SIGNATURE_CHARS].to_owned()
}

/// Chance in 256, per view applied, that a batch of views queues a sweep (about one in 64).
const SWEEP_CHANCE: u8 = 4;
/// Sessions deleted per sweep at most (D1 statements should stay short).
const SWEEP_BATCH: u32 = 500;

/// Deletes a batch of finished sessions (started more than [`SESSION_MS`] ago) and of the
/// address counts of past slots; returns how many sessions went. A sweep that fills its
/// batch queues the next one.
///
/// # Errors
/// Whatever the catalogue or the queue reports.
pub async fn sweep<P: Platform>(p: &P) -> Result<u64, StoreError> {
    let now_ms = p.clock().now_ms();
    let expired_before = now_ms.saturating_sub(SESSION_MS) as i64;
    let slot = (now_ms / SESSION_MS) as i64;
    views::sweep_addresses(p.sql(), slot, SWEEP_BATCH).await?;
    let deleted = views::sweep(p.sql(), expired_before, SWEEP_BATCH).await?;
    if deleted == u64::from(SWEEP_BATCH) {
        p.jobs().enqueue(&Job::SweepViewSessions).await?;
    }
    Ok(deleted)
}

/// What [`record`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Whether this request certainly starts a counted view: a new anonymous viewer within
    /// its address's cap (its id is new, so its session is). The view is counted when the
    /// queue applies it. A known viewer's request is `false` here: whether its session is
    /// still open is decided by the consumer, which counts it if not (answering on the request
    /// would cost a catalogue read per join).
    pub counted: bool,
    /// A `Set-Cookie` value for a newly identified anonymous viewer.
    pub set_cookie: Option<String>,
}

/// Records a view of `scope` (a channel or video id) to be counted under `counter` if it
/// starts a viewer session: queues a [`Job::CountView`], so the request costs no catalogue
/// query. `cookie` is the viewer cookie's value as sent, `address` the client's network
/// address. An anonymous caller without a valid signed cookie gets a new viewer id (and its
/// cookie, returned); its session opens, but it counts only while its address has started
/// fewer than [`NEW_VIEWERS_PER_ADDRESS`] viewers of `scope` in [`SESSION_MS`] (a KV
/// counter) — a script that drops its cookies cannot count a view per request.
///
/// # Errors
/// `Backend` when the KV store or the queue fails.
pub async fn record<P: Platform>(
    p: &P,
    cookie: Option<&str>,
    address: &str,
    viewer: Option<&Principal>,
    scope: &str,
    counter: &str,
) -> Result<Recorded, StoreError> {
    let secret = p.config().url_signing_secret.as_bytes();
    let now_ms = p.clock().now_ms();
    let anonymous = viewer.is_none().then(|| address_key(secret, address));
    let (viewer_id, set_cookie, may_count) = match (
        viewer,
        cookie.and_then(|c| verify_viewer(secret, c)),
    ) {
        (Some(principal), _) => (principal.user_id.clone(), None, true),
        (None, Some(id)) => (id, None, true),
        (None, None) => {
            let id = p.entropy().new_id("vw");
            let cookie = format!(
                    "{VIEWER_COOKIE}={}; Path=/; Max-Age={VIEWER_COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax",
                    sign_viewer(secret, &id)
                );
            let may_count = ratelimit::hit(
                p.kv(),
                &format!("views:{scope}:{}", anonymous.as_deref().unwrap_or_default()),
                NEW_VIEWERS_PER_ADDRESS,
                SESSION_MS / 1000,
                now_ms / 1000,
            )
            .await?;
            (id, Some(cookie), may_count)
        }
    };
    // A new anonymous viewer's session is new for certain; a known viewer's is decided by
    // the consumer.
    let counted = set_cookie.is_some() && may_count;
    p.jobs()
        .enqueue(&Job::CountView {
            scope: scope.to_owned(),
            viewer: viewer_id,
            counter: counter.to_owned(),
            may_count,
            at_ms: now_ms,
            address: anonymous,
        })
        .await?;
    Ok(Recorded {
        counted,
        set_cookie,
    })
}

/// The session starts of a batch of views worth applying, in time order: of one viewer's
/// views of one scope, only those [`SESSION_MS`] or more after the previous one kept (the
/// others fall within its session and cannot count).
pub fn dedup(mut starts: Vec<SessionStart>) -> Vec<SessionStart> {
    starts.sort_by_key(|start| start.at_ms);
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    starts.retain(|start| {
        let key = (start.scope.clone(), start.viewer.clone());
        match last.get(&key) {
            Some(&opened) if start.at_ms - opened < SESSION_MS as i64 => false,
            _ => {
                last.insert(key, start.at_ms);
                true
            }
        }
    });
    starts
}

/// Applies a batch of views ([`Job::CountView`]s, as [`SessionStart`]s): deduplicated
/// ([`dedup`]), then one SQL batch opens the sessions and counts those that open. Now and
/// then (about one start in 64) queues a sweep of finished sessions, so the table holds the
/// current audience only.
///
/// # Errors
/// `Backend` when the catalogue or the queue fails; nothing of the batch is applied then, and
/// applying it again is safe.
pub async fn apply<P: Platform>(p: &P, starts: Vec<SessionStart>) -> Result<(), StoreError> {
    let starts = dedup(starts);
    if starts.is_empty() {
        return Ok(());
    }
    let cap = views::AddressCap {
        views: ANONYMOUS_VIEWS_PER_ADDRESS,
        slot_ms: SESSION_MS as i64,
    };
    views::open_sessions(p.sql(), &starts, SESSION_MS as i64, cap).await?;
    let mut roll = [0u8; 1];
    p.entropy().fill(&mut roll);
    let chance = u64::from(SWEEP_CHANCE).saturating_mul(starts.len() as u64);
    if u64::from(roll[0]) < chance {
        p.jobs().enqueue(&Job::SweepViewSessions).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_cookies_verify_only_when_signed_here() {
        let cookie = sign_viewer(b"secret", "vw_abcdefgh12345678");
        assert_eq!(
            verify_viewer(b"secret", &cookie).as_deref(),
            Some("vw_abcdefgh12345678")
        );
        assert_eq!(verify_viewer(b"other", &cookie), None);
        assert_eq!(verify_viewer(b"secret", "vw_abcdefgh12345678"), None);
        let forged = cookie.replace("vw_abcdefgh12345678", "vw_abcdefgh12345679");
        assert_eq!(verify_viewer(b"secret", &forged), None);
        let mut tampered = cookie.clone();
        tampered.pop();
        tampered.push(if cookie.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(verify_viewer(b"secret", &tampered), None);
        assert_eq!(verify_viewer(b"secret", "usr_abcdefgh12345678.x"), None);
        assert_eq!(verify_viewer(b"secret", ""), None);
    }

    #[test]
    fn a_batch_keeps_one_start_per_viewer_session() {
        let start = |viewer: &str, at_ms: i64| SessionStart {
            scope: "ch_1".into(),
            viewer: viewer.into(),
            counter: "views.live".into(),
            may_count: true,
            at_ms,
            address: None,
        };
        let session = SESSION_MS as i64;
        let kept = dedup(vec![
            start("a", 10),
            start("b", 5),
            start("a", 0),
            start("a", session - 1),
            start("a", session),
            start("a", session + 1),
        ]);
        let kept: Vec<(&str, i64)> = kept.iter().map(|s| (s.viewer.as_str(), s.at_ms)).collect();
        assert_eq!(kept, vec![("a", 0), ("b", 5), ("a", session)]);
    }

    #[test]
    fn addresses_are_hashed_per_deployment() {
        let a = address_key(b"secret", "203.0.113.7");
        assert!(!a.contains("203"));
        assert_eq!(a, address_key(b"secret", "203.0.113.7"));
        assert_ne!(a, address_key(b"secret", "203.0.113.8"));
        assert_ne!(a, address_key(b"other", "203.0.113.7"));
    }
}

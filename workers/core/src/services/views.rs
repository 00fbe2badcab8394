//! Views, counted once per viewer session: a live join or a VOD play counts when a viewer
//! (a signed-in user, or an anonymous browser recognised by the [`VIEWER_COOKIE`]) starts
//! watching something, not on every playback-URL refresh or page reload within
//! [`SESSION_MS`]. Sessions are rows of `view_sessions` ([`crate::store::views`]); the
//! upsert that opens one tells whether it was new, in the same statement, so concurrent
//! requests count once.

use crate::error::StoreError;
use crate::model::role::Principal;
use crate::ports::{Platform, Sql as _};
use crate::store::{counters, views};

/// How long one viewer session lasts, in ms: watching the same thing again within it is not
/// another view.
pub const SESSION_MS: u64 = 30 * 60 * 1000;
/// The cookie that identifies an anonymous viewer.
pub const VIEWER_COOKIE: &str = "ev_viewer";
/// Lifetime of the viewer cookie, in seconds.
const VIEWER_COOKIE_MAX_AGE_S: u64 = 365 * 24 * 3600;

/// What [`record`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Whether this request started a session (and was counted).
    pub counted: bool,
    /// A `Set-Cookie` value for a newly identified anonymous viewer.
    pub set_cookie: Option<String>,
}

/// Counts a view of `scope` (a channel or video id) under `counter` if it starts a viewer
/// session. Anonymous callers without a viewer cookie (`cookie`, the id it carries) get a new
/// id (returned as a cookie).
///
/// # Errors
/// `Backend` when the catalogue fails.
pub async fn record<P: Platform>(
    p: &P,
    cookie: Option<String>,
    viewer: Option<&Principal>,
    scope: &str,
    counter: &str,
) -> Result<Recorded, StoreError> {
    let (viewer_id, set_cookie) = match (viewer, cookie) {
        (Some(principal), _) => (principal.user_id.clone(), None),
        (None, Some(cookie)) => (cookie, None),
        (None, None) => {
            let id = p.entropy().new_id("vw");
            let cookie = format!(
                "{VIEWER_COOKIE}={id}; Path=/; Max-Age={VIEWER_COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax"
            );
            (id, Some(cookie))
        }
    };
    let now_ms = p.clock().now_ms() as i64;
    let counted = views::open_session(
        p.sql(),
        scope,
        &viewer_id,
        now_ms,
        now_ms - SESSION_MS as i64,
    )
    .await?;
    if counted {
        p.sql().execute(&counters::bump(counter, 1)).await?;
    }
    Ok(Recorded {
        counted,
        set_cookie,
    })
}

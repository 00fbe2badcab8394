//! Views, counted once per viewer session: a live join or a VOD play counts when a viewer
//! (a signed-in user, or an anonymous browser recognised by the [`VIEWER_COOKIE`]) starts
//! watching something, not on every playback-URL refresh or page reload within
//! [`SESSION_MS`]. Sessions are rows of `view_sessions`; the upsert that opens one tells
//! whether it was new, in the same statement, so concurrent requests count once.

use http::header::{COOKIE, SET_COOKIE};
use http::HeaderValue;

use crate::api::{Request, Response};
use crate::auth::Principal;
use crate::counters;
use crate::error::StoreError;
use crate::ids;
use crate::platform::{Platform, Sql as _, SqlValue, Statement};

/// How long one viewer session lasts, in ms: watching the same thing again within it is not
/// another view.
pub const SESSION_MS: u64 = 30 * 60 * 1000;
/// The cookie that identifies an anonymous viewer.
pub const VIEWER_COOKIE: &str = "ev_viewer";
/// Lifetime of the viewer cookie, in seconds.
const VIEWER_COOKIE_MAX_AGE_S: u64 = 365 * 24 * 3600;

/// The anonymous viewer id from the request's cookie, if it is well formed.
pub fn viewer_cookie(request: &Request) -> Option<String> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == VIEWER_COOKIE && ids::is_id(value, "vw"))
        .map(|(_, value)| value.to_owned())
}

/// The statement that opens a session of `viewer` on `scope` at `now_ms` unless one is
/// open: it changes one row when a session starts (counts) and none otherwise.
pub fn open_session(scope: &str, viewer: &str, now_ms: u64) -> Statement {
    let now = now_ms as i64;
    Statement::new(
        "INSERT INTO view_sessions (scope, viewer, started_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(scope, viewer) DO UPDATE SET started_at = excluded.started_at \
         WHERE view_sessions.started_at <= ?4",
        vec![
            SqlValue::from(scope),
            SqlValue::from(viewer),
            SqlValue::Integer(now),
            SqlValue::Integer(now - SESSION_MS as i64),
        ],
    )
}

/// What [`record`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Whether this request started a session (and was counted).
    pub counted: bool,
    /// A `Set-Cookie` value for a newly identified anonymous viewer.
    pub set_cookie: Option<String>,
}

/// Counts a view of `scope` (a channel or video id) under `counter` if it starts a viewer
/// session. Anonymous callers without a viewer cookie get a new id (returned as a cookie).
///
/// # Errors
/// `Backend` when the catalogue fails.
pub async fn record<P: Platform>(
    p: &P,
    request: &Request,
    viewer: Option<&Principal>,
    scope: &str,
    counter: &str,
) -> Result<Recorded, StoreError> {
    let (viewer_id, set_cookie) = match (viewer, viewer_cookie(request)) {
        (Some(principal), _) => (principal.user_id.clone(), None),
        (None, Some(cookie)) => (cookie, None),
        (None, None) => {
            let id = ids::new_id(p.entropy(), "vw");
            let cookie = format!(
                "{VIEWER_COOKIE}={id}; Path=/; Max-Age={VIEWER_COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax"
            );
            (id, Some(cookie))
        }
    };
    let now_ms = p.clock().now_ms();
    let opened = p
        .sql()
        .execute(&open_session(scope, &viewer_id, now_ms))
        .await?;
    let counted = opened > 0;
    if counted {
        p.sql().execute(&counters::bump(counter, 1)).await?;
    }
    Ok(Recorded {
        counted,
        set_cookie,
    })
}

/// Adds the viewer cookie of `recorded` (if any) to a response.
pub fn with_cookie(mut response: Response, recorded: &Recorded) -> Response {
    if let Some(value) = recorded
        .set_cookie
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_viewer_cookie_is_read_only_when_well_formed() {
        let request = |cookie: &str| {
            http::Request::builder()
                .header(COOKIE, cookie)
                .body(Vec::new())
                .unwrap()
        };
        assert_eq!(
            viewer_cookie(&request("a=b; ev_viewer=vw_abcdefgh12345678")),
            Some("vw_abcdefgh12345678".into())
        );
        assert_eq!(
            viewer_cookie(&request("ev_viewer=usr_abcdefgh12345678")),
            None
        );
        assert_eq!(viewer_cookie(&request("ev_viewer=vw_../../x")), None);
        assert_eq!(viewer_cookie(&request("other=vw_abcdefgh12345678")), None);
    }
}

//! Authentication at the edge of the API: password hashing ([`password`]), session tokens
//! ([`session`]) and how the caller ([`Principal`]) is read from a request
//! ([`principal_from_request`]).

pub mod password;
pub mod session;

use crate::api::{Request, Response};
use crate::config::Config;
use crate::error::ApiError;
use crate::model::ids;
use crate::model::role::Principal;
use crate::services::views::{self, Recorded};
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::HeaderValue;

/// The name of the session cookie set by login and signup for the web pages.
pub const SESSION_COOKIE: &str = "ev_session";

/// Extracts the session token: `Authorization: Bearer <token>` first, else the session cookie.
pub fn session_token(request: &Request) -> Option<&str> {
    if let Some(auth) = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = auth.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim());
    }
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Reads and verifies the caller's session.
///
/// # Errors
/// 401 when there is no token or it does not verify (expired, tampered, wrong issuer).
pub fn principal_from_request(
    request: &Request,
    config: &Config,
    now_s: u64,
) -> Result<Principal, ApiError> {
    let token = session_token(request)
        .ok_or_else(|| ApiError::Unauthorized("a session token is required".into()))?;
    let claims = session::verify(
        token,
        config.session_secret.as_bytes(),
        &config.token_issuer,
        now_s,
    )
    .map_err(|e| ApiError::Unauthorized(format!("invalid session token: {e}")))?;
    Ok(Principal {
        user_id: claims.sub,
        email: claims.email,
        role: claims.role,
    })
}

/// The caller of a public route, if it presents a valid session; an invalid or missing
/// token makes an anonymous caller.
pub fn optional_principal(request: &Request, config: &Config, now_s: u64) -> Option<Principal> {
    session_token(request)?;
    principal_from_request(request, config, now_s).ok()
}

/// The anonymous viewer id from the request's cookie, if it is well formed.
pub fn viewer_cookie(request: &Request) -> Option<String> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == views::VIEWER_COOKIE && ids::is_id(value, "vw"))
        .map(|(_, value)| value.to_owned())
}

/// Adds the viewer cookie of `recorded` (see [`views::record`]) (if any) to a response.
pub fn with_viewer_cookie(mut response: Response, recorded: &Recorded) -> Response {
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

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = http::Request::builder().uri("/");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(Vec::new()).unwrap()
    }

    #[test]
    fn token_comes_from_bearer_or_cookie() {
        assert_eq!(
            session_token(&request(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            session_token(&request(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(
            session_token(&request(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(
            session_token(&request(&[("cookie", "a=1; ev_session=tok; b=2")])),
            Some("tok")
        );
        assert_eq!(
            session_token(&request(&[("cookie", "ev_sessionx=1")])),
            None
        );
        assert_eq!(session_token(&request(&[])), None);
    }

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

//! Authentication at the edge of the API: password hashing ([`password`]), session tokens
//! ([`session`]) and how the caller ([`Principal`]) is read from a request
//! ([`authenticate`]).

pub mod password;
pub mod session;

use crate::api::{Request, Response};
use crate::config::Config;
use crate::error::ApiError;
use crate::model::role::Principal;
use crate::ports::Platform;
use crate::services::sessions;
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

/// Reads and verifies the caller's session token (signature, expiry, issuer; no I/O).
///
/// # Errors
/// 401 when there is no token or it does not verify (expired, tampered, wrong issuer).
pub fn session_claims(
    request: &Request,
    config: &Config,
    now_s: u64,
) -> Result<session::Claims, ApiError> {
    let token = session_token(request)
        .ok_or_else(|| ApiError::Unauthorized("a session token is required".into()))?;
    let mut keys = vec![config.session_secret.as_bytes()];
    if let Some(previous) = &config.session_secret_previous {
        keys.push(previous.as_bytes());
    }
    session::verify(token, &keys, &config.token_issuer, now_s)
        .map_err(|e| ApiError::Unauthorized(format!("invalid session token: {e}")))
}

/// The caller: a verified session token whose session was not revoked (logged out, or cut
/// off by a log-out-everywhere or a role change; see [`sessions`]).
///
/// # Errors
/// 401 without a valid, live session; `Store` when KV fails.
pub async fn authenticate<P: Platform>(p: &P, request: &Request) -> Result<Principal, ApiError> {
    let now_s = p.clock().now_ms() / 1000;
    let claims = session_claims(request, p.config(), now_s)?;
    if !sessions::is_valid(p.kv(), &claims.sub, &claims.sid, claims.issued_ms()).await? {
        return Err(ApiError::Unauthorized(
            "this session was logged out; log in again".into(),
        ));
    }
    Ok(Principal {
        user_id: claims.sub,
        email: claims.email,
        role: claims.role,
    })
}

/// The caller of a public route, if it presents a valid, live session; an invalid or
/// missing token makes an anonymous caller.
///
/// # Errors
/// `Store` when KV fails.
pub async fn optional_principal<P: Platform>(
    p: &P,
    request: &Request,
) -> Result<Option<Principal>, ApiError> {
    if session_token(request).is_none() {
        return Ok(None);
    }
    match authenticate(p, request).await {
        Ok(principal) => Ok(Some(principal)),
        Err(ApiError::Unauthorized(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The viewer cookie's value as sent (its signature is checked by [`views::record`]).
pub fn viewer_cookie(request: &Request) -> Option<&str> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == views::VIEWER_COOKIE)
        .map(|(_, value)| value)
}

/// The client's network address: the `cf-connecting-ip` header, which the hosts set (Cloudflare
/// itself; the Spin adapter from the connection, replacing whatever the client sent).
pub fn client_address(request: &Request) -> &str {
    request
        .headers()
        .get(CLIENT_ADDRESS_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
}

/// The header carrying the client's address (see [`client_address`]).
pub const CLIENT_ADDRESS_HEADER: &str = "cf-connecting-ip";

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
    fn the_viewer_cookie_and_client_address_are_read() {
        let request = |name: &str, value: &str| {
            http::Request::builder()
                .header(name, value)
                .body(Vec::new())
                .unwrap()
        };
        assert_eq!(
            viewer_cookie(&request("cookie", "a=b; ev_viewer=vw_abc.sig")),
            Some("vw_abc.sig")
        );
        assert_eq!(viewer_cookie(&request("cookie", "other=vw_abc.sig")), None);
        assert_eq!(
            client_address(&request("cf-connecting-ip", "203.0.113.7")),
            "203.0.113.7"
        );
        assert_eq!(
            client_address(&request("x-forwarded-for", "1.2.3.4")),
            "unknown"
        );
    }
}

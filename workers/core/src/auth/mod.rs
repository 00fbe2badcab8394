//! Accounts and authentication: password hashing ([`password`]), session tokens ([`session`]),
//! roles ([`Role`]), the principal a request acts as ([`Principal`]) and how it is read from
//! a request ([`principal_from_request`]).

pub mod password;
pub mod session;

use http::header::{AUTHORIZATION, COOKIE};
use serde::{Deserialize, Serialize};

use crate::api::Request;
use crate::config::Config;
use crate::error::ApiError;

/// The name of the session cookie set by login and signup for the web pages.
pub const SESSION_COOKIE: &str = "ev_session";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Watches videos (the default).
    Viewer,
    /// Creates channels and goes live.
    Broadcaster,
    /// Registers and manages plugins.
    Developer,
    /// Grants roles; may do everything.
    Admin,
}

impl Role {
    /// All roles, least privileged first.
    pub const ALL: [Role; 4] = [
        Role::Viewer,
        Role::Broadcaster,
        Role::Developer,
        Role::Admin,
    ];

    /// The role's name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Broadcaster => "broadcaster",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether this role satisfies a route that requires `required`: the same role, or admin.
    pub fn satisfies(self, required: Role) -> bool {
        self == required || self == Role::Admin
    }
}

/// The authenticated caller of a request, as its session token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: String,
    /// The user's email.
    pub email: String,
    /// The role the token carries (checked against the stored user on sensitive routes).
    pub role: Role,
}

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
    fn roles_round_trip_and_admin_satisfies_everything() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert!(Role::Admin.satisfies(role));
        }
        assert!(!Role::Viewer.satisfies(Role::Broadcaster));
        assert!(!Role::Developer.satisfies(Role::Broadcaster));
        assert!(!Role::Broadcaster.satisfies(Role::Admin));
        assert_eq!(Role::parse("root"), None);
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
}

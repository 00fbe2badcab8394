//! The router: matches a request against the route table ([`crate::api::table`]), applies
//! the route's access rule, and runs its handler. A path that matches no entry is a 404, a
//! path that matches with another method a 405. The access check runs before any handler, so
//! a route cannot exist without an access rule.

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::Method;

use crate::api::auth;
use crate::api::cors;
use crate::api::table::{self, Access, RouteSpec, ROUTES};
use crate::api::{self, Request, Response};
use crate::error::ApiError;
use crate::model::role::Principal;
use crate::ports::metered::Metered;
use crate::ports::Platform;
use crate::store::users;

/// Matches `path` against `pattern`, returning the `{x}` segments in order.
fn match_path(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if is_param(p) => {
                if s.is_empty() {
                    return None;
                }
                params.push(s.to_owned());
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// A matched route and its path parameters.
#[derive(Debug)]
pub struct Matched {
    /// The route table entry.
    pub spec: &'static RouteSpec,
    /// The `{x}` segments, in order.
    pub params: Vec<String>,
}

/// Whether a pattern segment is a `{x}` parameter.
fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// How specifically `pattern` names a path, for comparing patterns that match the same path:
/// segment by segment, a literal beats a parameter at the first segment where they differ.
fn specificity(pattern: &str) -> impl Iterator<Item = bool> + '_ {
    pattern.split('/').map(|segment| !is_param(segment))
}

/// Finds the route for `method` and `path`. A path is the resource of its most specific
/// patterns only: `/upload/{token}/parts/complete` is not also `/upload/{token}/parts/{number}`,
/// so a method of the latter is not routed there and is not in its `Allow`.
///
/// # Errors
/// 404 when no pattern matches the path; 405 (with the allowed methods) when its patterns
/// match only with other methods.
pub fn resolve(method: &Method, path: &str) -> Result<Matched, ApiError> {
    let mut best: Option<&'static str> = None;
    let mut matches = Vec::new();
    for spec in ROUTES {
        if let Some(params) = match_path(spec.path, path) {
            if best.is_none_or(|b| specificity(spec.path).cmp(specificity(b)).is_gt()) {
                best = Some(spec.path);
            }
            matches.push(Matched { spec, params });
        }
    }
    let Some(best) = best else {
        return Err(ApiError::NotFound(format!("no route for {path}")));
    };
    matches.retain(|m| specificity(m.spec.path).eq(specificity(best)));
    let mut allowed = Vec::new();
    for matched in matches {
        let spec = matched.spec;
        if spec.method == *method || (*method == Method::HEAD && spec.method == Method::GET) {
            return Ok(matched);
        }
        allowed.push(spec.method.clone());
    }
    Err(ApiError::MethodNotAllowed(allowed))
}

/// Handles one request: resolves the route, checks its access rule, runs the handler, and
/// renders any error as JSON. Never panics on input. Port calls are counted
/// ([`metered`]); playback answers any origin ([`cors`]).
///
/// A response may carry a [`api::chunked::ChunkedBody`] marker instead of its body, or a
/// [`api::growing::GrowingPart`] after its first bytes: hosts that stream read them as they
/// come, the others call [`handle_buffered`].
pub async fn handle<P: Platform>(platform: &P, request: Request) -> Response {
    let platform = Metered::new(platform);
    let playback = is_playback(request.uri().path());
    if playback && request.method() == Method::OPTIONS {
        return cors::preflight();
    }
    let response = match dispatch(&platform, request).await {
        Ok(response) => response,
        Err(err) => api::error(&err),
    };
    if playback {
        cors::allow_any_origin(response)
    } else {
        response
    }
}

/// [`handle`], with any [`api::chunked::ChunkedBody`] or [`api::growing::GrowingPart`]
/// collected into the response body.
pub async fn handle_buffered<P: Platform>(platform: &P, request: Request) -> Response {
    let response = handle(platform, request).await;
    let platform = Metered::new(platform);
    let response = api::chunked::collect_body(&platform, response).await;
    api::growing::collect_body(&platform, response).await
}

/// Whether `path` is a playback URL (`/play/...`), which players on any origin may read.
fn is_playback(path: &str) -> bool {
    path.starts_with("/play/")
}

/// Refuses cross-site request forgery: a write (any method but GET, HEAD, OPTIONS) that
/// would be authenticated by the session cookie (it carries the cookie and no bearer token)
/// must come from our own pages, so an `Origin` other than the request's own host is
/// refused. Callers with bearer tokens or signed URLs send no cookie and are not concerned;
/// clients that send no `Origin` are not browsers running another site's page.
///
/// # Errors
/// 403 `forbidden`.
pub fn check_origin(request: &Request) -> Result<(), ApiError> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || request.headers().contains_key(AUTHORIZATION)
        || auth::session_token(request).is_none()
    {
        return Ok(());
    }
    let Some(origin) = request.headers().get(ORIGIN) else {
        return Ok(());
    };
    let own = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let from = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host.trim_end_matches('/'));
    match (from, own.as_deref()) {
        (Some(from), Some(own)) if from.eq_ignore_ascii_case(own) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "a request from another site may not use this site's session cookie".into(),
        )),
    }
}

/// Resolves, authorizes and runs one request.
async fn dispatch<P: Platform>(platform: &P, request: Request) -> Result<Response, ApiError> {
    let path = request.uri().path().to_owned();
    let matched = resolve(request.method(), &path)?;
    check_origin(&request)?;
    let principal = authorize(platform, &request, matched.spec.access, &path).await?;
    table::run(
        matched.spec.name,
        platform,
        request,
        &matched.params,
        principal,
    )
    .await
}

/// Applies a route's access rule: returns the caller for routes that need one.
///
/// # Errors
/// 401 without a valid session; 403 when the stored role does not satisfy the route's;
/// 404 for diagnostics routes when diagnostics are off.
pub async fn authorize<P: Platform>(
    platform: &P,
    request: &Request,
    access: Access,
    path: &str,
) -> Result<Option<Principal>, ApiError> {
    match access {
        Access::Public | Access::UrlToken | Access::TaskToken | Access::TranscoderSignature => {
            Ok(None)
        }
        Access::Diagnostics if platform.config().diagnostics => Ok(None),
        Access::Diagnostics => Err(ApiError::NotFound(format!("no route for {path}"))),
        Access::Authenticated => auth::authenticate(platform, request).await.map(Some),
        Access::Role(required) => {
            let mut principal = auth::authenticate(platform, request).await?;
            let stored = users::by_id(platform.sql(), &principal.user_id)
                .await?
                .ok_or_else(|| {
                    ApiError::Unauthorized("the session's user no longer exists".into())
                })?;
            if !stored.role.satisfies(required) {
                return Err(ApiError::Forbidden(format!(
                    "this needs the {} role",
                    required.as_str()
                )));
            }
            principal.role = stored.role;
            Ok(Some(principal))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::table::RouteName;

    #[test]
    fn cookie_writes_from_another_site_are_refused() {
        let request = |method: Method, headers: &[(&str, &str)]| {
            let mut builder = http::Request::builder()
                .method(method)
                .uri("http://edge.example/api/channels");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(Vec::new()).unwrap()
        };
        let cookie = ("cookie", "ev_session=tok");
        let evil = ("origin", "https://evil.example");
        assert!(check_origin(&request(Method::POST, &[cookie, evil])).is_err());
        assert!(check_origin(&request(Method::DELETE, &[cookie, ("origin", "null")])).is_err());
        // Our own pages, bearer callers, cookie-less callers, reads: allowed.
        let own = ("origin", "http://edge.example");
        assert!(check_origin(&request(Method::POST, &[cookie, own])).is_ok());
        let bearer = ("authorization", "Bearer tok");
        assert!(check_origin(&request(Method::POST, &[cookie, bearer, evil])).is_ok());
        assert!(check_origin(&request(Method::POST, &[evil])).is_ok());
        assert!(check_origin(&request(Method::GET, &[cookie, evil])).is_ok());
        assert!(check_origin(&request(Method::POST, &[cookie])).is_ok());
    }

    #[test]
    fn patterns_capture_segments() {
        assert_eq!(
            match_path("/api/_diag/rooms/{name}/ping", "/api/_diag/rooms/r1/ping"),
            Some(vec!["r1".to_owned()])
        );
        assert_eq!(match_path("/api/_diag/kv/{key}", "/api/_diag/kv/"), None);
        assert_eq!(match_path("/api/health", "/api/health/extra"), None);
        assert_eq!(match_path("/api/health", "/api"), None);
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert!(matches!(
            resolve(&Method::GET, "/nope"),
            Err(ApiError::NotFound(_))
        ));
        match resolve(&Method::DELETE, "/api/_diag/kv/a") {
            Err(ApiError::MethodNotAllowed(allowed)) => {
                assert_eq!(allowed, vec![Method::GET, Method::PUT]);
            }
            other => panic!("expected 405, got {other:?}"),
        }
        assert_eq!(
            resolve(&Method::HEAD, "/api/health").unwrap().spec.name,
            RouteName::Health
        );
    }

    #[test]
    fn a_path_belongs_to_its_most_specific_patterns() {
        // `parts/complete` is not a part number: PUT is not routed there nor allowed.
        let complete = "/upload/tok/parts/complete";
        assert_eq!(
            resolve(&Method::POST, complete).unwrap().spec.name,
            RouteName::UploadComplete
        );
        for method in [Method::PUT, Method::GET, Method::DELETE] {
            match resolve(&method, complete) {
                Err(ApiError::MethodNotAllowed(allowed)) => {
                    assert_eq!(allowed, vec![Method::POST], "{method}");
                }
                other => panic!("expected 405 for {method}, got {other:?}"),
            }
        }
        assert_eq!(
            resolve(&Method::PUT, "/upload/tok/parts/3")
                .unwrap()
                .spec
                .name,
            RouteName::UploadPart
        );
        match resolve(&Method::DELETE, "/api/videos/preview") {
            Err(ApiError::MethodNotAllowed(allowed)) => assert_eq!(allowed, vec![Method::GET]),
            other => panic!("expected 405, got {other:?}"),
        }
        assert_eq!(
            resolve(&Method::DELETE, "/api/videos/vid_1")
                .unwrap()
                .spec
                .name,
            RouteName::DeleteVideo
        );
    }

    #[test]
    fn every_route_pattern_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "duplicate route {} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}

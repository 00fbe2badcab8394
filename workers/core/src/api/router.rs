//! The one route table and the dispatcher.
//!
//! [`ROUTES`] lists every route with its method, path pattern and the access it needs; a path
//! that matches no entry is a 404, a path that matches with another method a 405. The access
//! check runs before any handler, so a route cannot exist without an access rule.

use http::Method;

use crate::api::auth;
use crate::api::routes;
use crate::api::{self, Request, Response};
use crate::error::ApiError;
use crate::model::role::{Principal, Role};
use crate::ports::Platform;
use crate::services::accounts;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any signed-in user (a valid session token).
    Authenticated,
    /// Users whose stored role satisfies this one (admins satisfy every role). The role is
    /// read from the catalogue, so a revoked role stops working before the token expires.
    Role(Role),
    /// Holders of a signed URL: the token in the path is verified by the handler, which
    /// knows the scope it needs (ingest, play a channel, play a video).
    UrlToken,
    /// Plugins answering a task: the task's single-use token in the body is checked by the
    /// handler.
    TaskToken,
    /// The transcoder: a Standard Webhooks signature with `TRANSCODER_SECRET`, checked by
    /// the handler.
    TranscoderSignature,
    /// Development deployments with diagnostics on; 404 everywhere else.
    Diagnostics,
}

/// Names of the routes; the dispatcher matches on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteName {
    /// `GET /api/health`: version and a check of every binding.
    Health,
    /// `GET /api/version`: the version alone, touching no binding (the benchmarks' baseline).
    Version,
    /// `GET /api/_diag/routes`: this route table, for the authorization matrix test.
    DiagRoutes,
    /// `POST /api/auth/signup`.
    Signup,
    /// `POST /api/auth/login`.
    Login,
    /// `POST /api/auth/logout`.
    Logout,
    /// `GET /api/me`.
    Me,
    /// `PUT /api/users/{id}/role`.
    SetUserRole,
    /// `POST /api/channels`.
    CreateChannel,
    /// `GET /api/channels/{id}`.
    GetChannel,
    /// `POST /api/channels/{id}/stream-key/rotate`.
    RotateStreamKey,
    /// `POST /api/channels/{id}/ingest`.
    IngestUrl,
    /// `POST /api/channels/{id}/playback`.
    ChannelPlayback,
    /// `GET /api/channels/{id}/ws`.
    ChannelSocket,
    /// `GET /api/live`.
    LiveChannels,
    /// `GET /api/live/ws`.
    LobbySocket,
    /// `POST /api/videos/{id}/playback`.
    VideoPlayback,
    /// `GET /api/videos`: the catalogue, newest first, with filters and cursor paging.
    ListVideos,
    /// `GET /api/videos/preview`: the newest published videos (cached).
    VideoPreview,
    /// `GET /api/videos/{id}`: a video with its merged metadata.
    GetVideo,
    /// `DELETE /api/videos/{id}`: the owner or an admin deletes a video and its media.
    DeleteVideo,
    /// `GET /api/videos/{id}/history`: the video's timeline.
    VideoHistory,
    /// `GET /api/channels`: channels with live status and viewer counts.
    ListChannels,
    /// `GET /api/channels/{id}/videos`: a channel's videos.
    ChannelVideos,
    /// `GET /api/stats`: KPIs (the detailed part for admins).
    Stats,
    /// `PUT /ingest/{token}/{file}`.
    IngestPut,
    /// `DELETE /ingest/{token}/{file}`.
    IngestDelete,
    /// `GET /play/{token}/live.m3u8`.
    PlayLive,
    /// `GET /play/{token}/index.m3u8`.
    PlayVod,
    /// `GET /play/{token}/video.mp4`.
    PlayMp4,
    /// `GET /play/{token}/seg/{broadcast}/{file}`.
    PlaySegment,
    /// `POST /api/plugins`.
    CreatePlugin,
    /// `GET /api/plugins`.
    ListPlugins,
    /// `GET /api/plugins/{id}`.
    GetPlugin,
    /// `PATCH /api/plugins/{id}`.
    UpdatePlugin,
    /// `DELETE /api/plugins/{id}`.
    DeletePlugin,
    /// `POST /api/plugins/{id}/secret/rotate`.
    RotatePluginSecret,
    /// `GET /api/plugins/{id}/deliveries`.
    PluginDeliveries,
    /// `POST /api/plugins/{id}/deliveries/{delivery}/redeliver`.
    Redeliver,
    /// `POST /api/plugins/tasks/{id}/success`.
    TaskSuccess,
    /// `POST /api/plugins/tasks/{id}/failure`.
    TaskFailure,
    /// `POST /api/transcoder/callback`.
    TranscoderCallback,
    /// `PUT /upload/{token}`.
    Upload,
    /// `POST /upload/{token}/parts`.
    UploadBegin,
    /// `PUT /upload/{token}/parts/{number}`.
    UploadPart,
    /// `POST /upload/{token}/parts/complete`.
    UploadComplete,
    /// `GET /play/{token}/poster.jpg`.
    PlayPoster,
    /// `GET /api/_diag/kv/{key}`.
    DiagKvGet,
    /// `PUT /api/_diag/kv/{key}`.
    DiagKvPut,
    /// `POST /api/_diag/counters/{name}`: increments a counter row in SQL.
    DiagCounterIncrement,
    /// `GET /api/_diag/counters/{name}`.
    DiagCounterGet,
    /// `PUT /api/_diag/blobs/{key}`.
    DiagBlobPut,
    /// `GET /api/_diag/blobs/{key}`.
    DiagBlobGet,
    /// `POST /api/_diag/rooms/{name}/ping`.
    DiagRoomPing,
    /// `POST /api/_diag/jobs/{id}`: enqueues a probe job.
    DiagJobEnqueue,
    /// `GET /api/_diag/jobs/{id}`: whether the consumer ran it.
    DiagJobStatus,
    /// `GET /api/_diag/conformance`: the port conformance suites against the real bindings.
    DiagConformance,
    /// `GET /api/_diag/stored/{channel}`: what the catalogue and blob store hold for a channel.
    DiagStored,
    /// `GET /api/_diag/video/{id}`: a video's whole row and its events.
    DiagVideo,
}

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The handler.
    pub name: RouteName,
    /// The method.
    pub method: Method,
    /// The path pattern; `{x}` matches one non-empty segment.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

const fn route(name: RouteName, method: Method, path: &'static str, access: Access) -> RouteSpec {
    RouteSpec {
        name,
        method,
        path,
        access,
    }
}

/// Every route of the API.
pub const ROUTES: &[RouteSpec] = &[
    route(
        RouteName::Health,
        Method::GET,
        "/api/health",
        Access::Public,
    ),
    route(
        RouteName::Version,
        Method::GET,
        "/api/version",
        Access::Public,
    ),
    route(
        RouteName::DiagRoutes,
        Method::GET,
        "/api/_diag/routes",
        Access::Diagnostics,
    ),
    route(
        RouteName::Signup,
        Method::POST,
        "/api/auth/signup",
        Access::Public,
    ),
    route(
        RouteName::Login,
        Method::POST,
        "/api/auth/login",
        Access::Public,
    ),
    route(
        RouteName::Logout,
        Method::POST,
        "/api/auth/logout",
        Access::Public,
    ),
    route(RouteName::Me, Method::GET, "/api/me", Access::Authenticated),
    route(
        RouteName::SetUserRole,
        Method::PUT,
        "/api/users/{id}/role",
        Access::Role(Role::Admin),
    ),
    route(
        RouteName::CreateChannel,
        Method::POST,
        "/api/channels",
        Access::Role(Role::Broadcaster),
    ),
    route(
        RouteName::GetChannel,
        Method::GET,
        "/api/channels/{id}",
        Access::Public,
    ),
    route(
        RouteName::RotateStreamKey,
        Method::POST,
        "/api/channels/{id}/stream-key/rotate",
        Access::Role(Role::Broadcaster),
    ),
    route(
        RouteName::IngestUrl,
        Method::POST,
        "/api/channels/{id}/ingest",
        Access::Role(Role::Broadcaster),
    ),
    route(
        RouteName::ChannelPlayback,
        Method::POST,
        "/api/channels/{id}/playback",
        Access::Public,
    ),
    route(
        RouteName::ChannelSocket,
        Method::GET,
        "/api/channels/{id}/ws",
        Access::Public,
    ),
    route(
        RouteName::LiveChannels,
        Method::GET,
        "/api/live",
        Access::Public,
    ),
    route(
        RouteName::LobbySocket,
        Method::GET,
        "/api/live/ws",
        Access::Public,
    ),
    route(
        RouteName::VideoPlayback,
        Method::POST,
        "/api/videos/{id}/playback",
        Access::Public,
    ),
    route(
        RouteName::ListVideos,
        Method::GET,
        "/api/videos",
        Access::Public,
    ),
    // Before `/api/videos/{id}`: the first matching entry wins.
    route(
        RouteName::VideoPreview,
        Method::GET,
        "/api/videos/preview",
        Access::Public,
    ),
    route(
        RouteName::GetVideo,
        Method::GET,
        "/api/videos/{id}",
        Access::Public,
    ),
    // The handler allows the video's owner and admins (stored role); 403 for others.
    route(
        RouteName::DeleteVideo,
        Method::DELETE,
        "/api/videos/{id}",
        Access::Authenticated,
    ),
    route(
        RouteName::VideoHistory,
        Method::GET,
        "/api/videos/{id}/history",
        Access::Public,
    ),
    route(
        RouteName::ListChannels,
        Method::GET,
        "/api/channels",
        Access::Public,
    ),
    route(
        RouteName::ChannelVideos,
        Method::GET,
        "/api/channels/{id}/videos",
        Access::Public,
    ),
    // Public headline figures; the handler adds the detailed part for admins (stored role).
    route(RouteName::Stats, Method::GET, "/api/stats", Access::Public),
    route(
        RouteName::IngestPut,
        Method::PUT,
        "/ingest/{token}/{file}",
        Access::UrlToken,
    ),
    route(
        RouteName::IngestDelete,
        Method::DELETE,
        "/ingest/{token}/{file}",
        Access::UrlToken,
    ),
    route(
        RouteName::PlayLive,
        Method::GET,
        "/play/{token}/live.m3u8",
        Access::UrlToken,
    ),
    route(
        RouteName::PlayVod,
        Method::GET,
        "/play/{token}/index.m3u8",
        Access::UrlToken,
    ),
    route(
        RouteName::PlayMp4,
        Method::GET,
        "/play/{token}/video.mp4",
        Access::UrlToken,
    ),
    route(
        RouteName::PlaySegment,
        Method::GET,
        "/play/{token}/seg/{broadcast}/{file}",
        Access::UrlToken,
    ),
    route(
        RouteName::CreatePlugin,
        Method::POST,
        "/api/plugins",
        Access::Role(Role::Developer),
    ),
    route(
        RouteName::ListPlugins,
        Method::GET,
        "/api/plugins",
        Access::Role(Role::Developer),
    ),
    route(
        RouteName::TaskSuccess,
        Method::POST,
        "/api/plugins/tasks/{id}/success",
        Access::TaskToken,
    ),
    route(
        RouteName::TaskFailure,
        Method::POST,
        "/api/plugins/tasks/{id}/failure",
        Access::TaskToken,
    ),
    route(
        RouteName::GetPlugin,
        Method::GET,
        "/api/plugins/{id}",
        Access::Role(Role::Developer),
    ),
    route(
        RouteName::UpdatePlugin,
        Method::PATCH,
        "/api/plugins/{id}",
        Access::Role(Role::Developer),
    ),
    route(
        RouteName::DeletePlugin,
        Method::DELETE,
        "/api/plugins/{id}",
        Access::Role(Role::Developer),
    ),
    route(
        RouteName::RotatePluginSecret,
        Method::POST,
        "/api/plugins/{id}/secret/rotate",
        Access::Role(Role::Developer),
    ),
    route(
        RouteName::PluginDeliveries,
        Method::GET,
        "/api/plugins/{id}/deliveries",
        Access::Role(Role::Developer),
    ),
    route(
        RouteName::Redeliver,
        Method::POST,
        "/api/plugins/{id}/deliveries/{delivery}/redeliver",
        Access::Role(Role::Developer),
    ),
    route(
        RouteName::TranscoderCallback,
        Method::POST,
        "/api/transcoder/callback",
        Access::TranscoderSignature,
    ),
    route(
        RouteName::Upload,
        Method::PUT,
        "/upload/{token}",
        Access::UrlToken,
    ),
    route(
        RouteName::UploadBegin,
        Method::POST,
        "/upload/{token}/parts",
        Access::UrlToken,
    ),
    route(
        RouteName::UploadPart,
        Method::PUT,
        "/upload/{token}/parts/{number}",
        Access::UrlToken,
    ),
    route(
        RouteName::UploadComplete,
        Method::POST,
        "/upload/{token}/parts/complete",
        Access::UrlToken,
    ),
    route(
        RouteName::PlayPoster,
        Method::GET,
        "/play/{token}/poster.jpg",
        Access::UrlToken,
    ),
    route(
        RouteName::DiagKvGet,
        Method::GET,
        "/api/_diag/kv/{key}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagKvPut,
        Method::PUT,
        "/api/_diag/kv/{key}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagCounterIncrement,
        Method::POST,
        "/api/_diag/counters/{name}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagCounterGet,
        Method::GET,
        "/api/_diag/counters/{name}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagBlobPut,
        Method::PUT,
        "/api/_diag/blobs/{key}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagBlobGet,
        Method::GET,
        "/api/_diag/blobs/{key}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagRoomPing,
        Method::POST,
        "/api/_diag/rooms/{name}/ping",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagJobEnqueue,
        Method::POST,
        "/api/_diag/jobs/{id}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagJobStatus,
        Method::GET,
        "/api/_diag/jobs/{id}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagVideo,
        Method::GET,
        "/api/_diag/video/{id}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagStored,
        Method::GET,
        "/api/_diag/stored/{channel}",
        Access::Diagnostics,
    ),
    route(
        RouteName::DiagConformance,
        Method::GET,
        "/api/_diag/conformance",
        Access::Diagnostics,
    ),
];

/// Matches `path` against `pattern`, returning the `{x}` segments in order.
fn match_path(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') => {
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

/// Finds the route for `method` and `path`.
///
/// # Errors
/// 404 when no pattern matches the path; 405 (with the allowed methods) when patterns match
/// only with other methods.
pub fn resolve(method: &Method, path: &str) -> Result<Matched, ApiError> {
    let mut allowed = Vec::new();
    for spec in ROUTES {
        if let Some(params) = match_path(spec.path, path) {
            if spec.method == *method || (*method == Method::HEAD && spec.method == Method::GET) {
                return Ok(Matched { spec, params });
            }
            allowed.push(spec.method.clone());
        }
    }
    if allowed.is_empty() {
        Err(ApiError::NotFound(format!("no route for {path}")))
    } else {
        Err(ApiError::MethodNotAllowed(allowed))
    }
}

/// Handles one request: resolves the route, checks its access rule, runs the handler, and
/// renders any error as JSON. Never panics on input.
pub async fn handle<P: Platform>(platform: &P, request: Request) -> Response {
    match dispatch(platform, request).await {
        Ok(response) => response,
        Err(err) => api::error(&err),
    }
}

/// Resolves, authorizes and runs one request. Longer than the other functions on purpose: it
/// is the one `match` from [`RouteName`] to its handler, one line per route, so that adding a
/// route is one line here beside its entry in [`ROUTES`].
async fn dispatch<P: Platform>(platform: &P, request: Request) -> Result<Response, ApiError> {
    let path = request.uri().path().to_owned();
    let matched = resolve(request.method(), &path)?;
    let principal = authorize(platform, &request, matched.spec.access, &path).await?;
    let params = &matched.params;
    // Routes with Access::Authenticated or Access::Role always have a principal.
    let who = || {
        principal
            .as_ref()
            .ok_or_else(|| ApiError::Unauthorized("a session token is required".into()))
    };
    match matched.spec.name {
        RouteName::Health => Ok(routes::health::get(platform).await),
        RouteName::Version => Ok(api::json(
            http::StatusCode::OK,
            &serde_json::json!({ "version": crate::VERSION }),
        )),
        RouteName::DiagRoutes => Ok(api::json(http::StatusCode::OK, &route_table())),
        RouteName::Signup => routes::auth::signup(platform, &request).await,
        RouteName::Login => routes::auth::login(platform, &request).await,
        RouteName::Logout => Ok(routes::auth::logout()),
        RouteName::Me => routes::auth::me(platform, who()?).await,
        RouteName::SetUserRole => routes::auth::set_role(platform, &params[0], &request).await,
        RouteName::CreateChannel => routes::channels::create(platform, who()?, &request).await,
        RouteName::GetChannel => routes::channels::get(platform, &params[0]).await,
        RouteName::RotateStreamKey => {
            routes::channels::rotate_stream_key(platform, who()?, &params[0]).await
        }
        RouteName::IngestUrl => {
            routes::channels::ingest_url(platform, who()?, &params[0], &request).await
        }
        RouteName::ChannelPlayback => {
            routes::playback::channel_url(platform, &params[0], &request).await
        }
        RouteName::ChannelSocket => routes::channels::socket(platform, &params[0], &request).await,
        RouteName::LiveChannels => routes::channels::live_channels(platform).await,
        RouteName::LobbySocket => routes::channels::lobby_socket(&request),
        RouteName::VideoPlayback => {
            routes::playback::video_url(platform, &params[0], &request).await
        }
        RouteName::ListVideos => routes::catalogue::list_videos(platform, &request).await,
        RouteName::VideoPreview => routes::catalogue::preview(platform).await,
        RouteName::GetVideo => routes::catalogue::get_video(platform, &params[0], &request).await,
        RouteName::DeleteVideo => {
            who()?;
            routes::catalogue::delete_video(platform, &params[0], &request).await
        }
        RouteName::VideoHistory => routes::catalogue::history(platform, &params[0], &request).await,
        RouteName::ListChannels => routes::catalogue::list_channels(platform, &request).await,
        RouteName::ChannelVideos => {
            routes::catalogue::channel_videos(platform, &params[0], &request).await
        }
        RouteName::Stats => routes::stats::get(platform, &request).await,
        RouteName::IngestPut => {
            let (token, file) = (params[0].clone(), params[1].clone());
            routes::ingest::put(platform, &token, &file, request).await
        }
        RouteName::IngestDelete => routes::ingest::delete(platform, &params[0]).await,
        RouteName::PlayLive => routes::playback::live_playlist(platform, &params[0]).await,
        RouteName::PlayVod => routes::playback::vod_playlist(platform, &params[0]).await,
        RouteName::PlayMp4 => routes::playback::mp4(platform, &params[0], &request).await,
        RouteName::CreatePlugin => routes::plugins::create(platform, who()?, &request).await,
        RouteName::ListPlugins => routes::plugins::list(platform, who()?).await,
        RouteName::GetPlugin => routes::plugins::get(platform, who()?, &params[0]).await,
        RouteName::UpdatePlugin => {
            routes::plugins::update(platform, who()?, &params[0], &request).await
        }
        RouteName::DeletePlugin => routes::plugins::delete(platform, who()?, &params[0]).await,
        RouteName::RotatePluginSecret => {
            routes::plugins::rotate_secret(platform, who()?, &params[0]).await
        }
        RouteName::PluginDeliveries => {
            routes::plugins::deliveries(platform, who()?, &params[0]).await
        }
        RouteName::Redeliver => {
            routes::plugins::redeliver(platform, who()?, &params[0], &params[1]).await
        }
        RouteName::TaskSuccess => {
            routes::plugins::answer_task(platform, &params[0], true, &request).await
        }
        RouteName::TaskFailure => {
            routes::plugins::answer_task(platform, &params[0], false, &request).await
        }
        RouteName::TranscoderCallback => routes::transcoder::callback(platform, &request).await,
        RouteName::Upload => {
            let token = params[0].clone();
            routes::transcoder::upload(platform, &token, request).await
        }
        RouteName::UploadBegin => routes::transcoder::begin_parts(platform, &params[0]).await,
        RouteName::UploadPart => {
            let (token, number) = (params[0].clone(), params[1].clone());
            routes::transcoder::put_part(platform, &token, &number, request).await
        }
        RouteName::UploadComplete => {
            routes::transcoder::complete_parts(platform, &params[0], &request).await
        }
        RouteName::PlayPoster => routes::playback::poster(platform, &params[0], &request).await,
        RouteName::PlaySegment => {
            routes::playback::segment(platform, &params[0], &params[1], &params[2], &request).await
        }
        RouteName::DiagKvGet => routes::diag::kv_get(platform, &params[0]).await,
        RouteName::DiagKvPut => routes::diag::kv_put(platform, &params[0], &request).await,
        RouteName::DiagCounterIncrement => {
            routes::diag::counter_increment(platform, &params[0]).await
        }
        RouteName::DiagCounterGet => routes::diag::counter_get(platform, &params[0]).await,
        RouteName::DiagBlobPut => routes::diag::blob_put(platform, &params[0], request).await,
        RouteName::DiagBlobGet => routes::diag::blob_get(platform, &params[0]).await,
        RouteName::DiagRoomPing => routes::diag::room_ping(platform, &params[0]).await,
        RouteName::DiagJobEnqueue => routes::diag::job_enqueue(platform, &params[0]).await,
        RouteName::DiagJobStatus => routes::diag::job_status(platform, &params[0]).await,
        RouteName::DiagConformance => Ok(routes::diag::conformance(platform).await),
        RouteName::DiagStored => routes::diag::stored(platform, &params[0]).await,
        RouteName::DiagVideo => routes::diag::video(platform, &params[0]).await,
    }
}

/// The route table as JSON: `[{name, method, path, access}]`, with `access` one of
/// `public`, `authenticated`, `role:{role}`, `url_token`, `task_token`,
/// `transcoder_signature`, `diagnostics`.
pub fn route_table() -> serde_json::Value {
    ROUTES
        .iter()
        .map(|r| {
            let access = match r.access {
                Access::Public => "public".to_owned(),
                Access::Authenticated => "authenticated".to_owned(),
                Access::Role(role) => format!("role:{}", role.as_str()),
                Access::UrlToken => "url_token".to_owned(),
                Access::TaskToken => "task_token".to_owned(),
                Access::TranscoderSignature => "transcoder_signature".to_owned(),
                Access::Diagnostics => "diagnostics".to_owned(),
            };
            serde_json::json!({
                "name": format!("{:?}", r.name),
                "method": r.method.as_str(),
                "path": r.path,
                "access": access,
            })
        })
        .collect()
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
    let now_s = platform.clock().now_ms() / 1000;
    match access {
        Access::Public | Access::UrlToken | Access::TaskToken | Access::TranscoderSignature => {
            Ok(None)
        }
        Access::Diagnostics if platform.config().diagnostics => Ok(None),
        Access::Diagnostics => Err(ApiError::NotFound(format!("no route for {path}"))),
        Access::Authenticated => {
            auth::principal_from_request(request, platform.config(), now_s).map(Some)
        }
        Access::Role(required) => {
            let mut principal = auth::principal_from_request(request, platform.config(), now_s)?;
            let stored = accounts::by_id(platform.sql(), &principal.user_id)
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

//! The route table: every route of the API in one place. An entry names the route, its
//! method and path pattern, who may call it and the handler it runs; the macro below turns
//! the entries into [`RouteName`], [`ROUTES`] (which the router matches in order and which
//! `GET /api/_diag/routes` serves, so `schema/openapi.yaml` and the authorization matrix test
//! follow it) and the dispatch to the handlers. Adding a route is adding one entry.
//!
//! An entry: doc lines (the route's summary), then
//! `Name: METHOD "/path/{param}", Access [, body Type] [, json STATUS Type]*
//! [, media STATUS "content/type"]* [, empty STATUS]* [, error STATUS]* => handler expression;`,
//! where the expression sees `platform`, `request` (owned), `params` (the `{param}` segments
//! in order) and `who()` (the caller, for routes whose access needs a session).
//!
//! `body` names the type the handler parses its JSON request body into, `json` a status and
//! the type the handler serialises for it, `media` a status with a non-JSON body, `empty` a
//! status without a body, `error` a status answered with the error body that the route's
//! clients should expect in particular (every answer not listed is the error body too). The
//! names are served with the table; with the `schema` feature (native builds only)
//! [`register_schemas`] generates the types' JSON Schemas, which `schema/openapi.yaml`
//! carries as its components.

use http::Method;

use crate::api::{self, routes, Request, Response};
use crate::error::ApiError;
use crate::model::role::{Principal, Role};
use crate::ports::Platform;

// The types the table names; only the schema generation refers to them.
#[cfg(feature = "schema")]
use crate::api::routes::{
    auth::{
        Credentials, CurrentUser, LogoutOptions, PasswordChange, RoleChange, SessionIssued,
        SignupAccepted, UpdatedUser, Verification,
    },
    catalogue::{ChannelPage, DeletedVideo, History, PreviewPage, VideoPage},
    channels::{ChannelView, IngestSettings, LiveList, NewChannel, StreamKeyVersion},
    health::{Health, VersionInfo},
    ingest::{IngestStored, PlaylistTaken},
    playback::{LivePlayback, VodPlayback},
    plugins::{
        CreatedPlugin, DeliveryLog, NewPlugin, OnePlugin, PluginList, PluginUpdate, Redelivery,
        RotatedSecret, TaskAnswer, TaskRecorded,
    },
    stats::Stats,
    transcoder::{CallbackAnswer, PartsCompletion, StoredUpload, UploadStarted},
};
#[cfg(feature = "schema")]
use crate::api::Acknowledged;
#[cfg(feature = "schema")]
use crate::ports::UploadedPart;
#[cfg(feature = "schema")]
use crate::services::catalogue::VideoDetail;
#[cfg(feature = "schema")]
use edgevideo_protocol::transcode::TranscodeCallback;

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
    /// What it does, from its doc lines in the table.
    pub summary: &'static str,
    /// The name of the type its JSON request body is parsed into (a component schema of
    /// `schema/openapi.yaml`), if it takes one.
    pub body: Option<&'static str>,
    /// Its documented answers: the successes, the health report's 503, and the errors a
    /// route lists in particular (every other answer is the error body, `{"error":{...}}`).
    pub replies: &'static [Reply],
}

/// A documented answer of a route: its status and what its body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body's media type; `None` for no body.
    pub content_type: Option<&'static str>,
    /// The name of the type a JSON body is serialised from (a component schema); `None`
    /// with a JSON content type for the error body (`{"error":{"code","message"}}`).
    pub schema: Option<&'static str>,
}

/// `Some("Type")` for a named type, `None` for none.
macro_rules! optional_name {
    () => {
        None
    };
    ($name:ident) => {
        Some(stringify!($name))
    };
}

macro_rules! route_table {
    (
        ($platform:ident, $request:ident, $params:ident, $who:ident)
        $(
            $(#[doc = $doc:literal])*
            $name:ident : $method:ident $path:literal, $access:ident $(($role:ident))?
                $(, body $body:ident)?
                $(, json $json_status:literal $json:ident)*
                $(, media $media_status:literal $media:literal)*
                $(, empty $empty_status:literal)*
                $(, error $error_status:literal)*
                => $handler:expr;
        )*
    ) => {
        /// Names of the routes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum RouteName {
            $(
                #[doc = concat!("`", stringify!($method), " ", $path, "`.")]
                $(#[doc = $doc])*
                $name,
            )*
        }

        /// Every route of the API, in the order the router tries them (the first match wins).
        pub const ROUTES: &[RouteSpec] = &[
            $(
                RouteSpec {
                    name: RouteName::$name,
                    method: Method::$method,
                    path: $path,
                    access: Access::$access $((Role::$role))?,
                    summary: concat!($($doc),*),
                    body: optional_name!($($body)?),
                    replies: &[
                        $(Reply {
                            status: $json_status,
                            content_type: Some("application/json"),
                            schema: Some(stringify!($json)),
                        },)*
                        $(Reply { status: $media_status, content_type: Some($media), schema: None },)*
                        $(Reply { status: $empty_status, content_type: None, schema: None },)*
                        $(Reply {
                            status: $error_status,
                            content_type: Some("application/json"),
                            schema: None,
                        },)*
                    ],
                },
            )*
        ];

        /// Adds the JSON Schema of every type the table names to `generator` (as a component
        /// schema) and returns each name as the table spells it with the name the schema got.
        #[cfg(feature = "schema")]
        pub fn register_schemas(
            generator: &mut schemars::SchemaGenerator,
        ) -> Vec<(&'static str, String)> {
            let mut names = Vec::new();
            $(
                $(
                    generator.subschema_for::<$body>();
                    names.push((stringify!($body), <$body as schemars::JsonSchema>::schema_name().into_owned()));
                )?
                $(
                    generator.subschema_for::<$json>();
                    names.push((stringify!($json), <$json as schemars::JsonSchema>::schema_name().into_owned()));
                )*
            )*
            names
        }

        /// Runs the handler of route `name` with its path parameters, after its access rule
        /// passed (`principal` is the caller for routes that need a session).
        pub(super) async fn run<P: Platform>(
            name: RouteName,
            $platform: &P,
            $request: Request,
            $params: &[String],
            principal: Option<Principal>,
        ) -> Result<Response, ApiError> {
            let $who = || {
                principal
                    .as_ref()
                    .ok_or_else(|| ApiError::Unauthorized("a session token is required".into()))
            };
            match name {
                $( RouteName::$name => $handler, )*
            }
        }
    };
}

route_table! {
    (platform, request, params, who)
    /// Version and a check of every binding.
    Health: GET "/api/health", Public, json 200 Health, json 503 Health => Ok(routes::health::get(platform).await);
    /// The version alone, touching no binding (the benchmarks' baseline).
    Version: GET "/api/version", Public, json 200 VersionInfo => Ok(routes::health::version());
    /// This route table, for the authorization matrix test.
    DiagRoutes: GET "/api/_diag/routes", Diagnostics => Ok(api::json(http::StatusCode::OK, &route_table()));
    /// Mails a verification link (or, for an address with an account, a notice); the answer
    /// is the same either way.
    Signup: POST "/api/auth/signup", Public, body Credentials, json 202 SignupAccepted, error 429, error 503 => routes::auth::signup(platform, &request).await;
    /// The mailed link's token and the signup's password: verifies the address, signs in.
    VerifyEmail: POST "/api/auth/verify", Public, body Verification, json 200 SessionIssued, error 401, error 429 => routes::auth::verify(platform, &request).await;
    Login: POST "/api/auth/login", Public, body Credentials, json 200 SessionIssued, error 401, error 403, error 429 => routes::auth::login(platform, &request).await;
    Logout: POST "/api/auth/logout", Public, body LogoutOptions, json 200 Acknowledged => routes::auth::logout(platform, &request).await;
    ChangePassword: POST "/api/auth/password", Authenticated, body PasswordChange, json 200 SessionIssued, error 401, error 429 => routes::auth::change_password(platform, who()?, &request).await;
    Me: GET "/api/me", Authenticated, json 200 CurrentUser => routes::auth::me(platform, who()?).await;
    SetUserRole: PUT "/api/users/{id}/role", Role(Admin), body RoleChange, json 200 UpdatedUser => routes::auth::set_role(platform, &params[0], &request).await;
    CreateChannel: POST "/api/channels", Role(Broadcaster), body NewChannel, json 201 ChannelView => routes::channels::create(platform, who()?, &request).await;
    GetChannel: GET "/api/channels/{id}", Public, json 200 ChannelView => routes::channels::get(platform, &params[0]).await;
    RotateStreamKey: POST "/api/channels/{id}/stream-key/rotate", Role(Broadcaster), json 200 StreamKeyVersion => {
        routes::channels::rotate_stream_key(platform, who()?, &params[0]).await
    };
    /// A signed ingest URL for the channel's owner: `ingest_url`, `expires_at` (Unix seconds),
    /// `ffmpeg_command` and, for each protocol the ingest gateway offers, `rtmp` and `rtmps`
    /// (`server`, `stream_key`, `url`) and `srt` (`server`, `stream_id`, `url`).
    IngestUrl: POST "/api/channels/{id}/ingest", Role(Broadcaster), json 200 IngestSettings => {
        routes::channels::ingest_url(platform, who()?, &params[0], &request).await
    };
    ChannelPlayback: POST "/api/channels/{id}/playback", Public, json 200 LivePlayback => {
        routes::playback::channel_url(platform, &params[0], &request).await
    };
    /// Answers 400 `websocket_required` to a request without `Upgrade: websocket`.
    ChannelSocket: GET "/api/channels/{id}/ws", Public, empty 101, error 400 => routes::channels::socket(platform, &params[0], &request).await;
    LiveChannels: GET "/api/live", Public, json 200 LiveList => routes::channels::live_channels(platform, &request).await;
    /// Answers 400 `websocket_required` to a request without `Upgrade: websocket`.
    LobbySocket: GET "/api/live/ws", Public, empty 101, error 400 => routes::channels::lobby_socket(&request);
    VideoPlayback: POST "/api/videos/{id}/playback", Public, json 200 VodPlayback => {
        routes::playback::video_url(platform, &params[0], &request).await
    };
    /// The catalogue, newest first, with filters and cursor paging.
    ListVideos: GET "/api/videos", Public, json 200 VideoPage => routes::catalogue::list_videos(platform, &request).await;
    /// Before `/api/videos/{id}`: the first matching entry wins.
    /// The newest published videos (cached).
    VideoPreview: GET "/api/videos/preview", Public, json 200 PreviewPage => routes::catalogue::preview(platform).await;
    /// A video with its merged metadata.
    GetVideo: GET "/api/videos/{id}", Public, json 200 VideoDetail => routes::catalogue::get_video(platform, &params[0], &request).await;
    /// The handler allows the video's owner and admins (stored role); 403 for others.
    /// The owner or an admin deletes a video and its media.
    DeleteVideo: DELETE "/api/videos/{id}", Authenticated, json 200 DeletedVideo => {
        who()?;
        routes::catalogue::delete_video(platform, &params[0], &request).await
    };
    /// The video's timeline.
    VideoHistory: GET "/api/videos/{id}/history", Public, json 200 History => routes::catalogue::history(platform, &params[0], &request).await;
    /// Channels with live status and viewer counts.
    ListChannels: GET "/api/channels", Public, json 200 ChannelPage => routes::catalogue::list_channels(platform, &request).await;
    /// A channel's videos.
    ChannelVideos: GET "/api/channels/{id}/videos", Public, json 200 VideoPage => {
        routes::catalogue::channel_videos(platform, &params[0], &request).await
    };
    /// Public headline figures; the handler adds the detailed part for admins (stored role).
    /// KPIs (the detailed part for admins).
    Stats: GET "/api/stats", Public, json 200 Stats => routes::stats::get(platform, &request).await;
    /// A segment, a part or a playlist pushed to a signed ingest URL (202: a chunk of a part
    /// being made, `size` the part's bytes so far).
    IngestPut: PUT "/ingest/{token}/{file}", UrlToken, json 200 PlaylistTaken, json 201 IngestStored, json 202 IngestStored => {
        routes::ingest::put(platform, &params[0], &params[1], request).await
    };
    IngestDelete: DELETE "/ingest/{token}/{file}", UrlToken, empty 204 => routes::ingest::delete(platform, &params[0]).await;
    PlayLive: GET "/play/{token}/live.m3u8", UrlToken, media 200 "application/vnd.apple.mpegurl" => routes::play::live_playlist(platform, &params[0], &request).await;
    PlayVod: GET "/play/{token}/index.m3u8", UrlToken, media 200 "application/vnd.apple.mpegurl" => routes::play::vod_playlist(platform, &params[0], &request).await;
    /// One rendition's live playlist (the variants of a multivariant `live.m3u8`).
    PlayLiveRendition: GET "/play/{token}/live/{file}", UrlToken, media 200 "application/vnd.apple.mpegurl" => {
        routes::play::live_rendition(platform, &params[0], &params[1], &request).await
    };
    /// One rendition's VOD playlist (the variants of a multivariant `index.m3u8`).
    PlayVodRendition: GET "/play/{token}/vod/{file}", UrlToken, media 200 "application/vnd.apple.mpegurl" => {
        routes::play::vod_rendition(platform, &params[0], &params[1], &request).await
    };
    PlayMp4: GET "/play/{token}/video.mp4", UrlToken, media 200 "video/mp4", media 206 "video/mp4" => routes::play::mp4(platform, &params[0], &request).await;
    PlaySegment: GET "/play/{token}/seg/{broadcast}/{file}", UrlToken, media 200 "video/mp2t", media 200 "video/mp4", media 206 "video/mp2t", media 206 "video/mp4" => {
        routes::play::segment(platform, &params[0], &params[1], &params[2], &request).await
    };
    CreatePlugin: POST "/api/plugins", Role(Developer), body NewPlugin, json 201 CreatedPlugin => routes::plugins::create(platform, who()?, &request).await;
    ListPlugins: GET "/api/plugins", Role(Developer), json 200 PluginList => routes::plugins::list(platform, who()?).await;
    TaskSuccess: POST "/api/plugins/tasks/{id}/success", TaskToken, body TaskAnswer, json 200 TaskRecorded => {
        routes::plugins::answer_task(platform, &params[0], true, &request).await
    };
    TaskFailure: POST "/api/plugins/tasks/{id}/failure", TaskToken, body TaskAnswer, json 200 TaskRecorded => {
        routes::plugins::answer_task(platform, &params[0], false, &request).await
    };
    GetPlugin: GET "/api/plugins/{id}", Role(Developer), json 200 OnePlugin => routes::plugins::get(platform, who()?, &params[0]).await;
    UpdatePlugin: PATCH "/api/plugins/{id}", Role(Developer), body PluginUpdate, json 200 OnePlugin => {
        routes::plugins::update(platform, who()?, &params[0], &request).await
    };
    DeletePlugin: DELETE "/api/plugins/{id}", Role(Developer), empty 204 => routes::plugins::delete(platform, who()?, &params[0]).await;
    /// Approves a plugin of scope `all`: it acts on every video from now on (admins only).
    ApprovePlugin: POST "/api/plugins/{id}/approve", Role(Admin), json 200 OnePlugin => {
        routes::plugins::approve(platform, who()?, &params[0]).await
    };
    /// Withdraws a plugin's approval: it acts on its owner's channels only again (admins only).
    RevokePlugin: POST "/api/plugins/{id}/revoke", Role(Admin), json 200 OnePlugin => {
        routes::plugins::revoke(platform, who()?, &params[0]).await
    };
    RotatePluginSecret: POST "/api/plugins/{id}/secret/rotate", Role(Developer), json 200 RotatedSecret => {
        routes::plugins::rotate_secret(platform, who()?, &params[0]).await
    };
    PluginDeliveries: GET "/api/plugins/{id}/deliveries", Role(Developer), json 200 DeliveryLog => {
        routes::plugins::deliveries(platform, who()?, &params[0]).await
    };
    Redeliver: POST "/api/plugins/{id}/deliveries/{delivery}/redeliver", Role(Developer), json 202 Redelivery => {
        routes::plugins::redeliver(platform, who()?, &params[0], &params[1]).await
    };
    TranscoderCallback: POST "/api/transcoder/callback", TranscoderSignature, body TranscodeCallback, json 200 CallbackAnswer => routes::transcoder::callback(platform, &request).await;
    Upload: PUT "/upload/{token}", UrlToken, json 201 StoredUpload => routes::transcoder::upload(platform, &params[0], request).await;
    UploadBegin: POST "/upload/{token}/parts", UrlToken, json 201 UploadStarted => routes::transcoder::begin_parts(platform, &params[0]).await;
    UploadPart: PUT "/upload/{token}/parts/{number}", UrlToken, json 200 UploadedPart => {
        routes::transcoder::put_part(platform, &params[0], &params[1], request).await
    };
    UploadComplete: POST "/upload/{token}/parts/complete", UrlToken, body PartsCompletion, json 201 StoredUpload => {
        routes::transcoder::complete_parts(platform, &params[0], &request).await
    };
    PlayPoster: GET "/play/{token}/poster.jpg", UrlToken, media 200 "image/jpeg" => routes::play::poster(platform, &params[0], &request).await;
    /// A channel's thumbnail: its live picture, else its latest recording's poster.
    PlayThumbnail: GET "/play/{token}/thumb.jpg", UrlToken, media 200 "image/jpeg" => routes::play::thumbnail(platform, &params[0], &request).await;
    /// The embeddable player of a channel (live) or a video, for an iframe on any site.
    Embed: GET "/embed/{id}", Public, media 200 "text/html; charset=utf-8" => routes::embed::page(&params[0]);
    DiagKvGet: GET "/api/_diag/kv/{key}", Diagnostics => routes::diag::kv_get(platform, &params[0]).await;
    DiagKvPut: PUT "/api/_diag/kv/{key}", Diagnostics => routes::diag::kv_put(platform, &params[0], &request).await;
    /// Increments a counter row in SQL.
    DiagCounterIncrement: POST "/api/_diag/counters/{name}", Diagnostics => {
        routes::diag::counter_increment(platform, &params[0]).await
    };
    DiagCounterGet: GET "/api/_diag/counters/{name}", Diagnostics => routes::diag::counter_get(platform, &params[0]).await;
    DiagBlobPut: PUT "/api/_diag/blobs/{key}", Diagnostics => routes::diag::blob_put(platform, &params[0], request).await;
    DiagBlobGet: GET "/api/_diag/blobs/{key}", Diagnostics => routes::diag::blob_get(platform, &params[0]).await;
    DiagRoomPing: POST "/api/_diag/rooms/{name}/ping", Diagnostics => routes::diag::room_ping(platform, &params[0]).await;
    /// Enqueues a probe job.
    DiagJobEnqueue: POST "/api/_diag/jobs/{id}", Diagnostics => routes::diag::job_enqueue(platform, &params[0]).await;
    /// Whether the consumer ran it.
    DiagJobStatus: GET "/api/_diag/jobs/{id}", Diagnostics => routes::diag::job_status(platform, &params[0]).await;
    /// A video's whole row and its events.
    DiagVideo: GET "/api/_diag/video/{id}", Diagnostics => routes::diag::video(platform, &params[0]).await;
    /// What the catalogue and blob store hold for a channel.
    DiagStored: GET "/api/_diag/stored/{channel}", Diagnostics => routes::diag::stored(platform, &params[0]).await;
    /// The views a channel or video has counted.
    DiagViews: GET "/api/_diag/views/{scope}", Diagnostics => routes::diag::views(platform, &params[0]).await;
    /// Port calls counted in this isolate since the last reset, by port and operation.
    DiagMetrics: GET "/api/_diag/metrics", Diagnostics => Ok(routes::diag::metrics());
    /// Sets this isolate's port-call counters to zero.
    DiagMetricsReset: DELETE "/api/_diag/metrics", Diagnostics => Ok(routes::diag::metrics_reset());
    /// The port conformance suites against the real bindings.
    DiagConformance: GET "/api/_diag/conformance", Diagnostics => Ok(routes::diag::conformance(platform).await);

}

/// The route table as JSON: `[{name, method, path, access, summary, body, replies}]`, with
/// `access` one of `public`, `authenticated`, `role:{role}`, `url_token`, `task_token`,
/// `transcoder_signature`, `diagnostics`; `body` the request body's schema name or null;
/// `replies` the documented answers as `[{status, content_type, schema}]` (`schema` null
/// with a JSON content type: the error body).
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
            let replies: Vec<serde_json::Value> = r
                .replies
                .iter()
                .map(|reply| {
                    serde_json::json!({
                        "status": reply.status,
                        "content_type": reply.content_type,
                        "schema": reply.schema,
                    })
                })
                .collect();
            serde_json::json!({
                "name": format!("{:?}", r.name),
                "method": r.method.as_str(),
                "path": r.path,
                "access": access,
                "summary": r.summary.trim(),
                "body": r.body,
                "replies": replies,
            })
        })
        .collect()
}

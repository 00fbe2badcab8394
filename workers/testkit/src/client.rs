//! Requests as the hosts make them (an [`http::Request`] with an absolute URI, handed to
//! [`edgevideo_core::handle`]), and the steps of the end-to-end scenarios built from them:
//! accounts, channels, a recording pushed as ffmpeg pushes it, the transcoder's signed
//! callback. Every step goes through the public routes.

use edgevideo_core::ports::{Entropy as _, Sql as _, SqlValue, Statement};
use edgevideo_core::webhooks;
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::exec::block_on;
use crate::platform::{TestPlatform, ADMIN_EMAIL, BROADCASTER_DOMAIN, ORIGIN};

/// The password of every account the scenarios create.
pub const PASSWORD: &str = "correct horse battery staple";

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error code of a `{"error":{"code"}}` body.
    pub fn error_code(&self) -> Option<String> {
        self.json()["error"]["code"].as_str().map(str::to_owned)
    }
}

/// A request to `path_or_url` (a path on [`ORIGIN`], or an absolute URL), with a bearer token
/// and a JSON body when given.
pub fn request(
    method: Method,
    path_or_url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Request<Vec<u8>> {
    raw_request(
        method,
        path_or_url,
        token,
        body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    )
}

/// A request with a raw body.
pub fn raw_request(
    method: Method,
    path_or_url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Request<Vec<u8>> {
    let uri = if path_or_url.starts_with("https://") || path_or_url.starts_with("http://") {
        path_or_url.to_owned()
    } else {
        format!("{ORIGIN}{path_or_url}")
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", ORIGIN.trim_start_matches("https://"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
        .body(body)
        .unwrap_or_else(|e| panic!("bad test request {path_or_url}: {e}"))
}

/// A response of [`edgevideo_core::handle`] as a [`Reply`].
pub fn reply(response: http::Response<Vec<u8>>) -> Reply {
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session token.
    pub token: String,
    /// The user's id.
    pub user_id: String,
    /// The user's email.
    pub email: String,
}

/// A registered plugin: its id, its endpoint and its signing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredPlugin {
    /// The plugin's id.
    pub id: String,
    /// Where its deliveries go (answered by [`crate::platform::ScriptedOutbound`]).
    pub url: String,
    /// Its `whsec_` signing secret.
    pub secret: String,
}

/// 188 bytes per MPEG-TS packet.
const TS_PACKET: usize = 188;

/// A body that passes the ingest's MPEG-TS check: `packets` packets with their sync byte.
pub fn ts_segment(packets: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; packets * TS_PACKET];
    for packet in bytes.chunks_mut(TS_PACKET) {
        packet[0] = 0x47;
    }
    bytes
}

/// The final playlist ffmpeg pushes for `files` of 2 s each: with `ENDLIST` when `ended`.
pub fn playlist(files: &[String], ended: bool) -> Vec<u8> {
    let mut text = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n",
    );
    for file in files {
        text.push_str("#EXTINF:2.000000,\n");
        text.push_str(file);
        text.push('\n');
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text.into_bytes()
}

impl TestPlatform {
    /// Sends a request through [`edgevideo_core::handle`].
    pub fn send(&self, request: Request<Vec<u8>>) -> Reply {
        reply(block_on(edgevideo_core::handle_buffered(self, request)))
    }

    /// An anonymous viewer's signed live playlist URL of `channel_id`
    /// (`POST /api/channels/{id}/playback`).
    ///
    /// # Panics
    /// When the answer has no URL.
    pub fn channel_playback_url(&self, channel_id: &str) -> String {
        let reply = self.call(
            Method::POST,
            &format!("/api/channels/{channel_id}/playback"),
            None,
            None,
        );
        reply.json()["url"]
            .as_str()
            .unwrap_or_else(|| panic!("no playback URL: {}", reply.text()))
            .to_owned()
    }

    /// Sends `method path_or_url` with a bearer token and a JSON body when given.
    pub fn call(
        &self,
        method: Method,
        path_or_url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.send(request(method, path_or_url, token, body))
    }

    /// `GET path_or_url` without credentials.
    pub fn get(&self, path_or_url: &str) -> Reply {
        self.call(Method::GET, path_or_url, None, None)
    }

    /// A fresh email address at `domain`.
    pub fn new_email(&self, domain: &str) -> String {
        let mut bytes = [0u8; 6];
        self.entropy.fill(&mut bytes);
        let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("u{name}@{domain}")
    }

    /// The token of the latest verification link mailed to `email` (the text after
    /// `/verify#` in the body, quoted-printable soft breaks undone), if any.
    pub fn mailed_link_token(&self, email: &str) -> Option<String> {
        let sent = self.mailer.sent.borrow();
        sent.iter().rev().filter(|m| m.to == email).find_map(|m| {
            let text = String::from_utf8_lossy(&m.data).replace("=\r\n", "");
            let (_, rest) = text.split_once("/verify#")?;
            let token: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .collect();
            Some(token)
        })
    }

    /// `POST /api/auth/verify {token, password}`.
    pub fn verify_email(&self, token: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/auth/verify",
            None,
            Some(&json!({ "token": token, "password": password })),
        )
    }

    /// Signs up `email` and opens the mailed link: a verified account, signed in.
    ///
    /// # Panics
    /// When the signup or the verification is refused, or no link was mailed.
    pub fn signup(&self, email: &str) -> Session {
        let reply = self.call(
            Method::POST,
            "/api/auth/signup",
            None,
            Some(&json!({ "email": email, "password": PASSWORD })),
        );
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "signup: {}",
            reply.text()
        );
        let token = self
            .mailed_link_token(email)
            .unwrap_or_else(|| panic!("no verification link mailed to {email}"));
        let reply = self.verify_email(&token, PASSWORD);
        assert_eq!(reply.status, StatusCode::OK, "verify: {}", reply.text());
        let body = reply.json();
        Session {
            token: body["token"].as_str().unwrap_or_default().to_owned(),
            user_id: body["user"]["id"].as_str().unwrap_or_default().to_owned(),
            email: email.to_owned(),
        }
    }

    /// The admin's session (signed up on first use).
    ///
    /// # Panics
    /// When the admin can neither sign up nor log in.
    pub fn admin(&self) -> Session {
        let login = self.call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(&json!({ "email": ADMIN_EMAIL, "password": PASSWORD })),
        );
        if login.status != StatusCode::OK {
            return self.signup(ADMIN_EMAIL);
        }
        let body = login.json();
        Session {
            token: body["token"].as_str().unwrap_or_default().to_owned(),
            user_id: body["user"]["id"].as_str().unwrap_or_default().to_owned(),
            email: ADMIN_EMAIL.to_owned(),
        }
    }

    /// A new user whom the admin made a developer.
    ///
    /// # Panics
    /// When a step is refused.
    pub fn developer(&self) -> Session {
        let user = self.signup(&self.new_email("dev.test"));
        let admin = self.admin();
        let reply = self.call(
            Method::PUT,
            &format!("/api/users/{}/role", user.user_id),
            Some(&admin.token),
            Some(&json!({ "role": "developer" })),
        );
        assert_eq!(reply.status, StatusCode::OK, "set role: {}", reply.text());
        user
    }

    /// A new broadcaster with a channel named `name`; returns the session and channel id.
    ///
    /// # Panics
    /// When a step is refused.
    pub fn broadcaster(&self, name: &str) -> (Session, String) {
        let user = self.signup(&self.new_email(BROADCASTER_DOMAIN));
        let reply = self.call(
            Method::POST,
            "/api/channels",
            Some(&user.token),
            Some(&json!({ "name": name })),
        );
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "channel: {}",
            reply.text()
        );
        let channel_id = reply.json()["id"].as_str().unwrap_or_default().to_owned();
        (user, channel_id)
    }

    /// A fresh signed ingest URL of the channel (its playlist URL).
    ///
    /// # Panics
    /// When it is refused.
    pub fn ingest_url(&self, owner: &Session, channel_id: &str) -> String {
        let reply = self.call(
            Method::POST,
            &format!("/api/channels/{channel_id}/ingest"),
            Some(&owner.token),
            None,
        );
        assert_eq!(reply.status, StatusCode::OK, "ingest url: {}", reply.text());
        reply.json()["ingest_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Pushes a segment named `file` to an ingest URL, as ffmpeg does.
    pub fn push_segment(&self, ingest_url: &str, file: &str) -> Reply {
        let base = ingest_url.rsplit_once('/').map_or(ingest_url, |(b, _)| b);
        self.send(raw_request(
            Method::PUT,
            &format!("{base}/{file}"),
            None,
            ts_segment(4),
        ))
    }

    /// Pushes the playlist of `files` to an ingest URL.
    pub fn push_playlist(&self, ingest_url: &str, files: &[String], ended: bool) -> Reply {
        self.send(raw_request(
            Method::PUT,
            ingest_url,
            None,
            playlist(files, ended),
        ))
    }

    /// Pushes a whole recording of `segments` segments (each segment, then the final
    /// playlist with `ENDLIST`), one second of clock per segment; returns the id of the
    /// video it became.
    ///
    /// # Panics
    /// When the ingest refuses something or no video was made.
    pub fn record_video(&self, owner: &Session, channel_id: &str, segments: usize) -> String {
        let url = self.ingest_url(owner, channel_id);
        let files: Vec<String> = (0..segments).map(|i| format!("index{i}.ts")).collect();
        for file in &files {
            let reply = self.push_segment(&url, file);
            assert_eq!(
                reply.status,
                StatusCode::CREATED,
                "segment: {}",
                reply.text()
            );
            self.advance_ms(1000);
        }
        let reply = self.push_playlist(&url, &files, true);
        assert_eq!(reply.status, StatusCode::OK, "playlist: {}", reply.text());
        assert_eq!(
            reply.json()["ended"],
            true,
            "the ENDLIST ends the broadcast"
        );
        let channel = self.get(&format!("/api/channels/{channel_id}")).json();
        channel["last_broadcast"]["video_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no video after the broadcast: {channel}"))
            .to_owned()
    }

    /// Posts a transcoder callback `body`, signed with the configured transcoder secret
    /// (or with `secret` when given).
    pub fn transcoder_callback(&self, body: &Value, secret: Option<&str>) -> Reply {
        let secret = secret
            .or(self.config.transcoder_secret.as_deref())
            .unwrap_or_default();
        let key = webhooks::WebhookKey::from_secret(secret)
            .or_else(|_| webhooks::WebhookKey::new(b"not a whsec_ secret"))
            .expect("a non-empty key");
        let bytes = body.to_string().into_bytes();
        let mut id = [0u8; 8];
        self.entropy.fill(&mut id);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut request = raw_request(Method::POST, "/api/transcoder/callback", None, bytes);
        for (name, value) in webhooks::headers(
            &[key],
            &format!("cb_{id}"),
            self.now_ms() / 1000,
            request.body(),
        ) {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                request.headers_mut().insert(name, value);
            }
        }
        self.send(request)
    }

    /// The `transcode.completed` callback of a 4 s 320x180 MP4 of `video_id`.
    pub fn transcode_completed(&self, video_id: &str) -> Reply {
        self.transcoder_callback(
            &json!({
                "type": "transcode.completed",
                "job_id": job_id(video_id),
                "video_id": video_id,
                "duration_seconds": 4.0,
                "width": 320,
                "height": 180,
                "size_bytes": 123_456,
                "poster": true,
            }),
            None,
        )
    }

    /// A broadcaster's recording taken to the end of its lifecycle: recorded, its transcode
    /// job run, the transcoder's completion posted, and every job that follows run. Returns
    /// the video id.
    ///
    /// # Panics
    /// When a step fails.
    pub fn published_video(&self, owner: &Session, channel_id: &str) -> String {
        let video_id = self.record_video(owner, channel_id, 2);
        self.settle();
        let reply = self.transcode_completed(&video_id);
        assert_eq!(reply.status, StatusCode::OK, "callback: {}", reply.text());
        self.settle();
        video_id
    }

    /// The video's whole stored row and events (`GET /api/_diag/video/{id}`).
    pub fn stored_video(&self, video_id: &str) -> Value {
        self.get(&format!("/api/_diag/video/{video_id}")).json()
    }

    /// The stored status of video `video_id` (empty when it has none).
    pub fn video_status(&self, video_id: &str) -> String {
        self.stored_video(video_id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Registers a plugin named `name` for `hook` (a hook or an event) as `developer`, at
    /// `https://plugins.test/{user}/{name}`, with scope `all`, approved (so it acts on every
    /// video, as the lifecycle tests need: developers own no channels). The approval is
    /// written to the catalogue directly, as `POST /api/plugins/{id}/approve` would, so that
    /// many registrations need no admin logins (the login limit would refuse them).
    ///
    /// # Panics
    /// When the registration or the approval is refused.
    pub fn register_plugin(&self, developer: &Session, name: &str, hook: &str) -> RegisteredPlugin {
        let plugin = self.register_scoped_plugin(developer, name, hook, "all");
        block_on(self.sql.execute(&Statement::new(
            "UPDATE plugins SET approved_at = 1, approved_by = 'test' WHERE id = ?1",
            vec![SqlValue::from(plugin.id.as_str())],
        )))
        .unwrap_or_else(|e| panic!("approve: {e}"));
        plugin
    }

    /// Registers a plugin as [`Self::register_plugin`] does, with scope `scope` (`own` or
    /// `all`) and no approval.
    ///
    /// # Panics
    /// When the registration is refused.
    pub fn register_scoped_plugin(
        &self,
        owner: &Session,
        name: &str,
        hook: &str,
        scope: &str,
    ) -> RegisteredPlugin {
        let url = format!("https://plugins.test/{}/{name}", owner.user_id);
        let reply = self.call(
            Method::POST,
            "/api/plugins",
            Some(&owner.token),
            Some(&json!({ "name": name, "hook": hook, "url": url, "scope": scope })),
        );
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "plugin: {}",
            reply.text()
        );
        let body = reply.json();
        RegisteredPlugin {
            id: body["plugin"]["id"].as_str().unwrap_or_default().to_owned(),
            url,
            secret: body["secret"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// The events delivered to `url` so far (the JSON bodies sent), oldest first.
    pub fn delivered_to(&self, url: &str) -> Vec<Value> {
        self.outbound
            .sent_to(url)
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// The tasks delivered to `url` so far (`data.task` of each lifecycle delivery).
    pub fn tasks_of(&self, url: &str) -> Vec<Value> {
        self.delivered_to(url)
            .into_iter()
            .filter_map(|event| event["data"].get("task").cloned())
            .collect()
    }

    /// The request answering `task` with success and `result`, as a plugin sends it.
    pub fn success_request(task: &Value, result: &Value) -> Request<Vec<u8>> {
        request(
            Method::POST,
            task["success_url"].as_str().unwrap_or_default(),
            None,
            Some(&json!({ "token": task["token"], "result": result })),
        )
    }

    /// Answers `task` with success and `result`.
    pub fn answer_task(&self, task: &Value, result: &Value) -> Reply {
        self.send(Self::success_request(task, result))
    }

    /// Answers `task` with a failure.
    pub fn fail_task(&self, task: &Value, error: &str) -> Reply {
        self.call(
            Method::POST,
            task["failure_url"].as_str().unwrap_or_default(),
            None,
            Some(&json!({ "token": task["token"], "error": error })),
        )
    }
}

/// The id of the transcode job the worker sends for `video_id` (`tr_` and the video's
/// random part), as callbacks carry it.
pub fn job_id(video_id: &str) -> String {
    format!("tr_{}", video_id.trim_start_matches("vid_"))
}

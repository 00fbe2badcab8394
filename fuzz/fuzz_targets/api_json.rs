//! JSON request bodies through the core router (`edgevideo_core::handle`) over the in-memory
//! platform (`edgevideo_core::memory::MemoryPlatform`). The first byte picks a route that
//! takes a JSON body, the rest is the body. Transcoder callbacks are signed here with the
//! configured secret, so the fuzzer reaches their body parser. Properties: no panic, and
//! every error is `{"error":{"code","message"}}` with a 4xx/5xx status.
//!
//! The in-memory platform has no SQL engine, so the handlers stop at their first query
//! (an error response, which is checked like any other); what runs before it (routing,
//! access checks, JSON parsing and validation) is what this target covers.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use edgevideo_core::api::auth::session;
use edgevideo_core::model::role::Role;
use edgevideo_core::config::Config;
use edgevideo_core::memory::MemoryPlatform;
use edgevideo_core::webhooks;
use http::{Method, Request};
use libfuzzer_sys::fuzz_target;

const NOW_S: u64 = 1_800_000_000;
const TRANSCODER_KEY: &[u8] = b"fuzz-transcoder-key-0123456789ab";

const ROUTES: &[(Method, &str, bool)] = &[
    // (method, path, signed in)
    (Method::POST, "/api/auth/signup", false),
    (Method::POST, "/api/auth/login", false),
    (Method::PUT, "/api/_diag/kv/fuzz", false),
    (
        Method::POST,
        "/api/plugins/tasks/tsk_0123456789abcdef/success",
        false,
    ),
    (
        Method::POST,
        "/api/plugins/tasks/tsk_0123456789abcdef/failure",
        false,
    ),
    (Method::POST, "/api/transcoder/callback", false),
    (Method::POST, "/api/channels", true),
    (Method::POST, "/api/plugins", true),
    (Method::PUT, "/api/users/usr_0123456789abcdef/role", true),
    (
        Method::POST,
        "/api/channels/ch_0123456789abcdef/playback",
        false,
    ),
    (
        Method::POST,
        "/api/videos/vid_0123456789abcdef/playback",
        true,
    ),
    (Method::DELETE, "/api/videos/vid_0123456789abcdef", true),
];

fn platform() -> MemoryPlatform {
    let secret = format!("whsec_{}", STANDARD.encode(TRANSCODER_KEY));
    let config = Config::from_lookup(|name| match name {
        "ENVIRONMENT" => Some("development".into()),
        "SESSION_SECRET" | "URL_SIGNING_SECRET" => Some("dev-only-fuzz".into()),
        "DIAGNOSTICS" => Some("on".into()),
        // Keep signup cheap: the hash is not what is fuzzed here.
        "PASSWORD_ITERATIONS" => Some("1".into()),
        "TRANSCODER_SECRET" => Some(secret.clone()),
        _ => None,
    })
    .expect("valid fuzz config");
    let p = MemoryPlatform::new(config);
    p.clock.now_ms.set(NOW_S * 1000);
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, path, signed_in) = &ROUTES[usize::from(pick) % ROUTES.len()];
    let p = platform();
    let mut request = Request::builder()
        .method(method.clone())
        .uri(*path)
        .header("host", "edge.example")
        .header("content-type", "application/json");
    if *signed_in {
        let claims = session::Claims {
            sub: "usr_0123456789abcdef".into(),
            email: "fuzz@example.com".into(),
            role: Role::Admin,
            iat: NOW_S,
            exp: NOW_S + 3600,
            iss: p.config.token_issuer.clone(),
            sid: "ses_0123456789abcdef".into(),
            iat_ms: NOW_S * 1000,
        };
        let token = session::sign(&claims, p.config.session_secret.as_bytes());
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if *path == "/api/transcoder/callback" {
        let key = webhooks::WebhookKey::new(TRANSCODER_KEY).expect("a non-empty key");
        for (name, value) in webhooks::headers(&[key], "msg_fuzz", NOW_S, body) {
            request = request.header(name, value);
        }
    }
    let request = request.body(body.to_vec()).expect("valid request");
    let response = pollster::block_on(edgevideo_core::handle(&p, request));
    let status = response.status().as_u16();
    if status >= 400 {
        let error: serde_json::Value =
            serde_json::from_slice(response.body()).expect("error bodies are JSON");
        assert!(
            error["error"]["code"].is_string() && error["error"]["message"].is_string(),
            "{status}: {error}"
        );
    }
});

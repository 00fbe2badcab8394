//! Whole requests through the core router (`edgevideo_core::handle`) over the in-memory
//! platform: any method, any path (the fuzzer starts from the route table's paths in
//! `seeds/router/`), a session or none, a `Range`, a cookie, an `Origin` and a content type
//! chosen by a flags byte, and any body. Properties: no panic, and every error answer to a
//! request that gets a body is `{"error":{"code","message"}}` (the health check's and the
//! diagnostics' reports aside).
//!
//! Input: `[method, flags, path bytes..., 0, body...]`.
#![no_main]

use edgevideo_core::api::auth::session;
use edgevideo_core::config::Config;
use edgevideo_core::memory::MemoryPlatform;
use edgevideo_core::model::role::Role;
use http::{Method, Request};
use libfuzzer_sys::fuzz_target;

const NOW_S: u64 = 1_800_000_000;

const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::HEAD,
];

fn platform() -> MemoryPlatform {
    let config = Config::from_lookup(|name| match name {
        "ENVIRONMENT" => Some("development".into()),
        "SESSION_SECRET" | "URL_SIGNING_SECRET" => Some("dev-only-fuzz".into()),
        "DIAGNOSTICS" => Some("on".into()),
        "PASSWORD_ITERATIONS" => Some("1".into()),
        _ => None,
    })
    .expect("valid fuzz config");
    let p = MemoryPlatform::new(config);
    p.clock.now_ms.set(NOW_S * 1000);
    p
}

fuzz_target!(|data: &[u8]| {
    let [method, flags, rest @ ..] = data else {
        return;
    };
    let (path, body) = match rest.iter().position(|&b| b == 0) {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let method = METHODS[usize::from(*method) % METHODS.len()].clone();
    let p = platform();
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", "edge.example");
    if flags & 1 != 0 {
        let claims = session::Claims {
            sub: "usr_0123456789abcdef".into(),
            email: "fuzz@example.com".into(),
            role: if flags & 2 != 0 { Role::Admin } else { Role::Viewer },
            iat: NOW_S,
            exp: NOW_S + 3600,
            iss: p.config.token_issuer.clone(),
            sid: "ses_0123456789abcdef".into(),
            iat_ms: NOW_S * 1000,
        };
        let token = session::sign(&claims, p.config.session_secret.as_bytes());
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if flags & 4 != 0 {
        request = request.header("content-type", "application/json");
    }
    if flags & 8 != 0 {
        request = request.header("range", "bytes=0-");
    }
    if flags & 16 != 0 {
        request = request.header("cookie", "ev_viewer=vw_0123456789abcdef.x; ev_session=junk");
    }
    if flags & 32 != 0 {
        request = request.header("origin", "https://elsewhere.example");
    }
    let Ok(request) = request.body(body.to_vec()) else {
        // Not a URI `http` accepts: no host would hand it to the core.
        return;
    };
    let uri_path = request.uri().path().to_owned();
    let response = pollster::block_on(edgevideo_core::handle(&p, request));
    let status = response.status().as_u16();
    assert!((100..600).contains(&status));
    if status >= 400 && method != Method::HEAD {
        let error: serde_json::Value = serde_json::from_slice(response.body())
            .unwrap_or_else(|e| panic!("{status}: error body is not JSON: {e}"));
        // The health check and the diagnostics self-test answer a failing check with their
        // report, by design; every other failure is the error shape.
        let report = uri_path.starts_with("/api/health") || uri_path.starts_with("/api/_diag/");
        assert!(
            (error["error"]["code"].is_string() && error["error"]["message"].is_string())
                || (report && error.get("error").is_none()),
            "{status}: {error}"
        );
    }
});

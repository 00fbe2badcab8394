//! `POST /api/transcoder/callback` up to its first query, over the in-memory platform: the
//! callback must be signed with `TRANSCODER_SECRET` (as the transcoder signs it, with
//! `edgevideo_protocol`) and be a `TranscodeCallback`; anything else is refused before it
//! touches the store.

use edgevideo_core::config::Config;
use edgevideo_core::handle;
use edgevideo_core::memory::MemoryPlatform;
use edgevideo_protocol::transcode::{FailureCode, TranscodeCallback, TranscodeJob};
use edgevideo_protocol::webhooks::{self, WebhookKey};
use http::{Method, Request, StatusCode};
use serde_json::Value;

const KEY: &[u8] = b"test-transcoder-key-0123456789ab";
const NOW_S: u64 = 1_800_000_000;

fn platform() -> MemoryPlatform {
    let config = Config::from_lookup(|name| match name {
        "ENVIRONMENT" => Some("development".into()),
        "SESSION_SECRET" | "URL_SIGNING_SECRET" => Some("dev-only-test".into()),
        "TRANSCODER_SECRET" => Some(webhooks::encode_secret(KEY)),
        _ => None,
    })
    .expect("valid test config");
    let p = MemoryPlatform::new(config);
    p.clock.now_ms.set(NOW_S * 1000);
    p
}

/// A failed-job callback, as the transcoder sends it.
fn failed_callback() -> Vec<u8> {
    let job = TranscodeJob {
        job_id: "tr_0123456789abcdef".into(),
        video_id: "vid_0123456789abcdef".into(),
        inputs: vec!["http://127.0.0.1:1/seg0.ts".into()],
        output_key: None,
        output_url: Some("http://127.0.0.1:1/upload/t".into()),
        callback_url: "http://127.0.0.1:1/api/transcoder/callback".into(),
        poster_key: None,
        poster_url: None,
        upload_part_bytes: None,
    };
    let callback = TranscodeCallback::failed(&job, FailureCode::InputNotFound, "gone".into());
    serde_json::to_vec(&callback).expect("JSON")
}

/// Posts `body` signed with `key` at `signed_at` (or unsigned); answers the status and the
/// error code, if any.
fn post(body: &[u8], key: Option<&[u8]>, signed_at: u64) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/api/transcoder/callback")
        .header("content-type", "application/json");
    if let Some(key) = key {
        let key = WebhookKey::new(key).expect("a non-empty key");
        for (name, value) in webhooks::headers(&[key], "transcode_tr_1", signed_at, body) {
            request = request.header(name, value);
        }
    }
    let request = request.body(body.to_vec()).expect("valid request");
    let response = pollster::block_on(handle(&platform(), request));
    let body: Value = serde_json::from_slice(response.body()).unwrap_or_default();
    (response.status(), body["error"]["code"].clone())
}

#[test]
fn unsigned_wrongly_signed_or_stale_callbacks_are_forbidden() {
    let body = failed_callback();
    for (key, signed_at) in [
        (None, NOW_S),
        (Some(&b"another-key"[..]), NOW_S),
        (Some(KEY), NOW_S - 301),
        (Some(KEY), NOW_S + 301),
    ] {
        let (status, _) = post(&body, key, signed_at);
        assert_eq!(status, StatusCode::FORBIDDEN, "{key:?} at {signed_at}");
    }
}

#[test]
fn signed_callbacks_must_be_transcode_callbacks() {
    for body in [
        &br#"{"type":"transcode.retried","job_id":"j","video_id":"v"}"#[..],
        br#"{"type":"transcode.failed","job_id":"j","video_id":"v","error":{"code":"x","message":"m"}}"#,
        br#"{"type":"transcode.failed","job_id":"j","video_id":"v","extra":1}"#,
        br#"{"type":"transcode.completed","job_id":"j","video_id":"v","width":-1}"#,
    ] {
        let (status, code) = post(body, Some(KEY), NOW_S);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
        assert_eq!(code, "invalid_json");
    }
}

#[test]
fn a_signed_transcode_callback_passes_to_the_store() {
    // The in-memory platform has no SQL engine: a callback that passed the signature and
    // parsing fails at its first query, with a store error (not a 400 or a 403).
    let (status, _) = post(&failed_callback(), Some(KEY), NOW_S + 299);
    assert!(status.is_server_error(), "{status}");
}

//! Router behaviour over the in-memory platform: errors are JSON with the right status,
//! diagnostics are hidden unless enabled, and the memory adapters pass the conformance suites.

use edgevideo_core::config::Config;
use edgevideo_core::handle;
use edgevideo_core::memory::MemoryPlatform;
use edgevideo_core::model::job::{self, Job};
use edgevideo_core::ports::conformance;
use edgevideo_core::ports::NoEdgeCache;
use edgevideo_core::queue;
use http::{Method, Request, StatusCode};
use serde_json::Value;

fn platform(diagnostics: bool) -> MemoryPlatform {
    let config = Config::from_lookup(|name| match name {
        "ENVIRONMENT" => Some("development".into()),
        "SESSION_SECRET" | "URL_SIGNING_SECRET" => Some("dev-only-test".into()),
        "DIAGNOSTICS" => diagnostics.then(|| "on".into()),
        _ => None,
    })
    .expect("valid test config");
    MemoryPlatform::new(config)
}

fn request(method: Method, path: &str, body: &[u8]) -> Request<Vec<u8>> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(body.to_vec())
        .expect("valid request")
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("JSON body")
}

#[test]
fn unknown_route_is_a_json_404() {
    let p = platform(true);
    let response = pollster::block_on(handle(&p, request(Method::GET, "/nope", b"")));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(response.body())["error"]["code"], "not_found");
}

#[test]
fn wrong_method_is_405_with_allow() {
    let p = platform(true);
    let response = pollster::block_on(handle(&p, request(Method::POST, "/api/health", b"")));
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(json(response.body())["error"]["code"], "method_not_allowed");
}

#[test]
fn malformed_json_is_400_with_the_parser_message() {
    let p = platform(true);
    let response = pollster::block_on(handle(
        &p,
        request(Method::PUT, "/api/_diag/kv/a", b"{\"value\":"),
    ));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json(response.body());
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(body["error"]["message"].as_str().unwrap().contains("EOF"));
}

#[test]
fn diagnostics_are_hidden_unless_enabled() {
    let p = platform(false);
    let response = pollster::block_on(handle(&p, request(Method::GET, "/api/_diag/kv/a", b"")));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn kv_round_trips_through_the_router() {
    let p = platform(true);
    let put = pollster::block_on(handle(
        &p,
        request(Method::PUT, "/api/_diag/kv/k1", br#"{"value":"v1"}"#),
    ));
    assert_eq!(put.status(), StatusCode::OK);
    let get = pollster::block_on(handle(&p, request(Method::GET, "/api/_diag/kv/k1", b"")));
    assert_eq!(json(get.body())["value"], "v1");
    let bad = pollster::block_on(handle(&p, request(Method::GET, "/api/_diag/kv/a%2Fb", b"")));
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn health_reports_the_failing_binding() {
    let p = platform(false);
    let response = pollster::block_on(handle(&p, request(Method::GET, "/api/health", b"")));
    // The in-memory platform has no SQL engine: health must say so rather than claim "ok".
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(response.body());
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["kv"]["ok"], true);
    assert_eq!(body["checks"]["live"]["ok"], true);
    assert_eq!(body["checks"]["sql"]["ok"], false);
}

#[test]
fn rooms_keep_state_across_calls() {
    let p = platform(true);
    for expected in 1..=3 {
        let response = pollster::block_on(handle(
            &p,
            request(Method::POST, "/api/_diag/rooms/r/ping", b""),
        ));
        assert_eq!(json(response.body())["pings"], expected);
    }
}

#[test]
fn probe_jobs_are_enqueued_and_run() {
    let p = platform(true);
    let response = pollster::block_on(handle(&p, request(Method::POST, "/api/_diag/jobs/j1", b"")));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job = p.jobs.enqueued.borrow()[0].clone();
    assert_eq!(job, Job::Probe { id: "j1".into() });
    let body = serde_json::to_value(&job).unwrap();
    pollster::block_on(queue::run(&p, job::decode(body).unwrap())).unwrap();
    let status = pollster::block_on(handle(&p, request(Method::GET, "/api/_diag/jobs/j1", b"")));
    assert_eq!(json(status.body())["handled"], true);
    assert!(job::decode(serde_json::json!({"kind": "nope"})).is_err());
}

#[test]
fn memory_adapters_pass_the_conformance_suites() {
    let p = platform(true);
    let kv = pollster::block_on(conformance::kv(&p.kv, "t"));
    assert_eq!(kv.failure, None);
    assert!(kv.passed >= 5);
    let blobs = pollster::block_on(conformance::blobs(&p.blobs, "t"));
    assert_eq!(blobs.failure, None);
    assert!(blobs.passed >= 10);
    let cache = pollster::block_on(conformance::edge_cache(&p.edge_cache, "t", 1_000));
    assert_eq!(cache.failure, None);
    assert_eq!(cache.passed, 4);
    let none = pollster::block_on(conformance::edge_cache(&NoEdgeCache, "t", 1_000));
    assert_eq!((none.failure, none.passed), (None, 2));
}

//! Limits that keep the catalogue bounded: an account has at most `MAX_CHANNELS_PER_USER`
//! channels and a developer at most `MAX_PLUGINS_PER_USER` plugins (deleted ones do not
//! count), past which the API answers 422 `quota_exceeded` and stores nothing; finished
//! viewer sessions are swept; signups per network address are limited.

use edgevideo_testkit::TestPlatform;
use http::{Method, StatusCode};
use serde_json::json;

#[test]
fn channels_and_plugins_stop_at_the_quota() {
    let p = TestPlatform::with_vars(&[
        ("MAX_CHANNELS_PER_USER", "2"),
        ("MAX_PLUGINS_PER_USER", "1"),
    ])
    .unwrap();
    let (owner, _) = p.broadcaster("First");
    let create = |name: &str| {
        p.call(
            Method::POST,
            "/api/channels",
            Some(&owner.token),
            Some(&json!({ "name": name })),
        )
    };
    assert_eq!(create("Second").status, StatusCode::CREATED);
    let third = create("Third");
    assert_eq!(
        third.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        third.text()
    );
    assert_eq!(third.error_code().as_deref(), Some("quota_exceeded"));
    // The quota is per account: another broadcaster creates theirs.
    p.broadcaster("Someone else's");

    let dev = p.developer();
    let plugin = p.register_plugin(&dev, "first", "video.ready");
    let register = |name: &str| {
        p.call(
            Method::POST,
            "/api/plugins",
            Some(&dev.token),
            Some(&json!({ "name": name, "hook": "video.ready", "url": "https://plugins.test/x" })),
        )
    };
    let second = register("second");
    assert_eq!(
        second.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        second.text()
    );
    assert_eq!(second.error_code().as_deref(), Some("quota_exceeded"));
    let deleted = p.call(
        Method::DELETE,
        &format!("/api/plugins/{}", plugin.id),
        Some(&dev.token),
        None,
    );
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        register("second").status,
        StatusCode::CREATED,
        "deleted ones do not count"
    );
}

#[test]
fn finished_viewer_sessions_are_swept() {
    use edgevideo_core::model::job::Job;
    use edgevideo_core::ports::{Sql as _, Statement};
    use edgevideo_core::queue;
    use edgevideo_testkit::exec::block_on;

    let p = TestPlatform::new();
    let (_, channel) = p.broadcaster("Swept");
    let sessions = || {
        let rows = block_on(p.sql.query(&Statement::new(
            "SELECT COUNT(*) AS n FROM view_sessions",
            vec![],
        )))
        .unwrap();
        rows[0]["n"].as_i64().unwrap()
    };
    for _ in 0..3 {
        let reply = p.call(
            Method::POST,
            &format!("/api/channels/{channel}/playback"),
            None,
            None,
        );
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(sessions(), 3);
    block_on(queue::run(&p, Job::SweepViewSessions)).unwrap();
    assert_eq!(sessions(), 3, "sessions still open stay");
    p.advance_ms(31 * 60 * 1000);
    let reply = p.call(
        Method::POST,
        &format!("/api/channels/{channel}/playback"),
        None,
        None,
    );
    assert_eq!(reply.status, StatusCode::OK);
    block_on(queue::run(&p, Job::SweepViewSessions)).unwrap();
    assert_eq!(sessions(), 1, "finished ones go, the new one stays");
}

#[test]
fn signups_per_address_are_limited() {
    let p = TestPlatform::with_vars(&[("SIGNUP_LIMIT_PER_IP", "2")]).unwrap();
    let signup = |email: &str| {
        p.call(
            Method::POST,
            "/api/auth/signup",
            None,
            Some(&json!({ "email": email, "password": "correct horse battery staple" })),
        )
    };
    assert_eq!(signup("a@example.com").status, StatusCode::CREATED);
    assert_eq!(signup("b@example.com").status, StatusCode::CREATED);
    let third = signup("c@example.com");
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        third.text()
    );
    assert_eq!(third.error_code().as_deref(), Some("rate_limited"));
    // Refused before the email is looked at: a taken one gets the same 429, not a 409.
    assert_eq!(
        signup("a@example.com").status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

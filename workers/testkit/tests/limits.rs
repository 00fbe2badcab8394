//! Limits that keep the catalogue bounded: an account has at most `MAX_CHANNELS_PER_USER`
//! channels and a developer at most `MAX_PLUGINS_PER_USER` plugins (deleted ones do not
//! count), past which the API answers 422 `quota_exceeded` and stores nothing; finished
//! viewer sessions are swept; signups per network address are limited; concurrent wrong
//! logins get no more password checks than the per-email limit.

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
    // The joins queued their views; the consumer opens the sessions.
    p.settle();
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
    p.settle();
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

#[test]
fn concurrent_wrong_logins_get_no_more_password_checks_than_the_limit() {
    use edgevideo_testkit::client::request;
    use edgevideo_testkit::exec::join_all;

    let p = TestPlatform::with_vars(&[("LOGIN_LIMIT_PER_EMAIL", "5")]).unwrap();
    let email = p.new_email("example.com");
    p.signup(&email);
    let wrong = json!({ "email": email, "password": "wrong password!" });
    // Twenty at once, interleaved at every SQL round trip: a counter read then written
    // would let all of them read the same count.
    let statuses: Vec<StatusCode> = join_all(
        (0..20)
            .map(|_| {
                edgevideo_core::handle(
                    &p,
                    request(Method::POST, "/api/auth/login", None, Some(&wrong)),
                )
            })
            .collect(),
    )
    .into_iter()
    .map(|r| r.status())
    .collect();
    // A 401 is a password check; a 429 was refused before one.
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, limited), (5, 15), "{statuses:?}");
    // The window is spent for the right password too; a new window opens again.
    let right = json!({ "email": email, "password": edgevideo_testkit::client::PASSWORD });
    let login = || {
        p.call(Method::POST, "/api/auth/login", None, Some(&right))
            .status
    };
    assert_eq!(login(), StatusCode::TOO_MANY_REQUESTS);
    p.advance_ms(edgevideo_core::config::LOGIN_WINDOW_SECONDS * 1000);
    assert_eq!(login(), StatusCode::OK);
}

#[test]
fn rate_limit_counters_count_per_window_and_ended_windows_are_swept() {
    use edgevideo_core::ports::Sql as _;
    use edgevideo_core::store::ratelimits;
    use edgevideo_testkit::exec::block_on;

    let p = TestPlatform::new();
    let count = |scope: &str, window_no: i64, expires_at: i64| {
        let rows = block_on(p.sql.query(&ratelimits::hit(scope, window_no, expires_at))).unwrap();
        rows[0]["count"].as_u64().unwrap()
    };
    assert_eq!(count("a", 1, 100), 1);
    assert_eq!(count("a", 1, 100), 2);
    assert_eq!(count("b", 1, 100), 1);
    assert_eq!(count("a", 2, 200), 1, "a new window starts again");
    let rows = || {
        block_on(p.sql.query(&edgevideo_core::ports::Statement::new(
            "SELECT scope FROM rate_limits ORDER BY scope",
            vec![],
        )))
        .unwrap()
        .iter()
        .map(|r| r["scope"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
    };
    block_on(p.sql.execute(&ratelimits::sweep(150, 500))).unwrap();
    assert_eq!(rows(), vec!["a"], "b's window ended at 100");
    block_on(p.sql.execute(&ratelimits::sweep(250, 500))).unwrap();
    assert!(rows().is_empty());
}

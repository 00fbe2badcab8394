//! Limits that keep the catalogue bounded: an account has at most `MAX_CHANNELS_PER_USER`
//! channels and a developer at most `MAX_PLUGINS_PER_USER` plugins (deleted ones do not
//! count), past which the API answers 422 `quota_exceeded` and stores nothing; finished
//! viewer sessions are swept; a broadcast past `MAX_BROADCAST_SEGMENTS` (or
//! `MAX_BROADCAST_BYTES`) is refused more and keeps what it stored; signups and logins per network address are limited; failed
//! logins on an account delay its next attempt (doubling, capped) without locking it out,
//! and concurrent wrong logins get no more password checks than the free failures.

use edgevideo_core::ports::Blobs as _;
use edgevideo_testkit::exec::block_on;
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
    assert_eq!(signup("a@example.com").status, StatusCode::ACCEPTED);
    assert_eq!(signup("b@example.com").status, StatusCode::ACCEPTED);
    let third = signup("c@example.com");
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        third.text()
    );
    assert_eq!(third.error_code().as_deref(), Some("rate_limited"));
    // Refused before the email is looked at: a taken one gets the same 429.
    assert_eq!(
        signup("a@example.com").status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A login of `email` with `password`.
fn login(p: &TestPlatform, email: &str, password: &str) -> edgevideo_testkit::client::Reply {
    p.call(
        Method::POST,
        "/api/auth/login",
        None,
        Some(&json!({ "email": email, "password": password })),
    )
}

/// The `Retry-After` of a reply, in seconds.
fn retry_after(reply: &edgevideo_testkit::client::Reply) -> Option<u64> {
    reply
        .headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

const WRONG: &str = "wrong password!";

#[test]
fn concurrent_wrong_logins_get_no_more_password_checks_than_the_free_failures() {
    use edgevideo_testkit::client::request;
    use edgevideo_testkit::exec::join_all;

    let p = TestPlatform::with_vars(&[("LOGIN_LIMIT_PER_EMAIL", "5")]).unwrap();
    let email = p.new_email("example.com");
    p.signup(&email);
    let wrong = json!({ "email": email, "password": WRONG });
    // Twenty at once, interleaved at every SQL round trip: a state read then written
    // would let all of them pass.
    let replies: Vec<_> = join_all(
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
    .map(edgevideo_testkit::client::reply)
    .collect();
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    // A 401 is a password check; a 429 was refused before one.
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!((checked, limited.len()), (5, 15), "{statuses:?}");
    for reply in &limited {
        assert_eq!(reply.error_code().as_deref(), Some("rate_limited"));
        assert_eq!(retry_after(reply), Some(1), "the fifth failure earned 1 s");
    }
    // The right password waits too, without being checked; once the delay passed it works.
    let early = login(&p, &email, edgevideo_testkit::client::PASSWORD);
    assert_eq!(early.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&early), Some(1));
    p.advance_ms(1000);
    assert_eq!(
        login(&p, &email, edgevideo_testkit::client::PASSWORD).status,
        StatusCode::OK
    );
}

#[test]
fn wrong_passwords_delay_the_account_but_never_lock_its_owner_out() {
    let p = TestPlatform::with_vars(&[
        ("LOGIN_LIMIT_PER_EMAIL", "3"),
        ("LOGIN_LIMIT_PER_IP", "1000"),
    ])
    .unwrap();
    let email = p.new_email("example.com");
    p.signup(&email);
    for _ in 0..3 {
        assert_eq!(login(&p, &email, WRONG).status, StatusCode::UNAUTHORIZED);
    }
    // The attacker keeps guessing, each time as soon as the account lets them: every
    // failure doubles the delay, up to five minutes.
    let mut delays = Vec::new();
    for _ in 0..12 {
        let refused = login(&p, &email, WRONG);
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.text()
        );
        assert_eq!(refused.error_code().as_deref(), Some("rate_limited"));
        let wait = retry_after(&refused).unwrap();
        // Attempts while the delay runs are refused and do not lengthen it.
        p.advance_ms(wait * 1000 - 500);
        assert_eq!(retry_after(&login(&p, &email, WRONG)), Some(1));
        p.advance_ms(500);
        assert_eq!(login(&p, &email, WRONG).status, StatusCode::UNAUTHORIZED);
        delays.push(wait);
    }
    assert_eq!(
        delays,
        vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    );
    // The owner, after the delay, gets in with one attempt.
    let wait = retry_after(&login(&p, &email, edgevideo_testkit::client::PASSWORD)).unwrap();
    assert_eq!(wait, 300);
    p.advance_ms(wait * 1000);
    let owner = login(&p, &email, edgevideo_testkit::client::PASSWORD);
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text());
}

#[test]
fn a_successful_login_resets_the_backoff_and_old_failures_are_forgotten() {
    use edgevideo_core::services::ratelimit::{LOGIN_BACKOFF_CAP_MS, LOGIN_BACKOFF_FORGET_MS};

    let p = TestPlatform::with_vars(&[("LOGIN_LIMIT_PER_EMAIL", "2")]).unwrap();
    let email = p.new_email("example.com");
    p.signup(&email);
    let failures_until_refused = || {
        let mut failures = 0;
        while login(&p, &email, WRONG).status == StatusCode::UNAUTHORIZED {
            failures += 1;
            assert!(failures < 10, "never refused");
        }
        failures
    };
    assert_eq!(failures_until_refused(), 2);
    p.advance_ms(1000);
    assert_eq!(
        login(&p, &email, edgevideo_testkit::client::PASSWORD).status,
        StatusCode::OK
    );
    // Only failures count: after the success the free failures are free again.
    assert_eq!(failures_until_refused(), 2);
    // Failures are forgotten a while after their delay ended.
    p.advance_ms(LOGIN_BACKOFF_CAP_MS + LOGIN_BACKOFF_FORGET_MS);
    assert_eq!(failures_until_refused(), 2);
    // Another account is not slowed down by this one's failures.
    let other = p.new_email("example.com");
    p.signup(&other);
    assert_eq!(login(&p, &other, WRONG).status, StatusCode::UNAUTHORIZED);
}

#[test]
fn logins_per_address_stay_limited_by_window() {
    let p = TestPlatform::with_vars(&[("LOGIN_LIMIT_PER_IP", "3")]).unwrap();
    let email = p.new_email("example.com");
    p.signup(&email);
    for _ in 0..3 {
        assert_eq!(login(&p, &email, WRONG).status, StatusCode::UNAUTHORIZED);
    }
    let refused = login(&p, &email, edgevideo_testkit::client::PASSWORD);
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code().as_deref(), Some("rate_limited"));
    p.advance_ms(edgevideo_core::config::LOGIN_WINDOW_SECONDS * 1000);
    assert_eq!(
        login(&p, &email, edgevideo_testkit::client::PASSWORD).status,
        StatusCode::OK
    );
}

#[test]
fn forgotten_login_failures_are_swept() {
    use edgevideo_core::ports::{Sql as _, Statement};
    use edgevideo_core::store::ratelimits::{self, LoginBackoff};
    use edgevideo_testkit::exec::block_on;

    let p = TestPlatform::new();
    let rules = LoginBackoff {
        free_failures: 1,
        base_ms: 1000,
        cap_ms: 4000,
        forget_ms: 10_000,
    };
    let claim = |scope: &str, now_ms: i64| {
        let rows = block_on(p.sql.query(&ratelimits::claim_login(scope, now_ms, &rules))).unwrap();
        (
            rows[0]["granted"].as_i64().unwrap(),
            rows[0]["next_at"].as_i64().unwrap(),
        )
    };
    assert_eq!(claim("a", 0), (1, 1000));
    assert_eq!(claim("a", 500), (0, 1000), "refused, unchanged");
    assert_eq!(claim("a", 1000), (1, 3000));
    assert_eq!(claim("a", 3000), (1, 7000), "capped at 4 s");
    assert_eq!(claim("b", 0), (1, 1000));
    let scopes = || {
        block_on(p.sql.query(&Statement::new(
            "SELECT scope FROM login_failures ORDER BY scope",
            vec![],
        )))
        .unwrap()
        .iter()
        .map(|r| r["scope"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
    };
    block_on(
        p.sql
            .execute(&ratelimits::sweep_login_failures(12_000, 500)),
    )
    .unwrap();
    assert_eq!(scopes(), vec!["a"], "b was forgotten at 11 s");
    assert_eq!(
        claim("a", 17_000),
        (1, 18_000),
        "a forgotten row counts from 0"
    );
    block_on(p.sql.execute(&ratelimits::login_succeeded("a"))).unwrap();
    assert!(scopes().is_empty());
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

#[test]
fn descriptions_and_passwords_are_bounded_as_the_schema_says() {
    let p = TestPlatform::new();
    let dev = p.developer();
    let plugin = p.register_scoped_plugin(&dev, "bounded", "video.ready", "own");
    let patch = |description: String| {
        p.call(
            Method::PATCH,
            &format!("/api/plugins/{}", plugin.id),
            Some(&dev.token),
            Some(&json!({ "description": description })),
        )
    };
    // 2000 characters (6000 bytes) pass, 2001 are refused and change nothing.
    assert_eq!(patch("€".repeat(2000)).status, StatusCode::OK);
    let refused = patch("x".repeat(2001));
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.text()
    );
    assert_eq!(refused.error_code().as_deref(), Some("invalid_description"));
    let stored = p.call(
        Method::GET,
        &format!("/api/plugins/{}", plugin.id),
        Some(&dev.token),
        None,
    );
    assert_eq!(
        stored.json()["plugin"]["description"]
            .as_str()
            .map(|d| d.chars().count()),
        Some(2000)
    );

    // Passwords are counted in characters, as the schema's maxLength: 256 three-byte
    // characters sign up and log in; 257 do not.
    let signup = |email: &str, password: &str| {
        p.call(
            Method::POST,
            "/api/auth/signup",
            None,
            Some(&json!({ "email": email, "password": password })),
        )
    };
    let long = "€".repeat(256);
    assert_eq!(
        signup("long@example.com", &long).status,
        StatusCode::ACCEPTED
    );
    let link = p.mailed_link_token("long@example.com").unwrap();
    assert_eq!(p.verify_email(&link, &long).status, StatusCode::OK);
    assert_eq!(login(&p, "long@example.com", &long).status, StatusCode::OK);
    let too_long = signup("longer@example.com", &"€".repeat(257));
    assert_eq!(
        too_long.status,
        StatusCode::BAD_REQUEST,
        "{}",
        too_long.text()
    );
}

#[test]
fn a_broadcast_past_its_segment_quota_is_refused_and_its_recording_keeps_what_it_stored() {
    let p = TestPlatform::with_vars(&[("MAX_BROADCAST_SEGMENTS", "3")]).unwrap();
    let (owner, channel) = p.broadcaster("Quota");
    let url = p.ingest_url(&owner, &channel);
    let files: Vec<String> = (0..3).map(|i| format!("index{i}.ts")).collect();
    for file in &files {
        assert_eq!(p.push_segment(&url, file).status, StatusCode::CREATED);
        p.advance_ms(1000);
    }
    let refused = p.push_segment(&url, "index3.ts");
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text()
    );
    assert_eq!(refused.error_code().as_deref(), Some("quota_exceeded"));
    // Nothing of the refused segment is stored.
    let stored = block_on(p.blobs.list(&format!("live/{channel}/"))).unwrap();
    assert_eq!(
        stored.iter().filter(|k| k.ends_with(".ts")).count(),
        3,
        "{stored:?}"
    );
    // The broadcast ends with the segments it stored, and becomes a video of them.
    let ended = p.push_playlist(&url, &files, true);
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.text());
    assert_eq!(ended.json()["ended"], true);
    let video = p.get(&format!("/api/channels/{channel}")).json()["last_broadcast"]["video_id"]
        .as_str()
        .map(str::to_owned)
        .expect("a video of the stored segments");
    assert_eq!(p.video_status(&video), "processing");
}

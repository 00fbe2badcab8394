//! Password change: the current password is checked (a wrong one counts toward the
//! account's login backoff), the new one follows the policy, and every session issued before
//! the change stops working while the answer carries a new one.

use edgevideo_testkit::TestPlatform;
use http::{Method, StatusCode};
use serde_json::json;

const EMAIL: &str = "changer@example.com";
const OLD: &str = "correct horse battery staple";
const NEW: &str = "a much longer passphrase now";

fn auth(p: &TestPlatform, path: &str, password: &str) -> edgevideo_testkit::client::Reply {
    p.call(
        Method::POST,
        path,
        None,
        Some(&json!({ "email": EMAIL, "password": password })),
    )
}

fn token(reply: &edgevideo_testkit::client::Reply) -> String {
    reply.json()["token"].as_str().unwrap().to_owned()
}

fn change(
    p: &TestPlatform,
    token: &str,
    current: &str,
    new: &str,
) -> edgevideo_testkit::client::Reply {
    p.call(
        Method::POST,
        "/api/auth/password",
        Some(token),
        Some(&json!({ "current_password": current, "new_password": new })),
    )
}

fn me(p: &TestPlatform, token: &str) -> StatusCode {
    p.call(Method::GET, "/api/me", Some(token), None).status
}

#[test]
fn a_password_change_checks_the_current_one_and_ends_every_older_session() {
    let p = TestPlatform::new();
    let signup = auth(&p, "/api/auth/signup", OLD);
    assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.text());
    let first = token(&signup);
    let second = token(&auth(&p, "/api/auth/login", OLD));

    // Refused: a wrong current password, a weak new one, no session. Nothing changes.
    let wrong = change(&p, &first, "not the password", NEW);
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text());
    let weak = change(&p, &first, OLD, "short");
    assert_eq!(weak.status, StatusCode::BAD_REQUEST, "{}", weak.text());
    assert_eq!(weak.error_code().as_deref(), Some("weak_password"));
    let anonymous = p.call(
        Method::POST,
        "/api/auth/password",
        None,
        Some(&json!({ "current_password": OLD, "new_password": NEW })),
    );
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&p, &first), StatusCode::OK);
    assert_eq!(auth(&p, "/api/auth/login", OLD).status, StatusCode::OK);

    // Changed: the answer's session works, every earlier one does not.
    p.advance_ms(1_000);
    let changed = change(&p, &first, OLD, NEW);
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text());
    let third = token(&changed);
    assert_eq!(me(&p, &third), StatusCode::OK);
    assert_eq!(me(&p, &first), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&p, &second), StatusCode::UNAUTHORIZED);
    assert_eq!(
        auth(&p, "/api/auth/login", OLD).status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(auth(&p, "/api/auth/login", NEW).status, StatusCode::OK);
}

#[test]
fn guessing_the_current_password_backs_off_like_logins() {
    let p = TestPlatform::with_vars(&[("LOGIN_LIMIT_PER_EMAIL", "2")]).unwrap();
    let session = token(&auth(&p, "/api/auth/signup", OLD));
    for _ in 0..2 {
        assert_eq!(
            change(&p, &session, "guess guess guess", NEW).status,
            StatusCode::UNAUTHORIZED
        );
    }
    // The free failures are spent: the next attempt waits, with the right password too.
    let waiting = change(&p, &session, OLD, NEW);
    assert_eq!(
        waiting.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        waiting.text()
    );
    assert!(waiting.headers.get(http::header::RETRY_AFTER).is_some());
    p.advance_ms(1_000);
    assert_eq!(change(&p, &session, OLD, NEW).status, StatusCode::OK);
}

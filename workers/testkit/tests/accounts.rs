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
    // The testkit's signup opens the mailed link too (its password is OLD).
    let first = p.signup(EMAIL).token;
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
    let session = p.signup(EMAIL).token;
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

/// A token of `user` signed with `key`, as a deployment with that session secret issues it.
fn token_signed_with(p: &TestPlatform, user: &edgevideo_testkit::Session, key: &str) -> String {
    let now = p.now_ms() / 1000;
    let claims = edgevideo_core::api::auth::session::Claims {
        sub: user.user_id.clone(),
        email: user.email.clone(),
        role: edgevideo_core::model::role::Role::Viewer,
        iat: now,
        exp: now + 3600,
        iss: "edgevideo".into(),
        sid: "ses_rotationtest0001".into(),
        iat_ms: now * 1000,
    };
    edgevideo_core::api::auth::session::sign(&claims, key.as_bytes())
}

#[test]
fn sessions_outlive_a_secret_rotation_while_the_previous_key_is_kept() {
    const OLD_KEY: &str = "dev-only-testkit-session-before-rotation";
    let rotating = TestPlatform::with_vars(&[
        ("SESSION_SECRET", "dev-only-testkit-session-after-rotation"),
        ("SESSION_SECRET_PREVIOUS", OLD_KEY),
    ])
    .unwrap();
    let user = rotating.signup(EMAIL);
    // Issued before the rotation: still accepted; issued now: names the new key.
    let old = token_signed_with(&rotating, &user, OLD_KEY);
    assert_eq!(me(&rotating, &old), StatusCode::OK);
    assert_eq!(me(&rotating, &user.token), StatusCode::OK);

    // Once the previous key is dropped, its tokens stop working; the new ones do not.
    let rotated =
        TestPlatform::with_vars(&[("SESSION_SECRET", "dev-only-testkit-session-after-rotation")])
            .unwrap();
    let user = rotated.signup(EMAIL);
    let old = token_signed_with(&rotated, &user, OLD_KEY);
    let refused = rotated.call(Method::GET, "/api/me", Some(&old), None);
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.text().contains("retired or unknown key"),
        "{}",
        refused.text()
    );
    assert_eq!(me(&rotated, &user.token), StatusCode::OK);
}

//! Email verification: a signup answers the same for every address and mails a link; nobody
//! signs in, and no role follows from the address, before the link is opened with the
//! signup's password; links are single-use, expire, and die when a later signup replaces
//! the password; a verified address only gets a notice. (The in-memory mailer keeps the
//! messages here; the end-to-end tests read them from a real SMTP server.)

use edgevideo_core::error::MailError;
use edgevideo_testkit::client::{Reply, PASSWORD};
use edgevideo_testkit::platform::{ADMIN_EMAIL, BROADCASTER_DOMAIN};
use edgevideo_testkit::TestPlatform;
use http::{Method, StatusCode};
use serde_json::json;

fn signup(p: &TestPlatform, email: &str, password: &str) -> Reply {
    p.call(
        Method::POST,
        "/api/auth/signup",
        None,
        Some(&json!({ "email": email, "password": password })),
    )
}

fn login(p: &TestPlatform, email: &str, password: &str) -> Reply {
    p.call(
        Method::POST,
        "/api/auth/login",
        None,
        Some(&json!({ "email": email, "password": password })),
    )
}

fn mails_to(p: &TestPlatform, email: &str) -> Vec<String> {
    p.mailer
        .sent
        .borrow()
        .iter()
        .filter(|m| m.to == email)
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect()
}

#[test]
fn a_signup_tells_nothing_and_the_link_verifies_with_the_signup_password() {
    let p = TestPlatform::new();
    let email = format!("ann@{BROADCASTER_DOMAIN}");
    let first = signup(&p, &email, PASSWORD);
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
    assert!(
        first.json().get("token").is_none(),
        "no session before the link"
    );
    let mails = mails_to(&p, &email);
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].contains("Subject: Confirm your email"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0].contains("https://edge.test/verify#"),
        "{}",
        mails[0]
    );

    // Before the link: no session, not even with the right password (which mails a new link).
    let early = login(&p, &email, PASSWORD);
    assert_eq!(early.status, StatusCode::FORBIDDEN, "{}", early.text());
    assert_eq!(early.error_code().as_deref(), Some("email_unverified"));
    assert_eq!(mails_to(&p, &email).len(), 2);
    assert_eq!(
        login(&p, &email, "wrong password!").status,
        StatusCode::UNAUTHORIZED
    );

    // The link needs the signup's password: a clicker who did not sign up cannot use it.
    let link = p.mailed_link_token(&email).unwrap();
    let wrong = p.verify_email(&link, "not the password");
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text());
    let verified = p.verify_email(&link, PASSWORD);
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    let user = &verified.json()["user"];
    assert_eq!(user["role"], "broadcaster", "the domain's role, now proven");
    assert_eq!(user["email_verified"], true);
    let token = verified.json()["token"].as_str().unwrap().to_owned();
    let me = p.call(Method::GET, "/api/me", Some(&token), None);
    assert_eq!(me.json()["user"]["email_verified"], true);

    // Single use, and the login works now.
    let again = p.verify_email(&link, PASSWORD);
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error_code().as_deref(), Some("link_used"));
    assert_eq!(login(&p, &email, PASSWORD).status, StatusCode::OK);

    // A signup of the verified address: the same answer, a notice, the password unchanged.
    let taken = signup(&p, &email, "another password entirely");
    assert_eq!(taken.status, first.status);
    assert_eq!(taken.json(), first.json());
    let mails = mails_to(&p, &email);
    assert!(
        mails.last().unwrap().contains("already has one"),
        "{}",
        mails.last().unwrap()
    );
    assert_eq!(login(&p, &email, PASSWORD).status, StatusCode::OK);
    assert_eq!(
        login(&p, &email, "another password entirely").status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_later_signup_voids_earlier_links_and_links_expire() {
    let p = TestPlatform::new();
    let email = "squat@example.com";
    // Someone else signs up the address first; its owner signs up after them.
    assert_eq!(
        signup(&p, email, "the squatter's password").status,
        StatusCode::ACCEPTED
    );
    let squatter_link = p.mailed_link_token(email).unwrap();
    assert_eq!(signup(&p, email, PASSWORD).status, StatusCode::ACCEPTED);
    let owner_link = p.mailed_link_token(email).unwrap();
    assert_ne!(squatter_link, owner_link);
    // The first link died with the password it was sent for.
    let dead = p.verify_email(&squatter_link, "the squatter's password");
    assert_eq!(
        dead.error_code().as_deref(),
        Some("link_expired"),
        "{}",
        dead.text()
    );
    assert_eq!(
        p.verify_email(&owner_link, "the squatter's password")
            .status,
        StatusCode::UNAUTHORIZED
    );

    // A day later the owner's link has expired too; a new signup sends a fresh one.
    p.advance_ms(24 * 3600 * 1000 + 1000);
    let late = p.verify_email(&owner_link, PASSWORD);
    assert_eq!(late.error_code().as_deref(), Some("link_expired"));
    assert_eq!(signup(&p, email, PASSWORD).status, StatusCode::ACCEPTED);
    let fresh = p.mailed_link_token(email).unwrap();
    assert_eq!(p.verify_email(&fresh, PASSWORD).status, StatusCode::OK);

    // Forged and foreign tokens.
    for bad in [
        "",
        "garbage",
        "usr_AAAAAAAAAAAAAAAA.tag.99999999999.sig",
        &fresh[..fresh.len() - 2],
    ] {
        let reply = p.verify_email(bad, PASSWORD);
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text()
        );
    }
}

#[test]
fn admin_emails_make_admins_only_once_verified() {
    let p = TestPlatform::new();
    assert_eq!(
        signup(&p, ADMIN_EMAIL, PASSWORD).status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        login(&p, ADMIN_EMAIL, PASSWORD).error_code().as_deref(),
        Some("email_unverified")
    );
    let admin = p.signup(ADMIN_EMAIL);
    let me = p.call(Method::GET, "/api/me", Some(&admin.token), None);
    assert_eq!(me.json()["user"]["role"], "admin");
}

#[test]
fn mail_failures_are_503_and_mail_per_address_is_limited() {
    let p = TestPlatform::new();
    *p.mailer.failure.borrow_mut() = Some(MailError::NotConfigured);
    let none = signup(&p, "a@example.com", PASSWORD);
    assert_eq!(none.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(none.error_code().as_deref(), Some("mail_not_configured"));
    *p.mailer.failure.borrow_mut() = Some(MailError::Connection("refused".into()));
    let down = signup(&p, "a@example.com", PASSWORD);
    assert_eq!(down.error_code().as_deref(), Some("mail_unavailable"));
    assert!(!down.text().contains("refused"), "backend text stays out");
    *p.mailer.failure.borrow_mut() = None;

    // Signups cannot flood a mailbox: every answer is the same 202, at most 5 mails an hour.
    for _ in 0..8 {
        assert_eq!(
            signup(&p, "b@example.com", PASSWORD).status,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(mails_to(&p, "b@example.com").len(), 5);
    p.advance_ms(3600 * 1000);
    signup(&p, "b@example.com", PASSWORD);
    assert_eq!(mails_to(&p, "b@example.com").len(), 6);
}

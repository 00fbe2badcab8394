//! Accounts: `POST /api/auth/signup`, `POST /api/auth/verify` (the mailed link),
//! `POST /api/auth/login`, `POST /api/auth/logout`, `POST /api/auth/password`, `GET /api/me`,
//! and `PUT /api/users/{id}/role` for admins.

use http::header::{RETRY_AFTER, SET_COOKIE};
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::api::auth::{self, password, session, SESSION_COOKIE};
use crate::api::{self, Acknowledged, Request, Response};
use crate::config::LOGIN_WINDOW_SECONDS;
use subtle::ConstantTimeEq as _;

use crate::error::{ApiError, MailError, StoreError};
use crate::model::email_link::{self, EmailLink, EmailLinkError};
use crate::model::ids;
use crate::model::role::{Principal, Role};
use crate::ports::Platform;
use crate::services::accounts::{self, UserView};
use crate::services::mail::{self, Notice, SendError};
use crate::services::{ratelimit, sessions};
use crate::store::users::{self, User};

/// The window of the signup limit, in seconds.
const SIGNUP_WINDOW_SECONDS: u64 = 3600;

/// Body of signup and login.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Credentials {
    /// Email address (at most 254 characters).
    #[cfg_attr(feature = "schema", schemars(email, length(min = 5, max = 254)))]
    pub email: String,
    /// Password: 10 to 256 characters.
    #[cfg_attr(feature = "schema", schemars(length(min = 10, max = 256)))]
    pub password: String,
}

/// A new session: the answer of signup (201) and login (200). The token is also set as the
/// `ev_session` cookie.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionIssued {
    /// The session token (JWT), for `Authorization: Bearer`.
    pub token: String,
    /// When it expires, Unix seconds.
    pub expires_at: u64,
    /// The signed-in user.
    pub user: UserView,
}

/// The signed-in user and the role their token was issued with.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CurrentUser {
    /// The user as stored now.
    pub user: UserView,
    /// The role in the token (the stored role decides access).
    pub token_role: Role,
}

/// A user after a change.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UpdatedUser {
    /// The user as stored now.
    pub user: UserView,
}

fn now_s<P: Platform>(p: &P) -> u64 {
    p.clock().now_ms() / 1000
}

/// Now, Unix ms, as the catalogue stores times.
fn now_ms<P: Platform>(p: &P) -> i64 {
    i64::try_from(p.clock().now_ms()).unwrap_or(i64::MAX)
}

/// A `{token, user}` response with the session cookie set.
fn session_response<P: Platform>(p: &P, status: StatusCode, user: &User) -> Response {
    let config = p.config();
    let iat_ms = p.clock().now_ms();
    let iat = iat_ms / 1000;
    let claims = session::Claims {
        sub: user.id.clone(),
        email: user.email.clone(),
        role: user.role,
        iat,
        exp: iat + config.session_ttl_s,
        iss: config.token_issuer.clone(),
        sid: p.entropy().new_id("ses"),
        iat_ms,
    };
    let token = session::sign(&claims, config.session_secret.as_bytes());
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
        config.session_ttl_s
    );
    let mut response = api::json(
        status,
        &SessionIssued {
            expires_at: claims.exp,
            token,
            user: UserView::from(user),
        },
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// A 429 `rate_limited` for an account whose backoff delay has `retry_after_ms` to run, with
/// `Retry-After` in whole seconds (rounded up).
fn retry_later(retry_after_ms: u64) -> Response {
    let seconds = retry_after_ms.div_ceil(1000).max(1);
    let mut response = api::error(&ApiError::TooManyRequests(format!(
        "too many failed logins for this account; try again in {seconds} s"
    )));
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The stored form of a new password: a fresh salt, the configured iterations.
fn new_hash<P: Platform>(p: &P, new_password: &str) -> String {
    let mut salt = [0u8; password::SALT_LEN];
    p.entropy().fill(&mut salt);
    password::hash(new_password, &salt, p.config().password_iterations)
}

/// The login-backoff scope of the account with (normalised) `email`.
fn account_scope(email: &str) -> String {
    format!("login-email:{email}")
}

/// Claims one password attempt on `account` ([`ratelimit::claim_login`]): `Some` 429 with
/// `Retry-After` while the account's delay runs (the password must not be checked then).
async fn claim_attempt<P: Platform>(p: &P, account: &str) -> Result<Option<Response>, ApiError> {
    let claim = ratelimit::claim_login(
        p,
        account,
        p.config().login_limit_per_email,
        p.clock().now_ms(),
    )
    .await?;
    Ok(match claim {
        ratelimit::LoginClaim::Wait { retry_after_ms } => Some(retry_later(retry_after_ms)),
        ratelimit::LoginClaim::Granted => None,
    })
}

/// The answer of a signup: the same for every address, new or not.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SignupAccepted {
    /// Always `true`.
    pub ok: bool,
    /// The address, normalised, that the mail went to.
    pub email: String,
    /// What to do next.
    pub message: String,
}

/// Body of an email verification.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// The token of the mailed link (what follows `#` in `/verify#...`).
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 512)))]
    pub token: String,
    /// The password chosen at signup: proves that whoever opens the link made the signup.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub password: String,
}

/// Where mailed links point: `PUBLIC_URL` (production requires it with mail), else, in
/// development, the request's own origin.
fn link_base<P: Platform>(p: &P, request: &Request) -> String {
    p.config()
        .public_url
        .clone()
        .unwrap_or_else(|| api::origin(request))
}

/// The verification link of `user_id` whose stored password hash is `password_hash`.
fn verify_link<P: Platform>(p: &P, base: &str, user_id: &str, password_hash: &str) -> String {
    let secret = p.config().url_signing_secret.as_bytes();
    let token = EmailLink {
        user_id: user_id.to_owned(),
        password_tag: email_link::password_tag(secret, password_hash),
        exp: now_s(p) + email_link::LINK_TTL_SECONDS,
    }
    .sign(secret);
    format!("{base}/verify#{token}")
}

/// Sends `notice` to `to` ([`mail::send`], limited per address), as an [`ApiError`]: 503
/// `mail_not_configured` / `mail_unavailable` when it cannot go (the server's text stays
/// out of the answer).
async fn send_notice<P: Platform>(p: &P, to: &str, notice: &Notice) -> Result<(), ApiError> {
    match mail::send(p, to, notice).await {
        Ok(_) => Ok(()),
        Err(SendError::Store(e)) => Err(e.into()),
        Err(SendError::Mail(MailError::NotConfigured)) => Err(ApiError::Unavailable {
            code: "mail_not_configured",
            message: "this deployment sends no mail, so accounts cannot be verified".into(),
            detail: "SMTP_URL is not set".into(),
        }),
        Err(SendError::Mail(e)) => Err(ApiError::Unavailable {
            code: "mail_unavailable",
            message: "the mail server did not take the message; try again in a minute".into(),
            detail: e.to_string(),
        }),
    }
}

/// `POST /api/auth/signup {email, password}`: 202 `{ok, email, message}` for every valid
/// address, with a mail to it; 400 for an invalid email or a password outside the policy;
/// 429 past `SIGNUP_LIMIT_PER_IP` signups per address per hour; 503 when no mail can be sent.
///
/// The answer never says whether the address has an account. A new address gets an account
/// (role `viewer`, unverified) and a verification link; an unverified one takes the new
/// password and a new link (earlier links stop working); a verified one is mailed that it
/// has an account. Nobody signs in before the link is used ([`verify`]).
pub async fn signup<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let body: Credentials = api::parse_json(request)?;
    let scope = format!("signup-ip:{}", auth::client_address(request));
    let limit = p.config().signup_limit_per_ip;
    let allowed =
        ratelimit::hit_counted(p, &[(&scope, limit)], SIGNUP_WINDOW_SECONDS, now_s(p)).await?;
    if !allowed {
        return Err(ApiError::TooManyRequests(
            "too many signups from this address; try again later".into(),
        ));
    }
    let email = accounts::normalise_email(&body.email)
        .map_err(|m| ApiError::bad_request("invalid_email", m))?;
    password::check_policy(&body.password)
        .map_err(|m| ApiError::bad_request("weak_password", m))?;
    // Hashed on every path, so that the answer's timing tells as little as its body.
    let hash = new_hash(p, &body.password);
    let now_ms = now_ms(p);
    let user = match users::by_email(p.sql(), &email).await? {
        Some(user) => user,
        None => {
            let user = User {
                id: p.entropy().new_id("usr"),
                role: Role::Viewer,
                email: email.clone(),
                password_hash: hash.clone(),
                created_at: now_ms,
                email_verified_at: None,
            };
            match users::create(p.sql(), &user).await {
                Ok(()) => user,
                // A concurrent signup of the same address made it first.
                Err(StoreError::AlreadyExists(_)) => users::by_email(p.sql(), &email)
                    .await?
                    .ok_or_else(|| ApiError::Conflict("the account is being created".into()))?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let base = link_base(p, request);
    let notice = if user.email_verified_at.is_some() {
        Notice::AccountExists {
            login: format!("{base}/login"),
        }
    } else {
        if user.password_hash != hash {
            users::set_password(p.sql(), &user.id, &hash, now_ms).await?;
        }
        Notice::Verify {
            link: verify_link(p, &base, &user.id, &hash),
        }
    };
    send_notice(p, &email, &notice).await?;
    Ok(api::json(
        StatusCode::ACCEPTED,
        &SignupAccepted {
            ok: true,
            message: format!(
                "we sent a mail to {email}: open its link to confirm the address, then sign in"
            ),
            email,
        },
    ))
}

/// `POST /api/auth/verify {token, password}`: proves the address of a signup. 200 with a
/// session (`{token, user}` and the cookie) and the account verified, with the role its
/// address implies (broadcaster for `BROADCASTER_DOMAINS`, admin for `ADMIN_EMAILS`; a role
/// it holds already is kept). 400 `invalid_link`, `link_expired` (also when a later signup
/// replaced the password the link was sent for) or `link_used`; 401 for a wrong password
/// (an attempt on the account's login backoff; 429 with `Retry-After` while it runs).
pub async fn verify<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let body: Verification = api::parse_json(request)?;
    let secret = p.config().url_signing_secret.as_bytes();
    let invalid = || ApiError::bad_request("invalid_link", "this is not a valid link");
    let expired = || {
        ApiError::bad_request(
            "link_expired",
            "this link has expired or was replaced by a newer one: sign up again for a new one",
        )
    };
    let link = match EmailLink::verify(body.token.trim(), secret, now_s(p)) {
        Ok(link) => link,
        Err(EmailLinkError::Expired) => return Err(expired()),
        Err(_) => return Err(invalid()),
    };
    let Some(user) = users::by_id(p.sql(), &link.user_id).await? else {
        return Err(invalid());
    };
    let used = || ApiError::bad_request("link_used", "this address is confirmed already: sign in");
    if user.email_verified_at.is_some() {
        return Err(used());
    }
    let tag = email_link::password_tag(secret, &user.password_hash);
    if !bool::from(tag.as_bytes().ct_eq(link.password_tag.as_bytes())) {
        return Err(expired());
    }
    let account = account_scope(&user.email);
    if let Some(wait) = claim_attempt(p, &account).await? {
        return Ok(wait);
    }
    if password::too_long(&body.password) || !password::verify(&body.password, &user.password_hash)
    {
        return Err(ApiError::Unauthorized(
            "the password is not the one chosen at signup".into(),
        ));
    }
    ratelimit::login_succeeded(p, &account).await?;
    let role = accounts::role_after_verification(p.config(), &user.email, user.role);
    let now_ms = now_ms(p);
    if !users::mark_verified(p.sql(), &user.id, role, now_ms).await? {
        return Err(used());
    }
    let user = User {
        role,
        email_verified_at: Some(now_ms),
        ..user
    };
    Ok(session_response(p, StatusCode::OK, &user))
}

/// `POST /api/auth/login {email, password}`: 200 `{token, user}`; the same 401 for an
/// unknown email and a wrong password; 403 `email_unverified` for the right password of an
/// account whose address is not verified yet (a new link is mailed); 429 past the
/// per-address attempt limit, and 429 with `Retry-After` (seconds) while the account's
/// backoff delay runs (failed logins make its next attempt wait: [`ratelimit::claim_login`]),
/// in both cases without a password check. A successful login resets the account's backoff.
pub async fn login<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let body: Credentials = api::parse_json(request)?;
    let config = p.config();
    let email = body.email.trim().to_ascii_lowercase();
    let by_ip = format!("login-ip:{}", auth::client_address(request));
    let by_ip = [(by_ip.as_str(), config.login_limit_per_ip)];
    if !ratelimit::hit_counted(p, &by_ip, LOGIN_WINDOW_SECONDS, now_s(p)).await? {
        return Err(ApiError::TooManyRequests(
            "too many login attempts; try again later".into(),
        ));
    }
    let account = account_scope(&email);
    if let Some(wait) = claim_attempt(p, &account).await? {
        return Ok(wait);
    }
    let invalid = || ApiError::Unauthorized("invalid email or password".into());
    if password::too_long(&body.password) {
        return Err(invalid());
    }
    let Some(mut user) = users::by_email(p.sql(), &email).await? else {
        // Spend the same work as a real check, so timing does not reveal unknown emails.
        let _ = password::hash(
            &body.password,
            &[0; password::SALT_LEN],
            config.password_iterations,
        );
        return Err(invalid());
    };
    if !password::verify(&body.password, &user.password_hash) {
        return Err(invalid());
    }
    ratelimit::login_succeeded(p, &account).await?;
    if user.email_verified_at.is_none() {
        let base = link_base(p, request);
        let link = verify_link(p, &base, &user.id, &user.password_hash);
        send_notice(p, &user.email, &Notice::Verify { link }).await?;
        return Err(ApiError::Refused {
            code: "email_unverified",
            message: format!(
                "confirm your address first: we sent a link to {}",
                user.email
            ),
        });
    }
    // A verified address listed in ADMIN_EMAILS (added after the account was verified)
    // becomes admin at its next login.
    if user.role != Role::Admin && accounts::role_for_email(config, &user.email) == Role::Admin {
        let now_ms = now_ms(p);
        users::set_role(p.sql(), &user.id, Role::Admin, now_ms).await?;
        user.role = Role::Admin;
    }
    Ok(session_response(p, StatusCode::OK, &user))
}

/// Body of a password change.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub current_password: String,
    /// The new password: 10 to 256 characters.
    #[cfg_attr(feature = "schema", schemars(length(min = 10, max = 256)))]
    pub new_password: String,
}

/// `POST /api/auth/password {current_password, new_password}` (signed in): 200 with a new
/// session (`{token, user}` and the cookie); every other session of the user, the one making
/// the change included, stops working. 401 for a wrong current password (it counts toward
/// the account's login backoff, and while the backoff runs the answer is 429 with
/// `Retry-After`, as for logins); 400 `weak_password` for a new one outside the policy.
pub async fn change_password<P: Platform>(
    p: &P,
    principal: &Principal,
    request: &Request,
) -> Result<Response, ApiError> {
    let body: PasswordChange = api::parse_json(request)?;
    let user = users::by_id(p.sql(), &principal.user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the session's user no longer exists".into()))?;
    password::check_policy(&body.new_password)
        .map_err(|m| ApiError::bad_request("weak_password", m))?;
    // Guessing the current password here is guessing a login: the same backoff applies.
    let account = account_scope(&user.email);
    if let Some(wait) = claim_attempt(p, &account).await? {
        return Ok(wait);
    }
    if password::too_long(&body.current_password)
        || !password::verify(&body.current_password, &user.password_hash)
    {
        return Err(ApiError::Unauthorized(
            "the current password is wrong".into(),
        ));
    }
    ratelimit::login_succeeded(p, &account).await?;
    let hash = new_hash(p, &body.new_password);
    let now_ms = p.clock().now_ms();
    users::set_password(
        p.sql(),
        &user.id,
        &hash,
        i64::try_from(now_ms).unwrap_or(i64::MAX),
    )
    .await?;
    // Sessions issued before now stop working; the one answered below is issued now.
    sessions::revoke_all(p.kv(), &user.id, now_ms).await?;
    Ok(session_response(p, StatusCode::OK, &user))
}

/// The optional body of logout.
#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LogoutOptions {
    /// Also end every other session of the user.
    #[serde(default)]
    pub everywhere: bool,
}

/// `POST /api/auth/logout [{everywhere}]`: revokes the caller's session (its token stops
/// working, not only the cookie), or with `{"everywhere": true}` every session of the user,
/// and clears the session cookie. Without a valid token it only clears the cookie.
///
/// # Errors
/// 400/415 for a body that is not `{"everywhere": bool}`; `Store` when KV fails.
pub async fn logout<P: Platform>(p: &P, request: &Request) -> Result<Response, ApiError> {
    let body: LogoutOptions = if request.body().is_empty() {
        LogoutOptions::default()
    } else {
        api::parse_json(request)?
    };
    let now_ms = p.clock().now_ms();
    if let Ok(claims) = auth::session_claims(request, p.config(), now_ms / 1000) {
        sessions::revoke(p.kv(), &claims.sid, claims.exp, now_ms / 1000).await?;
        // Tokens from before sessions had ids can only be revoked with all the others.
        if body.everywhere || claims.sid.is_empty() {
            sessions::revoke_all(p.kv(), &claims.sub, now_ms).await?;
        }
    }
    let mut response = api::json(StatusCode::OK, &Acknowledged { ok: true });
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /api/me`: the stored user behind the session.
pub async fn me<P: Platform>(p: &P, principal: &Principal) -> Result<Response, ApiError> {
    let user = users::by_id(p.sql(), &principal.user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the session's user no longer exists".into()))?;
    Ok(api::json(
        StatusCode::OK,
        &CurrentUser {
            user: UserView::from(&user),
            token_role: principal.role,
        },
    ))
}

/// The body of a role change.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleChange {
    /// `viewer`, `broadcaster`, `developer` or `admin`.
    #[cfg_attr(feature = "schema", schemars(with = "Role"))]
    pub role: String,
}

/// `PUT /api/users/{id}/role {role}` (admin): grants or revokes a role. It takes effect with
/// the user's next token; routes that need a role also check the stored one.
pub async fn set_role<P: Platform>(
    p: &P,
    user_id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    if !ids::is_id(user_id, "usr") {
        return Err(ApiError::NotFound(format!("no user {user_id}")));
    }
    let body: RoleChange = api::parse_json(request)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_role",
            "role is one of viewer, broadcaster, developer, admin",
        )
    })?;
    let now_ms = now_ms(p);
    users::set_role(p.sql(), user_id, role, now_ms).await?;
    let user = users::by_id(p.sql(), user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {user_id}")))?;
    Ok(api::json(
        StatusCode::OK,
        &UpdatedUser {
            user: UserView::from(&user),
        },
    ))
}

//! Plugins: the registry (`/api/plugins`, developers manage their own, admins see all), the
//! delivery log and redelivery, secret rotation, and the task callbacks plugins answer at
//! (`/api/plugins/tasks/{id}/success|failure`, authorised by the task's single-use token),
//! and the admins' approval of plugins that ask to act on every video (scope `all`).

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{self, Request, Response};
use crate::error::{ApiError, StoreError};
use crate::model::hook::{Event, Hook};
use crate::model::ids;
use crate::model::role::{Principal, Role};
use crate::model::text;
use crate::ports::{Platform, Sql as _};
use crate::services::lifecycle::{self, Answer};
use crate::services::plugins::{self, PluginScope, PluginView, ROTATION_GRACE_MS};
use crate::services::{delivery, ratelimit, sealed};
use crate::store::counters;
use crate::store::plugins::{self as stored, Plugin, PluginChange};
use crate::webhooks;

/// The body of `POST /api/plugins`.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewPlugin {
    /// 1 to 40 of `a-z 0-9 -`.
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 40), pattern(r"^[a-z0-9-]+$"))
    )]
    pub name: String,
    /// A lifecycle hook (`preValidate`, `postValidate`, `preMetadata`, `postMetadata`) or an
    /// event to subscribe to.
    #[cfg_attr(feature = "schema", schemars(schema_with = "hook_schema"))]
    pub hook: String,
    /// The HTTPS endpoint deliveries go to (an `http` or `https` URL, at most 2048 bytes).
    #[cfg_attr(
        feature = "schema",
        schemars(url, length(min = 1, max = 2048), pattern(HTTP_URL))
    )]
    pub url: String,
    /// Description, at most 2000 characters.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(max = 2000)))]
    pub description: String,
    /// `own` (the default): the plugin acts on videos of the caller's channels only. `all`:
    /// on every video once an admin approves it (`POST /api/plugins/{id}/approve`); until
    /// then on the caller's channels only.
    #[serde(default)]
    pub scope: PluginScope,
}

/// The pattern of a plugin URL in the schemas: `http` or `https` (any case) with an ASCII
/// host (the handler also refuses private hosts unless `ALLOW_PRIVATE_URLS` is on).
#[cfg(feature = "schema")]
const HTTP_URL: &str = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+([/?#]\S*)?$";

/// The schema of a plugin's `hook`: a lifecycle hook or an event, by name.
#[cfg(feature = "schema")]
fn hook_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = Hook::ALL
        .iter()
        .map(|h| h.as_str())
        .chain(Event::ALL.iter().map(|e| e.as_str()))
        .collect();
    schemars::json_schema!({ "type": "string", "enum": names })
}

/// The body of `PATCH /api/plugins/{id}`: the fields to change.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PluginUpdate {
    /// A new endpoint (an `http` or `https` URL, at most 2048 bytes).
    #[cfg_attr(
        feature = "schema",
        schemars(url, length(min = 1, max = 2048), pattern(HTTP_URL))
    )]
    pub url: Option<String>,
    /// A new description, at most 2000 characters.
    #[cfg_attr(feature = "schema", schemars(length(max = 2000)))]
    pub description: Option<String>,
    /// Whether deliveries are sent.
    pub enabled: Option<bool>,
}

/// A new plugin and its signing secret (shown once).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedPlugin {
    /// The plugin.
    pub plugin: PluginView,
    /// Its Standard Webhooks signing secret (`whsec_...`).
    pub secret: String,
}

/// The caller's plugins.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PluginList {
    /// Every plugin of the caller (admins: all).
    pub plugins: Vec<PluginView>,
}

/// One plugin.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OnePlugin {
    /// The plugin.
    pub plugin: PluginView,
}

/// A rotated signing secret.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RotatedSecret {
    /// The new secret (shown once).
    pub secret: String,
    /// Until when the previous secret still signs, Unix ms.
    pub previous_secret_valid_until_ms: i64,
}

/// A plugin's delivery log.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeliveryLog {
    /// The last deliveries, newest first, each with its `attempt_log`.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Vec<serde_json::Map<String, Value>>")
    )]
    pub deliveries: Value,
}

/// A redelivery queued.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Redelivery {
    /// The delivery sent again.
    pub delivery_id: String,
}

/// A task answer recorded.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskRecorded {
    /// The task.
    pub task_id: String,
    /// Always `true`.
    pub recorded: bool,
}

fn now_ms<P: Platform>(p: &P) -> i64 {
    p.clock().now_ms() as i64
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            "plugin names are 1 to 40 of a-z 0-9 -",
        ))
    }
}

/// A plugin subscribes to a [`Hook`] or an [`Event`].
fn check_hook(hook: &str) -> Result<(), ApiError> {
    if Hook::parse(hook).is_some() || Event::parse(hook).is_some() {
        return Ok(());
    }
    let hooks: Vec<&str> = Hook::ALL.iter().map(|h| h.as_str()).collect();
    let events: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
    Err(ApiError::bad_request(
        "invalid_hook",
        format!(
            "hook is one of {} or an event: {}",
            hooks.join(", "),
            events.join(", ")
        ),
    ))
}

fn check_url<P: Platform>(p: &P, url: &str) -> Result<(), ApiError> {
    plugins::check_url(url, p.config().allow_private_urls)
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))
}

/// The caller's plugin `id`; 404 for someone else's (admins see all).
async fn owned<P: Platform>(p: &P, principal: &Principal, id: &str) -> Result<Plugin, ApiError> {
    let not_found = || ApiError::NotFound(format!("no plugin {id}"));
    if !ids::is_id(id, "plg") {
        return Err(not_found());
    }
    let plugin = stored::by_id(p.sql(), id).await?.ok_or_else(not_found)?;
    if plugin.owner_id != principal.user_id && principal.role != Role::Admin {
        return Err(not_found());
    }
    Ok(plugin)
}

/// `POST /api/plugins {name, hook, url, description?}` (developer): 201 with the plugin and
/// its signing secret, shown this once.
pub async fn create<P: Platform>(
    p: &P,
    principal: &Principal,
    request: &Request,
) -> Result<Response, ApiError> {
    let body: NewPlugin = api::parse_json(request)?;
    check_name(&body.name)?;
    check_hook(&body.hook)?;
    check_url(p, &body.url)?;
    check_description(&body.description)?;
    let id = p.entropy().new_id("plg");
    let secret = new_secret(p);
    let plugin = Plugin {
        secret: seal_secret(p, &id, &secret),
        id,
        owner_id: principal.user_id.clone(),
        name: body.name,
        hook: body.hook,
        url: body.url,
        description: body.description,
        enabled: 1,
        previous_secret: None,
        previous_secret_until: None,
        created_at: now_ms(p),
        scope: body.scope.as_str().to_owned(),
        approved_at: None,
    };
    let limit = p.config().max_plugins_per_user;
    match stored::create(p.sql(), &plugin, limit).await {
        Err(StoreError::AlreadyExists(_)) => {
            return Err(ApiError::Conflict(format!(
                "you have a plugin named {}",
                plugin.name
            )))
        }
        Ok(false) => {
            return Err(ApiError::Unprocessable {
                code: "quota_exceeded",
                message: format!("a developer has at most {limit} plugins; delete one first"),
            })
        }
        other => other.map(drop)?,
    }
    p.sql().execute(&counters::bump("plugins.added", 1)).await?;
    Ok(api::json(
        StatusCode::CREATED,
        &CreatedPlugin {
            plugin: PluginView::from(&plugin),
            secret,
        },
    ))
}

/// `GET /api/plugins`: the caller's plugins (admins: all).
pub async fn list<P: Platform>(p: &P, principal: &Principal) -> Result<Response, ApiError> {
    let owner = (principal.role != Role::Admin).then_some(principal.user_id.as_str());
    let list: Vec<PluginView> = stored::list(p.sql(), owner)
        .await?
        .iter()
        .map(PluginView::from)
        .collect();
    Ok(api::json(StatusCode::OK, &PluginList { plugins: list }))
}

/// `GET /api/plugins/{id}`.
pub async fn get<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let plugin = owned(p, principal, id).await?;
    Ok(api::json(
        StatusCode::OK,
        &OnePlugin {
            plugin: PluginView::from(&plugin),
        },
    ))
}

/// Descriptions have at most 2000 characters (400 `invalid_description`).
fn check_description(description: &str) -> Result<(), ApiError> {
    if description.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "invalid_description",
            "descriptions have at most 2000 characters",
        ));
    }
    Ok(())
}

/// `PATCH /api/plugins/{id} {url?, description?, enabled?}`.
pub async fn update<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let plugin = owned(p, principal, id).await?;
    let body: PluginUpdate = api::parse_json(request)?;
    if let Some(url) = &body.url {
        check_url(p, url)?;
    }
    if let Some(description) = &body.description {
        check_description(description)?;
    }
    let change = PluginChange {
        url: body.url.as_deref().unwrap_or(&plugin.url),
        description: body.description.as_deref().unwrap_or(&plugin.description),
        enabled: body.enabled.unwrap_or(plugin.enabled != 0),
    };
    stored::update(p.sql(), &plugin.id, &change, now_ms(p)).await?;
    if plugin.approved_at.is_some() && change.url != plugin.url {
        // An admin approved the endpoint it had: a new one waits for a new approval.
        stored::set_approval(p.sql(), &plugin.id, None, now_ms(p)).await?;
    }
    get(p, principal, id).await
}

/// `POST /api/plugins/{id}/approve` (admin): a plugin of scope `all` acts on every video
/// from now on; 409 for a plugin of scope `own`.
pub async fn approve<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let plugin = owned(p, principal, id).await?;
    if PluginScope::parse(&plugin.scope) != PluginScope::All {
        return Err(ApiError::Conflict(format!(
            "plugin {id} has scope own: it acts on its owner's channels only"
        )));
    }
    if plugin.approved_at.is_none() {
        stored::set_approval(p.sql(), &plugin.id, Some(&principal.user_id), now_ms(p)).await?;
    }
    get(p, principal, id).await
}

/// `POST /api/plugins/{id}/revoke` (admin): a plugin's approval is withdrawn; it acts on
/// its owner's channels only again.
pub async fn revoke<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let plugin = owned(p, principal, id).await?;
    stored::set_approval(p.sql(), &plugin.id, None, now_ms(p)).await?;
    get(p, principal, id).await
}

/// `DELETE /api/plugins/{id}`: no more deliveries; its history stays.
pub async fn delete<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let plugin = owned(p, principal, id).await?;
    stored::delete(p.sql(), &plugin.id, now_ms(p)).await?;
    Ok(api::with_body(
        StatusCode::NO_CONTENT,
        "application/json",
        Vec::new(),
    ))
}

/// `POST /api/plugins/{id}/secret/rotate`: a new secret, shown once; the old one keeps
/// signing (both signatures are sent) for a day.
pub async fn rotate_secret<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let plugin = owned(p, principal, id).await?;
    let secret = new_secret(p);
    let until = now_ms(p) + ROTATION_GRACE_MS;
    let sealed = seal_secret(p, &plugin.id, &secret);
    stored::rotate_secret(p.sql(), &plugin.id, &sealed, until, now_ms(p)).await?;
    Ok(api::json(
        StatusCode::OK,
        &RotatedSecret {
            secret,
            previous_secret_valid_until_ms: until,
        },
    ))
}

/// `GET /api/plugins/{id}/deliveries`: the last 100 deliveries with every attempt.
pub async fn deliveries<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let plugin = owned(p, principal, id).await?;
    let log = delivery::log(p, &plugin.id, 100).await?;
    Ok(api::json(StatusCode::OK, &DeliveryLog { deliveries: log }))
}

/// Redeliveries a plugin may ask for per minute (the delivery log must not become a way to
/// probe hosts at will).
const REDELIVERIES_PER_MINUTE: u64 = 10;

/// `POST /api/plugins/{id}/deliveries/{delivery_id}/redeliver`: 202, the delivery is sent
/// again now; 429 past [`REDELIVERIES_PER_MINUTE`].
pub async fn redeliver<P: Platform>(
    p: &P,
    principal: &Principal,
    id: &str,
    delivery_id: &str,
) -> Result<Response, ApiError> {
    let plugin = owned(p, principal, id).await?;
    let now_s = p.clock().now_ms() / 1000;
    let scope = format!("redeliver:{}", plugin.id);
    if !ratelimit::hit(p.kv(), &scope, REDELIVERIES_PER_MINUTE, 60, now_s).await? {
        return Err(ApiError::TooManyRequests(format!(
            "at most {REDELIVERIES_PER_MINUTE} redeliveries per plugin per minute"
        )));
    }
    if !delivery::redeliver(p, &plugin.id, delivery_id).await? {
        return Err(ApiError::NotFound(format!("no delivery {delivery_id}")));
    }
    Ok(api::json(
        StatusCode::ACCEPTED,
        &Redelivery {
            delivery_id: delivery_id.to_owned(),
        },
    ))
}

/// The body of a task answer.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskAnswer {
    /// The task's single-use token, from its delivery.
    pub token: String,
    /// A success's result, a JSON object (`{}` when absent).
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<serde_json::Map<String, Value>>")
    )]
    pub result: Option<Value>,
    /// A failure's message.
    #[serde(default)]
    pub error: Option<String>,
}

/// `POST /api/plugins/tasks/{id}/success {token, result}` and `.../failure {token, error}`:
/// 200 once; 409 for a second answer; 403 for a wrong token; 413 for a result over 64 KiB.
pub async fn answer_task<P: Platform>(
    p: &P,
    task_id: &str,
    success: bool,
    request: &Request,
) -> Result<Response, ApiError> {
    if !ids::is_id(task_id, "tsk") {
        return Err(ApiError::NotFound(format!("no task {task_id}")));
    }
    let body: TaskAnswer = api::parse_json(request)?;
    let answer = if success {
        let result = body.result.unwrap_or(Value::Object(Default::default()));
        if !result.is_object() {
            return Err(ApiError::bad_request(
                "invalid_result",
                "result is a JSON object",
            ));
        }
        Answer::Success(result)
    } else {
        let error = body.error.unwrap_or_else(|| "failed".into());
        Answer::Failure(text::truncate(error, 2000))
    };
    lifecycle::answer(p, task_id, &body.token, answer).await?;
    Ok(api::json(
        StatusCode::OK,
        &TaskRecorded {
            task_id: task_id.to_owned(),
            recorded: true,
        },
    ))
}

/// `secret` sealed for storage in plugin `plugin_id`'s row (see [`sealed`]).
fn seal_secret<P: Platform>(p: &P, plugin_id: &str, secret: &str) -> String {
    let mut nonce = [0u8; 12];
    p.entropy().fill(&mut nonce);
    sealed::Keys::from_config(p.config()).seal(nonce, plugin_id, secret)
}

/// A new signing secret for a plugin.
fn new_secret<P: Platform>(p: &P) -> String {
    let mut key = [0u8; 32];
    p.entropy().fill(&mut key);
    webhooks::new_secret(&key)
}

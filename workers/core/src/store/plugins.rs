//! The `plugins` table: registered webhook endpoints, their secrets and their hook or event.

use serde::Deserialize;

use crate::error::StoreError;
use crate::ports::{Sql, SqlExt as _, SqlValue, Statement};

/// A stored plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Plugin {
    /// Identifier (`plg_...`).
    pub id: String,
    /// The developer who owns it.
    pub owner_id: String,
    /// Name, unique per owner (only a label: results are keyed `plugin-{id}`).
    pub name: String,
    /// A [`crate::model::hook::Hook`] or [`crate::model::hook::Event`] name.
    pub hook: String,
    /// Where deliveries go.
    pub url: String,
    /// Description.
    pub description: String,
    /// 1 when deliveries are sent.
    pub enabled: i64,
    /// The current signing secret.
    pub secret: String,
    /// The previous secret, while it still signs.
    pub previous_secret: Option<String>,
    /// Until when the previous secret signs, Unix ms.
    pub previous_secret_until: Option<i64>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// `own` (videos of its owner's channels) or `all` (every video, once approved).
    pub scope: String,
    /// When an admin approved scope `all`, Unix ms; `None` while pending or revoked.
    pub approved_at: Option<i64>,
}

/// Scope `own`: the plugin acts on videos of its owner's channels only.
pub const SCOPE_OWN: &str = "own";
/// Scope `all`: the plugin acts on every video once an admin approves it.
pub const SCOPE_ALL: &str = "all";

const COLUMNS: &str = "id, owner_id, name, hook, url, description, enabled, secret, \
                       previous_secret, previous_secret_until, created_at, scope, approved_at";

/// Inserts a plugin unless its owner already has `limit` (not deleted) plugins, checked in
/// the same statement; `false` when at the limit.
///
/// # Errors
/// `AlreadyExists` when the owner has a plugin with this name.
pub async fn create<S: Sql>(sql: &S, plugin: &Plugin, limit: u64) -> Result<bool, StoreError> {
    let inserted = sql
        .execute(&Statement::new(
            "INSERT INTO plugins (id, owner_id, name, hook, url, description, enabled, secret, \
             created_at, updated_at, scope) SELECT ?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?8, ?10 \
             WHERE (SELECT COUNT(*) FROM plugins WHERE owner_id = ?2 AND deleted_at IS NULL) < ?9",
            vec![
                SqlValue::from(plugin.id.as_str()),
                SqlValue::from(plugin.owner_id.as_str()),
                SqlValue::from(plugin.name.as_str()),
                SqlValue::from(plugin.hook.as_str()),
                SqlValue::from(plugin.url.as_str()),
                SqlValue::from(plugin.description.as_str()),
                SqlValue::from(plugin.secret.as_str()),
                SqlValue::Integer(plugin.created_at),
                SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
                SqlValue::from(plugin.scope.as_str()),
            ],
        ))
        .await?;
    Ok(inserted == 1)
}

/// A plugin by id (deleted ones are not found).
///
/// # Errors
/// `Backend` when the query fails.
pub async fn by_id<S: Sql>(sql: &S, id: &str) -> Result<Option<Plugin>, StoreError> {
    sql.query_one(&Statement::new(
        format!("SELECT {COLUMNS} FROM plugins WHERE id = ?1 AND deleted_at IS NULL"),
        vec![SqlValue::from(id)],
    ))
    .await
}

/// Plugins of one owner, or of everyone for `None`, newest first.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn list<S: Sql>(sql: &S, owner_id: Option<&str>) -> Result<Vec<Plugin>, StoreError> {
    let statement = match owner_id {
        Some(owner) => Statement::new(
            format!(
                "SELECT {COLUMNS} FROM plugins WHERE owner_id = ?1 AND deleted_at IS NULL \
                 ORDER BY created_at DESC, id DESC"
            ),
            vec![SqlValue::from(owner)],
        ),
        None => Statement::new(
            format!(
                "SELECT {COLUMNS} FROM plugins WHERE deleted_at IS NULL \
                 ORDER BY created_at DESC, id DESC"
            ),
            vec![],
        ),
    };
    sql.query_as(&statement).await
}

/// The enabled plugins of a hook or event that may act on video `video_id`, oldest first:
/// those whose owner owns the video's channel, and those of scope `all` an admin approved.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn enabled_for<S: Sql>(
    sql: &S,
    hook: &str,
    video_id: &str,
) -> Result<Vec<Plugin>, StoreError> {
    sql.query_as(&Statement::new(
        format!(
            "SELECT {COLUMNS} FROM plugins WHERE hook = ?1 AND enabled = 1 AND deleted_at IS NULL \
             AND (owner_id = (SELECT c.owner_id FROM videos v JOIN channels c \
             ON c.id = v.channel_id WHERE v.id = ?2) \
             OR (scope = 'all' AND approved_at IS NOT NULL)) \
             ORDER BY created_at, id"
        ),
        vec![SqlValue::from(hook), SqlValue::from(video_id)],
    ))
    .await
}

/// Approves (`Some(admin)`) or revokes (`None`) a plugin's scope `all`.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn set_approval<S: Sql>(
    sql: &S,
    id: &str,
    approved_by: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (at, by) = match approved_by {
        Some(admin) => (SqlValue::Integer(now_ms), SqlValue::from(admin)),
        None => (SqlValue::Null, SqlValue::Null),
    };
    sql.execute(&Statement::new(
        "UPDATE plugins SET approved_at = ?2, approved_by = ?3, updated_at = ?4 WHERE id = ?1",
        vec![SqlValue::from(id), at, by, SqlValue::Integer(now_ms)],
    ))
    .await
    .map(drop)
}

/// What an owner may change of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginChange<'a> {
    /// Endpoint.
    pub url: &'a str,
    /// Description.
    pub description: &'a str,
    /// Whether deliveries are sent.
    pub enabled: bool,
}

/// Updates a plugin's URL, description and switch.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn update<S: Sql>(
    sql: &S,
    id: &str,
    change: &PluginChange<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    sql.execute(&Statement::new(
        "UPDATE plugins SET url = ?2, description = ?3, enabled = ?4, updated_at = ?5 WHERE id = ?1",
        vec![
            SqlValue::from(id),
            SqlValue::from(change.url),
            SqlValue::from(change.description),
            SqlValue::Integer(i64::from(change.enabled)),
            SqlValue::Integer(now_ms),
        ],
    ))
    .await
    .map(drop)
}

/// Deletes a plugin softly: disabled and marked deleted, its history stays.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn delete<S: Sql>(sql: &S, id: &str, now_ms: i64) -> Result<(), StoreError> {
    sql.execute(&Statement::new(
        "UPDATE plugins SET deleted_at = ?2, enabled = 0 WHERE id = ?1",
        vec![SqlValue::from(id), SqlValue::Integer(now_ms)],
    ))
    .await
    .map(drop)
}

/// Makes `secret` the plugin's signing secret; the current one becomes the previous one,
/// signing until `previous_until_ms`.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn rotate_secret<S: Sql>(
    sql: &S,
    id: &str,
    secret: &str,
    previous_until_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    sql.execute(&Statement::new(
        "UPDATE plugins SET previous_secret = secret, previous_secret_until = ?3, secret = ?2, \
         updated_at = ?4 WHERE id = ?1",
        vec![
            SqlValue::from(id),
            SqlValue::from(secret),
            SqlValue::Integer(previous_until_ms),
            SqlValue::Integer(now_ms),
        ],
    ))
    .await
    .map(drop)
}

/// Writes the plugin's secrets sealed again (each pair: the stored value, its replacement):
/// each column is replaced only while it still holds the value that was read, so a rotation
/// in between keeps what it wrote.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn reseal<S: Sql>(
    sql: &S,
    id: &str,
    secret: Option<(String, String)>,
    previous_secret: Option<(String, String)>,
) -> Result<(), StoreError> {
    let pair = |p: Option<(String, String)>| match p {
        Some((old, new)) => (SqlValue::from(old.as_str()), SqlValue::from(new.as_str())),
        None => (SqlValue::Null, SqlValue::Null),
    };
    let (old_secret, new_secret) = pair(secret);
    let (old_previous, new_previous) = pair(previous_secret);
    sql.execute(&Statement::new(
        "UPDATE plugins SET secret = CASE WHEN secret = ?2 THEN ?3 ELSE secret END, \
         previous_secret = CASE WHEN previous_secret = ?4 THEN ?5 ELSE previous_secret END \
         WHERE id = ?1",
        vec![
            SqlValue::from(id),
            old_secret,
            new_secret,
            old_previous,
            new_previous,
        ],
    ))
    .await
    .map(drop)
}

/// A plugin's stored secrets, as [`stale_secrets`] finds them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredSecrets {
    /// The plugin.
    pub id: String,
    /// The current signing secret, as stored.
    pub secret: String,
    /// The previous one, as stored.
    pub previous_secret: Option<String>,
}

/// Up to `limit` plugins (not deleted) with a stored secret that does not start with
/// `prefix` (the current sealing key's), compared exactly (no `LIKE` wildcards).
///
/// # Errors
/// `Backend` when the query fails.
pub async fn stale_secrets<S: Sql>(
    sql: &S,
    prefix: &str,
    limit: u64,
) -> Result<Vec<StoredSecrets>, StoreError> {
    sql.query_as(&Statement::new(
        "SELECT id, secret, previous_secret FROM plugins WHERE deleted_at IS NULL \
         AND (substr(secret, 1, length(?1)) != ?1 OR (previous_secret IS NOT NULL \
         AND substr(previous_secret, 1, length(?1)) != ?1)) LIMIT ?2",
        vec![
            SqlValue::from(prefix),
            SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
        ],
    ))
    .await
}

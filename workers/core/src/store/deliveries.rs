//! The `webhook_deliveries` table (one row per message to a plugin) and its
//! `webhook_attempts` (one row per attempt to send it).

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ports::{Sql, SqlExt as _, SqlValue, Statement};

/// Where a delivery is. Stored and sent as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// The receiver refused it, or the plugin is gone.
    Failed,
    /// Out of attempts.
    Dead,
}

impl DeliveryStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
        }
    }
}

/// A delivery as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Identifier, sent as `webhook-id`.
    pub id: String,
    /// The plugin it goes to.
    pub plugin_id: String,
    /// The event or hook.
    pub event_type: String,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first.
    pub attempt: i64,
    /// The receiver's status code, if it answered.
    pub response_status: Option<i64>,
    /// Time to the answer or the error, ms.
    pub latency_ms: Option<i64>,
    /// The error, if any.
    pub error: Option<String>,
    /// When, Unix ms.
    pub created_at: i64,
}

/// A delivery with what sending it needs: its payload and, when the plugin is enabled and
/// not deleted, the plugin's endpoint and secrets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Outgoing {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The body to send.
    pub payload: String,
    /// The plugin's URL.
    pub target_url: Option<String>,
    /// The plugin's signing secret.
    pub target_secret: Option<String>,
    /// The plugin's previous secret.
    pub target_previous_secret: Option<String>,
    /// Until when the previous secret signs, Unix ms.
    pub target_previous_secret_until: Option<i64>,
}

/// The `INSERT ... SELECT` of a new pending delivery (placeholders `?1`..`?5`), so callers
/// can append a `WHERE` guard numbered from `?6`.
pub fn insert(
    id: &str,
    plugin_id: &str,
    event_type: &str,
    payload: &str,
    created_at: i64,
) -> Statement {
    Statement::new(
        "INSERT INTO webhook_deliveries (id, plugin_id, event_type, payload, status, attempts, \
         created_at, updated_at) SELECT ?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5",
        vec![
            SqlValue::from(id),
            SqlValue::from(plugin_id),
            SqlValue::from(event_type),
            SqlValue::from(payload),
            SqlValue::Integer(created_at),
        ],
    )
}

/// A delivery with its payload and target, in one query.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn outgoing<S: Sql>(sql: &S, id: &str) -> Result<Option<Outgoing>, StoreError> {
    sql.query_one(&Statement::new(
        "SELECT d.id AS id, d.plugin_id AS plugin_id, d.event_type AS event_type, \
         d.status AS status, d.attempts AS attempts, d.last_error AS last_error, \
         d.created_at AS created_at, d.updated_at AS updated_at, d.payload AS payload, \
         p.url AS target_url, p.secret AS target_secret, \
         p.previous_secret AS target_previous_secret, \
         p.previous_secret_until AS target_previous_secret_until \
         FROM webhook_deliveries d LEFT JOIN plugins p ON p.id = d.plugin_id \
         AND p.enabled = 1 AND p.deleted_at IS NULL WHERE d.id = ?1",
        vec![SqlValue::from(id)],
    ))
    .await
}

/// What one attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Which attempt (1 for the first).
    pub attempt: u32,
    /// The delivery's new status.
    pub status: DeliveryStatus,
    /// The error, if any.
    pub error: Option<String>,
    /// The receiver's status code, if it answered.
    pub response_status: Option<u16>,
    /// Time to the answer or the error, ms.
    pub latency_ms: Option<i64>,
}

/// Records an attempt and the delivery's new state in one batch.
///
/// # Errors
/// `Backend` when the batch fails (then nothing was recorded).
pub async fn record_attempt<S: Sql>(
    sql: &S,
    delivery_id: &str,
    record: &AttemptRecord,
    now_ms: i64,
) -> Result<(), StoreError> {
    sql.batch(&[
        Statement::new(
            "INSERT INTO webhook_attempts (delivery_id, attempt, response_status, latency_ms, \
             error, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            vec![
                SqlValue::from(delivery_id),
                SqlValue::Integer(i64::from(record.attempt)),
                SqlValue::from(record.response_status.map(i64::from)),
                SqlValue::from(record.latency_ms),
                SqlValue::from(record.error.clone()),
                SqlValue::Integer(now_ms),
            ],
        ),
        Statement::new(
            "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, last_error = ?4, \
             updated_at = ?5 WHERE id = ?1",
            vec![
                SqlValue::from(delivery_id),
                SqlValue::from(record.status.as_str()),
                SqlValue::Integer(i64::from(record.attempt)),
                SqlValue::from(record.error.clone()),
                SqlValue::Integer(now_ms),
            ],
        ),
    ])
    .await
    .map(drop)
}

/// A plugin's deliveries, newest first.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn of_plugin<S: Sql>(
    sql: &S,
    plugin_id: &str,
    limit: u32,
) -> Result<Vec<Delivery>, StoreError> {
    sql.query_as(&Statement::new(
        "SELECT id, plugin_id, event_type, status, attempts, last_error, created_at, updated_at \
         FROM webhook_deliveries WHERE plugin_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
        vec![
            SqlValue::from(plugin_id),
            SqlValue::Integer(i64::from(limit)),
        ],
    ))
    .await
}

/// The attempts of a delivery, in order.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn attempts<S: Sql>(sql: &S, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
    sql.query_as(&Statement::new(
        "SELECT attempt, response_status, latency_ms, error, created_at \
         FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY attempt, id",
        vec![SqlValue::from(delivery_id)],
    ))
    .await
}

/// The attempts made of a plugin's delivery, `None` when the delivery is not the plugin's.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn attempts_made<S: Sql>(
    sql: &S,
    plugin_id: &str,
    delivery_id: &str,
) -> Result<Option<i64>, StoreError> {
    #[derive(Deserialize)]
    struct Row {
        attempts: i64,
    }
    let row: Option<Row> = sql
        .query_one(&Statement::new(
            "SELECT attempts FROM webhook_deliveries WHERE id = ?1 AND plugin_id = ?2",
            vec![SqlValue::from(delivery_id), SqlValue::from(plugin_id)],
        ))
        .await?;
    Ok(row.map(|r| r.attempts))
}

/// Makes a delivery pending again (its owner asked for a redelivery).
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn mark_pending<S: Sql>(sql: &S, id: &str, now_ms: i64) -> Result<(), StoreError> {
    sql.execute(&Statement::new(
        "UPDATE webhook_deliveries SET status = 'pending', updated_at = ?2 WHERE id = ?1",
        vec![SqlValue::from(id), SqlValue::Integer(now_ms)],
    ))
    .await
    .map(drop)
}

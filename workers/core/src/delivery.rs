//! Webhook delivery: every message to a plugin is a row in `webhook_deliveries`, sent by the
//! job consumer with Standard Webhooks headers, retried with exponential backoff and jitter on
//! network errors, timeouts, 408, 429 and 5xx, and dead-lettered after the last attempt.
//! Every attempt is logged in `webhook_attempts`; owners can read the log and redeliver.
//! The `webhook-id` stays the same across attempts, so receivers can deduplicate.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::StoreError;
use crate::ids;
use crate::jobs::{Job, JobError};
use crate::platform::{
    Jobs as _, Outbound as _, OutboundError, OutboundRequest, Platform, Sql as _, SqlExt as _,
    SqlValue, Statement,
};
use crate::plugins::{self, Plugin};
use crate::webhooks;

/// A delivery as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Identifier, sent as `webhook-id`.
    pub id: String,
    /// The plugin it goes to.
    pub plugin_id: String,
    /// The event or hook.
    pub event_type: String,
    /// `pending`, `delivered`, `failed` (refused by the receiver) or `dead` (out of attempts).
    pub status: String,
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
/// not deleted, the plugin's endpoint and secrets (one query for the job consumer).
#[derive(Deserialize)]
struct DeliveryRow {
    #[serde(flatten)]
    delivery: Delivery,
    payload: String,
    target_url: Option<String>,
    target_secret: Option<String>,
    target_previous_secret: Option<String>,
    target_previous_secret_until: Option<i64>,
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A delivery about to be recorded: its row, and the job that sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// The delivery id (`webhook-id`).
    pub id: String,
    plugin_id: String,
    event_type: String,
    payload: String,
    created_at: i64,
}

impl NewDelivery {
    /// `INSERT ... SELECT` of the row (placeholders `?1`..`?5`), so callers can append a
    /// `WHERE` guard numbered from `?6`.
    pub fn insert(&self) -> Statement {
        Statement::new(
            "INSERT INTO webhook_deliveries (id, plugin_id, event_type, payload, status, attempts, \
             created_at, updated_at) SELECT ?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5",
            vec![
                SqlValue::from(self.id.as_str()),
                SqlValue::from(self.plugin_id.as_str()),
                SqlValue::from(self.event_type.as_str()),
                SqlValue::from(self.payload.as_str()),
                SqlValue::Integer(self.created_at),
            ],
        )
    }

    /// The job that makes the first attempt.
    pub fn job(&self) -> Job {
        Job::Deliver {
            delivery_id: self.id.clone(),
            attempt: 1,
        }
    }
}

/// Prepares a delivery of `data` as `event_type` to `plugin`: run its [`NewDelivery::insert`]
/// (alone or in a batch), then enqueue its [`NewDelivery::job`].
pub fn prepare<P: Platform>(p: &P, plugin: &Plugin, event_type: &str, data: Value) -> NewDelivery {
    let now_ms = p.clock().now_ms();
    NewDelivery {
        id: ids::new_id(p.entropy(), "msg"),
        plugin_id: plugin.id.clone(),
        event_type: event_type.to_owned(),
        payload: json!({ "type": event_type, "timestamp": rfc3339(now_ms), "data": data })
            .to_string(),
        created_at: now_ms as i64,
    }
}

/// Records and queues one delivery; returns its id.
///
/// # Errors
/// Whatever the ports report.
pub async fn send<P: Platform>(
    p: &P,
    plugin: &Plugin,
    event_type: &str,
    data: Value,
) -> Result<String, StoreError> {
    let delivery = prepare(p, plugin, event_type, data);
    p.sql().execute(&delivery.insert()).await?;
    p.jobs().enqueue_after(&delivery.job(), 0).await?;
    Ok(delivery.id)
}

/// Notifies every plugin subscribed to `event_type` (fire-and-forget, same signing and
/// retries).
///
/// # Errors
/// Whatever the ports report.
pub async fn notify<P: Platform>(p: &P, event_type: &str, data: Value) -> Result<(), StoreError> {
    for plugin in plugins::enabled_for(p.sql(), event_type).await? {
        send(p, &plugin, event_type, data.clone()).await?;
    }
    Ok(())
}

/// Delay before attempt `next` (2 for the first retry): `base * 2^(next-2)` with jitter in
/// [0.5, 1.5), at most an hour.
pub fn backoff_s(base_s: u32, next: u32, jitter_byte: u8) -> u32 {
    let exponential = u64::from(base_s) << next.saturating_sub(2).min(16);
    let jittered = exponential * (128 + u64::from(jitter_byte)) / 256;
    jittered.clamp(1, 3600) as u32
}

enum Outcome {
    Delivered,
    Retry(String),
    Refused(String),
}

/// Sends attempt `attempt` of a delivery (the job consumer's work). A stale job (its attempt
/// was already made) and a finished delivery are no-ops.
///
/// # Errors
/// [`JobError::Store`] when the catalogue fails (the queue retries the job).
pub async fn attempt<P: Platform>(p: &P, delivery_id: &str, attempt: u32) -> Result<(), JobError> {
    let Some(row) = p
        .sql()
        .query_one::<DeliveryRow>(&Statement::new(
            "SELECT d.id AS id, d.plugin_id AS plugin_id, d.event_type AS event_type, \
             d.status AS status, d.attempts AS attempts, d.last_error AS last_error, \
             d.created_at AS created_at, d.updated_at AS updated_at, d.payload AS payload, \
             p.url AS target_url, p.secret AS target_secret, \
             p.previous_secret AS target_previous_secret, \
             p.previous_secret_until AS target_previous_secret_until \
             FROM webhook_deliveries d LEFT JOIN plugins p ON p.id = d.plugin_id \
             AND p.enabled = 1 AND p.deleted_at IS NULL WHERE d.id = ?1",
            vec![SqlValue::from(delivery_id)],
        ))
        .await?
    else {
        return Err(JobError::Invalid(format!("no delivery {delivery_id}")));
    };
    let delivery = row.delivery;
    if delivery.status != "pending" || delivery.attempts != i64::from(attempt) - 1 {
        return Ok(());
    }
    let config = p.config();
    let (Some(url), Some(secret)) = (row.target_url, row.target_secret) else {
        finish(
            p,
            &delivery,
            attempt,
            "failed",
            Some("the plugin is disabled or deleted".into()),
            None,
            None,
        )
        .await?;
        return Ok(());
    };
    let now_ms = p.clock().now_ms();
    let keys: Vec<webhooks::WebhookKey> = plugins::signing_secrets(
        &secret,
        row.target_previous_secret.as_deref(),
        row.target_previous_secret_until,
        now_ms as i64,
    )
    .into_iter()
    .filter_map(|s| webhooks::WebhookKey::from_secret(s).ok())
    .collect();
    let body = row.payload.into_bytes();
    let mut headers: Vec<(String, String)> =
        webhooks::headers(&keys, &delivery.id, now_ms / 1000, &body)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
    headers.push(("content-type".into(), "application/json".into()));
    headers.push(("user-agent".into(), "edgevideo-webhooks/1".into()));
    let request = OutboundRequest {
        method: http::Method::POST,
        url,
        headers,
        body,
        timeout_ms: config.webhook_timeout_ms,
    };
    let result = p.outbound().send(request).await;
    let latency_ms = p.clock().now_ms().saturating_sub(now_ms) as i64;
    let (outcome, status) = match result {
        Ok(r) if (200..300).contains(&r.status) => (Outcome::Delivered, Some(r.status)),
        Ok(r) if r.status == 408 || r.status == 429 || r.status >= 500 => (
            Outcome::Retry(format!("receiver answered {}", r.status)),
            Some(r.status),
        ),
        Ok(r) => (
            Outcome::Refused(format!("receiver answered {}", r.status)),
            Some(r.status),
        ),
        Err(e @ (OutboundError::Timeout | OutboundError::Network(_))) => {
            (Outcome::Retry(e.to_string()), None)
        }
    };
    match outcome {
        Outcome::Delivered => {
            finish(
                p,
                &delivery,
                attempt,
                "delivered",
                None,
                status,
                Some(latency_ms),
            )
            .await?
        }
        Outcome::Refused(error) => {
            finish(
                p,
                &delivery,
                attempt,
                "failed",
                Some(error),
                status,
                Some(latency_ms),
            )
            .await?
        }
        Outcome::Retry(error) if attempt < config.webhook_max_attempts => {
            let mut jitter = [0u8; 1];
            p.entropy().fill(&mut jitter);
            let delay_s = backoff_s(config.webhook_retry_base_s, attempt + 1, jitter[0]);
            finish(
                p,
                &delivery,
                attempt,
                "pending",
                Some(error),
                status,
                Some(latency_ms),
            )
            .await?;
            let next = Job::Deliver {
                delivery_id: delivery.id.clone(),
                attempt: attempt + 1,
            };
            p.jobs().enqueue_after(&next, delay_s).await?;
        }
        Outcome::Retry(error) => {
            finish(
                p,
                &delivery,
                attempt,
                "dead",
                Some(error),
                status,
                Some(latency_ms),
            )
            .await?
        }
    }
    Ok(())
}

/// Records an attempt and the delivery's new state in one batch.
async fn finish<P: Platform>(
    p: &P,
    delivery: &Delivery,
    attempt: u32,
    status: &str,
    error: Option<String>,
    response_status: Option<u16>,
    latency_ms: Option<i64>,
) -> Result<(), StoreError> {
    let now_ms = p.clock().now_ms() as i64;
    p.sql()
        .batch(&[
            Statement::new(
                "INSERT INTO webhook_attempts (delivery_id, attempt, response_status, latency_ms, \
                 error, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                vec![
                    SqlValue::from(delivery.id.as_str()),
                    SqlValue::Integer(i64::from(attempt)),
                    SqlValue::from(response_status.map(i64::from)),
                    SqlValue::from(latency_ms),
                    SqlValue::from(error.clone()),
                    SqlValue::Integer(now_ms),
                ],
            ),
            Statement::new(
                "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, last_error = ?4, \
                 updated_at = ?5 WHERE id = ?1",
                vec![
                    SqlValue::from(delivery.id.as_str()),
                    SqlValue::from(status),
                    SqlValue::Integer(i64::from(attempt)),
                    SqlValue::from(error),
                    SqlValue::Integer(now_ms),
                ],
            ),
        ])
        .await
        .map(drop)
}

/// A plugin's deliveries, newest first, with their attempts.
///
/// # Errors
/// `Backend` when the queries fail.
pub async fn log<P: Platform>(p: &P, plugin_id: &str, limit: u32) -> Result<Value, StoreError> {
    let deliveries: Vec<Delivery> = p
        .sql()
        .query_as(&Statement::new(
            "SELECT id, plugin_id, event_type, status, attempts, last_error, created_at, updated_at \
             FROM webhook_deliveries WHERE plugin_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
            vec![SqlValue::from(plugin_id), SqlValue::Integer(i64::from(limit))],
        ))
        .await?;
    let mut out = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let attempts: Vec<Attempt> = p
            .sql()
            .query_as(&Statement::new(
                "SELECT attempt, response_status, latency_ms, error, created_at \
                 FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY attempt, id",
                vec![SqlValue::from(delivery.id.as_str())],
            ))
            .await?;
        let mut entry =
            serde_json::to_value(&delivery).map_err(|e| StoreError::backend("json", e))?;
        entry["attempt_log"] =
            serde_json::to_value(attempts).map_err(|e| StoreError::backend("json", e))?;
        out.push(entry);
    }
    Ok(Value::Array(out))
}

/// Sends a delivery again (its owner asked): it becomes pending and its next attempt is
/// queued now. Returns `false` when the delivery is not the plugin's.
///
/// # Errors
/// Whatever the ports report.
pub async fn redeliver<P: Platform>(
    p: &P,
    plugin_id: &str,
    delivery_id: &str,
) -> Result<bool, StoreError> {
    #[derive(Deserialize)]
    struct Row {
        attempts: i64,
    }
    let Some(row) = p
        .sql()
        .query_one::<Row>(&Statement::new(
            "SELECT attempts FROM webhook_deliveries WHERE id = ?1 AND plugin_id = ?2",
            vec![SqlValue::from(delivery_id), SqlValue::from(plugin_id)],
        ))
        .await?
    else {
        return Ok(false);
    };
    p.sql()
        .execute(&Statement::new(
            "UPDATE webhook_deliveries SET status = 'pending', updated_at = ?2 WHERE id = ?1",
            vec![
                SqlValue::from(delivery_id),
                SqlValue::Integer(p.clock().now_ms() as i64),
            ],
        ))
        .await?;
    let job = Job::Deliver {
        delivery_id: delivery_id.to_owned(),
        attempt: u32::try_from(row.attempts + 1).unwrap_or(u32::MAX),
    };
    p.jobs().enqueue_after(&job, 0).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        assert_eq!(backoff_s(30, 2, 128), 30);
        assert_eq!(backoff_s(30, 3, 128), 60);
        assert_eq!(backoff_s(30, 4, 128), 120);
        assert_eq!(backoff_s(30, 2, 0), 15);
        assert_eq!(backoff_s(30, 2, 255), 44);
        assert_eq!(backoff_s(30, 30, 255), 3600);
        assert_eq!(backoff_s(1, 2, 0), 1);
    }
}

//! Webhook delivery: every message to a plugin is a row in `webhook_deliveries`, sent by the
//! job consumer with Standard Webhooks headers, retried with exponential backoff and jitter on
//! network errors, timeouts, 408, 429 and 5xx, and dead-lettered after the last attempt.
//! Every attempt is logged in `webhook_attempts`; owners can read the log and redeliver.
//! The `webhook-id` stays the same across attempts, so receivers can deduplicate. The rows
//! are [`crate::store::deliveries`]'s.

use serde_json::{json, Value};

use crate::error::StoreError;
use crate::model::job::{Job, JobError};
use crate::model::{ids, keyed};
use crate::ports::{Jobs as _, Outbound as _, OutboundError, OutboundRequest, Platform, Sql as _};
use crate::services::plugins;
use crate::services::sealed;
use crate::store::deliveries::{self, AttemptRecord, DeliveryStatus, Outgoing};
use crate::store::plugins::{self as stored_plugins, Plugin};
use crate::webhooks;

use crate::store::deliveries::Delivery;

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
    pub fn insert(&self) -> crate::ports::Statement {
        deliveries::insert(
            &self.id,
            &self.plugin_id,
            &self.event_type,
            &self.payload,
            self.created_at,
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
        id: p.entropy().new_id("msg"),
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

/// Notifies every plugin subscribed to `event_type` that may act on video `video_id` (its
/// channel's owner's plugins, and approved plugins of scope `all`; see
/// [`stored_plugins::enabled_for`]), fire-and-forget, same signing and retries.
///
/// # Errors
/// Whatever the ports report.
pub async fn notify<P: Platform>(
    p: &P,
    event_type: &str,
    video_id: &str,
    data: Value,
) -> Result<(), StoreError> {
    for plugin in stored_plugins::enabled_for(p.sql(), event_type, video_id).await? {
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

/// What sending one attempt gave: how it ended, the receiver's status, the latency.
struct Sent {
    outcome: Outcome,
    status: Option<u16>,
    latency_ms: i64,
}

/// Sends attempt `attempt` of a delivery (the job consumer's work). A stale job (its attempt
/// was already made) and a finished delivery are no-ops.
///
/// # Errors
/// [`JobError::Store`] when the catalogue fails (the queue retries the job).
pub async fn attempt<P: Platform>(p: &P, delivery_id: &str, attempt: u32) -> Result<(), JobError> {
    let Some(row) = deliveries::outgoing(p.sql(), delivery_id).await? else {
        return Err(JobError::Invalid(format!("no delivery {delivery_id}")));
    };
    if row.delivery.status != DeliveryStatus::Pending
        || row.delivery.attempts != i64::from(attempt) - 1
    {
        return Ok(());
    }
    let now_ms = p.clock().now_ms();
    let Some(request) = signed_request(p, &row, now_ms) else {
        let record = AttemptRecord {
            attempt,
            status: DeliveryStatus::Failed,
            error: Some("the plugin is disabled or deleted".into()),
            response_status: None,
            latency_ms: None,
        };
        return Ok(record_attempt(p, &row.delivery.id, &record).await?);
    };
    // The URL was checked at registration; checked again here, as the policy may have
    // tightened since (a stored URL is never sent to a host it now refuses).
    if let Err(e) = plugins::check_url(&request.url, p.config().allow_private_urls) {
        let record = AttemptRecord {
            attempt,
            status: DeliveryStatus::Failed,
            error: Some(e.to_string()),
            response_status: None,
            latency_ms: None,
        };
        return Ok(record_attempt(p, &row.delivery.id, &record).await?);
    }
    sealed::reseal_stale(
        p,
        &row.delivery.plugin_id,
        row.target_secret.as_deref(),
        row.target_previous_secret.as_deref(),
    )
    .await;
    let sent = post(p, request, now_ms).await;
    settle(p, &row.delivery, attempt, sent).await
}

/// The signed request of a delivery; `None` when its plugin is disabled or deleted.
fn signed_request<P: Platform>(p: &P, row: &Outgoing, now_ms: u64) -> Option<OutboundRequest> {
    let (Some(url), Some(secret)) = (&row.target_url, &row.target_secret) else {
        return None;
    };
    let keys = sealed::Keys::from_config(p.config());
    let plugin_id = &row.delivery.plugin_id;
    let open = |stored: &str| keys.open(plugin_id, stored).ok();
    let secret = open(secret)?;
    let previous = row.target_previous_secret.as_deref().and_then(open);
    let keys: Vec<webhooks::WebhookKey> = plugins::signing_secrets(
        &secret,
        previous.as_deref(),
        row.target_previous_secret_until,
        now_ms as i64,
    )
    .into_iter()
    .filter_map(|s| webhooks::WebhookKey::from_secret(s).ok())
    .collect();
    let body = with_task_token(p.config().url_signing_secret.as_bytes(), &row.payload);
    let mut headers: Vec<(String, String)> =
        webhooks::headers(&keys, &row.delivery.id, now_ms / 1000, &body)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
    headers.push(("content-type".into(), "application/json".into()));
    headers.push(("user-agent".into(), "edgevideo-webhooks/1".into()));
    Some(OutboundRequest {
        method: http::Method::POST,
        url: url.clone(),
        headers,
        body,
        timeout_ms: p.config().webhook_timeout_ms,
    })
}

/// The single-use token of task `task_id`: an HMAC of its id under the deployment's URL
/// signing secret, so no copy of it needs storing (the catalogue keeps its SHA-256 to check
/// answers; [`with_task_token`] adds it to the body when the delivery is sent).
pub fn task_token(secret: &[u8], task_id: &str) -> String {
    ids::encode(&keyed::tag(secret, b"task-token\0", task_id.as_bytes()))
}

/// The body sent for a stored payload: a task's token (`lifecycle::task_token`), never
/// stored, is added to `data.task`; other payloads go as stored.
pub fn with_task_token(secret: &[u8], payload: &str) -> Vec<u8> {
    let Ok(mut event) = serde_json::from_str::<Value>(payload) else {
        return payload.as_bytes().to_vec();
    };
    let Some(task) = event
        .get_mut("data")
        .and_then(|d| d.get_mut("task"))
        .and_then(Value::as_object_mut)
    else {
        return payload.as_bytes().to_vec();
    };
    let Some(id) = task.get("id").and_then(Value::as_str) else {
        return payload.as_bytes().to_vec();
    };
    let token = task_token(secret, id);
    task.insert("token".into(), Value::String(token));
    event.to_string().into_bytes()
}

/// Sends a request signed at `started_ms` and classifies the receiver's answer.
async fn post<P: Platform>(p: &P, request: OutboundRequest, started_ms: u64) -> Sent {
    let result = p.outbound().send(request).await;
    let latency_ms = p.clock().now_ms().saturating_sub(started_ms) as i64;
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
    Sent {
        outcome,
        status,
        latency_ms,
    }
}

/// Records an attempt's outcome, and queues the next attempt when a retry is due.
async fn settle<P: Platform>(
    p: &P,
    delivery: &Delivery,
    attempt: u32,
    sent: Sent,
) -> Result<(), JobError> {
    let config = p.config();
    let (status, error) = match sent.outcome {
        Outcome::Delivered => (DeliveryStatus::Delivered, None),
        Outcome::Refused(error) => (DeliveryStatus::Failed, Some(error)),
        Outcome::Retry(error) if attempt < config.webhook_max_attempts => {
            (DeliveryStatus::Pending, Some(error))
        }
        Outcome::Retry(error) => (DeliveryStatus::Dead, Some(error)),
    };
    let retry_in_s = (status == DeliveryStatus::Pending).then(|| {
        let mut jitter = [0u8; 1];
        p.entropy().fill(&mut jitter);
        backoff_s(config.webhook_retry_base_s, attempt + 1, jitter[0])
    });
    let record = AttemptRecord {
        attempt,
        status,
        error,
        response_status: sent.status,
        latency_ms: Some(sent.latency_ms),
    };
    record_attempt(p, &delivery.id, &record).await?;
    if let Some(delay_s) = retry_in_s {
        let next = Job::Deliver {
            delivery_id: delivery.id.clone(),
            attempt: attempt + 1,
        };
        p.jobs().enqueue_after(&next, delay_s).await?;
    }
    Ok(())
}

/// Records an attempt and the delivery's new state in one batch.
async fn record_attempt<P: Platform>(
    p: &P,
    delivery_id: &str,
    record: &AttemptRecord,
) -> Result<(), StoreError> {
    let now_ms = p.clock().now_ms() as i64;
    deliveries::record_attempt(p.sql(), delivery_id, record, now_ms).await
}

/// A plugin's deliveries, newest first, with their attempts.
///
/// # Errors
/// `Backend` when the queries fail.
pub async fn log<P: Platform>(p: &P, plugin_id: &str, limit: u32) -> Result<Value, StoreError> {
    let list = deliveries::of_plugin(p.sql(), plugin_id, limit).await?;
    let mut out = Vec::with_capacity(list.len());
    for delivery in list {
        let attempts = deliveries::attempts(p.sql(), &delivery.id).await?;
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
    let Some(attempts) = deliveries::attempts_made(p.sql(), plugin_id, delivery_id).await? else {
        return Ok(false);
    };
    deliveries::mark_pending(p.sql(), delivery_id, p.clock().now_ms() as i64).await?;
    let job = Job::Deliver {
        delivery_id: delivery_id.to_owned(),
        attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
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

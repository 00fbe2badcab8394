//! Webhook deliveries in process: the queue consumer sends each delivery through the
//! platform's outgoing HTTP, signed with the plugin's secret; a delivery without a 2xx answer
//! is retried with backoff, then dead-lettered; the delivery log shows every attempt; the
//! owner can redeliver. Scenarios of `tests/e2e/test_plugins.py`.

use edgevideo_core::model::job::Job;
use edgevideo_core::ports::{OutboundError, OutboundRequest, Sql as _, SqlValue, Statement};
use edgevideo_core::webhooks;
use edgevideo_testkit::client::RegisteredPlugin;
use edgevideo_testkit::exec::block_on;
use edgevideo_testkit::{Session, TestPlatform};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

/// A developer's plugin subscribed to `video.ready`, and a video whose transcode completed
/// (which notifies it); the first attempt has been made.
fn notified(p: &TestPlatform, statuses: &[u16]) -> (Session, RegisteredPlugin) {
    let dev = p.developer();
    let plugin = p.register_plugin(&dev, "ready-watcher", "video.ready");
    p.outbound.script_statuses(&plugin.url, statuses);
    let (owner, channel) = p.broadcaster("Delivery channel");
    let video = p.record_video(&owner, &channel, 2);
    p.settle();
    assert_eq!(p.transcode_completed(&video).status, StatusCode::OK);
    p.settle();
    (dev, plugin)
}

fn log(p: &TestPlatform, dev: &Session, plugin: &RegisteredPlugin) -> Vec<Value> {
    let reply = p.call(
        Method::GET,
        &format!("/api/plugins/{}/deliveries", plugin.id),
        Some(&dev.token),
        None,
    );
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn attempt_statuses(delivery: &Value) -> Vec<Value> {
    delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["response_status"].clone())
        .collect()
}

/// The retry waiting in the queue: its attempt number and delay.
fn waiting_retry(p: &TestPlatform) -> Option<(u32, u32)> {
    p.jobs.waiting().into_iter().find_map(|j| match j.job {
        Job::Deliver { attempt, .. } => Some((attempt, j.delay_s)),
        _ => None,
    })
}

/// Checks the Standard Webhooks signature of a sent request with `secret`; returns its id.
fn verify(p: &TestPlatform, request: &OutboundRequest, secret: &str) -> String {
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let key = webhooks::WebhookKey::from_secret(secret).unwrap();
    key.verify(
        |name| headers.get(name)?.to_str().ok(),
        &request.body,
        p.now_ms() / 1000,
    )
    .map(str::to_owned)
    .unwrap_or_else(|e| panic!("delivery signature: {e}"))
}

#[test]
fn a_failing_receiver_is_retried_with_backoff_until_it_answers() {
    let p = TestPlatform::new();
    let (dev, plugin) = notified(&p, &[500, 503]);
    assert_eq!(p.outbound.sent_to(&plugin.url).len(), 1);
    // Attempt 2 after the base delay (30 s) with jitter in [0.5, 1.5).
    let (attempt, delay) = waiting_retry(&p).expect("a retry is queued");
    assert_eq!(attempt, 2);
    assert!((15..45).contains(&delay), "first retry after {delay} s");
    p.advance_ms(u64::from(delay) * 1000 - 1000);
    p.settle();
    assert_eq!(
        p.outbound.sent_to(&plugin.url).len(),
        1,
        "not before its time"
    );
    p.advance_ms(1000);
    p.settle();
    assert_eq!(p.outbound.sent_to(&plugin.url).len(), 2);
    // Attempt 3 after twice the base.
    let (attempt, delay) = waiting_retry(&p).expect("a second retry is queued");
    assert_eq!(attempt, 3);
    assert!((30..90).contains(&delay), "second retry after {delay} s");
    p.advance_ms(u64::from(delay) * 1000);
    p.settle();
    assert_eq!(waiting_retry(&p), None, "delivered: no more retries");

    let sent = p.outbound.sent_to(&plugin.url);
    assert_eq!(sent.len(), 3);
    let ids: Vec<String> = sent.iter().map(|r| verify(&p, r, &plugin.secret)).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one webhook-id: {ids:?}"
    );
    let delivery = log(&p, &dev, &plugin)
        .into_iter()
        .find(|d| d["event_type"] == "video.ready")
        .expect("the delivery is logged");
    assert_eq!(delivery["id"], ids[0].as_str());
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(attempt_statuses(&delivery), [500, 503, 200]);
}

#[test]
fn a_delivery_without_a_2xx_is_dead_lettered_after_the_configured_attempts_then_redelivered() {
    let p = TestPlatform::with_vars(&[("WEBHOOK_MAX_ATTEMPTS", "3")]).unwrap();
    let (dev, plugin) = notified(&p, &[500]);
    p.outbound.script(
        &plugin.url,
        [
            Err(OutboundError::Timeout),
            Err(OutboundError::Network("connection reset".into())),
        ],
    );
    for _ in 0..2 {
        let (_, delay) = waiting_retry(&p).expect("a retry is queued");
        p.advance_ms(u64::from(delay) * 1000);
        p.settle();
    }
    assert_eq!(p.outbound.sent_to(&plugin.url).len(), 3);
    assert_eq!(waiting_retry(&p), None, "no fourth attempt");
    p.advance_ms(24 * 3600 * 1000);
    p.settle();
    assert_eq!(p.outbound.sent_to(&plugin.url).len(), 3);
    let delivery = log(&p, &dev, &plugin).remove(0);
    assert_eq!(delivery["status"], "dead");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(
        attempt_statuses(&delivery),
        [Value::from(500), Value::Null, Value::Null]
    );
    let errors: Vec<&str> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["error"].as_str())
        .collect();
    assert_eq!(errors.len(), 3);
    assert!(
        errors[1].contains("timed out") && errors[2].contains("connection reset"),
        "{errors:?}"
    );

    // The owner redelivers: sent again now, with the same webhook-id.
    let delivery_id = delivery["id"].as_str().unwrap();
    let reply = p.call(
        Method::POST,
        &format!(
            "/api/plugins/{}/deliveries/{delivery_id}/redeliver",
            plugin.id
        ),
        Some(&dev.token),
        None,
    );
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    p.settle();
    let sent = p.outbound.sent_to(&plugin.url);
    assert_eq!(sent.len(), 4);
    assert_eq!(verify(&p, &sent[3], &plugin.secret), delivery_id);
    let delivery = log(&p, &dev, &plugin).remove(0);
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["attempts"], 4);
    assert_eq!(
        attempt_statuses(&delivery),
        [Value::from(500), Value::Null, Value::Null, Value::from(200)]
    );
}

#[test]
fn a_refusal_is_not_retried_and_only_the_owner_sees_the_log() {
    let p = TestPlatform::new();
    let (dev, plugin) = notified(&p, &[410]);
    assert_eq!(waiting_retry(&p), None);
    let delivery = log(&p, &dev, &plugin).remove(0);
    assert_eq!(delivery["status"], "failed");
    assert_eq!(attempt_statuses(&delivery), [410]);

    let other = p.developer();
    let path = format!("/api/plugins/{}/deliveries", plugin.id);
    assert_eq!(
        p.call(Method::GET, &path, Some(&other.token), None).status,
        StatusCode::NOT_FOUND
    );
    let redeliver = format!("{path}/msg_AAAAAAAAAAAAAAAA/redeliver");
    assert_eq!(
        p.call(Method::POST, &redeliver, Some(&dev.token), None)
            .status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn a_rotated_secret_signs_alongside_the_new_one() {
    let p = TestPlatform::new();
    let dev = p.developer();
    let plugin = p.register_plugin(&dev, "rotating", "video.ready");
    let reply = p.call(
        Method::POST,
        &format!("/api/plugins/{}/secret/rotate", plugin.id),
        Some(&dev.token),
        None,
    );
    assert_eq!(reply.status, StatusCode::OK);
    let new_secret = reply.json()["secret"].as_str().unwrap().to_owned();
    // Both secrets are stored sealed: the rows hold neither.
    let rows = block_on(p.sql.query(&Statement::new(
        "SELECT secret, previous_secret FROM plugins WHERE id = ?1",
        vec![SqlValue::from(plugin.id.as_str())],
    )))
    .unwrap();
    let stored = format!("{:?}", rows[0]);
    assert!(
        stored.contains("sealed2.") && !stored.contains("whsec_"),
        "{stored}"
    );
    let (owner, channel) = p.broadcaster("Rotation channel");
    let video = p.record_video(&owner, &channel, 1);
    p.settle();
    p.transcode_completed(&video);
    p.settle();
    let sent = p.outbound.sent_to(&plugin.url);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        verify(&p, &sent[0], &plugin.secret),
        verify(&p, &sent[0], &new_secret)
    );
}

/// The stored `secret` of a plugin.
fn stored_secret(p: &TestPlatform, plugin_id: &str) -> String {
    let rows = block_on(p.sql.query(&Statement::new(
        "SELECT secret FROM plugins WHERE id = ?1",
        vec![SqlValue::from(plugin_id)],
    )))
    .unwrap();
    rows[0]["secret"].as_str().unwrap().to_owned()
}

/// The test deployment's configuration with `vars` changed.
fn config_with(vars: &[(&str, &str)]) -> edgevideo_core::config::Config {
    edgevideo_core::config::Config::from_lookup(|name| {
        vars.iter()
            .chain(edgevideo_testkit::platform::DEFAULT_VARS)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

/// A new video published in a new channel, and the deliveries it caused sent.
fn publish_one(p: &TestPlatform, name: &str) {
    let (owner, channel) = p.broadcaster(name);
    let video = p.record_video(&owner, &channel, 1);
    p.settle();
    assert_eq!(p.transcode_completed(&video).status, StatusCode::OK);
    p.settle();
}

/// Rewrites plugin `plugin_id`'s stored secret in the format of before `SECRETS_KEY`
/// (`sealed1.`, no key id): sealed under the key derived from the session secret, which is
/// what a deployment without `SECRETS_KEY` seals with, so the same bytes without the key id.
fn store_in_old_format(p: &TestPlatform, plugin_id: &str) -> String {
    let sealed = stored_secret(p, plugin_id);
    let (_, body) = sealed
        .strip_prefix("sealed2.")
        .and_then(|rest| rest.split_once('.'))
        .expect("a sealed value with a key id");
    let old = format!("sealed1.{body}");
    block_on(p.sql.execute(&Statement::new(
        "UPDATE plugins SET secret = ?2 WHERE id = ?1",
        vec![SqlValue::from(plugin_id), SqlValue::from(old.as_str())],
    )))
    .unwrap();
    old
}

#[test]
fn secrets_sealed_before_secrets_key_are_resealed_and_survive_a_session_secret_rotation() {
    // A deployment without SECRETS_KEY (development) with two plugins, one of them disabled,
    // whose secrets are stored as before the setting existed.
    let mut p = TestPlatform::new();
    let dev = p.developer();
    let active = p.register_plugin(&dev, "long-lived", "video.ready");
    let idle = p.register_plugin(&dev, "idle", "video.ready");
    let enable = |p: &TestPlatform, enabled: bool| {
        let reply = p.call(
            Method::PATCH,
            &format!("/api/plugins/{}", idle.id),
            Some(&dev.token),
            Some(&serde_json::json!({ "enabled": enabled })),
        );
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    };
    enable(&p, false);
    let old_active = store_in_old_format(&p, &active.id);
    let old_idle = store_in_old_format(&p, &idle.id);

    // SECRETS_KEY is set: the old value still signs, and the first delivery seals it again
    // under the new key, and the disabled plugin's too.
    p.config = config_with(&[("SECRETS_KEY", "dev-only-testkit-secrets-key")]);
    publish_one(&p, "Before rotation");
    let sent = p.outbound.sent_to(&active.url);
    assert_eq!(sent.len(), 1);
    verify(&p, &sent[0], &active.secret);
    assert!(p.outbound.sent_to(&idle.url).is_empty(), "disabled");
    let resealed = stored_secret(&p, &active.id);
    for (now, old) in [
        (&resealed, &old_active),
        (&stored_secret(&p, &idle.id), &old_idle),
    ] {
        assert!(now.starts_with("sealed2.") && now != old, "{now}");
        assert!(!now.contains("whsec_"));
    }
    enable(&p, true);

    // SESSION_SECRET rotated (everyone logged out): both plugins still sign with their
    // secrets.
    p.config = config_with(&[
        ("SECRETS_KEY", "dev-only-testkit-secrets-key"),
        ("SESSION_SECRET", "dev-only-testkit-session-rotated"),
    ]);
    publish_one(&p, "After rotation");
    let sent = p.outbound.sent_to(&active.url);
    assert_eq!(sent.len(), 2, "the delivery after the rotation was sent");
    verify(&p, &sent[1], &active.secret);
    let sent = p.outbound.sent_to(&idle.url);
    assert_eq!(sent.len(), 1, "the re-enabled plugin's delivery was sent");
    verify(&p, &sent[0], &idle.secret);
    assert_eq!(
        stored_secret(&p, &active.id),
        resealed,
        "already current: not rewritten"
    );
}

#[test]
fn one_delivery_reseals_every_plugin_past_the_batch_size() {
    let mut p = TestPlatform::with_vars(&[("MAX_PLUGINS_PER_USER", "100")]).unwrap();
    let dev = p.developer();
    let active = p.register_plugin(&dev, "active", "video.ready");
    let mut all = vec![active.id.clone()];
    let mut idle_urls = Vec::new();
    for i in 0..60 {
        // Disabled: they receive nothing, so only the sweep can move them.
        let plugin = p.register_plugin(&dev, &format!("idle-{i}"), "video.ready");
        let reply = p.call(
            Method::PATCH,
            &format!("/api/plugins/{}", plugin.id),
            Some(&dev.token),
            Some(&serde_json::json!({ "enabled": false })),
        );
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        all.push(plugin.id);
        idle_urls.push(plugin.url);
    }
    for id in &all {
        store_in_old_format(&p, id);
    }
    p.config = config_with(&[
        ("SECRETS_KEY", "dev-only-testkit-secrets-key"),
        ("MAX_PLUGINS_PER_USER", "100"),
    ]);
    publish_one(&p, "Batches");
    assert_eq!(p.outbound.sent_to(&active.url).len(), 1);
    assert!(idle_urls.iter().all(|u| p.outbound.sent_to(u).is_empty()));
    let prefixes: std::collections::BTreeSet<String> = all
        .iter()
        .map(|id| {
            let stored = stored_secret(&p, id);
            stored[..stored.find('.').unwrap() + 9].to_owned()
        })
        .collect();
    assert_eq!(prefixes.len(), 1, "one key for all: {prefixes:?}");
    assert!(prefixes.iter().all(|p| p.starts_with("sealed2.")));
}

//! Plugin scope in process: a plugin acts (lifecycle tasks, event deliveries) only on videos
//! of its owner's channels, unless it asked for scope `all` and an admin approved it; its
//! results are kept under its id, so another developer's plugin of the same name cannot
//! touch them.

use edgevideo_testkit::client::RegisteredPlugin;
use edgevideo_testkit::{Session, TestPlatform};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// A broadcaster with a channel whom the admin then made a developer: someone whose own
/// plugins have videos to act on. Roles are exclusive, so the channel's ingest URL is taken
/// while still a broadcaster (it keeps working: it is checked against the stream key, not
/// the role).
struct ChannelDeveloper {
    session: Session,
    channel: String,
    ingest_url: String,
}

fn channel_developer(p: &TestPlatform, name: &str) -> ChannelDeveloper {
    let (session, channel) = p.broadcaster(name);
    let ingest_url = p.ingest_url(&session, &channel);
    let admin = p.admin();
    let reply = p.call(
        Method::PUT,
        &format!("/api/users/{}/role", session.user_id),
        Some(&admin.token),
        Some(&json!({ "role": "developer" })),
    );
    assert_eq!(reply.status, StatusCode::OK, "set role: {}", reply.text());
    ChannelDeveloper {
        session,
        channel,
        ingest_url,
    }
}

/// A recording of `owner`'s channel whose transcode completed: its lifecycle has started.
fn ready_video(p: &TestPlatform, owner: &ChannelDeveloper) -> String {
    let files: Vec<String> = (0..2).map(|i| format!("index{i}.ts")).collect();
    for file in &files {
        let reply = p.push_segment(&owner.ingest_url, file);
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        p.advance_ms(1000);
    }
    let reply = p.push_playlist(&owner.ingest_url, &files, true);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let channel = p.get(&format!("/api/channels/{}", owner.channel)).json();
    let video = channel["last_broadcast"]["video_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    p.settle();
    let reply = p.transcode_completed(&video);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    p.settle();
    video
}

/// The tasks of `plugin` for `video`.
fn tasks_for(p: &TestPlatform, plugin: &RegisteredPlugin, video: &str) -> Vec<Value> {
    p.delivered_to(&plugin.url)
        .into_iter()
        .filter(|event| event["data"]["video"]["id"] == video)
        .filter_map(|event| event["data"].get("task").cloned())
        .collect()
}

/// The events delivered to `plugin` about `video` (`video_id` for `video.ready`).
fn deliveries_for(p: &TestPlatform, plugin: &RegisteredPlugin, video: &str) -> Vec<Value> {
    p.delivered_to(&plugin.url)
        .into_iter()
        .filter(|event| event["data"]["video_id"] == video || event["data"]["video"]["id"] == video)
        .collect()
}

fn plugin_call(
    p: &TestPlatform,
    who: &Session,
    plugin: &RegisteredPlugin,
    action: &str,
) -> (StatusCode, Value) {
    let reply = p.call(
        Method::POST,
        &format!("/api/plugins/{}/{action}", plugin.id),
        Some(&who.token),
        None,
    );
    let body = serde_json::from_str(&reply.text()).unwrap_or(Value::Null);
    (reply.status, body)
}

#[test]
fn an_own_plugin_acts_on_its_owners_channels_only() {
    let p = TestPlatform::new();
    let alice = channel_developer(&p, "Alice's channel");
    let bob = channel_developer(&p, "Bob's channel");
    let checker = p.register_scoped_plugin(&alice.session, "checker", "preValidate", "own");
    let watcher = p.register_scoped_plugin(&alice.session, "watcher", "video.ready", "own");
    let shown = p
        .call(
            Method::GET,
            &format!("/api/plugins/{}", checker.id),
            Some(&alice.session.token),
            None,
        )
        .json();
    assert_eq!(shown["plugin"]["scope"], "own");
    assert_eq!(shown["plugin"]["approved"], false);

    // Bob's video: Alice's plugins get nothing, and nothing waits for them.
    let bobs = ready_video(&p, &bob);
    assert!(deliveries_for(&p, &checker, &bobs).is_empty());
    assert!(deliveries_for(&p, &watcher, &bobs).is_empty());
    assert_eq!(p.video_status(&bobs), "published");

    // Alice's video: her plugins act on it.
    let alices = ready_video(&p, &alice);
    assert_eq!(deliveries_for(&p, &watcher, &alices).len(), 1);
    let tasks = tasks_for(&p, &checker, &alices);
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        p.video_status(&alices),
        "ready",
        "waits for her preValidate plugin"
    );
    assert_eq!(
        p.answer_task(&tasks[0], &json!({ "valid": true })).status,
        StatusCode::OK
    );
    p.settle();
    assert_eq!(p.video_status(&alices), "published");
    assert!(deliveries_for(&p, &checker, &bobs).is_empty());
}

#[test]
fn an_all_plugin_acts_on_every_video_only_while_approved() {
    let p = TestPlatform::new();
    let bob = channel_developer(&p, "Bob's channel");
    let carol = p.developer();
    let moderator = p.register_scoped_plugin(&carol, "moderator", "preValidate", "all");
    let shown = p
        .call(
            Method::GET,
            &format!("/api/plugins/{}", moderator.id),
            Some(&carol.token),
            None,
        )
        .json();
    assert_eq!(shown["plugin"]["scope"], "all");
    assert_eq!(shown["plugin"]["approved"], false);
    assert_eq!(shown["plugin"]["approved_at"], Value::Null);

    // Pending: it acts on no one else's video.
    let first = ready_video(&p, &bob);
    assert!(deliveries_for(&p, &moderator, &first).is_empty());
    assert_eq!(p.video_status(&first), "published");

    // Only an admin approves (its owner and other developers get 403).
    for who in [&carol, &bob.session] {
        assert_eq!(
            plugin_call(&p, who, &moderator, "approve").0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            plugin_call(&p, who, &moderator, "revoke").0,
            StatusCode::FORBIDDEN
        );
    }
    let admin = p.admin();
    let (approved, body) = plugin_call(&p, &admin, &moderator, "approve");
    assert_eq!(approved, StatusCode::OK, "{body}");
    assert_eq!(body["plugin"]["approved"], true);
    assert!(body["plugin"]["approved_at"].is_i64());

    let second = ready_video(&p, &bob);
    let tasks = tasks_for(&p, &moderator, &second);
    assert_eq!(tasks.len(), 1, "an approved plugin acts on every video");
    assert_eq!(
        p.answer_task(&tasks[0], &json!({ "valid": false, "reason": "spam" }))
            .status,
        StatusCode::OK
    );
    p.settle();
    assert_eq!(p.video_status(&second), "rejected");

    // Revoked: other people's videos are closed to it again.
    let (revoked, body) = plugin_call(&p, &admin, &moderator, "revoke");
    assert_eq!(revoked, StatusCode::OK, "{body}");
    assert_eq!(body["plugin"]["approved"], false);
    let third = ready_video(&p, &bob);
    assert!(deliveries_for(&p, &moderator, &third).is_empty());
    assert_eq!(p.video_status(&third), "published");

    // A plugin of scope `own` has nothing to approve.
    let own = p.register_scoped_plugin(&carol, "own-one", "preValidate", "own");
    assert_eq!(
        plugin_call(&p, &admin, &own, "approve").0,
        StatusCode::CONFLICT
    );
}

#[test]
fn a_changed_url_needs_a_new_approval() {
    let p = TestPlatform::new();
    let bob = channel_developer(&p, "Bob's channel");
    let carol = p.developer();
    let moderator = p.register_plugin(&carol, "moderator", "video.ready");
    let reply = p.call(
        Method::PATCH,
        &format!("/api/plugins/{}", moderator.id),
        Some(&carol.token),
        Some(&json!({ "url": "https://plugins.test/elsewhere" })),
    );
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["plugin"]["approved"], false);
    let video = ready_video(&p, &bob);
    assert!(
        p.delivered_to("https://plugins.test/elsewhere").is_empty(),
        "{video}"
    );
}

#[test]
fn a_reused_name_does_not_touch_the_other_plugins_results() {
    let p = TestPlatform::new();
    let bob = channel_developer(&p, "Bob's channel");
    let (dave, erin) = (p.developer(), p.developer());
    // Both approved for every video, both named `tagger`.
    let original = p.register_plugin(&dave, "tagger", "preValidate");
    let copycat = p.register_plugin(&erin, "tagger", "preValidate");
    assert_ne!(original.id, copycat.id);
    let video = ready_video(&p, &bob);
    let (task_o, task_c) = (
        tasks_for(&p, &original, &video).remove(0),
        tasks_for(&p, &copycat, &video).remove(0),
    );
    assert_eq!(
        p.answer_task(&task_o, &json!({ "valid": true, "verdict": "original" }))
            .status,
        StatusCode::OK
    );
    p.settle();
    assert_eq!(
        p.answer_task(&task_c, &json!({ "valid": true, "verdict": "forged" }))
            .status,
        StatusCode::OK
    );
    p.settle();

    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "published");
    let metadata = &stored["metadata"];
    assert_eq!(
        metadata[format!("plugin-{}", original.id)]["verdict"],
        "original"
    );
    assert_eq!(
        metadata[format!("plugin-{}", copycat.id)]["verdict"],
        "forged"
    );
    assert!(metadata.get("plugin-tagger").is_none(), "{metadata}");
    let answered: Vec<(String, String)> = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "plugin.succeeded")
        .map(|e| {
            let detail: Value = match &e["detail"] {
                Value::String(s) => serde_json::from_str(s).unwrap(),
                other => other.clone(),
            };
            (
                detail["plugin_id"].as_str().unwrap().to_owned(),
                detail["result"]["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        answered,
        [
            (original.id.clone(), "original".to_owned()),
            (copycat.id.clone(), "forged".to_owned())
        ]
    );
}

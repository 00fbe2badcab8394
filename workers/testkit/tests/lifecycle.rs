//! The plugin lifecycle in process, driven through the router and the queue consumer as in
//! `tests/e2e/test_plugins.py`: a broadcast becomes a video, the transcoder's callback makes
//! it `ready`, plugins get their tasks hook by hook and answer them, and the video is
//! published with the merged results (or rejected).

use edgevideo_core::ports::{Blobs as _, Sql as _, Statement};
use edgevideo_testkit::client::RegisteredPlugin;
use edgevideo_testkit::exec::{block_on, join_all};
use edgevideo_testkit::{Session, TestPlatform};
use http::StatusCode;
use serde_json::{json, Value};

/// A broadcaster's recording whose transcode completed: its lifecycle has started.
fn ready_video(p: &TestPlatform) -> String {
    let (owner, channel) = p.broadcaster("Plugin channel");
    let video = p.record_video(&owner, &channel, 2);
    p.settle();
    let reply = p.transcode_completed(&video);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    p.settle();
    video
}

/// The only task delivered to `plugin` so far.
fn only_task(p: &TestPlatform, plugin: &RegisteredPlugin) -> Value {
    let tasks = p.tasks_of(&plugin.url);
    assert_eq!(tasks.len(), 1, "tasks of {}: {tasks:?}", plugin.url);
    tasks[0].clone()
}

/// The lifecycle deliveries (`plugin.{hook}`) in the order they were sent.
fn hook_deliveries(p: &TestPlatform) -> Vec<(String, String)> {
    p.outbound
        .sent
        .borrow()
        .iter()
        .filter_map(|r| {
            let event: Value = serde_json::from_slice(&r.body).ok()?;
            let kind = event["type"].as_str()?;
            kind.starts_with("plugin.")
                .then(|| (kind.to_owned(), r.url.clone()))
        })
        .collect()
}

fn events(p: &TestPlatform, video: &str, kind: &str) -> Vec<Value> {
    p.stored_video(video)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// Where a plugin's result is kept in `pluginData` and the video's metadata: under its id.
fn key(plugin: &RegisteredPlugin) -> String {
    format!("plugin-{}", plugin.id)
}

fn developer_plugins(
    p: &TestPlatform,
    plugins: &[(&str, &str)],
) -> (Session, Vec<RegisteredPlugin>) {
    let dev = p.developer();
    let registered = plugins
        .iter()
        .map(|(name, hook)| p.register_plugin(&dev, name, hook))
        .collect();
    (dev, registered)
}

#[test]
fn hooks_run_in_order_with_parallel_plugins_and_the_results_merge_into_the_published_video() {
    let p = TestPlatform::new();
    let (_, plugins) = developer_plugins(
        &p,
        &[
            ("validator", "preValidate"),
            ("checker-a", "postValidate"),
            ("checker-b", "postValidate"),
            ("titler", "preMetadata"),
            ("transcript", "postMetadata"),
            ("watcher", "video.published"),
            ("lifecycle-watcher", "lifecycle.completed"),
        ],
    );
    let [validator, checker_a, checker_b, titler, transcript, watcher, lifecycle_watcher] =
        <[RegisteredPlugin; 7]>::try_from(plugins).unwrap();
    let video = ready_video(&p);
    assert_eq!(p.video_status(&video), "ready");

    // preValidate first, alone.
    let task = only_task(&p, &validator);
    assert_eq!(
        hook_deliveries(&p),
        vec![("plugin.preValidate".to_owned(), validator.url.clone())]
    );
    let first = &p.delivered_to(&validator.url)[0];
    assert_eq!(first["data"]["video"]["id"], video.as_str());
    assert_eq!(first["data"]["pluginData"], json!({}));
    assert_eq!(
        p.answer_task(&task, &json!({ "valid": true })).status,
        StatusCode::OK
    );
    p.settle();

    // Both postValidate plugins at once: each has its task before either answered.
    let (task_a, task_b) = (only_task(&p, &checker_a), only_task(&p, &checker_b));
    assert!(p.tasks_of(&titler.url).is_empty());
    assert_eq!(
        p.answer_task(&task_a, &json!({ "ok": 1 })).status,
        StatusCode::OK
    );
    p.settle();
    assert!(
        p.tasks_of(&titler.url).is_empty(),
        "preMetadata waits for every postValidate plugin"
    );
    assert_eq!(
        p.fail_task(&task_b, "could not check").status,
        StatusCode::OK
    );
    p.settle();

    // A postValidate failure is recorded and the lifecycle goes on.
    let task = only_task(&p, &titler);
    assert_eq!(
        p.answer_task(
            &task,
            &json!({ "title": "Merged title", "tags": ["Cats", " live ", "cats"] })
        )
        .status,
        StatusCode::OK
    );
    p.settle();
    let task = only_task(&p, &transcript);
    let post = &p.delivered_to(&transcript.url)[0]["data"];
    assert_eq!(
        post["pluginData"][key(&validator)],
        json!({ "valid": true })
    );
    assert_eq!(post["pluginData"][key(&checker_a)], json!({ "ok": 1 }));
    assert!(post["pluginData"].get(key(&checker_b)).is_none());
    assert_eq!(post["video"]["title"], "Merged title");
    assert_eq!(
        p.video_status(&video),
        "ready",
        "not published before the last hook"
    );
    let transcript_url = "https://example.com/t.vtt";
    assert_eq!(
        p.answer_task(
            &task,
            &json!({ "transcript_url": transcript_url, "words": 3 })
        )
        .status,
        StatusCode::OK
    );
    p.settle();

    let hooks: Vec<String> = hook_deliveries(&p).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        hooks,
        [
            "plugin.preValidate",
            "plugin.postValidate",
            "plugin.postValidate",
            "plugin.preMetadata",
            "plugin.postMetadata"
        ]
    );
    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "published");
    assert_eq!(stored["title"], "Merged title");
    let mut tags: Vec<&str> = stored["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["cats", "live"]);
    assert_eq!(stored["metadata"]["transcript_url"], transcript_url);
    assert_eq!(stored["metadata"][key(&transcript)]["words"], 3);
    assert_eq!(
        stored["metadata"][key(&validator)],
        json!({ "valid": true })
    );
    assert_eq!(events(&p, &video, "plugin.failed").len(), 1);
    assert_eq!(events(&p, &video, "video.published").len(), 1);

    let published = p.delivered_to(&watcher.url);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["type"], "video.published");
    assert_eq!(published[0]["data"]["video"]["title"], "Merged title");
    let completed = p.delivered_to(&lifecycle_watcher.url);
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["data"]["status"], "completed");
    let mut keys: Vec<&String> = completed[0]["data"]["pluginData"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    keys.sort_unstable();
    let mut expected: Vec<String> = [&checker_a, &titler, &transcript, &validator]
        .into_iter()
        .map(key)
        .collect();
    expected.sort_unstable();
    assert_eq!(keys, expected.iter().collect::<Vec<_>>());
    let public = p.get(&format!("/api/videos/{video}")).json();
    assert_eq!(public["status"], "published");
}

#[test]
fn racing_answers_to_one_task_record_one_result() {
    let p = TestPlatform::new();
    let (_, plugins) = developer_plugins(&p, &[("racer", "preValidate")]);
    let video = ready_video(&p);
    let task = only_task(&p, &plugins[0]);
    let results: Vec<Value> = (0..8)
        .map(|i| json!({ "valid": true, "title": format!("race {i}"), "tags": [format!("race{i}")] }))
        .collect();
    let requests: Vec<_> = results
        .iter()
        .map(|result| TestPlatform::success_request(&task, result))
        .collect();
    // All eight run at once, interleaved at every SQL round trip.
    let replies: Vec<StatusCode> = join_all(
        requests
            .into_iter()
            .map(|r| edgevideo_core::handle(&p, r))
            .collect(),
    )
    .into_iter()
    .map(|r| r.status())
    .collect();
    let mut sorted = replies.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [vec![StatusCode::OK], vec![StatusCode::CONFLICT; 7]].concat(),
        "{replies:?}"
    );
    p.settle();
    let winner = &results[replies.iter().position(|s| *s == StatusCode::OK).unwrap()];
    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "published");
    assert_eq!(stored["title"], winner["title"]);
    let race_tags: Vec<&Value> = stored["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.as_str().is_some_and(|t| t.starts_with("race")))
        .collect();
    assert_eq!(
        race_tags,
        winner["tags"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(stored["metadata"][key(&plugins[0])], *winner);
    assert_eq!(events(&p, &video, "plugin.succeeded").len(), 1);
    assert_eq!(events(&p, &video, "lifecycle.completed").len(), 1);
    let counter = block_on(p.sql.query(&Statement::new(
        "SELECT value FROM counters WHERE name = 'plugins.preValidate.succeeded'",
        vec![],
    )))
    .unwrap();
    assert_eq!(counter[0]["value"], 1, "the success is counted once");
}

#[test]
fn task_answers_are_checked() {
    let p = TestPlatform::new();
    let (_, plugins) = developer_plugins(&p, &[("holder", "preValidate")]);
    let video = ready_video(&p);
    let task = only_task(&p, &plugins[0]);
    // The token reached the plugin, but no copy of it is stored (the delivery adds it when
    // it sends).
    let token = task["token"]
        .as_str()
        .expect("the delivered task has its token");
    assert!(token.len() >= 40, "{token}");
    let stored = block_on(p.sql.query(&Statement::new(
        "SELECT payload FROM webhook_deliveries WHERE event_type = 'plugin.preValidate'",
        vec![],
    )))
    .unwrap();
    assert_eq!(stored.len(), 1);
    let payload = stored[0]["payload"].as_str().unwrap();
    assert!(payload.contains(task["id"].as_str().unwrap()) && !payload.contains(token));
    let mut wrong_token = task.clone();
    wrong_token["token"] = json!("wrong");
    assert_eq!(
        p.answer_task(&wrong_token, &json!({ "valid": true }))
            .status,
        StatusCode::FORBIDDEN
    );
    let mut unknown = task.clone();
    unknown["success_url"] =
        json!("https://edge.test/api/plugins/tasks/tsk_AAAAAAAAAAAAAAAA/success");
    assert_eq!(
        p.answer_task(&unknown, &json!({ "valid": true })).status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        p.video_status(&video),
        "ready",
        "refused answers change nothing"
    );
    assert_eq!(
        p.answer_task(&task, &json!({ "valid": true })).status,
        StatusCode::OK
    );
    let again = p.answer_task(&task, &json!({ "valid": false }));
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert_eq!(again.error_code().as_deref(), Some("conflict"));
    assert_eq!(
        p.fail_task(&task, "late failure").status,
        StatusCode::CONFLICT
    );
    p.settle();
    assert_eq!(p.video_status(&video), "published");
}

#[test]
fn prevalidate_invalid_rejects_the_video_and_no_later_hook_runs() {
    let p = TestPlatform::new();
    let (_, plugins) =
        developer_plugins(&p, &[("strict", "preValidate"), ("later", "postValidate")]);
    let video = ready_video(&p);
    let task = only_task(&p, &plugins[0]);
    assert_eq!(
        p.answer_task(&task, &json!({ "valid": false, "reason": "too short" }))
            .status,
        StatusCode::OK
    );
    p.settle();
    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "rejected");
    assert!(
        stored["reject_reason"]
            .as_str()
            .is_some_and(|r| r.contains("too short")),
        "{stored}"
    );
    // Even after every deadline.
    p.advance_ms(3600 * 1000);
    p.settle();
    assert!(
        p.tasks_of(&plugins[1].url).is_empty(),
        "no hook runs after a rejection"
    );
    assert_eq!(p.video_status(&video), "rejected");
    assert!(p
        .get(&format!("/api/videos/{video}"))
        .status
        .is_client_error());
}

/// The channel's thumbnail, if it has one.
fn thumbnail(p: &TestPlatform, video: &str) -> Option<Vec<u8>> {
    let channel = p.stored_video(video)["channel_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = edgevideo_core::services::videos::thumbnail_key(&channel);
    block_on(p.blobs.get(&key, None))
        .unwrap()
        .map(|blob| blob.bytes)
}

#[test]
fn a_published_videos_poster_becomes_its_channels_thumbnail_a_rejected_ones_never() {
    const JPEG: &[u8] = b"\xff\xd8\xff poster";
    let p = TestPlatform::new();
    let (_, plugins) = developer_plugins(&p, &[("judge", "preValidate")]);
    let mut videos = Vec::new();
    for valid in [false, true] {
        let video = ready_video(&p);
        let (key, _) = edgevideo_core::services::videos::file_key(&video, "poster").unwrap();
        block_on(p.blobs.put(&key, JPEG.to_vec(), "image/jpeg")).unwrap();
        let tasks = p.tasks_of(&plugins[0].url);
        let task = tasks.last().unwrap();
        p.answer_task(task, &json!({ "valid": valid, "reason": "judged" }));
        p.settle();
        videos.push(video);
    }
    assert_eq!(p.video_status(&videos[0]), "rejected");
    assert_eq!(p.video_status(&videos[1]), "published");
    assert_eq!(thumbnail(&p, &videos[1]).as_deref(), Some(JPEG));
    // Each video has its own channel here: the rejected one's shows nothing.
    assert_eq!(thumbnail(&p, &videos[0]), None);
}

#[test]
fn a_prevalidate_failure_rejects_the_video() {
    let p = TestPlatform::new();
    let (_, plugins) = developer_plugins(&p, &[("fragile", "preValidate")]);
    let video = ready_video(&p);
    let task = only_task(&p, &plugins[0]);
    assert_eq!(p.fail_task(&task, "model crashed").status, StatusCode::OK);
    p.settle();
    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "rejected");
    assert!(
        stored["reject_reason"]
            .as_str()
            .is_some_and(|r| r.contains("model crashed")),
        "{stored}"
    );
}

#[test]
fn a_passed_deadline_times_the_task_out_and_the_lifecycle_goes_on() {
    let p = TestPlatform::new();
    let (_, plugins) = developer_plugins(&p, &[("silent", "postValidate")]);
    let video = ready_video(&p);
    let task = only_task(&p, &plugins[0]);
    let deadline_s = p.config.plugin_deadlines_s[1];
    // Just before the deadline nothing happens.
    p.advance_ms(deadline_s * 1000 - 1000);
    p.settle();
    assert_eq!(p.video_status(&video), "ready");
    assert!(events(&p, &video, "plugin.timed_out").is_empty());
    p.advance_ms(2000);
    p.settle();
    assert_eq!(events(&p, &video, "plugin.timed_out").len(), 1);
    assert_eq!(
        p.video_status(&video),
        "published",
        "postValidate timeouts do not reject"
    );
    assert_eq!(
        p.answer_task(&task, &json!({})).status,
        StatusCode::CONFLICT,
        "an answer after the deadline is refused"
    );
}

#[test]
fn a_prevalidate_deadline_rejects_the_video() {
    let p = TestPlatform::with_vars(&[("PLUGIN_DEADLINES_SECONDS", "5,5,5,5")]).unwrap();
    let (_, plugins) = developer_plugins(&p, &[("sleepy", "preValidate")]);
    let video = ready_video(&p);
    only_task(&p, &plugins[0]);
    p.advance_ms(6000);
    p.settle();
    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "rejected");
    assert!(
        stored["reject_reason"]
            .as_str()
            .is_some_and(|r| r.contains("did not answer in time")),
        "{stored}"
    );
}

#[test]
fn a_long_multibyte_failure_text_is_cut_without_a_panic() {
    let p = TestPlatform::new();
    let (_, plugins) = developer_plugins(&p, &[("breaker", "preValidate")]);
    let video = ready_video(&p);
    let task = only_task(&p, &plugins[0]);
    // 1 + 2 * 1500 bytes: byte 2,000 falls inside a two-byte character.
    let error = format!("x{}", "é".repeat(1500));
    let mut wrong_token = task.clone();
    wrong_token["token"] = json!("wrong");
    assert_eq!(
        p.fail_task(&wrong_token, &error).status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(p.fail_task(&task, &error).status, StatusCode::OK);
    p.settle();
    assert_eq!(
        p.video_status(&video),
        "rejected",
        "a preValidate failure rejects"
    );
}

//! The catalogue in process, as in `tests/e2e/test_catalogue.py`: `GET /api/videos` pages
//! newest first with cursors that neither repeat nor skip, filters by tag and free text, and
//! lists only published public videos to the public (owners also see their others).

use edgevideo_testkit::client::{job_id, RegisteredPlugin};
use edgevideo_testkit::{Session, TestPlatform};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// Every page of `path` (which carries its own query) with `limit`, following the cursors.
fn all_pages(p: &TestPlatform, path: &str, token: Option<&str>, limit: u32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let separator = if path.contains('?') { '&' } else { '?' };
    for _ in 0..100 {
        let mut url = format!("{path}{separator}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let reply = p.call(Method::GET, &url, token, None);
        assert_eq!(reply.status, StatusCode::OK, "{url}: {}", reply.text());
        let page = reply.json();
        let videos = page["videos"].as_array().unwrap();
        assert!(videos.len() <= limit as usize);
        seen.extend(videos.iter().map(|v| v["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
    panic!("more than 100 pages of {path}");
}

/// The lifecycle's plugins for the first videos: a validator and a tagger.
struct Plugins {
    dev: Session,
    validator: RegisteredPlugin,
    tagger: RegisteredPlugin,
}

/// Takes a video through its lifecycle with the plugins: the validator answers `valid`,
/// the tagger `tags`.
fn through_plugins(p: &TestPlatform, plugins: &Plugins, video: &str, valid: bool, tags: &[&str]) {
    p.settle();
    assert_eq!(p.transcode_completed(video).status, StatusCode::OK);
    p.settle();
    let task = p.tasks_of(&plugins.validator.url).pop().unwrap();
    assert_eq!(task["id"], last_task_of(p, video, &plugins.validator.url));
    assert_eq!(
        p.answer_task(&task, &json!({ "valid": valid, "reason": "not this one" }))
            .status,
        StatusCode::OK
    );
    p.settle();
    if valid {
        let task = p.tasks_of(&plugins.tagger.url).pop().unwrap();
        assert_eq!(
            p.answer_task(&task, &json!({ "tags": tags })).status,
            StatusCode::OK
        );
        p.settle();
    }
}

/// The id of the last task delivered to `url`, checking it is about `video`.
fn last_task_of(p: &TestPlatform, video: &str, url: &str) -> Value {
    let event = p.delivered_to(url).pop().unwrap();
    assert_eq!(event["data"]["video"]["id"], video);
    event["data"]["task"]["id"].clone()
}

#[test]
fn paging_filters_and_visibility_over_many_videos() {
    let p = TestPlatform::new();
    let (cook, cooking) = p.broadcaster("Cooking with Ada");
    let (gardener, garden) = p.broadcaster("Gardening");

    // First, with plugins: three tagged videos and one rejected.
    let dev = p.developer();
    let plugins = Plugins {
        validator: p.register_plugin(&dev, "validator", "preValidate"),
        tagger: p.register_plugin(&dev, "tagger", "preMetadata"),
        dev,
    };
    let mut published = Vec::new();
    for i in 0..4 {
        let video = p.record_video(&gardener, &garden, 1);
        let valid = i != 2;
        through_plugins(&p, &plugins, &video, valid, &["Roses", "green"]);
        if valid {
            published.push(video);
        } else {
            assert_eq!(p.stored_video(&video)["status"], "rejected");
        }
        p.advance_ms(1000);
    }
    let tagged = published.clone();
    for plugin in [&plugins.validator, &plugins.tagger] {
        let reply = p.call(
            Method::DELETE,
            &format!("/api/plugins/{}", plugin.id),
            Some(&plugins.dev.token),
            None,
        );
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }

    // Then twenty plain ones on both channels.
    let mut cooking_videos = Vec::new();
    for i in 0..20 {
        let (owner, channel) = if i % 2 == 0 {
            (&cook, &cooking)
        } else {
            (&gardener, &garden)
        };
        let video = p.published_video(owner, channel);
        if i % 2 == 0 {
            cooking_videos.push(video.clone());
        }
        published.push(video);
        p.advance_ms(1000);
    }
    // And two the public must not see: one still processing, one failed.
    let processing = p.record_video(&cook, &cooking, 1);
    p.settle();
    let failed = p.record_video(&cook, &cooking, 1);
    p.settle();
    p.transcoder_callback(
        &json!({ "type": "transcode.failed", "job_id": job_id(&failed), "video_id": failed }),
        None,
    );
    assert_eq!(p.stored_video(&failed)["status"], "failed");
    for video in &published {
        assert_eq!(p.stored_video(video)["status"], "published", "{video}");
    }

    let newest_first: Vec<String> = published.iter().rev().cloned().collect();
    for limit in [7, 1, 100] {
        let seen = all_pages(&p, "/api/videos", None, limit);
        assert_eq!(
            seen, newest_first,
            "limit {limit}: each published video once, in order"
        );
    }
    // The hot first page (no parameters, cached) agrees.
    let first = p.get("/api/videos").json();
    let first: Vec<&str> = first["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, newest_first[..first.len()]);

    // Filters.
    let tag = all_pages(&p, "/api/videos?tag=roses", None, 2);
    assert_eq!(tag, tagged.iter().rev().cloned().collect::<Vec<_>>());
    let search = all_pages(&p, "/api/videos?q=cooking", None, 4);
    assert_eq!(
        search,
        cooking_videos.iter().rev().cloned().collect::<Vec<_>>()
    );
    let by_tag_text = all_pages(&p, "/api/videos?q=gree", None, 10);
    assert_eq!(by_tag_text, tag, "free text matches tags too");
    let channel = all_pages(&p, &format!("/api/videos?channel={garden}"), None, 5);
    let garden_published: Vec<String> = newest_first
        .iter()
        .filter(|v| !cooking_videos.contains(v))
        .cloned()
        .collect();
    assert_eq!(channel, garden_published);
    assert!(all_pages(&p, "/api/videos?q=nothing-like-this", None, 5).is_empty());

    // Hidden statuses: not for the public, even when asked for by status.
    for status in ["processing", "failed", "rejected", "ready"] {
        let hidden = all_pages(&p, &format!("/api/videos?status={status}"), None, 10);
        assert!(hidden.is_empty(), "{status}: {hidden:?}");
    }
    // Their owner sees them in their own listing, newest first.
    let mine = all_pages(&p, "/api/videos?mine=true", Some(&cook.token), 3);
    let mut expected = vec![failed.clone(), processing.clone()];
    expected.extend(cooking_videos.iter().rev().cloned());
    assert_eq!(mine, expected);
    let rejected = all_pages(&p, "/api/videos?status=rejected", Some(&gardener.token), 3);
    assert_eq!(rejected.len(), 1);

    // A cursor only continues its own listing.
    let page = p.get("/api/videos?limit=2").json();
    let cursor = page["next_cursor"].as_str().unwrap();
    let reply = p.get(&format!("/api/videos?tag=roses&limit=2&cursor={cursor}"));
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code().as_deref(), Some("invalid_cursor"));
}

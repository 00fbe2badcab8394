//! The transcoder's side in process: the queue consumer sends a signed job for a finished
//! broadcast, and the signed `POST /api/transcoder/callback` makes the video `ready` and starts
//! its lifecycle, marks it `failed`, or cleans up after a deleted video; a bad signature
//! changes nothing.

use edgevideo_core::model::job::Job;
use edgevideo_core::ports::{Blobs as _, Sql as _, Statement};
use edgevideo_core::services::videos;
use edgevideo_core::webhooks;
use edgevideo_testkit::client::job_id;
use edgevideo_testkit::exec::block_on;
use edgevideo_testkit::platform::{TRANSCODER_SECRET, TRANSCODER_URL};
use edgevideo_testkit::{Session, TestPlatform};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

/// A broadcaster's recording, its transcode job run: `processing`.
fn processing_video(p: &TestPlatform) -> (Session, String) {
    let (owner, channel) = p.broadcaster("Transcode channel");
    let video = p.record_video(&owner, &channel, 3);
    p.settle();
    (owner, video)
}

fn events(p: &TestPlatform, video: &str) -> Vec<String> {
    p.stored_video(video)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_finished_broadcast_sends_a_signed_transcode_job() {
    let p = TestPlatform::new();
    let (_, video) = processing_video(&p);
    assert!(p
        .jobs
        .history
        .borrow()
        .iter()
        .any(|(job, _)| matches!(job, Job::Transcode { video_id, .. } if *video_id == video)));
    let sent: Vec<_> = p
        .outbound
        .sent
        .borrow()
        .iter()
        .filter(|r| r.url.starts_with(TRANSCODER_URL))
        .cloned()
        .collect();
    assert_eq!(sent.len(), 1);
    let mut headers = HeaderMap::new();
    for (name, value) in &sent[0].headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let key = webhooks::WebhookKey::from_secret(TRANSCODER_SECRET).unwrap();
    key.verify(
        |name| headers.get(name)?.to_str().ok(),
        &sent[0].body,
        p.now_ms() / 1000,
    )
    .expect("signed job");
    let job: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(job["video_id"], video.as_str());
    assert_eq!(job["inputs"].as_array().map(Vec::len), Some(3), "{job}");
    assert_eq!(p.stored_video(&video)["status"], "processing");
    // The segment list is in the blob store beside the segments, not in the catalogue row
    // (a long broadcast's list would outgrow a row).
    let rows = block_on(p.sql.query(&Statement::new(
        "SELECT channel_id, id, segments, segment_count FROM broadcasts",
        vec![],
    )))
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["segments"], "[]");
    assert_eq!(rows[0]["segment_count"], 3);
    let key = videos::recording_segments_key(
        rows[0]["channel_id"].as_str().unwrap(),
        rows[0]["id"].as_str().unwrap(),
    );
    let list = block_on(p.blobs.get(&key, None))
        .unwrap()
        .expect("segment list");
    let list: Vec<Value> = serde_json::from_slice(&list.bytes).unwrap();
    assert_eq!(list.len(), 3);
}

#[test]
fn a_signed_completion_makes_the_video_ready_and_starts_the_lifecycle() {
    let p = TestPlatform::new();
    let dev = p.developer();
    let validator = p.register_plugin(&dev, "validator", "preValidate");
    let watcher = p.register_plugin(&dev, "ready-watcher", "video.ready");
    let (_, video) = processing_video(&p);
    let reply = p.transcode_completed(&video);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), json!({ "ok": true }));
    p.settle();
    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "ready", "{stored}");
    assert_eq!(stored["duration_ms"], 4000);
    assert_eq!(stored["width"], 320);
    assert_eq!(stored["height"], 180);
    assert_eq!(stored["size_bytes"], 123_456);
    assert_eq!(stored["mp4_key"], format!("videos/{video}/video.mp4"));
    assert!(stored["poster_key"].is_string(), "{stored}");
    let kinds = events(&p, &video);
    assert!(
        kinds.contains(&"transcode.finished".to_owned()),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"lifecycle.started".to_owned()), "{kinds:?}");
    // The lifecycle's first hook got its task; the subscriber heard of the video.
    assert_eq!(p.tasks_of(&validator.url).len(), 1);
    let ready = p.delivered_to(&watcher.url);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0]["data"]["video_id"], video.as_str());
    assert_eq!(ready[0]["data"]["mp4"]["width"], 320);

    // A repeated callback changes nothing.
    assert_eq!(p.transcode_completed(&video).status, StatusCode::OK);
    p.settle();
    let again = events(&p, &video);
    assert_eq!(again, kinds);
    assert_eq!(p.tasks_of(&validator.url).len(), 1);
    assert_eq!(p.delivered_to(&watcher.url).len(), 1);
}

#[test]
fn a_bad_signature_is_refused_and_nothing_changes() {
    let p = TestPlatform::new();
    let (_, video) = processing_video(&p);
    let before = p.stored_video(&video);
    let jobs_before = p.jobs.history.borrow().len();
    let body = json!({ "type": "transcode.completed", "job_id": job_id(&video), "video_id": video, "width": 1, "height": 1 });
    p.sql.reset_counts();
    let forged = p.transcoder_callback(&body, Some("whsec_Zm9yZ2VkLXNlY3JldC1mb3JnZWQtc2VjcmV0"));
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text());
    assert_eq!(forged.error_code().as_deref(), Some("forbidden"));
    let unsigned = p.call(Method::POST, "/api/transcoder/callback", None, Some(&body));
    assert_eq!(unsigned.status, StatusCode::FORBIDDEN);
    assert_eq!(p.sql.counts().statements, 0, "refused before any SQL");
    p.settle();
    assert_eq!(p.stored_video(&video), before);
    assert_eq!(p.jobs.history.borrow().len(), jobs_before);
}

#[test]
fn a_callback_naming_keys_outside_the_video_is_refused_and_nothing_changes() {
    let p = TestPlatform::new();
    let (_, video) = processing_video(&p);
    let before = p.stored_video(&video);
    for (field, key) in [
        (
            "output_key",
            "videos/vid_someoneelse000/video.mp4".to_owned(),
        ),
        ("output_key", "live/ch_x/brd_y/index0.ts".to_owned()),
        ("poster_key", format!("videos/{video}/../poster.jpg")),
    ] {
        let mut body = json!({ "type": "transcode.completed", "job_id": job_id(&video), "video_id": video, "width": 1, "height": 1 });
        body[field] = json!(key);
        let reply = p.transcoder_callback(&body, None);
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{field} {key}: {}",
            reply.text()
        );
        assert_eq!(reply.error_code().as_deref(), Some("invalid_callback"));
    }
    p.settle();
    assert_eq!(p.stored_video(&video), before);
    // The video's own key is accepted.
    let mut body = json!({ "type": "transcode.completed", "job_id": job_id(&video), "video_id": video, "width": 1, "height": 1 });
    body["output_key"] = json!(format!("videos/{video}/video.mp4"));
    assert_eq!(p.transcoder_callback(&body, None).status, StatusCode::OK);
}

#[test]
fn a_callback_for_a_deleted_video_removes_its_uploads_and_changes_nothing_else() {
    let p = TestPlatform::new();
    let (owner, video) = processing_video(&p);
    let reply = p.call(
        Method::DELETE,
        &format!("/api/videos/{video}"),
        Some(&owner.token),
        None,
    );
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["deleted"], video.as_str());
    // The transcoder uploaded its MP4 while the video was being deleted.
    let key = format!("videos/{video}/video.mp4");
    block_on(p.blobs.put(&key, b"mp4".to_vec(), "video/mp4")).unwrap();
    let reply = p.transcode_completed(&video);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["video"], "deleted");
    assert_eq!(body["objects_removed"], 1);
    assert_eq!(block_on(p.blobs.head(&key)).unwrap(), None);
    assert_eq!(p.stored_video(&video)["error"]["code"], "not_found");
    p.settle();
}

#[test]
fn a_failed_transcode_marks_the_video_failed() {
    let p = TestPlatform::new();
    let (owner, video) = processing_video(&p);
    let reply = p.transcoder_callback(
        &json!({
            "type": "transcode.failed",
            "job_id": job_id(&video),
            "video_id": video,
            "error": { "code": "invalid_media", "message": "bad input" },
        }),
        None,
    );
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "failed");
    let failed = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "transcode.failed")
        .cloned()
        .expect("a transcode.failed event");
    assert!(failed["detail"].as_str().unwrap().contains("bad input"));
    // The owner still sees it; the public does not.
    let mine = p.call(
        Method::GET,
        &format!("/api/videos/{video}"),
        Some(&owner.token),
        None,
    );
    assert_eq!(mine.json()["status"], "failed");
    assert!(p
        .get(&format!("/api/videos/{video}"))
        .status
        .is_client_error());
    let unknown = p.transcoder_callback(
        &json!({ "type": "transcode.exploded", "video_id": video }),
        None,
    );
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    // The callback is a typed message (edgevideo-protocol): an unknown type does not parse.
    assert_eq!(unknown.error_code().as_deref(), Some("invalid_json"));
}

/// The job requests sent to the transcoder so far.
fn transcoder_sends(p: &TestPlatform) -> usize {
    p.outbound
        .sent
        .borrow()
        .iter()
        .filter(|r| r.url.starts_with(TRANSCODER_URL))
        .count()
}

/// The re-drive delay of the default configuration, in ms.
const REDRIVE_MS: u64 = 900_000;

#[test]
fn a_lost_transcode_job_is_sent_again_until_answered() {
    let p = TestPlatform::new();
    let (_, video) = processing_video(&p);
    assert_eq!(transcoder_sends(&p), 1);
    // Before the re-drive deadline nothing is sent again.
    p.advance_ms(REDRIVE_MS - 1_000);
    p.settle();
    assert_eq!(transcoder_sends(&p), 1);
    // The transcoder lost the job (no answer by the deadline): it is sent again, same job id.
    p.advance_ms(1_000);
    p.settle();
    let sent = p.outbound.sent.borrow().clone();
    let jobs: Vec<Value> = sent
        .iter()
        .filter(|r| r.url.starts_with(TRANSCODER_URL))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["job_id"], jobs[1]["job_id"]);
    assert_eq!(p.stored_video(&video)["status"], "processing");
    // Answered now: the next check sends nothing and queues nothing.
    let reply = p.transcode_completed(&video);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    p.settle();
    p.advance_ms(REDRIVE_MS);
    p.settle();
    assert_eq!(transcoder_sends(&p), 2);
    p.advance_ms(10 * REDRIVE_MS);
    assert!(p.settle().is_empty(), "no further checks");
    assert_eq!(p.stored_video(&video)["status"], "published");
}

#[test]
fn a_resending_the_transcoder_still_has_counts_as_sent_and_the_checks_go_on() {
    let p = TestPlatform::new();
    let (_, video) = processing_video(&p);
    // The transcoder still has the job (stuck on it): the re-sending, whose URLs are signed
    // afresh, is a conflict with the job it holds.
    let conflict = edgevideo_core::ports::OutboundResponse {
        status: 409,
        body: br#"{"error":{"code":"job_conflict","message":"job_id was used for another job"}}"#
            .to_vec(),
    };
    p.outbound
        .script(&format!("{TRANSCODER_URL}/jobs"), [Ok(conflict)]);
    p.advance_ms(REDRIVE_MS);
    let ran = p.settle(); // a refused job would fail the run here
    assert!(ran
        .iter()
        .any(|j| matches!(j, Job::Transcode { attempt: 1, .. })));
    assert_eq!(transcoder_sends(&p), 2);
    // The chain goes on: lost after all (a replaced container), the next check sends again.
    p.advance_ms(REDRIVE_MS);
    p.settle();
    assert_eq!(transcoder_sends(&p), 3);
    assert_eq!(p.stored_video(&video)["status"], "processing");
}

#[test]
fn a_transcoder_that_never_answers_leaves_the_video_failed() {
    let p = TestPlatform::new();
    let (_, video) = processing_video(&p);
    for _ in 0..10 {
        p.advance_ms(REDRIVE_MS);
        p.settle();
    }
    assert_eq!(
        transcoder_sends(&p),
        edgevideo_core::services::transcode::MAX_SENDS as usize
    );
    let stored = p.stored_video(&video);
    assert_eq!(stored["status"], "failed");
    assert!(events(&p, &video).contains(&"transcode.failed".to_owned()));
}

#[test]
fn a_redrive_of_zero_sends_once() {
    let p = TestPlatform::with_vars(&[("TRANSCODE_REDRIVE_SECONDS", "0")]).unwrap();
    let (_, video) = processing_video(&p);
    p.advance_ms(10 * REDRIVE_MS);
    let ran = p.settle();
    assert!(
        !ran.iter().any(|job| matches!(job, Job::Transcode { .. })),
        "no re-drive: {ran:?}"
    );
    assert_eq!(transcoder_sends(&p), 1);
    assert_eq!(p.stored_video(&video)["status"], "processing");
}

//! The plugin lifecycle of a video (serverlessVideo's `PluginLifecycleWorkflow`), run when a
//! video becomes `ready`: the hooks `preValidate`, `postValidate`, `preMetadata`,
//! `postMetadata` one after the other; all plugins of a hook in parallel, each with a task
//! (id, single-use token, callback URL, deadline) and the outputs of earlier hooks. Plugins
//! answer at `POST /api/plugins/tasks/{id}/success|failure`; deadlines are enforced by delayed
//! jobs, never by waiting inside a request. A `preValidate` `{"valid": false}`, failure or
//! timeout rejects the video; other failures are recorded and the lifecycle goes on. Results
//! merge into the video; at the end it is `published`.
//!
//! Every step is a conditional update in the catalogue ([`crate::store::lifecycles`]), so
//! concurrent answers, retried jobs and repeated callbacks move the lifecycle exactly once:
//! - [`start`] creates the lifecycle once and calls [`advance`];
//! - [`advance`] finds the next hook with plugins and runs it (`run_hook`: one claimed
//!   batch of tasks and deliveries), or completes the lifecycle (`complete`);
//! - [`answer`] and [`deadline`] finish a task (`finish_task`: one batch guarded on the
//!   answer id), then reject the video or advance when the hook is done.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, StoreError};
use crate::model::hook::{Event, Hook, TaskStatus};
use crate::model::job::Job;
use crate::model::room::{RoomRequest, LOBBY};
use crate::model::signed_url::{Scope, UrlToken};
use crate::ports::{Blobs as _, Jobs as _, Live as _, Platform, Sql as _, Statement};
use crate::room::ServerMessage;
use crate::services::delivery;
use crate::store::catalogue;
use crate::store::lifecycles::{self, NewTask, Task, TaskEnd};
use crate::store::plugins::Plugin;
use crate::store::videos::{self, TextField};
use crate::store::{events, plugins};

/// How a plugin answered its task.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `/success` with a JSON result.
    Success(Value),
    /// `/failure` with an error message.
    Failure(String),
}

fn now_ms<P: Platform>(p: &P) -> i64 {
    p.clock().now_ms() as i64
}

fn public_url<P: Platform>(p: &P) -> Result<&str, StoreError> {
    p.config()
        .public_url
        .as_deref()
        .ok_or_else(|| StoreError::Precondition("PUBLIC_URL is not set".into()))
}

fn deadline_s<P: Platform>(p: &P, hook: Hook) -> u64 {
    p.config().plugin_deadlines_s[hook.index()]
}

/// The video as plugins see it, with signed playback URLs.
async fn video_payload<P: Platform>(p: &P, video_id: &str) -> Result<Value, StoreError> {
    let row = catalogue::video_detail(p.sql(), video_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("video {video_id}")))?;
    let (video, shown) = (&row.video, &row.shown);
    let token = UrlToken {
        scope: Scope::PlayVideo {
            video_id: video.id.clone(),
            channel_id: video.channel_id.clone(),
            broadcast_id: video.broadcast_id.clone(),
        },
        viewer: None,
        exp: p.clock().now_ms() / 1000 + p.config().playback_url_ttl_s,
    }
    .sign(p.config().url_signing_secret.as_bytes());
    let base = format!("{}/play/{token}", public_url(p)?);
    Ok(json!({
        "id": video.id,
        "channel_id": video.channel_id,
        "owner_id": video.owner_id,
        "status": video.status,
        "title": video.title,
        "description": shown.description,
        "tags": serde_json::from_str::<Value>(&shown.tags).unwrap_or(json!([])),
        "metadata": serde_json::from_str::<Value>(&row.metadata).unwrap_or(json!({})),
        "duration_ms": video.duration_ms,
        "width": shown.width,
        "height": shown.height,
        "hls_url": format!("{base}/index.m3u8"),
        "mp4_url": video.mp4_key.as_ref().map(|_| format!("{base}/video.mp4")),
    }))
}

/// The outputs of the video's answered tasks so far, keyed `plugin-{id}` (by the plugin's
/// id, not its name: names are unique per owner only, so another developer may reuse one).
///
/// # Errors
/// `Backend` when the query fails.
pub async fn outputs<P: Platform>(p: &P, video_id: &str) -> Result<Map<String, Value>, StoreError> {
    let rows = lifecycles::outputs(p.sql(), video_id).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let result = r
                .result
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null);
            (format!("plugin-{}", r.plugin_id), result)
        })
        .collect())
}

/// Starts the lifecycle of a video that has become `ready`; a second start is a no-op.
///
/// # Errors
/// Whatever the ports report.
pub async fn start<P: Platform>(p: &P, video_id: &str) -> Result<(), StoreError> {
    let now = now_ms(p);
    if !lifecycles::start(p.sql(), video_id, now).await? {
        return Ok(());
    }
    let started = Event::LifecycleStarted.as_str();
    p.sql()
        .execute(&events::record(video_id, started, &json!({}), now))
        .await?;
    let video = video_payload(p, video_id).await?;
    delivery::notify(
        p,
        started,
        video_id,
        json!({ "video": video, "pluginData": {} }),
    )
    .await?;
    advance(p, video_id, None).await
}

/// Moves the lifecycle on from `current` (`None`: from its start) when its tasks are all
/// answered: to the next hook that has plugins, or to the end. Only one caller moves it; the
/// others do nothing.
///
/// # Errors
/// Whatever the ports report.
pub async fn advance<P: Platform>(
    p: &P,
    video_id: &str,
    current: Option<Hook>,
) -> Result<(), StoreError> {
    for &hook in Hook::after(current) {
        let hook_plugins = plugins::enabled_for(p.sql(), hook.as_str(), video_id).await?;
        if hook_plugins.is_empty() {
            continue;
        }
        return run_hook(p, video_id, current, hook, &hook_plugins).await;
    }
    complete(p, video_id, current).await
}

/// What every task of one hook run shares.
struct HookRun<'a> {
    video_id: &'a str,
    hook: Hook,
    claim: String,
    now: i64,
    deadline_ms: i64,
    video: Value,
    plugin_data: Value,
}

/// One plugin's share of a hook run: its claimed statements (task, delivery), the delivery
/// job and the deadline job.
struct TaskFanOut {
    statements: [Statement; 2],
    delivery: Job,
    deadline: Job,
}

/// Runs `hook` for its plugins: one batch that claims the move from `current` and, only for
/// the claimant, creates a task and a delivery per plugin and records the step; then the
/// claimant queues the deliveries and the deadlines.
async fn run_hook<P: Platform>(
    p: &P,
    video_id: &str,
    current: Option<Hook>,
    hook: Hook,
    hook_plugins: &[Plugin],
) -> Result<(), StoreError> {
    let now = now_ms(p);
    let run = HookRun {
        video_id,
        hook,
        claim: p.entropy().new_id("clm"),
        now,
        deadline_ms: now + (deadline_s(p, hook) * 1000) as i64,
        video: video_payload(p, video_id).await?,
        plugin_data: Value::Object(outputs(p, video_id).await?),
    };
    let mut statements = vec![lifecycles::claim_hook(video_id, current, hook, &run.claim)];
    let deadline_delay_s = u32::try_from(deadline_s(p, hook) + 1).unwrap_or(u32::MAX);
    let mut jobs = Vec::with_capacity(hook_plugins.len() * 2);
    let mut deadlines = Vec::with_capacity(hook_plugins.len());
    for plugin in hook_plugins {
        let fan_out = task_fan_out(p, &run, plugin)?;
        statements.extend(fan_out.statements);
        jobs.push((fan_out.delivery, 0));
        deadlines.push((fan_out.deadline, deadline_delay_s));
    }
    // Deliveries first, so that a hook's whole fan-out goes out in one queue message batch.
    jobs.extend(deadlines);
    let detail = json!({ "hook": hook, "plugins": hook_plugins.len() });
    let step = events::record_select(video_id, "lifecycle.hook", &detail, now);
    statements.push(lifecycles::when_claimed(step, video_id, &run.claim));
    p.sql().batch(&statements).await?;
    let won = lifecycles::claim_of(p.sql(), video_id).await? == Some(run.claim);
    if !won {
        return Ok(());
    }
    p.jobs().enqueue_many(&jobs).await
}

/// A new task of `plugin` (id, single-use token, callback URLs) and its delivery.
fn task_fan_out<P: Platform>(
    p: &P,
    run: &HookRun<'_>,
    plugin: &Plugin,
) -> Result<TaskFanOut, StoreError> {
    let task_id = p.entropy().new_id("tsk");
    let token = delivery::task_token(p.config().url_signing_secret.as_bytes(), &task_id);
    let token_hash = hex_sha256(token.as_bytes());
    let task = lifecycles::insert_task(&NewTask {
        id: &task_id,
        video_id: run.video_id,
        plugin_id: &plugin.id,
        hook: run.hook,
        token_hash: &token_hash,
        deadline_at: run.deadline_ms,
        created_at: run.now,
    });
    let callback_url = format!("{}/api/plugins/tasks/{task_id}", public_url(p)?);
    let data = json!({
        "hook": run.hook,
        "video": run.video,
        "task": {
            // The token is not stored with the delivery: it is added when the delivery is
            // sent (`delivery::with_task_token`).
            "id": task_id,
            "callback_url": callback_url,
            "success_url": format!("{callback_url}/success"),
            "failure_url": format!("{callback_url}/failure"),
            "deadline_ms": run.deadline_ms,
        },
        "pluginData": run.plugin_data,
    });
    let event_type = format!("plugin.{}", run.hook.as_str());
    let new_delivery = delivery::prepare(p, plugin, &event_type, data);
    let claimed = |statement| lifecycles::when_claimed(statement, run.video_id, &run.claim);
    Ok(TaskFanOut {
        statements: [claimed(task), claimed(new_delivery.insert())],
        delivery: new_delivery.job(),
        deadline: Job::TaskDeadline { task_id },
    })
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ends the lifecycle after its last hook: the video is published (once), subscribers and
/// the live rooms are told.
async fn complete<P: Platform>(
    p: &P,
    video_id: &str,
    current: Option<Hook>,
) -> Result<(), StoreError> {
    let now = now_ms(p);
    if !lifecycles::complete(p.sql(), video_id, current, now).await? {
        return Ok(());
    }
    let outputs = outputs(p, video_id).await?;
    let completed = Event::LifecycleCompleted.as_str();
    let published = Event::VideoPublished.as_str();
    p.sql()
        .batch(&[
            videos::publish(video_id, now),
            events::record(video_id, completed, &json!({ "outputs": outputs }), now),
            events::record(video_id, published, &json!({}), now),
        ])
        .await?;
    // The hot lists (preview, first page) show published videos: drop their cached copies.
    crate::services::catalogue::invalidate(p.kv()).await?;
    let video = video_payload(p, video_id).await?;
    delivery::notify(
        p,
        completed,
        video_id,
        json!({ "video": video, "status": "completed", "pluginData": outputs }),
    )
    .await?;
    delivery::notify(p, published, video_id, json!({ "video": video })).await?;
    poster_as_thumbnail(p, video_id).await?;
    announce_published(p, video_id, &video).await
}

/// A published public video's poster becomes its channel's thumbnail on the home page (until
/// the channel's next browser broadcast sends pictures). Not before: a video that moderation
/// rejects, or a private one, never shows.
async fn poster_as_thumbnail<P: Platform>(p: &P, video_id: &str) -> Result<(), StoreError> {
    let Some(video) = videos::by_id(p.sql(), video_id).await? else {
        return Ok(());
    };
    let Some(poster) = video
        .poster_key
        .as_deref()
        .filter(|_| video.visibility == "public")
    else {
        return Ok(());
    };
    if let Some(blob) = p.blobs().get(poster, None).await? {
        let key = crate::services::videos::thumbnail_key(&video.channel_id);
        p.blobs().put(&key, blob.bytes, "image/jpeg").await?;
    }
    Ok(())
}

/// Tells the lobby and the video's channel room that the video is published.
async fn announce_published<P: Platform>(
    p: &P,
    video_id: &str,
    video: &Value,
) -> Result<(), StoreError> {
    let message = ServerMessage::VideoPublished {
        video_id: video_id.to_owned(),
        channel_id: video["channel_id"].as_str().unwrap_or_default().to_owned(),
        title: video["title"].as_str().unwrap_or_default().to_owned(),
    }
    .to_value();
    p.live()
        .call(
            LOBBY,
            &RoomRequest::Notify {
                message: message.clone(),
            },
        )
        .await?;
    if let Some(channel_id) = video["channel_id"].as_str() {
        p.live()
            .call(channel_id, &RoomRequest::Notify { message })
            .await?;
    }
    Ok(())
}

/// Ends a running lifecycle by rejecting its video (once), and tells subscribers.
async fn reject<P: Platform>(p: &P, video_id: &str, reason: &str) -> Result<(), StoreError> {
    let now = now_ms(p);
    if !lifecycles::reject(p.sql(), video_id, now).await? {
        return Ok(());
    }
    let outputs = outputs(p, video_id).await?;
    let completed = Event::LifecycleCompleted.as_str();
    let detail = json!({ "status": "rejected", "reason": reason, "outputs": outputs });
    p.sql()
        .batch(&[
            videos::reject(video_id, reason, now),
            events::record(video_id, completed, &detail, now),
        ])
        .await?;
    let video = video_payload(p, video_id).await?;
    delivery::notify(
        p,
        completed,
        video_id,
        json!({ "video": video, "status": "rejected", "reason": reason, "pluginData": outputs }),
    )
    .await
}

/// The statements that merge a plugin's result into its video: `title`, `description`,
/// `tags` (union), `transcript`/`transcript_url` into the metadata, and the whole result
/// under `plugin-{id}` (the plugin's id) in the metadata. Each is one atomic update, so
/// concurrent results of one hook do not overwrite each other; each waits for the answer
/// guard that `finish_task` fills in.
fn merge(video_id: &str, plugin_id: &str, result: &Value, now: i64) -> Vec<Statement> {
    let mut statements = vec![videos::merge_metadata(
        video_id,
        &format!("$.\"plugin-{plugin_id}\""),
        &result.to_string(),
        Some(now),
    )];
    for (field, key, limit) in [
        (TextField::Title, "title", 200),
        (TextField::Description, "description", 5000),
    ] {
        if let Some(text) = result.get(key).and_then(Value::as_str) {
            let text: String = text.chars().take(limit).collect();
            statements.push(videos::set_text(video_id, field, &text));
        }
    }
    if let Some(tags) = result.get("tags").and_then(Value::as_array) {
        let tags: Vec<String> = tags
            .iter()
            .filter_map(Value::as_str)
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty() && t.len() <= 50)
            .take(50)
            .collect();
        statements.push(videos::merge_tags(video_id, &json!(tags).to_string()));
    }
    for field in ["transcript", "transcript_url"] {
        if let Some(value) = result.get(field).filter(|v| v.is_string()) {
            let path = format!("$.{field}");
            statements.push(videos::merge_metadata(
                video_id,
                &path,
                &value.to_string(),
                None,
            ));
        }
    }
    statements
}

/// How a task ended.
enum Ending<'a> {
    /// The plugin answered.
    Answered(&'a Answer),
    /// Its deadline passed first.
    TimedOut,
}

impl Ending<'_> {
    /// The task's new status, its result and its error.
    fn outcome(&self) -> (TaskStatus, Option<&Value>, Option<&str>) {
        match self {
            Ending::Answered(Answer::Success(result)) => {
                (TaskStatus::Succeeded, Some(result), None)
            }
            Ending::Answered(Answer::Failure(error)) => (TaskStatus::Failed, None, Some(error)),
            Ending::TimedOut => (TaskStatus::TimedOut, None, Some("deadline passed")),
        }
    }

    /// The video event that records the ending: its kind and detail.
    fn event(&self, task: &Task, plugin_name: &str, now: i64) -> (String, Value) {
        let (status, result, error) = self.outcome();
        let kind = format!("plugin.{}", status.as_str());
        let detail = match self {
            Ending::Answered(_) => json!({
                "task_id": task.id,
                "plugin_id": task.plugin_id,
                "plugin": plugin_name,
                "hook": task.hook,
                "latency_ms": now - task.created_at,
                "result": result,
                "error": error,
            }),
            Ending::TimedOut => {
                json!({
                    "task_id": task.id,
                    "plugin_id": task.plugin_id,
                    "plugin": plugin_name,
                    "hook": task.hook,
                })
            }
        };
        (kind, detail)
    }
}

/// Finishes a pending task in one round trip: a batch whose first statement moves the task out
/// of `pending` and stamps it with a fresh answer id, whose other statements (counter, event,
/// merged results) apply only if that stamp is there, and whose last statement reads whether
/// it is and how many tasks of the hook are still pending. Returns that number, or `None`
/// when another answer or the deadline finished the task first (then nothing changed).
async fn finish_task<P: Platform>(
    p: &P,
    task: &Task,
    ending: &Ending<'_>,
) -> Result<Option<i64>, StoreError> {
    let now = now_ms(p);
    let answer_id = p.entropy().new_id("ans");
    let plugin_name = task.plugin_name.as_deref().unwrap_or_default();
    let (status, result, error) = ending.outcome();
    let (kind, detail) = ending.event(task, plugin_name, now);
    let counter = if status == TaskStatus::Succeeded {
        "succeeded"
    } else {
        "failed"
    };
    let guarded = |statement| lifecycles::when_answered(statement, &task.id, &answer_id);
    let mut statements = vec![
        lifecycles::finish_task(&TaskEnd {
            task_id: &task.id,
            status,
            result,
            error,
            now_ms: now,
            answer_id: &answer_id,
        }),
        guarded(lifecycles::count_answer(task.hook, counter)),
        guarded(events::record_when_answered(
            &task.video_id,
            &kind,
            &detail,
            now,
        )),
    ];
    if let Some(result) = result {
        let merged = merge(&task.video_id, &task.plugin_id, result, now);
        statements.extend(merged.into_iter().map(guarded));
    }
    statements.push(lifecycles::answer_state_query(
        &task.id,
        &answer_id,
        &task.video_id,
        task.hook,
    ));
    let results = p.sql().batch(&statements).await?;
    Ok(lifecycles::answer_state(results.last()))
}

/// Why an answer to a `preValidate` task rejects the video, if it does.
fn rejection(task: &Task, answer: &Answer) -> Option<String> {
    if task.hook != Hook::PreValidate {
        return None;
    }
    let plugin_name = task.plugin_name.as_deref().unwrap_or_default();
    match answer {
        Answer::Failure(e) => Some(format!("plugin {plugin_name} failed: {e}")),
        Answer::Success(r) if r.get("valid") == Some(&Value::Bool(false)) => {
            let reason = r
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("not valid");
            Some(format!("plugin {plugin_name}: {reason}"))
        }
        Answer::Success(_) => None,
    }
}

/// Records a plugin's answer to its task and moves the lifecycle on when the hook is done.
///
/// # Errors
/// 404 for an unknown task, 403 for a wrong token, 409 when the task was already answered
/// (or timed out); nothing changes then.
pub async fn answer<P: Platform>(
    p: &P,
    task_id: &str,
    token: &str,
    answer: Answer,
) -> Result<(), ApiError> {
    let task = lifecycles::task(p.sql(), task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {task_id}")))?;
    let presented = hex_sha256(token.as_bytes());
    if !bool::from(presented.as_bytes().ct_eq(task.token_hash.as_bytes())) {
        return Err(ApiError::Forbidden("the task token does not match".into()));
    }
    if task.status != TaskStatus::Pending {
        return Err(ApiError::Conflict(format!(
            "the task is already {}",
            task.status.as_str()
        )));
    }
    let Some(pending) = finish_task(p, &task, &Ending::Answered(&answer)).await? else {
        return Err(ApiError::Conflict("the task is already answered".into()));
    };
    match rejection(&task, &answer) {
        Some(reason) => reject(p, &task.video_id, &reason).await?,
        None if pending == 0 => advance(p, &task.video_id, Some(task.hook)).await?,
        None => {}
    }
    Ok(())
}

/// A task's deadline has come: an unanswered task times out (a `preValidate` timeout rejects
/// the video) and the lifecycle moves on. For an answered task it is a safety net: if the
/// answer that completed the hook could not move the lifecycle on (the database failed after
/// recording it), this does.
///
/// # Errors
/// Whatever the ports report.
pub async fn deadline<P: Platform>(p: &P, task_id: &str) -> Result<(), StoreError> {
    let Some(task) = lifecycles::task(p.sql(), task_id).await? else {
        return Ok(());
    };
    if task.status != TaskStatus::Pending {
        return resume_stalled(p, &task.video_id, task.hook).await;
    }
    let now = now_ms(p);
    if now < task.deadline_at {
        // Early (clock skew between the queue and us): look again at the deadline.
        let delay = u32::try_from((task.deadline_at - now) / 1000 + 1).unwrap_or(u32::MAX);
        return p
            .jobs()
            .enqueue_after(&Job::TaskDeadline { task_id: task.id }, delay)
            .await;
    }
    let Some(pending) = finish_task(p, &task, &Ending::TimedOut).await? else {
        return Ok(());
    };
    if task.hook == Hook::PreValidate {
        let plugin_name = task.plugin_name.as_deref().unwrap_or_default();
        reject(
            p,
            &task.video_id,
            &format!("plugin {plugin_name} did not answer in time"),
        )
        .await
    } else if pending == 0 {
        advance(p, &task.video_id, Some(task.hook)).await
    } else {
        Ok(())
    }
}

/// Moves on a lifecycle that still sits at `hook` although none of its tasks is pending.
async fn resume_stalled<P: Platform>(p: &P, video_id: &str, hook: Hook) -> Result<(), StoreError> {
    if !lifecycles::stalled(p.sql(), video_id, hook).await? {
        return Ok(());
    }
    advance(p, video_id, Some(hook)).await
}

//! The plugin lifecycle of a video (serverlessVideo's `PluginLifecycleWorkflow`), run when a
//! video becomes `ready`: the hooks `preValidate`, `postValidate`, `preMetadata`,
//! `postMetadata` one after the other; all plugins of a hook in parallel, each with a task
//! (id, single-use token, callback URL, deadline) and the outputs of earlier hooks. Plugins
//! answer at `POST /api/plugins/tasks/{id}/success|failure`; deadlines are enforced by delayed
//! jobs, never by waiting inside a request. A `preValidate` `{"valid": false}`, failure or
//! timeout rejects the video; other failures are recorded and the lifecycle goes on. Results
//! merge into the video; at the end it is `published`.
//!
//! Every step is a conditional update in the catalogue, so concurrent answers, retried jobs
//! and repeated callbacks move the lifecycle exactly once.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, StoreError};
use crate::model::ids;
use crate::model::job::Job;
use crate::model::room::{RoomRequest, LOBBY};
use crate::model::signed_url::{Scope, UrlToken};
use crate::ports::{Jobs as _, Live as _, Platform, Sql as _, SqlExt as _, SqlValue, Statement};
use crate::room::ServerMessage;
use crate::services::delivery;
use crate::services::plugins::{self, Plugin, HOOKS};

/// How a plugin answered its task.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `/success` with a JSON result.
    Success(Value),
    /// `/failure` with an error message.
    Failure(String),
}

#[derive(Debug, Deserialize)]
struct VideoRow {
    id: String,
    channel_id: String,
    owner_id: String,
    status: String,
    title: String,
    description: String,
    tags: String,
    metadata: String,
    duration_ms: Option<i64>,
    width: Option<i64>,
    height: Option<i64>,
    mp4_key: Option<String>,
}

/// A task with the name of its plugin (results are keyed by it).
#[derive(Debug, Deserialize)]
struct TaskRow {
    id: String,
    video_id: String,
    hook: String,
    token_hash: String,
    status: String,
    deadline_at: i64,
    created_at: i64,
    plugin_name: Option<String>,
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

fn deadline_s<P: Platform>(p: &P, hook: &str) -> u64 {
    let index = HOOKS.iter().position(|h| *h == hook).unwrap_or(0);
    p.config().plugin_deadlines_s[index]
}

async fn video_row<P: Platform>(p: &P, video_id: &str) -> Result<VideoRow, StoreError> {
    p.sql()
        .query_one(&Statement::new(
            "SELECT id, channel_id, owner_id, status, title, description, tags, metadata, \
             duration_ms, width, height, mp4_key FROM videos WHERE id = ?1",
            vec![SqlValue::from(video_id)],
        ))
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("video {video_id}")))
}

/// The video as plugins see it, with signed playback URLs.
async fn video_payload<P: Platform>(p: &P, video_id: &str) -> Result<Value, StoreError> {
    let video = video_row(p, video_id).await?;
    let token = UrlToken {
        scope: Scope::PlayVideo {
            video_id: video.id.clone(),
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
        "description": video.description,
        "tags": serde_json::from_str::<Value>(&video.tags).unwrap_or(json!([])),
        "metadata": serde_json::from_str::<Value>(&video.metadata).unwrap_or(json!({})),
        "duration_ms": video.duration_ms,
        "width": video.width,
        "height": video.height,
        "hls_url": format!("{base}/index.m3u8"),
        "mp4_url": video.mp4_key.map(|_| format!("{base}/video.mp4")),
    }))
}

/// The outputs of the video's answered tasks so far, keyed `plugin-{name}`.
pub async fn outputs<P: Platform>(p: &P, video_id: &str) -> Result<Map<String, Value>, StoreError> {
    #[derive(Deserialize)]
    struct Row {
        name: String,
        result: Option<String>,
    }
    let rows: Vec<Row> = p
        .sql()
        .query_as(&Statement::new(
            "SELECT p.name AS name, t.result AS result FROM plugin_tasks t \
             JOIN plugins p ON p.id = t.plugin_id \
             WHERE t.video_id = ?1 AND t.status = 'succeeded' ORDER BY t.created_at, t.id",
            vec![SqlValue::from(video_id)],
        ))
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let result = r
                .result
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null);
            (format!("plugin-{}", r.name), result)
        })
        .collect())
}

fn event(video_id: &str, kind: &str, detail: Value, at_ms: i64) -> Statement {
    Statement::new(
        "INSERT INTO video_events (video_id, kind, detail, created_at) VALUES (?1, ?2, ?3, ?4)",
        vec![
            SqlValue::from(video_id),
            SqlValue::from(kind),
            SqlValue::from(detail.to_string()),
            SqlValue::Integer(at_ms),
        ],
    )
}

/// Starts the lifecycle of a video that has become `ready`; a second start is a no-op.
///
/// # Errors
/// Whatever the ports report.
pub async fn start<P: Platform>(p: &P, video_id: &str) -> Result<(), StoreError> {
    let now = now_ms(p);
    let started = p
        .sql()
        .execute(&Statement::new(
            "INSERT OR IGNORE INTO lifecycles (video_id, hook, status, started_at) \
             VALUES (?1, 'start', 'running', ?2)",
            vec![SqlValue::from(video_id), SqlValue::Integer(now)],
        ))
        .await?;
    if started == 0 {
        return Ok(());
    }
    p.sql()
        .execute(&event(video_id, "lifecycle.started", json!({}), now))
        .await?;
    let video = video_payload(p, video_id).await?;
    delivery::notify(
        p,
        "lifecycle.started",
        json!({ "video": video, "pluginData": {} }),
    )
    .await?;
    advance(p, video_id, "start").await
}

/// Moves the lifecycle on from `current` (when its tasks are all answered): to the next hook
/// that has plugins, or to the end. Only one caller moves it; the others do nothing.
///
/// # Errors
/// Whatever the ports report.
pub async fn advance<P: Platform>(p: &P, video_id: &str, current: &str) -> Result<(), StoreError> {
    let position = HOOKS
        .iter()
        .position(|h| *h == current)
        .map_or(0, |i| i + 1);
    for hook in &HOOKS[position..] {
        let hook_plugins = plugins::enabled_for(p.sql(), hook).await?;
        if hook_plugins.is_empty() {
            continue;
        }
        return run_hook(p, video_id, current, hook, &hook_plugins).await;
    }
    complete(p, video_id, current).await
}

async fn run_hook<P: Platform>(
    p: &P,
    video_id: &str,
    current: &str,
    hook: &str,
    hook_plugins: &[Plugin],
) -> Result<(), StoreError> {
    let now = now_ms(p);
    let claim = p.entropy().new_id("clm");
    let video = video_payload(p, video_id).await?;
    let plugin_data = Value::Object(outputs(p, video_id).await?);
    let deadline_ms = now + (deadline_s(p, hook) * 1000) as i64;
    let claimed = |sql: &str, params: Vec<SqlValue>| {
        let mut params = params;
        params.push(SqlValue::from(video_id));
        params.push(SqlValue::from(claim.as_str()));
        let n = params.len();
        Statement::new(
            format!(
                "{sql} WHERE EXISTS (SELECT 1 FROM lifecycles WHERE video_id = ?{} AND claim = ?{})",
                n - 1,
                n
            ),
            params,
        )
    };
    let mut statements = vec![Statement::new(
        "UPDATE lifecycles SET hook = ?3, claim = ?4 WHERE video_id = ?1 AND hook = ?2 \
         AND status = 'running'",
        vec![
            SqlValue::from(video_id),
            SqlValue::from(current),
            SqlValue::from(hook),
            SqlValue::from(claim.as_str()),
        ],
    )];
    let deadline_delay_s = u32::try_from(deadline_s(p, hook) + 1).unwrap_or(u32::MAX);
    let mut jobs = Vec::with_capacity(hook_plugins.len() * 2);
    let mut deadlines = Vec::with_capacity(hook_plugins.len());
    for plugin in hook_plugins {
        let task_id = p.entropy().new_id("tsk");
        let mut token_bytes = [0u8; 32];
        p.entropy().fill(&mut token_bytes);
        let token = ids::encode(&token_bytes);
        let token_hash = hex_sha256(token.as_bytes());
        statements.push(claimed(
            "INSERT INTO plugin_tasks (id, video_id, plugin_id, hook, token_hash, status, \
             deadline_at, created_at) SELECT ?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7",
            vec![
                SqlValue::from(task_id.as_str()),
                SqlValue::from(video_id),
                SqlValue::from(plugin.id.as_str()),
                SqlValue::from(hook),
                SqlValue::from(token_hash),
                SqlValue::Integer(deadline_ms),
                SqlValue::Integer(now),
            ],
        ));
        let callback_url = format!("{}/api/plugins/tasks/{task_id}", public_url(p)?);
        let data = json!({
            "hook": hook,
            "video": video,
            "task": {
                "id": task_id,
                "token": token,
                "callback_url": callback_url,
                "success_url": format!("{callback_url}/success"),
                "failure_url": format!("{callback_url}/failure"),
                "deadline_ms": deadline_ms,
            },
            "pluginData": plugin_data,
        });
        let new_delivery = delivery::prepare(p, plugin, &format!("plugin.{hook}"), data);
        let insert = new_delivery.insert();
        statements.push(claimed(&insert.sql, insert.params));
        jobs.push((new_delivery.job(), 0));
        deadlines.push((Job::TaskDeadline { task_id }, deadline_delay_s));
    }
    // Deliveries first, so that a hook's whole fan-out goes out in one queue message batch.
    jobs.extend(deadlines);
    statements.push(claimed(
        "INSERT INTO video_events (video_id, kind, detail, created_at) SELECT ?1, ?2, ?3, ?4",
        vec![
            SqlValue::from(video_id),
            SqlValue::from("lifecycle.hook"),
            SqlValue::from(json!({ "hook": hook, "plugins": hook_plugins.len() }).to_string()),
            SqlValue::Integer(now),
        ],
    ));
    p.sql().batch(&statements).await?;
    #[derive(Deserialize)]
    struct ClaimRow {
        claim: Option<String>,
    }
    let won = p
        .sql()
        .query_one::<ClaimRow>(&Statement::new(
            "SELECT claim FROM lifecycles WHERE video_id = ?1",
            vec![SqlValue::from(video_id)],
        ))
        .await?
        .and_then(|r| r.claim)
        .is_some_and(|c| c == claim);
    if !won {
        return Ok(());
    }
    p.jobs().enqueue_many(&jobs).await
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn complete<P: Platform>(p: &P, video_id: &str, current: &str) -> Result<(), StoreError> {
    let now = now_ms(p);
    let changed = p
        .sql()
        .execute(&Statement::new(
            "UPDATE lifecycles SET hook = 'done', status = 'completed', finished_at = ?3 \
             WHERE video_id = ?1 AND hook = ?2 AND status = 'running'",
            vec![
                SqlValue::from(video_id),
                SqlValue::from(current),
                SqlValue::Integer(now),
            ],
        ))
        .await?;
    if changed == 0 {
        return Ok(());
    }
    let outputs = outputs(p, video_id).await?;
    p.sql()
        .batch(&[
            Statement::new(
                "UPDATE videos SET status = 'published', updated_at = ?2 \
                 WHERE id = ?1 AND status = 'ready'",
                vec![SqlValue::from(video_id), SqlValue::Integer(now)],
            ),
            event(
                video_id,
                "lifecycle.completed",
                json!({ "outputs": outputs }),
                now,
            ),
            event(video_id, "video.published", json!({}), now),
        ])
        .await?;
    // The hot lists (preview, first page) show published videos: drop their cached copies.
    crate::services::catalogue::invalidate(p.kv()).await?;
    let video = video_payload(p, video_id).await?;
    delivery::notify(
        p,
        "lifecycle.completed",
        json!({ "video": video, "status": "completed", "pluginData": outputs }),
    )
    .await?;
    delivery::notify(p, "video.published", json!({ "video": video })).await?;
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

async fn reject<P: Platform>(p: &P, video_id: &str, reason: &str) -> Result<(), StoreError> {
    let now = now_ms(p);
    let changed = p
        .sql()
        .execute(&Statement::new(
            "UPDATE lifecycles SET hook = 'done', status = 'rejected', finished_at = ?2 \
             WHERE video_id = ?1 AND status = 'running'",
            vec![SqlValue::from(video_id), SqlValue::Integer(now)],
        ))
        .await?;
    if changed == 0 {
        return Ok(());
    }
    let outputs = outputs(p, video_id).await?;
    p.sql()
        .batch(&[
            Statement::new(
                "UPDATE videos SET status = 'rejected', reject_reason = ?2, updated_at = ?3 \
                 WHERE id = ?1",
                vec![
                    SqlValue::from(video_id),
                    SqlValue::from(reason),
                    SqlValue::Integer(now),
                ],
            ),
            event(
                video_id,
                "lifecycle.completed",
                json!({ "status": "rejected", "reason": reason, "outputs": outputs }),
                now,
            ),
        ])
        .await?;
    let video = video_payload(p, video_id).await?;
    delivery::notify(
        p,
        "lifecycle.completed",
        json!({ "video": video, "status": "rejected", "reason": reason, "pluginData": outputs }),
    )
    .await
}

/// The statements that merge a plugin's result into its video: `title`, `description`,
/// `tags` (union), `transcript`/`transcript_url` into the metadata, and the whole result
/// under `plugin-{name}` in the metadata. Each is one atomic update, so concurrent results
/// of one hook do not overwrite each other. Each `WHERE` ends with the `{answered}` guard
/// that [`finish_task`] fills in.
fn merge(video_id: &str, plugin_name: &str, result: &Value, now: i64) -> Vec<Statement> {
    let id = || SqlValue::from(video_id);
    let mut statements = vec![Statement::new(
        "UPDATE videos SET metadata = json_set(metadata, ?2, json(?3)), updated_at = ?4 \
         WHERE id = ?1 AND {answered}",
        vec![
            id(),
            SqlValue::from(format!("$.\"plugin-{plugin_name}\"")),
            SqlValue::from(result.to_string()),
            SqlValue::Integer(now),
        ],
    )];
    for field in ["title", "description"] {
        if let Some(text) = result.get(field).and_then(Value::as_str) {
            let text: String = text
                .chars()
                .take(if field == "title" { 200 } else { 5000 })
                .collect();
            statements.push(Statement::new(
                format!("UPDATE videos SET {field} = ?2 WHERE id = ?1 AND {{answered}}"),
                vec![id(), SqlValue::from(text)],
            ));
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
        statements.push(Statement::new(
            "UPDATE videos SET tags = (SELECT json_group_array(value) FROM \
             (SELECT value FROM json_each(videos.tags) UNION SELECT value FROM json_each(?2))) \
             WHERE id = ?1 AND {answered}",
            vec![id(), SqlValue::from(json!(tags).to_string())],
        ));
    }
    for field in ["transcript", "transcript_url"] {
        if let Some(value) = result.get(field).filter(|v| v.is_string()) {
            statements.push(Statement::new(
                "UPDATE videos SET metadata = json_set(metadata, ?2, json(?3)) \
                 WHERE id = ?1 AND {answered}",
                vec![
                    id(),
                    SqlValue::from(format!("$.{field}")),
                    SqlValue::from(value.to_string()),
                ],
            ));
        }
    }
    statements
}

async fn task<P: Platform>(p: &P, task_id: &str) -> Result<Option<TaskRow>, StoreError> {
    p.sql()
        .query_one(&Statement::new(
            "SELECT t.id AS id, t.video_id AS video_id, t.hook AS hook, \
             t.token_hash AS token_hash, t.status AS status, t.deadline_at AS deadline_at, \
             t.created_at AS created_at, p.name AS plugin_name \
             FROM plugin_tasks t LEFT JOIN plugins p ON p.id = t.plugin_id WHERE t.id = ?1",
            vec![SqlValue::from(task_id)],
        ))
        .await
}

/// How a task ended.
enum Ending<'a> {
    /// The plugin answered.
    Answered(&'a Answer),
    /// Its deadline passed first.
    TimedOut,
}

/// Finishes a pending task in one round trip: a batch whose first statement moves the task out
/// of `pending` and stamps it with a fresh answer id, whose other statements (counter, event,
/// merged results) apply only if that stamp is there, and whose last statement reads whether
/// it is and how many tasks of the hook are still pending. Returns that number, or `None`
/// when another answer or the deadline finished the task first (then nothing changed).
async fn finish_task<P: Platform>(
    p: &P,
    task: &TaskRow,
    ending: &Ending<'_>,
) -> Result<Option<i64>, StoreError> {
    let now = now_ms(p);
    let answer_id = p.entropy().new_id("ans");
    let plugin_name = task.plugin_name.as_deref().unwrap_or_default();
    let (status, result, error) = match ending {
        Ending::Answered(Answer::Success(result)) => ("succeeded", Some(result), None),
        Ending::Answered(Answer::Failure(error)) => ("failed", None, Some(error.as_str())),
        Ending::TimedOut => ("timed_out", None, Some("deadline passed")),
    };
    let (kind, detail) = match ending {
        Ending::Answered(_) => (
            format!("plugin.{status}"),
            json!({
                "task_id": task.id,
                "plugin": plugin_name,
                "hook": task.hook,
                "latency_ms": now - task.created_at,
                "result": result,
                "error": error,
            }),
        ),
        Ending::TimedOut => (
            "plugin.timed_out".to_owned(),
            json!({ "task_id": task.id, "plugin": plugin_name, "hook": task.hook }),
        ),
    };
    let counter = if status == "succeeded" {
        "succeeded"
    } else {
        "failed"
    };
    let guarded = |statement: Statement| {
        let mut params = statement.params;
        let n = params.len();
        params.push(SqlValue::from(task.id.as_str()));
        params.push(SqlValue::from(answer_id.as_str()));
        let guard = format!(
            "EXISTS (SELECT 1 FROM plugin_tasks WHERE id = ?{} AND answer_id = ?{})",
            n + 1,
            n + 2
        );
        Statement::new(statement.sql.replace("{answered}", &guard), params)
    };
    let mut statements = vec![
        Statement::new(
            "UPDATE plugin_tasks SET status = ?2, result = ?3, error = ?4, finished_at = ?5, \
             answer_id = ?6 WHERE id = ?1 AND status = 'pending'",
            vec![
                SqlValue::from(task.id.as_str()),
                SqlValue::from(status),
                SqlValue::from(result.map(Value::to_string)),
                SqlValue::from(error.map(str::to_owned)),
                SqlValue::Integer(now),
                SqlValue::from(answer_id.as_str()),
            ],
        ),
        guarded(Statement::new(
            "INSERT INTO counters (name, value) SELECT ?1, 1 WHERE {answered} \
             ON CONFLICT(name) DO UPDATE SET value = value + 1",
            vec![SqlValue::from(format!("plugins.{}.{counter}", task.hook))],
        )),
        guarded(Statement::new(
            "INSERT INTO video_events (video_id, kind, detail, created_at) \
             SELECT ?1, ?2, ?3, ?4 WHERE {answered}",
            vec![
                SqlValue::from(task.video_id.as_str()),
                SqlValue::from(kind),
                SqlValue::from(detail.to_string()),
                SqlValue::Integer(now),
            ],
        )),
    ];
    if let Some(result) = result {
        statements.extend(
            merge(&task.video_id, plugin_name, result, now)
                .into_iter()
                .map(guarded),
        );
    }
    statements.push(Statement::new(
        "SELECT answer_id = ?2 AS won, (SELECT count(*) FROM plugin_tasks \
         WHERE video_id = ?3 AND hook = ?4 AND status = 'pending') AS pending \
         FROM plugin_tasks WHERE id = ?1",
        vec![
            SqlValue::from(task.id.as_str()),
            SqlValue::from(answer_id.as_str()),
            SqlValue::from(task.video_id.as_str()),
            SqlValue::from(task.hook.as_str()),
        ],
    ));
    let results = p.sql().batch(&statements).await?;
    let state = results.last().and_then(|rows| rows.first());
    let field = |name: &str| state.and_then(|row| row.get(name)).and_then(Value::as_i64);
    Ok((field("won") == Some(1)).then(|| field("pending").unwrap_or(0)))
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
    let task = task(p, task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {task_id}")))?;
    let presented = hex_sha256(token.as_bytes());
    if !bool::from(presented.as_bytes().ct_eq(task.token_hash.as_bytes())) {
        return Err(ApiError::Forbidden("the task token does not match".into()));
    }
    if task.status != "pending" {
        return Err(ApiError::Conflict(format!(
            "the task is already {}",
            task.status
        )));
    }
    let Some(pending) = finish_task(p, &task, &Ending::Answered(&answer)).await? else {
        return Err(ApiError::Conflict("the task is already answered".into()));
    };
    let plugin_name = task.plugin_name.as_deref().unwrap_or_default();
    let rejection = match (&answer, task.hook.as_str()) {
        (Answer::Failure(e), "preValidate") => Some(format!("plugin {plugin_name} failed: {e}")),
        (Answer::Success(r), "preValidate") if r.get("valid") == Some(&Value::Bool(false)) => {
            let reason = r
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("not valid");
            Some(format!("plugin {plugin_name}: {reason}"))
        }
        _ => None,
    };
    match rejection {
        Some(reason) => reject(p, &task.video_id, &reason).await?,
        None if pending == 0 => advance(p, &task.video_id, &task.hook).await?,
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
    let Some(task) = task(p, task_id).await? else {
        return Ok(());
    };
    if task.status != "pending" {
        return resume_stalled(p, &task.video_id, &task.hook).await;
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
    if task.hook == "preValidate" {
        let plugin_name = task.plugin_name.as_deref().unwrap_or_default();
        reject(
            p,
            &task.video_id,
            &format!("plugin {plugin_name} did not answer in time"),
        )
        .await
    } else if pending == 0 {
        advance(p, &task.video_id, &task.hook).await
    } else {
        Ok(())
    }
}

/// Moves on a lifecycle that still sits at `hook` although none of its tasks is pending.
async fn resume_stalled<P: Platform>(p: &P, video_id: &str, hook: &str) -> Result<(), StoreError> {
    let stalled = p
        .sql()
        .query(&Statement::new(
            "SELECT 1 AS stalled FROM lifecycles WHERE video_id = ?1 AND hook = ?2 \
             AND status = 'running' AND NOT EXISTS (SELECT 1 FROM plugin_tasks \
             WHERE video_id = ?1 AND hook = ?2 AND status = 'pending')",
            vec![SqlValue::from(video_id), SqlValue::from(hook)],
        ))
        .await?;
    if stalled.is_empty() {
        return Ok(());
    }
    advance(p, video_id, hook).await
}

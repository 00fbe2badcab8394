//! The `lifecycles` table (one row per video: the hook it is at and who claimed it) and the
//! `plugin_tasks` table (one task per plugin and hook, answered once).
//!
//! Two guards make concurrent steps move a lifecycle exactly once: a hook's statements apply
//! only for the caller whose claim is stamped on the lifecycle ([`when_claimed`]), and an
//! answer's statements only for the answer whose id is stamped on the task
//! ([`when_answered`]).

use serde::Deserialize;
use serde_json::Value;

use crate::error::StoreError;
use crate::model::hook::{Hook, TaskStatus};
use crate::ports::{Row, Sql, SqlExt as _, SqlValue, Statement};

/// The placeholder a statement's `WHERE` holds for the answer guard; [`when_answered`]
/// replaces it.
pub const ANSWERED: &str = "{answered}";

/// The stage a lifecycle is at, as stored: `start` before the first hook, or the hook.
fn stage(current: Option<Hook>) -> &'static str {
    current.map_or("start", Hook::as_str)
}

/// Creates the video's lifecycle at `start`; `false` when it already has one.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn start<S: Sql>(sql: &S, video_id: &str, now_ms: i64) -> Result<bool, StoreError> {
    let created = sql
        .execute(&Statement::new(
            "INSERT OR IGNORE INTO lifecycles (video_id, hook, status, started_at) \
             VALUES (?1, 'start', 'running', ?2)",
            vec![SqlValue::from(video_id), SqlValue::Integer(now_ms)],
        ))
        .await?;
    Ok(created > 0)
}

/// The statement that claims the move of a running lifecycle from `current` to `hook`,
/// stamping it with `claim`; it changes nothing when another caller moved it first.
pub fn claim_hook(video_id: &str, current: Option<Hook>, hook: Hook, claim: &str) -> Statement {
    Statement::new(
        "UPDATE lifecycles SET hook = ?3, claim = ?4 WHERE video_id = ?1 AND hook = ?2 \
         AND status = 'running'",
        vec![
            SqlValue::from(video_id),
            SqlValue::from(stage(current)),
            SqlValue::from(hook.as_str()),
            SqlValue::from(claim),
        ],
    )
}

/// Ends an `INSERT ... SELECT` statement with a guard: it applies only when the video's
/// lifecycle carries `claim` (set by [`claim_hook`] earlier in the same batch).
pub fn when_claimed(statement: Statement, video_id: &str, claim: &str) -> Statement {
    let mut params = statement.params;
    params.push(SqlValue::from(video_id));
    params.push(SqlValue::from(claim));
    let n = params.len();
    Statement::new(
        format!(
            "{} WHERE EXISTS (SELECT 1 FROM lifecycles WHERE video_id = ?{} AND claim = ?{})",
            statement.sql,
            n - 1,
            n
        ),
        params,
    )
}

/// A task about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask<'a> {
    /// Identifier (`tsk_...`).
    pub id: &'a str,
    /// The video.
    pub video_id: &'a str,
    /// The plugin that answers it.
    pub plugin_id: &'a str,
    /// Its hook.
    pub hook: Hook,
    /// SHA-256 (hex) of its single-use token.
    pub token_hash: &'a str,
    /// When it times out, Unix ms.
    pub deadline_at: i64,
    /// Now, Unix ms.
    pub created_at: i64,
}

/// The `INSERT ... SELECT` of a pending task, for [`when_claimed`].
pub fn insert_task(task: &NewTask<'_>) -> Statement {
    Statement::new(
        "INSERT INTO plugin_tasks (id, video_id, plugin_id, hook, token_hash, status, \
         deadline_at, created_at) SELECT ?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7",
        vec![
            SqlValue::from(task.id),
            SqlValue::from(task.video_id),
            SqlValue::from(task.plugin_id),
            SqlValue::from(task.hook.as_str()),
            SqlValue::from(task.token_hash),
            SqlValue::Integer(task.deadline_at),
            SqlValue::Integer(task.created_at),
        ],
    )
}

/// The claim stamped on the video's lifecycle, if any.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn claim_of<S: Sql>(sql: &S, video_id: &str) -> Result<Option<String>, StoreError> {
    #[derive(Deserialize)]
    struct ClaimRow {
        claim: Option<String>,
    }
    let row: Option<ClaimRow> = sql
        .query_one(&Statement::new(
            "SELECT claim FROM lifecycles WHERE video_id = ?1",
            vec![SqlValue::from(video_id)],
        ))
        .await?;
    Ok(row.and_then(|r| r.claim))
}

/// Ends a running lifecycle that is at `current` as `completed`; `false` when another caller
/// ended or moved it first.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn complete<S: Sql>(
    sql: &S,
    video_id: &str,
    current: Option<Hook>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let changed = sql
        .execute(&Statement::new(
            "UPDATE lifecycles SET hook = 'done', status = 'completed', finished_at = ?3 \
             WHERE video_id = ?1 AND hook = ?2 AND status = 'running'",
            vec![
                SqlValue::from(video_id),
                SqlValue::from(stage(current)),
                SqlValue::Integer(now_ms),
            ],
        ))
        .await?;
    Ok(changed > 0)
}

/// Ends a running lifecycle as `rejected`; `false` when it was not running.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn reject<S: Sql>(sql: &S, video_id: &str, now_ms: i64) -> Result<bool, StoreError> {
    let changed = sql
        .execute(&Statement::new(
            "UPDATE lifecycles SET hook = 'done', status = 'rejected', finished_at = ?2 \
             WHERE video_id = ?1 AND status = 'running'",
            vec![SqlValue::from(video_id), SqlValue::Integer(now_ms)],
        ))
        .await?;
    Ok(changed > 0)
}

/// Whether the video's lifecycle still sits at `hook` although none of its tasks is pending.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn stalled<S: Sql>(sql: &S, video_id: &str, hook: Hook) -> Result<bool, StoreError> {
    let rows = sql
        .query(&Statement::new(
            "SELECT 1 AS stalled FROM lifecycles WHERE video_id = ?1 AND hook = ?2 \
             AND status = 'running' AND NOT EXISTS (SELECT 1 FROM plugin_tasks \
             WHERE video_id = ?1 AND hook = ?2 AND status = 'pending')",
            vec![SqlValue::from(video_id), SqlValue::from(hook.as_str())],
        ))
        .await?;
    Ok(!rows.is_empty())
}

/// A succeeded task's result, with the id of its plugin (results are keyed by it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskOutput {
    /// The plugin's id.
    pub plugin_id: String,
    /// The result, JSON text.
    pub result: Option<String>,
}

/// The results of the video's succeeded tasks, oldest first.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn outputs<S: Sql>(sql: &S, video_id: &str) -> Result<Vec<TaskOutput>, StoreError> {
    sql.query_as(&Statement::new(
        "SELECT t.plugin_id AS plugin_id, t.result AS result FROM plugin_tasks t \
         WHERE t.video_id = ?1 AND t.status = 'succeeded' ORDER BY t.created_at, t.id",
        vec![SqlValue::from(video_id)],
    ))
    .await
}

/// A task, with its plugin's id (results are keyed by it) and name (a label in messages).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Task {
    /// Identifier.
    pub id: String,
    /// The video.
    pub video_id: String,
    /// Its hook.
    pub hook: Hook,
    /// SHA-256 (hex) of its token.
    pub token_hash: String,
    /// Where it is.
    pub status: TaskStatus,
    /// When it times out, Unix ms.
    pub deadline_at: i64,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// The plugin that answers it.
    pub plugin_id: String,
    /// The plugin's name (`None` when the plugin row is gone).
    pub plugin_name: Option<String>,
}

/// A task by id.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn task<S: Sql>(sql: &S, task_id: &str) -> Result<Option<Task>, StoreError> {
    sql.query_one(&Statement::new(
        "SELECT t.id AS id, t.video_id AS video_id, t.hook AS hook, \
         t.token_hash AS token_hash, t.status AS status, t.deadline_at AS deadline_at, \
         t.created_at AS created_at, t.plugin_id AS plugin_id, p.name AS plugin_name \
         FROM plugin_tasks t LEFT JOIN plugins p ON p.id = t.plugin_id WHERE t.id = ?1",
        vec![SqlValue::from(task_id)],
    ))
    .await
}

/// How a task is finished: its new status, result or error, and the answer id stamped on it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEnd<'a> {
    /// The task.
    pub task_id: &'a str,
    /// Its new status.
    pub status: TaskStatus,
    /// The plugin's result, on success.
    pub result: Option<&'a Value>,
    /// The error, otherwise.
    pub error: Option<&'a str>,
    /// Now, Unix ms.
    pub now_ms: i64,
    /// The fresh id that guards the other statements of the answer's batch.
    pub answer_id: &'a str,
}

/// The statement that moves a task out of `pending`, stamped with its answer id; it changes
/// nothing when another answer (or the deadline) finished the task first.
pub fn finish_task(end: &TaskEnd<'_>) -> Statement {
    Statement::new(
        "UPDATE plugin_tasks SET status = ?2, result = ?3, error = ?4, finished_at = ?5, \
         answer_id = ?6 WHERE id = ?1 AND status = 'pending'",
        vec![
            SqlValue::from(end.task_id),
            SqlValue::from(end.status.as_str()),
            SqlValue::from(end.result.map(Value::to_string)),
            SqlValue::from(end.error.map(str::to_owned)),
            SqlValue::Integer(end.now_ms),
            SqlValue::from(end.answer_id),
        ],
    )
}

/// Fills the [`ANSWERED`] placeholder of a statement with the guard "task `task_id` carries
/// `answer_id`" (set by [`finish_task`] earlier in the same batch).
pub fn when_answered(statement: Statement, task_id: &str, answer_id: &str) -> Statement {
    let mut params = statement.params;
    let n = params.len();
    params.push(SqlValue::from(task_id));
    params.push(SqlValue::from(answer_id));
    let guard = format!(
        "EXISTS (SELECT 1 FROM plugin_tasks WHERE id = ?{} AND answer_id = ?{})",
        n + 1,
        n + 2
    );
    Statement::new(statement.sql.replace(ANSWERED, &guard), params)
}

/// The statement that counts an answer of `hook` in counter `plugins.{hook}.{outcome}`
/// (`succeeded` or `failed`), for [`when_answered`].
pub fn count_answer(hook: Hook, outcome: &str) -> Statement {
    Statement::new(
        format!(
            "INSERT INTO counters (name, value) SELECT ?1, 1 WHERE {ANSWERED} \
             ON CONFLICT(name) DO UPDATE SET value = value + 1"
        ),
        vec![SqlValue::from(format!(
            "plugins.{}.{outcome}",
            hook.as_str()
        ))],
    )
}

/// The last statement of an answer's batch: whether the answer won the task, and how many
/// tasks of its hook are still pending. Read its rows with [`answer_state`].
pub fn answer_state_query(task_id: &str, answer_id: &str, video_id: &str, hook: Hook) -> Statement {
    Statement::new(
        "SELECT answer_id = ?2 AS won, (SELECT count(*) FROM plugin_tasks \
         WHERE video_id = ?3 AND hook = ?4 AND status = 'pending') AS pending \
         FROM plugin_tasks WHERE id = ?1",
        vec![
            SqlValue::from(task_id),
            SqlValue::from(answer_id),
            SqlValue::from(video_id),
            SqlValue::from(hook.as_str()),
        ],
    )
}

/// The pending tasks of the hook when the answer won its task, `None` when it lost.
pub fn answer_state(rows: Option<&Vec<Row>>) -> Option<i64> {
    let state = rows.and_then(|rows| rows.first());
    let field = |name: &str| state.and_then(|row| row.get(name)).and_then(Value::as_i64);
    (field("won") == Some(1)).then(|| field("pending").unwrap_or(0))
}

//! The statements of the development-only diagnostics routes (`/api/_diag/*`) and of the
//! health check's SQL probe.

use serde::Deserialize;

use crate::error::StoreError;
use crate::ports::{Row, Sql, SqlExt as _, SqlValue, Statement};

/// The health check's round trip: a statement that touches no table.
///
/// # Errors
/// `Backend` when the database does not answer.
pub async fn probe<S: Sql>(sql: &S) -> Result<(), StoreError> {
    sql.query(&Statement::new("SELECT 1 AS ok", vec![]))
        .await
        .map(drop)
}

#[derive(Deserialize)]
struct CounterRow {
    value: i64,
}

/// The value of counter `name`, if it exists.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn counter<S: Sql>(sql: &S, name: &str) -> Result<Option<i64>, StoreError> {
    let row: Option<CounterRow> = sql
        .query_one(&Statement::new(
            "SELECT value FROM counters WHERE name = ?1",
            vec![SqlValue::from(name)],
        ))
        .await?;
    Ok(row.map(|r| r.value))
}

/// Adds one to counter `name`, creating it at need.
///
/// # Errors
/// `Backend` when the statement fails.
pub async fn increment<S: Sql>(sql: &S, name: &str) -> Result<(), StoreError> {
    sql.execute(&Statement::new(
        "INSERT INTO counters (name, value) VALUES (?1, 1) \
         ON CONFLICT(name) DO UPDATE SET value = value + 1",
        vec![SqlValue::from(name)],
    ))
    .await
    .map(drop)
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

/// How many `broadcasts` and `videos` rows belong to channel `channel_id` (two queries, in
/// that order).
///
/// # Errors
/// `Backend` when a query fails.
pub async fn channel_rows<S: Sql>(sql: &S, channel_id: &str) -> Result<(i64, i64), StoreError> {
    let count = |sql_text: &str| Statement::new(sql_text, vec![SqlValue::from(channel_id)]);
    let broadcasts: Option<Count> = sql
        .query_one(&count(
            "SELECT count(*) AS n FROM broadcasts WHERE channel_id = ?1",
        ))
        .await?;
    let videos: Option<Count> = sql
        .query_one(&count(
            "SELECT count(*) AS n FROM videos WHERE channel_id = ?1",
        ))
        .await?;
    Ok((broadcasts.map_or(0, |c| c.n), videos.map_or(0, |c| c.n)))
}

/// The views channel or video `scope` has counted (`scope_views`; 0 when none).
///
/// # Errors
/// `Backend` when the query fails.
pub async fn scope_views<S: Sql>(sql: &S, scope: &str) -> Result<i64, StoreError> {
    let row: Option<Count> = sql
        .query_one(&Statement::new(
            "SELECT COALESCE((SELECT views FROM scope_views WHERE scope = ?1), 0) AS n",
            vec![SqlValue::from(scope)],
        ))
        .await?;
    Ok(row.map_or(0, |c| c.n))
}

/// The `videos` row `id` with every column as stored.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn video_row<S: Sql>(sql: &S, id: &str) -> Result<Option<Row>, StoreError> {
    Ok(sql
        .query(&Statement::new(
            "SELECT * FROM videos WHERE id = ?1",
            vec![SqlValue::from(id)],
        ))
        .await?
        .into_iter()
        .next())
}

/// The `video_events` rows of video `id` (kind, detail, time), in insertion order.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn video_events<S: Sql>(sql: &S, id: &str) -> Result<Vec<Row>, StoreError> {
    sql.query(&Statement::new(
        "SELECT kind, detail, created_at FROM video_events WHERE video_id = ?1 ORDER BY id",
        vec![SqlValue::from(id)],
    ))
    .await
}

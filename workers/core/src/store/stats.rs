//! The KPI reads of `GET /api/stats`: every counter, and the videos per status with their
//! total duration.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::StoreError;
use crate::ports::{Sql, SqlExt as _, Statement};

#[derive(Deserialize)]
struct CounterRow {
    name: String,
    value: i64,
}

/// How many videos have one status, and their summed duration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusTotal {
    /// The status.
    pub status: String,
    /// Videos with it.
    #[serde(rename = "n")]
    pub count: i64,
    /// Their summed duration, ms (`None` when no duration is known).
    #[serde(rename = "ms")]
    pub duration_ms: Option<i64>,
}

/// Every row of the `counters` table, by name.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn counters<S: Sql>(sql: &S) -> Result<BTreeMap<String, i64>, StoreError> {
    Ok(sql
        .query_as::<CounterRow>(&Statement::new("SELECT name, value FROM counters", vec![]))
        .await?
        .into_iter()
        .map(|r| (r.name, r.value))
        .collect())
}

/// The videos per status (only statuses that occur).
///
/// # Errors
/// `Backend` when the query fails.
pub async fn videos_by_status<S: Sql>(sql: &S) -> Result<Vec<StatusTotal>, StoreError> {
    sql.query_as(&Statement::new(
        "SELECT status, count(*) AS n, sum(duration_ms) AS ms FROM videos GROUP BY status",
        vec![],
    ))
    .await
}

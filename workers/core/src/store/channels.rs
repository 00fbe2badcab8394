//! The `channels` table: a broadcaster's named stream with its stream key version, and the
//! newest-first channel listing (keyset paging on `(created_at, id)`).

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ports::{Sql, SqlExt as _, SqlValue, Statement};
use crate::store::catalogue::Position;

/// A stored channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Identifier (`ch_...`).
    pub id: String,
    /// The broadcaster who owns it.
    pub owner_id: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Current stream key version.
    pub stream_key_version: i64,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

const COLUMNS: &str = "id, owner_id, name, description, stream_key_version, created_at";

/// Inserts a channel unless its owner already has `limit` channels (checked in the same
/// statement, so concurrent creations cannot pass the limit); `false` when at the limit.
///
/// # Errors
/// `Backend` when the insert fails.
pub async fn create<S: Sql>(sql: &S, channel: &Channel, limit: u64) -> Result<bool, StoreError> {
    let inserted = sql
        .execute(&Statement::new(
            "INSERT INTO channels (id, owner_id, name, description, stream_key_version, created_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 \
             WHERE (SELECT COUNT(*) FROM channels WHERE owner_id = ?2) < ?7",
            vec![
                SqlValue::from(channel.id.as_str()),
                SqlValue::from(channel.owner_id.as_str()),
                SqlValue::from(channel.name.as_str()),
                SqlValue::from(channel.description.as_str()),
                SqlValue::Integer(channel.stream_key_version),
                SqlValue::Integer(channel.created_at),
                SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        ))
        .await?;
    Ok(inserted == 1)
}

/// Finds a channel by id.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn by_id<S: Sql>(sql: &S, id: &str) -> Result<Option<Channel>, StoreError> {
    sql.query_one(&Statement::new(
        format!("SELECT {COLUMNS} FROM channels WHERE id = ?1"),
        vec![SqlValue::from(id)],
    ))
    .await
}

/// Bumps the stream key version, invalidating earlier ingest URLs; returns the new version.
///
/// # Errors
/// `NotFound` when there is no such channel.
pub async fn rotate_stream_key<S: Sql>(sql: &S, id: &str) -> Result<i64, StoreError> {
    let changed = sql
        .execute(&Statement::new(
            "UPDATE channels SET stream_key_version = stream_key_version + 1 WHERE id = ?1",
            vec![SqlValue::from(id)],
        ))
        .await?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("channel {id}")));
    }
    by_id(sql, id)
        .await?
        .map(|c| c.stream_key_version)
        .ok_or_else(|| StoreError::NotFound(format!("channel {id}")))
}

/// One page of channels newest first: `fetch` channels of `owner` (all owners when `None`)
/// after the keyset position `after`, if any.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn page<S: Sql>(
    sql: &S,
    owner: Option<&str>,
    after: Option<&Position>,
    fetch: u32,
) -> Result<Vec<Channel>, StoreError> {
    sql.query_as(&Statement::new(
        "SELECT id, owner_id, name, description, stream_key_version, created_at \
         FROM channels WHERE (?1 IS NULL OR owner_id = ?1) \
         AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3)) \
         ORDER BY created_at DESC, id DESC LIMIT ?4",
        vec![
            SqlValue::from(owner),
            after.map_or(SqlValue::Null, |a| SqlValue::Integer(a.created_at)),
            SqlValue::from(after.map(|a| a.id.as_str())),
            SqlValue::Integer(i64::from(fetch)),
        ],
    ))
    .await
}

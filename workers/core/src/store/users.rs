//! The `users` table: accounts with their stored role. Emails arrive normalised (see
//! `services::accounts`).

use serde::Deserialize;

use crate::error::StoreError;
use crate::model::role::Role;
use crate::ports::{Sql, SqlExt as _, SqlValue, Statement};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// Identifier (`usr_...`).
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// PBKDF2 hash (never sent).
    pub password_hash: String,
    /// Stored role.
    pub role: Role,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// When the address was proven by a verification link, Unix ms; `None` until then.
    #[serde(default)]
    pub email_verified_at: Option<i64>,
}

const USER_COLUMNS: &str = "id, email, password_hash, role, created_at, email_verified_at";

/// Inserts a user.
///
/// # Errors
/// `AlreadyExists` when the email is taken.
pub async fn create<S: Sql>(sql: &S, user: &User) -> Result<(), StoreError> {
    sql.execute(&Statement::new(
        "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        vec![
            SqlValue::from(user.id.as_str()),
            SqlValue::from(user.email.as_str()),
            SqlValue::from(user.password_hash.as_str()),
            SqlValue::from(user.role.as_str()),
            SqlValue::Integer(user.created_at),
        ],
    ))
    .await
    .map(drop)
}

/// Finds a user by normalised email.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn by_email<S: Sql>(sql: &S, email: &str) -> Result<Option<User>, StoreError> {
    sql.query_one(&Statement::new(
        format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
        vec![SqlValue::from(email)],
    ))
    .await
}

/// Finds a user by id.
///
/// # Errors
/// `Backend` when the query fails.
pub async fn by_id<S: Sql>(sql: &S, id: &str) -> Result<Option<User>, StoreError> {
    sql.query_one(&Statement::new(
        format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        vec![SqlValue::from(id)],
    ))
    .await
}

/// Replaces a user's password hash.
///
/// # Errors
/// `NotFound` when there is no such user.
pub async fn set_password<S: Sql>(
    sql: &S,
    id: &str,
    password_hash: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let changed = sql
        .execute(&Statement::new(
            "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
            vec![
                SqlValue::from(id),
                SqlValue::from(password_hash),
                SqlValue::Integer(now_ms),
            ],
        ))
        .await?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("user {id}")));
    }
    Ok(())
}

/// Marks an unverified user's address verified at `now_ms` and gives them `role`: `true`
/// when this call verified it, `false` when it was verified already (a link is single-use)
/// or there is no such user.
///
/// # Errors
/// `Backend` when the update fails.
pub async fn mark_verified<S: Sql>(
    sql: &S,
    id: &str,
    role: Role,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let changed = sql
        .execute(&Statement::new(
            "UPDATE users SET email_verified_at = ?3, role = ?2, updated_at = ?3 \
             WHERE id = ?1 AND email_verified_at IS NULL",
            vec![
                SqlValue::from(id),
                SqlValue::from(role.as_str()),
                SqlValue::Integer(now_ms),
            ],
        ))
        .await?;
    Ok(changed > 0)
}

/// Sets a user's role.
///
/// # Errors
/// `NotFound` when there is no such user.
pub async fn set_role<S: Sql>(
    sql: &S,
    id: &str,
    role: Role,
    now_ms: i64,
) -> Result<(), StoreError> {
    let changed = sql
        .execute(&Statement::new(
            "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
            vec![
                SqlValue::from(id),
                SqlValue::from(role.as_str()),
                SqlValue::Integer(now_ms),
            ],
        ))
        .await?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("user {id}")));
    }
    Ok(())
}

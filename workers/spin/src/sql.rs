//! [`Sql`] over Spin SQLite (`spin:sqlite/sqlite@3.0.0`), with the shared migrations applied
//! at first use.
//!
//! The first statement of each component instance checks the host-private table
//! `_edgevideo_migrations` and applies the files of `schema/migrations` that are missing, in
//! name order, each in its own `BEGIN IMMEDIATE` transaction (so two instances starting at
//! once do not both apply a file). Batches run inside a transaction on the same connection.

use std::cell::Cell;
use std::rc::Rc;

use edgevideo_core::ports::{Row, Sql, SqlValue, Statement};
use edgevideo_core::StoreError;
use spin_sdk::sqlite3::{Connection, Error, Value};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}
pub use embedded::MIGRATIONS;

/// The host-private table that records applied migration files.
pub const MIGRATIONS_TABLE: &str = "_edgevideo_migrations";

/// Host-private tables this adapter creates besides the shared schema: the migration log,
/// the room state and alarms of [`crate::live`], and the jobs of [`crate::jobs`].
const BOOTSTRAP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS _edgevideo_migrations (\
       name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _edgevideo_rooms (\
       room TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (room, key))",
    "CREATE TABLE IF NOT EXISTS _edgevideo_room_alarms (\
       room TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _edgevideo_jobs (\
       id INTEGER PRIMARY KEY AUTOINCREMENT, run_at_ms INTEGER NOT NULL, \
       attempts INTEGER NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS _edgevideo_jobs_due ON _edgevideo_jobs (run_at_ms)",
];

/// One Spin SQLite connection, shared by the SQL port and the room store, that applies the
/// migrations before its first statement.
pub struct SpinDb {
    conn: Connection,
    migrated: Cell<bool>,
}

/// Maps a Spin SQLite error: UNIQUE and PRIMARY KEY violations are `AlreadyExists`.
pub fn sql_error(err: Error) -> StoreError {
    let message = match err {
        Error::Io(message) => message,
        other => format!("{other:?}"),
    };
    if message.contains("UNIQUE constraint failed") {
        StoreError::AlreadyExists(message)
    } else {
        StoreError::Backend {
            backend: "spin_sqlite",
            message,
        }
    }
}

fn bind(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(f) => Value::Real(*f),
        SqlValue::Text(s) => Value::Text(s.clone()),
    }
}

fn json(value: Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => i.into(),
        Value::Real(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(s) => s.into(),
        // As D1 returns them: an array of byte values.
        Value::Blob(bytes) => bytes.into_iter().map(serde_json::Value::from).collect(),
    }
}

impl SpinDb {
    /// Opens the named database.
    ///
    /// # Errors
    /// `Backend` when the database is not allowed for the component or cannot be opened.
    pub fn open(name: &str) -> Result<Rc<Self>, StoreError> {
        let conn = Connection::open(name).map_err(sql_error)?;
        Ok(Rc::new(SpinDb {
            conn,
            migrated: Cell::new(false),
        }))
    }

    fn raw(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<spin_sdk::sqlite3::QueryResult, StoreError> {
        self.conn.execute(sql, params).map_err(sql_error)
    }

    /// Applies the missing migrations once per instance.
    ///
    /// # Errors
    /// `Backend` when a migration fails (it is rolled back and retried on the next use).
    pub fn ensure_migrated(&self) -> Result<(), StoreError> {
        if self.migrated.get() {
            return Ok(());
        }
        for sql in BOOTSTRAP {
            self.raw(sql, &[])?;
        }
        let applied = self.raw("SELECT name FROM _edgevideo_migrations", &[])?;
        let applied: Vec<String> = applied
            .rows
            .into_iter()
            .filter_map(|row| match row.values.into_iter().next() {
                Some(Value::Text(name)) => Some(name),
                _ => None,
            })
            .collect();
        for (name, text) in MIGRATIONS {
            if applied.iter().any(|a| a == name) {
                continue;
            }
            self.transaction(|| {
                let again = self.raw(
                    "SELECT 1 FROM _edgevideo_migrations WHERE name = ?1",
                    &[Value::Text((*name).to_owned())],
                )?;
                if !again.rows.is_empty() {
                    return Ok(());
                }
                for statement in split_statements(text) {
                    self.raw(&statement, &[]).map_err(|e| {
                        StoreError::backend("spin_sqlite", format!("migration {name}: {e}"))
                    })?;
                }
                self.raw(
                    "INSERT INTO _edgevideo_migrations (name, applied_at) VALUES (?1, ?2)",
                    &[
                        Value::Text((*name).to_owned()),
                        Value::Integer(i64::try_from(crate::platform::now_ms()).unwrap_or(0)),
                    ],
                )?;
                Ok(())
            })?;
        }
        self.migrated.set(true);
        Ok(())
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`: takes the write lock at once).
    ///
    /// # Errors
    /// `Backend` when the transaction cannot begin (for example, the database stays busy).
    pub fn begin(&self) -> Result<(), StoreError> {
        self.raw("BEGIN IMMEDIATE", &[]).map(drop)
    }

    /// Ends the transaction opened by [`SpinDb::begin`]: commits when `result` is `Ok`, rolls
    /// back otherwise, and returns `result` (or the commit's error).
    ///
    /// # Errors
    /// The error in `result`, or `Backend` when the commit fails.
    pub fn finish<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result.and_then(|value| self.raw("COMMIT", &[]).map(|_| value)) {
            Ok(value) => Ok(value),
            Err(err) => {
                // The error that matters is the first one; a failed rollback adds nothing.
                let _ = self.raw("ROLLBACK", &[]);
                Err(err)
            }
        }
    }

    /// Runs `body` inside a write transaction, rolling back when it fails.
    ///
    /// # Errors
    /// The error of `body`, or `Backend` when the transaction cannot begin or commit.
    pub fn transaction<T>(
        &self,
        body: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.begin()?;
        self.finish(body())
    }

    /// Runs a statement and returns its rows as JSON objects.
    ///
    /// # Errors
    /// As [`sql_error`].
    pub fn query_rows(&self, statement: &Statement) -> Result<Vec<Row>, StoreError> {
        let params: Vec<Value> = statement.params.iter().map(bind).collect();
        let result = self.raw(&statement.sql, &params)?;
        let columns = result.columns;
        Ok(result
            .rows
            .into_iter()
            .map(|row| {
                columns
                    .iter()
                    .cloned()
                    .zip(row.values.into_iter().map(json))
                    .collect()
            })
            .collect())
    }

    /// Runs a statement and returns the number of rows it changed.
    ///
    /// # Errors
    /// As [`sql_error`].
    pub fn execute_counted(&self, statement: &Statement) -> Result<u64, StoreError> {
        let params: Vec<Value> = statement.params.iter().map(bind).collect();
        self.raw(&statement.sql, &params)?;
        Ok(self.conn.changes())
    }
}

/// The SQL port over a [`SpinDb`].
pub struct SpinSql {
    db: Rc<SpinDb>,
}

impl SpinSql {
    /// The port over an opened database.
    pub fn new(db: Rc<SpinDb>) -> Self {
        SpinSql { db }
    }
}

impl Sql for SpinSql {
    async fn query(&self, statement: &Statement) -> Result<Vec<Row>, StoreError> {
        self.db.ensure_migrated()?;
        self.db.query_rows(statement)
    }

    async fn execute(&self, statement: &Statement) -> Result<u64, StoreError> {
        self.db.ensure_migrated()?;
        self.db.execute_counted(statement)
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>, StoreError> {
        self.db.ensure_migrated()?;
        self.db.transaction(|| {
            statements
                .iter()
                .map(|statement| self.db.query_rows(statement))
                .collect()
        })
    }
}

/// Splits a migration file into statements: on `;` outside quotes and comments, and inside
/// `CREATE TRIGGER` only on the `;` after `END`. Comments are dropped; empty statements too.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let mut last_word = String::new();
    while let Some(c) = chars.next() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c.to_ascii_uppercase());
        } else if !word.is_empty() {
            last_word = std::mem::take(&mut word);
        }
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                current.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                current.push(' ');
            }
            '\'' | '"' | '`' => {
                current.push(c);
                while let Some(n) = chars.next() {
                    current.push(n);
                    if n == c {
                        if chars.peek() == Some(&c) {
                            if let Some(escaped) = chars.next() {
                                current.push(escaped);
                            }
                        } else {
                            break;
                        }
                    }
                }
            }
            ';' => {
                let upper = current.to_ascii_uppercase();
                let is_trigger = upper.split_whitespace().take(4).any(|w| w == "TRIGGER");
                if is_trigger && last_word != "END" {
                    current.push(c);
                } else {
                    let statement = current.trim();
                    if !statement.is_empty() {
                        statements.push(statement.to_owned());
                    }
                    current.clear();
                }
            }
            _ => current.push(c),
        }
    }
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_owned());
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_strings_and_comments() {
        let text = "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT 'a;b'); \
                    /* block; */ INSERT INTO a VALUES ('it''s;');\n\n";
        assert_eq!(
            split_statements(text),
            vec![
                "CREATE TABLE a (x TEXT DEFAULT 'a;b')".to_owned(),
                "INSERT INTO a VALUES ('it''s;')".to_owned(),
            ]
        );
    }

    #[test]
    fn keeps_trigger_bodies_whole() {
        let text = "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET n = n + 1; \
                    DELETE FROM c; END; SELECT 1;";
        let statements = split_statements(text);
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(statements[0].ends_with("END"));
    }

    #[test]
    fn the_shared_migrations_are_embedded_and_split() {
        assert!(!MIGRATIONS.is_empty());
        let names: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "migrations apply in name order");
        for (name, text) in MIGRATIONS {
            assert!(
                !split_statements(text).is_empty(),
                "{name} has no statement"
            );
        }
    }
}

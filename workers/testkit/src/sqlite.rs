//! The core's [`Sql`] port over an in-memory SQLite database with the shared
//! `schema/migrations` applied, behaving as the D1 adapter does: `?N` parameters bound in
//! order (their number must match the statement's), rows as JSON objects keyed by column name,
//! `execute` answering the changed-row count, `batch` as one transaction that returns each
//! statement's rows, UNIQUE and PRIMARY KEY violations as `AlreadyExists` and every other
//! failure as `Backend`. Foreign keys are enforced, as on D1.
//!
//! Every call first yields once to the executor, as a call to a remote database does, so that
//! requests run concurrently (see [`crate::exec::join_all`]) interleave at each round trip.
//! [`SqliteSql::counts`] tells how many statements ran, reads and writes apart.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use edgevideo_core::ports::{Row, Sql, SqlValue, Statement};
use edgevideo_core::StoreError;
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// The backend name in the [`StoreError::Backend`] errors of this adapter.
pub const BACKEND: &str = "sqlite";

/// Why the test database could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The migrations directory could not be read.
    #[error("cannot read the migrations in {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// SQLite refused to open the database or to apply a migration.
    #[error("{what}: {source}")]
    Sqlite {
        /// What was being done (the migration's name, or opening).
        what: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// The repository's `schema/migrations` directory.
pub fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/migrations")
}

/// The `.sql` files of `dir` with their text, in name order (the order they apply in).
///
/// # Errors
/// [`SetupError::Read`] when the directory or a file cannot be read.
pub fn read_migrations(dir: &Path) -> Result<Vec<(String, String)>, SetupError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SetupError::Read { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let path = entry.map_err(read_error(dir))?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path).map_err(read_error(&path))?;
            files.push((name, text));
        }
    }
    files.sort();
    Ok(files)
}

/// How many SQL statements ran since the last [`SqliteSql::reset_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryCounts {
    /// Statements run (each statement of a batch counts).
    pub statements: u64,
    /// Of those, read-only statements (`SELECT`).
    pub reads: u64,
    /// Of those, statements that may write (`INSERT`, `UPDATE`, `DELETE`, ...).
    pub writes: u64,
    /// Calls to the port (`query`, `execute`, `batch`): round trips to a remote database.
    pub round_trips: u64,
}

/// The [`Sql`] port over an in-memory SQLite database.
#[derive(Debug)]
pub struct SqliteSql {
    conn: RefCell<Connection>,
    counts: Cell<QueryCounts>,
}

/// Maps a SQLite error to the port's error as the D1 adapter does: UNIQUE and PRIMARY KEY
/// violations are `AlreadyExists`, everything else `Backend`.
fn store_error(err: rusqlite::Error) -> StoreError {
    let message = err.to_string();
    let duplicate = matches!(
        &err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    );
    if duplicate {
        StoreError::AlreadyExists(message)
    } else {
        StoreError::Backend {
            backend: BACKEND,
            message,
        }
    }
}

fn json(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        // As D1 returns them: an array of byte values.
        ValueRef::Blob(bytes) => bytes.iter().copied().map(serde_json::Value::from).collect(),
    }
}

fn bind(value: &SqlValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(f) => Value::Real(*f),
        SqlValue::Text(s) => Value::Text(s.clone()),
    }
}

/// A future that is pending once: a round trip's suspension point.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl SqliteSql {
    /// A fresh in-memory database with every migration of `schema/migrations` applied.
    ///
    /// # Errors
    /// [`SetupError`] when a migration cannot be read or applied.
    pub fn open() -> Result<Self, SetupError> {
        Self::open_with(&read_migrations(&migrations_dir())?)
    }

    /// A fresh in-memory database with `migrations` (name, SQL text) applied in order.
    ///
    /// # Errors
    /// [`SetupError::Sqlite`] when SQLite refuses one.
    pub fn open_with(migrations: &[(String, String)]) -> Result<Self, SetupError> {
        let sqlite = |what: &str| {
            let what = what.to_owned();
            move |source| SetupError::Sqlite { what, source }
        };
        let conn = Connection::open_in_memory().map_err(sqlite("opening"))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sqlite("enabling foreign keys"))?;
        for (name, text) in migrations {
            conn.execute_batch(text).map_err(sqlite(name))?;
        }
        Ok(SqliteSql {
            conn: RefCell::new(conn),
            counts: Cell::new(QueryCounts::default()),
        })
    }

    /// The statements run since the database was opened or the counts were reset.
    pub fn counts(&self) -> QueryCounts {
        self.counts.get()
    }

    /// Starts counting from zero.
    pub fn reset_counts(&self) {
        self.counts.set(QueryCounts::default());
    }

    fn count(&self, f: impl FnOnce(&mut QueryCounts)) {
        let mut counts = self.counts.get();
        f(&mut counts);
        self.counts.set(counts);
    }

    /// Runs one statement on `conn`, returning its rows and the rows it changed.
    fn run(&self, conn: &Connection, statement: &Statement) -> Result<(Vec<Row>, u64), StoreError> {
        let mut prepared = conn.prepare(&statement.sql).map_err(store_error)?;
        let readonly = prepared.readonly();
        self.count(|c| {
            c.statements += 1;
            if readonly {
                c.reads += 1;
            } else {
                c.writes += 1;
            }
        });
        if prepared.parameter_count() != statement.params.len() {
            return Err(StoreError::backend(
                BACKEND,
                format!(
                    "wrong number of parameters: the statement has {}, {} were bound",
                    prepared.parameter_count(),
                    statement.params.len()
                ),
            ));
        }
        for (i, value) in statement.params.iter().enumerate() {
            prepared
                .raw_bind_parameter(i + 1, bind(value))
                .map_err(store_error)?;
        }
        let columns: Vec<String> = prepared
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut out = Vec::new();
        let mut rows = prepared.raw_query();
        while let Some(row) = rows.next().map_err(store_error)? {
            let mut object = Row::new();
            for (i, name) in columns.iter().enumerate() {
                object.insert(name.clone(), json(row.get_ref(i).map_err(store_error)?));
            }
            out.push(object);
        }
        drop(rows);
        let changed = if readonly { 0 } else { conn.changes() };
        Ok((out, changed))
    }
}

impl Sql for SqliteSql {
    async fn query(&self, statement: &Statement) -> Result<Vec<Row>, StoreError> {
        YieldOnce(false).await;
        self.count(|c| c.round_trips += 1);
        let conn = self.conn.borrow();
        self.run(&conn, statement).map(|(rows, _)| rows)
    }

    async fn execute(&self, statement: &Statement) -> Result<u64, StoreError> {
        YieldOnce(false).await;
        self.count(|c| c.round_trips += 1);
        let conn = self.conn.borrow();
        self.run(&conn, statement).map(|(_, changed)| changed)
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>, StoreError> {
        YieldOnce(false).await;
        self.count(|c| c.round_trips += 1);
        let mut conn = self.conn.borrow_mut();
        // One transaction, as D1 runs a batch: dropped without a commit, it rolls back.
        let transaction = conn.transaction().map_err(store_error)?;
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            results.push(self.run(&transaction, statement)?.0);
        }
        transaction.commit().map_err(store_error)?;
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        pollster::block_on(f)
    }

    #[test]
    fn every_migration_applies_in_name_order() {
        let migrations = read_migrations(&migrations_dir()).unwrap();
        assert!(migrations.len() >= 3, "{migrations:?}");
        let names: Vec<&String> = migrations.iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let sql = SqliteSql::open().unwrap();
        // The last migration's column exists.
        let rows = block_on(sql.query(&Statement::new(
            "SELECT count(*) AS n FROM pragma_table_info('plugin_tasks') WHERE name = 'answer_id'",
            vec![],
        )))
        .unwrap();
        assert_eq!(rows[0]["n"], 1);
    }

    #[test]
    fn a_broken_migration_is_reported_with_its_name() {
        let err =
            SqliteSql::open_with(&[("0001_bad.sql".into(), "CREATE TABLE (".into())]).unwrap_err();
        assert!(err.to_string().starts_with("0001_bad.sql:"), "{err}");
    }

    #[test]
    fn values_round_trip_with_their_types() {
        let sql = SqliteSql::open().unwrap();
        let rows = block_on(sql.query(&Statement::new(
            "SELECT ?1 AS i, ?2 AS r, ?3 AS t, ?4 AS n, x'0102' AS b",
            vec![
                SqlValue::Integer(1 << 40),
                SqlValue::Real(1.5),
                SqlValue::from("text"),
                SqlValue::Null,
            ],
        )))
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(rows[0].clone()),
            serde_json::json!({ "i": 1i64 << 40, "r": 1.5, "t": "text", "n": null, "b": [1, 2] })
        );
    }

    #[test]
    fn errors_map_as_on_d1() {
        let sql = SqliteSql::open().unwrap();
        let missing = block_on(sql.execute(&Statement::new("SELECT * FROM nope", vec![])));
        assert!(
            matches!(&missing, Err(StoreError::Backend { backend: "sqlite", message }) if message.contains("no such table")),
            "{missing:?}"
        );
        let arity = block_on(sql.query(&Statement::new("SELECT ?1, ?2", vec![SqlValue::Null])));
        assert!(
            matches!(arity, Err(StoreError::Backend { .. })),
            "{arity:?}"
        );
        // A video needs its channel and owner: foreign keys are enforced, as on D1.
        let orphan = block_on(sql.execute(&Statement::new(
            "INSERT INTO videos (id, channel_id, owner_id, status, created_at, updated_at) \
             VALUES ('vid_1', 'ch_none', 'usr_none', 'processing', 0, 0)",
            vec![],
        )));
        assert!(
            matches!(&orphan, Err(StoreError::Backend { message, .. }) if message.contains("FOREIGN KEY")),
            "{orphan:?}"
        );
    }

    #[test]
    fn counts_statements_reads_writes_and_round_trips() {
        let sql = SqliteSql::open().unwrap();
        let insert = Statement::new(
            "INSERT INTO counters (name, value) VALUES (?1, 1)",
            vec![SqlValue::from("a")],
        );
        let select = Statement::new("SELECT value FROM counters", vec![]);
        block_on(sql.execute(&insert)).unwrap();
        block_on(sql.query(&select)).unwrap();
        let changed = block_on(sql.execute(&Statement::new(
            "UPDATE counters SET value = value + 1",
            vec![],
        )))
        .unwrap();
        assert_eq!(changed, 1);
        block_on(sql.batch(&[select.clone(), select])).unwrap();
        assert_eq!(
            sql.counts(),
            QueryCounts {
                statements: 5,
                reads: 3,
                writes: 2,
                round_trips: 4
            }
        );
        sql.reset_counts();
        assert_eq!(sql.counts(), QueryCounts::default());
    }
}

//! Host implementations of Spin's `fermyon:spin/key-value@2.0.0`,
//! `fermyon:spin/variables@2.0.0` and `spin:sqlite/sqlite@3.0.0` interfaces (WIT in `wit/`,
//! copied from Spin's published definitions), over on-disk SQLite files in the state
//! directory, laid out as `spin up` lays out its defaults: key-value stores in
//! `sqlite_key_value.db`, the `default` database in `sqlite_db.db`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use wasmtime::component::{Resource, ResourceTable};

use crate::manifest::App;

wasmtime::component::bindgen!({
    path: "wit",
    world: "spin-host",
    with: {
        "fermyon:spin/key-value.store": KvStore,
        "spin:sqlite/sqlite.connection": SqlConnection,
    },
    imports: { default: trappable },
    require_store_data_send: true,
});

use fermyon::spin::key_value;
use fermyon::spin::variables;
use spin::sqlite::sqlite;

/// How long a connection waits for another one's write lock before reporting busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open key-value store: a connection to the key-value file and the store's label.
pub struct KvStore {
    conn: rusqlite::Connection,
    label: String,
}

/// An open SQLite database.
pub struct SqlConnection {
    conn: rusqlite::Connection,
}

/// What the Spin interfaces need from the store's data.
pub struct SpinState {
    /// The component's manifest entries and variables.
    pub app: Arc<App>,
    /// Directory of the SQLite files.
    pub state_dir: PathBuf,
    /// The store's resource table, shared with WASI.
    pub table: ResourceTable,
}

fn open_file(path: &PathBuf) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    Ok(conn)
}

fn kv_other(err: impl std::fmt::Display) -> key_value::Error {
    key_value::Error::Other(err.to_string())
}

fn sql_io(err: impl std::fmt::Display) -> sqlite::Error {
    sqlite::Error::Io(err.to_string())
}

impl key_value::Host for SpinState {}

impl key_value::HostStore for SpinState {
    fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, key_value::Error>> {
        if !self.app.key_value_stores.contains(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        if label != "default" {
            return Ok(Err(key_value::Error::NoSuchStore));
        }
        let conn = match open_file(&self.state_dir.join("sqlite_key_value.db")).and_then(|c| {
            c.execute(
                "CREATE TABLE IF NOT EXISTS spin_key_value (store TEXT NOT NULL, key TEXT NOT NULL, \
                 value BLOB NOT NULL, PRIMARY KEY (store, key))",
                [],
            )
            .map(|_| c)
        }) {
            Ok(conn) => conn,
            Err(e) => return Ok(Err(kv_other(e))),
        };
        Ok(Ok(self.table.push(KvStore { conn, label })?))
    }

    fn get(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = self.table.get(&store)?;
        let result = store
            .conn
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                (&store.label, &key),
                |row| row.get::<_, Vec<u8>>(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(kv_other(other)),
            });
        Ok(result)
    }

    fn set(
        &mut self,
        store: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store
            .conn
            .execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                (&store.label, &key, &value),
            )
            .map(drop)
            .map_err(kv_other))
    }

    fn delete(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store
            .conn
            .execute(
                "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                (&store.label, &key),
            )
            .map(drop)
            .map_err(kv_other))
    }

    fn exists(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        Ok(self.get(store, key)?.map(|v| v.is_some()))
    }

    fn get_keys(
        &mut self,
        store: Resource<KvStore>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let store = self.table.get(&store)?;
        let keys = (|| {
            let mut statement = store
                .conn
                .prepare("SELECT key FROM spin_key_value WHERE store = ?1")?;
            let rows = statement.query_map([&store.label], |row| row.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })();
        Ok(keys.map_err(kv_other))
    }

    fn drop(&mut self, store: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl variables::Host for SpinState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(match self.app.variables.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(variables::Error::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.app.component
            ))),
        })
    }
}

impl sqlite::Host for SpinState {}

fn to_sql(value: sqlite::Value) -> SqlValue {
    match value {
        sqlite::Value::Integer(i) => SqlValue::Integer(i),
        sqlite::Value::Real(f) => SqlValue::Real(f),
        sqlite::Value::Text(s) => SqlValue::Text(s),
        sqlite::Value::Blob(b) => SqlValue::Blob(b),
        sqlite::Value::Null => SqlValue::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> sqlite::Value {
    match value {
        ValueRef::Null => sqlite::Value::Null,
        ValueRef::Integer(i) => sqlite::Value::Integer(i),
        ValueRef::Real(f) => sqlite::Value::Real(f),
        ValueRef::Text(t) => sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => sqlite::Value::Blob(b.to_vec()),
    }
}

fn run(
    conn: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<sqlite::Value>,
) -> rusqlite::Result<sqlite::QueryResult> {
    let mut prepared = conn.prepare(statement)?;
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut rows = prepared.query(rusqlite::params_from_iter(
        parameters.into_iter().map(to_sql),
    ))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns.len())
            .map(|i| row.get_ref(i).map(from_sql))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult { columns, rows: out })
}

impl sqlite::HostConnection for SpinState {
    fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqlConnection>, sqlite::Error>> {
        if !self.app.sqlite_databases.contains(&database) {
            return Ok(Err(sqlite::Error::AccessDenied));
        }
        if database != "default" {
            return Ok(Err(sqlite::Error::NoSuchDatabase));
        }
        match open_file(&self.state_dir.join("sqlite_db.db")) {
            Ok(conn) => Ok(Ok(self.table.push(SqlConnection { conn })?)),
            Err(e) => Ok(Err(sql_io(e))),
        }
    }

    fn execute(
        &mut self,
        connection: Resource<SqlConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let connection = self.table.get(&connection)?;
        Ok(run(&connection.conn, &statement, parameters).map_err(sql_io))
    }

    fn last_insert_rowid(&mut self, connection: Resource<SqlConnection>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&connection)?.conn.last_insert_rowid())
    }

    fn changes(&mut self, connection: Resource<SqlConnection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&connection)?.conn.changes())
    }

    fn drop(&mut self, connection: Resource<SqlConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

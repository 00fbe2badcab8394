//! [`Sql`] over a D1 database.

use edgevideo_core::ports::{Row, Sql, SqlValue, Statement};
use edgevideo_core::StoreError;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

/// The SQL port over D1.
pub struct D1Sql(pub D1Database);

fn bind(value: &SqlValue) -> JsValue {
    match value {
        SqlValue::Null => JsValue::NULL,
        // D1 carries numbers as JavaScript doubles: exact up to 2^53.
        SqlValue::Integer(i) => JsValue::from_f64(*i as f64),
        SqlValue::Real(f) => JsValue::from_f64(*f),
        SqlValue::Text(s) => JsValue::from_str(s),
    }
}

/// Maps a D1 error to the port's error: constraint violations are `AlreadyExists`.
fn store_error(err: worker::Error) -> StoreError {
    let message = err.to_string();
    if message.contains("UNIQUE constraint failed") || message.contains("PRIMARY KEY") {
        StoreError::AlreadyExists(message)
    } else {
        StoreError::Backend {
            backend: "d1",
            message,
        }
    }
}

/// D1's JSON rows as the port's rows.
fn rows(values: Vec<serde_json::Value>) -> Result<Vec<Row>, StoreError> {
    values
        .into_iter()
        .map(|row| match row {
            serde_json::Value::Object(map) => Ok(map),
            other => Err(StoreError::backend(
                "d1",
                format!("row is not an object: {other}"),
            )),
        })
        .collect()
}

impl D1Sql {
    fn prepare(&self, statement: &Statement) -> Result<D1PreparedStatement, StoreError> {
        let params: Vec<JsValue> = statement.params.iter().map(bind).collect();
        self.0
            .prepare(statement.sql.as_str())
            .bind(&params)
            .map_err(store_error)
    }
}

impl Sql for D1Sql {
    async fn query(&self, statement: &Statement) -> Result<Vec<Row>, StoreError> {
        let result = self.prepare(statement)?.all().await.map_err(store_error)?;
        rows(result.results().map_err(store_error)?)
    }

    async fn execute(&self, statement: &Statement) -> Result<u64, StoreError> {
        let result = self.prepare(statement)?.run().await.map_err(store_error)?;
        let changes = result
            .meta()
            .map_err(store_error)?
            .and_then(|meta| meta.changes)
            .unwrap_or(0);
        Ok(changes as u64)
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>, StoreError> {
        let prepared = statements
            .iter()
            .map(|s| self.prepare(s))
            .collect::<Result<Vec<_>, _>>()?;
        // D1 runs a batch as one transaction: a failing statement rolls back the others.
        let results = self.0.batch(prepared).await.map_err(store_error)?;
        results
            .into_iter()
            .map(|result| rows(result.results().map_err(store_error)?))
            .collect()
    }
}

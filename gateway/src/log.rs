//! Structured logs: one JSON object per line on stderr (`ts`, `level`, `msg`, then fields).

use std::time::{SystemTime, UNIX_EPOCH};

/// Writes one log line: `level`, a message and `key = value` fields.
pub fn line(level: &str, msg: &str, fields: &[(&str, serde_json::Value)]) {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut object = serde_json::Map::new();
    object.insert(
        "ts".into(),
        serde_json::json!((ts * 1000.0).round() / 1000.0),
    );
    object.insert("level".into(), level.into());
    object.insert("msg".into(), msg.into());
    for (key, value) in fields {
        object.insert((*key).to_owned(), value.clone());
    }
    eprintln!("{}", serde_json::Value::Object(object));
}

/// Logs at `info`: `info!("msg", key = value, ...)`.
#[macro_export]
macro_rules! info {
    ($msg:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log::line("info", $msg, &[$((stringify!($key), serde_json::json!($value))),*])
    };
}

/// Logs at `warn`: `warn!("msg", key = value, ...)`.
#[macro_export]
macro_rules! warn {
    ($msg:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log::line("warn", $msg, &[$((stringify!($key), serde_json::json!($value))),*])
    };
}

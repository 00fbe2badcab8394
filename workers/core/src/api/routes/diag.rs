//! `/api/_diag/*`: development-only routes that round-trip each binding, so the end-to-end
//! tests can prove every port works inside the real runtime. Served only when the
//! configuration enables diagnostics, which production refuses.

use http::header::CONTENT_TYPE;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::api::{self, Request, Response};
use crate::error::ApiError;
use crate::model::job::{probe_key, Job};
use crate::model::room::{RoomRequest, RoomResponse};
use crate::ports::{conformance, metered};
use crate::ports::{Blobs as _, JobsExt as _, Kv as _, Live as _, Platform};
use crate::store::diag;

/// Largest blob the diagnostics accept, in bytes.
const MAX_DIAG_BLOB: usize = 8 * 1024 * 1024;

/// Checks a path segment used as a key: 1 to 128 of `A-Z a-z 0-9 . _ -`.
fn diag_key(raw: &str) -> Result<&str, ApiError> {
    let valid = !raw.is_empty()
        && raw.len() <= 128
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(raw)
    } else {
        Err(ApiError::bad_request(
            "invalid_key",
            "keys are 1 to 128 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

#[derive(Deserialize)]
struct KvPutBody {
    value: String,
}

/// `PUT /api/_diag/kv/{key}` with `{"value": "..."}`.
pub async fn kv_put<P: Platform>(
    p: &P,
    key: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let key = diag_key(key)?;
    let body: KvPutBody = api::parse_json(request)?;
    p.kv()
        .put(&format!("diag:kv:{key}"), body.value.as_bytes(), Some(3600))
        .await?;
    Ok(api::json(
        StatusCode::OK,
        &json!({ "key": key, "value": body.value }),
    ))
}

/// `GET /api/_diag/kv/{key}`.
pub async fn kv_get<P: Platform>(p: &P, key: &str) -> Result<Response, ApiError> {
    let key = diag_key(key)?;
    let value = p
        .kv()
        .get(&format!("diag:kv:{key}"))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no value for {key}")))?;
    let value = String::from_utf8_lossy(&value);
    Ok(api::json(
        StatusCode::OK,
        &json!({ "key": key, "value": value }),
    ))
}

async fn read_counter<P: Platform>(p: &P, name: &str) -> Result<Option<i64>, ApiError> {
    Ok(diag::counter(p.sql(), name).await?)
}

/// `POST /api/_diag/counters/{name}`: increments the `counters` row `diag.{name}`.
pub async fn counter_increment<P: Platform>(p: &P, name: &str) -> Result<Response, ApiError> {
    let name = format!("diag.{}", diag_key(name)?);
    diag::increment(p.sql(), &name).await?;
    let value = read_counter(p, &name).await?.unwrap_or(0);
    Ok(api::json(
        StatusCode::OK,
        &json!({ "name": name, "value": value }),
    ))
}

/// `GET /api/_diag/counters/{name}`.
pub async fn counter_get<P: Platform>(p: &P, name: &str) -> Result<Response, ApiError> {
    let name = format!("diag.{}", diag_key(name)?);
    let value = read_counter(p, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no counter {name}")))?;
    Ok(api::json(
        StatusCode::OK,
        &json!({ "name": name, "value": value }),
    ))
}

/// `PUT /api/_diag/blobs/{key}` with any bytes.
pub async fn blob_put<P: Platform>(
    p: &P,
    key: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let key = diag_key(key)?.to_owned();
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = request.into_body();
    if bytes.len() > MAX_DIAG_BLOB {
        return Err(ApiError::PayloadTooLarge(format!(
            "blob is {} bytes; the limit is {MAX_DIAG_BLOB}",
            bytes.len()
        )));
    }
    let size = bytes.len();
    p.blobs()
        .put(&format!("diag/{key}"), bytes, &content_type)
        .await?;
    Ok(api::json(
        StatusCode::CREATED,
        &json!({ "key": key, "size": size }),
    ))
}

/// `GET /api/_diag/blobs/{key}`: the stored bytes with their content type.
pub async fn blob_get<P: Platform>(p: &P, key: &str) -> Result<Response, ApiError> {
    let key = diag_key(key)?;
    let blob = p
        .blobs()
        .get(&format!("diag/{key}"), None)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no blob {key}")))?;
    let mut response = api::with_body(StatusCode::OK, "application/octet-stream", blob.bytes);
    if let Some(ct) = blob.meta.content_type.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(CONTENT_TYPE, ct);
    }
    Ok(response)
}

/// `POST /api/_diag/rooms/{name}/ping`: the room counts pings across requests.
pub async fn room_ping<P: Platform>(p: &P, name: &str) -> Result<Response, ApiError> {
    let name = diag_key(name)?;
    let response = p
        .live()
        .call(&format!("diag-{name}"), &RoomRequest::Ping)
        .await?;
    let RoomResponse::Pong { pings } = response else {
        return Err(ApiError::Internal(format!(
            "unexpected room answer {response:?}"
        )));
    };
    Ok(api::json(
        StatusCode::OK,
        &json!({ "room": name, "pings": pings }),
    ))
}

/// `POST /api/_diag/jobs/{id}`: enqueues a probe job.
pub async fn job_enqueue<P: Platform>(p: &P, id: &str) -> Result<Response, ApiError> {
    let id = diag_key(id)?;
    p.jobs().enqueue(&Job::Probe { id: id.to_owned() }).await?;
    Ok(api::json(StatusCode::ACCEPTED, &json!({ "id": id })))
}

/// `GET /api/_diag/jobs/{id}`: whether the consumer has run the probe job.
pub async fn job_status<P: Platform>(p: &P, id: &str) -> Result<Response, ApiError> {
    let id = diag_key(id)?;
    let handled_at = p.kv().get(&probe_key(id)).await?;
    let handled_at_ms = handled_at
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok());
    Ok(api::json(
        StatusCode::OK,
        &json!({ "id": id, "handled": handled_at_ms.is_some(), "handled_at_ms": handled_at_ms }),
    ))
}

/// `GET /api/_diag/conformance`: runs the port conformance suites against this platform's
/// real bindings; 200 when all pass, 500 with the failures otherwise.
pub async fn conformance<P: Platform>(p: &P) -> Response {
    let report = conformance::run_all(p).await;
    let status = if report.iter().all(|s| s.failure.is_none()) {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    api::json(status, &json!({ "suites": report }))
}

/// `GET /api/_diag/stored/{channel}`: the channel's broadcast and video rows, its segment
/// keys (`blobs`) and its recordings' playlist and segment-list keys (`playlists`), so tests
/// can prove that a refused request stored nothing.
pub async fn stored<P: Platform>(p: &P, channel_id: &str) -> Result<Response, ApiError> {
    let channel_id = diag_key(channel_id)?;
    let (broadcasts, videos) = diag::channel_rows(p.sql(), channel_id).await?;
    let (playlists, segments): (Vec<String>, Vec<String>) = p
        .blobs()
        .list(&format!("live/{channel_id}/"))
        .await?
        .into_iter()
        .partition(|key| key.ends_with(".m3u8") || key.ends_with(".json"));
    Ok(api::json(
        StatusCode::OK,
        &json!({
            "broadcasts": broadcasts,
            "videos": videos,
            "blobs": segments,
            "playlists": playlists,
        }),
    ))
}

/// `GET /api/_diag/views/{scope}`: the views a channel or video has counted, so tests can
/// count one channel's or video's views while the tests beside them add to the totals.
pub async fn views<P: Platform>(p: &P, scope: &str) -> Result<Response, ApiError> {
    let scope = diag_key(scope)?;
    let views = diag::scope_views(p.sql(), scope).await?;
    Ok(api::json(
        StatusCode::OK,
        &json!({ "scope": scope, "views": views }),
    ))
}

/// `GET /api/_diag/video/{id}`: the video's row as stored (tags and metadata decoded) and its
/// events, for tests that check what the lifecycle wrote.
pub async fn video<P: Platform>(p: &P, id: &str) -> Result<Response, ApiError> {
    let id = diag_key(id)?;
    let mut row = diag::video_row(p.sql(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no video {id}")))?;
    for column in ["tags", "metadata"] {
        if let Some(text) = row.get(column).and_then(|v| v.as_str()) {
            let decoded = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
            row.insert(column.to_owned(), decoded);
        }
    }
    let events = diag::video_events(p.sql(), id).await?;
    row.insert(
        "events".to_owned(),
        serde_json::Value::Array(events.into_iter().map(serde_json::Value::Object).collect()),
    );
    Ok(api::json(StatusCode::OK, &row))
}

/// `GET /api/_diag/metrics`: this isolate's port-call counters ([`metered`]).
pub fn metrics() -> Response {
    api::json(StatusCode::OK, &json!({ "counts": metered::snapshot() }))
}

/// `DELETE /api/_diag/metrics`: sets this isolate's counters to zero.
pub fn metrics_reset() -> Response {
    metered::reset();
    api::json(StatusCode::OK, &json!({ "counts": {} }))
}

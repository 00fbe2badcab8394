//! `/embed/{id}`: the player other sites put in an `<iframe>`. A small page (no navigation,
//! no account) that asks this deployment for a playback URL of the channel (`ch_...`, live)
//! or the video (`vid_...`) and plays it with hls.js, or the browser's own HLS. It is
//! served by the worker because its path carries the id; its script is the static
//! `/embed.js`. Framing by any site is the point of this page, so it sets no
//! `frame-ancestors` limit.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};

use crate::api::Response;
use crate::error::ApiError;
use crate::model::ids;

/// The page; `{ID}` is replaced by the (validated) id.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>edgevideo player</title>
  <style>
    html, body { margin: 0; height: 100%; background: #000; color: #eee; font: 14px system-ui, sans-serif; }
    video { width: 100%; height: 100%; display: block; background: #000; }
    #status { position: absolute; left: 0; right: 0; top: 40%; text-align: center; }
    #status:empty { display: none; }
  </style>
  <script src="/vendor/hls.min.js" defer></script>
  <script type="module" src="/embed.js"></script>
</head>
<body data-id="{ID}">
  <video id="video" controls muted playsinline autoplay></video>
  <p id="status" role="status"></p>
</body>
</html>
"#;

/// `GET /embed/{id}`: the embeddable player of a channel or a video.
///
/// # Errors
/// 404 when `id` is neither a channel nor a video id.
pub fn page(id: &str) -> Result<Response, ApiError> {
    if !ids::is_id(id, "ch") && !ids::is_id(id, "vid") {
        return Err(ApiError::NotFound(format!("no channel or video {id}")));
    }
    // `is_id` admits only `A-Z a-z 0-9 _ -`: nothing in it needs escaping in HTML.
    let mut response = http::Response::new(PAGE.replace("{ID}", id).into_bytes());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_channel_and_video_ids_get_a_page() {
        let page = page("vid_abcdefgh12345678").unwrap();
        let html = String::from_utf8(page.into_body()).unwrap();
        assert!(html.contains(r#"data-id="vid_abcdefgh12345678""#));
        assert!(page_is_refused("usr_abcdefgh12345678"));
        assert!(page_is_refused("ch_<script>"));
        assert!(page_is_refused("vid_\"onload=x"));
    }

    fn page_is_refused(id: &str) -> bool {
        matches!(page(id), Err(ApiError::NotFound(_)))
    }
}

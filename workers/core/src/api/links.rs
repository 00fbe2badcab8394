//! Signed links that listings carry (the home page's cards): a channel's thumbnail and a
//! video's poster. They are root-relative, because listings are cached whatever the origin,
//! and expire on a whole hour at least the playback URL lifetime from now, so that listings
//! cached for a while give the same URLs.

use crate::model::signed_url::{Scope, UrlToken};
use crate::ports::Platform;

/// The URL of a channel's thumbnail (`GET /play/{token}/thumb.jpg`).
pub fn thumbnail_url<P: Platform>(p: &P, channel_id: &str) -> String {
    let token = listing_token(
        p,
        Scope::PlayChannel {
            channel_id: channel_id.to_owned(),
        },
    );
    format!("/play/{token}/thumb.jpg")
}

/// The URL of a video's poster (`GET /play/{token}/poster.jpg`). The token names no
/// recording, so it opens the poster and not the video's segments.
pub fn poster_url<P: Platform>(p: &P, video_id: &str, channel_id: &str) -> String {
    let token = listing_token(
        p,
        Scope::PlayVideo {
            video_id: video_id.to_owned(),
            channel_id: channel_id.to_owned(),
            broadcast_id: None,
        },
    );
    format!("/play/{token}/poster.jpg")
}

fn listing_token<P: Platform>(p: &P, scope: Scope) -> String {
    let now_s = p.clock().now_ms() / 1000;
    let exp = (now_s + p.config().playback_url_ttl_s).div_ceil(3600) * 3600;
    UrlToken {
        scope,
        viewer: None,
        exp,
    }
    .sign(p.config().url_signing_secret.as_bytes())
}

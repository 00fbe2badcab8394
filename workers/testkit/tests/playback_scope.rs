//! What a channel's playback URL opens: the segments of the broadcast its live playlist
//! names, never an older recording of the channel (those play through their video's own
//! URL, which checks the video's visibility when it is issued) — at no catalogue query and at
//! most one room call per freshness period.

use edgevideo_core::ports::metered;
use edgevideo_testkit::TestPlatform;
use http::{Method, StatusCode};

#[test]
fn a_channel_url_reads_the_current_broadcast_and_no_older_recording() {
    let p = TestPlatform::new();
    let (owner, channel) = p.broadcaster("Scoped channel");
    // An earlier broadcast, ended: its recording is a video of its own.
    let video = p.record_video(&owner, &channel, 2);
    p.settle();
    let earlier = p.stored_video(&video)["broadcast_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let join = p.call(
        Method::POST,
        &format!("/api/channels/{channel}/playback"),
        None,
        None,
    );
    let url = join.json()["url"].as_str().unwrap().to_owned();
    let segment_of =
        |broadcast: &str| url.replace("live.m3u8", &format!("seg/{broadcast}/index0.ts"));

    // Ended and not followed: the live playlist still names it (ENDLIST), so it plays.
    assert!(p.get(&url).text().contains("#EXT-X-ENDLIST"));
    assert_eq!(p.get(&segment_of(&earlier)).status, StatusCode::OK);

    // A new broadcast goes live.
    let ingest = p.ingest_url(&owner, &channel);
    let pushed = p.push_segment(&ingest, "index0.ts");
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text());
    let current = pushed.json()["broadcast_id"].as_str().unwrap().to_owned();
    assert_ne!(current, earlier);
    p.push_playlist(&ingest, &["index0.ts".to_owned()], false);
    p.advance_ms(3_001); // past every cached playlist and broadcast object

    let playlist = p.get(&url);
    assert!(playlist.text().contains(&current), "{}", playlist.text());
    p.sql.reset_counts();
    metered::reset();
    assert_eq!(p.get(&segment_of(&current)).status, StatusCode::OK);
    let refused = p.get(&segment_of(&earlier));
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "forbidden");
    // Repeated attempts cost nothing more: the broadcast object is cached with the playlist.
    for _ in 0..100 {
        assert_eq!(p.get(&segment_of(&earlier)).status, StatusCode::FORBIDDEN);
    }
    assert_eq!(p.sql.counts().statements, 0);
    assert_eq!(metered::snapshot().get("live.call"), None, "no room call");

    // The old recording still plays through its video's URL.
    let vod = p.call(
        Method::POST,
        &format!("/api/videos/{video}/playback"),
        None,
        None,
    );
    let hls = vod.json()["hls_url"].as_str().unwrap().to_owned();
    let vod_segment = hls.replace("index.m3u8", &format!("seg/{earlier}/index0.ts"));
    assert_eq!(p.get(&vod_segment).status, StatusCode::OK);

    // Once the broadcast object expires with no playlist refresh, a segment request asks the
    // room once and caches the answer.
    p.advance_ms(3_001);
    metered::reset();
    assert_eq!(p.get(&segment_of(&current)).status, StatusCode::OK);
    assert_eq!(p.get(&segment_of(&earlier)).status, StatusCode::FORBIDDEN);
    assert_eq!(metered::snapshot().get("live.call"), Some(&1));
}

//! Query budgets of the hot routes: how many SQL statements (and round trips) one request
//! may cost, and for playback how many room calls and blob reads a thousand viewers cost
//! through the edge cache. The bounds are today's numbers, measured with this test; a route
//! that starts making more queries fails here. Lower the bounds with the code, never raise
//! them without a reason in the commit.

use edgevideo_core::model::signed_url::{Scope, UrlToken};
use edgevideo_core::ports::metered;
use edgevideo_testkit::{QueryCounts, TestPlatform};
use http::{Method, StatusCode};

/// A route's budget: at most this many statements, of which this many writes, in this many
/// round trips.
struct Budget {
    statements: u64,
    writes: u64,
    round_trips: u64,
}

fn within(route: &str, counts: QueryCounts, budget: &Budget) {
    println!("{route}: {counts:?}");
    assert!(
        counts.statements <= budget.statements
            && counts.writes <= budget.writes
            && counts.round_trips <= budget.round_trips,
        "{route} made {counts:?}; its budget is {} statements, {} writes, {} round trips",
        budget.statements,
        budget.writes,
        budget.round_trips
    );
}

/// A channel that is live with two segments listed: its ingest URL and id.
fn live_channel(p: &TestPlatform) -> (String, String) {
    let (owner, channel) = p.broadcaster("Budget channel");
    let ingest = p.ingest_url(&owner, &channel);
    let files: Vec<String> = (0..2).map(|i| format!("index{i}.ts")).collect();
    for file in &files {
        assert_eq!(p.push_segment(&ingest, file).status, StatusCode::CREATED);
    }
    assert_eq!(
        p.push_playlist(&ingest, &files, false).status,
        StatusCode::OK
    );
    p.settle();
    (ingest, channel)
}

#[test]
fn hot_live_routes_stay_within_their_query_budgets() {
    let p = TestPlatform::new();
    let (ingest, channel) = live_channel(&p);

    // An ingest segment PUT of a broadcast that is already live.
    p.sql.reset_counts();
    let reply = p.push_segment(&ingest, "index2.ts");
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let broadcast = reply.json()["broadcast_id"].as_str().unwrap().to_owned();
    // The channel's room checks the stream-key version; it learnt it with the first segment.
    within(
        "PUT /ingest/{token}/{segment}",
        p.sql.counts(),
        &Budget {
            statements: 0,
            writes: 0,
            round_trips: 1,
        },
    );

    // The rolling playlist ffmpeg pushes after each segment.
    let files: Vec<String> = (0..3).map(|i| format!("index{i}.ts")).collect();
    p.sql.reset_counts();
    let reply = p.push_playlist(&ingest, &files, false);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    within(
        "PUT /ingest/{token}/index.m3u8",
        p.sql.counts(),
        &Budget {
            statements: 0,
            writes: 0,
            round_trips: 1,
        },
    );

    // A viewer joins: a signed playback URL; its view is queued, counted by the consumer.
    p.sql.reset_counts();
    let join = p.call(
        Method::POST,
        &format!("/api/channels/{channel}/playback"),
        None,
        None,
    );
    assert_eq!(join.status, StatusCode::OK, "{}", join.text());
    assert_eq!(join.json()["view_counted"], true);
    let url = join.json()["url"].as_str().unwrap().to_owned();
    // The channel's row only: no write on the join's path.
    within(
        "POST /api/channels/{id}/playback",
        p.sql.counts(),
        &Budget {
            statements: 1,
            writes: 0,
            round_trips: 1,
        },
    );

    // The live playlist: from the room once, then from the edge cache.
    p.sql.reset_counts();
    metered::reset();
    let playlist = p.get(&url);
    assert_eq!(playlist.status, StatusCode::OK, "{}", playlist.text());
    assert!(playlist.text().contains("index2.ts"), "{}", playlist.text());
    within(
        "GET /play/{token}/live.m3u8",
        p.sql.counts(),
        &Budget {
            statements: 0,
            writes: 0,
            round_trips: 0,
        },
    );
    assert_eq!(playlist.headers["x-edge-cache"], "MISS");
    // A thousand viewers, each with their own token, within the playlist's freshness: no
    // room call, no catalogue query.
    let tokens = viewer_urls(&p, &channel, &url, 1000);
    for viewer_url in &tokens {
        let again = p.get(viewer_url);
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.headers["x-edge-cache"], "HIT");
        assert_eq!(again.body, playlist.body);
    }
    assert_eq!(metered::snapshot().get("live.call"), Some(&1));
    // Once stale, the next viewer refreshes it from the room.
    p.advance_ms(1_001);
    assert_eq!(p.get(&tokens[0]).headers["x-edge-cache"], "MISS");
    assert_eq!(metered::snapshot().get("live.call"), Some(&2));

    // A segment of it.
    let segment_url = url.replace("live.m3u8", &format!("seg/{broadcast}/index2.ts"));
    p.sql.reset_counts();
    let segment = p.get(&segment_url);
    assert_eq!(segment.status, StatusCode::OK, "{}", segment.text());
    assert_eq!(segment.body.len(), 4 * 188);
    within(
        "GET /play/{token}/seg/{broadcast}/{file}",
        p.sql.counts(),
        &Budget {
            statements: 0,
            writes: 0,
            round_trips: 0,
        },
    );
    // A thousand viewers' requests of it: one blob read in all.
    metered::reset();
    for viewer_url in &tokens {
        let url = viewer_url.replace("live.m3u8", &format!("seg/{broadcast}/index2.ts"));
        let again = p.get(&url);
        assert_eq!(again.headers["x-edge-cache"], "HIT");
        assert_eq!(again.body, segment.body);
    }
    assert_eq!(metered::snapshot().get("blobs.get"), None);
    assert_eq!(p.sql.counts().statements, 0);

    // The home page's live list: built from one lobby call (the lobby keeps each live
    // channel's viewer count), then a snapshot for every home page within 2 s.
    metered::reset();
    let first = p.get("/api/live");
    assert_eq!(first.headers["x-edge-cache"], "MISS");
    assert_eq!(first.json()["channels"][0]["channel_id"], channel.as_str());
    let built = metered::snapshot().get("live.call").copied();
    assert_eq!(
        built,
        Some(1),
        "the lobby only, not one call per live channel"
    );
    for _ in 0..100 {
        assert_eq!(p.get("/api/live").headers["x-edge-cache"], "HIT");
    }
    assert_eq!(metered::snapshot().get("live.call").copied(), built);
}

/// Live playback URLs of `count` different viewers: `url` re-signed for each viewer, so
/// every token differs.
fn viewer_urls(p: &TestPlatform, channel: &str, url: &str, count: usize) -> Vec<String> {
    let exp = p.now_ms() / 1000 + 3600;
    let urls: Vec<String> = (0..count)
        .map(|i| {
            let token = UrlToken {
                scope: Scope::PlayChannel {
                    channel_id: channel.to_owned(),
                },
                viewer: Some(format!("usr_viewer{i:06}")),
                exp,
            }
            .sign(p.config.url_signing_secret.as_bytes());
            let prefix = url.split("/play/").next().unwrap();
            format!("{prefix}/play/{token}/live.m3u8")
        })
        .collect();
    let distinct: std::collections::HashSet<&String> = urls.iter().collect();
    assert_eq!(distinct.len(), count);
    urls
}

#[test]
fn hot_on_demand_routes_stay_within_their_query_budgets() {
    let p = TestPlatform::new();
    let (owner, channel) = p.broadcaster("Budget channel");
    let video = p.published_video(&owner, &channel);

    // A viewer opens a video: signed URLs; its view is queued, counted by the consumer.
    p.sql.reset_counts();
    let join = p.call(
        Method::POST,
        &format!("/api/videos/{video}/playback"),
        None,
        None,
    );
    assert_eq!(join.status, StatusCode::OK, "{}", join.text());
    let hls = join.json()["hls_url"].as_str().unwrap().to_owned();
    // The video's row only: no write on the play's path.
    within(
        "POST /api/videos/{id}/playback",
        p.sql.counts(),
        &Budget {
            statements: 1,
            writes: 0,
            round_trips: 1,
        },
    );

    // Its VOD playlist: written to the blob store when the broadcast ended.
    p.sql.reset_counts();
    let playlist = p.get(&hls);
    assert_eq!(playlist.status, StatusCode::OK, "{}", playlist.text());
    assert!(playlist.text().contains("#EXT-X-ENDLIST"));
    within(
        "GET /play/{token}/index.m3u8",
        p.sql.counts(),
        &Budget {
            statements: 0,
            writes: 0,
            round_trips: 0,
        },
    );

    // The catalogue's first page: built once, then served from the KV cache.
    p.sql.reset_counts();
    let miss = p.get("/api/videos");
    assert_eq!(miss.headers["x-edgevideo-cache"], "miss");
    within(
        "GET /api/videos (cache miss)",
        p.sql.counts(),
        &Budget {
            statements: 1,
            writes: 0,
            round_trips: 1,
        },
    );
    p.sql.reset_counts();
    let hit = p.get("/api/videos");
    assert_eq!(hit.headers["x-edgevideo-cache"], "hit");
    assert_eq!(hit.json(), miss.json());
    within(
        "GET /api/videos (cache hit)",
        p.sql.counts(),
        &Budget {
            statements: 0,
            writes: 0,
            round_trips: 0,
        },
    );
}

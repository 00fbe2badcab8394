//! Views off the join's path: a join queues its view (no catalogue write, at most one read),
//! and the queue consumer applies a batch of views in one SQL batch, counting each viewer
//! session once — within a batch, across concurrent batches and when a batch is delivered
//! again.

use edgevideo_core::model::job::Job;
use edgevideo_core::ports::{Sql as _, Statement};
use edgevideo_core::queue;
use edgevideo_testkit::client::{request, Reply};
use edgevideo_testkit::exec::{block_on, join_all};
use edgevideo_testkit::TestPlatform;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Method, StatusCode};

/// `POST /api/channels/{channel}/playback` with the viewer cookie `cookie` (a `name=value`
/// pair), as an anonymous viewer.
fn join(p: &TestPlatform, channel: &str, cookie: Option<&str>) -> Reply {
    let mut req = request(
        Method::POST,
        &format!("/api/channels/{channel}/playback"),
        None,
        None,
    );
    if let Some(cookie) = cookie {
        req.headers_mut()
            .insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
    }
    let reply = p.send(req);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply
}

/// The `name=value` part of the viewer cookie a reply set.
fn cookie_of(reply: &Reply) -> String {
    let set = reply.headers[SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// The live views counted, after checking that the global counter and the views of the one
/// channel watched (`scope_views`) agree.
fn live_views(p: &TestPlatform) -> i64 {
    let rows = block_on(p.sql.query(&Statement::new(
        "SELECT COALESCE((SELECT value FROM counters WHERE name = 'views.live'), 0) AS n, \
         (SELECT COALESCE(SUM(views), 0) FROM scope_views) AS scoped",
        vec![],
    )))
    .unwrap();
    let (counted, scoped) = (rows[0]["n"].as_i64(), rows[0]["scoped"].as_i64());
    assert_eq!(counted, scoped, "the counter and the channel's own count");
    counted.unwrap()
}

/// The views `scope` (a channel or a video) has counted.
fn scope_views(p: &TestPlatform, scope: &str) -> i64 {
    block_on(edgevideo_core::store::diag::scope_views(&p.sql, scope)).unwrap()
}

fn sessions(p: &TestPlatform) -> i64 {
    let rows = block_on(p.sql.query(&Statement::new(
        "SELECT COUNT(*) AS n FROM view_sessions",
        vec![],
    )))
    .unwrap();
    rows[0]["n"].as_i64().unwrap()
}

/// The view jobs waiting on the queue.
fn queued_views(p: &TestPlatform) -> Vec<Job> {
    p.jobs
        .waiting()
        .into_iter()
        .map(|j| j.job)
        .filter(|job| matches!(job, Job::CountView { .. }))
        .collect()
}

#[test]
fn a_join_reads_at_most_once_and_writes_nothing() {
    let p = TestPlatform::new();
    let (_, channel) = p.broadcaster("Joined");
    p.settle();
    p.sql.reset_counts();
    let first = join(&p, &channel, None);
    let counts = p.sql.counts();
    println!("join: {counts:?}");
    assert!(counts.statements <= 1, "{counts:?}");
    assert_eq!(counts.writes, 0, "{counts:?}");
    assert!(counts.round_trips <= 1, "{counts:?}");
    // A new viewer: its session is new for certain, so the response says it counts.
    assert_eq!(first.json()["view_counted"], true);
    assert_eq!(live_views(&p), 0, "not counted on the request");
    assert_eq!(queued_views(&p).len(), 1);
    // A returning viewer costs the same.
    let cookie = cookie_of(&first);
    p.sql.reset_counts();
    let again = join(&p, &channel, Some(&cookie));
    let counts = p.sql.counts();
    assert!(counts.statements <= 1 && counts.writes == 0, "{counts:?}");
    assert_eq!(
        again.json()["view_counted"],
        false,
        "not known on the request"
    );
    assert!(!again.headers.contains_key(SET_COOKIE));
    // The consumer counts them: one viewer, one session, one view.
    let runs = p.run_due_batch();
    assert!(runs.iter().all(|r| r.result.is_ok()), "{runs:?}");
    assert_eq!(live_views(&p), 1);
    assert_eq!(sessions(&p), 1);
}

#[test]
fn a_batch_counts_each_viewer_session_once() {
    let p = TestPlatform::new();
    let (_, channel) = p.broadcaster("Batched");
    p.settle();
    let a = cookie_of(&join(&p, &channel, None));
    join(&p, &channel, Some(&a));
    join(&p, &channel, Some(&a));
    let b = cookie_of(&join(&p, &channel, None));
    join(&p, &channel, Some(&b));
    assert_eq!(queued_views(&p).len(), 5);
    p.sql.reset_counts();
    let runs = p.run_due_batch();
    assert!(runs.iter().all(|r| r.result.is_ok()), "{runs:?}");
    let counts = p.sql.counts();
    println!("a batch of 5 views of 2 viewers: {counts:?}");
    assert_eq!(counts.round_trips, 1, "one SQL batch: {counts:?}");
    assert_eq!(live_views(&p), 2, "two viewers");
    assert_eq!(sessions(&p), 2);

    // Within the session: nothing more. After it: the viewer counts again.
    join(&p, &channel, Some(&a));
    p.run_due_batch();
    assert_eq!(live_views(&p), 2);
    p.advance_ms(31 * 60 * 1000);
    join(&p, &channel, Some(&a));
    join(&p, &channel, Some(&a));
    p.run_due_batch();
    assert_eq!(live_views(&p), 3, "one more view, for the new session");
}

#[test]
fn concurrent_and_redelivered_batches_do_not_double_count() {
    let p = TestPlatform::new();
    let (_, channel) = p.broadcaster("Concurrent");
    p.settle();
    let a = cookie_of(&join(&p, &channel, None));
    p.jobs.take_due(p.now_ms()).unwrap();
    join(&p, &channel, Some(&a));
    join(&p, &channel, Some(&a));
    let views = queued_views(&p);
    assert_eq!(views.len(), 2);
    // The two views of one viewer in two batches consumed at the same time.
    let outcomes = join_all(vec![
        queue::run_batch(&p, vec![Ok(views[0].clone())]),
        queue::run_batch(&p, vec![Ok(views[1].clone())]),
    ]);
    assert!(outcomes.iter().flatten().all(Result::is_ok));
    assert_eq!(live_views(&p), 1);
    // A batch delivered again (acknowledgement lost): the session is open, nothing counts.
    let again = block_on(queue::run_batch(&p, views.into_iter().map(Ok).collect()));
    assert!(again.iter().all(Result::is_ok));
    assert_eq!(live_views(&p), 1);
    assert_eq!(sessions(&p), 1);
}

#[test]
fn an_anonymous_viewer_over_the_address_cap_opens_a_session_uncounted() {
    let p = TestPlatform::new();
    let (_, channel) = p.broadcaster("Capped");
    p.settle();
    let cap = edgevideo_core::services::views::NEW_VIEWERS_PER_ADDRESS;
    let mut over = None;
    for i in 0..=cap {
        let reply = join(&p, &channel, None);
        assert_eq!(reply.json()["view_counted"], i < cap, "join {i}");
        over = Some(cookie_of(&reply));
    }
    p.run_due_batch();
    assert_eq!(live_views(&p), cap as i64);
    assert_eq!(sessions(&p), cap as i64 + 1);
    // The capped viewer's cookie, within its session: still not counted.
    join(&p, &channel, over.as_deref());
    p.run_due_batch();
    assert_eq!(live_views(&p), cap as i64);
}

#[test]
fn a_join_and_a_play_each_count_under_their_counter() {
    let p = TestPlatform::new();
    let (owner, channel) = p.broadcaster("Both");
    let video = p.published_video(&owner, &channel);
    p.settle();
    let reply = p.call(
        Method::POST,
        &format!("/api/videos/{video}/playback"),
        None,
        None,
    );
    assert_eq!(reply.status, StatusCode::OK);
    join(&p, &channel, None);
    // Spin runs jobs one by one: the same outcome.
    let runs = p.run_due_jobs();
    assert!(runs.iter().all(|r| r.result.is_ok()), "{runs:?}");
    let rows = block_on(p.sql.query(&Statement::new(
        "SELECT name, value FROM counters WHERE name LIKE 'views.%' ORDER BY name",
        vec![],
    )))
    .unwrap();
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["value"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("views.live".to_owned(), 1), ("views.vod".to_owned(), 1)]
    );
    assert_eq!((scope_views(&p, &channel), scope_views(&p, &video)), (1, 1));
}

#[test]
fn a_videos_views_stay_when_its_sessions_are_swept() {
    use edgevideo_core::services::views::{sweep, SESSION_MS};
    let p = TestPlatform::new();
    let (owner, channel) = p.broadcaster("Swept");
    let video = p.published_video(&owner, &channel);
    p.settle();
    for _ in 0..2 {
        let play = p.call(
            Method::POST,
            &format!("/api/videos/{video}/playback"),
            None,
            None,
        );
        assert_eq!(play.status, StatusCode::OK);
        let cookie = play.headers[SET_COOKIE].to_str().unwrap().to_owned();
        assert!(cookie.starts_with("ev_viewer="), "{cookie}");
    }
    assert!(p.run_due_jobs().iter().all(|r| r.result.is_ok()));
    let views_listed = || {
        let listed = p.call(Method::GET, "/api/videos", None, None);
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
        let items = listed.json()["videos"].clone();
        let card = items
            .as_array()
            .unwrap()
            .iter()
            .find(|card| card["id"] == video.as_str())
            .cloned()
            .unwrap();
        card["views"].as_i64().unwrap()
    };
    assert_eq!(views_listed(), 2, "two anonymous viewers");
    p.advance_ms(SESSION_MS + 1);
    assert!(block_on(sweep(&p)).unwrap() >= 2, "the sessions are swept");
    assert_eq!(sessions(&p), 0);
    assert_eq!(views_listed(), 2, "the count stays");
}

/// `POST /api/channels/{channel}/playback` from network address `address` with the viewer
/// cookie `cookie`.
fn join_from(p: &TestPlatform, channel: &str, address: &str, cookie: &str) -> Reply {
    let mut req = request(
        Method::POST,
        &format!("/api/channels/{channel}/playback"),
        None,
        None,
    );
    let headers = req.headers_mut();
    headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
    headers.insert(
        edgevideo_core::api::auth::CLIENT_ADDRESS_HEADER,
        HeaderValue::from_str(address).unwrap(),
    );
    let reply = p.send(req);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply
}

#[test]
fn hoarded_viewer_cookies_count_up_to_the_address_cap() {
    use edgevideo_core::services::views::{sign_viewer, ANONYMOUS_VIEWS_PER_ADDRESS, SESSION_MS};
    let p = TestPlatform::new();
    let (_, channel) = p.broadcaster("Hoarded");
    p.settle();
    // Cookies are free to collect (every cookieless request gets one); these are as signed.
    let secret = p.config.url_signing_secret.clone();
    let cap = ANONYMOUS_VIEWS_PER_ADDRESS as usize;
    let hoard: Vec<String> = (0..cap + 5)
        .map(|i| {
            let id = format!("vw_hoard{i:012}");
            format!("ev_viewer={}", sign_viewer(secret.as_bytes(), &id))
        })
        .collect();
    for cookie in &hoard {
        join_from(&p, &channel, "198.51.100.7", cookie);
    }
    p.run_due_batch();
    assert_eq!(
        live_views(&p),
        cap as i64,
        "one address counts at most the cap"
    );
    // Another address counts on its own.
    let fresh: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "ev_viewer={}",
                sign_viewer(secret.as_bytes(), &format!("vw_other{i:012}"))
            )
        })
        .collect();
    for cookie in &fresh {
        join_from(&p, &channel, "198.51.100.8", cookie);
    }
    p.run_due_batch();
    assert_eq!(live_views(&p), cap as i64 + 3);
    // The next session period, the first address counts again, up to the cap.
    p.advance_ms(SESSION_MS);
    for cookie in &hoard {
        join_from(&p, &channel, "198.51.100.7", cookie);
    }
    p.run_due_batch();
    assert_eq!(live_views(&p), 2 * cap as i64 + 3);
}

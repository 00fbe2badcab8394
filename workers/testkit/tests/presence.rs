//! Which presence object a viewer's socket joins (`GET /api/channels/{id}/ws`): the channel's
//! room while its audience is small, one of its presence shards once the lobby's count (or
//! the audience its last big broadcast drew) needs them.

use edgevideo_core::model::room::{RoomRequest, RoomResponse, LOBBY};
use edgevideo_core::ports::Live as _;
use edgevideo_core::room::{lobby_viewers, BIG_AUDIENCE};
use edgevideo_testkit::exec::block_on;
use edgevideo_testkit::{client, TestPlatform};
use http::{HeaderValue, Method, StatusCode};

/// The room a new socket of `channel` is handed to (the upgrade answer names it).
fn joins(p: &TestPlatform, channel: &str) -> String {
    let mut request = client::request(
        Method::GET,
        &format!("/api/channels/{channel}/ws"),
        None,
        None,
    );
    request
        .headers_mut()
        .insert("upgrade", HeaderValue::from_static("websocket"));
    let reply = p.send(request);
    assert_eq!(
        reply.status,
        StatusCode::SWITCHING_PROTOCOLS,
        "{}",
        reply.text()
    );
    reply.json()["room"].as_str().unwrap().to_owned()
}

/// The channel's room tells the lobby its count (as its alarm does).
fn tell_lobby(p: &TestPlatform, channel: &str, count: u64) {
    block_on(p.live.call(LOBBY, &lobby_viewers(channel, count))).unwrap();
}

/// Broadcasts one segment on `channel` and leaves it live.
fn go_live(p: &TestPlatform, ingest: &str) {
    let reply = p.push_segment(ingest, "index0.ts");
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
}

/// Ends the broadcast pushed to `ingest`; a minute later (the edge's copy of the lobby's
/// list has expired by then).
fn end(p: &TestPlatform, ingest: &str) {
    let files = vec!["index0.ts".to_owned()];
    let reply = p.push_playlist(ingest, &files, true);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    p.settle();
    p.advance_ms(60_000);
}

/// Starts the next broadcast on `ingest` (returned), 2 s later.
fn next_broadcast(p: &TestPlatform, ingest: String) -> String {
    go_live(p, &ingest);
    p.advance_ms(2_001);
    ingest
}

#[test]
fn a_big_audience_is_spread_over_shards_while_waiting_and_from_the_next_first_join() {
    let p = TestPlatform::with_vars(&[("PRESENCE_SHARD_SOCKETS", "2")]).unwrap();
    let (owner, channel) = p.broadcaster("Big audience");
    let ingest = p.ingest_url(&owner, &channel);

    // Small and unknown: the room.
    go_live(&p, &ingest);
    assert_eq!(joins(&p, &channel), channel);
    // Once the lobby's count needs shards (and the edge's copy of it expired), a shard.
    tell_lobby(&p, &channel, BIG_AUDIENCE);
    p.advance_ms(2_001);
    let shard = joins(&p, &channel);
    assert!(
        shard.starts_with(&format!("{channel}/presence/")),
        "{shard}"
    );

    // The broadcast ends; the lobby remembers its audience, so the viewers waiting for the
    // next one are spread over shards, and so are the first joins after it starts, before
    // the new broadcast has a count of its own.
    end(&p, &ingest);
    let waiting = joins(&p, &channel);
    assert!(
        waiting.starts_with(&format!("{channel}/presence/")),
        "{waiting}"
    );
    let ingest = next_broadcast(&p, p.ingest_url(&owner, &channel));
    let first = joins(&p, &channel);
    assert!(
        first.starts_with(&format!("{channel}/presence/")),
        "{first}"
    );
    let RoomResponse::Lobby { channels, expected } =
        block_on(p.live.call(LOBBY, &RoomRequest::LobbyList)).unwrap()
    else {
        panic!("not a lobby list");
    };
    assert_eq!(channels[0].viewers, 0, "the new broadcast's own count");
    assert_eq!(expected.get(&channel), Some(&BIG_AUDIENCE));

    // A small audience this time: after it, the room again.
    tell_lobby(&p, &channel, 3);
    end(&p, &ingest);
    assert_eq!(joins(&p, &channel), channel);
    next_broadcast(&p, p.ingest_url(&owner, &channel));
    assert_eq!(joins(&p, &channel), channel);
}

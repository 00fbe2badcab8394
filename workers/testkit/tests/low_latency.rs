//! Low-latency HLS through the routes: parts pushed to the ingest URL are listed at once in
//! the live playlist (`EXT-X-PART`, `EXT-X-PRELOAD-HINT`), a blocking reload is answered
//! from the edge cache under a token-free key, parts play, and a broadcast without parts
//! (ffmpeg's push) keeps its ordinary playlist. The in-memory rooms answer a held request at
//! once; holding is the Workers host's (checked end to end in `tests/e2e`).

use edgevideo_core::model::job::Job;
use edgevideo_core::ports::{metered, Blobs as _};
use edgevideo_testkit::client::raw_request;
use edgevideo_testkit::exec::block_on;
use edgevideo_testkit::TestPlatform;
use http::{Method, StatusCode};

/// One ISO BMFF box.
fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// An init segment with one H.264 track (what the ingest reads of it: `ftyp`, the sample
/// entry and its `avcC`).
fn init_bytes() -> Vec<u8> {
    let mut entry = vec![0u8; 78];
    entry[24..26].copy_from_slice(&1280u16.to_be_bytes());
    entry[26..28].copy_from_slice(&720u16.to_be_bytes());
    entry.extend(mp4_box(b"avcC", &[1, 0x64, 0x00, 0x1f, 0xff]));
    let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
    stsd.extend(mp4_box(b"avc1", &entry));
    let stbl = mp4_box(b"stbl", &mp4_box(b"stsd", &stsd));
    let trak = mp4_box(b"trak", &mp4_box(b"mdia", &mp4_box(b"minf", &stbl)));
    let mut out = mp4_box(b"ftyp", b"iso6\0\0\0\0");
    out.extend(mp4_box(b"moov", &trak));
    out
}

/// A part's bytes (`moof` + `mdat`, the first of a segment with `styp`), told apart by `tag`.
fn part_bytes(first: bool, tag: u8) -> Vec<u8> {
    let mut out = if first {
        mp4_box(b"styp", b"msdhcmfs")
    } else {
        Vec::new()
    };
    out.extend(mp4_box(
        b"moof",
        &mp4_box(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, tag]),
    ));
    out.extend(mp4_box(b"mdat", &[tag; 32]));
    out
}

/// The six parts of a 2 s segment (333,333 µs each, the last 333,335).
const PART_US: [u64; 6] = [333_333, 333_333, 333_333, 333_333, 333_333, 333_335];

struct Pusher<'a> {
    p: &'a TestPlatform,
    base: String,
}

impl<'a> Pusher<'a> {
    /// A pusher to a new broadcaster's new channel `name`, and the channel's id.
    fn on_new_channel(p: &'a TestPlatform, name: &str) -> (Self, String) {
        let (owner, channel) = p.broadcaster(name);
        let ingest = p.ingest_url(&owner, &channel);
        let base = ingest.rsplit_once('/').unwrap().0.to_owned();
        (Pusher { p, base }, channel)
    }

    fn put(&self, file: &str, body: Vec<u8>) -> edgevideo_testkit::client::Reply {
        self.p.send(raw_request(
            Method::PUT,
            &format!("{}/{file}", self.base),
            None,
            body,
        ))
    }

    fn part(&self, segment: u64, index: usize) -> edgevideo_testkit::client::Reply {
        let file = format!(
            "index_{segment:05}.part{index}.m4s?duration_us={}&part_target_us=334000&independent={}",
            PART_US[index],
            u8::from(index == 0)
        );
        self.put(
            &file,
            part_bytes(index == 0, (segment * 10) as u8 + index as u8),
        )
    }

    fn segment(&self, segment: u64) -> edgevideo_testkit::client::Reply {
        let mut bytes = Vec::new();
        for index in 0..6 {
            bytes.extend(part_bytes(index == 0, (segment * 10) as u8 + index as u8));
        }
        self.put(&format!("index_{segment:05}.m4s"), bytes)
    }

    fn playlist(&self, segments: u64, ended: bool) -> edgevideo_testkit::client::Reply {
        let mut text = String::from(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n\
             #EXT-X-MAP:URI=\"index_init.mp4\"\n",
        );
        for s in 0..segments {
            text.push_str(&format!("#EXTINF:2.000000,\nindex_{s:05}.m4s\n"));
        }
        if ended {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        self.put("index.m3u8", text.into_bytes())
    }
}

#[test]
fn parts_are_listed_at_once_and_blocking_reloads_come_from_the_edge_cache() {
    let p = TestPlatform::new();
    let (pusher, channel) = Pusher::on_new_channel(&p, "Low latency");
    for index in 0..6 {
        assert_eq!(pusher.part(0, index).status, StatusCode::CREATED);
    }
    let init = pusher.put("index_init.mp4", init_bytes());
    assert_eq!(init.status, StatusCode::CREATED, "{}", init.text());
    let stored = pusher.segment(0);
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.text());
    let broadcast = stored.json()["broadcast_id"].as_str().unwrap().to_owned();
    let listed = pusher.playlist(1, false);
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    for index in 0..3 {
        let reply = pusher.part(1, index);
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        assert_eq!(reply.json()["broadcast_id"], broadcast.as_str());
    }

    let url = p.channel_playback_url(&channel);
    let playlist = p.get(&url);
    assert_eq!(playlist.status, StatusCode::OK);
    assert_eq!(playlist.headers["cache-control"], "no-cache");
    let text = playlist.text();
    let seg = format!("seg/{broadcast}/");
    assert!(
        text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.002\n"),
        "{text}"
    );
    assert!(
        text.contains("#EXT-X-PART-INF:PART-TARGET=0.334\n"),
        "{text}"
    );
    // Segment 0 with its six parts, then the three parts of segment 1 and the next one's hint.
    let expected_tail = format!(
        "#EXT-X-PART:DURATION=0.333333,URI=\"{seg}index_00000.part0.m4s\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.333333,URI=\"{seg}index_00000.part1.m4s\"\n\
         #EXT-X-PART:DURATION=0.333333,URI=\"{seg}index_00000.part2.m4s\"\n\
         #EXT-X-PART:DURATION=0.333333,URI=\"{seg}index_00000.part3.m4s\"\n\
         #EXT-X-PART:DURATION=0.333333,URI=\"{seg}index_00000.part4.m4s\"\n\
         #EXT-X-PART:DURATION=0.333335,URI=\"{seg}index_00000.part5.m4s\"\n\
         #EXTINF:2.0,\n{seg}index_00000.m4s\n\
         #EXT-X-PART:DURATION=0.333333,URI=\"{seg}index_00001.part0.m4s\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.333333,URI=\"{seg}index_00001.part1.m4s\"\n\
         #EXT-X-PART:DURATION=0.333333,URI=\"{seg}index_00001.part2.m4s\"\n\
         #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{seg}index_00001.part3.m4s\"\n"
    );
    assert!(text.ends_with(&expected_tail), "{text}");

    // A part plays with its bytes; the hinted one is not stored yet (these rooms do not wait).
    let part = p.get(&url.replace("live.m3u8", &format!("{seg}index_00001.part2.m4s")));
    assert_eq!(part.status, StatusCode::OK);
    assert_eq!(part.body, part_bytes(false, 12));
    let hinted = p.get(&url.replace("live.m3u8", &format!("{seg}index_00001.part3.m4s")));
    assert_eq!(hinted.status, StatusCode::NOT_FOUND);

    // A blocking reload for a part that exists: one room call for every viewer, whatever
    // their token.
    let tokens: Vec<String> = (0..20).map(|_| p.channel_playback_url(&channel)).collect();
    metered::reset();
    for viewer in &tokens {
        let reload = p.get(&format!("{viewer}?_HLS_msn=1&_HLS_part=2"));
        assert_eq!(reload.status, StatusCode::OK);
        assert!(reload.text().contains("index_00001.part2.m4s"));
    }
    assert_eq!(metered::snapshot().get("live.call.window"), Some(&1));

    // Reloads the spec refuses are 400s.
    for (query, code) in [
        ("_HLS_msn=5", "too_far_ahead"),
        ("_HLS_msn=1&_HLS_part=9", "too_far_ahead"),
        ("_HLS_part=1", "invalid_request"),
        ("_HLS_msn=-1", "invalid_request"),
    ] {
        let refused = p.get(&format!("{url}?{query}"));
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(refused.error_code().as_deref(), Some(code), "{query}");
    }

    // The broadcast ends: the playlist is an ordinary one with ENDLIST, without parts.
    for index in 3..6 {
        pusher.part(1, index);
    }
    pusher.segment(1);
    pusher.playlist(2, true);
    p.advance_ms(6_000);
    let ended = p.get(&url).text();
    assert!(ended.contains("#EXT-X-ENDLIST"), "{ended}");
    assert!(!ended.contains(".part"), "{ended}");
}

#[test]
fn a_part_with_a_bad_query_or_body_is_refused_and_stores_nothing() {
    let p = TestPlatform::new();
    let (pusher, channel) = Pusher::on_new_channel(&p, "Bad parts");
    for (file, body, status, code) in [
        (
            "index_00000.part0.m4s",
            part_bytes(true, 1),
            400,
            "invalid_part",
        ),
        (
            "index_00000.part0.m4s?duration_us=0",
            part_bytes(true, 1),
            400,
            "invalid_part",
        ),
        (
            "index_00000.part0.m4s?duration_us=99999999999",
            part_bytes(true, 1),
            400,
            "invalid_part",
        ),
        (
            "index_00000.part0.m4s?duration_us=1000&independent=maybe",
            part_bytes(true, 1),
            400,
            "invalid_part",
        ),
        (
            "index_00000.part0.m4s?duration_us=1000",
            b"not boxes".to_vec(),
            422,
            "invalid_media",
        ),
    ] {
        let reply = pusher.put(file, body);
        assert_eq!(reply.status.as_u16(), status, "{file}: {}", reply.text());
        assert_eq!(reply.error_code().as_deref(), Some(code), "{file}");
    }
    let status = p.call(Method::GET, &format!("/api/channels/{channel}"), None, None);
    assert_eq!(status.json()["live"], false, "{}", status.text());
}

#[test]
fn ffmpeg_pushes_without_parts_keep_the_ordinary_playlist() {
    let p = TestPlatform::new();
    let (owner, channel) = p.broadcaster("Plain");
    let ingest = p.ingest_url(&owner, &channel);
    p.push_segment(&ingest, "index0.ts");
    p.push_playlist(&ingest, &["index0.ts".to_owned()], false);
    let url = p.channel_playback_url(&channel);
    let text = p.get(&url).text();
    assert!(!text.contains("EXT-X-PART"), "{text}");
    assert!(text.contains("index0.ts"), "{text}");
    // A player asking for a blocking reload of a playlist without parts gets it at once.
    let reload = p.get(&format!("{url}?_HLS_msn=0"));
    assert_eq!(reload.status, StatusCode::OK);
    assert!(reload.text().contains("index0.ts"));
}

#[test]
fn a_finished_broadcasts_parts_are_deleted_a_minute_after_it_ends_and_its_segments_stay() {
    let p = TestPlatform::new();
    let (pusher, channel) = Pusher::on_new_channel(&p, "Parts cleanup");
    assert_eq!(
        pusher.put("index_init.mp4", init_bytes()).status,
        StatusCode::CREATED
    );
    let mut broadcast = String::new();
    for segment in 0..2 {
        for index in 0..6 {
            assert_eq!(pusher.part(segment, index).status, StatusCode::CREATED);
        }
        let stored = pusher.segment(segment);
        assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.text());
        broadcast = stored.json()["broadcast_id"].as_str().unwrap().to_owned();
        pusher.playlist(segment + 1, segment == 1);
    }
    let prefix = format!("live/{channel}/{broadcast}/");
    let files = || -> Vec<String> {
        block_on(p.blobs.list(&prefix))
            .unwrap()
            .into_iter()
            .map(|k| k.trim_start_matches(&prefix).to_owned())
            .collect()
    };
    let parts = |files: &[String]| files.iter().filter(|f| f.contains(".part")).count();
    p.advance_ms(6_000);
    p.settle();
    assert_eq!(
        parts(&files()),
        12,
        "kept while players may still fetch the last ones"
    );

    p.advance_ms(60_000);
    let ran = p.settle();
    assert!(
        ran.iter().any(|job| matches!(job, Job::DropParts { .. })),
        "{ran:?}"
    );
    let left = files();
    assert_eq!(parts(&left), 0, "{left:?}");
    for kept in ["index_init.mp4", "index_00000.m4s", "index_00001.m4s"] {
        assert!(left.iter().any(|f| f == kept), "{kept} in {left:?}");
    }
}

#[test]
fn a_segment_can_be_committed_from_its_stored_parts_instead_of_sent_again() {
    let p = TestPlatform::new();
    let (pusher, channel) = Pusher::on_new_channel(&p, "Commit");
    assert_eq!(
        pusher.put("index_init.mp4", init_bytes()).status,
        StatusCode::CREATED
    );
    for index in 0..6 {
        assert_eq!(pusher.part(0, index).status, StatusCode::CREATED);
    }
    // Refused shapes: a count out of range, a body with it, a TS segment.
    for (file, body) in [
        ("index_00000.m4s?from_parts=0", Vec::new()),
        ("index_00000.m4s?from_parts=65", Vec::new()),
        ("index_00000.m4s?from_parts=six", Vec::new()),
        ("index_00000.m4s?from_parts=6", vec![0; 8]),
        ("index_00000.ts?from_parts=6", Vec::new()),
    ] {
        let refused = pusher.put(file, body);
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{file}: {}",
            refused.text()
        );
    }
    // A part that was never stored: the pusher is told to send the bytes.
    let missing = pusher.put("index_00000.m4s?from_parts=7", Vec::new());
    assert_eq!(
        missing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        missing.text()
    );
    assert_eq!(missing.error_code().as_deref(), Some("parts_missing"));

    // The six parts make the segment: stored once, byte for byte their concatenation.
    let committed = pusher.put("index_00000.m4s?from_parts=6", Vec::new());
    assert_eq!(
        committed.status,
        StatusCode::CREATED,
        "{}",
        committed.text()
    );
    let expected: Vec<u8> = (0..6).flat_map(|i| part_bytes(i == 0, i as u8)).collect();
    assert_eq!(committed.json()["size"], expected.len());
    let broadcast = committed.json()["broadcast_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = format!("live/{channel}/{broadcast}/index_00000.m4s");
    let stored = block_on(p.blobs.get(&key, None)).unwrap().unwrap();
    assert_eq!(stored.bytes, expected);
    // A second commit of the same segment is the same duplicate as a second upload.
    let again = pusher.put("index_00000.m4s?from_parts=6", Vec::new());
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert_eq!(pusher.playlist(1, false).status, StatusCode::OK);
}

/// A chunk of a part: whole `moof` + `mdat` boxes, told apart by `tag`.
fn chunk_bytes(tag: u8) -> Vec<u8> {
    part_bytes(false, tag)
}

#[test]
fn a_part_sent_in_chunks_reaches_its_viewer_as_it_comes_and_is_stored_once_committed() {
    use edgevideo_core::api::growing::GrowingPart;

    let p = TestPlatform::new();
    let (pusher, channel) = Pusher::on_new_channel(&p, "Chunks");
    assert_eq!(
        pusher.put("index_init.mp4", init_bytes()).status,
        StatusCode::CREATED
    );
    let file = "index_00000.part0.m4s";
    let mut first = mp4_box(b"styp", b"msdhcmfs");
    first.extend(chunk_bytes(1));
    let sent = pusher.put(&format!("{file}?offset=0"), first.clone());
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text());
    assert_eq!(sent.json()["size"], first.len());
    let broadcast = sent.json()["broadcast_id"].as_str().unwrap().to_owned();

    // The viewer of the part gets the bytes sent so far, and the rest to come.
    let url = p.channel_playback_url(&channel);
    let part_url = url.replace("live.m3u8", &format!("seg/{broadcast}/{file}"));
    let viewer = block_on(edgevideo_core::handle(
        &p,
        raw_request(Method::GET, &part_url, None, Vec::new()),
    ));
    assert_eq!(viewer.status(), StatusCode::OK);
    assert_eq!(viewer.headers()["cache-control"], "no-store");
    assert_eq!(viewer.body(), &first);
    let mut rest = viewer
        .extensions()
        .get::<GrowingPart>()
        .cloned()
        .expect("more of the part is to come");

    // Chunks that do not follow the part's bytes are refused; the same one again is taken.
    let second = chunk_bytes(2);
    let offset = first.len();
    for (query, body, status) in [
        (
            format!("offset={}", offset + 1),
            second.clone(),
            StatusCode::CONFLICT,
        ),
        ("offset=0".to_owned(), chunk_bytes(9), StatusCode::CONFLICT),
        (
            format!("offset={offset}"),
            vec![1, 2, 3],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "offset=x".to_owned(),
            second.clone(),
            StatusCode::BAD_REQUEST,
        ),
        // A part sent in chunks is at most 1 MiB (the room keeps it in one stored value).
        (
            "offset=1048576".to_owned(),
            second.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            format!("offset={offset}&from_chunks=9&duration_us=1"),
            second.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("offset={offset}"),
            second.clone(),
            StatusCode::ACCEPTED,
        ),
        (
            format!("offset={offset}"),
            second.clone(),
            StatusCode::ACCEPTED,
        ),
        ("offset=0".to_owned(), first.clone(), StatusCode::ACCEPTED),
    ] {
        let reply = pusher.put(&format!("{file}?{query}"), body);
        assert_eq!(reply.status, status, "{query}: {}", reply.text());
    }
    assert_eq!(block_on(rest.next(&p)).unwrap(), Some(second.clone()));

    // The commit names the part's size: a wrong one is refused, the right one stores it. It
    // may carry the last chunk.
    let meta = "duration_us=333333&part_target_us=334000&independent=1";
    let total = first.len() + second.len();
    let short = pusher.put(
        &format!("{file}?from_chunks={}&{meta}", total - 1),
        Vec::new(),
    );
    assert_eq!(
        short.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        short.text()
    );
    assert_eq!(short.error_code().as_deref(), Some("chunks_missing"));
    let unplaced = pusher.put(
        &format!("{file}?from_chunks={total}&{meta}"),
        second.clone(),
    );
    assert_eq!(unplaced.status, StatusCode::BAD_REQUEST);
    let third = chunk_bytes(3);
    let total = total + third.len();
    let committed = pusher.put(
        &format!(
            "{file}?offset={}&from_chunks={total}&{meta}",
            first.len() + second.len()
        ),
        third.clone(),
    );
    assert_eq!(
        committed.status,
        StatusCode::CREATED,
        "{}",
        committed.text()
    );
    assert_eq!(committed.json()["size"], total);
    let whole = [first.clone(), second.clone(), third.clone()].concat();
    let key = format!("live/{channel}/{broadcast}/{file}");
    assert_eq!(
        block_on(p.blobs.get(&key, None)).unwrap().unwrap().bytes,
        whole
    );
    assert_eq!(block_on(rest.next(&p)).unwrap(), Some(third));

    // The viewer has had it all; a later viewer reads the stored part, which is immutable.
    assert_eq!(block_on(rest.next(&p)).unwrap(), None);
    // (Once the isolate's memory of the first viewer's miss is over.)
    p.advance_ms(1_000);
    let later = p.get(&part_url);
    assert_eq!(later.status, StatusCode::OK);
    assert_eq!(later.body, whole);
    assert!(later.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    // A part never sent is not found.
    let never = url.replace(
        "live.m3u8",
        &format!("seg/{broadcast}/index_00007.part0.m4s"),
    );
    assert_eq!(p.get(&never).status, StatusCode::NOT_FOUND);
}

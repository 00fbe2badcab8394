//! The channel room's live-window state machine, driven as ffmpeg drives it: segments, then
//! rolling playlists, overlapping uploads, `ENDLIST`, silence, and a second pusher.

use edgevideo_core::memory::MemoryRoom;
use edgevideo_core::model::hls::{PushedEntry, PushedPlaylist, Variant};
use edgevideo_core::model::isobmff::InitInfo;
use edgevideo_core::model::room::{
    BroadcastLimits, Contradiction, EndedBroadcast, RoomRequest, RoomResponse,
};
use edgevideo_core::room::{self, ENDED_LISTED_MS};
use pollster::block_on;

const IDLE_MS: u64 = 30_000;
/// The size every test segment declares.
const SEGMENT_BYTES: u64 = 1000;

struct Pusher<'a> {
    room: &'a MemoryRoom,
    session: &'static str,
    key_version: i64,
    broadcast: Option<String>,
    /// The broadcast quota every begin carries (none unless a test sets one).
    limits: BroadcastLimits,
}

impl<'a> Pusher<'a> {
    /// A pusher with an ingest URL of stream-key version 1, the room's current version.
    fn new(room: &'a MemoryRoom, session: &'static str) -> Self {
        let pusher = Pusher {
            room,
            session,
            key_version: 1,
            broadcast: None,
            limits: BroadcastLimits::default(),
        };
        assert_eq!(
            pusher.call(RoomRequest::SetKeyVersion { version: 1 }),
            RoomResponse::Done
        );
        pusher
    }

    /// Calls the room as a host does: both messages cross a JSON boundary.
    fn call(&self, request: RoomRequest) -> RoomResponse {
        let request: RoomRequest =
            serde_json::from_str(&serde_json::to_string(&request).unwrap()).unwrap();
        let response =
            block_on(room::handle(&self.room.store, &self.room.sockets, request)).unwrap();
        let json = serde_json::to_string(&response).expect("responses serialize");
        serde_json::from_str(&json).expect("responses deserialize")
    }

    fn begin(&mut self, file: &str, now_ms: u64) -> RoomResponse {
        let response = self.call(RoomRequest::BeginSegment {
            channel_id: "ch_test".into(),
            session: self.session.into(),
            key_version: self.key_version,
            file: file.into(),
            new_broadcast_id: format!("brd_{now_ms}"),
            now_ms,
            idle_timeout_ms: IDLE_MS,
            part: false,
            size: SEGMENT_BYTES,
            limits: self.limits,
        });
        if let RoomResponse::Began { broadcast_id, .. } = &response {
            self.broadcast = Some(broadcast_id.clone());
        }
        response
    }

    fn stored(&self, file: &str, now_ms: u64) -> Option<EndedBroadcast> {
        let init = file.ends_with(".mp4").then(|| InitInfo {
            codecs: vec!["avc1.64001f".into(), "opus".into()],
            resolution: Some((640, 360)),
        });
        match self.call(RoomRequest::SegmentStored {
            session: self.session.into(),
            broadcast_id: self.broadcast.clone().unwrap(),
            file: file.into(),
            size: 1000,
            init,
            now_ms,
        }) {
            RoomResponse::Stored { ended } => ended,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn segment(&mut self, file: &str, now_ms: u64) -> Option<EndedBroadcast> {
        assert!(matches!(
            self.begin(file, now_ms),
            RoomResponse::Began { .. }
        ));
        self.stored(file, now_ms)
    }

    fn playlist(&self, first: u64, count: u64, end_list: bool, now_ms: u64) -> RoomResponse {
        self.rendition_playlist("index", first, count, end_list, now_ms)
    }

    /// The media playlist of `rendition`: `index{i}.ts` for `index`, else CMAF segments
    /// `{rendition}_{i}.m4s` after `{rendition}_init.mp4`.
    fn rendition_playlist(
        &self,
        rendition: &str,
        first: u64,
        count: u64,
        end_list: bool,
        now_ms: u64,
    ) -> RoomResponse {
        let file = |i: u64| match rendition {
            "index" => format!("index{i}.ts"),
            r => format!("{r}_{i}.m4s"),
        };
        let entries = (first..first + count)
            .map(|i| PushedEntry {
                file: file(i),
                duration_ms: 2000,
                sequence: i,
            })
            .collect();
        self.call(RoomRequest::Playlist {
            session: self.session.into(),
            key_version: self.key_version,
            rendition: rendition.into(),
            playlist: PushedPlaylist {
                entries,
                end_list,
                target_duration_ms: 2000,
                map: (rendition != "index").then(|| format!("{rendition}_init.mp4")),
            },
            now_ms,
        })
    }

    fn ladder(&self, variants: &[(&str, u64, Option<&str>)], now_ms: u64) -> RoomResponse {
        let variants = variants
            .iter()
            .map(|(rendition, bandwidth, codecs)| Variant {
                rendition: (*rendition).into(),
                bandwidth: *bandwidth,
                average_bandwidth: None,
                resolution: None,
                codecs: codecs.map(str::to_owned),
            })
            .collect();
        self.call(RoomRequest::Ladder {
            session: self.session.into(),
            key_version: self.key_version,
            variants,
            now_ms,
        })
    }

    fn window(&self) -> Vec<String> {
        self.rendition_window(None)
    }

    fn rendition_window(&self, rendition: Option<&str>) -> Vec<String> {
        match self.call(RoomRequest::Window {
            max_segments: 6,
            rendition: rendition.map(str::to_owned),
            now_ms: 0,
            block: None,
        }) {
            RoomResponse::Window { window: Some(w) } => {
                w.segments.into_iter().map(|s| s.file).collect()
            }
            RoomResponse::Window { window: None } => vec![],
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn ended_of(response: RoomResponse) -> Option<EndedBroadcast> {
    match response {
        RoomResponse::PlaylistAccepted { ended, .. } => ended,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn first_segment_starts_a_broadcast_and_playlists_list_stored_segments() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    match p.begin("index0.ts", 1_000) {
        RoomResponse::Began {
            started: Some(s), ..
        } => assert_eq!(s.started_at_ms, 1_000),
        other => panic!("expected a start, got {other:?}"),
    }
    assert_eq!(room.sockets.sent.borrow()[0]["type"], "live");
    p.stored("index0.ts", 1_100);
    assert!(p.window().is_empty(), "no duration known yet");
    p.playlist(0, 1, false, 1_200);
    assert_eq!(p.window(), vec!["index0.ts"]);
    p.segment("index1.ts", 3_000);
    p.playlist(0, 2, false, 3_100);
    assert_eq!(p.window(), vec!["index0.ts", "index1.ts"]);
    assert_eq!(room.store.alarm_at.get(), Some(3_000 + IDLE_MS));
}

#[test]
fn an_overlapping_upload_is_listed_in_order_when_it_lands() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    p.segment("index0.ts", 0);
    p.begin("index1.ts", 2_000); // upload of index1 begins but is not finished
    p.segment("index2.ts", 4_000);
    p.playlist(0, 3, false, 4_100);
    assert_eq!(p.window(), vec!["index0.ts"], "index2 waits for index1");
    p.stored("index1.ts", 4_200);
    assert_eq!(p.window(), vec!["index0.ts", "index1.ts", "index2.ts"]);
}

#[test]
fn endlist_ends_the_broadcast_once_every_listed_segment_is_in() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    for i in 0..3 {
        p.segment(&format!("index{i}.ts"), i * 2000);
        p.playlist(0, i + 1, false, i * 2000 + 10);
    }
    p.begin("index3.ts", 6_000);
    assert!(
        ended_of(p.playlist(0, 4, true, 6_010)).is_none(),
        "index3 still uploading"
    );
    let ended = p
        .stored("index3.ts", 6_020)
        .expect("ended when the last segment lands");
    assert_eq!(ended.reason, "endlist");
    assert_eq!(ended.segments.len(), 4);
    assert_eq!(
        ended.segments.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(ended.video_id.as_deref(), Some("vid_0"));
    assert_eq!(ended.segments[3].program_date_ms, 6_000);
    assert_eq!(room.sockets.sent.borrow().last().unwrap()["type"], "ended");
    // The final window ends with ENDLIST, for a while: then the channel is not live.
    let window_at = |now_ms| match p.call(RoomRequest::Window {
        max_segments: 6,
        rendition: None,
        now_ms,
        block: None,
    }) {
        RoomResponse::Window { window } => window,
        other => panic!("unexpected {other:?}"),
    };
    let last = window_at(6_020 + ENDED_LISTED_MS - 1).expect("listed just after the end");
    assert!(last.ended && last.segments.len() == 4);
    assert_eq!(
        window_at(6_020 + ENDED_LISTED_MS),
        None,
        "listed for a while only"
    );
    // A new pusher may start a new broadcast.
    let mut next = Pusher::new(&room, "s2");
    assert!(matches!(
        next.begin("index0.ts", 9_000),
        RoomResponse::Began {
            started: Some(_),
            ..
        }
    ));
}

#[test]
fn silence_ends_the_broadcast_from_the_alarm_with_every_stored_segment() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    p.segment("index0.ts", 0);
    p.playlist(0, 1, false, 10);
    // ffmpeg is killed: index1 is stored but no playlist ever lists it.
    p.segment("index1.ts", 2_000);
    assert_eq!(
        block_on(room::alarm(&room.store, &room.sockets, 10_000))
            .unwrap()
            .ended,
        None
    );
    assert_eq!(room.store.alarm_at.get(), Some(2_000 + IDLE_MS));
    let ended = block_on(room::alarm(&room.store, &room.sockets, 2_000 + IDLE_MS))
        .unwrap()
        .ended
        .expect("ended by silence");
    assert_eq!(ended.reason, "timeout");
    let files: Vec<_> = ended.segments.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(
        files,
        vec!["index0.ts", "index1.ts"],
        "every received segment is kept"
    );
    assert_eq!(
        ended.segments[1].duration_ms, 2000,
        "estimated from the target duration"
    );
    // Until the catalogue confirms, the alarm announces it again; then it forgets it.
    let again = block_on(room::alarm(&room.store, &room.sockets, 40_000))
        .unwrap()
        .ended;
    assert_eq!(again.map(|e| e.segments.len()), Some(2));
    // The channel shows it as its last broadcast only once the catalogue has it.
    let last_shown = || match p.call(RoomRequest::Status { now_ms: 41_000 }) {
        RoomResponse::Status(status) => status.last_broadcast.map(|l| l.broadcast_id),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(last_shown(), None);
    p.call(RoomRequest::Finished {
        broadcast_id: ended.broadcast_id.clone(),
    });
    assert_eq!(last_shown(), Some(ended.broadcast_id.clone()));
    assert_eq!(
        block_on(room::alarm(&room.store, &room.sockets, 80_000))
            .unwrap()
            .ended,
        None
    );
}

#[test]
fn a_second_pusher_is_refused_without_harming_the_live_broadcast() {
    let room = MemoryRoom::default();
    let mut first = Pusher::new(&room, "s1");
    first.segment("index0.ts", 0);
    first.playlist(0, 1, false, 10);
    let mut second = Pusher::new(&room, "s2");
    assert!(matches!(
        second.begin("index0.ts", 100),
        RoomResponse::Conflict { .. }
    ));
    // The same URL used twice: the repeated file name gives it away.
    let mut same_url = Pusher::new(&room, "s1");
    assert!(matches!(
        same_url.begin("index0.ts", 200),
        RoomResponse::Conflict { .. }
    ));
    first.segment("index1.ts", 2_000);
    first.playlist(0, 2, false, 2_010);
    assert_eq!(first.window(), vec!["index0.ts", "index1.ts"]);
    let status = match first.call(RoomRequest::Status { now_ms: 3_000 }) {
        RoomResponse::Status(s) => s,
        other => panic!("unexpected {other:?}"),
    };
    assert!(status.live.is_some());
    assert!(status
        .ingest_refused
        .unwrap()
        .reason
        .contains("second encoder"));
}

#[test]
fn a_missing_segment_stops_holding_the_window_back_after_a_while() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    p.segment("index0.ts", 0);
    p.segment("index2.ts", 4_000); // index1 never arrives
    p.playlist(0, 3, false, 4_010);
    assert_eq!(p.window(), vec!["index0.ts"]);
    p.segment("index3.ts", 16_000);
    p.playlist(1, 3, false, 16_010);
    assert_eq!(p.window(), vec!["index0.ts", "index2.ts", "index3.ts"]);
}

#[test]
fn the_lobby_lists_live_channels() {
    let room = MemoryRoom::default();
    let p = Pusher::new(&room, "-");
    let entry = edgevideo_core::model::room::LobbyEntry {
        channel_id: "ch_a".into(),
        name: "A".into(),
        broadcast_id: "brd_1".into(),
        started_at_ms: 5,
        viewers: 0,
    };
    p.call(RoomRequest::LobbyUpdate {
        entry: entry.clone(),
        live: true,
    });
    assert_eq!(
        p.call(RoomRequest::LobbyList),
        RoomResponse::Lobby {
            channels: vec![entry.clone()],
            expected: Default::default(),
        }
    );
    // The channel's room tells its count: kept with the entry (the live list reads it from
    // there), also when the broadcast is announced again, and pushed to the lobby's sockets.
    p.call(edgevideo_core::room::lobby_viewers("ch_a", 7));
    p.call(RoomRequest::LobbyUpdate {
        entry: entry.clone(),
        live: true,
    });
    let counted = edgevideo_core::model::room::LobbyEntry {
        viewers: 7,
        ..entry.clone()
    };
    assert_eq!(
        p.call(RoomRequest::LobbyList),
        RoomResponse::Lobby {
            channels: vec![counted],
            expected: Default::default(),
        }
    );
    // A channel that is not live is not listed for its count.
    p.call(edgevideo_core::room::lobby_viewers("ch_b", 3));
    p.call(RoomRequest::LobbyUpdate { entry, live: false });
    assert_eq!(
        p.call(RoomRequest::LobbyList),
        RoomResponse::Lobby {
            channels: vec![],
            expected: Default::default(),
        }
    );
    let types: Vec<_> = room
        .sockets
        .sent
        .borrow()
        .iter()
        .map(|m| m["type"].clone())
        .collect();
    assert_eq!(types, vec!["live", "viewers", "live", "viewers", "ended"]);
}

#[test]
fn the_room_checks_the_stream_key_version_of_every_ingest_request() {
    let room = MemoryRoom::default();
    let mut pusher = Pusher::new(&room, "ses_a");
    assert!(pusher.segment("index0.ts", 1_000).is_none());
    assert!(matches!(
        pusher.playlist(0, 1, false, 1_500),
        RoomResponse::PlaylistAccepted { listed: 1, .. }
    ));
    // A rotation: the room is told the new version, and the old URL stops at once.
    assert_eq!(
        pusher.call(RoomRequest::SetKeyVersion { version: 2 }),
        RoomResponse::Done
    );
    assert!(matches!(
        pusher.begin("index1.ts", 2_000),
        RoomResponse::KeyRefused { .. }
    ));
    assert!(matches!(
        pusher.playlist(0, 2, false, 2_000),
        RoomResponse::KeyRefused { .. }
    ));
    assert_eq!(pusher.window(), ["index0.ts"], "nothing refused was listed");
    match pusher.call(RoomRequest::Status { now_ms: 2_500 }) {
        RoomResponse::Status(status) => {
            let refusal = status.ingest_refused.expect("the refusal is in the status");
            assert!(refusal.reason.contains("rotated"), "{refusal:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // A URL of the new version goes on with the same broadcast.
    pusher.key_version = 2;
    assert!(matches!(
        pusher.begin("index1.ts", 3_000),
        RoomResponse::Began { started: None, .. }
    ));

    // A room that was never told the version asks for it.
    let fresh = MemoryRoom::default();
    let request = RoomRequest::Playlist {
        session: "ses_b".into(),
        key_version: 1,
        rendition: "index".into(),
        playlist: PushedPlaylist {
            entries: vec![],
            end_list: false,
            target_duration_ms: 2000,
            map: None,
        },
        now_ms: 1,
    };
    assert_eq!(
        block_on(room::handle(&fresh.store, &fresh.sockets, request)).unwrap(),
        RoomResponse::KeyUnknown
    );
}

/// The ladder of the channel's window, when it has one.
fn ladder_of(p: &Pusher<'_>) -> Option<Vec<Variant>> {
    match p.call(RoomRequest::Window {
        max_segments: 6,
        rendition: None,
        now_ms: 0,
        block: None,
    }) {
        RoomResponse::Window { window: Some(w) } => w.ladder,
        other => panic!("unexpected {other:?}"),
    }
}

fn contradiction(response: RoomResponse) -> Contradiction {
    match response {
        RoomResponse::Invalid { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn cmaf_renditions_have_their_own_windows_and_the_ladder_is_offered_and_recorded() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    // What ffmpeg and the broadcast page push: init segments, segments, media playlists,
    // then the multivariant playlist.
    for r in ["v720", "v360"] {
        p.segment(&format!("{r}_init.mp4"), 0);
    }
    // A segment is not listed before its init segment is in.
    p.segment("v160_0.m4s", 10);
    p.rendition_playlist("v160", 0, 1, false, 20);
    assert!(p.rendition_window(Some("v160")).is_empty());
    p.segment("v160_init.mp4", 30);
    assert_eq!(p.rendition_window(Some("v160")), ["v160_0.m4s"]);
    for i in 0..2 {
        for r in ["v720", "v360"] {
            p.segment(&format!("{r}_{i}.m4s"), 2_000 * i + 100);
            p.rendition_playlist(r, 0, i + 1, false, 2_000 * i + 200);
        }
    }
    p.segment("v160_1.m4s", 2_300);
    p.rendition_playlist("v160", 0, 2, false, 2_300);
    assert_eq!(
        p.window(),
        ["v160_0.m4s", "v160_1.m4s"],
        "the first rendition until a ladder"
    );
    let accepted = p.ladder(
        &[
            ("v360", 800_000, None),
            ("v720", 2_500_000, Some("avc1.64001f,opus")),
            ("v160", 250_000, None),
        ],
        2_400,
    );
    assert!(
        matches!(accepted, RoomResponse::PlaylistAccepted { .. }),
        "{accepted:?}"
    );
    let ladder = ladder_of(&p).expect("a ladder once pushed");
    assert_eq!(ladder.len(), 3);
    let v360 = ladder.iter().find(|v| v.rendition == "v360").unwrap();
    assert_eq!(
        v360.codecs.as_deref(),
        Some("avc1.64001f,opus"),
        "from the init segment"
    );
    assert_eq!(v360.resolution, Some((640, 360)));
    assert_eq!(
        p.rendition_window(Some("v720")),
        ["v720_0.m4s", "v720_1.m4s"]
    );
    assert!(p.rendition_window(Some("v999")).is_empty());
    // The page drops its bottom rendition: it is no longer offered.
    p.ladder(&[("v720", 2_500_000, None), ("v360", 800_000, None)], 3_000);
    assert_eq!(ladder_of(&p).unwrap().len(), 2);
    // The end: the ENDLIST of every rendition still offered (the dropped one sends none).
    assert!(ended_of(p.rendition_playlist("v720", 0, 2, true, 4_000)).is_none());
    let ended = ended_of(p.rendition_playlist("v360", 0, 2, true, 4_020)).expect("ended");
    let files: Vec<_> = ended.segments.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(
        files,
        ["v720_0.m4s", "v720_1.m4s"],
        "the top rendition is the video"
    );
    assert!(ended
        .segments
        .iter()
        .all(|s| s.map.as_deref() == Some("v720_init.mp4")));
    let recorded: Vec<_> = ended
        .renditions
        .iter()
        .map(|r| (r.variant.rendition.as_str(), r.segments.len()))
        .collect();
    assert_eq!(
        recorded,
        [("v720", 2), ("v360", 2)],
        "the last ladder's renditions"
    );
    assert_eq!(
        ended.renditions[1].variant.codecs.as_deref(),
        Some("avc1.64001f,opus")
    );
    // The ended channel playlist is still the ladder, its renditions end with ENDLIST.
    assert_eq!(ladder_of(&p).unwrap().len(), 2);
    assert_eq!(p.rendition_window(Some("v360")).len(), 2);
}

#[test]
fn playlists_that_contradict_the_broadcast_are_refused_and_change_nothing() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    p.segment("v720_init.mp4", 0);
    p.segment("v720_0.m4s", 10);
    p.rendition_playlist("v720", 0, 1, false, 20);
    // Declared codecs that are not the init segment's.
    assert_eq!(
        contradiction(p.ladder(&[("v720", 1, Some("avc1.64001f,mp4a.40.2"))], 30)),
        Contradiction::CodecsMismatch
    );
    // A ladder that leaves out a rendition already pushed.
    assert_eq!(
        contradiction(p.ladder(&[("v360", 1, None)], 30)),
        Contradiction::UnknownRendition
    );
    assert!(ladder_of(&p).is_none(), "nothing was applied");
    assert!(matches!(
        p.ladder(&[("v720", 2, None), ("v360", 1, None)], 40),
        RoomResponse::PlaylistAccepted { .. }
    ));
    // Not in the ladder; added by a later ladder; codecs changed by a later ladder.
    assert_eq!(
        contradiction(p.rendition_playlist("v160", 0, 1, false, 50)),
        Contradiction::UnknownRendition
    );
    assert_eq!(
        contradiction(p.ladder(&[("v720", 2, None), ("v160", 1, None)], 60)),
        Contradiction::UnknownRendition
    );
    p.ladder(
        &[("v720", 2, Some("avc1.64001f,opus")), ("v360", 1, None)],
        60,
    );
    assert_eq!(
        contradiction(p.ladder(&[("v720", 2, Some("avc1.640028,opus"))], 70)),
        Contradiction::CodecsChanged
    );
    // A rendition's init segment (or container) changes.
    let mut changed = PushedPlaylist {
        entries: vec![],
        end_list: false,
        target_duration_ms: 2000,
        map: Some("other_init.mp4".into()),
    };
    let request = |playlist: PushedPlaylist| RoomRequest::Playlist {
        session: "s1".into(),
        key_version: 1,
        rendition: "v720".into(),
        playlist,
        now_ms: 80,
    };
    assert_eq!(
        contradiction(p.call(request(changed.clone()))),
        Contradiction::CodecsChanged
    );
    changed.map = None;
    assert_eq!(
        contradiction(p.call(request(changed))),
        Contradiction::CodecsChanged
    );
    assert_eq!(p.rendition_window(Some("v720")), ["v720_0.m4s"]);
}

#[test]
fn a_ladder_pushed_before_the_first_segment_holds_for_the_broadcast_it_starts() {
    // ffmpeg's MPEG-TS ladder: the multivariant playlist, once, before any segment is in.
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    p.ladder(&[("v720", 2, None), ("v360", 1, None)], 0);
    p.segment("v720_init.mp4", 100);
    p.segment("v720_0.m4s", 200);
    p.rendition_playlist("v720", 0, 1, false, 300);
    assert_eq!(
        ladder_of(&p).map(|l| l.len()),
        Some(1),
        "the ladder, with the rendition that has a segment"
    );
    assert_eq!(
        contradiction(p.rendition_playlist("v160", 0, 1, false, 400)),
        Contradiction::UnknownRendition
    );
    // Another session's early ladder does not apply.
    let room = MemoryRoom::default();
    let other = Pusher::new(&room, "s2");
    other.ladder(&[("v720", 2, None)], 0);
    let mut p = Pusher::new(&room, "s1");
    p.segment("index0.ts", 100);
    p.playlist(0, 1, false, 200);
    assert!(ladder_of(&p).is_none());
}

#[test]
fn a_fifth_rendition_is_refused() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    p.segment("r0_init.mp4", 0);
    for r in ["r0", "r1", "r2", "r3"] {
        assert!(matches!(
            p.rendition_playlist(r, 0, 0, false, 10),
            RoomResponse::PlaylistAccepted { .. }
        ));
    }
    assert_eq!(
        contradiction(p.rendition_playlist("r4", 0, 0, false, 20)),
        Contradiction::TooManyRenditions
    );
}

/// Messages of `kind` sent to every socket of the room so far.
fn broadcasts(room: &MemoryRoom, kind: &str) -> Vec<serde_json::Value> {
    room.sockets
        .sent
        .borrow()
        .iter()
        .filter(|m| m["type"] == kind)
        .cloned()
        .collect()
}

#[test]
fn joins_and_leaves_cost_one_push_per_period_not_one_per_event() {
    let room = MemoryRoom::default();
    // 5,000 viewers join within one presence period (100 per second would take 50 s: the
    // room then pushes once per period, 25 times, instead of 5,000 times).
    for i in 0..5_000u64 {
        room.sockets.connected.set(i as usize + 1);
        let to_joiner =
            block_on(room::on_join(&room.store, &room.sockets, 1_000 + i / 10)).unwrap();
        // The joiner hears the count and the status at once, in that order.
        let types: Vec<String> = to_joiner
            .iter()
            .map(|m| serde_json::from_str::<serde_json::Value>(m).unwrap()["type"].to_string())
            .collect();
        assert_eq!(types, [r#""viewers""#, r#""hello""#]);
    }
    assert!(broadcasts(&room, "viewers").is_empty(), "no push per join");
    assert_eq!(
        room.store.alarm_at.get(),
        Some(1_000 + room::PRESENCE_PUSH_MS)
    );
    // An alarm before the push is due pushes nothing and asks again for the push.
    let early = block_on(room::alarm(&room.store, &room.sockets, 1_500)).unwrap();
    assert_eq!(early.viewers, None);
    assert!(broadcasts(&room, "viewers").is_empty());
    assert_eq!(
        room.store.alarm_at.get(),
        Some(1_000 + room::PRESENCE_PUSH_MS)
    );

    let outcome = block_on(room::alarm(&room.store, &room.sockets, 3_000)).unwrap();
    assert_eq!(outcome.viewers, Some(5_000));
    let pushed = broadcasts(&room, "viewers");
    assert_eq!(pushed.len(), 1, "one push for 5,000 joins");
    assert_eq!(pushed[0]["count"], 5_000);

    // Leaves are gathered the same way; a quiet room is not woken again.
    room.sockets.connected.set(4_000);
    for _ in 0..1_000 {
        block_on(room::on_leave(&room.store, 3_100)).unwrap();
    }
    let outcome = block_on(room::alarm(
        &room.store,
        &room.sockets,
        3_100 + room::PRESENCE_PUSH_MS,
    ))
    .unwrap();
    assert_eq!(outcome.viewers, Some(4_000));
    assert_eq!(broadcasts(&room, "viewers").len(), 2);
    let idle = block_on(room::alarm(&room.store, &room.sockets, 10_000)).unwrap();
    assert_eq!(idle.viewers, None);
    assert_eq!(broadcasts(&room, "viewers").len(), 2);
}

#[test]
fn a_broadcast_deadline_never_delays_a_pending_presence_push() {
    let room = MemoryRoom::default();
    room.sockets.connected.set(1);
    block_on(room::on_join(&room.store, &room.sockets, 0)).unwrap();
    // A segment arrives: its idle deadline (30 s) must not replace the push due at 2 s.
    let mut p = Pusher::new(&room, "s1");
    p.segment("index0.ts", 100);
    assert_eq!(room.store.alarm_at.get(), Some(room::PRESENCE_PUSH_MS));
    let outcome = block_on(room::alarm(
        &room.store,
        &room.sockets,
        room::PRESENCE_PUSH_MS,
    ))
    .unwrap();
    assert_eq!((outcome.viewers, outcome.ended), (Some(1), None));
    // Then the broadcast's own deadline is asked for again.
    assert_eq!(room.store.alarm_at.get(), Some(100 + IDLE_MS));
}

#[test]
fn reactions_from_thousands_of_viewers_cost_one_push_per_period() {
    let room = MemoryRoom::default();
    room.sockets.connected.set(5_000);
    // 5,000 viewers each react once within one reaction period.
    for i in 0..5_000u64 {
        let mut viewer = room::SocketState::default();
        let emoji = room::REACTIONS[(i % 3) as usize];
        let text = format!(r#"{{"type":"reaction","emoji":"{emoji}"}}"#);
        let reply = block_on(room::on_message(
            &room.store,
            &mut viewer,
            &text,
            1_000 + i / 20,
        ));
        assert_eq!(reply.unwrap(), None);
    }
    assert!(
        broadcasts(&room, "reactions").is_empty(),
        "no push per reaction"
    );
    assert_eq!(
        room.store.alarm_at.get(),
        Some(1_000 + room::REACTION_PUSH_MS)
    );
    block_on(room::alarm(
        &room.store,
        &room.sockets,
        1_000 + room::REACTION_PUSH_MS,
    ))
    .unwrap();
    let pushed = broadcasts(&room, "reactions");
    assert_eq!(pushed.len(), 1, "one push for 5,000 reactions");
    let counts = pushed[0]["counts"].as_object().unwrap();
    assert_eq!(counts.len(), 3);
    assert_eq!(
        counts.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        5_000
    );
    // A quiet room pushes nothing more.
    block_on(room::alarm(&room.store, &room.sockets, 10_000)).unwrap();
    assert_eq!(broadcasts(&room, "reactions").len(), 1);
}

/// A low-latency part of `hd_{segment}.m4s`, 500 ms.
fn part(segment: u64, index: u64) -> edgevideo_core::model::room::StoredPart {
    rendition_part("hd", segment, index)
}

/// A low-latency part of `{rendition}_{segment}.m4s`, 500 ms.
fn rendition_part(
    rendition: &str,
    segment: u64,
    index: u64,
) -> edgevideo_core::model::room::StoredPart {
    edgevideo_core::model::room::StoredPart {
        rendition: rendition.into(),
        segment: format!("{rendition}_{segment}.m4s"),
        sequence: segment,
        index,
        file: format!("{rendition}_{segment}.part{index}.m4s"),
        duration_us: 500_000,
        target_us: 500_000,
        independent: index == 0,
    }
}

#[test]
fn held_requests_wait_for_the_part_they_ask_for_and_old_parts_go() {
    let room = MemoryRoom::default();
    let mut pusher = Pusher::new(&room, "s1");
    pusher.segment("hd_init.mp4", 0);
    let store_part = |pusher: &Pusher, segment: u64, index: u64| {
        let answer = pusher.call(RoomRequest::PartStored {
            session: "s1".into(),
            broadcast_id: pusher.broadcast.clone().unwrap(),
            part: part(segment, index),
            from_chunks: false,
            now_ms: 10,
        });
        assert_eq!(answer, RoomResponse::Stored { ended: None });
    };
    for index in 0..4 {
        store_part(&pusher, 0, index);
    }
    pusher.segment("hd_0.m4s", 20);
    pusher.rendition_playlist("hd", 0, 1, false, 20);
    let window = |pusher: &Pusher, block: Option<(u64, Option<u64>)>| {
        pusher.call(RoomRequest::Window {
            max_segments: 6,
            rendition: Some("hd".into()),
            now_ms: 30,
            block: block.map(|(msn, part)| edgevideo_core::model::room::Block {
                msn,
                part,
                until_ms: 5_000,
            }),
        })
    };
    let await_part = |pusher: &Pusher, file: &str, until_ms: u64| {
        pusher.call(RoomRequest::PartBytes {
            broadcast_id: pusher.broadcast.clone().unwrap(),
            file: file.into(),
            from: 0,
            until_ms,
        })
    };
    // Segment 0 is complete with its four parts; nothing of segment 1 yet.
    assert!(matches!(
        window(&pusher, Some((0, Some(3)))),
        RoomResponse::Window { .. }
    ));
    assert_eq!(window(&pusher, Some((1, Some(0)))), RoomResponse::Pending);
    assert_eq!(window(&pusher, Some((1, None))), RoomResponse::Pending);
    assert_eq!(
        await_part(&pusher, "hd_1.part0.m4s", 5_000),
        RoomResponse::Pending
    );
    // Once the hold is over the answer is what the room has.
    assert_eq!(await_part(&pusher, "hd_1.part0.m4s", 0), RoomResponse::Done);
    // Only the hinted next part is waited for.
    assert_eq!(
        await_part(&pusher, "hd_1.part1.m4s", 5_000),
        RoomResponse::Done
    );
    assert_eq!(
        await_part(&pusher, "hd_7.part0.m4s", 5_000),
        RoomResponse::Done
    );

    store_part(&pusher, 1, 0);
    let RoomResponse::Window {
        window: Some(listed),
    } = window(&pusher, Some((1, Some(0))))
    else {
        panic!("the part is there");
    };
    let parts = listed.low_latency.unwrap();
    assert_eq!(parts.part_target_us, 500_000);
    let names: Vec<(u64, u64)> = parts.parts.iter().map(|p| (p.msn, p.index)).collect();
    assert_eq!(names, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]);
    assert_eq!(parts.preload_hint.as_deref(), Some("hd_1.part1.m4s"));
    assert_eq!(
        await_part(&pusher, "hd_1.part0.m4s", 5_000),
        RoomResponse::Done
    );
    assert_eq!(
        await_part(&pusher, "hd_1.part1.m4s", 5_000),
        RoomResponse::Pending
    );

    // Five more segments: only the parts of the last three listed and the open one remain.
    for segment in 1..6 {
        for index in 0..4 {
            store_part(&pusher, segment, index);
        }
        pusher.segment(&format!("hd_{segment}.m4s"), 40 + segment);
        pusher.rendition_playlist("hd", 0, segment + 1, false, 40 + segment);
    }
    store_part(&pusher, 6, 0);
    let RoomResponse::Window {
        window: Some(listed),
    } = window(&pusher, None)
    else {
        panic!("live");
    };
    let msns: std::collections::BTreeSet<u64> = listed
        .low_latency
        .unwrap()
        .parts
        .iter()
        .map(|p| p.msn)
        .collect();
    assert_eq!(msns.into_iter().collect::<Vec<_>>(), [3, 4, 5, 6]);
}

#[test]
fn each_rendition_reports_where_the_others_newest_part_is() {
    let room = MemoryRoom::default();
    let mut pusher = Pusher::new(&room, "s1");
    pusher.segment("hd_init.mp4", 0);
    pusher.stored("sd_init.mp4", 0);
    pusher.ladder(&[("hd", 2_000_000, None), ("sd", 500_000, None)], 0);
    let store = |rendition: &str, segment: u64, index: u64| {
        pusher.call(RoomRequest::PartStored {
            session: "s1".into(),
            broadcast_id: pusher.broadcast.clone().unwrap(),
            part: rendition_part(rendition, segment, index),
            from_chunks: false,
            now_ms: 10,
        })
    };
    for rendition in ["hd", "sd"] {
        for index in 0..4 {
            store(rendition, 0, index);
        }
        pusher.stored(&format!("{rendition}_0.m4s"), 20);
        pusher.rendition_playlist(rendition, 0, 1, false, 20);
    }
    store("sd", 1, 0);
    store("sd", 1, 1);
    let reports = |rendition: &str| match pusher.call(RoomRequest::Window {
        max_segments: 6,
        rendition: Some(rendition.into()),
        now_ms: 30,
        block: None,
    }) {
        RoomResponse::Window {
            window: Some(window),
        } => window.low_latency.unwrap().reports,
        other => panic!("unexpected {other:?}"),
    };
    let hd = reports("hd");
    assert_eq!(hd.len(), 1);
    assert_eq!(
        (hd[0].rendition.as_str(), hd[0].last_msn, hd[0].last_part),
        ("sd", 1, Some(1))
    );
    let sd = reports("sd");
    assert_eq!(
        (sd[0].rendition.as_str(), sd[0].last_msn, sd[0].last_part),
        ("hd", 0, Some(3))
    );
}

#[test]
fn a_broadcast_past_its_quota_is_refused_and_keeps_what_it_stored() {
    let room = MemoryRoom::default();
    let mut p = Pusher::new(&room, "s1");
    p.limits = BroadcastLimits {
        segments: 3,
        bytes: 10 * SEGMENT_BYTES,
    };
    for (i, file) in ["a.ts", "b.ts", "c.ts"].iter().enumerate() {
        assert!(matches!(
            p.begin(file, i as u64 * 2000),
            RoomResponse::Began { .. }
        ));
        assert_eq!(p.stored(file, i as u64 * 2000 + 100), None);
    }
    let refused = p.begin("d.ts", 6000);
    assert!(
        matches!(&refused, RoomResponse::Invalid { code: Contradiction::QuotaExceeded, reason } if reason.contains("3 segments")),
        "{refused:?}"
    );
    // A byte quota counts sizes: a new broadcast of 3 KB segments with 5 KB allowed.
    let room = MemoryRoom::default();
    let mut q = Pusher::new(&room, "s1");
    q.limits = BroadcastLimits {
        segments: 100,
        bytes: 5 * SEGMENT_BYTES,
    };
    for i in 0..5 {
        assert!(matches!(
            q.begin(&format!("s{i}.ts"), i * 2000),
            RoomResponse::Began { .. }
        ));
    }
    assert!(matches!(
        q.begin("s5.ts", 10_000),
        RoomResponse::Invalid {
            code: Contradiction::QuotaExceeded,
            ..
        }
    ));
}

#[test]
fn chunks_of_a_part_reach_its_waiters_and_are_kept_only_while_they_serve() {
    use edgevideo_core::ports::RoomStore as _;
    let room = MemoryRoom::default();
    let mut pusher = Pusher::new(&room, "s1");
    pusher.segment("hd_init.mp4", 0);
    for index in 0..4 {
        pusher.call(RoomRequest::PartStored {
            session: "s1".into(),
            broadcast_id: pusher.broadcast.clone().unwrap(),
            part: part(0, index),
            from_chunks: false,
            now_ms: 10,
        });
    }
    pusher.segment("hd_0.m4s", 20);
    pusher.rendition_playlist("hd", 0, 1, false, 20);
    let broadcast = pusher.broadcast.clone().unwrap();
    let chunk = |file: &str, offset: u64, bytes: &[u8]| {
        pusher.call(RoomRequest::PartChunk {
            session: "s1".into(),
            broadcast_id: broadcast.clone(),
            file: file.into(),
            offset,
            data: bytes.to_vec(),
            now_ms: 30,
        })
    };
    let bytes = |file: &str, from: u64, until_ms: u64| {
        pusher.call(RoomRequest::PartBytes {
            broadcast_id: broadcast.clone(),
            file: file.into(),
            from,
            until_ms,
        })
    };
    let some = |data: &[u8], complete: bool| RoomResponse::PartBytes {
        data: data.to_vec(),
        complete,
    };

    // The hinted part: waited for until its first chunk, then read as it grows.
    assert_eq!(bytes("hd_1.part0.m4s", 0, 5_000), RoomResponse::Pending);
    let stored = RoomResponse::Stored { ended: None };
    assert_eq!(chunk("hd_1.part0.m4s", 0, b"abc"), stored);
    assert_eq!(bytes("hd_1.part0.m4s", 0, 5_000), some(b"abc", false));
    assert_eq!(bytes("hd_1.part0.m4s", 3, 5_000), RoomResponse::Pending);
    assert_eq!(bytes("hd_1.part0.m4s", 3, 0), RoomResponse::Done);
    // A chunk again, or overlapping with the same bytes, is taken; a gap or other bytes not.
    assert_eq!(chunk("hd_1.part0.m4s", 0, b"abc"), stored);
    assert_eq!(chunk("hd_1.part0.m4s", 2, b"cde"), stored);
    assert!(matches!(
        chunk("hd_1.part0.m4s", 9, b"x"),
        RoomResponse::Conflict { .. }
    ));
    assert!(matches!(
        chunk("hd_1.part0.m4s", 1, b"X"),
        RoomResponse::Conflict { .. }
    ));
    assert_eq!(bytes("hd_1.part0.m4s", 3, 5_000), some(b"de", false));
    // Stored: the rest, and the part is complete; later chunks change nothing.
    pusher.call(RoomRequest::PartStored {
        session: "s1".into(),
        broadcast_id: broadcast.clone(),
        part: part(1, 0),
        from_chunks: true,
        now_ms: 40,
    });
    assert_eq!(bytes("hd_1.part0.m4s", 5, 5_000), some(b"", true));
    assert_eq!(bytes("hd_1.part0.m4s", 1, 5_000), some(b"bcde", true));
    assert_eq!(chunk("hd_1.part0.m4s", 5, b"zz"), stored);
    assert_eq!(bytes("hd_1.part0.m4s", 0, 5_000), some(b"abcde", true));
    // Another pusher's chunks are not taken.
    let other = RoomRequest::PartChunk {
        session: "s2".into(),
        broadcast_id: broadcast.clone(),
        file: "hd_1.part1.m4s".into(),
        offset: 0,
        data: b"evil".to_vec(),
        now_ms: 50,
    };
    assert_eq!(pusher.call(other), stored);
    assert_eq!(bytes("hd_1.part1.m4s", 0, 0), RoomResponse::Done);

    // Only the newest parts' chunks are kept: an older one is read from its blob.
    for index in 1..10 {
        assert_eq!(chunk(&format!("hd_1.part{index}.m4s"), 0, b"p"), stored);
    }
    assert_eq!(bytes("hd_1.part0.m4s", 0, 5_000), RoomResponse::Done);
    assert_eq!(bytes("hd_1.part9.m4s", 0, 5_000), some(b"p", false));
    let kept = || block_on(room.store.list("part_chunks/")).unwrap().len();
    assert_eq!(kept(), 8);
    // A part stored whole, not of its chunks: they go, its viewers read the blob.
    pusher.call(RoomRequest::PartStored {
        session: "s1".into(),
        broadcast_id: broadcast.clone(),
        part: part(1, 9),
        from_chunks: false,
        now_ms: 50,
    });
    assert_eq!(bytes("hd_1.part9.m4s", 0, 5_000), RoomResponse::Done);
    assert_eq!(kept(), 7);
    // The broadcast's end forgets them.
    assert!(ended_of(pusher.rendition_playlist("hd", 0, 1, true, 60)).is_some());
    assert_eq!(kept(), 0);
}

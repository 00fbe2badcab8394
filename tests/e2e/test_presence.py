"""Presence shards end to end in workerd: a channel's viewer sockets spread over shard objects
once its audience outgrows one (here, with PRESENCE_SHARD_SOCKETS=2, beyond two viewers: at
once, as the full room sends joins on, and then as the lobby's count says), and
every viewer, whichever object holds its socket, hears the whole channel's viewer count, the
reactions sent on any shard, and the broadcast's end; the lobby and /api/live count them all."""

import contextlib
import json
import time

import pytest
from websockets.sync.client import connect

from conftest import bearer, new_email, signup, start_worker, wait_until
from media import ts_segment

# WebSockets and Durable Objects are the Workers host's; Spin polls instead.
pytestmark = pytest.mark.cloudflare

SHARD_SOCKETS = 2


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    w = start_worker(tmp_path_factory, transcoder, {
        "LIVE_IDLE_TIMEOUT_SECONDS": "600",
        "PRESENCE_SHARD_SOCKETS": str(SHARD_SOCKETS),
    })
    yield w
    w.stop()


class Viewer:
    """One watch page's socket, keeping what it was sent."""

    def __init__(self, sockets: contextlib.ExitStack, url: str, headers=None):
        self.ws = sockets.enter_context(connect(url, additional_headers=headers))
        self.messages: list[dict] = []
        self.shard = self.wait_for(lambda m: m["type"] == "hello")["shard"]

    def wait_for(self, matches, timeout_s=20.0) -> dict:
        for m in self.messages:
            if matches(m):
                self.messages.remove(m)
                return m
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                m = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                break
            if matches(m):
                return m
            self.messages.append(m)
        pytest.fail(f"no matching message within {timeout_s} s; had {self.messages[-5:]}")

    def hears_count(self, count: int) -> None:
        self.wait_for(lambda m: m["type"] == "viewers" and m["count"] == count)

    def hears_reactions(self, emoji: set[str]) -> None:
        """Waits until every one of `emoji` came in a `reactions` push (one push may carry
        several)."""
        missing = set(emoji)
        while missing:
            missing -= set(self.wait_for(lambda m: m["type"] == "reactions")["counts"])

    def close(self):
        self.ws.close()


def live_viewers(api, channel_id):
    listed = [c for c in api.get("/api/live").json()["channels"] if c["channel_id"] == channel_id]
    return listed[0]["viewers"] if listed else None


def test_sharded_viewers_hear_the_whole_channel(api, worker):
    with contextlib.ExitStack() as sockets:
        sharded_viewers(api, worker, sockets)


def sharded_viewers(api, worker, sockets):
    owner = signup(api, new_email("broadcast.test"))
    channel = api.post("/api/channels", json={"name": "Crowd"}, headers=bearer(owner["token"])).json()
    ingest = api.post(f"/api/channels/{channel['id']}/ingest", headers=bearer(owner["token"])).json()["ingest_url"]

    def push(end=False):
        if not end:
            assert api.put(ingest.replace("index.m3u8", "index0.ts"), data=ts_segment()).status_code == 201
        playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        playlist += "#EXTINF:2.000,\nindex0.ts\n" + ("#EXT-X-ENDLIST\n" if end else "")
        assert api.put(ingest, data=playlist.encode()).status_code == 200

    push()
    url = worker.url.replace("http", "ws") + f"/api/channels/{channel['id']}/ws"
    # A small audience is held by the channel's room itself, up to a shard's worth; the full
    # room sends the next join on to a shard at once, before the lobby knows the audience
    # (whatever the client's own headers say).
    viewers = [Viewer(sockets, url) for _ in range(2)]
    assert [v.shard for v in viewers] == [0, 0]
    viewers.append(Viewer(sockets, url, {"x-edgevideo-room-sockets": "1000", "x-edgevideo-presence-shard": "0"}))
    assert viewers[2].shard > 0
    wait_until(lambda: live_viewers(api, channel["id"]) == 3, timeout_s=20)

    # Once the lobby knows the audience, new viewers are spread over shards (a random one of
    # as many as it needs: 2 and more here). Join until two are on shards.
    while sum(v.shard > 0 for v in viewers) < 2:
        assert len(viewers) < 40, [v.shard for v in viewers]
        viewers.append(Viewer(sockets, url))
        time.sleep(0.2)
    total = len(viewers)
    in_room = [v for v in viewers if v.shard == 0]
    on_shards = [v for v in viewers if v.shard > 0]
    print(f"\n{total} viewers: {len(in_room)} in the room, shards {sorted(v.shard for v in on_shards)}")

    # Everyone hears the whole count, whichever object holds the socket; so do the lobby
    # and the live list.
    for v in viewers:
        v.hears_count(total)
    wait_until(lambda: live_viewers(api, channel["id"]) == total, timeout_s=20)

    # A reaction sent on a shard reaches the room's viewers and the other shards', and one
    # sent in the room reaches the shards'.
    on_shards[0].ws.send(json.dumps({"type": "reaction", "emoji": "🔥"}))
    in_room[0].ws.send(json.dumps({"type": "reaction", "emoji": "👏"}))
    for v in viewers:
        v.hears_reactions({"🔥", "👏"})

    # A viewer leaving a shard is counted out everywhere.
    on_shards[0].close()
    staying = [v for v in viewers if v is not on_shards[0]]
    for v in staying:
        v.hears_count(total - 1)

    # The broadcast's end reaches every viewer, the shards' too.
    push(end=True)
    for v in staying:
        assert v.wait_for(lambda m: m["type"] == "ended", timeout_s=30)["channel_id"] == channel["id"]
        v.close()

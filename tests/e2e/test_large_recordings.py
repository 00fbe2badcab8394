"""Recordings whose MP4 is larger than one upload request: the transcoder sends it to the
Worker in parts (`/upload/{token}/parts`), which become one object in the bucket (an R2
multipart upload on Cloudflare). The session's test settings make parts 5 MiB, the smallest
R2 accepts, so a few seconds of noisy 640x360 video is enough. Also: uploads and callbacks
for a video deleted while it was being transcoded store nothing."""

import json
import re
import secrets
import subprocess
import time
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook

import conftest
from conftest import DEV_ENV, TRANSCODER, bearer, new_email, sign_url, signup, wait_until
from media import decode_errors, probe, push_recording, recording

PART_BYTES = 5 * 1024 * 1024
SECONDS = 6


def test_an_mp4_larger_than_a_part_arrives_whole_and_plays(api, worker, tmp_path):
    user = signup(api, new_email("broadcast.test"))
    ch = api.post("/api/channels", json={"name": "Long show"}, headers=bearer(user["token"])).json()
    ingest = api.post(f"/api/channels/{ch['id']}/ingest", headers=bearer(user["token"])).json()["ingest_url"]
    push_recording(api, ingest, SECONDS, heavy=True)
    video_id = api.get(f"/api/channels/{ch['id']}").json()["last_broadcast"]["video_id"]
    wait_until(lambda: api.get(f"/api/_diag/video/{video_id}").json()["status"] == "published", timeout_s=120)

    # What the transcoder makes of the same segments, locally, for comparison.
    segments, _ = recording(SECONDS, True)
    for name, data in segments:
        (tmp_path / name).write_bytes(data)
    expected = tmp_path / "expected.mp4"
    subprocess.run([str(TRANSCODER), "stitch", "--from", *[str(tmp_path / n) for n, _ in segments],
                    "--to", str(expected)], check=True, capture_output=True, timeout=120)
    expected = expected.read_bytes()
    assert len(expected) > 2 * PART_BYTES, "the recording must need several parts"

    playback = api.post(f"/api/videos/{video_id}/playback").json()
    mp4 = api.get(playback["mp4_url"])
    assert mp4.status_code == 200
    assert mp4.content == expected, "the parts were not joined into the transcoder's MP4"
    info = probe(playback["mp4_url"])
    assert abs(float(info["format"]["duration"]) - SECONDS) < 0.2
    assert decode_errors(playback["mp4_url"]) == ""
    # A range across the first part boundary reads the right bytes.
    r = api.get(playback["mp4_url"], headers={"range": f"bytes={PART_BYTES - 8}-{PART_BYTES + 7}"})
    assert r.status_code == 206 and r.content == expected[PART_BYTES - 8:PART_BYTES + 8]
    # It did go in parts: wrangler logged the part uploads and their completion (the Spin
    # test host logs only failed requests).
    if conftest.HOST == "cloudflare":
        log = worker.log()
        assert re.search(r"PUT /upload/\S+/parts/2\b", log), "no second part was uploaded"
        assert re.search(r"POST /upload/\S+/parts/complete\b", log)


def signed_upload_url(api, video_id: str) -> str:
    """An upload URL for a video's MP4, signed as the worker signs the transcoder's."""
    return f"{api.base_url}/upload/" + sign_url(f"u.{video_id}.mp4.{int(time.time()) + 600}")


def published_video(api) -> tuple[str, str]:
    """A short broadcast's video, once published; returns its id and its owner's token."""
    user = signup(api, new_email("broadcast.test"))
    ch = api.post("/api/channels", json={"name": "Short show"}, headers=bearer(user["token"])).json()
    ingest = api.post(f"/api/channels/{ch['id']}/ingest", headers=bearer(user["token"])).json()["ingest_url"]
    push_recording(api, ingest)
    video_id = api.get(f"/api/channels/{ch['id']}").json()["last_broadcast"]["video_id"]
    wait_until(lambda: api.get(f"/api/_diag/video/{video_id}").json()["status"] == "published", timeout_s=120)
    return video_id, user["token"]


def test_part_uploads_check_their_input(api, worker):
    """The parts routes refuse bad input with clear errors and store nothing."""
    video_id, _ = published_video(api)
    upload = signed_upload_url(api, video_id)
    assert api.put(f"{upload}/parts/1?upload_id=x", data=b"").status_code == 400  # empty part
    assert api.put(f"{upload}/parts/0?upload_id=x", data=b"x").json()["error"]["code"] == "invalid_part_number"
    assert api.put(f"{upload}/parts/10001?upload_id=x", data=b"x").status_code == 400
    assert api.put(f"{upload}/parts/1", data=b"x").json()["error"]["code"] == "missing_upload_id"
    begun = api.post(f"{upload}/parts")
    assert begun.status_code == 201 and begun.json()["part_bytes"] == PART_BYTES
    upload_id = begun.json()["upload_id"]
    part = api.put(f"{upload}/parts/1", params={"upload_id": upload_id}, data=b"tiny")
    assert part.status_code == 200 and part.json()["number"] == 1
    bad_order = {"upload_id": upload_id, "parts": [part.json(), part.json()]}
    assert api.post(f"{upload}/parts/complete", json=bad_order).json()["error"]["code"] == "invalid_parts"
    assert api.post(f"{upload}/parts/complete", json={"upload_id": upload_id, "parts": []}).status_code == 400
    wrong_tag = {"upload_id": upload_id, "parts": [{"number": 1, "etag": "nope"}]}
    r = api.post(f"{upload}/parts/complete", json=wrong_tag)
    assert r.status_code in (404, 409), r.text
    forged = upload.rsplit(".", 1)[0] + ".AAAA"
    assert api.post(f"{forged}/parts").status_code == 403


def test_a_video_deleted_during_its_transcode_gets_no_uploads(api, worker):
    """Uploads for a deleted video are refused, and the transcoder's late callback removes
    anything its job stored and changes nothing else."""
    video_id, owner = published_video(api)
    assert api.delete(f"/api/videos/{video_id}", headers=bearer(owner)).status_code == 200
    upload = signed_upload_url(api, video_id)
    assert api.put(upload, data=b"late mp4").status_code == 404
    assert api.post(f"{upload}/parts").status_code == 404
    body = json.dumps({"type": "transcode.completed", "video_id": video_id, "job_id": "tr_late",
                       "duration_seconds": 4.0, "size_bytes": 8})
    msg_id, at = f"transcode_tr_late_{secrets.token_hex(4)}", datetime.now(timezone.utc)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": Webhook(DEV_ENV["TRANSCODER_SECRET"]).sign(msg_id, at, body),
               "content-type": "application/json"}
    r = api.post("/api/transcoder/callback", data=body, headers=headers)
    assert r.status_code == 200 and r.json()["video"] == "deleted", r.text
    assert api.get(f"/api/videos/{video_id}").status_code == 404

"""The review endpoints and moderators' logins on the real broker and Cassandra (the session's
servers), through FastAPI's TestClient over the real query layer and producer: no credentials
(401), a user's token or an app's key (403), a moderator's token and a moderator's browser
session (the CSRF rule), decisions claimed once (404 unknown, 409 the second time) and published
on ``review-decisions`` with the moderator as reviewer, media served only from the media roots,
wrong passwords (401), and malformed bodies (never a 500)."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from replay.reader import read_topic
from streams.api.accounts import AccountStore
from streams.api.app import create_app
from streams.api.auth import KeyStore, issue_token, token_secret
from streams.query.views import view_session
from streams.stores.media import MediaStore
from tests.integration.conftest import unique, wait_until

pytestmark = pytest.mark.integration

PASSWORD = "review-queue-password"
ENDPOINTS = [("GET", "/v1/review/tasks"), ("GET", "/v1/review/categories"),
             ("POST", "/v1/review/tasks/{t}/decision"), ("GET", "/v1/review/tasks/{t}/media")]


@pytest.fixture(scope="module")
def api(pipeline):
    client = TestClient(create_app(pipeline), raise_server_exceptions=False)
    with client:
        yield client


@pytest.fixture
def tasks(pipeline):
    """Insert pending tasks as Content Guard's sink writes them; ``make(media_uri=None)`` returns
    ``(task_id, post_id)``. Rows are deleted after the test."""
    made = []
    with view_session(pipeline) as s:
        def make(media_uri=None):
            at = datetime.now(timezone.utc).replace(microsecond=0)
            task_id = f"{int(at.timestamp() * 1000):013d}-{uuid.uuid4().hex[:12]}"
            post_id = unique("rp")
            s.execute("INSERT INTO review_pending (queue, created_at, task_id, post_id, priority) "
                      "VALUES ('moderation', %s, %s, %s, 'NORMAL')", (at, task_id, post_id))
            s.execute("INSERT INTO review_tasks (task_id, queue, post_id, author_id, created_at, status, scores, "
                      "reasons, text, media_uri, priority) VALUES (%s, 'moderation', %s, 'a1', %s, 'PENDING', "
                      "{'hate': 0.41, 'harassment': 0.55, 'none': 0.04}, ['text: in the review band'], "
                      "'some words', %s, 'NORMAL')", (task_id, post_id, at, media_uri))
            made.append((at, task_id))
            return task_id, post_id

        try:
            yield make
        finally:
            for at, task_id in made:
                s.execute("DELETE FROM review_pending WHERE queue = 'moderation' AND created_at = %s AND task_id = %s",
                          (at, task_id))
                s.execute("DELETE FROM review_tasks WHERE task_id = %s", (task_id,))
                s.execute("DELETE FROM review_claims WHERE task_id = %s", (task_id,))


def error(r, status):
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"status", "code", "message", "request_id"} and "Traceback" not in r.text
    return body["message"]


def bearer(settings, name, role):
    return {"Authorization": f"Bearer {issue_token(token_secret(settings), name, ttl_s=300, role=role)}"}


def test_review_endpoints_need_a_moderator(api, pipeline, tasks):
    task_id, _ = tasks()
    key, _ = KeyStore.for_settings(pipeline).create(unique("app"), "all", "all")
    for method, path in ENDPOINTS:
        url = path.format(t=task_id)
        body = {"action": "ALLOW"}
        error(api.request(method, url, json=body), 401)
        assert "role moderator" in error(api.request(method, url, json=body, headers=bearer(pipeline, "u1", "user")), 403)
        error(api.request(method, url, json=body, headers=bearer(pipeline, "op1", "operator")), 403)
        assert "API key" in error(api.request(method, url, json=body, headers={"X-API-Key": key}), 403)
    # none of that decided anything
    r = api.get("/v1/review/tasks?limit=500", headers=bearer(pipeline, "m1", "moderator"))
    assert task_id in [t["task_id"] for t in r.json()["tasks"]]


def test_a_moderator_token_lists_and_decides_once(api, pipeline, tasks):
    task_id, post_id = tasks()
    mod = unique("mod")
    h = bearer(pipeline, mod, "moderator")
    r = api.get("/v1/review/tasks?limit=500&queue=moderation", headers=h)
    assert r.status_code == 200, r.text
    mine = next(t for t in r.json()["tasks"] if t["task_id"] == task_id)
    assert [s["category"] for s in mine["scores"]] == ["harassment", "hate", "none"]  # highest first
    assert mine["reasons"] == ["text: in the review band"] and mine["text"] == "some words"
    assert mine["media_url"] is None and abs(mine["created_at_ms"] - time.time() * 1000) < 120_000
    created = [t["created_at_ms"] for t in r.json()["tasks"]]
    assert created == sorted(created)  # oldest first

    assert "not one of" in error(api.post(f"/v1/review/tasks/{task_id}/decision", headers=h,
                                          json={"action": "DELETE"}), 422)
    assert "policy category" in error(api.post(f"/v1/review/tasks/{task_id}/decision", headers=h,
                                               json={"action": "BLOCK", "categories": ["weather"]}), 422)
    assert "no review task" in error(api.post("/v1/review/tasks/0000000000000-000000000000/decision", headers=h,
                                              json={"action": "ALLOW"}), 404)
    r = api.post(f"/v1/review/tasks/{task_id}/decision", headers=h,
                 json={"action": "block", "categories": ["hate", "hate"], "note": "slur", "reviewer_id": "someone"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["action"], d["reviewer_id"], d["categories"], d["note"], d["post_id"]) == (
        "BLOCK", mod, ["hate"], "slur", post_id)  # the reviewer is the caller, not the body
    again = api.post(f"/v1/review/tasks/{task_id}/decision", headers=bearer(pipeline, "other", "moderator"),
                     json={"action": "ALLOW"})
    assert f"BLOCK by {mod}" in error(again, 409)
    got = wait_until(lambda: [rec for _, rec in read_topic(pipeline, "review-decisions", last=200)
                              if rec["task_id"] == task_id], 30, "the decision on review-decisions")
    assert len(got) == 1 and got[0]["reviewer_id"] == mod and got[0]["producer"] == "pulse-review"
    listed = api.get("/v1/review/tasks?limit=500", headers=h).json()["tasks"]
    assert task_id not in [t["task_id"] for t in listed]  # claimed: off the queue


def test_a_browser_session_decides_only_with_the_csrf_header(api, pipeline, tasks):
    task_id, _ = tasks()
    name = unique("mod")
    AccountStore.for_settings(pipeline).add(name, PASSWORD)
    c = TestClient(api.app, raise_server_exceptions=False)
    assert "wrong account name or password" in error(c.post("/v1/session", json={"name": name, "password": "guess-guess"}), 401)
    r = c.post("/v1/session", data={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert any(t["task_id"] == task_id for t in c.get("/v1/review/tasks?limit=500").json()["tasks"])
    url = f"/v1/review/tasks/{task_id}/decision"
    assert "X-Pulse-CSRF" in error(c.post(url, json={"action": "ALLOW"}), 403)
    error(c.post(url, json={"action": "ALLOW"}, headers={"X-Pulse-CSRF": "not-the-cookie"}), 403)
    r = c.post(url, json={"action": "RESTRICT", "categories": ["harassment"]},
               headers={"X-Pulse-CSRF": c.cookies["pulse_csrf"]})
    assert r.status_code == 200 and r.json()["reviewer_id"] == name, r.text
    c.delete("/v1/session")
    error(c.get("/v1/review/tasks"), 401)


def test_a_decision_the_broker_does_not_acknowledge_leaves_the_task_pending(pipeline, tasks):
    from streams.producer import PublishError
    from streams.query.review import decide, pending_tasks
    from tests.integration.browser import free_port

    task_id, _ = tasks()
    no_broker = pipeline.with_(kafka_bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(PublishError, match="not acknowledged"):
        decide(no_broker, task_id, "BLOCK", reviewer_id="m1", ack_timeout_s=3)
    assert task_id in [t["task_id"] for t in pending_tasks(pipeline, 500)]  # not stuck as claimed
    assert decide(pipeline, task_id, "BLOCK", reviewer_id="m2")["reviewer_id"] == "m2"  # the broker is back


def test_media_is_served_only_from_the_media_roots(api, pipeline, tasks, tmp_path):
    h = bearer(pipeline, "m1", "moderator")
    photo = tmp_path / "pic.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes)
    stored = MediaStore.from_settings(pipeline).put_file(photo)
    ok, _ = tasks(media_uri=stored.uri)
    r = api.get(f"/v1/review/tasks/{ok}/media", headers=h)
    assert r.status_code == 200 and r.content == photo.read_bytes()
    assert r.headers["content-type"] == "image/png" and r.headers["x-content-type-options"] == "nosniff"
    listed = api.get("/v1/review/tasks?limit=500", headers=h).json()["tasks"]
    assert next(t for t in listed if t["task_id"] == ok)["media_url"] == f"/v1/review/tasks/{ok}/media"

    (pipeline.media_root / "escape.png").unlink(missing_ok=True)
    (pipeline.media_root / "escape.png").symlink_to("/etc/passwd")
    for uri, why in [("/etc/passwd", "outside the media roots"), ("file:///etc/shadow", "outside the media roots"),
                     ("media:../../etc/passwd", "'..'"), ("media:escape.png", "symlink"),
                     ("http://169.254.169.254/latest", "internal address"), ("media:sha256/00/gone.png", "not stored")]:
        bad, _ = tasks(media_uri=uri)
        r = api.get(f"/v1/review/tasks/{bad}/media", headers=h)
        assert why in error(r, 404), uri
        assert "root:" not in r.text
    none, _ = tasks()
    assert "has no media" in error(api.get(f"/v1/review/tasks/{none}/media", headers=h), 404)
    error(api.get("/v1/review/tasks/nope/media", headers=h), 404)


def test_malformed_requests_never_get_a_500(api, pipeline, tasks):
    task_id, _ = tasks()
    h = bearer(pipeline, "m1", "moderator")
    url = f"/v1/review/tasks/{task_id}/decision"
    for content, ctype in [(b"{nope", "application/json"), (b"[1, 2]", "application/json"), (b"", "application/json"),
                           (b'{"action": 5}', "application/json"), (b'{"action": "ALLOW", "categories": "hate"}',
                                                                     "application/json"),
                           (b'{"action": "ALLOW", "note": "' + b"x" * 3000 + b'"}', "application/json"),
                           (b"[" * 50000, "application/json"), (b"\xff\xfe", "text/plain"),
                           (b"name=x", "application/x-www-form-urlencoded")]:
        r = api.post(url, content=content, headers={**h, "Content-Type": ctype})
        assert r.status_code in (400, 415, 422), (content[:40], r.status_code, r.text)
        error(r, r.status_code)
    for q in ("limit=0", "limit=abc", "limit=100000", "queue=weather"):
        error(api.get(f"/v1/review/tasks?{q}", headers=h), 422)
    for body, ctype in [(b"{nope", "application/json"), (b"\x00\xff", "application/x-www-form-urlencoded"),
                        (b'{"name": ["a"], "password": {}}', "application/json")]:
        r = api.post("/v1/session", content=body, headers={"Content-Type": ctype})
        assert r.status_code in (400, 422), r.text
    assert any(t["task_id"] == task_id for t in api.get("/v1/review/tasks?limit=500", headers=h).json()["tasks"])

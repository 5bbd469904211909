"""The HTTP API on the real broker and Cassandra (the session's servers), through FastAPI's
TestClient over the real query layer and producer, and once through uvicorn on a free port:
every endpoint without credentials, with another user's token, with expired or forged tokens,
with keys not granted the topic or read; oversized, malformed and hypothesis-generated bodies
(never a 500); events acknowledged by the broker with the app as producer; feed pages with the
cursor of ``pulse feed``; media URIs outside the store refused at the API and, published straight
onto Kafka, given a verdict that says why (read back from the views through the API)."""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from streams.api.app import create_app
from streams.api.auth import KeyStore, issue_token, token_secret
from streams.producer import Publisher
from tests.integration.conftest import unique, wait_until

pytestmark = pytest.mark.integration

ENDPOINTS = [("GET", "/v1/feeds/{u}"), ("GET", "/v1/users/{u}/notifications"), ("GET", "/v1/golden-moments/{u}"),
             ("GET", "/v1/creators/{u}/stats"), ("GET", "/v1/users/{u}/live?max_seconds=1"),
             ("GET", "/v1/trends"), ("GET", "/v1/search?q=cats"), ("GET", "/v1/posts/{p}"),
             ("POST", "/v1/events/follows"), ("POST", "/v1/media")]
OWN = [("GET", "/v1/feeds/{u}"), ("GET", "/v1/users/{u}/notifications"), ("GET", "/v1/golden-moments/{u}"),
       ("GET", "/v1/creators/{u}/stats"), ("GET", "/v1/users/{u}/live?max_seconds=1")]


class Api:
    """A TestClient on the API of the session's servers, with keys and tokens."""

    def __init__(self, settings):
        self.settings = settings
        self.client = TestClient(create_app(settings), raise_server_exceptions=False)
        keys = KeyStore.for_settings(settings)
        self.app_name = unique("app")
        self.key, _ = keys.create(self.app_name, "all", "all")
        self.narrow, _ = keys.create(unique("narrow"), "follows", "trends")
        self.secret = token_secret(settings)

    def token(self, user, role="user", ttl=300):
        return {"Authorization": f"Bearer {issue_token(self.secret, user, ttl_s=ttl, role=role)}"}

    def headers(self, key=None, **extra):
        return {"X-API-Key": key or self.key, **extra}

    def call(self, method, path, headers=None, **kw):
        return self.client.request(method, path, headers=headers or {}, **kw)


@pytest.fixture(scope="module")
def api(pipeline):
    a = Api(pipeline)
    with a.client:
        yield a


def error(r, status):
    body = r.json()
    assert r.status_code == status, body
    assert set(body["error"]) == {"status", "code", "message", "request_id"}
    assert body["error"]["request_id"] == r.headers["x-request-id"] and "Traceback" not in r.text
    return body["error"]["message"]


def follow(follower, followee="u-star"):
    return {"follower_id": follower, "followee_id": followee, "action": "FOLLOW"}


def test_every_endpoint_refuses_missing_expired_and_forged_credentials(api):
    user = unique("u")
    now = int(time.time())
    claims = {"iss": "pulse", "sub": user, "role": "moderator", "iat": now, "exp": now + 300}
    bad = {
        "no credentials": {},
        "expired token": {"Authorization": "Bearer " + jwt.encode(
            {**claims, "iat": now - 100, "exp": now - 10}, api.secret, algorithm="HS256")},
        "forged token": {"Authorization": "Bearer " + jwt.encode(claims, b"f" * 32, algorithm="HS256")},
        "unsigned token": {"Authorization": "Bearer " + jwt.encode(claims, None, algorithm="none")},
        "unknown key": {"X-API-Key": "pk_0123456789ab_" + "x" * 43},
        "both": {**api.token(user), "X-API-Key": api.key},
    }
    for why, headers in bad.items():
        for method, path in ENDPOINTS:
            r = api.call(method, path.format(u=user, p="p1"), headers=headers, json=follow(user))
            msg = error(r, 401)
            assert r.headers.get("www-authenticate") or why == "both", (why, path)
            if why == "expired token":
                assert "expired" in msg


def test_user_tokens_read_only_their_own_data_and_keys_only_their_grants(api):
    me, other = unique("u"), unique("u")
    for method, path in OWN:
        assert "own" in error(api.call(method, path.format(u=other), headers=api.token(me)), 403)
        assert api.call(method, path.format(u=me), headers=api.token(me)).status_code in (200, 404)
    assert "own posts" in error(api.call("GET", "/v1/posts/nope", headers=api.token(me)), 403)
    assert error(api.call("GET", "/v1/posts/nope", headers=api.token(me, "moderator")), 404)
    for method, path in [("POST", "/v1/events/follows"), ("POST", "/v1/media")]:
        error(api.call(method, path, headers=api.token(me), json=follow(me)), 403)
    assert "not granted topic 'uploads'" in error(
        api.call("POST", "/v1/events/uploads", headers=api.headers(api.narrow), json={}), 403)
    assert "not granted the 'feeds' read" in error(
        api.call("GET", f"/v1/feeds/{me}", headers=api.headers(api.narrow)), 403)
    error(api.call("POST", "/v1/media", headers=api.headers(api.narrow, **{"Content-Type": "image/jpeg"}),
                   content=b"x"), 403)
    assert "written by Pulse" in error(api.call("POST", "/v1/events/moderation-verdicts", headers=api.headers(),
                                                json={}), 403)
    error(api.call("POST", "/v1/events/no-such-topic", headers=api.headers(), json={}), 404)
    assert api.call("GET", "/v1/trends", headers=api.headers(api.narrow)).status_code == 200
    assert api.call("GET", "/v1/trends", headers=api.token(me)).status_code == 200


def test_an_event_is_acknowledged_with_its_id_and_the_app_as_producer(api):
    from replay.reader import read_topic

    user = unique("u")
    r = api.call("POST", "/v1/events/follows", headers=api.headers(),
                 json={**follow(user), "producer": "someone-else", "event_time": "2026-01-02T03:04:05Z"})
    assert r.status_code == 202, r.text
    event_id = r.json()["event_id"]
    assert r.json()["topic"] == "follows" and uuid.UUID(event_id)
    found = wait_until(lambda: [rec for _, rec in read_topic(api.settings, "follows", last=200)
                                if rec["event_id"] == event_id], 30, "the event on the topic")
    assert found[0]["producer"] == api.app_name and found[0]["follower_id"] == user  # not trusted from the body
    mine = str(uuid.uuid4())  # a client's own id is kept (retries de-duplicate by it)
    assert api.call("POST", "/v1/events/follows", headers=api.headers(),
                    json={**follow(user), "event_id": mine}).json()["event_id"] == mine


def test_a_user_requests_their_own_erasure_and_follows_its_report(api):
    """``POST /v1/users/{id}/erasure`` with the user's own token puts the request on
    ``erasure-requests`` as ``pulse erase`` does, the user as producer; the report is not there
    for the user until the eraser reaches it (no eraser runs here: test_erasure.py runs one), an
    app granted the read sees it empty and pending. A body with an unknown basis is a 422."""
    from replay.reader import read_topic

    me = unique("u")
    bad = api.call("POST", f"/v1/users/{me}/erasure", headers=api.token(me), json={"legal_basis": "WHIM"})
    assert "legal_basis" in error(bad, 422)
    r = api.call("POST", f"/v1/users/{me}/erasure", headers=api.token(me), json={"legal_basis": "CCPA"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["user_id"] == me and body["scope"] == "USER" and body["report"].endswith(body["request_id"])
    found = wait_until(lambda: [rec for _, rec in read_topic(api.settings, "erasure-requests", last=200)
                                if rec["request_id"] == body["request_id"]], 30, "the request on the topic")
    assert found[0]["user_id"] == me and found[0]["producer"] == f"user:{me}"
    assert found[0]["legal_basis"] == "CCPA" and found[0]["scope"] == "USER"
    post = api.call("POST", f"/v1/users/{me}/erasure", headers=api.headers(), json={"post_id": f"{me}-p1"})
    assert post.status_code == 202 and post.json()["scope"] == "POST"  # an app granted erasure-requests
    assert "no report" in error(api.call("GET", body["report"], headers=api.token(me)), 404)
    pending = api.call("GET", body["report"], headers=api.headers())
    assert pending.status_code == 200 and pending.json()["complete"] is False
    assert "eraser" in pending.json()["pending"] and pending.json()["components"] == {}
    assert "not granted" in error(api.call("GET", body["report"], headers=api.headers(api.narrow)), 403)


def test_bad_bodies_get_a_reason_and_never_a_500(api):
    h = api.headers(**{"Content-Type": "application/json"})
    assert "not valid JSON" in error(api.call("POST", "/v1/events/follows", headers=h, content=b"{nope"), 400)
    assert "nested too deeply" in error(api.call("POST", "/v1/events/follows", headers=h, content=b"[" * 100_000), 400)
    assert "one JSON object" in error(api.call("POST", "/v1/events/follows", headers=h, content=b"[1, 2]"), 422)
    assert "follower_id" in error(api.call("POST", "/v1/events/follows", headers=h, content=b"{}"), 422)
    assert "action" in error(api.call("POST", "/v1/events/follows", headers=h,
                                      json={**follow("a"), "action": "LOVE"}), 422)
    assert "Content-Type" in error(api.call("POST", "/v1/events/follows", headers=api.headers(),
                                            content=b"{}"), 415)
    big = json.dumps({**follow("a"), "followee_id": "x" * (api.settings.api_max_body_bytes + 1)})
    assert "PULSE_API_MAX_BODY_BYTES" in error(api.call("POST", "/v1/events/follows", headers=h, content=big), 413)
    assert "limit" in error(api.call("GET", "/v1/feeds/u?limit=0", headers=api.headers()), 422)
    error(api.call("GET", "/v1/feeds/u?cursor=garbage", headers=api.headers()), 400)
    error(api.call("GET", "/v1/trends?kind=weather", headers=api.headers()), 400)
    error(api.call("GET", "/v1/golden-moments/u?content_type=eternal", headers=api.headers()), 400)
    error(api.call("GET", "/v1/creators/u/stats?sort=loudest", headers=api.headers()), 400)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                           max_leaves=12)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=st.sampled_from(["follows", "uploads", "interactions", "signups", "notification-feedback"]),
       body=st.dictionaries(st.sampled_from(["follower_id", "followee_id", "action", "event_id", "event_time",
                                             "post_id", "creator_id", "kind", "media_uri", "user_id", "type",
                                             "hashtags", "caption", "extra"]), json_values, max_size=8)
       | json_values, raw=st.binary(max_size=64))
def test_generated_bodies_never_get_a_500(api, topic, body, raw):
    h = api.headers(**{"Content-Type": "application/json"})
    for content in (json.dumps(body).encode(), raw):
        r = api.call("POST", f"/v1/events/{topic}", headers=h, content=content)
        assert r.status_code in (202, 400, 413, 422), r.text


def test_media_is_stored_and_uris_outside_the_store_are_refused_at_the_api(api, tmp_path):
    h = api.headers(**{"Content-Type": "image/jpeg"})
    r = api.call("POST", "/v1/media", headers=h, content=b"\xff\xd8\xff" + uuid.uuid4().bytes)
    assert r.status_code == 201, r.text
    uri = r.json()["media_uri"]
    assert uri.startswith("media:sha256/") and (api.settings.media_root / uri[len("media:"):]).is_file()
    error(api.call("POST", "/v1/media", headers=api.headers(**{"Content-Type": "text/html"}), content=b"<b>"), 415)
    error(api.call("POST", "/v1/media", headers=h, content=b""), 400)
    too_big = api.settings.media_max_bytes + 1
    assert "PULSE_MEDIA_MAX_BYTES" in error(api.call("POST", "/v1/media", headers={**h, "Content-Length": str(too_big)},
                                                     content=b"x"), 413)
    (api.settings.media_root / "escape.jpg").unlink(missing_ok=True)
    (api.settings.media_root / "escape.jpg").symlink_to("/etc/passwd")
    creator = unique("c")

    def upload(media_uri):
        return {"post_id": unique("p"), "creator_id": creator, "kind": "IMAGE", "content_type": "FOREVER",
                "media_uri": media_uri, "caption": "look", "hashtags": []}

    assert api.call("POST", "/v1/events/uploads", headers=api.headers(), json=upload(uri)).status_code == 202
    for bad, why in [("/etc/passwd", "outside the media roots"), ("file:///etc/passwd", "outside the media roots"),
                     ("media:../../etc/passwd", "contains '..'"), ("media:escape.jpg", "symlink"),
                     ("http://127.0.0.1:8080/v1/health", "internal address"), ("s3://bucket/a.jpg", "scheme 's3'"),
                     ("media:sha256/00/none.jpg", "no stored media")]:
        assert why in error(api.call("POST", "/v1/events/uploads", headers=api.headers(), json=upload(bad)), 422), bad


def test_feed_pages_follow_the_cursor_of_pulse_feed(api):
    from streams.query.feeds import read_feed
    from streams.query.read_side import ReadSide

    user = unique("u")
    now = int(time.time() * 1000)
    items = [(f"{user}-p{i}", "c1", 1.0 - i / 10, "IN_NETWORK", ["source in_network"], now - i) for i in range(5)]
    with ReadSide(api.settings) as rs:
        rs.execute("INSERT INTO {ks}.user_feeds (user_id, items, generated_at, model_version) VALUES (?, ?, ?, ?)",
                   (user, items, now, "test"))  # a feed as an older ranker stored it: served as stored
        pages, cursor = [], None
        while True:
            r = api.call("GET", f"/v1/feeds/{user}?limit=2" + (f"&cursor={cursor}" if cursor else ""),
                         headers=api.token(user))
            assert r.status_code == 200, r.text
            pages.append(r.json())
            assert r.json() == read_feed(rs, user, limit=2, cursor=cursor).as_dict()  # what pulse feed shows
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert [i["post_id"] for p in pages for i in p["items"]] == [it[0] for it in items]
        assert len(pages) == 3
    assert api.call("GET", f"/v1/feeds/{unique('nobody')}", headers=api.headers()).json()["items"] == []


def test_rate_limits_answer_429_with_retry_after(pipeline):
    a = Api(pipeline.with_(api_user_rate=0.01, api_user_burst=2))
    user = unique("u")
    codes = [a.call("GET", f"/v1/users/{user}/notifications", headers=a.token(user)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = a.call("GET", f"/v1/users/{user}/notifications", headers=a.token(user))
    assert "rate limit" in error(r, 429) and int(r.headers["retry-after"]) >= 1
    assert a.call("GET", "/v1/trends", headers=a.headers()).status_code == 200  # keys have buckets of their own


def test_uvicorn_serves_the_app_on_loopback(api):
    import uvicorn

    from streams.api.server import server_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(server_config(api.settings, "127.0.0.1", port, log_level="warning"))  # as `pulse api`
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, "uvicorn to start")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v1/health").json() == {"status": "ok"}
        assert httpx.get(f"{base}/docs").status_code == 200
        assert "/v1/events/{topic}" in httpx.get(f"{base}/openapi.json").json()["paths"]
        r = httpx.get(f"{base}/v1/trends", headers={"X-API-Key": api.key})
        assert r.status_code == 200 and r.headers["x-request-id"] and "server" not in r.headers
        assert httpx.get(f"{base}/v1/trends").status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.timeout(600)
def test_media_outside_the_roots_published_straight_onto_kafka_gets_a_verdict_saying_why(api, workers):
    """No API in the way: an upload naming /etc/passwd goes onto Kafka; Content Guard never reads
    it and blocks the post with the reason, which the API shows a moderator."""
    creator = unique("c")
    posts = {unique("p"): uri for uri in ("/etc/passwd", "file:///etc/shadow", "http://169.254.169.254/latest/meta-data")}
    with Publisher(api.settings, producer_name="rogue") as pub:
        for post, uri in posts.items():
            pub.publish("uploads", {"post_id": post, "creator_id": creator, "kind": "IMAGE", "content_type": "FOREVER",
                                    "media_uri": uri, "caption": "nothing to see", "hashtags": []})
    proc = workers.start(unique("api-guard"), "materializer,content_guard")
    mod = api.token(unique("mod"), "moderator")

    def verdicts():
        got = {p: api.call("GET", f"/v1/posts/{p}", headers=mod) for p in posts}
        if all(r.status_code == 200 and r.json()["moderation"] for r in got.values()):
            return {p: r.json() for p, r in got.items()}
        return None

    found = wait_until(verdicts, 480, "Content Guard's verdicts through the API", interval_s=2,
                       diagnose=lambda: workers.log(proc))
    reasons = {p: " ".join(found[p]["moderation"][0]["reasons"]) for p in posts}
    for post, uri in posts.items():
        assert found[post]["moderation"][0]["action"] == "BLOCK", found[post]
        assert found[post]["creator_id"] == creator
    by_uri = {uri: reasons[p] for p, uri in posts.items()}
    assert "outside the media roots" in by_uri["/etc/passwd"] and "outside the media roots" in by_uri["file:///etc/shadow"]
    assert "internal address (169.254.169.254)" in by_uri["http://169.254.169.254/latest/meta-data"]
    # the creator reads their own post's verdict; another user cannot
    assert api.call("GET", f"/v1/posts/{next(iter(posts))}", headers=api.token(creator)).status_code == 200
    error(api.call("GET", f"/v1/posts/{next(iter(posts))}", headers=api.token(unique("u"))), 403)


def test_live_stream_pushes_a_new_notification_and_new_feed_entries(api, pipeline):
    """A notification row and a re-ranked feed written after the stream's baseline (as the
    agents' sinks write them) arrive as server-sent events; rows there before do not."""
    import json as _json
    from datetime import datetime, timezone

    from streams.stores.cassandra import connect

    user = unique("live")
    cluster, session = connect(pipeline, pipeline.cassandra_keyspace)
    insert = ("INSERT INTO notifications (user_id, sent_at, notification_id, type, status, title, propensity, "
              "action) VALUES (%s, %s, %s, 'LIKE', 'SENT', 'someone liked your post', 0.8, 'SEND')")
    try:
        session.execute(insert, (user, datetime(2026, 1, 1, tzinfo=timezone.utc), "old-1"))
        events, current = [], {}
        with api.client.stream("GET", f"/v1/users/{user}/live?max_seconds=20", headers=api.token(user)) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("event: "):
                    current = {"event": line[7:]}
                elif line.startswith("data: "):
                    current["data"] = _json.loads(line[6:])
                    events.append(current)
                    if current["event"] == "ready":
                        session.execute(insert, (user, datetime.now(timezone.utc), "new-1"))
                    if current["event"] in ("notification", "end"):
                        break
        kinds = [e["event"] for e in events]
        assert kinds[0] == "ready" and "notification" in kinds, kinds
        got = [e["data"] for e in events if e["event"] == "notification"]
        assert [g["notification_id"] for g in got] == ["new-1"]  # the row from before is no news
        assert got[0]["propensity"] == 0.8 and got[0]["action"] == "SEND"
    finally:
        cluster.shutdown()

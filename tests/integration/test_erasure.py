"""Erasure end to end on the real broker, Cassandra and the embedded vector engine: two users'
history through the real producer (personal fields encrypted: no plaintext on Kafka) and a real
`pulse worker` (materializer + eraser), one user erased with `pulse erase --wait`; their rows
leave every view, their points leave the vector index, their compacted keys get tombstones,
their key is shredded, the report says so, a replay afterwards does not resurrect them, a
Parquet export afterwards has none of their plaintext, and the other user's data is intact."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition

import pyarrow.parquet as pq

from replay.export import export_topic
from replay.rebuild import drop_rebuild, rebuild_views
from streams.contracts.effects import VectorUpsert
from streams.producer import Publisher
from streams.settings import REPO_ROOT
from streams.sinks.writers import VectorSink
from streams.stores.cassandra import connect
from streams.stores.keys import keys_keyspace
from streams.stores.vectors import CollectionNotFoundError, open_vector_index
from tests.integration.conftest import unique, wait_until, worker_env
from tests.integration.test_publish import upload_line
from tests.integration.test_worker_views import caught_up

T0 = 1_560_000_000_000
#: The materializer, the eraser and every agent that forgets users (`pulse erase --wait` waits
#: for all of these).
AGENTS = ("materializer", "eraser", "user_profiler", "feed_ranker", "notification_generator", "creator_analytics",
          "timing_optimizer")


def _dim(index, collection, default):
    try:
        d = index.dims(collection)
    except CollectionNotFoundError:
        return default
    return d


def _points(settings, ada_posts, bob_post, ada, bob):
    """Content and interest points as clip_ai and the profiler would have written them."""
    with open_vector_index(settings) as index:
        dims = _dim(index, "content", {})
        sem = dims.get("semantic", 384) if isinstance(dims, dict) else 384
        # the collections as the deployed agents size them (384-d): one created smaller here would
        # refuse the real profiles the later tests' user_profiler writes to the same collection
        width = _dim(index, "user_interests", sem)
        sink = VectorSink(index)
        for i, p in enumerate([*ada_posts, bob_post]):
            sink.add(VectorUpsert("content", p, {"semantic": [1.0 + i] + [0.0] * (sem - 1)}, {"post_id": p}))
        for i, u in enumerate((ada, bob)):
            sink.add(VectorUpsert("user_interests", u, [1.0] * (i + 1) + [0.0] * (width - i - 1), {"user_id": u}))
        sink.flush()


def _rows(settings, keyspace, cql, *params):
    cluster, s = connect(settings, keyspace)
    try:
        return list(s.execute(cql, params))
    finally:
        cluster.shutdown()


def _latest_values(settings, topic, key: bytes):
    """Every value of ``key`` on ``topic``, in offset order (None: a tombstone)."""
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": unique("t"),
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        values = []
        for p in parts:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi <= lo:
                continue
            c.assign([TopicPartition(topic, p, lo)])
            while True:
                m = c.poll(5)
                if m is None:
                    break
                if not m.error() and m.key() == key:
                    values.append(m.value())
                if m.offset() + 1 >= hi:
                    break
        return values
    finally:
        c.close()


def _changelog_values(settings, changelog, user) -> list:
    """A Faust table's changelog values for ``user``'s key (written raw or JSON-quoted)."""
    return _latest_values(settings, changelog, user.encode()) or \
        _latest_values(settings, changelog, f'"{user}"'.encode())


def _raw_values(settings, topic, key: bytes) -> list[bytes]:
    return [v for v in _latest_values(settings, topic, key) if v is not None]


def test_erasure_end_to_end(pipeline, workers, tmp_path):
    # Kafka timestamps from here on are this test's (other tests leave broken events on the
    # shared topics on purpose: the rebuild below reads from here, which is the same for the
    # stateless materializer and eraser)
    began_ms = int(time.time() * 1000) - 1_000
    ada, bob = unique("ada"), unique("bob")
    ada_posts, bob_post = [f"{ada}-p1", f"{ada}-p2"], f"{bob}-p1"
    secret = f"ada private caption {ada}"
    ks = pipeline.cassandra_keyspace
    with Publisher(pipeline) as pub:
        for i, (u, handle) in enumerate(((ada, "ada lovelace"), (bob, "bob"))):
            pub.publish("signups", {"user_id": u, "handle": handle, "declared_interests": ["qubits"],
                                    "locale": None, "country": "GB", "about": f"about {handle}",
                                    "event_time": T0 + i})
        for i, p in enumerate(ada_posts):
            pub.publish("uploads", upload_line(p, ada, caption=secret, event_time=T0 + 10 + i))
        pub.publish("uploads", upload_line(bob_post, bob, caption="bob's caption", event_time=T0 + 20))
    # personal fields are encrypted on the wire from the start
    values = _raw_values(pipeline, "signups", ada.encode())
    wire = b"".join(values)
    assert wire and b"ada lovelace" not in wire and b"about ada" not in wire
    from streams.contracts.codec import codec_for
    from streams.contracts.topics import topic_spec

    on_the_wire = codec_for(pipeline, topic_spec("signups").schema, "signups")  # no keys: ciphertext as sent
    for v in values:  # a 2-letter country is checked by its field, not by searching the bytes
        rec = on_the_wire.decode(v)
        assert all(str(rec[f]).startswith("pii:1:") for f in ("handle", "about", "country")), rec
    for p in ada_posts:
        raw = b"".join(_raw_values(pipeline, "uploads", p.encode()))
        assert raw and secret.encode() not in raw and ada.encode() in raw  # ids stay readable
        pub.publish("follows", {"follower_id": bob, "followee_id": ada, "action": "FOLLOW", "event_time": T0 + 30})
        pub.publish("follows", {"follower_id": ada, "followee_id": bob, "action": "FOLLOW", "event_time": T0 + 31})
    _points(pipeline, ada_posts, bob_post, ada, bob)

    app_id = unique("erase")
    proc = workers.start(app_id, agents=",".join(AGENTS))
    wait_until(lambda: caught_up(pipeline, app_id, ["uploads", "signups", "follows"]), 180,
               "the materializer to commit every offset", diagnose=lambda: workers.log(proc))
    assert _rows(pipeline, ks, "SELECT handle FROM users WHERE user_id = %s", ada)

    done = subprocess.run([sys.executable, "-m", "streams.cli", "erase", ada, "--wait", "--json",
                           "--timeout", "180"], env=worker_env(pipeline, app_id), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + workers.log(proc)
    report = json.loads(done.stdout)
    eraser = report["components"]["eraser"]
    assert report["user_id"] == ada and report["scope"] == "USER" and "eraser" in report["done"], report
    assert eraser["view:posts"] == 2 and eraser["vectors:content"] == 2
    assert eraser["view:followers"] == 2 and eraser["view:following"] == 2  # own partitions + bob's rows
    assert eraser["topic:profiles"] == 1 and eraser["topic:content-fingerprints"] == 2
    assert eraser["keys:subject key shredded"] == 1
    assert set(report["done"]) == set(AGENTS) - {"materializer"}
    # the profiler and the ranker held ada (her sign-up, her follow) and forgot her: their
    # changelogs end with a tombstone of her key; bob's entries are still there
    assert report["components"]["user_profiler"] == {"state:profiles": 1}
    assert report["components"]["feed_ranker"] == {"state:feeds": 1}
    for agent, table in (("user_profiler", "profiles"), ("feed_ranker", "feeds")):
        changelog = f"{app_id}-{agent}-{table}-changelog"
        ada_values = _changelog_values(pipeline, changelog, ada)
        bob_values = _changelog_values(pipeline, changelog, bob)
        assert ada_values and ada_values[-1] is None, changelog
        assert bob_values and bob_values[-1] is not None, changelog
    keys = _rows(pipeline, keys_keyspace(pipeline), "SELECT subject FROM subject_keys WHERE subject IN (%s, %s)",
                 ada, bob)
    assert [r.subject for r in keys] == [bob]  # ada's key is gone, bob's is not
    shown = subprocess.run([sys.executable, "-m", "streams.cli", "erasure-report", report["request_id"], "--json"],
                           env=worker_env(pipeline, app_id), cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=120)
    assert json.loads(shown.stdout)["components"] == report["components"]
    # the same report through the API: for ada's own token, complete; never for bob's
    from fastapi.testclient import TestClient

    from streams.api.app import create_app
    from streams.api.auth import issue_token, token_secret

    with TestClient(create_app(pipeline), raise_server_exceptions=False) as client:
        def as_user(u):
            return {"Authorization": f"Bearer {issue_token(token_secret(pipeline), u, ttl_s=300)}"}

        r = client.get(f"/v1/erasure-requests/{report['request_id']}", headers=as_user(ada))
        assert r.status_code == 200, r.text
        assert r.json()["components"] == report["components"] and r.json()["complete"] is True
        assert r.json()["pending"] == []
        assert client.get(f"/v1/erasure-requests/{report['request_id']}", headers=as_user(bob)).status_code == 403

    def gone(keyspace):
        assert not _rows(pipeline, keyspace, "SELECT * FROM users WHERE user_id = %s", ada)
        assert not _rows(pipeline, keyspace, "SELECT * FROM posts_by_creator WHERE creator_id = %s", ada)
        for p in ada_posts:
            assert not _rows(pipeline, keyspace, "SELECT * FROM posts WHERE post_id = %s", p)
        assert not _rows(pipeline, keyspace, "SELECT * FROM following WHERE follower_id = %s", ada)
        assert not _rows(pipeline, keyspace, "SELECT * FROM followers WHERE followee_id = %s", ada)
        # ada's rows in bob's partitions
        assert not _rows(pipeline, keyspace, "SELECT * FROM followers WHERE followee_id = %s AND follower_id = %s",
                         bob, ada)
        assert not _rows(pipeline, keyspace, "SELECT * FROM following WHERE follower_id = %s AND followee_id = %s",
                         bob, ada)
        # bob is intact
        assert [r.handle for r in _rows(pipeline, keyspace, "SELECT handle FROM users WHERE user_id = %s", bob)] == ["bob"]
        assert _rows(pipeline, keyspace, "SELECT * FROM posts WHERE post_id = %s", bob_post)
        assert _rows(pipeline, keyspace, "SELECT * FROM posts_by_creator WHERE creator_id = %s", bob)

    gone(ks)
    for topic in ("profiles", "feed-updates"):
        assert _latest_values(pipeline, topic, ada.encode())[-1:] == [None], topic
    for p in ada_posts:
        assert _latest_values(pipeline, "content-fingerprints", p.encode())[-1:] == [None]
    workers.stop_all()  # the embedded vector engine is one process per directory
    with open_vector_index(pipeline) as index:
        assert index.get("content", ada_posts) == []
        assert [pt.id for pt in index.get("content", [bob_post])] == [bob_post]
        assert index.get("user_interests", [ada]) == []
        assert [pt.id for pt in index.get("user_interests", [bob])] == [bob]

    # a replay afterwards into a fresh keyspace does not resurrect ada, and keeps bob
    rebuilt_ks = f"erased_{unique('r').split('-')[1]}"
    try:
        out = rebuild_views(pipeline, ["materializer", "eraser"], into=rebuilt_ks, start_ms=began_ms)
        assert out["dead_letters"] == 0
        gone(rebuilt_ks)
        log = _rows(pipeline, rebuilt_ks, "SELECT item, count FROM erasure_log WHERE request_id = %s",
                    report["request_id"])
        assert {r.item: r.count for r in log}["view:posts"] == 2
    finally:
        drop_rebuild(pipeline, rebuilt_ks)
    # exports afterwards: ada's personal fields are unreadable, bob's read; a compacted topic
    # with tombstones exports too
    for topic in ("signups", "uploads"):
        export_topic(pipeline, topic, tmp_path / f"{topic}.parquet")
    signups = {r["user_id"]: r for r in pq.read_table(tmp_path / "signups.parquet").to_pylist()}
    assert (signups[ada]["handle"], signups[ada]["about"], signups[ada]["country"]) == ("", None, None)
    assert (signups[bob]["handle"], signups[bob]["about"], signups[bob]["country"]) == ("bob", "about bob", "GB")
    uploads = pq.read_table(tmp_path / "uploads.parquet").to_pylist()
    assert [r["caption"] for r in uploads if r["creator_id"] == ada] == ["", ""]
    assert [r["caption"] for r in uploads if r["creator_id"] == bob] == ["bob's caption"]
    export_topic(pipeline, "profiles", tmp_path / "profiles.parquet")

"""A real `pulse worker` materializes the views; re-delivered and out-of-order events leave the
same rows; undecodable messages go to dead-letters with their position and bytes."""
from __future__ import annotations

from confluent_kafka import Producer

from replay.reader import read_topic
from streams.stores.cassandra import connect
from streams.demo.run import group_lag
from streams.producer import Publisher
from streams.query.views import follow_summary, posts_by_creator

from tests.integration.conftest import unique, wait_until
from tests.integration.test_publish import upload_line

T0 = 1_530_000_000_000


def caught_up(settings, app_id, topics):
    committed, end = group_lag(settings, app_id, topics)
    return end > 0 and committed >= end


def test_worker_materializes_posts_users_follows_idempotently(pipeline, workers):
    app_id = unique("views")
    creator, fan1, fan2 = unique("c"), unique("u"), unique("u")
    posts = [upload_line(f"{creator}-p{i}", creator, event_time=T0 + i * 1000,
                         event_id=f"00000000-0000-4000-8000-{i:012d}") for i in range(5)]
    follow = {"follower_id": fan1, "followee_id": creator, "action": "FOLLOW"}
    with Publisher(pipeline) as pub:
        pub.publish("signups", {"user_id": creator, "handle": "ada", "declared_interests": ["qubits"],
                                "locale": None, "country": None, "about": None, "event_time": T0})
        for p in posts + posts:  # every upload delivered twice
            pub.publish("uploads", p)
        pub.publish("follows", dict(follow, event_time=T0 + 10))
        pub.publish("follows", {"follower_id": fan2, "followee_id": creator, "action": "FOLLOW",
                                "event_time": T0 + 11})
        pub.publish("follows", dict(follow, action="UNFOLLOW", event_time=T0 + 20))
        # a re-delivered, older FOLLOW arriving after the UNFOLLOW must not resurrect the edge
        pub.publish("follows", dict(follow, event_time=T0 + 10))
    proc = workers.start(app_id)
    wait_until(lambda: caught_up(pipeline, app_id, ["uploads", "signups", "follows"]), 120,
               "the worker to commit every offset", diagnose=lambda: workers.log(proc))

    rows = posts_by_creator(pipeline, creator, limit=50)
    assert [r["post_id"] for r in rows] == [f"{creator}-p{i}" for i in reversed(range(5))]
    assert all(r["hashtags"] == ["qubits"] for r in rows)  # delivered twice, written once
    f = follow_summary(pipeline, creator)
    assert f["followers"] == 1
    assert follow_summary(pipeline, fan1)["following"] == 0
    cluster, s = connect(pipeline, pipeline.cassandra_keyspace)
    try:
        row = s.execute("SELECT handle, WRITETIME(handle) AS wt FROM users WHERE user_id = %s",
                        (creator,)).one()
        assert row.handle == "ada" and row.wt == T0 * 1000  # written at the event's time
    finally:
        cluster.shutdown()


def test_undecodable_message_is_dead_lettered_with_position_and_bytes(pipeline, workers):
    app_id = unique("dlq")
    garbage = b"\xc3\x01" + unique("junk").encode()
    p = Producer({"bootstrap.servers": pipeline.kafka_bootstrap})
    p.produce("signups", key=b"k", value=garbage, headers=[("origin", b"test")])
    p.flush(10)
    proc = workers.start(app_id)
    wait_until(lambda: caught_up(pipeline, app_id, ["uploads", "signups", "follows"]), 120,
               "the worker to commit every offset", diagnose=lambda: workers.log(proc))
    found = wait_until(lambda: [r for _, r in read_topic(pipeline, "dead-letters") if r["value"] == garbage],
                       30, "the dead letter")
    dl = found[0]
    assert dl["source_topic"] == "signups" and dl["consumer"] == "materializer"
    assert dl["offset"] is not None and dl["partition"] is not None and dl["key"] == b"k"
    assert {"key": "origin", "value": b"test"} in dl["headers"]
    assert "fingerprint" in dl["reason"] or "schema" in dl["reason"]
    assert proc.poll() is None  # the worker keeps running

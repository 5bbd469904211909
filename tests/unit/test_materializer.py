"""The materializer's pure core: events in, idempotent view writes out (called directly and
through the engine)."""
from agents.materializer import SPEC, process
from streams.contracts.agent import Context, Event
from streams.contracts.effects import Delete, Upsert

T = 1_537_000_000_123  # epoch ms


def upload(**kw):
    rec = {"event_id": "3b1f8c2e-4a5d-4e6f-8a9b-0c1d2e3f4a5b", "event_time": T, "producer": "t", "post_id": "p1", "creator_id": "u1",
           "kind": "TEXT", "content_type": "FOREVER", "media_uri": None, "caption": "hello " * 100,
           "title": "Hi", "hashtags": ["qiskit"], "duration_ms": None, "size_bytes": None,
           "width": None, "height": None, "parent_post_id": None}
    rec.update(kw)
    return rec


def materialize(topic, record):
    """``process`` as the runner calls it (stateless: no state)."""
    ctx = Context(agent=SPEC.name, event_id=record.get("event_id", "e"),
                  event_time_ms=record["event_time"])
    return process(None, Event(topic, record), ctx)


def test_upload_writes_post_and_creator_index_at_event_time():
    posts, by_creator = materialize("uploads", upload())
    assert isinstance(posts, Upsert) and posts.table == "posts"
    assert posts.timestamp_us == T * 1000 and posts.row["uploaded_at"] == T
    assert posts.row["event_id"] == "3b1f8c2e-4a5d-4e6f-8a9b-0c1d2e3f4a5b" and posts.row["hashtags"] == ["qiskit"]
    assert by_creator.table == "posts_by_creator"
    assert (by_creator.row["creator_id"], by_creator.row["post_id"]) == ("u1", "p1")
    assert len(by_creator.row["caption"]) == 280


def test_same_event_twice_gives_identical_effects():
    assert materialize("uploads", upload()) == materialize("uploads", upload())


def test_follow_and_unfollow():
    f = {"event_id": "e2", "event_time": T, "producer": "t", "follower_id": "a", "followee_id": "b",
         "action": "FOLLOW"}
    ups = materialize("follows", f)
    assert [(e.table, type(e)) for e in ups] == [("following", Upsert), ("followers", Upsert)]
    downs = materialize("follows", dict(f, action="UNFOLLOW", event_time=T + 1))
    assert downs == [Delete("following", {"follower_id": "a", "followee_id": "b"}, (T + 1) * 1000),
                     Delete("followers", {"followee_id": "b", "follower_id": "a"}, (T + 1) * 1000)]


def test_signup_and_unrelated_topic():
    s = {"event_id": "e3", "event_time": T, "producer": "t", "user_id": "u9", "handle": "ada",
         "declared_interests": ["qubits"], "locale": None, "country": "GB", "about": None}
    (row,) = materialize("signups", s)
    assert row.table == "users" and row.row["declared_interests"] == ["qubits"]
    assert materialize("interactions", {"event_time": T}) == []


def test_through_the_engine_decoded_times_give_the_same_rows(tmp_path):
    """The runner hands ``process`` decoded records (aware datetimes): same rows as epoch ms."""
    from tests.unit.agent_harness import Harness

    h = Harness(SPEC, tmp_path)
    assert SPEC.tables == () and SPEC.sinks == frozenset({"cassandra"})
    out = h.feed(("uploads", upload()))
    assert out.views == materialize("uploads", upload())
    assert (out.emits, out.dead_letters, out.state, h.runner.tables) == ([], [], [], {})

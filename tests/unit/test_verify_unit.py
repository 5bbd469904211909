"""Verifying a rebuild (replay.verify) without servers: value normalisation, event, row and point
differences, the report, and what a replay records as written (replay.rebuild.Written)."""
from __future__ import annotations

import uuid
from collections import namedtuple
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pytest

import replay.rebuild as rebuild
from replay.rebuild import Written
from replay.verify import (Difference, Report, _event_diff, _norm, _point_diff, compare_events,
                           compare_table)
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import (Delete, Emit, StateSet, Upsert, VectorDelete,
                                       VectorSetPayload, VectorUpsert)
from streams.contracts.schemas import default_catalog
from streams.runtime.engine import RawMessage
from streams.settings import Settings

T = 1_700_000_000_000


# ----------------------------------------------------------------------------------- _norm


def test_norm_keeps_scalars_and_none():
    for v in (None, "s", b"\x00", 3, 2.5, True, False):
        assert _norm(v) == v and type(_norm(v)) is type(v)


def test_norm_turns_driver_collections_into_plain_python():
    from cassandra.util import OrderedMapSerializedKey, SortedSet

    assert _norm(("a", 1)) == ["a", 1] and _norm(["a", ("b",)]) == ["a", ["b"]]
    assert _norm({"b": 1, "a": {"y": (2,), "x": None}}) == {"a": {"x": None, "y": [2]}, "b": 1}
    assert list(_norm({"b": 1, "a": 2})) == ["a", "b"]  # sorted keys
    assert _norm({1: "x", 2: "y"}) == {"1": "x", "2": "y"}  # keys as strings
    assert _norm(SortedSet(["b", "a"])) == ["a", "b"]
    assert _norm(iter([1, 2])) == [1, 2]
    m = OrderedMapSerializedKey(None, 0)  # the driver's map type (items() like a dict)
    assert _norm(m) == {}


def test_norm_gives_equal_sets_equal_lists_whatever_their_iteration_order():
    a, b = {8, 0}, {0, 8}  # equal sets that iterate in different orders (hash collision)
    assert a == b
    assert _norm(a) == _norm(b) == [0, 8]
    assert _norm(frozenset({"z", "y"})) == ["y", "z"]
    assert _norm({1, "a"}) in ([1, "a"], ["a", 1])  # unorderable mix: still one stable order
    assert _norm({1, "a"}) == _norm({"a", 1})


def test_norm_gives_timestamps_as_utc_epoch_ms():
    aware = datetime.fromtimestamp(T / 1000, tz=timezone.utc)
    naive = aware.replace(tzinfo=None)  # the driver's timestamps: naive UTC
    assert _norm(aware) == _norm(naive) == T
    assert _norm([naive]) == [T]


# ------------------------------------------------------------------------------ event diffs


def follow(**kw):
    rec = {"event_id": str(uuid.UUID(int=1)), "event_time": T, "producer": "p",
           "follower_id": "a", "followee_id": "b", "action": "FOLLOW"}
    rec.update(kw)
    return rec


def test_event_diff_names_every_differing_field_and_shows_the_first():
    codec = AvroCodec(default_catalog(), "Follow")
    live = codec.encode(follow())
    replay = codec.encode(follow(followee_id="c", action="UNFOLLOW"))
    assert _event_diff(codec, live, replay) == (
        "fields followee_id, action differ, e.g. followee_id: live 'b' vs replay 'c'")


def test_event_diff_of_equal_fields_blames_the_writer_schema():
    class TwoWriters:  # two encodings of one record (e.g. written with different schema versions)
        def decode(self, data):
            return follow()

    assert _event_diff(TwoWriters(), b"v1", b"v2") == (
        "same fields, different bytes (writer schema differs)")


def verdict(i, producer="content_guard", **kw) -> bytes:
    """An encoded moderation verdict with event id ``UUID(int=i)``."""
    rec = {"event_id": str(uuid.UUID(int=i)), "event_time": T + i, "producer": producer,
           "cause_event_id": None, "model": "m", "model_version": "1", "post_id": f"p{i}",
           "author_id": "u", "comment_id": None, "action": "ALLOW", "tier": "FAST",
           "scores": {}, "reasons": [], "latency_ms": None, "review_task_id": None}
    rec.update(kw)
    return AvroCodec(default_catalog(), "ModerationVerdict").encode(rec)


def test_compare_events_matches_replayed_and_live_events_by_id_byte_for_byte(monkeypatch):
    live = [verdict(1), verdict(2), verdict(2, reasons=["again, differently"]), verdict(3),
            verdict(4), verdict(9, producer="someone-else")]
    monkeypatch.setattr(rebuild, "read_merged", lambda settings, topics: iter(
        [RawMessage(topics[0], 0, i, None, v) for i, v in enumerate(live)] +
        [RawMessage(topics[0], 0, 99, None, None)]))
    replayed = {"moderation-verdicts": {str(uuid.UUID(int=1)): verdict(1),
                                        str(uuid.UUID(int=2)): verdict(2),
                                        str(uuid.UUID(int=3)): verdict(3, action="BLOCK"),
                                        str(uuid.UUID(int=5)): verdict(5)},
                "dead-letters": {"x": b"not compared"}}
    report = Report()
    compare_events(Settings.from_env({}), ["content_guard"], replayed, report)
    assert report.events == {"moderation-verdicts": 4}
    lines = [d.line() for d in report.differences]
    e = lambda i: str(uuid.UUID(int=i))  # noqa: E731
    assert lines == [
        f"event moderation-verdicts {e(2)}: two live copies of this event differ",
        f"event moderation-verdicts {e(2)}: fields reasons differ, e.g. reasons: live "
        f"['again, differently'] vs replay []",
        f"event moderation-verdicts {e(3)}: fields action differ, e.g. action: live 'ALLOW' vs "
        f"replay 'BLOCK'",
        f"event moderation-verdicts {e(4)}: on the live topic, not emitted by the replay",
        f"event moderation-verdicts {e(5)}: emitted by the replay, not on the live topic",
    ]


def test_verify_rebuild_compares_every_declared_output_also_one_the_replay_emitted_nothing_to(
        monkeypatch):
    """A replay that emitted nothing to a declared output topic still has that topic compared:
    the live agent's events there are differences (they were not reproduced)."""
    live = {"moderation-verdicts": [verdict(1), verdict(2)], "review-queue": []}
    asked = []

    def read(settings, topics):
        asked.extend(topics)
        return iter([RawMessage(topics[0], 0, i, None, v) for i, v in enumerate(live[topics[0]])])

    monkeypatch.setattr(rebuild, "read_merged", read)
    monkeypatch.setattr("streams.stores.cassandra.connect",
                        lambda settings: (SimpleNamespace(shutdown=lambda: None), object()))
    monkeypatch.setattr("streams.query.pointer.active_keyspace", lambda session, base: "live")
    rebuilt = {"agents": ["content_guard"], "outputs": ["moderation-verdicts", "review-queue"],
               "emitted": {}, "written": Written(), "keyspace": "rebuilt"}
    from replay.verify import verify_rebuild

    report = verify_rebuild(Settings.from_env({}), rebuilt)
    assert asked == ["moderation-verdicts", "review-queue"]
    assert report.events == {"moderation-verdicts": 0, "review-queue": 0}
    assert [d.line() for d in report.differences] == [
        f"event moderation-verdicts {uuid.UUID(int=i)}: on the live topic, not emitted by the "
        f"replay" for i in (1, 2)]
    # what the replay did emit is compared as before
    asked.clear()
    rebuilt["emitted"] = {"moderation-verdicts": {str(uuid.UUID(int=i)): verdict(i) for i in (1, 2)}}
    report = verify_rebuild(Settings.from_env({}), rebuilt)
    assert asked == ["moderation-verdicts", "review-queue"] and report.differences == []
    assert report.events == {"moderation-verdicts": 2, "review-queue": 0}


# -------------------------------------------------------------------------------- row diffs


class FakeSession:
    """Answers the primary-key query of ``system_schema.columns`` and ``SELECT`` of two keyspaces."""

    def __init__(self, pk, tables):
        self.pk, self.tables, self.queries = pk, tables, []

    def execute(self, query, params=None):
        self.queries.append(query)
        if "system_schema.columns" in query:
            Col = namedtuple("Col", "column_name kind position")
            return [Col(c, kind, pos) for c, kind, pos in self.pk] + [Col("x", "regular", -1)]
        cols = query.split("SELECT ", 1)[1].split(" FROM ")[0].split(", ")
        ks = query.split(" FROM ")[1].split(".")[0]
        return [tuple(row.get(c) for c in cols) for row in self.tables[ks]]


def test_compare_table_compares_the_written_columns_row_by_row():
    pk = [("followee_id", "partition_key", 0), ("follower_id", "clustering", 0)]
    live = [{"followee_id": "b", "follower_id": "a", "since": T, "note": "other writer"},
            {"followee_id": "b", "follower_id": "c", "since": T},
            {"followee_id": "b", "follower_id": "d", "since": None, "note": "only others"},
            {"followee_id": "b", "follower_id": "e", "since": T}]
    rebuilt = [{"followee_id": "b", "follower_id": "a", "since": T, "tags": {8, 0}},
               {"followee_id": "b", "follower_id": "c", "since": T + 1},
               {"followee_id": "b", "follower_id": "f", "since": T}]
    live[0]["tags"] = {0, 8}
    session = FakeSession(pk, {"live": live, "rebuilt": rebuilt})
    report = Report()
    compare_table(session, "live", "rebuilt", "followers", {"followee_id", "follower_id", "since",
                                                            "tags"}, report)
    assert session.queries[-1] == "SELECT followee_id, follower_id, since, tags FROM rebuilt.followers"
    assert report.rows == {"followers": 3}
    assert [d.line() for d in report.differences] == [
        f"row followers b/c: since: live {T} vs rebuilt {T + 1}",
        "row followers b/e: in the live view only",
        "row followers b/f: in the rebuilt view only",
    ]


# ------------------------------------------------------------------------------ point diffs


def point(payload, vector):
    return SimpleNamespace(payload=payload, vector=vector)


def test_point_diff_compares_the_written_payload_keys_only():
    a = point({"published": True, "tags": ("x", "y"), "owner": "clip"}, [0.5, 1.0])
    b = point({"published": True, "tags": ["x", "y"], "owner": "someone"}, [0.5, 1.0])
    assert _point_diff(a, b, {"published", "tags"}, with_vectors=True) == ""
    c = point({"published": False, "tags": ["x", "y"]}, [0.5, 1.0])
    assert _point_diff(a, c, {"published", "tags", "absent"}, with_vectors=False) == (
        "payload published: live True vs rebuilt False")


def test_point_diff_compares_every_named_vector_element_for_element():
    a = point({}, {"image": np.array([0.1, 0.2], dtype=np.float32), "text": [1.0]})
    assert _point_diff(a, point({}, {"image": [np.float32(0.1), np.float32(0.2)],
                                     "text": [1.0]}), set(), True) == ""
    b = point({}, {"image": np.array([0.1, 0.2000001], dtype=np.float32)})
    assert _point_diff(a, b, set(), True) == "vector image differs; vector text differs"
    assert _point_diff(a, b, set(), False) == ""
    assert _point_diff(point({}, [1.0, 2.0]), point({}, [1.0, 2.5]), set(), True) == (
        "vector (unnamed) differs")
    assert _point_diff(point({"k": 1}, None), point({"k": 2}, [1.0]), {"k"}, True) == (
        "payload k: live 1 vs rebuilt 2; vector (unnamed) differs")


# --------------------------------------------------------------------------- the report


def test_difference_line_and_report_as_dict():
    d = Difference("row", "posts", "p1", "status: live 'PUBLISHED' vs rebuilt 'BLOCKED'")
    assert d.line() == "row posts p1: status: live 'PUBLISHED' vs rebuilt 'BLOCKED'"
    report = Report(events={"posts-published": 3}, rows={"posts": 2}, points={"content": 1},
                    differences=[d, Difference("point", "content", "p2", "vector differs")])
    assert report.as_dict() == {
        "events_compared": {"posts-published": 3}, "rows_compared": {"posts": 2},
        "points_compared": {"content": 1}, "differences": 2,
        "difference_list": [d.line(), "point content p2: vector differs"], "notes": [], "erased_subject_differences": 0,
        "live_divergence": 0, "live_divergence_by_output": {}, "live_divergence_examples": [],
        "rebuilt_twice_compared": {}}
    assert Report().as_dict()["differences"] == 0 and Report().as_dict()["difference_list"] == []
    noted = Report(notes=["content: not compared"])
    assert noted.as_dict()["notes"] == ["content: not compared"] and noted.as_dict()["differences"] == 0


# ------------------------------------------------------------------------------- Written


def test_written_records_tables_columns_points_and_payload_keys():
    w = Written()
    w.add([Upsert("posts", {"post_id": "p1", "status": "PUBLISHED"}, 1),
           Upsert("posts", {"post_id": "p2", "status_reasons": []}, 1),
           Delete("following", {"follower_id": "a", "followee_id": "b"}, 2),
           VectorUpsert("content", "p1", [0.0], {"creator_id": "u", "kind": "IMAGE"}),
           VectorSetPayload("content", ("p2", "p3"), {"published": True}),
           VectorDelete("faces", ("f1",)),
           Emit("uploads", {}), StateSet("gates", "p1", {})])  # not views: ignored
    w.add([VectorUpsert("content", "p4", [1.0])])
    assert w.columns == {"posts": {"post_id", "status", "status_reasons"},
                         "following": {"follower_id", "followee_id"}}
    assert w.points == {"content": {"p1", "p2", "p3", "p4"}, "faces": {"f1"}}
    assert w.payload_keys == {"content": {"creator_id", "kind", "published"}}
    assert w.vectors == {"content"}  # only collections whose vectors the replay wrote


@pytest.mark.parametrize("effects, vectors", [
    ([VectorSetPayload("content", ("p1",), {"published": True})], set()),
    ([VectorDelete("content", ("p1",))], set()),
])
def test_payload_marks_and_deletes_do_not_make_vectors_compared(effects, vectors):
    w = Written()
    w.add(effects)
    assert w.vectors == vectors and w.points == {"content": {"p1"}}


def test_divergence_of_order_sensitive_agents_is_split_off():
    from replay.rebuild import Written
    from replay.verify import _split_divergence
    from streams.contracts.effects import Upsert

    written = Written()
    written.add([Upsert("user_feeds", {"user_id": "u"}, 1)], agent="feed_ranker")
    written.add([Upsert("posts", {"post_id": "p"}, 1)], agent="materializer")
    report = Report(differences=[Difference("row", "user_feeds", "u", "items differ"),
                                 Difference("event", "feed-updates", "e1", "fields differ"),
                                 Difference("row", "posts", "p", "title differs")])
    _split_divergence(report, ["feed_ranker"], written)
    assert [d.where for d in report.differences] == ["posts"]
    assert [d.where for d in report.divergence] == ["user_feeds", "feed-updates"]
    out = report.as_dict()
    assert out["live_divergence"] == 2 and out["differences"] == 1
    assert out["live_divergence_by_output"] == {"row user_feeds": 1, "event feed-updates": 1}



def test_a_topic_shared_with_an_order_insensitive_agent_is_split_by_event():
    # copyright-verdicts: copyright_rescan (order-sensitive) and copyright_guard (not) both emit
    from replay.rebuild import Written
    from replay.verify import _split_divergence

    report = Report(differences=[Difference("event", "copyright-verdicts", "late", "fields differ"),
                                 Difference("event", "copyright-verdicts", "gate", "fields differ"),
                                 Difference("event", "copyright-verdicts", "live-only", "missing")])
    by = {"copyright-verdicts": {"late": "copyright_rescan", "gate": "copyright_guard"}}
    _split_divergence(report, ["copyright_rescan"], Written(), by, ["copyright_guard"])
    assert [d.key for d in report.divergence] == ["late"]
    assert [d.key for d in report.differences] == ["gate", "live-only"]


def test_a_live_only_event_on_a_shared_topic_is_attributed_by_its_producer():
    # feed-updates: feed_ranker (order-sensitive) emits events, the eraser only tombstones there
    from replay.rebuild import Written
    from replay.verify import _split_divergence

    report = Report(differences=[
        Difference("event", "feed-updates", "live-only", "on the live topic, not emitted by the replay",
                   producer="feed_ranker"),
        Difference("event", "feed-updates", "unknown", "on the live topic, not emitted by the replay")])
    _split_divergence(report, ["feed_ranker"], Written(), {}, ["eraser"])
    assert [d.key for d in report.divergence] == ["live-only"]
    assert [d.key for d in report.differences] == ["unknown"]

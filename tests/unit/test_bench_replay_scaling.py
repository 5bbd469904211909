"""The replication that scales a history for `pulse bench replay` (streams/bench/replay.py): new
ids per copy, no collisions, every copy valid against the schemas and closed under references."""
from __future__ import annotations

import re

import pytest

from streams.bench.ranking import TOPIC_OF
from streams.bench.replay import ID_FIELDS, TOPICS, best_of, replica, scaled_history
from streams.contracts.codec import AvroCodec
from streams.contracts.schemas import default_catalog
from streams.contracts.topics import topic_spec
from streams.demo.sources.stackexchange import (ANONYMOUS_USER_ID, SAMPLE_DUMP,
                                                 iter_events_in_time_order, load_dump)


@pytest.fixture(scope="module")
def history() -> list[tuple[str, dict]]:
    """The first 3,000 events of the shipped Stack Exchange sample, in time order."""
    events = list(iter_events_in_time_order(load_dump(SAMPLE_DUMP)))
    return events[:3_000]


def test_id_fields_are_every_id_field_of_the_schemas():
    # a schema that gains an id field must be renamed per copy too, or copies would share it
    for topic in TOPICS:
        schema = default_catalog().current(topic_spec(topic).schema).schema
        ids = {f["name"] for f in schema["fields"] if f["name"].endswith("_id")} - {"event_id"}
        assert set(ID_FIELDS[topic]) == ids, topic


def test_copy_zero_is_the_original_and_others_rename_every_id():
    rec = {"event_id": "8d3a3c2e-6a0b-5a8e-9f0e-1d2c3b4a5f60", "event_time": 5, "producer": "x",
           "user_id": "se-u1", "post_id": "se-p2", "type": "COMMENT", "comment_id": "se-c3"}
    assert replica("interactions", rec, 0) is rec
    r = replica("interactions", rec, 7)
    assert (r["user_id"], r["post_id"], r["comment_id"]) == ("r7-se-u1", "r7-se-p2", "r7-se-c3")
    assert r["event_id"] != rec["event_id"] and r["event_time"] == 5 and rec["user_id"] == "se-u1"
    assert replica("interactions", rec, 7) == r  # deterministic
    assert replica("uploads", {"event_id": rec["event_id"], "post_id": "se-p1", "creator_id": "se-u1",
                               "parent_post_id": None}, 2)["parent_post_id"] is None


def test_scaled_history_has_exactly_n_events_unique_event_ids_and_valid_records(history):
    n = 3 * len(history) + 123  # four copies, the last cut short
    out = list(scaled_history(history, n))
    assert len(out) == n
    assert len({rec["event_id"] for _, rec in out}) == n
    # each original event followed by its three copies, on the same topic
    assert [t for t, _ in out[:40]] == [TOPIC_OF[e] for e, _ in history[:10] for _ in range(4)]
    codecs = {t: AvroCodec(default_catalog(), topic_spec(t).schema) for t in TOPICS}
    for topic, rec in out:
        codecs[topic].validate(rec)
    times = [rec["event_time"] for _, rec in out]
    assert times == sorted(times)  # copies interleaved in event-time order


def _copy_of(value: str) -> int:
    m = re.match(r"r(\d+)-", value)
    return int(m.group(1)) if m else 0


def test_copies_are_independent_populations(history):
    """No user, post or comment id is shared between copies, and every user or post a copy's
    event refers to was created earlier in the same copy, as in the original history."""
    out = list(scaled_history(history, 4 * len(history)))
    created: dict[str, int] = {}   # user or post id -> the copy that created it
    comments: set[str] = set()
    for topic, rec in out:
        copy = _copy_of(rec[ID_FIELDS[topic][0]])
        new = {"signups": "user_id", "uploads": "post_id"}.get(topic)
        if new:
            assert rec[new] not in created
            created[rec[new]] = copy
        for field in ID_FIELDS[topic]:
            ref = rec.get(field)
            if field == new or ref is None or ref.endswith(ANONYMOUS_USER_ID):
                continue
            if field == "comment_id":
                assert ref not in comments and _copy_of(ref) == copy
                comments.add(ref)
                continue
            assert created.get(ref) == copy, (topic, field, ref)
    assert set(created.values()) == {0, 1, 2, 3}


def test_best_of_reports_the_faster_run_with_every_runs_seconds_and_keeps_a_disagreement_visible():
    a = {"events": 10, "seconds": 2.0, "events_per_s": 5, "by_topic": {"t": 10}}
    b = {"events": 10, "seconds": 1.0, "events_per_s": 10, "by_topic": {"t": 10}}
    best = best_of([a, b])
    assert (best["seconds"], best["runs_seconds"], "by_topic_runs" in best) == (1.0, [2.0, 1.0], False)
    assert "runs_seconds" not in b  # the runs themselves are left as they were
    odd = dict(a, by_topic={"t": 9}, events_per_s=50)
    assert best_of([odd, b])["by_topic_runs"] == [{"t": 9}, {"t": 10}]

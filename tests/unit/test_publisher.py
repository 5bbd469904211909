"""The publish gate (agents.publisher): every rule of its docstring through ``process`` with a
dict state, and its order independence through the engine (the same events folded in every
arrival order give the same state, ``posts`` row and ``posts-published`` bytes)."""
from __future__ import annotations

import itertools
import uuid

import pytest

from agents.publisher import SPEC, GateJoin, load
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, StateSet, Upsert, VectorSetPayload
from streams.contracts.schemas import default_catalog
from tests.unit.agent_harness import DictState, Harness, call, full_record, settings_for

T0 = 1_700_000_000_000


def upload(post="p1", at=T0, content_type="FOREVER"):
    return {"event_id": str(uuid.uuid4()), "event_time": at, "producer": "app", "post_id": post,
            "creator_id": "u1", "kind": "IMAGE", "content_type": content_type, "media_uri": None,
            "caption": "c", "title": None, "hashtags": ["cats"], "duration_ms": None,
            "size_bytes": None, "width": None, "height": None, "parent_post_id": None}


def mod(action, post="p1", at=T0 + 10, tier="FAST", comment_id=None):
    return {"event_id": str(uuid.uuid4()), "event_time": at, "post_id": post, "action": action,
            "tier": tier, "reasons": [f"mod {action.lower()}"], "comment_id": comment_id}


def cr(action, post="p1", at=T0 + 20):
    return {"event_id": str(uuid.uuid4()), "event_time": at, "post_id": post, "action": action,
            "reasons": [f"copyright {action.lower()}"]}


class Join:
    """The publisher's ``process`` over a dict ``gates`` table, with ``GateJoin(gates)`` as its
    models (what ``load`` returns for ``PULSE_GATES``)."""

    def __init__(self, gates, state: DictState | None = None):
        self.models = GateJoin(gates)
        self.state = state or DictState("gates")

    @property
    def table(self) -> dict:
        return self.state.tables["gates"]

    def run(self, *events):
        """Each event in turn, its state change applied; the other effects, in order."""
        out = []
        for topic, record in events:
            out.extend(self.state.apply(call(SPEC, self.state, topic, record, self.models)))
        return out


def run(join, *events):
    return join.run(*events)


def published(effects):
    return [e.record for e in effects if isinstance(e, Emit) and e.topic == "posts-published"]


def statuses(effects):
    return [e.row["status"] for e in effects if isinstance(e, Upsert) and e.table == "posts"]


@pytest.mark.parametrize("order", [0, 1, 2])
def test_published_once_all_gates_allow_in_any_order(order):
    events = [("uploads", upload()), ("moderation-verdicts", mod("ALLOW")),
              ("copyright-verdicts", cr("ALLOW"))]
    events = events[order:] + events[:order]
    join = Join(("moderation", "copyright"))
    effects = run(join, *events)
    (pub,) = published(effects)
    assert pub["distribution"] == "FULL" and pub["post_id"] == "p1"
    assert statuses(effects)[-1] == "PUBLISHED"
    # the event is valid against the PostPublished contract
    AvroCodec(default_catalog(), "PostPublished").encode(pub)


def test_waits_for_every_enabled_gate():
    join = Join(("moderation", "copyright"))
    effects = run(join, ("uploads", upload()), ("moderation-verdicts", mod("ALLOW")))
    assert published(effects) == [] and statuses(effects)[-1] == "PENDING"


def test_only_enabled_gates_count():
    join = Join(("copyright",))
    effects = run(join, ("uploads", upload()), ("copyright-verdicts", cr("ALLOW")))
    (pub,) = published(effects)
    assert pub["moderation_event_id"] is None
    assert published(run(Join(()), ("uploads", upload(post="p2"))))


def test_block_wins_and_reasons_are_recorded():
    join = Join(("moderation", "copyright"))
    effects = run(join, ("uploads", upload()), ("copyright-verdicts", cr("BLOCK")),
                  ("moderation-verdicts", mod("ALLOW")))
    assert published(effects) == []
    last = [e for e in effects if isinstance(e, Upsert)][-1]
    assert last.row["status"] == "BLOCKED"
    assert "copyright: copyright block" in last.row["status_reasons"]


def test_restrict_publishes_restricted():
    join = Join(("moderation", "copyright"))
    effects = run(join, ("uploads", upload(content_type="FLASH")), ("moderation-verdicts", mod("RESTRICT")),
                  ("copyright-verdicts", cr("ALLOW")))
    (pub,) = published(effects)
    assert pub["distribution"] == "RESTRICTED"
    assert (pub["expires_at"] - pub["uploaded_at"]).total_seconds() == 24 * 3600


def test_review_waits_for_the_human_decision_which_wins_over_later_automatic_verdicts():
    join = Join(("moderation", "copyright"))
    effects = run(join, ("uploads", upload()), ("copyright-verdicts", cr("ALLOW")),
                  ("moderation-verdicts", mod("REVIEW")))
    assert published(effects) == [] and statuses(effects)[-1] == "IN_REVIEW"
    human = mod("ALLOW", at=T0 + 5, tier="HUMAN")  # even with an earlier time, HUMAN wins
    effects = run(join, ("moderation-verdicts", human))
    (pub,) = published(effects)
    assert pub["moderation_event_id"] == human["event_id"]
    # a late automatic verdict changes nothing
    assert run(join, ("moderation-verdicts", mod("BLOCK", at=T0 + 99))) == []


def test_human_block_after_review():
    join = Join(("moderation",))
    run(join, ("uploads", upload()), ("moderation-verdicts", mod("REVIEW")))
    effects = run(join, ("moderation-verdicts", mod("BLOCK", tier="HUMAN")))
    assert published(effects) == [] and statuses(effects)[-1] == "BLOCKED"


def test_duplicates_and_comment_verdicts_change_nothing_and_publish_once():
    join = Join(("moderation",))
    table = join.table
    up, ok = upload(), mod("ALLOW")
    assert len(published(run(join, ("uploads", up), ("moderation-verdicts", ok)))) == 1
    assert run(join, ("moderation-verdicts", ok), ("uploads", up)) == []
    assert run(join, ("moderation-verdicts", mod("BLOCK", comment_id="c1"))) == []
    # a fresh table (state lost) re-emits the same event id: downstream de-duplicates by it
    again = published(run(Join(("moderation",)), ("uploads", up), ("moderation-verdicts", ok)))
    assert again[0]["event_id"] == table["p1"]["published_event_id"]


def test_enrichment_rides_along_when_it_came_first():
    join = Join(("moderation",))
    enr = {"event_id": str(uuid.uuid4()), "event_time": T0 + 1, "post_id": "p1",
           "categories": {"pets": 0.9}, "quality_score": 0.7}
    (pub,) = published(run(join, ("content-enriched", enr), ("uploads", upload()),
                           ("moderation-verdicts", mod("ALLOW"))))
    assert pub["categories"] == {"pets": 0.9} and pub["enrichment_event_id"] == enr["event_id"]


def test_a_bad_event_raises_for_the_runtime_to_dead_letter():
    join = Join(("moderation",))
    with pytest.raises(KeyError):
        join.run(("uploads", {"post_id": "p1", "event_id": "e", "event_time": T0}))
    assert join.table == {}


def test_a_human_copyright_decision_resolves_a_copyright_review():
    join = Join(("moderation", "copyright"))
    effects = run(join, ("uploads", upload()), ("moderation-verdicts", mod("ALLOW")),
                  ("copyright-verdicts", cr("REVIEW")))
    assert statuses(effects)[-1] == "IN_REVIEW"
    human = dict(cr("ALLOW", at=T0 + 1), model="human-review")
    (pub,) = published(run(join, ("copyright-verdicts", human)))
    assert pub["copyright_event_id"] == human["event_id"]


def test_enrichment_gate_waits_for_clip_ai_but_never_delays_a_block():
    join = Join(("moderation", "enrichment"))
    effects = run(join, ("uploads", upload()), ("moderation-verdicts", mod("ALLOW")))
    assert published(effects) == [] and statuses(effects)[-1] == "PENDING"
    enr = {"event_id": str(uuid.uuid4()), "event_time": T0 + 50, "post_id": "p1",
           "categories": {"science": 0.8}, "quality_score": 0.6}
    (pub,) = published(run(join, ("content-enriched", enr)))
    assert pub["categories"] == {"science": 0.8} and pub["cause_event_id"] != enr["event_id"]
    blocked = Join(("moderation", "enrichment"))
    effects = run(blocked, ("uploads", upload(post="p2")), ("moderation-verdicts", mod("BLOCK", post="p2")))
    assert statuses(effects)[-1] == "BLOCKED"


def test_search_payload_is_marked_once_the_post_is_enriched():
    join = Join(("moderation", "enrichment"))
    enr = {"event_id": str(uuid.uuid4()), "event_time": T0 + 50, "post_id": "p1",
           "categories": {}, "quality_score": None}
    effects = run(join, ("uploads", upload()), ("moderation-verdicts", mod("BLOCK")))
    assert not [e for e in effects if isinstance(e, VectorSetPayload)]  # no point to mark yet
    (mark,) = [e for e in run(join, ("content-enriched", enr)) if isinstance(e, VectorSetPayload)]
    assert mark.ids == ("p1",) and mark.payload["published"] is False
    assert mark.payload["moderation_action"] == "BLOCK"


def test_status_writes_get_strictly_increasing_timestamps_whatever_the_arrival_order():
    # copyright's verdict (latest event time) arrives before the upload and moderation's REVIEW:
    # the later IN_REVIEW write must not tie with the earlier PENDING one (Cassandra would keep
    # the greater value, PENDING)
    join = Join(("moderation", "copyright"))
    effects = run(join, ("copyright-verdicts", cr("ALLOW", at=T0 + 20)), ("uploads", upload()),
                  ("moderation-verdicts", mod("REVIEW", at=T0 + 10)))
    writes = [(e.timestamp_us, e.row["status"]) for e in effects if isinstance(e, Upsert)]
    assert [w[1] for w in writes] == ["PENDING", "IN_REVIEW"]
    assert writes[0][0] < writes[1][0]


def test_process_returns_the_new_post_state_and_nothing_for_a_no_op():
    join = GateJoin(("moderation",))
    state = DictState("gates")
    up = upload()
    effects = call(SPEC, state, "uploads", up, join)
    (change,) = [e for e in effects if isinstance(e, StateSet)]
    assert (change.table, change.key, change.value["upload"]["event_id"]) == ("gates", "p1",
                                                                               up["event_id"])
    assert change.value["status"] == "PENDING"
    state.apply(effects)
    assert call(SPEC, state, "uploads", up, join) == []  # a duplicate changes nothing


def test_load_follows_the_gates_setting(tmp_path):
    assert load(settings_for(tmp_path)).gates == ("moderation", "copyright", "enrichment")
    j = load(settings_for(tmp_path, PULSE_GATES="copyright"))
    assert (j.gates, j.verdict_gates) == (("copyright",), ("copyright",))
    assert SPEC.tables == ("gates",) and SPEC.load is load


# -- order independence, through the engine ----------------------------------------------------


def encoded_events(human_at: int | None, review_at: int = T0 + 10):
    """The events of one post as the publisher's sources carry them: an upload, moderation ALLOW
    (or, with ``human_at``, moderation REVIEW and then a HUMAN ALLOW at ``human_at``), copyright
    ALLOW and CLIP AI's enrichment. ``[(topic, record)]``; a topic's events in offset order."""
    post = "p1"
    ev = [("uploads", full_record("uploads", **dict(upload(post), hashtags=["cats", "dogs"]))),
          ("copyright-verdicts", full_record(
              "copyright-verdicts", event_id=str(uuid.uuid4()), event_time=T0 + 20,
              producer="copyright_guard", post_id=post, creator_id="u1", action="ALLOW",
              model="pdq", model_version="1", reasons=[])),
          ("content-enriched", full_record(
              "content-enriched", event_id=str(uuid.uuid4()), event_time=T0 + 30,
              producer="clip_ai", post_id=post, creator_id="u1", model="clip",
              model_version="1", categories={"pets": 0.9, "science": 0.1}, quality_score=0.7))]
    first = "REVIEW" if human_at is not None else "ALLOW"
    ev.append(("moderation-verdicts", full_record(
        "moderation-verdicts", event_id=str(uuid.uuid4()), event_time=review_at,
        producer="content_guard", post_id=post, author_id="u1", action=first, tier="FAST",
        model="fast", model_version="1", reasons=[f"fast {first.lower()}"])))
    if human_at is not None:
        ev.append(("moderation-verdicts", full_record(
            "moderation-verdicts", event_id=str(uuid.uuid4()), event_time=human_at,
            producer="content_guard", post_id=post, author_id="u1", action="ALLOW",
            tier="HUMAN", model="human-review", model_version="mod-7", reasons=["looks fine"])))
    return ev


def arrival_orders(events):
    """Every permutation of ``events`` in which each topic's events keep their offset order (a
    HUMAN decision after the REVIEW it resolves)."""
    for order in itertools.permutations(range(len(events))):
        seen = {}
        ok = True
        for i in order:
            topic = events[i][0]
            if seen.get(topic, -1) > i:
                ok = False
                break
            seen[topic] = i
        if ok:
            yield order


def fold(events, order, tmp_path, batched: bool):
    """Run the events in ``order`` through a fresh publisher runner (one batch, or one batch per
    event); the final gates state, last ``posts`` write, last search mark and published bytes."""
    h = Harness(SPEC, tmp_path)
    offsets = {}
    messages = []
    for i in order:
        topic, record = events[i]
        messages.append(h.message(topic, record, offset=offsets.setdefault(topic, 0)))
        offsets[topic] += 1
    outs = [h.run(messages)] if batched else [h.run([m]) for m in messages]
    views = [v for out in outs for v in out.views]
    assert not any(out.dead_letters for out in outs)
    posts = [(v.row, v.timestamp_us) for v in views if isinstance(v, Upsert) and v.table == "posts"]
    marks = [v.payload for v in views if isinstance(v, VectorSetPayload)]
    published_bytes = [e.value for out in outs for e in out.emits if e.topic == "posts-published"]
    stamps = [ts for _, ts in posts]
    assert stamps == sorted(set(stamps))  # strictly increasing within one arrival order
    return (h.table("gates"), posts[-1], marks[-1], published_bytes,
            dict(h.table("__positions__")))


@pytest.mark.parametrize("human_at, review_at", [
    (None, T0 + 10), (T0 + 50, T0 + 10), (T0 + 5, T0 + 10), (T0 + 35, T0 + 40)], ids=[
    "all-allow", "review-then-human", "human-stamped-before-the-review",
    "human-stamped-before-the-latest-review"])
def test_every_arrival_order_gives_the_same_state_status_and_published_bytes(human_at, review_at,
                                                                             tmp_path):
    # (a HUMAN decision is made after its review task, but its clock may lag the REVIEW's)
    events = encoded_events(human_at, review_at)
    orders = list(arrival_orders(events))
    assert len(orders) == (24 if human_at is None else 60)
    results = [fold(events, order, tmp_path, batched=n % 2 == 0) for n, order in enumerate(orders)]
    first = results[0]
    for order, result in zip(orders, results):
        assert result == first, [events[i][0] for i in order]
    gates, (row, ts), mark, (published_value,), _ = first
    post = gates["p1"]
    assert post["status"] == "PUBLISHED" and row["status"] == "PUBLISHED"
    n = len(events)
    latest = max(r["event_time"] for _, r in events)
    assert post["folded"] == n and ts == post["status_ts"] == latest * 1000 + n
    assert mark == {"published": True, "gate_status": "PUBLISHED", "moderation_action": "ALLOW",
                    "distribution": "FULL"}
    pub = AvroCodec(default_catalog(), "PostPublished").decode(published_value)
    moderation = [r for t, r in events if t == "moderation-verdicts"][-1]
    assert pub["moderation_event_id"] == moderation["event_id"]
    assert pub["categories"] == {"pets": 0.9, "science": 0.1} and pub["hashtags"] == ["cats", "dogs"]
    assert post["published_event_id"] == pub["event_id"]


def test_a_block_after_publication_takes_the_post_down_once():
    join = Join(("moderation", "copyright"))
    effects = run(join, ("uploads", upload()), ("moderation-verdicts", mod("ALLOW")),
                  ("copyright-verdicts", cr("ALLOW")))
    assert len(published(effects)) == 1
    block = mod("BLOCK", at=T0 + 500, tier="HUMAN")
    effects = run(join, ("moderation-verdicts", block))
    downs = [e.record for e in effects if isinstance(e, Emit) and e.topic == "takedowns"]
    assert len(downs) == 1 and downs[0]["cause_event_id"] == block["event_id"]
    assert downs[0]["gate"] == "moderation" and downs[0]["reasons"] == ["mod block"]
    assert statuses(effects)[-1] == "TAKEN_DOWN"
    rows = [e for e in effects if isinstance(e, Upsert) and e.table == "takedowns"]
    assert [r.row["post_id"] for r in rows] == ["p1"]
    # a re-delivered decision or a later verdict changes nothing more: taken down once
    assert not [e for e in run(join, ("moderation-verdicts", block),
                               ("copyright-verdicts", cr("ALLOW", at=T0 + 600)))
                if isinstance(e, Emit)]
    # the takedown event's bytes encode against the catalog's schema
    codec = AvroCodec(default_catalog(), "Takedown")
    assert codec.decode(codec.encode(downs[0]))["post_id"] == "p1"

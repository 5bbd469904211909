"""The publish gate's join (agents.publisher.GateJoin) on plain dicts: every rule of its docstring."""
from __future__ import annotations

import uuid

import pytest

from agents.publisher import GateJoin
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, Upsert
from streams.contracts.schemas import default_catalog

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


def run(join, *events):
    out = []
    for topic, record in events:
        (res,) = join.process_batch([(topic, record)])
        assert not isinstance(res, BaseException), res
        out.extend(res)
    return out


def published(effects):
    return [e.record for e in effects if isinstance(e, Emit) and e.topic == "posts-published"]


def statuses(effects):
    return [e.row["status"] for e in effects if isinstance(e, Upsert)]


@pytest.mark.parametrize("order", [0, 1, 2])
def test_published_once_all_gates_allow_in_any_order(order):
    events = [("uploads", upload()), ("moderation-verdicts", mod("ALLOW")),
              ("copyright-verdicts", cr("ALLOW"))]
    events = events[order:] + events[:order]
    join = GateJoin(("moderation", "copyright"), {})
    effects = run(join, *events)
    (pub,) = published(effects)
    assert pub["distribution"] == "FULL" and pub["post_id"] == "p1"
    assert statuses(effects)[-1] == "PUBLISHED"
    # the event is valid against the PostPublished contract
    AvroCodec(default_catalog(), "PostPublished").encode(pub)


def test_waits_for_every_enabled_gate():
    join = GateJoin(("moderation", "copyright"), {})
    effects = run(join, ("uploads", upload()), ("moderation-verdicts", mod("ALLOW")))
    assert published(effects) == [] and statuses(effects)[-1] == "PENDING"


def test_only_enabled_gates_count():
    join = GateJoin(("copyright",), {})
    effects = run(join, ("uploads", upload()), ("copyright-verdicts", cr("ALLOW")))
    (pub,) = published(effects)
    assert pub["moderation_event_id"] is None
    assert published(run(GateJoin((), {}), ("uploads", upload(post="p2"))))


def test_block_wins_and_reasons_are_recorded():
    join = GateJoin(("moderation", "copyright"), {})
    effects = run(join, ("uploads", upload()), ("copyright-verdicts", cr("BLOCK")),
                  ("moderation-verdicts", mod("ALLOW")))
    assert published(effects) == []
    last = [e for e in effects if isinstance(e, Upsert)][-1]
    assert last.row["status"] == "BLOCKED"
    assert "copyright: copyright block" in last.row["status_reasons"]


def test_restrict_publishes_restricted():
    join = GateJoin(("moderation", "copyright"), {})
    effects = run(join, ("uploads", upload(content_type="FLASH")), ("moderation-verdicts", mod("RESTRICT")),
                  ("copyright-verdicts", cr("ALLOW")))
    (pub,) = published(effects)
    assert pub["distribution"] == "RESTRICTED"
    assert (pub["expires_at"] - pub["uploaded_at"]).total_seconds() == 24 * 3600


def test_review_waits_for_the_human_decision_which_wins_over_later_automatic_verdicts():
    join = GateJoin(("moderation", "copyright"), {})
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
    join = GateJoin(("moderation",), {})
    run(join, ("uploads", upload()), ("moderation-verdicts", mod("REVIEW")))
    effects = run(join, ("moderation-verdicts", mod("BLOCK", tier="HUMAN")))
    assert published(effects) == [] and statuses(effects)[-1] == "BLOCKED"


def test_duplicates_and_comment_verdicts_change_nothing_and_publish_once():
    table: dict = {}
    join = GateJoin(("moderation",), table)
    up, ok = upload(), mod("ALLOW")
    assert len(published(run(join, ("uploads", up), ("moderation-verdicts", ok)))) == 1
    assert run(join, ("moderation-verdicts", ok), ("uploads", up)) == []
    assert run(join, ("moderation-verdicts", mod("BLOCK", comment_id="c1"))) == []
    # a fresh table (state lost) re-emits the same event id: downstream de-duplicates by it
    again = published(run(GateJoin(("moderation",), {}), ("uploads", up), ("moderation-verdicts", ok)))
    assert again[0]["event_id"] == table["p1"]["published_event_id"]


def test_enrichment_rides_along_when_it_came_first():
    join = GateJoin(("moderation",), {})
    enr = {"event_id": str(uuid.uuid4()), "event_time": T0 + 1, "post_id": "p1",
           "categories": {"pets": 0.9}, "quality_score": 0.7}
    (pub,) = published(run(join, ("content-enriched", enr), ("uploads", upload()),
                           ("moderation-verdicts", mod("ALLOW"))))
    assert pub["categories"] == {"pets": 0.9} and pub["enrichment_event_id"] == enr["event_id"]


def test_a_bad_event_is_returned_as_its_exception():
    join = GateJoin(("moderation",), {})
    (res,) = join.process_batch([("uploads", {"post_id": "p1"})])
    assert isinstance(res, KeyError)


def test_a_human_copyright_decision_resolves_a_copyright_review():
    join = GateJoin(("moderation", "copyright"), {})
    effects = run(join, ("uploads", upload()), ("moderation-verdicts", mod("ALLOW")),
                  ("copyright-verdicts", cr("REVIEW")))
    assert statuses(effects)[-1] == "IN_REVIEW"
    human = dict(cr("ALLOW", at=T0 + 1), model="human-review")
    (pub,) = published(run(join, ("copyright-verdicts", human)))
    assert pub["copyright_event_id"] == human["event_id"]


def test_enrichment_gate_waits_for_clip_ai_but_never_delays_a_block():
    join = GateJoin(("moderation", "enrichment"), {})
    effects = run(join, ("uploads", upload()), ("moderation-verdicts", mod("ALLOW")))
    assert published(effects) == [] and statuses(effects)[-1] == "PENDING"
    enr = {"event_id": str(uuid.uuid4()), "event_time": T0 + 50, "post_id": "p1",
           "categories": {"science": 0.8}, "quality_score": 0.6}
    (pub,) = published(run(join, ("content-enriched", enr)))
    assert pub["categories"] == {"science": 0.8} and pub["cause_event_id"] != enr["event_id"]
    blocked = GateJoin(("moderation", "enrichment"), {})
    effects = run(blocked, ("uploads", upload(post="p2")), ("moderation-verdicts", mod("BLOCK", post="p2")))
    assert statuses(effects)[-1] == "BLOCKED"


def test_search_payload_is_marked_once_the_post_is_enriched():
    from streams.contracts.effects import VectorSetPayload

    join = GateJoin(("moderation", "enrichment"), {})
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
    join = GateJoin(("moderation", "copyright"), {})
    effects = run(join, ("copyright-verdicts", cr("ALLOW", at=T0 + 20)), ("uploads", upload()),
                  ("moderation-verdicts", mod("REVIEW", at=T0 + 10)))
    writes = [(e.timestamp_us, e.row["status"]) for e in effects if isinstance(e, Upsert)]
    assert [w[1] for w in writes] == ["PENDING", "IN_REVIEW"]
    assert writes[0][0] < writes[1][0]

"""The publish gate on the real broker: a worker joins uploads and the gates' verdicts in its
changelogged table, publishes allowed posts once, holds blocked and in-review ones, and a
restarted worker (state restored from the changelog) publishes a post when the human decision
arrives."""
from __future__ import annotations

import uuid

from replay.reader import read_topic
from streams.stores.cassandra import connect
from streams.producer import Publisher

from tests.integration.conftest import unique, wait_until
from tests.integration.test_publish import upload_line
from tests.integration.test_worker_views import caught_up

T0 = 1_560_000_000_000
SOURCES = ["uploads", "moderation-verdicts", "copyright-verdicts", "content-enriched"]


def moderation(post, action, at, tier="FAST"):
    return {"event_id": str(uuid.uuid4()), "event_time": at, "producer": "test", "cause_event_id": None,
            "model": "test", "model_version": "0", "post_id": post, "author_id": "a", "comment_id": None,
            "action": action, "tier": tier, "scores": {"hate": 0.1}, "reasons": [f"said {action}"],
            "latency_ms": 1, "review_task_id": None}


def copyright_(post, action, at):
    return {"event_id": str(uuid.uuid4()), "event_time": at, "producer": "test", "cause_event_id": None,
            "model": "test", "model_version": "0", "post_id": post, "creator_id": "a", "action": action,
            "matches": [], "reasons": [f"copyright {action}"], "latency_ms": 1, "modality": "IMAGE"}


def status_of(settings, posts):
    cluster, s = connect(settings, settings.cassandra_keyspace)
    try:
        return {p: s.execute("SELECT status FROM posts WHERE post_id = %s", (p,)).one() for p in posts}
    finally:
        cluster.shutdown()


def published(settings, posts):
    return [r for _, r in read_topic(settings, "posts-published") if r["post_id"] in posts]


def test_gate_join_publishes_allowed_holds_blocked_and_review_survives_a_restart(pipeline, workers):
    app_id = unique("gate")
    c = unique("c")
    ok, restricted, blocked, review = (f"{c}-{n}" for n in ("ok", "restricted", "blocked", "review"))
    with Publisher(pipeline) as pub:
        for i, p in enumerate((ok, restricted, blocked, review)):
            pub.publish("uploads", upload_line(p, c, event_time=T0 + i))
        pub.publish("moderation-verdicts", moderation(ok, "ALLOW", T0 + 10))
        pub.publish("copyright-verdicts", copyright_(ok, "ALLOW", T0 + 11))
        pub.publish("copyright-verdicts", copyright_(ok, "ALLOW", T0 + 11))  # a re-delivery
        pub.publish("moderation-verdicts", moderation(restricted, "RESTRICT", T0 + 12))
        pub.publish("copyright-verdicts", copyright_(restricted, "ALLOW", T0 + 13))
        pub.publish("moderation-verdicts", moderation(blocked, "ALLOW", T0 + 14))
        pub.publish("copyright-verdicts", copyright_(blocked, "BLOCK", T0 + 15))
        pub.publish("moderation-verdicts", moderation(review, "REVIEW", T0 + 16))
        pub.publish("copyright-verdicts", copyright_(review, "ALLOW", T0 + 17))
    proc = workers.start(app_id, agents="publisher", PULSE_GATES="moderation,copyright")
    wait_until(lambda: caught_up(pipeline, app_id, SOURCES), 120, "the publisher to catch up",
               diagnose=lambda: workers.log(proc))
    wait_until(lambda: len(published(pipeline, {ok, restricted})) == 2, 30, "two posts published",
               diagnose=lambda: workers.log(proc))
    events = {r["post_id"]: r for r in published(pipeline, {ok, restricted, blocked, review})}
    assert set(events) == {ok, restricted}  # once each, despite the re-delivered verdict
    assert len(published(pipeline, {ok})) == 1
    assert events[ok]["distribution"] == "FULL" and events[restricted]["distribution"] == "RESTRICTED"
    st = status_of(pipeline, [ok, restricted, blocked, review])
    assert {p: r.status for p, r in st.items()} == {ok: "PUBLISHED", restricted: "RESTRICTED",
                                                    blocked: "BLOCKED", review: "IN_REVIEW"}

    # a new worker restores the table from its changelog; the human decision then publishes
    workers.stop_all()
    with Publisher(pipeline) as pub:
        pub.publish("moderation-verdicts", moderation(review, "ALLOW", T0 + 30, tier="HUMAN"))
    proc = workers.start(app_id, agents="publisher", PULSE_GATES="moderation,copyright")
    wait_until(lambda: published(pipeline, {review}), 120, "the reviewed post published",
               diagnose=lambda: workers.log(proc))
    assert len(published(pipeline, {ok, restricted, review})) == 3  # nothing published twice
    assert status_of(pipeline, [review])[review].status == "PUBLISHED"

"""content_guard's core (agents.content_guard.ContentGuard) with a scripted moderator: which
texts go to which tier, the verdict / review-task / view effects, and the human decision.
The real models are exercised in tests/unit/test_moderation_* and the integration test."""
from __future__ import annotations

import uuid

import pytest

from agents.content_guard import ContentGuard, upload_text
from agents.review_tasks import review_task_id, task_created_ms
from models.moderation import Verdict
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Delete, Emit, Upsert
from streams.contracts.schemas import default_catalog

T0 = 1_700_000_000_000


class ScriptedModerator:
    """Fast tier: ALLOW unless the text says 'unsure' (None) or 'hate' (BLOCK); heavy tier:
    REVIEW for 'unsure'. Records what each tier saw."""

    def __init__(self):
        self.fast_seen, self.heavy_seen, self.images = [], [], []

    def _v(self, action, tier, **kw):
        return Verdict(action=action, tier=tier, scores={"hate": 0.9 if action == "BLOCK" else 0.4},
                       reasons=[f"{tier} {action}"], model="m", model_version="1", latency_ms=1.0, **kw)

    def fast(self, texts):
        self.fast_seen.append(list(texts))
        return [None if "unsure" in t else self._v("BLOCK" if "hate" in t else "ALLOW", "FAST")
                for t in texts]

    def heavy(self, texts):
        self.heavy_seen.append(list(texts))
        return [self._v("REVIEW", "HEAVY") for _ in texts]

    def moderate_image(self, path):
        self.images.append(path)
        return self._v("ALLOW", "FAST")

    def moderate_video(self, path):
        return self._v("ALLOW", "FAST")

    def bad_media(self, reason, ms=0.0):
        return Verdict(action="BLOCK", tier="FAST", scores={}, reasons=[f"bad media: {reason}"],
                       model="m", model_version="1", latency_ms=ms, categories=["invalid_media"])


def upload(text, kind="TEXT", media_uri=None, post="p1"):
    return {"event_id": str(uuid.uuid4()), "event_time": T0, "producer": "app", "post_id": post,
            "creator_id": "u1", "kind": kind, "content_type": "FOREVER", "media_uri": media_uri,
            "caption": text, "title": None, "hashtags": ["tag"], "duration_ms": None,
            "size_bytes": None, "width": None, "height": None, "parent_post_id": None}


def comment(text, type_="COMMENT"):
    return {"event_id": str(uuid.uuid4()), "event_time": T0 + 5, "producer": "app", "user_id": "u2",
            "post_id": "p1", "type": type_, "dwell_ms": None, "comment_id": "c1",
            "comment_text": text, "report_reason": None, "surface": None}


def emits(effects, topic):
    return [e.record for e in effects if isinstance(e, Emit) and e.topic == topic]


def test_fast_decides_clear_texts_and_only_the_uncertain_go_to_heavy_in_one_batch():
    mod = ScriptedModerator()
    guard = ContentGuard(mod, 10**9)
    out = guard.process_batch([("uploads", upload("nice cat")), ("uploads", upload("unsure a")),
                               ("interactions", comment("hate you")), ("interactions", comment("x", "LIKE")),
                               ("uploads", upload("unsure b", post="p2"))])
    assert mod.heavy_seen == [["unsure a\n#tag", "unsure b\n#tag"]]
    assert len(mod.fast_seen) == 1 and len(mod.fast_seen[0]) == 4  # the LIKE is not content
    actions = [[v["action"] for v in emits(o, "moderation-verdicts")] for o in out]
    assert actions == [["ALLOW"], ["REVIEW"], ["BLOCK"], [], ["REVIEW"]]
    verdict = emits(out[2], "moderation-verdicts")[0]
    assert verdict["comment_id"] == "c1" and verdict["author_id"] == "u2"
    for o in out:  # every emitted event is valid against its contract
        for v in emits(o, "moderation-verdicts"):
            AvroCodec(default_catalog(), "ModerationVerdict").encode(v)
        for t in emits(o, "review-queue"):
            AvroCodec(default_catalog(), "ReviewTask").encode(t)


def test_review_verdict_creates_a_task_and_the_decision_closes_it():
    guard = ContentGuard(ScriptedModerator(), 10**9)
    (out,) = guard.process_batch([("uploads", upload("unsure"))])
    (task,) = emits(out, "review-queue")
    assert task["queue"] == "moderation"
    (verdict,) = emits(out, "moderation-verdicts")
    assert verdict["review_task_id"] == task["task_id"] and task_created_ms(task["task_id"]) == T0
    tables = {e.table for e in out if isinstance(e, Upsert)}
    assert tables == {"moderation_log", "review_tasks", "review_pending"}
    decision = {"event_id": str(uuid.uuid4()), "event_time": T0 + 60_000, "producer": "pulse-review",
                "cause_event_id": None, "task_id": task["task_id"], "post_id": "p1", "comment_id": None,
                "author_id": "u1", "reviewer_id": "mod7", "action": "RESTRICT", "categories": ["harassment"],
                "note": "borderline", "review_ms": None}
    (out,) = guard.process_batch([("review-decisions", decision)])
    (final,) = emits(out, "moderation-verdicts")
    assert (final["tier"], final["action"], final["author_id"]) == ("HUMAN", "RESTRICT", "u1")
    assert final["latency_ms"] == 60_000 and "note: borderline" in final["reasons"]
    deleted = [e for e in out if isinstance(e, Delete)]
    assert deleted[0].key == {"queue": "moderation", "created_at": T0, "task_id": task["task_id"]}
    # a decision on another gate's queue is not Content Guard's
    assert guard.process_batch([("review-decisions", dict(decision, queue="copyright"))]) == [[]]
    AvroCodec(default_catalog(), "ModerationVerdict").encode(final)


def test_verdict_ids_are_deterministic_per_cause():
    up = upload("nice")
    a = ContentGuard(ScriptedModerator(), 10**9).process_batch([("uploads", up)])
    b = ContentGuard(ScriptedModerator(), 10**9).process_batch([("uploads", up)])
    assert emits(a[0], "moderation-verdicts")[0]["event_id"] == emits(b[0], "moderation-verdicts")[0]["event_id"]


def test_media_is_moderated_and_bad_media_gets_a_block_verdict_that_says_why(tmp_path):
    mod = ScriptedModerator()
    guard = ContentGuard(mod, 10**9)
    img = tmp_path / "a.jpg"
    img.write_bytes(b"\xff\xd8\xff")
    out = guard.process_batch([("uploads", upload("nice", "IMAGE", img.as_uri())),
                               ("uploads", upload("nice", "IMAGE", None)),
                               ("uploads", upload("nice", "VIDEO", "s3://bucket/x.mp4"))])
    assert mod.images == [str(img)]
    v = [emits(o, "moderation-verdicts")[0] for o in out]
    assert v[0]["action"] == "ALLOW"
    assert v[1]["action"] == "BLOCK" and "without media_uri" in v[1]["reasons"][-1]
    assert v[2]["action"] == "BLOCK" and "not supported" in " ".join(v[2]["reasons"])


def test_one_failing_event_is_returned_as_its_exception():
    guard = ContentGuard(ScriptedModerator(), 10**9)
    bad = {"event_id": "x", "event_time": T0, "task_id": "not-a-task", "post_id": "p", "reviewer_id": "r",
           "action": "ALLOW"}
    out = guard.process_batch([("review-decisions", bad), ("uploads", upload("ok"))])
    assert isinstance(out[0], ValueError) and emits(out[1], "moderation-verdicts")


def test_task_ids_sort_by_age_and_reject_foreign_ids():
    a, b = review_task_id("content_guard", T0, "e1"), review_task_id("content_guard", T0 + 1, "e0")
    assert a < b and task_created_ms(b) == T0 + 1
    with pytest.raises(ValueError):
        task_created_ms("abc")
    assert upload_text({"title": "T", "caption": "c", "hashtags": ["#x", "y"]}) == "T\nc\n#x\n#y"


def test_media_over_the_configured_size_gets_a_verdict_without_being_decoded(tmp_path):
    mod = ScriptedModerator()
    guard = ContentGuard(mod, max_media_bytes=1000)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * 2000)
    (out,) = guard.process_batch([("uploads", upload("nice", "IMAGE", big.as_uri()))])
    (v,) = emits(out, "moderation-verdicts")
    assert v["action"] == "BLOCK" and "PULSE_MEDIA_MAX_BYTES" in " ".join(v["reasons"])
    assert mod.images == []

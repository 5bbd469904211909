"""content_guard's core (agents.content_guard.process) with a scripted moderator, run through the
same AgentRunner as the worker and replay: which texts go to which tier (one text per call), the
verdict / review-task / view effects, the human decision, dead letters and determinism.
The real models are exercised in tests/unit/test_moderation_* and the integration test."""
from __future__ import annotations

import uuid

import pytest

from agents.content_guard import SPEC, GuardModels, load, upload_text
from agents.shared.review_tasks import review_task_id, task_created_ms
from models.moderation import Verdict
from streams.contracts.agent import Context, Event
from streams.contracts.codec import codec_for
from streams.contracts.effects import Delete, Emit, Upsert
from streams.contracts.topics import topic_spec
from streams.runtime.engine import AgentRunner, RawMessage
from streams.settings import Settings

T0 = 1_700_000_000_000


class ScriptedModerator:
    """Fast tier: ALLOW unless the text says 'unsure' (None) or 'hate' (BLOCK); heavy tier:
    REVIEW for 'unsure', and a crash for 'crash'. Records what each call saw."""

    def __init__(self):
        self.fast_seen, self.heavy_seen, self.images = [], [], []

    def _v(self, action, tier, **kw):
        return Verdict(action=action, tier=tier, scores={"hate": 0.9 if action == "BLOCK" else 0.4},
                       reasons=[f"{tier} {action}"], model="m", model_version="1", latency_ms=1.0, **kw)

    def fast(self, texts):
        self.fast_seen.append(list(texts))
        return [None if "unsure" in t or "crash" in t else
                self._v("BLOCK" if "hate" in t else "ALLOW", "FAST") for t in texts]

    def heavy(self, texts):
        self.heavy_seen.append(list(texts))
        if any("crash" in t for t in texts):
            raise RuntimeError("heavy tier crashed")
        return [self._v("REVIEW", "HEAVY") for _ in texts]

    def moderate_image(self, path):
        self.images.append(path)
        return self._v("ALLOW", "FAST")

    def moderate_video(self, path):
        return self._v("ALLOW", "FAST")

    def bad_media(self, reason, ms=0.0):
        return Verdict(action="BLOCK", tier="FAST", scores={}, reasons=[f"bad media: {reason}"],
                       model="m", model_version="1", latency_ms=ms, categories=["invalid_media"])


def upload(text, kind="TEXT", media_uri=None, post="p1", event_id=None):
    return {"event_id": event_id or str(uuid.uuid4()), "event_time": T0, "producer": "app",
            "post_id": post, "creator_id": "u1", "kind": kind, "content_type": "FOREVER",
            "media_uri": media_uri, "caption": text, "title": None, "hashtags": ["tag"],
            "duration_ms": None, "size_bytes": None, "width": None, "height": None,
            "parent_post_id": None}


def comment(text, type_="COMMENT"):
    return {"event_id": str(uuid.uuid4()), "event_time": T0 + 5, "producer": "app", "user_id": "u2",
            "post_id": "p1", "type": type_, "dwell_ms": None, "comment_id": "c1",
            "comment_text": text, "report_reason": None, "surface": None}


def decision(task_id, queue="moderation", **kw):
    return {"event_id": str(uuid.uuid4()), "event_time": T0 + 60_000, "producer": "pulse-review",
            "cause_event_id": None, "task_id": task_id, "queue": queue, "post_id": "p1",
            "comment_id": None, "author_id": "u1", "reviewer_id": "mod7", "action": "RESTRICT",
            "categories": ["harassment"], "note": "borderline", "review_ms": None, **kw}


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_MEDIA_READ_ROOTS": str(tmp_path)})


class Guard:
    """An AgentRunner over content_guard's SPEC with a scripted moderator, fed decoded records."""

    def __init__(self, settings, moderator=None, max_media_bytes=10**9):
        self.moderator = moderator or ScriptedModerator()
        self._codecs = {}
        from agents.content_guard import ReportLedger

        self.reports = ReportLedger()
        self.runner = AgentRunner(SPEC, self.codec, config=settings,
                                  models=GuardModels(self.moderator, max_media_bytes),
                                  side={"reports": self.reports})
        self._offset = 0

    def codec(self, topic):
        if topic not in self._codecs:
            self._codecs[topic] = codec_for(self.runner.config, topic_spec(topic).schema, topic)
        return self._codecs[topic]

    def run(self, items):
        """``[(topic, record)]`` -> the BatchOutput of one batch (offsets continue across calls)."""
        messages = []
        for topic, record in items:
            messages.append(RawMessage(topic, 0, self._offset, None, self.codec(topic).encode(record)))
            self._offset += 1
        return self.runner.run(messages)

    def by_event(self, out, items):
        """Per input item, ``{topic: [decoded records]}`` of what it emitted."""
        first = self._offset - len(items)
        got = [{} for _ in items]
        for e in out.emits:
            got[e.cause.offset - first].setdefault(e.topic, []).append(self.codec(e.topic).decode(e.value))
        return got


def test_fast_decides_clear_texts_and_only_the_uncertain_go_to_heavy_one_text_per_call(settings):
    guard = Guard(settings)
    items = [("uploads", upload("nice cat")), ("uploads", upload("unsure a")),
             ("interactions", comment("hate you")), ("interactions", comment("x", "LIKE")),
             ("uploads", upload("unsure b", post="p2"))]
    out = guard.run(items)
    assert out.events == 5 and not out.dead_letters
    # every text alone through the fast tier (the LIKE is not content); the heavy tier sees only
    # the texts the fast tier left open, also one per call
    assert guard.moderator.fast_seen == [["nice cat\n#tag"], ["unsure a\n#tag"], ["hate you"],
                                         ["unsure b\n#tag"]]
    assert guard.moderator.heavy_seen == [["unsure a\n#tag"], ["unsure b\n#tag"]]
    per_event = guard.by_event(out, items)
    actions = [[v["action"] for v in e.get("moderation-verdicts", [])] for e in per_event]
    assert actions == [["ALLOW"], ["REVIEW"], ["BLOCK"], [], ["REVIEW"]]
    (verdict,) = per_event[2]["moderation-verdicts"]
    assert verdict["comment_id"] == "c1" and verdict["author_id"] == "u2"
    assert verdict["tier"] == "FAST" and verdict["scores"] == {"hate": 0.9}
    # machine verdicts carry no measurement of the run
    assert all(v["latency_ms"] is None for e in per_event for v in e.get("moderation-verdicts", []))
    assert [len(e.get("review-queue", [])) for e in per_event] == [0, 1, 0, 0, 1]
    logged = [e.row for e in out.views if isinstance(e, Upsert) and e.table == "moderation_log"]
    assert [r["action"] for r in logged] == ["ALLOW", "REVIEW", "BLOCK", "REVIEW"]


def test_review_verdict_creates_a_task_and_the_decision_closes_it(settings):
    guard = Guard(settings)
    items = [("uploads", upload("unsure"))]
    out = guard.run(items)
    [emitted] = guard.by_event(out, items)
    (task,) = emitted["review-queue"]
    assert task["queue"] == "moderation"
    (verdict,) = emitted["moderation-verdicts"]
    assert verdict["review_task_id"] == task["task_id"] and task_created_ms(task["task_id"]) == T0
    assert {e.table for e in out.views if isinstance(e, Upsert)} == {
        "moderation_log", "review_tasks", "review_pending"}
    d = decision(task["task_id"])
    items = [("review-decisions", d)]
    out = guard.run(items)
    [emitted] = guard.by_event(out, items)
    (final,) = emitted["moderation-verdicts"]
    assert (final["tier"], final["action"], final["author_id"]) == ("HUMAN", "RESTRICT", "u1")
    assert final["model"] == "human-review" and final["model_version"] == "mod7"
    # HUMAN verdicts keep the review time: a fact of the events, the same in every replay
    assert final["latency_ms"] == 60_000 and "note: borderline" in final["reasons"]
    (deleted,) = [e for e in out.views if isinstance(e, Delete)]
    assert deleted.key == {"queue": "moderation", "created_at": T0, "task_id": task["task_id"]}
    closed = [e.row for e in out.views if isinstance(e, Upsert) and e.table == "review_tasks"]
    assert closed == [{"task_id": task["task_id"], "status": "DECIDED", "decision": "RESTRICT",
                       "decided_by": "mod7", "decided_at": T0 + 60_000, "note": "borderline"}]
    # a decision on another gate's queue is not Content Guard's
    out = guard.run([("review-decisions", decision(task["task_id"], queue="copyright"))])
    assert out.events == 1 and (out.emits, out.views, out.dead_letters) == ([], [], [])


def test_the_same_upload_gives_identical_effects(settings):
    up = upload("unsure", event_id="3f0c2d1e-0000-4000-8000-000000000001")
    ctx = Context(agent=SPEC.name, event_id=up["event_id"], event_time_ms=T0,
                  models=GuardModels(ScriptedModerator(), 10**9), config=settings)
    a = SPEC.process(None, Event("uploads", up), ctx)
    b = SPEC.process(None, Event("uploads", dict(up)), ctx)
    assert a == b and len(a) == 5
    assert [e.topic for e in a if isinstance(e, Emit)] == ["moderation-verdicts", "review-queue"]


def test_two_runs_of_the_same_events_emit_the_same_bytes(settings, tmp_path):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"\xff\xd8\xff")
    task_id = review_task_id("content_guard", T0, "3f0c2d1e-0000-4000-8000-000000000002")
    items = [("uploads", upload("nice cat", event_id="3f0c2d1e-0000-4000-8000-000000000001")),
             ("uploads", upload("unsure", event_id="3f0c2d1e-0000-4000-8000-000000000002")),
             ("interactions", dict(comment("hate you"), event_id="3f0c2d1e-0000-4000-8000-000000000003")),
             ("uploads", upload("a photo", "IMAGE", img.as_uri(), post="p3",
                                event_id="3f0c2d1e-0000-4000-8000-000000000004")),
             ("uploads", upload("a video", "VIDEO", None, post="p4",
                                event_id="3f0c2d1e-0000-4000-8000-000000000005")),
             ("review-decisions", dict(decision(task_id), event_id="3f0c2d1e-0000-4000-8000-000000000006"))]
    runs = [Guard(settings).run(items) for _ in range(2)]
    emits = [[(e.topic, e.key, e.value) for e in out.emits] for out in runs]
    assert len(emits[0]) == 7 and emits[0] == emits[1]
    assert runs[0].views == runs[1].views and not runs[0].dead_letters


def test_media_is_moderated_and_bad_media_gets_a_block_verdict_that_says_why(settings, tmp_path):
    guard = Guard(settings)
    img = tmp_path / "a.jpg"
    img.write_bytes(b"\xff\xd8\xff")
    (tmp_path / "link.jpg").symlink_to("/etc/passwd")
    items = [("uploads", upload("nice", "IMAGE", img.as_uri())),
             ("uploads", upload("nice", "IMAGE", None)),
             ("uploads", upload("nice", "VIDEO", "s3://bucket/x.mp4")),
             ("uploads", upload("nice", "IMAGE", "/etc/passwd")),
             ("uploads", upload("nice", "IMAGE", f"{tmp_path}/../../etc/passwd")),
             ("uploads", upload("nice", "IMAGE", (tmp_path / "link.jpg").as_uri())),
             ("uploads", upload("nice", "IMAGE", "http://169.254.169.254/latest/meta-data"))]
    out = guard.run(items)
    assert guard.moderator.images == [str(img.resolve())]  # nothing outside the media roots is opened
    v = [e["moderation-verdicts"][0] for e in guard.by_event(out, items)]
    assert v[0]["action"] == "ALLOW"
    assert v[1]["action"] == "BLOCK" and "without media_uri" in v[1]["reasons"][-1]
    reasons = [" ".join(x["reasons"]) for x in v]
    assert v[2]["action"] == "BLOCK" and "scheme 's3'" in reasons[2]
    assert v[3]["action"] == "BLOCK" and "outside the media roots" in reasons[3]
    assert v[4]["action"] == "BLOCK" and "contains '..'" in reasons[4]
    assert v[5]["action"] == "BLOCK" and "symlink" in reasons[5]
    assert v[6]["action"] == "BLOCK" and "internal address (169.254.169.254)" in reasons[6]
    assert all(x["latency_ms"] is None for x in v)


def test_a_failing_event_is_dead_lettered_alone(settings):
    guard = Guard(settings)
    bad_decision = decision("not-a-task")
    items = [("review-decisions", bad_decision), ("uploads", upload("crash here")),
             ("uploads", upload("ok"))]
    out = guard.run(items)
    assert out.events == 3 and len(out.dead_letters) == 2
    letters = [guard.codec("dead-letters").decode(d.value) for d in out.dead_letters]
    assert [(x["source_topic"], x["offset"], x["error_type"]) for x in letters] == [
        ("review-decisions", 0, "ValueError"), ("uploads", 1, "RuntimeError")]
    assert "not a review task id" in letters[0]["reason"] and "heavy tier crashed" in letters[1]["reason"]
    # the other event of the batch still gets its verdict, and the failed ones wrote nothing
    assert [e.cause.offset for e in out.emits] == [2]
    assert {e.row["post_id"] for e in out.views} == {"p1"} and len(out.views) == 1


def test_task_ids_sort_by_age_and_reject_foreign_ids():
    a, b = review_task_id("content_guard", T0, "e1"), review_task_id("content_guard", T0 + 1, "e0")
    assert a < b and task_created_ms(b) == T0 + 1
    with pytest.raises(ValueError):
        task_created_ms("abc")
    assert upload_text({"title": "T", "caption": "c", "hashtags": ["#x", "y"]}) == "T\nc\n#x\n#y"


def test_media_over_the_configured_size_gets_a_verdict_without_being_decoded(settings, tmp_path):
    guard = Guard(settings, max_media_bytes=1000)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * 2000)
    items = [("uploads", upload("nice", "IMAGE", big.as_uri()))]
    [emitted] = guard.by_event(guard.run(items), items)
    (v,) = emitted["moderation-verdicts"]
    assert v["action"] == "BLOCK" and "PULSE_MEDIA_MAX_BYTES" in " ".join(v["reasons"])
    assert guard.moderator.images == []


def test_spec_and_load(settings, monkeypatch):
    assert SPEC.topics == ("uploads", "interactions", "review-decisions")
    assert SPEC.blocking and SPEC.batch_size == 64 and SPEC.sinks == frozenset({"cassandra"})
    import models.moderation

    monkeypatch.setattr(models.moderation, "load_moderator", lambda version: ("moderator", version))
    loaded = load(settings)
    assert loaded == GuardModels(("moderator", settings.moderation_model), settings.media_max_bytes)


def report(user, at, reason="spam", post="p1"):
    rec = {**comment(None, type_="REPORT"), "user_id": user, "post_id": post, "event_time": at,
           "comment_id": None, "report_reason": reason}
    return rec


def test_reports_from_three_distinct_users_send_the_post_to_review(settings):
    guard = Guard(settings)
    reports = [report("a", T0 + 1), report("a", T0 + 2), report("b", T0 + 3, "hate"),
               report("c", T0 + 4), report("d", T0 + 5)]
    for r in reports:
        guard.reports.apply(r)  # the side input has read the topic
    items = [("interactions", r) for r in reports]
    got = guard.by_event(guard.run(items), items)
    tasks = [g.get("review-queue", []) for g in got]
    # two reports by one user count once: the third distinct reporter (c) sends it, d re-sends
    assert [len(t) for t in tasks] == [0, 0, 0, 1, 1]
    assert tasks[3] == tasks[4]
    task = tasks[3][0]
    assert task["queue"] == "moderation" and task["post_id"] == "p1" and task["priority"] == "HIGH"
    assert task["reasons"] == ["reported by 3 distinct users", "report: spam", "report: hate",
                               "report: spam"]
    assert not any(g.get("moderation-verdicts") for g in got)  # reports are not verdicts

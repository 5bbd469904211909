"""copyright_guard's ``process`` on a real reference side input (a VersionedReferenceBank filled
by ``apply``, as the runtime does): a re-encoded copy blocked, an unrelated photo allowed, a
withdrawn work and text allowed, the uploader's own work allowed, bad media given a verdict, the
size limit, review tasks and the human verdict, decisions of other queues ignored. Every verdict
is valid against the current CopyrightVerdict (v3); machine verdicts carry no latency."""
from __future__ import annotations

import io
import tempfile
import uuid
from pathlib import Path

import pytest
from PIL import Image

from agents.copyright_guard import NAME, SPEC, Limits, load, open_references
from streams.contracts.agent import Context, Event, ms_of
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, Upsert
from streams.contracts.schemas import default_catalog
from streams.settings import Settings
from tests.unit.agent_harness import settings_for

COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-captions" / "images"
pytestmark = pytest.mark.skipif(not COCO.is_dir(), reason=f"{COCO} is absent (shared data)")

T0 = 1_700_000_000_000  # uploads; references are registered before


def upload(post, kind, path, creator="u1"):
    return {"event_id": str(uuid.uuid4()), "event_time": T0, "producer": "app",
            "post_id": post, "creator_id": creator, "kind": kind, "content_type": "FOREVER",
            "media_uri": None if path is None else Path(path).resolve().as_uri(), "caption": "look",
            "title": None, "hashtags": [], "duration_ms": None, "size_bytes": None, "width": None,
            "height": None, "parent_post_id": None}


def reference(rid, action, at, **kw):
    return {"event_id": str(uuid.uuid4()), "event_time": at, "producer": "pulse-copyright",
            "reference_id": rid, "rights_holder_id": kw.pop("rights_holder_id", "studio"),
            "action": action, "title": kw.pop("title", rid),
            "media_kind": kw.pop("media_kind", "IMAGE"), "media_uri": kw.pop("media_uri", None),
            "fingerprints": kw.pop("fingerprints", []),
            "policy": kw.pop("policy", "BLOCK"), "metadata": {}}


CONFIG = settings_for(Path(tempfile.gettempdir()) / "pulse-unit-home")
"""Settings whose media roots hold the test media (pytest's temporary directories, COCO)."""


def run(topic, record, refs, limits=None, config=CONFIG):
    ctx = Context(agent=NAME, event_id=record["event_id"],
                  event_time_ms=ms_of(record["event_time"]), models=limits or load(None),
                  side={"references": refs}, config=config)
    return SPEC.process(None, Event(topic, record), ctx)


def verdict(effects):
    (v,) = [e.record for e in effects if isinstance(e, Emit) and e.topic == "copyright-verdicts"]
    AvroCodec(default_catalog(), "CopyrightVerdict").encode(v)
    return v


@pytest.fixture(scope="module")
def refs():
    from models.copyright import reference_fingerprints

    images = sorted(COCO.glob("*.jpg"))
    bank = open_references(CONFIG, None)
    modality, fps = reference_fingerprints(images[0])
    bank.apply(reference("work-1", "REGISTER", T0 - 3000, title="The work", media_kind=modality,
                         fingerprints=fps))
    # a media_uri-only registration is fingerprinted by apply, then withdrawn
    bank.apply(reference("work-2", "REGISTER", T0 - 2000, title="Withdrawn",
                         media_uri=images[2].as_uri()))
    bank.apply(reference("work-2", "WITHDRAW", T0 - 1000, policy="MONITOR"))
    assert (bank.applied, bank.skipped, len(bank)) == (3, 0, 2)
    assert [v.version_id for v in bank.valid_at(T0)] == ["work-1"]
    return bank, images


def test_spec_is_the_new_contract():
    assert SPEC.blocking and SPEC.batch_size == 32 and SPEC.sinks == frozenset({"cassandra"})
    (side,) = SPEC.side_inputs
    assert (side.name, side.topic) == ("references", "copyright-references")
    assert SPEC.tables == () and SPEC.topics == ("uploads", "review-decisions")
    assert load(None) == Limits()
    assert load(type("S", (), {"media_max_bytes": 10})()).media_max_bytes == 10


def test_no_other_agent_module_is_imported():
    import ast

    source = Path(__file__).resolve().parents[2] / "agents" / "copyright_guard.py"
    tree = ast.parse(source.read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    agents = {m for m in mods if m and m.startswith("agents")}
    assert agents <= {"agents.shared.copyright", "agents.shared.media",
                      "agents.shared.review_tasks"}, agents
    assert not any("kafka" in (m or "") for m in mods)


def test_reencoded_copy_is_blocked_with_its_evidence(refs, tmp_path):
    bank, images = refs
    copy = tmp_path / "copy.jpg"
    im = Image.open(images[0]).convert("RGB")
    im.resize((im.width // 2, im.height // 2)).save(copy, quality=40)
    out = run("uploads", upload("p1", "IMAGE", copy), bank)
    v = verdict(out)
    assert v["action"] == "BLOCK" and v["modality"] == "IMAGE" and v["latency_ms"] is None
    assert (v["matches"][0]["reference_id"], v["matches"][0]["rights_holder_id"]) == (
        "work-1", "studio")
    rows = [e.row for e in out if isinstance(e, Upsert) and e.table == "copyright_matches"]
    assert rows and rows[0]["reference_id"] == "work-1" and rows[0]["matched_at"] == T0


def test_unrelated_withdrawn_text_and_bad_media(refs, tmp_path):
    bank, images = refs
    broken = tmp_path / "broken.jpg"
    buf = io.BytesIO()
    Image.open(images[1]).save(buf, format="JPEG")
    broken.write_bytes(buf.getvalue()[:200])
    ups = [upload("p2", "IMAGE", images[1]),
           upload("p3", "IMAGE", images[2]),  # the withdrawn work
           upload("p4", "TEXT", None), upload("p5", "IMAGE", broken), upload("p6", "IMAGE", None)]
    v = [verdict(run("uploads", u, bank)) for u in ups]
    assert [x["action"] for x in v[:3]] == ["ALLOW", "ALLOW", "ALLOW"]
    assert v[2]["modality"] == "TEXT" and v[0]["matches"] == [] and v[1]["matches"] == []
    from models.copyright import BAD_MEDIA_ACTION

    assert v[3]["action"] == BAD_MEDIA_ACTION and "could not be checked" in v[3]["reasons"][0]
    assert v[4]["action"] == BAD_MEDIA_ACTION and "without media_uri" in v[4]["reasons"][0]
    assert all(x["latency_ms"] is None for x in v)


def test_media_outside_the_media_roots_is_not_read(refs, tmp_path):
    from agents.shared.media import MediaRoots
    from models.copyright import BAD_MEDIA_ACTION

    bank, images = refs
    only_tmp = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_MEDIA_READ_ROOTS": str(tmp_path)})
    v = verdict(run("uploads", upload("p7", "IMAGE", images[0]), bank, config=only_tmp))  # COCO: not a root
    assert v["action"] == BAD_MEDIA_ACTION and "outside the media roots" in v["reasons"][0]
    v = verdict(run("uploads", dict(upload("p8", "IMAGE", None), media_uri="/etc/passwd"), bank))
    assert v["action"] == BAD_MEDIA_ACTION and "outside the media roots" in v["reasons"][0]
    # a media_uri-only registration outside the roots is skipped, not fingerprinted
    guarded = open_references(only_tmp, None)
    guarded.apply(reference("work-9", "REGISTER", T0 - 1000, media_uri=images[0].as_uri()))
    assert (guarded.applied, guarded.skipped) == (0, 1)
    assert open_references(None, None)._resolve.__self__ == MediaRoots()  # no settings: no roots


def test_the_withdrawn_work_still_counts_for_an_upload_before_its_withdrawal(refs):
    bank, images = refs
    early = dict(upload("p3b", "IMAGE", images[2]), event_time=T0 - 1500)
    v = verdict(run("uploads", early, bank))
    assert v["action"] == "BLOCK" and v["matches"][0]["reference_id"] == "work-2"


def test_the_rights_holders_own_upload_is_allowed(refs):
    bank, images = refs
    v = verdict(run("uploads", upload("p7", "IMAGE", images[0], creator="studio"), bank))
    assert v["action"] == "ALLOW" and v["matches"][0]["reference_id"] == "work-1"
    assert any("own work" in r for r in v["reasons"])


def test_review_verdict_queues_a_copyright_task_and_the_decision_is_final(refs, tmp_path):
    from models.copyright import BAD_MEDIA_ACTION

    bank, _ = refs
    broken = tmp_path / "broken2.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = run("uploads", upload("p8", "IMAGE", broken), bank)
    v = verdict(out)
    tasks = [e.record for e in out if isinstance(e, Emit) and e.topic == "review-queue"]
    if BAD_MEDIA_ACTION != "REVIEW":
        pytest.skip("bad media is not sent to review in this configuration")
    assert v["action"] == "REVIEW"
    (task,) = tasks
    assert task["queue"] == "copyright" and task["post_id"] == "p8"
    AvroCodec(default_catalog(), "ReviewTask").encode(task)
    assert {e.table for e in out if isinstance(e, Upsert)} == {"review_tasks", "review_pending"}
    decision = {"event_id": str(uuid.uuid4()), "event_time": T0 + 100_000,
                "producer": "pulse-review", "cause_event_id": None, "task_id": task["task_id"],
                "queue": "copyright", "post_id": "p8", "comment_id": None, "author_id": "u1",
                "reviewer_id": "mod", "action": "ALLOW", "categories": [], "note": None,
                "review_ms": None}
    out = run("review-decisions", decision, bank)
    final = verdict(out)
    assert (final["action"], final["model"], final["model_version"]) == (
        "ALLOW", "human-review", "mod")
    assert final["latency_ms"] == 100_000  # decision time minus task creation: replayable
    assert len(out) > 1  # the task is closed too
    assert run("review-decisions", dict(decision, queue=None), bank) == []
    assert run("review-decisions", dict(decision, queue="moderation"), bank) == []


def test_other_topics_give_nothing(refs):
    bank, _ = refs
    assert run("interactions", {"event_id": str(uuid.uuid4()), "event_time": T0}, bank) == []


def test_media_over_the_configured_size_is_not_fingerprinted(refs):
    bank, images = refs
    out = run("uploads", upload("p9", "IMAGE", images[0]), bank,
              limits=Limits(media_max_bytes=1000))
    v = verdict(out)
    assert "PULSE_MEDIA_MAX_BYTES" in " ".join(v["reasons"]) and v["matches"] == []

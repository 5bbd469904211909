"""copyright_guard's core (agents.copyright_guard.CopyrightGuard) on a real reference bank:
registration events applied, a re-encoded copy blocked, an unrelated photo allowed, text allowed,
bad media given a verdict; every verdict valid against CopyrightVerdict v2."""
from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from PIL import Image

from agents.copyright_guard import CopyrightGuard, ReferenceFeed
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, Upsert
from streams.contracts.schemas import default_catalog

COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-captions" / "images"
pytestmark = pytest.mark.skipif(not COCO.is_dir(), reason=f"{COCO} is absent (shared data)")


def upload(post, kind, path):
    return {"event_id": str(uuid.uuid4()), "event_time": 1_700_000_000_000, "producer": "app",
            "post_id": post, "creator_id": "u1", "kind": kind, "content_type": "FOREVER",
            "media_uri": None if path is None else Path(path).resolve().as_uri(), "caption": "look",
            "title": None, "hashtags": [], "duration_ms": None, "size_bytes": None, "width": None,
            "height": None, "parent_post_id": None}


def verdict(effects):
    (v,) = [e.record for e in effects if isinstance(e, Emit) and e.topic == "copyright-verdicts"]
    AvroCodec(default_catalog(), "CopyrightVerdict").encode(v)
    return v


@pytest.fixture(scope="module")
def guard():
    from models.copyright import ReferenceBank, reference_fingerprints

    images = sorted(COCO.glob("*.jpg"))
    bank = ReferenceBank()
    feed = ReferenceFeed.__new__(ReferenceFeed)  # apply() only: no consumer in a unit test
    feed.bank = bank
    modality, fps = reference_fingerprints(images[0])
    feed.apply({"reference_id": "work-1", "action": "REGISTER", "title": "The work",
                "rights_holder_id": "studio", "policy": "BLOCK", "media_kind": modality,
                "media_uri": None, "fingerprints": fps, "metadata": {}})
    feed.apply({"reference_id": "work-2", "action": "REGISTER", "title": "Withdrawn",
                "rights_holder_id": "studio", "policy": "BLOCK", "media_kind": "IMAGE",
                "media_uri": images[2].as_uri(), "fingerprints": [], "metadata": {}})
    feed.apply({"reference_id": "work-2", "action": "WITHDRAW", "title": "", "rights_holder_id": "",
                "policy": "BLOCK", "media_kind": "IMAGE", "media_uri": None, "fingerprints": [],
                "metadata": {}})
    return CopyrightGuard(bank), images


def test_reencoded_copy_is_blocked_with_its_evidence(guard, tmp_path):
    g, images = guard
    copy = tmp_path / "copy.jpg"
    im = Image.open(images[0]).convert("RGB")
    im.resize((im.width // 2, im.height // 2)).save(copy, quality=40)
    (out,) = g.process_batch([("uploads", upload("p1", "IMAGE", copy))])
    v = verdict(out)
    assert v["action"] == "BLOCK" and v["modality"] == "IMAGE"
    assert v["matches"][0]["reference_id"] == "work-1" and v["matches"][0]["rights_holder_id"] == "studio"
    rows = [e.row for e in out if isinstance(e, Upsert) and e.table == "copyright_matches"]
    assert rows and rows[0]["reference_id"] == "work-1"


def test_unrelated_withdrawn_text_and_bad_media(guard, tmp_path):
    g, images = guard
    broken = tmp_path / "broken.jpg"
    buf = io.BytesIO()
    Image.open(images[1]).save(buf, format="JPEG")
    broken.write_bytes(buf.getvalue()[:200])
    out = g.process_batch([("uploads", upload("p2", "IMAGE", images[1])),
                           ("uploads", upload("p3", "IMAGE", images[2])),  # withdrawn work
                           ("uploads", upload("p4", "TEXT", None)),
                           ("uploads", upload("p5", "IMAGE", broken)),
                           ("uploads", upload("p6", "IMAGE", None))])
    v = [verdict(o) for o in out]
    assert [x["action"] for x in v[:3]] == ["ALLOW", "ALLOW", "ALLOW"]
    assert v[2]["modality"] == "TEXT" and v[0]["matches"] == []
    from models.copyright import BAD_MEDIA_ACTION

    assert v[3]["action"] == BAD_MEDIA_ACTION and "could not be checked" in v[3]["reasons"][0]
    assert v[4]["action"] == BAD_MEDIA_ACTION and "without media_uri" in v[4]["reasons"][0]


def test_the_rights_holders_own_upload_is_allowed(guard):
    g, images = guard
    own = dict(upload("p7", "IMAGE", images[0]), creator_id="studio")
    (out,) = g.process_batch([("uploads", own)])
    v = verdict(out)
    assert v["action"] == "ALLOW" and v["matches"][0]["reference_id"] == "work-1"
    assert any("own work" in r for r in v["reasons"])


def test_review_verdict_queues_a_copyright_task_and_the_decision_is_final(guard, tmp_path):
    from models.copyright import BAD_MEDIA_ACTION

    g, _ = guard
    broken = tmp_path / "broken2.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    (out,) = g.process_batch([("uploads", upload("p8", "IMAGE", broken))])
    v = verdict(out)
    tasks = [e.record for e in out if isinstance(e, Emit) and e.topic == "review-queue"]
    if BAD_MEDIA_ACTION != "REVIEW":
        pytest.skip("bad media is not sent to review in this configuration")
    (task,) = tasks
    assert task["queue"] == "copyright" and task["post_id"] == "p8"
    AvroCodec(default_catalog(), "ReviewTask").encode(task)
    decision = {"event_id": str(uuid.uuid4()), "event_time": 1_700_000_100_000, "producer": "pulse-review",
                "cause_event_id": None, "task_id": task["task_id"], "queue": "copyright", "post_id": "p8",
                "comment_id": None, "author_id": "u1", "reviewer_id": "mod", "action": "ALLOW",
                "categories": [], "note": None, "review_ms": None}
    (out,) = g.process_batch([("review-decisions", decision)])
    final = verdict(out)
    assert (final["action"], final["model"]) == ("ALLOW", "human-review")
    assert g.process_batch([("review-decisions", dict(decision, queue=None))]) == [[]]
    assert v["action"] == "REVIEW"


def test_media_over_the_configured_size_is_not_fingerprinted(guard, tmp_path):
    g, images = guard
    small = CopyrightGuard(g.bank, max_media_bytes=1000)
    (out,) = small.process_batch([("uploads", upload("p9", "IMAGE", images[0]))])
    v = verdict(out)
    assert "PULSE_MEDIA_MAX_BYTES" in " ".join(v["reasons"]) and v["matches"] == []

"""clip_ai on the real broker: `pulse worker --agents clip_ai` enriches uploads of real photos
(and a text post and a broken file) into `content-enriched` events and `content` points in the
embedded qdrant-edge engine.

The worker holds the qdrant-edge collection while it runs (one process per shard directory), so
the points are checked after it stops, from this process; the worker gets a PULSE_HOME of its own
so no other test's worker shares its Qdrant directory.
"""
from __future__ import annotations

import json
import signal

import pytest

from replay.reader import read_topic
from streams.producer import Publisher
from streams.settings import REPO_ROOT

from tests.integration.conftest import unique, wait_until
from tests.integration.test_publish import upload_line

COCO = REPO_ROOT.parent / "shared" / "data" / "coco-captions"
pytestmark = pytest.mark.skipif(not (COCO / "captions.json").is_file(), reason=f"{COCO} is absent")
T0 = 1_600_000_000_000


def test_worker_enriches_uploads_and_indexes_points(pipeline, workers, tmp_path):
    from streams.query.search import ContentSearch
    from streams.stores.vectors.edge_index import EdgeIndex

    rows = json.loads((COCO / "captions.json").read_text())[:3]
    creator, app_id, home = unique("c"), unique("clip"), tmp_path / "home"
    photos = {f"{creator}-img{i}": r for i, r in enumerate(rows)}
    uploads = [upload_line(pid, creator, kind="IMAGE", media_uri=(COCO / r["file"]).as_uri(), caption=r["captions"][0],
                           event_time=T0 + i, hashtags=["sunday"]) for i, (pid, r) in enumerate(photos.items())]
    uploads.append(upload_line(f"{creator}-bad", creator, kind="IMAGE", media_uri=(tmp_path / "nope.jpg").as_uri(),
                               caption="lost picture", event_time=T0 + 10))
    uploads.append(upload_line(f"{creator}-txt", creator, caption="Which quantum error correcting code should I learn first?",
                               event_time=T0 + 11))
    ids = {u["post_id"] for u in uploads}
    proc = workers.start(app_id, agents="clip_ai", PULSE_HOME=str(home))
    with Publisher(pipeline) as pub:
        for u in uploads:
            pub.publish("uploads", u)

    def enriched():
        got = {r["post_id"]: r for _, r in read_topic(pipeline, "content-enriched") if r["post_id"] in ids}
        return got if len(got) == len(ids) else None

    events = wait_until(enriched, 240, "content-enriched for every upload", interval_s=2,
                        diagnose=lambda: workers.log(proc))
    for pid in photos:
        e = events[pid]
        assert e["alt_text"].startswith("Photo") and len(e["image_embedding"]) == 384
        assert e["model"].startswith("clip_ai[") and "efficientnet-lite0-" in e["model_version"]
        assert e["alignment_score"] is not None and e["suggested_hashtags"]
    assert events[f"{creator}-bad"]["image_embedding"] is None and events[f"{creator}-bad"]["alt_text"] is None
    assert events[f"{creator}-txt"]["text_embedding"] is not None
    assert "media not analysed" in workers.log(proc)

    proc.send_signal(signal.SIGTERM)  # releases the qdrant-edge shard
    proc.wait(60)
    with EdgeIndex(home / "qdrant") as index:
        points = {p.id: p for p in index.get("content", sorted(ids))}
        assert set(points) == ids
        assert set(points[f"{creator}-img0"].vector) == {"image", "semantic", "text"}
        assert points[f"{creator}-img0"].payload["creator_id"] == creator
        search = ContentSearch(index)
        # (the worker also indexes uploads other tests published on shared servers: look at
        # this test's creator only)
        hits = search.text(rows[1]["captions"][1], 3, kind="image", creator_id=creator)
        assert hits and {h.post_id for h in hits} <= set(photos)
        assert f"{creator}-img0" not in [h.post_id for h in search.like(f"{creator}-img0", 5)]

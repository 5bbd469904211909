"""clip_ai's real models (EfficientNet-Lite0, MiniLM, the bridge) on real photos, the agent core
through the AgentRunner, and search over its points. Models load once for the module (about 20 s
on 2 cores)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.clip_ai import SPEC
from streams.contracts.agent import Context, Event, derived_event_id
from streams.contracts.codec import codec_for
from streams.contracts.effects import VectorUpsert
from streams.contracts.topics import topic_spec
from streams.query.search import ContentSearch
from streams.runtime.engine import AgentRunner, RawMessage
from streams.settings import Settings
from streams.sinks.writers import VectorSink
from streams.stores.vectors.edge_index import EdgeIndex

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
COCO = DATA / "coco-captions"
VIDEO = DATA / "media" / "video" / "bigbuckbunny.mp4"
pytestmark = pytest.mark.skipif(not (COCO / "captions.json").exists(), reason="../shared/data/coco-captions is absent")


@pytest.fixture(scope="module")
def models():
    from models.clip.enrich import ContentModels

    return ContentModels()


@pytest.fixture(scope="module")
def coco():
    return json.loads((COCO / "captions.json").read_text())


def upload(i: int, kind: str, uri: str | None, caption: str, hashtags=()) -> dict:
    return {"event_id": f"00000000-0000-4000-8000-{i:012d}", "event_time": 1_700_000_000_000 + i, "producer": "test",
            "post_id": f"post-{i}", "creator_id": f"u{i % 2}", "kind": kind, "content_type": "FOREVER",
            "media_uri": uri, "caption": caption, "title": None, "hashtags": list(hashtags)}


def test_imagenet_tower_names_what_is_in_real_photos(models, coco):
    from models.fingerprints.image import load_image

    coco = coco[:16]
    photos = [load_image(COCO / r["file"]) for r in coco]
    feats, probs = models.imagenet.encode(photos)
    assert feats.shape == (len(coco), 1280) and probs.shape == (len(coco), 1000)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    top5 = [{name for name, _ in row} for row in models.imagenet.top_labels(probs, 5)]
    # a caption word among the image's top-5 ImageNet labels, for a good share of the photos
    words = [{w.strip(".,").lower() for c in r["captions"] for w in c.split()} for r in coco]
    named = np.mean([any(lab.lower() in ws or lab.lower().split()[-1] in ws for lab in t) for t, ws in zip(top5, words)])
    assert named >= 0.25, named
    food = [i for i, r in enumerate(coco) if "broccoli" in r["captions"][0].lower()]
    assert all("broccoli" in top5[i] for i in food)


def test_wrong_weights_are_refused(tmp_path):
    import torch

    from models.clip.imagenet import ImageNetTower, default_weights

    sd = torch.load(default_weights(), weights_only=True)
    torch.save(dict(list(sd.items())[:-2]), tmp_path / "short.pth")
    with pytest.raises(ValueError, match="tensors"):
        ImageNetTower(tmp_path / "short.pth")


def test_bridge_retrieves_captions_far_above_chance(models, coco):
    from models.clip.evaluate import chance, run_clip_eval

    report = run_clip_eval(COCO, models=models)
    bridge = report["paths"]["imagenet_bridge"]
    assert report["chance"] == chance(len(coco), 5)
    assert bridge["image_to_caption"]["recall@1"] >= 8 * report["chance"]["image_to_caption"]["recall@1"]
    assert bridge["caption_to_image"]["recall@5"] >= 4 * report["chance"]["caption_to_image"]["recall@5"]
    assert report["minilm_caption_to_caption"]["recall@1"] >= 0.6


def test_zero_shot_categories_of_texts(models):
    from models.clip.understanding import zero_shot

    texts = ["my puppy loves chasing the ball in the garden", "homemade pasta with tomato sauce and basil",
             "how do I simulate a quantum circuit with 30 qubits?", "the band played their new song live on stage"]
    probs = zero_shot(models.minilm.encode(texts), models.category_text)
    assert [models.category_names[i] for i in probs.argmax(1)] == ["pets", "food", "science", "music"]
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


class Runner:
    """A fresh AgentRunner over clip_ai's SPEC and the loaded models, fed decoded uploads."""

    def __init__(self, models, tmp_path):
        from tests.unit.agent_harness import settings_for

        settings = settings_for(tmp_path)  # media roots: the shared data, the tests' own files
        self._codecs = {}
        self.codec = lambda topic: self._codecs.setdefault(
            topic, codec_for(settings, topic_spec(topic).schema, topic))
        self.runner = AgentRunner(SPEC, self.codec, config=settings, models=models,
                                  side={"hashtags": models.hashtag_history()})

    def run(self, uploads):
        codec = self.codec("uploads")
        for u in uploads:  # the side input catches up with the uploads topic before a batch
            self.runner.side["hashtags"].apply(u)
        return self.runner.run([RawMessage("uploads", 0, i, None, codec.encode(u))
                                for i, u in enumerate(uploads)])


def test_two_runs_of_the_same_uploads_emit_the_same_bytes(models, coco, tmp_path):
    # one upload per model call: the events do not depend on what else was in the batch, and
    # carry no wall-clock time or latency, so a replay emits exactly what the live run did
    uploads = [upload(i, "IMAGE", (COCO / coco[i]["file"]).resolve().as_uri(), coco[i]["captions"][0])
               for i in range(3)]
    uploads.append(upload(10, "TEXT", None, "homemade pasta with tomato sauce and basil"))
    uploads.append(upload(11, "IMAGE", Path(__file__).resolve().as_uri(), "not really a picture"))
    first = Runner(models, tmp_path / "a").run(uploads)
    second = Runner(models, tmp_path / "b").run(uploads[:2]), Runner(models, tmp_path / "c").run(uploads[2:])
    again = [(e.topic, e.key, e.value) for out in second for e in out.emits]
    assert [(e.topic, e.key, e.value) for e in first.emits] == again and len(again) == len(uploads)
    points = [p for out in second for p in out.views]
    for a, b in zip(first.views, points, strict=True):
        assert (a.id, a.payload, set(a.vector)) == (b.id, b.payload, set(b.vector))
        for name in a.vector:
            np.testing.assert_array_equal(a.vector[name], b.vector[name])


def test_agent_core_enriches_uploads_and_never_crashes_on_bad_media(models, coco, tmp_path):
    photos = [coco[i] for i in range(4)]
    uploads = [upload(i, "IMAGE", (COCO / r["file"]).resolve().as_uri(), r["captions"][0], ["sunday"])
               for i, r in enumerate(photos)]
    uploads.append(upload(10, "TEXT", None, "What is the best way to learn quantum error correction?"))
    uploads.append(upload(11, "IMAGE", Path(__file__).resolve().as_uri(), "not really a picture"))
    if VIDEO.exists():
        uploads.append(upload(12, "VIDEO", str(VIDEO.resolve()), "a big rabbit in a sunny forest"))
    runner = Runner(models, tmp_path)
    out = runner.run(uploads)
    assert out.events == len(uploads) and not out.dead_letters
    ctx = Context(agent=SPEC.name, event_id="e", event_time_ms=0, models=models)
    assert SPEC.process(None, Event("other-topic", {}), ctx) == []
    assert [e.topic for e in out.emits] == ["content-enriched"] * len(uploads)
    codec = runner.codec("content-enriched")
    decoded = [codec.decode(e.value) for e in out.emits]
    events = {r["post_id"]: r for r in decoded}
    for u, emitted in zip(uploads, decoded):
        assert emitted["post_id"] == u["post_id"]
        assert emitted["event_id"] == derived_event_id("clip_ai", u["event_id"])
        assert emitted["model_version"] == models.model_version
        # the upload's event time, never the wall clock; no measurement of the run
        assert int(emitted["event_time"].timestamp() * 1000) == u["event_time"]
        assert emitted["latency_ms"] is None
    photo = events["post-0"]
    assert len(photo["image_embedding"]) == 384 and photo["alt_text"].startswith("Photo")
    assert -1 <= photo["alignment_score"] <= 1 and 0 <= photo["quality_score"] <= 1
    assert abs(sum(photo["categories"].values()) - 1) < 1e-4 and "sunday" not in photo["suggested_hashtags"]
    text = events["post-10"]
    assert text["image_embedding"] is None and text["alt_text"] is None and max(text["categories"], key=text["categories"].get) in ("education", "science")
    bad = events["post-11"]
    assert bad["image_embedding"] is None and bad["alt_text"] is None and bad["alignment_score"] is None
    if VIDEO.exists():
        assert events["post-12"]["keyframe_count"] == 4 and events["post-12"]["alt_text"].startswith("Video")
    points = {p.id: p for p in out.views}
    assert list(points) == [u["post_id"] for u in uploads]  # one point per upload, every upload
    point = points["post-0"]
    assert isinstance(point, VectorUpsert) and point.collection == "content"
    assert set(point.vector) == {"image", "semantic", "text"}
    assert point.payload["kind"] == "image" and "published" not in point.payload
    assert point.payload["created_at"] == uploads[0]["event_time"]
    assert set(point.keep) == {"published", "gate_status", "moderation_action", "distribution"}
    assert set(points["post-11"].vector) == {"semantic", "text"}  # bad media: its text only

    # the worker's vector sink creates the collection (the agent opens no store), with the
    # image tower's width taken from the vectors
    with EdgeIndex(tmp_path / "edge") as index:
        sink = VectorSink(index)
        for e in out.views:
            sink.add(e)
        sink.flush()
        assert index.dims("content")["image"] == models.image_dim
        assert index.count("content") == len(uploads)
        search = ContentSearch(index, settings=None)
        search._encoder = type("E", (), {"encode": lambda self, t: {"semantic": models.minilm.encode(t),
                                                                      "text": models.minilm.encode(t)}})()
        assert "motorcycle" in photos[3]["captions"][0]
        query = "a motorbike rider in the mist"  # a paraphrase, not the caption's words
        hits = search.text(query, 3, kind="image")
        assert hits[0].post_id == "post-3" and all(h.payload["kind"] == "image" for h in hits)
        like = search.like("post-0", 3)
        assert "post-0" not in [h.post_id for h in like] and like
        # the gate rule: a post the publisher marked unpublished disappears; --published-only needs published=true
        index.upsert("content", [type(p)(p.id, p.vector, {**p.payload, "published": False})
                                 for p in index.get("content", ["post-3"])])
        assert "post-3" not in [h.post_id for h in search.text(query, 5)]
        assert search.text(query, 5, published_only=True) == []


def test_hashtag_suggestions_come_from_tags_used_before_the_post(models):
    """clip_ai's hashtag side input answers as of the post's time, whatever order it was fed in."""
    texts = {"qubitcraft": "quantum computing with superconducting qubits"}
    post = models.minilm.encode(["I built a small quantum computer out of superconducting qubits"])[0]

    def history(order):
        h = models.hashtag_history()
        for at, tags in order:
            h.apply({"event_time": at, "hashtags": tags})
        return h

    feed = [(1_000, ["qubitcraft"]), (2_000, ["QubitCraft", "sunday"]), (500, ["other"])]
    a, b = history(feed), history(list(reversed(feed)))
    assert a.first_seen == b.first_seen == {"qubitcraft": 1_000, "sunday": 2_000, "other": 500}
    before, after = a.suggest(post, 5, [], 1_000), a.suggest(post, 5, [], 1_001)
    assert "qubitcraft" not in before and after[0] == "qubitcraft", (before, after, texts)
    assert b.suggest(post, 5, [], 1_001) == after  # the same answer whatever the feed order
    assert "qubitcraft" not in a.suggest(post, 5, ["#QubitCraft"], 5_000)  # the post's own tags

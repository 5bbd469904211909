"""open_clip loading, batching and vector-index round trip with a tiny checkpoint built here.

No pretrained CLIP weights are reachable, so the model is a small custom architecture registered
with open_clip and randomly initialised: these tests check the real loading and batching code,
never semantic quality.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from models.clip.openclip import ClipUnavailable, OpenClipTower
from streams.stores.vectors import CollectionSpec, Point
from streams.stores.vectors.edge_index import EdgeIndex


@pytest.fixture(scope="module")
def checkpoint(tiny_clip):
    """The shared tiny open_clip checkpoint directory (``tests/unit/conftest.py``)."""
    return tiny_clip


@pytest.fixture(scope="module")
def tower(checkpoint):
    return OpenClipTower("pulse-test-tiny-clip", checkpoint / "tiny.pt", model_config=checkpoint / "pulse-test-tiny-clip.json")


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)) for i in range(n)]


def test_loads_the_saved_weights_and_embeds_unit_vectors(tower, checkpoint):
    saved = torch.load(checkpoint / "tiny.pt", weights_only=True)
    loaded = tower.model.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert tower.dim == 32 and tower.version.startswith("pulse-test-tiny-clip-")
    v = tower.encode_images(images(3))
    t = tower.encode_texts(["a dog", "a cat on a sofa"])
    assert v.shape == (3, 32) and t.shape == (2, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.vstack([v, t]), axis=1), 1.0, rtol=1e-5)


def test_batching_does_not_change_embeddings(tower):
    ims = images(5)
    np.testing.assert_allclose(tower.encode_images(ims, batch_size=2), tower.encode_images(ims, batch_size=5), atol=1e-5)
    texts = [f"text number {i}" for i in range(7)]
    np.testing.assert_allclose(tower.encode_texts(texts, batch_size=3), tower.encode_texts(texts, batch_size=64), atol=1e-5)


def test_bad_names_and_checkpoints_are_clear_errors(checkpoint, tmp_path):
    with pytest.raises(ClipUnavailable, match="no model"):
        OpenClipTower("no-such-model", checkpoint / "tiny.pt")
    with pytest.raises(ClipUnavailable, match="neither a file"):
        OpenClipTower("pulse-test-tiny-clip", tmp_path / "missing.pt")
    wrong = {k: torch.zeros(1) for k in torch.load(checkpoint / "tiny.pt", weights_only=True)}
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ClipUnavailable):
        OpenClipTower("pulse-test-tiny-clip", tmp_path / "wrong.pt")


def test_clip_vectors_round_trip_through_the_edge_index(tower, tmp_path):
    ims = images(6)
    vecs = tower.encode_images(ims)
    spec = CollectionSpec("content", {"image": tower.dim, "semantic": 8}, "cosine", {"kind": "keyword"})
    with EdgeIndex(tmp_path) as idx:
        idx.ensure_collection(spec)
        idx.upsert("content", [Point(f"p{i}", {"image": v}, {"kind": "image"}) for i, v in enumerate(vecs)])
        q = tower.encode_texts(["anything"])[0]
        hits = idx.search("content", q, 6, using="image")
    expected = np.argsort(-(vecs @ q))
    assert [h.id for h in hits] == [f"p{j}" for j in expected]

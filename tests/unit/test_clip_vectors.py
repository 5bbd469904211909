"""Named vectors (the ``content`` collection's shape) on every VectorIndex engine: one contract.

Expected results are computed here with numpy, never taken from an engine.
"""
from __future__ import annotations

import numpy as np
import pytest

from streams.stores.vectors import CollectionSpec, Point, load_collection_specs
from streams.stores.vectors.edge_index import EdgeIndex
from streams.stores.vectors.qdrant_client_index import QdrantClientIndex

SPEC = CollectionSpec("posts", {"image": 12, "semantic": 8}, "cosine", {"kind": "keyword", "published": "bool"})


@pytest.fixture(params=["edge", "local-memory", "local-path"])
def index(request, tmp_path):
    idx = {"edge": lambda: EdgeIndex(tmp_path / "edge"),
           "local-memory": lambda: QdrantClientIndex(path=":memory:"),
           "local-path": lambda: QdrantClientIndex(path=tmp_path / "local")}[request.param]()
    with idx:
        idx.ensure_collection(SPEC)
        yield idx


def unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def make_points(n: int = 30, seed: int = 0) -> tuple[list[Point], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img, sem = rng.standard_normal((n, 12)), rng.standard_normal((n, 8))
    points = []
    for i in range(n):
        vec = {"semantic": sem[i]} if i % 3 == 2 else {"image": img[i], "semantic": sem[i]}  # text posts: no image
        points.append(Point(f"p{i}", vec, {"kind": "text" if i % 3 == 2 else "image", "published": i % 2 == 0}))
    return points, unit(img), unit(sem)


def test_collections_toml_declares_named_content_vectors():
    content = load_collection_specs()["content"]
    assert content.size == {"clip_text": 1280, "image": 1280, "semantic": 384, "text": 384}
    assert load_collection_specs(dims={"image_dim": 512})["content"].size["image"] == 512
    assert content.payload_indexes["published"] == "bool" and content.payload_indexes["quality"] == "float"


def test_search_uses_the_named_vector_and_skips_points_without_it(index):
    points, img, sem = make_points()
    index.upsert("posts", points)
    assert index.dims("posts") == {"image": 12, "semantic": 8}
    q = np.random.default_rng(9).standard_normal(12)
    has_image = np.array([i % 3 != 2 for i in range(30)])
    scores = np.where(has_image, img @ unit(q), -np.inf)
    expected = [f"p{j}" for j in np.argsort(-scores)[:5]]
    hits = index.search("posts", q, 5, using="image")
    assert [h.id for h in hits] == expected
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:5], rtol=1e-5)
    assert len(index.search("posts", q, 100, using="image")) == int(has_image.sum())
    qs = np.random.default_rng(3).standard_normal((2, 8))
    filtered = index.search_batch("posts", qs, 4, must={"published": True}, using="semantic")
    for row, q8 in zip(filtered, qs):
        s = np.where([i % 2 == 0 for i in range(30)], sem @ unit(q8), -np.inf)
        assert [h.id for h in row] == [f"p{j}" for j in np.argsort(-s)[:4]]


def test_get_returns_only_the_vectors_a_point_has(index):
    points, img, sem = make_points()
    index.upsert("posts", points)
    got = {p.id: p for p in index.get("posts", ["p0", "p2"])}
    assert set(got["p0"].vector) == {"image", "semantic"} and set(got["p2"].vector) == {"semantic"}
    np.testing.assert_allclose(got["p0"].vector["image"], img[0], rtol=1e-5, atol=1e-6)


def test_named_vectors_are_validated_before_writing(index):
    good, _, _ = make_points(3)
    for bad in (Point("x", np.ones(12)), Point("x", {}), Point("x", {"audio": np.ones(8)}),
                Point("x", {"image": np.ones(11)}), Point("x", {"semantic": np.full(8, np.nan)})):
        with pytest.raises(ValueError):
            index.upsert("posts", good + [bad])
    assert index.count("posts") == 0
    with pytest.raises(ValueError, match="using"):
        index.search("posts", np.ones(12))
    with pytest.raises(ValueError):
        index.search("posts", np.ones(12), using="semantic")  # wrong width for that vector


def test_reopen_keeps_named_vectors_and_a_changed_spec_is_refused(tmp_path):
    from streams.stores.vectors import CollectionSpecMismatchError

    points, _, _ = make_points(6)
    with EdgeIndex(tmp_path) as idx:
        idx.ensure_collection(SPEC)
        idx.upsert("posts", points)
    with EdgeIndex(tmp_path) as idx:
        idx.ensure_collection(SPEC)
        assert idx.count("posts") == 6 and idx.dims("posts") == SPEC.size
    with EdgeIndex(tmp_path) as idx, pytest.raises(CollectionSpecMismatchError):
        idx.ensure_collection(CollectionSpec("posts", {"image": 512, "semantic": 8}, "cosine"))


def test_edge_hnsw_parameters_are_written_to_the_shard(tmp_path):
    import json

    with EdgeIndex(tmp_path, hnsw_m=32, hnsw_ef_construct=200, search_ef=128) as idx:
        idx.ensure_collection(SPEC)
        idx.upsert("posts", make_points(5)[0])
        assert [h.id for h in idx.search("posts", np.ones(8), 1, using="semantic")]
    cfg = json.loads((tmp_path / "posts" / "edge_config.json").read_text())
    assert (cfg["hnsw_config"]["m"], cfg["hnsw_config"]["ef_construct"]) == (32, 200)

"""One contract for every VectorIndex engine: qdrant-edge (tmp dir) and qdrant-client local mode
(``:memory:`` and on disk). Every test taking ``backend`` runs identically against each of them;
``disk_backend`` tests (persistence, locking) run against the on-disk ones.

Expected results are computed here with numpy (exact cosine / dot / Euclid / L1, Hamming distance
on 0/1 vectors) and plain Python (filters), never taken from an engine.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from streams.settings import Settings
from streams.stores.vectors import (CollectionNotFoundError, CollectionSpec, CollectionSpecMismatchError,
                             IndexLockedError, Point, VectorIndex, load_collection_specs,
                             open_vector_index, point_uuid)
from streams.stores.vectors import qdrant_client_index
from streams.stores.vectors.edge_index import EdgeIndex
from streams.stores.vectors.qdrant_client_index import QdrantClientIndex

SPECS = load_collection_specs()
HASHES = SPECS["copyright_hashes"]
# the generic suite runs on a one-vector 512-d "content" with the content collection's payload
# indexes; the real content collection has named vectors (tests/unit/test_clip_vectors.py)
CONTENT = CollectionSpec("content", 512, "cosine", SPECS["content"].payload_indexes)


@dataclass
class Backend:
    name: str
    open: Callable[[], VectorIndex]


def _backend(name: str, tmp_path: Path) -> Backend:
    if name == "edge":
        return Backend(name, lambda: EdgeIndex(tmp_path / "edge"))
    if name == "local-path":
        return Backend(name, lambda: QdrantClientIndex(path=tmp_path / "local"))
    return Backend(name, lambda: QdrantClientIndex(path=":memory:"))


@pytest.fixture(params=["edge", "local-memory", "local-path"])
def backend(request, tmp_path) -> Backend:
    return _backend(request.param, tmp_path)


@pytest.fixture(params=["edge", "local-path"])
def disk_backend(request, tmp_path) -> Backend:
    return _backend(request.param, tmp_path)


@pytest.fixture
def index(backend):
    with backend.open() as idx:
        yield idx


def gaussian(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def posts(n: int, seed: int = 0) -> list[Point]:
    """Posts with every filterable payload shape: keyword, int, bool, keyword array."""
    vectors = gaussian(n, CONTENT.size, seed)
    return [Point(f"se-{i}", vectors[i], {
        "post_id": f"se-{i}", "creator_id": f"u{i % 5}", "kind": ["video", "image", "text"][i % 3],
        "categories": [["music", "dance"], ["news"], []][i % 3], "created_at": 1_700_000_000_000 + i * 1000,
        "published": i % 4 != 0, "likes": i % 7}) for i in range(n)]


def assert_same_hits(got, expected):
    """Same ids and payloads in the same order; scores equal to float32 precision (local mode
    scores in float64 before a reload and float32 after)."""
    assert [(h.id, h.payload) for h in got] == [(h.id, h.payload) for h in expected]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in expected], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- specs and ids

def test_collection_specs_from_toml():
    assert SPECS["content"].distance == "cosine"
    assert set(SPECS["content"].size) >= {"image", "semantic", "text"}
    assert (SPECS["user_interests"].size, SPECS["user_interests"].distance) == (512, "cosine")
    assert (HASHES.size, HASHES.distance) == (256, "manhattan")
    assert CONTENT.payload_indexes["categories"] == "keyword"
    assert CONTENT.payload_indexes["created_at"] == "integer"
    assert CONTENT.payload_indexes["published"] == "bool"
    assert set(HASHES.payload_indexes) >= {"reference_id", "modality", "frame"}
    assert all(s.doc for s in SPECS.values())
    small = load_collection_specs(embedding_dim=384)
    assert small["user_interests"].size == 384
    assert small["copyright_hashes"].size == 256


@pytest.mark.parametrize("bad", [dict(size=0), dict(distance="hamming"), dict(payload_indexes={"x": "geo"}),
                                 dict(name="a/b")])
def test_collection_spec_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        CollectionSpec(**{"name": "c", "size": 4, "distance": "cosine", **bad})


def test_point_ids_are_stable_uuid5():
    # Pinned: every stored point id derives from this mapping; changing it orphans all vectors.
    assert point_uuid("se-123") == "4149c3b5-7f0d-5eec-9ff8-cd2e131e3424"
    assert point_uuid("se-123") == point_uuid("se-123") != point_uuid("se-124")
    with pytest.raises(ValueError):
        point_uuid("")


# --------------------------------------------------------------------------- collections

def test_ensure_collection_is_idempotent(index):
    index.ensure_collection(CONTENT)
    index.upsert("content", posts(5))
    index.ensure_collection(CONTENT)
    assert index.count("content") == 5


def test_drop_collection_removes_it_and_reports_absence(index):
    from streams.stores.vectors import CollectionNotFoundError

    index.ensure_collection(CONTENT)
    index.upsert("content", posts(3))
    assert index.drop_collection("content") is True
    with pytest.raises(CollectionNotFoundError):
        index.count("content")
    assert index.drop_collection("content") is False
    index.ensure_collection(CONTENT)  # a dropped collection can be made again, empty
    assert index.count("content") == 0


def test_prefixed_index_keeps_rebuilt_collections_apart(index):
    from dataclasses import replace

    from streams.stores.vectors.prefixed import PrefixedIndex, collection_prefix

    assert collection_prefix("pulse", "pulse") == "" and collection_prefix("v2", "pulse") == "v2__"
    rebuilt = PrefixedIndex(index, "v2__")
    index.ensure_collection(CONTENT)
    rebuilt.ensure_collection(CONTENT)
    index.upsert("content", posts(2))
    rebuilt.upsert("content", posts(3))
    assert index.count("content") == 2 and rebuilt.count("content") == 3
    assert index.count("v2__content") == 3
    assert rebuilt.drop_collection("content") and index.count("content") == 2
    assert replace(CONTENT).name == "content"  # the caller's spec is not renamed


def test_ensure_collection_rejects_another_size_or_distance(index):
    index.ensure_collection(CONTENT)
    for other in (CollectionSpec("content", 384, "cosine"), CollectionSpec("content", 512, "dot")):
        with pytest.raises(CollectionSpecMismatchError):
            index.ensure_collection(other)


def test_unknown_collection_raises(index):
    with pytest.raises(CollectionNotFoundError, match="nope"):
        index.count("nope")
    with pytest.raises(CollectionNotFoundError):
        index.search("nope", np.ones(4))


# --------------------------------------------------------------------------- writes and reads

def test_upsert_overwrites_by_id(index):
    index.ensure_collection(CONTENT)
    index.upsert("content", posts(10))
    new = Point("se-3", gaussian(1, 512, seed=9)[0], {"kind": "image"})
    index.upsert("content", [new])
    assert index.count("content") == 10
    [got] = index.get("content", ["se-3"])
    assert got.payload == {"kind": "image"}  # the whole payload is replaced
    np.testing.assert_allclose(got.vector, new.vector / np.linalg.norm(new.vector), rtol=1e-5, atol=1e-6)


def test_get_keeps_order_skips_missing_and_round_trips_string_ids(index):
    index.ensure_collection(HASHES)
    ids = ["se-1", "user:ünïcode/7", "a" * 200, "42"]
    bits = np.random.default_rng(1).integers(0, 2, (len(ids), 256)).astype(np.float32)
    index.upsert("copyright_hashes", [Point(i, b, {"n": k}) for k, (i, b) in enumerate(zip(ids, bits))])
    got = index.get("copyright_hashes", [ids[2], "missing", ids[0], ids[1], ids[3]])
    assert [p.id for p in got] == [ids[2], ids[0], ids[1], ids[3]]
    assert [p.payload for p in got] == [{"n": 2}, {"n": 0}, {"n": 1}, {"n": 3}]
    np.testing.assert_array_equal(got[0].vector, bits[2])
    assert got[0].vector.dtype == np.float32 and got[0].vector.shape == (256,)
    hit = index.search("copyright_hashes", bits[1], limit=1)[0]
    assert hit.id == ids[1] and "_id" not in hit.payload
    payloads = index.payloads("copyright_hashes", [ids[2], "missing", ids[0], ids[2]])
    assert payloads == {ids[2]: {"n": 2}, ids[0]: {"n": 0}}


def test_delete(index):
    index.ensure_collection(CONTENT)
    data = posts(20)
    index.upsert("content", data)
    index.delete("content", ["se-0", "se-5", "never-there"])
    assert index.count("content") == 18
    assert index.get("content", ["se-0", "se-5", "se-6"])[0].id == "se-6"
    hits = index.search("content", data[5].vector, limit=20)
    assert {h.id for h in hits} == {p.id for p in data} - {"se-0", "se-5"}
    with pytest.raises(ValueError, match="list of ids"):
        index.delete("content", "se-6")  # not six one-character ids


def test_set_payload_merges_keys_keeps_vectors_and_ignores_missing_ids(index):
    index.ensure_collection(CONTENT)
    data = posts(12)
    index.upsert("content", data)
    before = {p.id: p for p in index.get("content", [p.id for p in data])}
    index.set_payload("content", ["se-0", "never-there", "se-4", "se-0"],
                      {"published": True, "moderation_action": "ALLOW", "kind": "image"})
    assert index.count("content") == 12  # no point created for the missing id
    assert index.get("content", ["never-there"]) == []
    after = {p.id: p for p in index.get("content", [p.id for p in data])}
    for pid in ("se-0", "se-4"):
        expected = {**data[int(pid[3:])].payload, "published": True, "moderation_action": "ALLOW", "kind": "image"}
        assert after[pid].payload == expected  # merged: other keys kept, named keys overwritten/added
        np.testing.assert_array_equal(after[pid].vector, before[pid].vector)  # vector untouched
    for pid in set(after) - {"se-0", "se-4"}:
        assert after[pid].payload == before[pid].payload
    # the new values are what filters see (se-0 and se-4 were unpublished before)
    hits = index.search("content", data[0].vector, limit=12, must={"moderation_action": "ALLOW", "published": True})
    assert {h.id for h in hits} == {"se-0", "se-4"}
    index.set_payload("content", [], {"published": False})  # no-ops
    index.set_payload("content", ["se-0"], {})
    assert index.get("content", ["se-0"])[0].payload["published"] is True


def test_set_payload_rejects_reserved_keys_and_unknown_collections(index):
    index.ensure_collection(CONTENT)
    index.upsert("content", posts(2))
    with pytest.raises(ValueError, match="reserved"):
        index.set_payload("content", ["se-0"], {"_id": "spoof"})
    with pytest.raises(ValueError, match="list of ids"):
        index.set_payload("content", "se-0", {"published": True})
    with pytest.raises(CollectionNotFoundError):
        index.set_payload("nope", ["se-0"], {"published": True})
    assert index.get("content", ["se-0"])[0].payload == posts(2)[0].payload


def test_rejects_wrong_dimension_nan_reserved_key_and_bad_id_before_writing(index):
    index.ensure_collection(CONTENT)
    good = posts(3)
    bad_batches = [
        good + [Point("se-x", np.ones(511), {})],
        good + [Point("se-x", np.full(512, np.nan), {})],
        good + [Point("se-x", np.ones(512), {"_id": "spoof"})],
        good + [Point(7, np.ones(512), {})],
    ]
    for batch in bad_batches:
        with pytest.raises(ValueError):
            index.upsert("content", batch)
    assert index.count("content") == 0
    with pytest.raises(ValueError, match=r"'se-x' has shape \(511,\)"):
        index.upsert("content", bad_batches[0])
    with pytest.raises(ValueError, match="512"):
        index.search("content", np.ones(256))
    assert index.search_batch("content", np.empty((0, 512))) == []
    with pytest.raises(ValueError):
        index.search_batch("content", np.ones((2, 511)))


# --------------------------------------------------------------------------- ranking against numpy

def exact_scores(data: np.ndarray, q: np.ndarray, distance: str) -> np.ndarray:
    if distance == "cosine":
        return (data / np.linalg.norm(data, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    if distance == "dot":
        return data @ q
    if distance == "euclid":
        return np.linalg.norm(data - q, axis=1)
    return np.abs(data - q).sum(axis=1)


@pytest.mark.parametrize("distance,dim", [("cosine", 512), ("dot", 64), ("euclid", 64), ("manhattan", 64)])
def test_search_ranking_matches_numpy(index, distance, dim):
    spec = CollectionSpec("vecs", dim, distance)
    index.ensure_collection(spec)
    data = gaussian(1000, dim, seed=2).astype(np.float64)
    index.upsert("vecs", [Point(f"p{i}", v, {}) for i, v in enumerate(data)])
    queries = gaussian(5, dim, seed=3).astype(np.float64)
    for q, hits in zip(queries, index.search_batch("vecs", queries, limit=10)):
        scores = exact_scores(data, q, distance)
        order = np.argsort(-scores if distance in ("cosine", "dot") else scores, kind="stable")[:10]
        assert [h.id for h in hits] == [f"p{i}" for i in order]
        np.testing.assert_allclose([h.score for h in hits], scores[order], rtol=1e-4, atol=1e-4)


def test_manhattan_on_bits_is_hamming_distance(index):
    index.ensure_collection(HASHES)
    rng = np.random.default_rng(4)
    bits = rng.integers(0, 2, (500, 256)).astype(np.float32)
    index.upsert("copyright_hashes", [Point(f"ref-{i}", b, {"reference_id": f"r{i}"}) for i, b in enumerate(bits)])
    query = bits[17].copy()
    query[rng.choice(256, 9, replace=False)] = 1 - query[rng.choice(256, 9, replace=False)]  # re-encoding noise
    hamming = (bits != query).sum(axis=1)
    hits = index.search("copyright_hashes", query, limit=10)
    assert hits[0].id == "ref-17" and hits[0].score == hamming[17] <= 9
    assert [h.score for h in hits] == sorted(hamming)[:10]
    assert all(h.score == hamming[int(h.id.split("-")[1])] for h in hits)


def test_search_batch_equals_single_searches_and_limit_bounds(index):
    index.ensure_collection(CONTENT)
    data = posts(30)
    index.upsert("content", data)
    queries = gaussian(4, 512, seed=5)
    batch = index.search_batch("content", queries, limit=5, must={"published": True})
    for hits, q in zip(batch, queries):
        assert_same_hits(hits, index.search("content", q, limit=5, must={"published": True}))
    assert len(index.search("content", queries[0], limit=100)) == 30
    with pytest.raises(ValueError):
        index.search("content", queries[0], limit=0)


# --------------------------------------------------------------------------- filters

FILTER_CASES = [
    (dict(must={"kind": "video"}), lambda p: p["kind"] == "video"),
    (dict(must={"likes": 3}), lambda p: p["likes"] == 3),
    (dict(must={"published": True}), lambda p: p["published"] is True),
    (dict(must={"published": False}), lambda p: p["published"] is False),
    (dict(must={"categories": "dance"}), lambda p: "dance" in p["categories"]),
    (dict(must={"creator_id": ["u1", "u3"]}), lambda p: p["creator_id"] in ("u1", "u3")),
    (dict(must={"categories": ["news", "dance"]}), lambda p: bool({"news", "dance"} & set(p["categories"]))),
    (dict(must={"likes": [0, 6]}), lambda p: p["likes"] in (0, 6)),
    (dict(must={"created_at": {"gte": 1_700_000_010_000, "lt": 1_700_000_020_000}}),
     lambda p: 1_700_000_010_000 <= p["created_at"] < 1_700_000_020_000),
    (dict(must_not={"kind": "text"}), lambda p: p["kind"] != "text"),
    (dict(must_not={"creator_id": ["u0", "u1"], "published": False}),
     lambda p: p["creator_id"] not in ("u0", "u1") and p["published"]),
    (dict(must={"published": True, "created_at": {"gt": 1_700_000_005_000}}, must_not={"categories": "news"}),
     lambda p: p["published"] and p["created_at"] > 1_700_000_005_000 and "news" not in p["categories"]),
    (dict(must_not={"_id": ["se-1", "se-2"]}), lambda p: p["post_id"] not in ("se-1", "se-2")),
    (dict(must={"creator_id": []}), lambda p: False),
    (dict(must_not={"creator_id": []}), lambda p: True),
]


@pytest.mark.parametrize("filters,expected", FILTER_CASES, ids=[str(c[0]) for c in FILTER_CASES])
def test_filters_select_exactly_the_matching_points(index, filters, expected):
    index.ensure_collection(CONTENT)
    data = posts(40)
    index.upsert("content", data)
    hits = index.search("content", data[0].vector, limit=100, **filters)
    assert {h.id for h in hits} == {p.id for p in data if expected(p.payload)}


def test_range_on_rfc3339_datetimes(index):
    index.ensure_collection(CollectionSpec("events", 4, "euclid", {"at": "datetime"}))
    days = [f"2024-03-{d:02d}T12:00:00Z" for d in range(1, 11)]
    index.upsert("events", [Point(f"e{i}", np.full(4, i), {"at": day}) for i, day in enumerate(days)])
    hits = index.search("events", np.zeros(4), limit=10, must={"at": {"gte": "2024-03-04T00:00:00Z",
                                                                       "lt": "2024-03-07T00:00:00Z"}})
    assert [h.id for h in hits] == ["e3", "e4", "e5"]


@pytest.mark.parametrize("bad", [{"score": 0.5}, {"creator_id": ["u1", 2]}, {"published": [True]},
                                 {"created_at": {"after": 5}}, {"created_at": {}}, {"x": None}])
def test_bad_filters_raise_value_error(index, bad):
    index.ensure_collection(CONTENT)
    with pytest.raises(ValueError):
        index.search("content", np.ones(512), must=bad)


def test_optimize_keeps_results(index):
    index.ensure_collection(CONTENT)
    data = posts(50)
    index.upsert("content", data)
    before = index.search("content", data[3].vector, limit=5)
    index.optimize()
    assert_same_hits(index.search("content", data[3].vector, limit=5, exact=True), before)


# --------------------------------------------------------------------------- on disk

def test_persists_across_close_and_reopen(disk_backend):
    data = posts(25)
    with disk_backend.open() as idx:
        idx.ensure_collection(CONTENT)
        idx.upsert("content", data)
        idx.delete("content", ["se-2"])
        before = idx.search("content", data[7].vector, limit=5, must={"published": True})
    with disk_backend.open() as idx:  # no ensure_collection: the collection is found on disk
        assert idx.count("content") == 24
        assert idx.get("content", ["se-2", "se-9"])[0].payload == data[9].payload
        assert_same_hits(idx.search("content", data[7].vector, limit=5, must={"published": True}), before)
        idx.ensure_collection(CONTENT)
        assert idx.count("content") == 24


def test_writes_survive_a_crash(disk_backend, tmp_path):
    """A process killed after upsert/delete returned (no close, no flush) loses nothing."""
    opener = {"edge": f"EdgeIndex({str(tmp_path / 'edge')!r})",
              "local-path": f"QdrantClientIndex(path={str(tmp_path / 'local')!r})"}[disk_backend.name]
    code = textwrap.dedent(f"""
        import os, warnings
        import numpy as np
        warnings.simplefilter("ignore")
        from streams.stores.vectors import Point, load_collection_specs
        from streams.stores.vectors.edge_index import EdgeIndex
        from streams.stores.vectors.qdrant_client_index import QdrantClientIndex
        index = {opener}
        index.ensure_collection(load_collection_specs()["copyright_hashes"])
        index.upsert("copyright_hashes", [Point(f"r{{i}}", np.full(256, i % 2), {{}}) for i in range(100)])
        index.delete("copyright_hashes", ["r1"])
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    with disk_backend.open() as idx:
        assert idx.count("copyright_hashes") == 99
        assert [p.id for p in idx.get("copyright_hashes", ["r0", "r1", "r99"])] == ["r0", "r99"]


def test_second_opener_gets_a_clear_lock_error(disk_backend):
    with disk_backend.open() as first:
        first.ensure_collection(CONTENT)
        with pytest.raises(IndexLockedError, match="process|client"):
            second = disk_backend.open()
            second.count("content")
    with disk_backend.open() as again:
        assert again.count("content") == 0


def test_edge_lock_names_the_holding_process(tmp_path):
    with EdgeIndex(tmp_path) as idx:
        idx.ensure_collection(HASHES)
        code = textwrap.dedent(f"""
            from streams.stores.vectors.edge_index import EdgeIndex
            from streams.stores.vectors import IndexLockedError
            try:
                EdgeIndex({str(tmp_path)!r}).count("copyright_hashes")
            except IndexLockedError as e:
                print(e)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             cwd=Path(__file__).resolve().parents[2])
        assert f"PID {os.getpid()}" in out.stdout, out.stdout + out.stderr


def test_open_vector_index_picks_the_engine_from_settings(tmp_path, monkeypatch):
    settings = Settings(home=tmp_path, cache_dir=tmp_path / "cache")
    with open_vector_index(settings) as idx:
        assert isinstance(idx, EdgeIndex) and idx.root == settings.qdrant_path
    with open_vector_index(settings, backend="local", path=":memory:") as idx:
        assert isinstance(idx, QdrantClientIndex) and idx.local
    opened = []  # no server here: record what the client would connect to
    monkeypatch.setattr(qdrant_client_index, "QdrantClient", lambda **kw: opened.append(kw) or object())
    remote = open_vector_index(settings.with_(qdrant_url="http://qdrant.example:6333"))
    assert isinstance(remote, QdrantClientIndex) and not remote.local
    assert opened == [{"url": "http://qdrant.example:6333"}]

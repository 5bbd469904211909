"""EdgeIndex's background index builds (streams.stores.vectors.edge_build) on the real engine.

Small data (dim 32, a few thousand clustered points); the thresholds are lowered so that the
engine builds and uses HNSW at that size.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from streams.stores.vectors import edge_build
from streams.stores.vectors.base import CollectionSpec, Point
from streams.stores.vectors.edge_index import EdgeIndex

DIM = 32
SPEC = CollectionSpec("c", DIM, "cosine", {"group": "keyword"})


def _index(root: Path, build_after_points: int | None = 1000) -> EdgeIndex:
    return EdgeIndex(root, build_after_points=build_after_points, indexing_threshold_kb=10,
                     full_scan_threshold_kb=1)


def _clustered(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 32)`` points around 20 centres, and 5 queries near those centres (unit rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    v = centres[rng.integers(0, 20, n)] + 0.15 * rng.standard_normal((n, DIM)).astype(np.float32)
    q = centres[:5] + 0.15 * rng.standard_normal((5, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)


def _points(vectors: np.ndarray, start: int, stop: int) -> list[Point]:
    return [Point(f"p{i}", vectors[i], {"group": f"g{i % 3}", "v": 0}) for i in range(start, stop)]


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_mutations_during_a_build_survive_the_swap_and_search_uses_hnsw(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pulse.vectors")
    vectors, queries = _clustered(3000)
    with _index(tmp_path) as idx:
        idx.ensure_collection(SPEC)
        for start in range(0, 1000, 250):
            idx.upsert("c", _points(vectors, start, start + 250))
        assert idx.poll_builds() == 1  # 1000 points: a build started, and cannot be done yet
        # while it runs (each of these calls also checks for its end)
        for start in range(1000, 3000, 250):
            idx.upsert("c", _points(vectors, start, start + 250))
        deleted = [f"p{i}" for i in range(0, 3000, 7)]
        idx.delete("c", deleted)
        idx.set_payload("c", [f"p{i}" for i in range(1, 3000, 5)], {"v": 1})
        idx.set_payload("c", ["p1", "p2991"], {"v": 2})
        assert idx.wait_builds(timeout=120)

        assert idx.count("c") == 3000 - len(deleted)
        assert idx.get("c", deleted) == []
        payloads = idx.payloads("c", ["p1", "p2991", "p6", "p8"])
        assert [payloads[i]["v"] for i in ("p1", "p2991", "p6", "p8")] == [2, 2, 1, 0]
        info = idx.shard_info("c")
        assert info.indexed_vectors_count > 0
        for q in queries:
            approx = [h.id for h in idx.search("c", q, 10)]
            exact = [h.id for h in idx.search("c", q, 10, exact=True)]
            assert approx == exact
            assert set(approx).isdisjoint(deleted)
    replays = [r.getMessage() for r in caplog.records if "build installed" in r.getMessage()]
    assert replays and not replays[0].startswith("qdrant-edge collection 'c': background index build installed (0 ")
    assert _leftovers(tmp_path) == []
    with _index(tmp_path, build_after_points=None) as idx:  # what was installed is what is on disk
        assert idx.count("c") == 3000 - len(deleted)
        assert idx.payloads("c", ["p1"])["p1"]["v"] == 2


@pytest.mark.parametrize("live_left", [True, False], ids=["new-shard-half-installed", "live-dir-missing"])
def test_reopening_after_a_crash_mid_swap_restores_the_old_shard(tmp_path, live_left):
    vectors, _ = _clustered(500)
    with _index(tmp_path, build_after_points=None) as idx:
        idx.ensure_collection(SPEC)
        idx.upsert("c", _points(vectors, 0, 500))
    live = tmp_path / "c"
    shutil.copytree(live, tmp_path / "old")
    if live_left:  # the built shard renamed in, not yet caught up: it lacks points the old one has
        with _index(tmp_path, build_after_points=None) as idx:
            idx.delete("c", [f"p{i}" for i in range(100)])
    else:
        shutil.rmtree(live)
    (tmp_path / "old").rename(tmp_path / ".c.old")
    shutil.copytree(tmp_path / ".c.old", tmp_path / ".c.build")  # a build that was still running

    with _index(tmp_path, build_after_points=None) as idx:
        assert idx.count("c") == 500
        assert [p.id for p in idx.get("c", ["p0", "p499"])] == ["p0", "p499"]
    assert _leftovers(tmp_path) == []


def test_a_failed_build_leaves_the_live_collection_usable(tmp_path, monkeypatch, caplog):
    real = edge_build.command

    def corrupting(build_dir: Path) -> list[str]:
        (build_dir / "edge_config.json").write_text("{not json")
        return real(build_dir)

    monkeypatch.setattr(edge_build, "command", corrupting)
    vectors, queries = _clustered(2000)
    with _index(tmp_path) as idx:
        idx.ensure_collection(SPEC)
        idx.upsert("c", _points(vectors, 0, 1000))
        assert idx.wait_builds(timeout=60)
        assert any("background index build failed" in r.getMessage() and "edge_build: qdrant-edge shard" in r.getMessage()
                   for r in caplog.records)
        assert _leftovers(tmp_path) == []
        assert idx.count("c") == 1000
        assert idx.shard_info("c").indexed_vectors_count == 0
        assert len(idx.search("c", queries[0], 10)) == 10

        monkeypatch.setattr(edge_build, "command", real)  # the next threshold retries
        idx.upsert("c", _points(vectors, 1000, 2000))
        assert idx.wait_builds(timeout=60)
        assert idx.count("c") == 2000
        assert idx.shard_info("c").indexed_vectors_count > 0


def test_close_stops_a_running_build_and_removes_its_copy(tmp_path):
    vectors, _ = _clustered(1000)
    idx = _index(tmp_path)
    idx.ensure_collection(SPEC)
    idx.upsert("c", _points(vectors, 0, 1000))
    assert idx.poll_builds() == 1
    idx.close()
    assert _leftovers(tmp_path) == []
    with _index(tmp_path, build_after_points=None) as idx:
        assert idx.count("c") == 1000


def test_the_build_process_reports_a_bad_directory(tmp_path):
    import subprocess

    done = subprocess.run(edge_build.command(tmp_path / "missing"), capture_output=True, text=True)
    assert done.returncode == 1 and "edge_build: qdrant-edge shard" in done.stderr
    assert edge_build.main([str(tmp_path)]) == 2  # no parent PID


def test_the_setting_reaches_the_index_the_live_system_opens(tmp_path):
    from streams.settings import Settings, SettingsError
    from streams.stores.vectors import open_vector_index

    assert Settings.from_env({"PULSE_HOME": str(tmp_path)}).vector_index_build_points == 10_000
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_VECTOR_INDEX_BUILD_POINTS": "0"})
    with open_vector_index(settings) as idx:
        assert isinstance(idx, EdgeIndex) and idx.build_after_points == 0
    with open_vector_index(settings.with_(vector_index_build_points=2500)) as idx:
        assert idx.build_after_points == 2500
    with pytest.raises(SettingsError, match="PULSE_VECTOR_INDEX_BUILD_POINTS=-1 is negative"):
        Settings.from_env({"PULSE_VECTOR_INDEX_BUILD_POINTS": "-1"})

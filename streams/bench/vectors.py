"""Vector-index benchmark: upsert throughput and search latency per engine, against numpy exact search.

``run_vector_bench`` is the body of ``pulse bench vectors``; it prints nothing and returns the figures.
"""
from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from streams.stores.vectors.base import CollectionSpec, Point, VectorIndex

ENGINES = ("edge", "local-memory", "local-path", "numpy")


def _open(engine: str, root: Path) -> VectorIndex:
    if engine == "edge":
        from streams.stores.vectors.edge_index import EdgeIndex
        return EdgeIndex(root / "edge", build_after_points=None)  # exact scan until optimize()
    from streams.stores.vectors.qdrant_client_index import QdrantClientIndex
    return QdrantClientIndex(path=":memory:" if engine == "local-memory" else root / "local")


def _payload(i: int) -> dict:
    return {"creator_id": f"u{i % 1000}", "published": i % 4 != 0, "created_at": 1_700_000_000_000 + i * 1000,
            "categories": [f"c{i % 20}"]}


def _latency_ms(fn, queries: np.ndarray) -> np.ndarray:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t0) * 1000)
    return np.asarray(times)


def run_vector_bench(n: int = 100_000, dim: int = 512, queries: int = 100, *,
                     engines: Sequence[str] = ("edge", "local-memory", "numpy"), limit: int = 10,
                     optimize: bool = False, data: Literal["random", "clustered"] = "random", seed: int = 0,
                     root: Path | str | None = None) -> dict:
    """Insert ``n`` random ``(dim,)`` cosine vectors per engine, then time ``queries`` searches.

    Per engine: ``upsert_points_per_s`` (``VectorIndex.upsert`` of all points, batches of 512, with a
    4-field payload; numpy: stacking and normalising the matrix), ``search_p50_ms`` /
    ``search_p95_ms`` (one query at a time, top ``limit``), ``filtered_search_p50_ms`` (with
    ``must={"published": True, "created_at": {"gte": ...}}``, 37.5% of points pass) and
    ``recall_at_k`` against numpy's exact top ``limit``. ``optimize=True`` also runs the edge
    optimizer (blocking, minutes at 100k x 512 on 2 cores) and reports ``optimize_s`` and the
    searches after it. ``ratios`` divide each engine's search p50 by numpy's, measured in the same
    run; ``batch_search_qps`` is ``search_batch`` over all queries at once.

    ``data="random"``: i.i.d. Gaussian vectors, the worst case for HNSW (after ``optimize`` its
    recall is low: measured 0.12 at 100k x 512 with the default ef). ``"clustered"``: 500 Gaussian
    centres plus noise (sigma 0.5 per dimension), closer to real embeddings. Engines: ``edge``,
    ``local-memory``, ``local-path``, ``numpy``. Data goes to a temporary directory under ``root``
    (default: the system's), removed afterwards.
    """
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise ValueError(f"unknown engines {sorted(unknown)}; choose from {ENGINES}")
    rng = np.random.default_rng(seed)
    if data not in ("random", "clustered"):
        raise ValueError(f"data is 'random' or 'clustered', got {data!r}")
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    qs = rng.standard_normal((queries, dim)).astype(np.float32)
    if data == "clustered":
        centres = rng.standard_normal((500, dim)).astype(np.float32)
        vectors = 0.5 * vectors + centres[rng.integers(0, 500, n)]
        qs = 0.5 * qs + centres[rng.integers(0, 500, queries)]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = np.argsort(-(qs / np.linalg.norm(qs, axis=1, keepdims=True)) @ unit.T, axis=1)[:, :limit]
    ids = [f"p{i}" for i in range(n)]
    t_from = 1_700_000_000_000 + (n // 2) * 1000
    must = {"published": True, "created_at": {"gte": t_from}}
    report = {"n": n, "dim": dim, "queries": queries, "limit": limit, "data": data, "engines": {}}

    def recall(results: list[list[str]]) -> float:
        return float(np.mean([len(set(r) & {ids[j] for j in t}) / limit for r, t in zip(results, truth)]))

    for engine in engines:
        if engine == "numpy":
            t0 = time.perf_counter()
            m = np.vstack([vectors[i:i + 512] for i in range(0, n, 512)])
            m /= np.linalg.norm(m, axis=1, keepdims=True)
            build = time.perf_counter() - t0
            published = np.array([i % 4 != 0 and i >= n // 2 for i in range(n)])

            def top(q, mask=None):
                s = m @ (q / np.linalg.norm(q))
                if mask is not None:
                    s = np.where(mask, s, -np.inf)
                k = np.argpartition(-s, limit)[:limit]
                return k[np.argsort(-s[k])]

            lat = _latency_ms(top, qs)
            flat = _latency_ms(lambda q: top(q, published), qs)
            t0 = time.perf_counter()
            scores = (qs / np.linalg.norm(qs, axis=1, keepdims=True)) @ m.T
            np.argpartition(-scores, limit, axis=1)[:, :limit]
            report["engines"]["numpy"] = {"batch_search_qps": queries / (time.perf_counter() - t0),
                "upsert_points_per_s": n / build, "search_p50_ms": float(np.median(lat)),
                "search_p95_ms": float(np.percentile(lat, 95)), "filtered_search_p50_ms": float(np.median(flat)),
                "recall_at_k": recall([[ids[j] for j in top(q)] for q in qs])}
            continue
        with tempfile.TemporaryDirectory(dir=root) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode: "more than 20000 points", "payload indexes"
            index = _open(engine, Path(tmp))
            try:
                index.ensure_collection(CollectionSpec("bench", dim, "cosine", {
                    "creator_id": "keyword", "published": "bool", "created_at": "integer", "categories": "keyword"}))
                points = [Point(ids[i], vectors[i], _payload(i)) for i in range(n)]
                t0 = time.perf_counter()
                index.upsert("bench", points)
                figures = {"upsert_points_per_s": n / (time.perf_counter() - t0)}
                figures.update(_search_figures(index, qs, limit, must, recall))
                if optimize and engine == "edge":
                    t0 = time.perf_counter()
                    index.optimize()
                    figures["optimize_s"] = time.perf_counter() - t0
                    after = _search_figures(index, qs, limit, must, recall)
                    figures.update({f"after_optimize_{k}": v for k, v in after.items()})
            finally:
                index.close()
        report["engines"][engine] = figures
    base = report["engines"].get("numpy", {}).get("search_p50_ms")
    if base:
        report["ratios"] = {f"{e}_search_p50_vs_numpy": f["search_p50_ms"] / base
                            for e, f in report["engines"].items() if e != "numpy"}
    return report


def _search_figures(index: VectorIndex, qs: np.ndarray, limit: int, must: dict, recall) -> dict:
    lat = _latency_ms(lambda q: index.search("bench", q, limit), qs)
    flat = _latency_ms(lambda q: index.search("bench", q, limit, must=must), qs)
    t0 = time.perf_counter()
    index.search_batch("bench", qs, limit)
    batch_qps = len(qs) / (time.perf_counter() - t0)
    return {"search_p50_ms": float(np.median(lat)), "search_p95_ms": float(np.percentile(lat, 95)),
            "batch_search_qps": batch_qps,
            "filtered_search_p50_ms": float(np.median(flat)),
            "recall_at_k": recall([[h.id for h in index.search("bench", q, limit)] for q in qs])}

"""``pulse bench clip``: embedding throughput and vector-index search latency/recall, one JSON.

Embeddings: images/s through the ImageNet tower (+ bridge) and texts/s through MiniLM at batch
sizes 1, 8, 32 (and CLIP's towers when configured), on the COCO photos and captions.

Vector index: ``points`` vectors in MiniLM's 384-d space (the ``semantic`` vector search uses):
"realistic" = real MiniLM embeddings (the COCO captions and the 1000 ImageNet label sentences)
as centres plus Gaussian noise of norm about 0.6 (each point's cosine to its centre is about
0.85), and optionally "random" = i.i.d. Gaussian (HNSW's worst case). Per engine: upsert
points/s, then unfiltered and filtered (``published`` and ``created_at >= median``: 37.5 % of
points pass) search p50/p99 over ``queries`` single queries, and recall@10 against an exact numpy
search of the same points with the same filter, measured in the same run. The edge engine is
measured before and after ``optimize()`` (HNSW build; its time is reported), with the HNSW
parameters given, and "live": the points streamed in batches of ``LIVE_BATCH`` into a fresh
index with background builds on (``build_after_points``, never ``optimize()``), as a worker
writes them; reported: the writer's longest stall (one batch's upsert, which includes starting a
build and installing a finished one) next to ``optimize_s``, the wait for the last builds after
the stream, and the searches once they are installed.
"""
from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from streams.stores.vectors.base import CollectionSpec, Point, VectorIndex

LIMIT = 10
LIVE_BATCH = 256
"""Points per ``upsert`` call in the live figure (a worker's batch)."""
PAYLOAD_INDEXES = {"creator_id": "keyword", "published": "bool", "created_at": "integer", "categories": "keyword"}


def _pct(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def embedding_throughput(data_dir: Path, batch_sizes=(1, 8, 32), config=None) -> dict:
    """images/s and texts/s per batch size for each tower (warm; the first call is not timed)."""
    from models.clip.enrich import ClipConfig, ContentModels
    from models.clip.evaluate import load_captioned
    from models.fingerprints.image import load_image

    models = ContentModels(config or ClipConfig())
    paths, captions, _ = load_captioned(data_dir)
    images = [load_image(p) for p in paths[:32]]
    towers = {"imagenet_bridge": (lambda ims: models.bridge.bridge(models.imagenet.encode(ims, batch_size=len(ims))[1]),
                                  lambda ts: models.minilm.encode(ts, batch_size=len(ts)))}
    if models.clip is not None:
        towers["clip"] = (lambda ims: models.clip.encode_images(ims, len(ims)), lambda ts: models.clip.encode_texts(ts, len(ts)))
    out = {}
    for name, (enc_img, enc_txt) in towers.items():
        enc_img(images[:2]), enc_txt(captions[:2])  # warm-up
        fig = {}
        for b in batch_sizes:
            n_img = max(b, 16 if b == 1 else 32)
            t0 = time.perf_counter()
            for s in range(0, n_img, b):
                enc_img([images[(s + i) % len(images)] for i in range(b)])
            fig[f"images_per_s_batch_{b}"] = n_img / (time.perf_counter() - t0)
            n_txt = max(b, 64 if b == 1 else 256)
            t0 = time.perf_counter()
            for s in range(0, n_txt, b):
                enc_txt([captions[(s + i) % len(captions)] for i in range(b)])
            fig[f"texts_per_s_batch_{b}"] = n_txt / (time.perf_counter() - t0)
        out[name] = fig
    out["threads"] = __import__("torch").get_num_threads()
    return out


def realistic_vectors(data_dir: Path, n: int, queries: int, seed: int = 0, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 384)`` points and ``(queries, 384)`` queries: real MiniLM embeddings plus noise."""
    from models.clip.evaluate import load_captioned
    from models.clip.imagenet import imagenet_labels
    from models.clip.text import MiniLM

    _, captions, _ = load_captioned(data_dir)
    centres = MiniLM().encode(list(captions) + [f"a {x}" for x in imagenet_labels()], batch_size=128)
    rng = np.random.default_rng(seed)
    d = centres.shape[1]

    def draw(m: int) -> np.ndarray:
        v = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, d)).astype(np.float32) * noise / np.sqrt(d)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(queries)


def _payload(i: int) -> dict:
    return {"creator_id": f"u{i % 1000}", "published": i % 4 != 0, "created_at": 1_700_000_000_000 + i * 1000,
            "categories": [f"c{i % 20}"]}


def _exact(vectors: np.ndarray, qs: np.ndarray, mask: np.ndarray | None) -> tuple[list[np.ndarray], list[float]]:
    res, ms = [], []
    for q in qs:
        t0 = time.perf_counter()
        s = vectors @ q
        if mask is not None:
            s = np.where(mask, s, -np.inf)
        k = np.argpartition(-s, LIMIT)[:LIMIT]
        res.append(k[np.argsort(-s[k])])
        ms.append((time.perf_counter() - t0) * 1000)
    return res, ms


def _timed_search(index: VectorIndex, qs: np.ndarray, must: dict | None, truth: list[np.ndarray],
                  ids: list[str]) -> dict:
    ms, recalls = [], []
    for q, t in zip(qs, truth):
        t0 = time.perf_counter()
        hits = index.search("bench", q, LIMIT, must=must)
        ms.append((time.perf_counter() - t0) * 1000)
        recalls.append(len({h.id for h in hits} & {ids[j] for j in t}) / LIMIT)
    return {**_pct(ms), "recall_at_10": float(np.mean(recalls))}


def index_bench(vectors: np.ndarray, qs: np.ndarray, *, engines=("edge", "local-memory"),
                hnsw_m: int = 32, hnsw_ef_construct: int = 200, search_ef: int = 128,
                build_after_points: int = 10_000, on_step: Callable[[str], None] = lambda m: None) -> dict:
    """Figures (module docstring) for ``vectors`` and queries ``qs`` (unit rows)."""
    from streams.stores.vectors.edge_index import EdgeIndex
    from streams.stores.vectors.qdrant_client_index import QdrantClientIndex

    n = len(vectors)
    ids = [f"p{i}" for i in range(n)]
    mask = np.array([i % 4 != 0 and i >= n // 2 for i in range(n)])
    must = {"published": True, "created_at": {"gte": 1_700_000_000_000 + (n // 2) * 1000}}
    truth, ms = _exact(vectors, qs, None)
    ftruth, fms = _exact(vectors, qs, mask)
    report = {"numpy_exact": {"search": _pct(ms), "filtered_search": _pct(fms)}}
    for engine in engines:
        on_step(f"{engine}: upserting {n} points")
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            index = (EdgeIndex(Path(tmp), hnsw_m=hnsw_m, hnsw_ef_construct=hnsw_ef_construct, search_ef=search_ef,
                               build_after_points=None)
                     if engine == "edge" else QdrantClientIndex(path=":memory:"))
            try:
                index.ensure_collection(CollectionSpec("bench", vectors.shape[1], "cosine", PAYLOAD_INDEXES))
                points = [Point(ids[i], vectors[i], _payload(i)) for i in range(n)]
                t0 = time.perf_counter()
                index.upsert("bench", points)
                fig = {"upsert_points_per_s": n / (time.perf_counter() - t0)}
                on_step(f"{engine}: searching")
                m = len(qs) if engine == "edge" else min(len(qs), 20)  # local mode: ~1-4 s per query at 100k
                fig["queries"] = m
                fig["search"] = _timed_search(index, qs[:m], None, truth[:m], ids)
                fig["filtered_search"] = _timed_search(index, qs[:m], must, ftruth[:m], ids)
                if engine == "edge":
                    on_step("edge: optimize() (HNSW build, minutes)")
                    t0 = time.perf_counter()
                    index.optimize()
                    fig["optimize_s"] = time.perf_counter() - t0
                    fig["hnsw"] = {"m": hnsw_m, "ef_construct": hnsw_ef_construct, "search_ef": search_ef}
                    on_step("edge: searching after optimize")
                    fig["after_optimize"] = {"search": _timed_search(index, qs, None, truth, ids),
                                             "filtered_search": _timed_search(index, qs, must, ftruth, ids)}
            finally:
                index.close()
        if engine == "edge" and build_after_points:
            on_step(f"edge: streaming {n} points with background builds every {build_after_points}")
            fig["live"] = _live(points, qs, must, truth, ftruth, ids, build_after_points,
                                hnsw_m=hnsw_m, hnsw_ef_construct=hnsw_ef_construct, search_ef=search_ef)
        report[engine] = fig
    return report


def _live(points: list[Point], qs: np.ndarray, must: dict, truth, ftruth, ids: list[str], build_after_points: int,
          **hnsw) -> dict:
    """The "live" figures (module docstring) for ``points``."""
    from streams.stores.vectors.edge_index import EdgeIndex

    with tempfile.TemporaryDirectory() as tmp:
        index = EdgeIndex(Path(tmp), build_after_points=build_after_points, **hnsw)
        try:
            index.ensure_collection(CollectionSpec("bench", len(points[0].vector), "cosine", PAYLOAD_INDEXES))
            stalls = []
            t0 = time.perf_counter()
            for start in range(0, len(points), LIVE_BATCH):
                t = time.perf_counter()
                index.upsert("bench", points[start:start + LIVE_BATCH])
                stalls.append((time.perf_counter() - t) * 1000)
            fig = {"build_after_points": build_after_points, "batch": LIVE_BATCH,
                   "stream_s": time.perf_counter() - t0, "upsert_batch": {**_pct(stalls), "max_ms": max(stalls)},
                   "builds_running_at_end": index.poll_builds()}
            t0 = time.perf_counter()
            index.wait_builds()
            info = index.shard_info("bench")
            fig.update({"wait_builds_s": time.perf_counter() - t0, "builds": dict(index.builds),
                        "indexed_vectors": info.indexed_vectors_count, "points": info.points_count,
                        "search": _timed_search(index, qs, None, truth, ids),
                        "filtered_search": _timed_search(index, qs, must, ftruth, ids)})
        finally:
            index.close()
    return fig


def run_clip_bench(data_dir: Path | str, *, points: int = 100_000, queries: int = 200, models: bool = True,
                   random_data: bool = True, engines=("edge", "local-memory"),
                   on_step: Callable[[str], None] = lambda m: None, **hnsw) -> dict:
    """The whole benchmark as one JSON-able dict (``hnsw``: :func:`index_bench`'s keywords)."""
    data_dir = Path(data_dir)
    t0 = time.perf_counter()
    report: dict = {"points": points, "queries": queries, "limit": LIMIT, "dim": 384}
    if models:
        on_step("embedding throughput")
        report["embeddings"] = embedding_throughput(data_dir)
    vectors, qs = realistic_vectors(data_dir, points, queries)
    report["realistic"] = index_bench(vectors, qs, engines=engines, on_step=lambda m: on_step(f"realistic: {m}"),
                                      **hnsw)
    if random_data:
        rng = np.random.default_rng(1)
        v = rng.standard_normal((points, 384)).astype(np.float32)
        q = rng.standard_normal((queries, 384)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        report["random"] = index_bench(v, q, engines=("edge",), on_step=lambda m: on_step(f"random: {m}"), **hnsw)
    report["seconds"] = time.perf_counter() - t0
    return report

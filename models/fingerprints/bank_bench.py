"""Benchmark of the PDQ bank: multi-index hashing against a brute-force numpy scan, same run.

``python -m models.fingerprints.bank_bench`` prints the JSON of ``run_bank_bench()``.
"""

from __future__ import annotations

import json
import time

import numpy as np

from models.fingerprints.bank import PDQBank, brute_force_search

ADD_BATCH = 100_000
PLANTED_PER_QUERY = 8
"""Near-duplicates planted in the bank around each query's base hash, at random distances 0-40."""


def _flip(rows: np.ndarray, k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copy of ``rows`` ``(n, 32) uint8`` with ``k[i]`` distinct random bits of row i flipped."""
    bits = np.unpackbits(rows, axis=1)
    order = np.argsort(rng.random(bits.shape), axis=1)  # a random permutation of bits per row
    flips = order < k[:, None]
    return np.packbits(bits ^ flips, axis=1)


def _bank_rows(n: int, queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 32) uint8`` uniform hashes with near-duplicates of each query base planted, and the
    ``(queries, 32)`` queries (each within 0-8 bits of its base)."""
    rows = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    bases = rng.integers(0, 256, size=(queries, 32), dtype=np.uint8)
    planted = _flip(
        np.repeat(bases, PLANTED_PER_QUERY, axis=0),
        rng.integers(0, 41, size=queries * PLANTED_PER_QUERY),
        rng,
    )
    rows[rng.choice(n, size=len(planted), replace=False)] = planted
    return rows, _flip(bases, rng.integers(0, 9, size=queries), rng)


def _percentiles_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def run_bank_bench(
    sizes: tuple[int, ...] = (100_000, 1_000_000),
    queries: int = 200,
    radius: int = 31,
    seed: int = 0,
) -> dict:
    """Build banks of ``sizes`` random PDQ hashes with planted near-duplicates; time ``add`` (in
    batches of ``ADD_BATCH``, plus the index build), ``search`` p50/p99 (ms) for the MIH bank and
    for ``brute_force_search`` over the same rows with the same queries, and the recall of the bank
    against brute force (1.0 expected: the search is exact).

    Returns ``{"radius", "queries", "seed", "banks": [{"size", "add_per_s", "index_build_s",
    "mih": {p50_ms, p99_ms, mean_ms}, "brute_force": {...}, "recall", "exact_match",
    "hits_per_query", "memory_mb"}]}``.
    """
    rng = np.random.default_rng(seed)
    out = {"radius": radius, "queries": queries, "seed": seed, "banks": []}
    for n in sizes:
        rows, qs = _bank_rows(n, queries, rng)
        ids = [f"h{i}" for i in range(n)]
        bank = PDQBank()
        t0 = time.perf_counter()
        for lo in range(0, n, ADD_BATCH):
            bank.add(ids[lo : lo + ADD_BATCH], rows[lo : lo + ADD_BATCH])
        t1 = time.perf_counter()
        bank.build_index()
        t2 = time.perf_counter()
        for q in qs[:5]:  # warm-up
            bank.search(q, radius)
        mih_s, brute_s, found, truth, exact = [], [], 0, 0, True
        for q in qs:
            t = time.perf_counter()
            hits = bank.search(q, radius)
            mih_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            b_rows, b_dist = brute_force_search(rows, q, radius)
            brute_s.append(time.perf_counter() - t)
            want = {(ids[r], int(d)) for r, d in zip(b_rows.tolist(), b_dist.tolist())}
            got = set(hits)
            found += len(got & want)
            truth += len(want)
            exact &= got == want
        out["banks"].append(
            {
                "size": n,
                "add_per_s": round(n / (t2 - t0)),
                "add_s": round(t1 - t0, 3),
                "index_build_s": round(t2 - t1, 3),
                "mih": _percentiles_ms(mih_s),
                "brute_force": _percentiles_ms(brute_s),
                "recall": found / truth if truth else 1.0,
                "exact_match": exact,
                "hits_per_query": round(truth / queries, 2),
                "memory_mb": round(bank.nbytes / 2**20, 1),
            }
        )
    return out


if __name__ == "__main__":
    print(json.dumps(run_bank_bench(), indent=2))

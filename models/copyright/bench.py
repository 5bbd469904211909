"""``pulse bench copyright``: what Copyright Guard costs, with same-run baselines.

- fingerprinting: ms per image (PDQ + its 8 dihedral variants, pHash, ORB), per audio second
  (Chromaprint), per video second (frames sampled, trimmed, PDQ-hashed; audio track);
- the PDQ bank: look-up p50/p99 at 100,000 and 1,000,000 hashes, multi-index hashing against a
  brute-force numpy scan of the same hashes in the same run, and recall against it
  (``models.fingerprints.bank_bench.run_bank_bench``);
- the robust stage: ORB extraction, one verification, and a whole image upload matched against
  a bank of ``ROBUST_EXHAUSTIVE_MAX`` image references that it does not match (the worst case of
  the exhaustive regime: every reference is verified);
- ``agent.events_per_s``: the copyright_guard agent through the broker, filled in by the runtime's
  benchmark through the ``agent_events_per_s`` argument (None here otherwise).

Real media come from ``../shared/data``; without it the media figures are skipped with the reason.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.copyright import matching as mt
from models.copyright.bank import ReferenceBank
from models.copyright.evaluation import DATA
from models.fingerprints import chromaprint_file, hash_image, load_image, pdq_dihedral
from models.fingerprints.bank_bench import run_bank_bench
from models.fingerprints.robust import orb_features, verify


def _ms(seconds: list[float]) -> dict:
    a = np.array(seconds) * 1e3
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "mean_ms": round(float(a.mean()), 2)}


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def _images(data: Path) -> list[Path]:
    return sorted((data / "coco-captions" / "images").glob("*.jpg"))


def bench_fingerprints(data: Path = DATA) -> dict:
    """Fingerprint costs on real media (see the module docstring)."""
    images = _images(data)
    if not images:
        return {"skipped": f"no real media at {data}"}
    per_image, orb_s = [], []
    for p in images:
        t = time.perf_counter()
        im = load_image(str(p))
        hash_image(im)
        pdq_dihedral(im)
        t_orb = time.perf_counter()
        orb_features(im)
        per_image.append(time.perf_counter() - t)
        orb_s.append(time.perf_counter() - t_orb)
    audio = []
    for p in [data / "chromaprint" / "test.mp3"]:
        fp, s = _timed(chromaprint_file, p)
        audio.append((s, fp.duration_s))
    video = []
    for p in [data / "threatexchange" / "videos" / "pattern-hd-no-bar.mp4",
              data / "media" / "video" / "bigbuckbunny.mp4", data / "media" / "video" / "cityCC0.mpg"]:
        t = time.perf_counter()
        frames, info = mt.video_frames(p)
        if info["has_audio"]:
            chromaprint_file(p)
        video.append((time.perf_counter() - t, info["duration"], len(frames)))
    return {
        "image": dict(_ms(per_image), what="load + PDQ + 8 dihedral PDQ + pHash + ORB, COCO photos",
                      orb=_ms(orb_s)),
        "audio_ms_per_second": round(1e3 * sum(s for s, _ in audio) / sum(d for _, d in audio), 2),
        "video_ms_per_second": round(1e3 * sum(s for s, _, _ in video)
                                     / sum(d for _, d, _ in video), 1),
        "video_files": [{"seconds": round(d, 2), "frames": n, "ms": round(s * 1e3, 1)}
                        for s, d, n in video],
    }


def bench_robust(data: Path = DATA, *, uploads: int = 10) -> dict:
    """Cost of the robust stage: extraction, one verification, and an unmatched image upload
    against ``ROBUST_EXHAUSTIVE_MAX`` references (every one verified: the bound)."""
    images = _images(data)
    if len(images) < 20:
        return {"skipped": f"no real media at {data}"}
    import skimage

    extra = sorted(p for p in (Path(skimage.__file__).parent / "data").glob("*.*")
                   if p.suffix in (".png", ".jpg"))
    pool = (images + extra)
    refs, queries = pool[uploads:uploads + mt.ROBUST_EXHAUSTIVE_MAX], pool[:uploads]
    bank = ReferenceBank()
    for p in refs:
        bank.register_file(p)
    feats = [orb_features(load_image(str(p))) for p in images[:20]]
    verify_s = []
    for i in range(len(feats)):
        for j in range(len(feats)):
            if i != j:
                verify_s.append(_timed(verify, feats[i], feats[j])[1])
    extract_s = [_timed(orb_features, load_image(str(p)))[1] for p in images[:20]]
    upload_s = []
    for p in queries:
        im = load_image(str(p))
        d, s = _timed(bank.match_image, im)
        upload_s.append(s)
    verifications = len(refs)
    return {
        "orb_extract": _ms(extract_s),
        "verify_one": _ms(verify_s),
        "unmatched_image_upload": dict(_ms(upload_s), references_verified=verifications,
                                       what="PDQ dihedral search + ORB + every reference verified"),
        "bound": {"image_exhaustive_max": mt.ROBUST_EXHAUSTIVE_MAX,
                  "image_top_k_beyond": mt.ROBUST_TOP_K,
                  "video_references_max": mt.ROBUST_VIDEO_TOP_K,
                  "video_verifications_per_unmatched_reference":
                      mt.ROBUST_PROBE_FRAMES * mt.ORB_REFERENCE_FRAMES,
                  "estimated_worst_image_ms": round(
                      statistics.median(extract_s) * 1e3
                      + mt.ROBUST_EXHAUSTIVE_MAX * statistics.median(verify_s) * 1e3, 1)},
    }


def run_bench(bank_sizes: tuple[int, ...] = (100_000, 1_000_000), queries: int = 200, *,
              agent_events_per_s: Callable[[], float] | float | None = None,
              on_step: Callable[[str], None] | None = None, data: Path = DATA) -> dict:
    """All the figures of the module docstring as one JSON-ready dict.

    ``agent_events_per_s``: the hook for the broker benchmark of the copyright_guard agent (a
    number, or a callable run last that returns one); reported as ``agent.events_per_s``.
    """
    step = on_step or (lambda m: None)
    t0 = time.perf_counter()
    step("fingerprints")
    fingerprints = bench_fingerprints(data)
    step("robust stage")
    robust = bench_robust(data)
    step(f"PDQ bank at {', '.join(map(str, bank_sizes))} hashes")
    bank = run_bank_bench(sizes=bank_sizes, queries=queries)
    for b in bank["banks"]:
        b["speedup_vs_brute_force_p50"] = round(b["brute_force"]["p50_ms"] / b["mih"]["p50_ms"], 1)
    events = agent_events_per_s
    if callable(events):
        step("agent through the broker")
        events = events()
    agent = events if isinstance(events, dict) else {
        "events_per_s": events,
        "note": "copyright_guard through the broker; measured by the runtime's benchmark "
                "(run_bench(agent_events_per_s=...))"}
    return {
        "fingerprint": fingerprints,
        "robust_stage": robust,
        "pdq_bank": bank,
        "agent": agent,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }

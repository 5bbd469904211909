"""``pulse eval moderation``: the tiered text moderator on labelled rows it never saw.

Held-out rows are those whose text key (``datasets.text_key``) is not among the keys the artifact
recorded for its training and validation rows (``seen_keys.npy``). For the file the model was
trained on (``labeled_dev.csv``) these are exactly the test part of the recorded split; for any
other file, every row the model did not see.

The report gives, for the default fast model and (when the artifact has one) the other: per-class
precision/recall/F1 and weighted F1 of the whole system (a text's label is the fast tier's where it
decided, else the heavy tier's; items sent to human REVIEW count with the heavy tier's best guess,
and ``auto_decided_only`` leaves them out), the share of texts each tier decided, each tier's
per-item latency (p50/p99, one text per call, as a stream worker sees it), the Davidson anchor and
whether the goals are met, and the distilled-vs-undistilled comparison.
"""

from __future__ import annotations

import time

import numpy as np

from models.moderation import artifacts
from models.moderation import metrics as M
from models.moderation.datasets import DataError, read_labelled, text_key
from models.moderation.routing import TierRule
from models.moderation.text_fast import FastTextModel
from models.moderation.tiers import load_moderator


def _noop(stage: str, done: int, total: int) -> None:
    pass


def evaluate(data: str, version: str | None = None, *, progress=_noop,
             latency_sample: int = 400) -> dict:
    """Evaluate artifact ``version`` (None: the shipped default) on the unseen rows of ``data``.

    ``latency_sample``: at most this many texts timed one per call for each tier.

    Raises
    ------
    DataError : unreadable file, or every row was seen in training.
    artifacts.ModelNotFound : no such artifact.
    """
    rows = read_labelled(data)
    mod = load_moderator(version)
    cfg = mod.config
    seen = artifacts.load_seen_keys(mod.directory)
    keys = np.array([int(text_key(r.text), 16) for r in rows], dtype=np.uint64)
    unseen = ~np.isin(keys, seen)
    if not unseen.any():
        raise DataError(f"{data}: every row was used to train or validate {mod.version}; "
                        "nothing is held out")
    texts = [r.text for r, u in zip(rows, unseen) if u]
    y = np.array([r.label for r, u in zip(rows, unseen) if u])

    variants = {}
    for name in cfg["fast"]:
        model = mod.fast_model if name == mod.fast_variant else FastTextModel.load(
            mod.directory / f"fast_{name}.npz")
        variants[name] = (model.predict_proba(texts), TierRule(**cfg["fast"][name]["rule"]),
                          TierRule(**cfg["heavy"][name]["rule"]))
    handed = np.zeros(len(texts), bool)
    for p, rule, _ in variants.values():
        handed |= ~rule.decided(p)
    idx = np.flatnonzero(handed)
    progress("heavy tier", 0, len(idx))
    p_heavy = np.zeros((len(texts), 3))
    for a in range(0, len(idx), 128):
        b = idx[a:a + 128]
        p_heavy[b] = mod.heavy_model.scores([texts[i] for i in b])[0]
        progress("heavy tier", min(a + 128, len(idx)), len(idx))

    reports = {}
    base_acc = None
    for name in ["base"] + [n for n in variants if n != "base"]:
        p, rule, hrule = variants[name]
        rep = M.routing_report(y, M.routed(p, rule, p_heavy, hrule))
        if base_acc is None:  # unrounded, so the base model reaches its own accuracy
            d = rule.decided(p)
            base_acc = float((rule.labels(p)[d] == y[d]).mean())
        rep["fast_coverage_at_base_decided_accuracy"] = M.coverage_at_accuracy(p, y, rule, base_acc)
        rep["fast_only"] = M.classification(y, rule.labels(p))
        reports[name] = rep

    # latency, one text per call
    rng = np.random.default_rng(0)
    sample = rng.choice(len(texts), size=min(latency_sample, len(texts)), replace=False)
    mod.fast([texts[0]])
    progress("latency", 0, 2 * len(sample))
    fast_ms = []
    for i in sample:
        t0 = time.perf_counter()
        mod.fast([texts[i]])
        fast_ms.append((time.perf_counter() - t0) * 1000)
    progress("latency", len(sample), 2 * len(sample))
    p_def, rule_def, _ = variants[mod.fast_variant]
    handed_def = np.flatnonzero(~rule_def.decided(p_def))
    heavy_sample = handed_def[:latency_sample]
    heavy_ms = []
    mod.heavy_model.warmup()
    for i in heavy_sample:
        t0 = time.perf_counter()
        mod.heavy([texts[i]])
        heavy_ms.append((time.perf_counter() - t0) * 1000)
    progress("latency", 2 * len(sample), 2 * len(sample))

    default = reports[mod.fast_variant]
    out = {
        "model": mod.version, "policy_version": mod.policy.version, "data": str(data),
        "rows_in_file": len(rows), "evaluated_rows": int(len(y)),
        "held_out": (f"rows whose text key is not among the {len(seen)} keys {mod.version} saw in "
                     f"training/validation (split seed {cfg['split']['seed']}, fractions "
                     f"{cfg['split']['fractions']}); on the training file these are its test split"),
        "default_fast": mod.fast_variant,
        "per_class": default["system"]["per_class"],
        "weighted_f1": default["system"]["weighted_f1"],
        "share_decided": default["share_decided"],
        "latency_ms": {"fast": M.percentiles_ms(fast_ms), "heavy": M.percentiles_ms(heavy_ms),
                       "note": "one text per call on this machine; heavy = MiniLM + BiLSTM + head"},
        "goals": M.goals(default["system"], default["share_decided"]["fast"]),
        "anchor": M.DAVIDSON_ANCHOR,
        "labels_note": ("system label = fast tier's where it decided, else heavy tier's; REVIEW "
                        "items count with the heavy tier's best guess (auto_decided_only leaves "
                        "them out)"),
        "variants": reports,
    }
    if "distilled" in reports:
        b, d = reports["base"], reports["distilled"]
        out["distillation"] = {
            "fast_share_decided": {"base": b["share_decided"]["fast"], "distilled": d["share_decided"]["fast"]},
            "fast_decided_accuracy": {"base": b["fast_decided_accuracy"], "distilled": d["fast_decided_accuracy"]},
            "fast_coverage_at_base_decided_accuracy": {
                "base": b["fast_coverage_at_base_decided_accuracy"],
                "distilled": d["fast_coverage_at_base_decided_accuracy"]},
            "system_weighted_f1": {"base": b["system"]["weighted_f1"], "distilled": d["system"]["weighted_f1"]},
            "hate": {"base": b["system"]["per_class"]["hate"], "distilled": d["system"]["per_class"]["hate"]},
            "distilled_decides_more_at_equal_or_better_quality": bool(
                d["fast_coverage_at_base_decided_accuracy"] >= b["fast_coverage_at_base_decided_accuracy"]
                and d["system"]["weighted_f1"] >= b["system"]["weighted_f1"] - 0.005),
            "shipped_default": cfg["default_fast"], "why": cfg["default_fast_reason"],
        }
    return out

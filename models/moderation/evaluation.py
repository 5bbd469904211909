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
whether the goals are met, Davidson et al.'s own method trained on the same rows and scored on the
same held-out rows in the same run (``baseline``), and the distilled-vs-undistilled comparison.
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


def best_recall_at_precision(score: np.ndarray, is_pos: np.ndarray, min_precision: float) -> float:
    """Highest recall over all thresholds on ``score`` whose precision is at least
    ``min_precision`` (at least 5 predicted positives); 0.0 when none reaches it. Picking the
    threshold on the evaluated rows themselves favours the model it is applied to."""
    order = np.argsort(-score, kind="stable")
    tp = np.cumsum(is_pos[order])
    n_pred = np.arange(1, len(order) + 1)
    # only cut between distinct scores
    last = np.r_[score[order][1:] != score[order][:-1], True]
    ok = last & (n_pred >= 5) & (tp / n_pred >= min_precision)
    n_pos = max(int(is_pos.sum()), 1)
    return round(float(tp[ok].max() / n_pos), 4) if ok.any() else 0.0


def baseline_report(rows, seen_mask: np.ndarray, held_texts: list[str], y: np.ndarray,
                    system: dict) -> tuple[dict, np.ndarray | None]:
    """Davidson et al.'s method (``baseline.DavidsonBaseline``) trained on the rows of the file the
    model saw, scored on the held-out rows, next to the system's figures (``system``: a
    ``metrics.classification`` of the same rows). Returns the report and the baseline's
    probabilities (n, 3) (None when skipped)."""
    from models.moderation.baseline import DavidsonBaseline

    train_rows = [r for r, s in zip(rows, seen_mask) if s]
    y_tr = np.array([r.label for r in train_rows], dtype=int)
    if len(train_rows) == 0 or np.bincount(y_tr, minlength=3).min() < 10:
        return {"skipped": "the file has fewer than 10 rows per class that the model saw in training "
                           "to train the baseline on; evaluate on the training file for it"}, None
    t0 = time.perf_counter()
    model = DavidsonBaseline().fit([r.text for r in train_rows], y_tr)
    proba = model.predict_proba(held_texts)
    pred = proba.argmax(axis=1)
    rep = M.classification(y, pred)
    hate = system["per_class"]["hate"]
    at_system_precision = best_recall_at_precision(proba[:, 0], y == 0, hate["precision"])
    at_anchor_precision = best_recall_at_precision(proba[:, 0], y == 0, M.DAVIDSON_ANCHOR["hate_precision"])
    return {
        "method": "Davidson et al. 2017 re-implemented (models/moderation/baseline.py): stemmed "
                  "TF-IDF word 1-3 grams + 17 text/sentiment features, L1 selection + balanced "
                  "L2 logistic regression; no POS n-grams",
        "trained_on_rows": len(train_rows), "fit_seconds": round(time.perf_counter() - t0, 1),
        "per_class": rep["per_class"], "weighted_f1": rep["weighted_f1"],
        "hate_best_recall_at_precision_0.44_threshold_on_these_rows": at_anchor_precision,
        "hate_best_recall_at_system_precision_threshold_on_these_rows": at_system_precision,
        "system_beats_baseline": {
            "weighted_f1": system["weighted_f1"] > rep["weighted_f1"],
            "hate_recall_at_equal_precision": hate["recall"] > at_system_precision,
        },
        "note": ("the baseline's own rule is argmax (its operating point above); the 'best recall' "
                 "figures pick its threshold on the held-out rows, which favours the baseline"),
    }, proba


def _plot(path, mod, texts, y, p_heavy, handed, variants, default, base_rep, base_proba, progress):
    """The hate precision-recall picture (``plots.hate_precision_recall``)."""
    from models.moderation.plots import hate_precision_recall

    rest = np.flatnonzero(~handed)  # heavy scores of the rows no fast model handed on
    p_all = p_heavy.copy()
    progress("heavy tier (plot)", 0, len(rest))
    for a in range(0, len(rest), 128):
        b = rest[a:a + 128]
        p_all[b] = mod.heavy_model.scores([texts[i] for i in b])[0]
        progress("heavy tier (plot)", min(a + 128, len(rest)), len(rest))
    curves = {f"fast tier ({mod.fast_variant})": variants[mod.fast_variant][0][:, 0],
              "heavy tier (fine-tuned MiniLM stack)": p_all[:, 0]}
    hate = default["system"]["per_class"]["hate"]
    points = {f"Pulse {mod.version} (routed system)": (hate["recall"], hate["precision"])}
    if base_proba is not None:
        curves["Davidson et al. method, same rows"] = base_proba[:, 0]
        bh = base_rep["per_class"]["hate"]
        points["Davidson et al. method, its own rule"] = (bh["recall"], bh["precision"])
    points["anchor (paper: all 24,783 tweets)"] = (M.DAVIDSON_ANCHOR["hate_recall"],
                                                   M.DAVIDSON_ANCHOR["hate_precision"])
    title = (f"Hate class, {len(y)} held-out rows ({int((y == 0).sum())} hate), "
             f"model {mod.version}")
    return hate_precision_recall(path, y, curves, points, title)


def evaluate(data: str, version: str | None = None, *, progress=_noop,
             latency_sample: int = 400, baseline: bool = True, plot: str | None = None) -> dict:
    """Evaluate artifact ``version`` (None: the shipped default) on the unseen rows of ``data``.

    ``latency_sample``: at most this many texts timed one per call for each tier. ``baseline``:
    also train and score Davidson et al.'s method on the same rows (``baseline_report``; about
    15 s on the Davidson file). ``plot``: write a PNG of the hate precision-recall curves (fast
    tier, heavy tier on every held-out row, baseline) with the operating points there.

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
    base_rep, base_proba = None, None
    if baseline:
        progress("baseline", 0, 1)
        base_rep, base_proba = baseline_report(rows, ~unseen, texts, y, default["system"])
        progress("baseline", 1, 1)
    plot_path = None
    if plot:
        plot_path = str(_plot(plot, mod, texts, y, p_heavy, handed, variants, default, base_rep,
                              base_proba, progress))
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
                       "note": "one text per call on this machine; heavy = fine-tuned MiniLM + BiLSTM + head"},
        "goals": M.goals(default["system"], default["share_decided"]["fast"]),
        "anchor": M.DAVIDSON_ANCHOR,
        "baseline_same_run": base_rep,
        "plot": plot_path,
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

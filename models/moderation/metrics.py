"""Classification and routing metrics shared by training (validation) and evaluation (test).

All take integer labels in Davidson's class order (0 hate, 1 harassment/offensive, 2 none).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from models.moderation.policy import TEXT_CLASSES
from models.moderation.routing import TierRule

DAVIDSON_ANCHOR = {
    "source": "Davidson et al., ICWSM 2017, 'Automated Hate Speech Detection and the Problem of "
              "Offensive Language' (logistic regression, L2, on all 24,783 tweets)",
    "weighted_f1": 0.90, "hate_recall": 0.61, "hate_precision": 0.44,
}


def classification(y: np.ndarray, pred: np.ndarray) -> dict:
    """Per-class precision/recall/F1/support, weighted and macro F1, accuracy (rounded to 4)."""
    if len(y) == 0:
        return {"n": 0}
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    wp, wr, wf, _ = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], average="weighted",
                                                    zero_division=0)
    return {
        "n": int(len(y)),
        "per_class": {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                          "f1": round(float(f[i]), 4), "support": int(s[i])}
                      for i, c in enumerate(TEXT_CLASSES)},
        "weighted_f1": round(float(wf), 4),
        "macro_f1": round(float(f.mean()), 4),
        "accuracy": round(float((y == pred).mean()), 4),
    }


def routed(p_fast: np.ndarray, fast_rule: TierRule, p_heavy: np.ndarray, heavy_rule: TierRule) -> dict:
    """System labels and routing of items with fast probabilities ``p_fast`` (n, 3) and heavy
    probabilities ``p_heavy`` (n, 3) (only rows the fast tier hands on are read).

    Returns ``{"label": (n,), "fast": (n,) bool, "heavy": (n,) bool, "review": (n,) bool}``: the
    label is the fast tier's where it decided, else the heavy tier's (its best guess for REVIEW).
    """
    fast = fast_rule.decided(p_fast)
    hd = heavy_rule.decided(p_heavy)
    label = np.where(fast, fast_rule.labels(p_fast), heavy_rule.labels(p_heavy))
    return {"label": label, "fast": fast, "heavy": ~fast & hd, "review": ~fast & ~hd}


def routing_report(y: np.ndarray, r: dict) -> dict:
    """Shares decided per tier, quality of what each decided, and the whole system's metrics."""
    n = max(len(y), 1)
    auto = r["fast"] | r["heavy"]
    return {
        "share_decided": {"fast": round(float(r["fast"].mean()), 4),
                          "heavy": round(float(r["heavy"].mean()), 4),
                          "review": round(float(r["review"].mean()), 4)},
        "counts": {"fast": int(r["fast"].sum()), "heavy": int(r["heavy"].sum()),
                   "review": int(r["review"].sum()), "total": int(n)},
        "fast_decided_accuracy": round(float((r["label"][r["fast"]] == y[r["fast"]]).mean()), 4)
        if r["fast"].any() else None,
        "heavy_decided_accuracy": round(float((r["label"][r["heavy"]] == y[r["heavy"]]).mean()), 4)
        if r["heavy"].any() else None,
        "system": classification(y, r["label"]),
        "auto_decided_only": classification(y[auto], r["label"][auto]),
    }


def coverage_at_accuracy(p: np.ndarray, y: np.ndarray, rule: TierRule, min_accuracy: float) -> float:
    """Largest share of items the tier decides, scaling both band widths by one factor in
    [0, 4], while the accuracy of its decided labels stays >= ``min_accuracy``."""
    lab = rule.labels(p)
    best = 0.0
    for s in np.linspace(0.0, 4.0, 161):
        r = TierRule(rule.hate_threshold, rule.band_hate * s, rule.band_harassment * s)
        d = r.decided(p)
        if d.any() and (lab[d] == y[d]).mean() >= min_accuracy:
            best = max(best, float(d.mean()))
    return round(best, 4)


def goals(system: dict, fast_share: float) -> dict:
    hate = system["per_class"]["hate"]
    return {
        "weighted_f1_above_0.90": system["weighted_f1"] > DAVIDSON_ANCHOR["weighted_f1"],
        "hate_recall_above_0.61_at_precision_0.44": bool(
            hate["recall"] > DAVIDSON_ANCHOR["hate_recall"]
            and hate["precision"] >= DAVIDSON_ANCHOR["hate_precision"]),
        "fast_tier_decides_at_least_0.90": fast_share >= 0.90,
    }


def percentiles_ms(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0}
    a = np.asarray(samples)
    return {"n": int(len(a)), "p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "mean": round(float(a.mean()), 3)}

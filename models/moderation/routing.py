"""Decision rule and uncertain band of a text tier, and their calibration on labelled data.

A tier's scores are calibrated probabilities ``p`` of shape (n, 3) in class order hate,
harassment, none. Its label follows Davidson et al.'s use of a hate threshold:

- ``hate`` when ``p_hate >= hate_threshold``,
- else ``harassment`` when ``p_harassment >= p_none``, else ``none``.

The tier does not decide an item (it is in the uncertain band) when either decision is close to its
boundary, measured in logits (log-odds):

- ``|logit(p_hate) - logit(hate_threshold)| < band_hate``, or
- the label is not hate and ``|logit(p_harassment / (p_harassment + p_none))| < band_harassment``.

``calibrate_band`` picks the two band widths on a validation split: the pair that leaves the fewest
wrong labels among decided items while the tier still decides at least the target share.
``calibrate_hate_threshold`` picks the threshold with the highest hate recall at a minimum hate
precision (Davidson et al. report recall 0.61 at precision 0.44).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_EPS = 1e-6


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class TierRule:
    """Calibrated rule of one tier (all unitless: a probability and two logit widths)."""

    hate_threshold: float
    band_hate: float
    band_harassment: float

    def labels(self, p: np.ndarray) -> np.ndarray:
        """(n,) int labels: 0 hate, 1 harassment, 2 none."""
        return labels(p, self.hate_threshold)

    def decided(self, p: np.ndarray) -> np.ndarray:
        """(n,) bool: True where the tier decides (outside the uncertain band)."""
        lab = self.labels(p)
        zh = np.abs(_logit(p[:, 0]) - _logit(self.hate_threshold))
        zo = np.abs(_logit(p[:, 1] / np.maximum(p[:, 1] + p[:, 2], _EPS)))
        return (zh >= self.band_hate) & ((lab == 0) | (zo >= self.band_harassment))

    def to_json(self) -> dict:
        return asdict(self)


def labels(p: np.ndarray, hate_threshold: float) -> np.ndarray:
    """Labels under the hate-threshold rule (see the module docstring)."""
    return np.where(p[:, 0] >= hate_threshold, 0, np.where(p[:, 1] >= p[:, 2], 1, 2))


def calibrate_hate_threshold(p: np.ndarray, y: np.ndarray, min_precision: float) -> float:
    """Threshold on ``p_hate`` with the highest hate recall on (``p``, ``y``) whose hate precision
    is at least ``min_precision``; thresholds are tried from 0.05 to 0.95 in steps of 0.01 and at
    least 5 predicted hate items are required. Falls back to the threshold with the best hate F1
    when no threshold reaches the precision."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    best, best_f1 = None, (-1.0, 0.5)
    n_hate = max(int((y == 0).sum()), 1)
    for t in grid:
        pred = labels(p, t) == 0
        tp = int((pred & (y == 0)).sum())
        n_pred = int(pred.sum())
        if n_pred < 5:
            continue
        prec, rec = tp / n_pred, tp / n_hate
        f1 = 2 * prec * rec / (prec + rec) if tp else 0.0
        if f1 > best_f1[0]:
            best_f1 = (f1, float(t))
        if prec >= min_precision and (best is None or rec > best[0]):
            best = (rec, float(t))
    return best[1] if best else best_f1[1]


def calibrate_band(p: np.ndarray, y: np.ndarray, hate_threshold: float, min_decided: float,
                   max_width: float = 6.0, step: float = 0.1,
                   next_labels: np.ndarray | None = None) -> TierRule:
    """Band widths (logits, grid ``0..max_width`` by ``step``) with the fewest wrong labels on
    (``p``, ``y``) among those deciding at least ``min_decided`` of the items; ties go to the pair
    that decides more.

    Without ``next_labels`` only the tier's own decided labels count (what it hands on is assumed
    right: the last tier before human review). With ``next_labels`` (n,), the labels the next tier
    gives, the count is the system's: this tier's wrong decided labels plus the next tier's wrong
    labels on what this tier hands on, so the band hands on the items the next tier gets right."""
    lab = labels(p, hate_threshold)
    wrong = lab != y
    next_wrong = np.zeros(len(y), bool) if next_labels is None else np.asarray(next_labels) != y
    zh = np.abs(_logit(p[:, 0]) - _logit(hate_threshold))
    zo = np.where(lab == 0, np.inf, np.abs(_logit(p[:, 1] / np.maximum(p[:, 1] + p[:, 2], _EPS))))
    widths = np.round(np.arange(0.0, max_width + 1e-9, step), 3)
    n = len(y)
    best = (np.inf, -1, 0.0, 0.0)
    for bh in widths:
        ok_h = zh >= bh
        if ok_h.sum() < min_decided * n:
            break
        for bo in widths:
            dec = ok_h & (zo >= bo)
            n_dec = int(dec.sum())
            if n_dec < min_decided * n:
                break
            errs = int((wrong & dec).sum() + (next_wrong & ~dec).sum())
            if (errs, -n_dec) < (best[0], -best[1]):
                best = (errs, n_dec, float(bh), float(bo))
    return TierRule(hate_threshold, best[2], best[3])

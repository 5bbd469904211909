"""Probability calibration shared by Pulse's classifiers."""
from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(n, k)`` logits."""
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray, log_bounds: tuple[float, float] = (-3.0, 3.0)) -> float:
    """Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017):
    the ``T > 0`` minimising the negative log-likelihood of ``softmax(logits / T)`` on class
    indices ``y``, by golden-section search over ``log T`` within ``log_bounds``.

    ``logits``: ``(n, k)``; ``y``: ``(n,)`` ints in ``[0, k)``. Returns ``T``.
    """
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return float(-np.log(np.clip(p[rows, y], 1e-12, None)).mean())

    lo, hi = float(log_bounds[0]), float(log_bounds[1])
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))

"""Off-policy estimators of a target policy's value from logged bandit decisions.

Inputs, for ``n`` logged decisions over ``k`` actions:
``rewards`` (n,) observed rewards; ``pscore`` (n,) the logging policy's probability of the logged
action (the logged propensity); ``target`` (n, k) the target policy's action probabilities at
each decision; ``actions`` (n,) logged action indices; ``q_hat`` (n, k) a reward model's
estimate of each action's expected reward (doubly robust only).

* IPS (Horvitz & Thompson, JASA 1952; for bandits e.g. Li, Chu, Langford & Wang, WSDM 2011):
  ``V = mean(w_i r_i)`` with ``w_i = target[i, a_i] / pscore_i``; unbiased when every action the
  target may take has ``pscore > 0``.
* Self-normalised IPS (Swaminathan & Joachims, NeurIPS 2015, after Hesterberg 1995):
  ``V = sum(w_i r_i) / sum(w_i)``: slightly biased, much lower variance, always within the
  range of the rewards.
* Doubly robust (Dudik, Langford & Li, ICML 2011):
  ``V = mean(sum_a target[i, a] q_hat[i, a] + w_i (r_i - q_hat[i, a_i]))``: unbiased when either
  the propensities or the reward model are right.

These are the formulas of Open Bandit Pipeline's ``InverseProbabilityWeighting``,
``SelfNormalizedInverseProbabilityWeighting`` and ``DoublyRobust`` (Saito et al., 2021) with one
slate position; obp itself is not used (docs/notifications.md says why).
"""
from __future__ import annotations

import numpy as np


def _check(rewards, pscore, target, actions):
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(pscore, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    a = np.asarray(actions, dtype=np.int64)
    n = r.shape[0]
    if p.shape != (n,) or a.shape != (n,) or t.ndim != 2 or t.shape[0] != n or n == 0:
        raise ValueError(f"shapes: rewards {r.shape}, pscore {p.shape}, target {t.shape}, actions {a.shape}")
    if not np.all(p > 0) or np.any(a < 0) or np.any(a >= t.shape[1]):
        raise ValueError("pscore must be > 0 and actions index the target's columns")
    w = t[np.arange(n), a] / p
    return r, w, t, a


def ips(rewards, pscore, target, actions) -> float:
    """Inverse propensity scoring (module docstring).

    Raises
    ------
    ValueError
        Mismatched shapes, an empty log, a non-positive propensity or an action out of range.
    """
    r, w, _, _ = _check(rewards, pscore, target, actions)
    return float(np.mean(w * r))


def snips(rewards, pscore, target, actions) -> float:
    """Self-normalised IPS (module docstring); 0.0 when the target puts no weight on any logged
    action. Raises as :func:`ips`."""
    r, w, _, _ = _check(rewards, pscore, target, actions)
    s = w.sum()
    return float((w * r).sum() / s) if s > 0 else 0.0


def doubly_robust(rewards, pscore, target, actions, q_hat) -> float:
    """Doubly robust (module docstring). Raises as :func:`ips`, and for a ``q_hat`` whose shape
    is not the target's."""
    r, w, t, a = _check(rewards, pscore, target, actions)
    q = np.asarray(q_hat, dtype=np.float64)
    if q.shape != t.shape:
        raise ValueError(f"q_hat {q.shape} must have the target's shape {t.shape}")
    n = r.shape[0]
    return float(np.mean((t * q).sum(axis=1) + w * (r - q[np.arange(n), a])))

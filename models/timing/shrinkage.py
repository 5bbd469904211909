"""A creator's audience-activity map with empirical-Bayes shrinkage toward the population.

Model (Dirichlet-multinomial, the "Polya distribution" of Minka 2000)
    Each of the 168 hours of the week (Monday 00:00 UTC = 0, :func:`hour_of_week`) is a category.
    An audience member contributes their activity spread over the hours by their active-hours
    histogram (the user_profiler's decayed 7x24 shares, summing to 1), weighted by their activity
    volume ``w_u`` (events), so the audience map ``sum_u w_u h_u / sum_u w_u`` is the expected
    share of the audience's *activity* per hour, and its evidence is Kish's effective number of
    members ``n = (sum w)^2 / sum w^2`` (``n`` = members when all weigh the same; one member who
    does everything counts as one). Before the prior is added, the audience map is replaced (by
    default; :data:`SMOOTHING`) by its own day-of-week x hour-of-day independence model
    (:func:`factorized`): a few people's 7x24 table is sparse.
    A creator's true map ``p`` is drawn from ``Dirichlet(alpha * pi)``, ``pi`` the population
    map (the activity-weighted mean histogram over all users), ``alpha`` the prior strength in
    pseudo-members; with ``x = n * (smoothed audience map)`` the posterior mean is

        ``m = (x + alpha * pi) / (n + alpha)``, prior weight ``alpha / (n + alpha)``

    so an audience of one or two people is mostly the population and one of hundreds is its own.

Fitting ``alpha`` (:func:`fit_prior_strength`)
    Empirical Bayes: ``alpha`` maximises the Dirichlet-multinomial marginal likelihood of the
    creators' soft counts with the mean fixed at ``pi``, by Minka's fixed-point iteration for
    the precision (T. Minka, "Estimating a Dirichlet distribution", 2000/2012, section 3 on the
    Polya distribution): ``s <- s * sum_c sum_k pi_k [psi(x_ck + s pi_k) - psi(s pi_k)] /
    sum_c [psi(n_c + s) - psi(s)]``; the gamma functions accept the non-integer counts.
    ``pulse eval timing`` fits it on the history before its split and reports it. On the Stack
    Exchange history the fit runs to the upper bound (members' decayed histograms are smoother
    than multinomial draws, so the audiences look no more varied than sampling), which would
    make every creator the population; :data:`PRIOR_STRENGTH` is therefore a documented choice
    (docs/timing.md), not the fit.
"""
from __future__ import annotations

import numpy as np

from models.profiles.interests import hour_of_week

__all__ = ["HOURS", "PRIOR_STRENGTH", "Posterior", "hour_of_week", "posterior", "fit_prior_strength",
           "population_map", "factorized", "SMOOTHING"]

#: Hours of the week: 7 days x 24 hours, Monday 00:00 UTC first.
HOURS = 168
#: Default prior strength (pseudo-members) of the population map: an audience of one effective
#: member is 80 % its own. Chosen, not fitted (module docstring; the eval reports the fit): on
#: ``pulse eval timing --split 0.4`` (90-day active hours, decayed weights) among 0, 0.1, 0.25,
#: 0.5, 1, 2 and 4 the ratio falls as the prior grows (1.52, 1.51, 1.49, 1.42, 1.37, 1.36, 1.26);
#: 0.25 is within noise of none and still orders the hours an audience never showed
#: (docs/timing.md); the setting attribute ``timing_prior_strength`` overrides it.
PRIOR_STRENGTH = 0.25
#: Weight of the audience map's rank-1 day-of-week x hour-of-day structure (:func:`factorized`)
#: in its own map: a few members' hours of the week are a sparse 7x24 table in which one person's
#: habit at 17:00 on a Monday says they are likely around at 17:00 on other days too; the
#: independence model pools the days. 1 (the independence model alone) was chosen on ``pulse
#: eval timing --split 0.4`` among 0, 0.5 and 1 (docs/timing.md); the setting attribute
#: ``timing_smoothing`` overrides it.
SMOOTHING = 1.0
_FIT_BOUNDS = (1e-3, 1e5)


class Posterior:
    """A creator's posterior audience map.

    Attributes
    ----------
    hour_map : (168,) float64
        Posterior mean share of the audience's activity in each hour of the week (sums to 1).
    audience_size : int
        Members whose histogram informed it (``n``).
    prior_weight : float
        ``alpha / (n + alpha)`` in [0, 1]: 1 when the population alone decides.
    """

    __slots__ = ("hour_map", "audience_size", "prior_weight")

    def __init__(self, hour_map: np.ndarray, audience_size: int, prior_weight: float) -> None:
        self.hour_map = hour_map
        self.audience_size = audience_size
        self.prior_weight = prior_weight


def _as_map(v) -> np.ndarray | None:
    """A (168,) float64 share vector, or None for a missing, mis-sized or all-zero one."""
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (HOURS,) or not np.all(np.isfinite(a)) or (a < 0).any():
        return None
    s = a.sum()
    return a / s if s > 0 else None


def population_map(histograms, weights=None) -> np.ndarray:
    """The population map: the mean of the given users' histograms (each a (168,) share vector,
    iterated in a fixed order by the caller), weighted by ``weights`` (each user's activity
    volume; None: equal), uniform when there are none. (168,) float64."""
    total = np.zeros(HOURS, dtype=np.float64)
    n = 0.0
    for i, h in enumerate(histograms):
        a = _as_map(h)
        w = 1.0 if weights is None else float(weights[i])
        if a is not None and w > 0:
            total += w * a
            n += w
    return total / n if n else np.full(HOURS, 1.0 / HOURS)


def factorized(m: np.ndarray) -> np.ndarray:
    """The rank-1 day-of-week x hour-of-day map of ``m`` (168,): ``p(day) * p(hour)`` from its
    marginals (the independence model of a 7x24 contingency table), (168,) float64."""
    grid = np.asarray(m, dtype=np.float64).reshape(7, 24)
    total = grid.sum()
    if total <= 0:
        return np.asarray(m, dtype=np.float64).copy()
    return (np.outer(grid.sum(axis=1), grid.sum(axis=0)) / total).ravel()


def posterior(member_histograms, prior: np.ndarray, strength: float, weights=None,
              smoothing: float | None = None) -> Posterior:
    """The posterior mean map of an audience (module docstring).

    Parameters
    ----------
    member_histograms
        Iterable of the members' (168,) active-hours shares, in a fixed order (the sum is
        order-dependent in its last bits); missing or all-zero ones are skipped.
    prior
        (168,) population map (sums to 1).
    strength
        ``alpha`` >= 0, pseudo-members.
    weights
        Each member's activity volume (events), same order; None: every member counts 1. The
        audience map is then the weighted mean (the share of the audience's *activity*, not of
        its members) and ``n`` Kish's effective sample size ``(sum w)^2 / sum w^2``.
    smoothing
        ``lambda`` in [0, 1]: the audience's own map is ``(1 - lambda) * map + lambda *
        factorized(map)`` before the prior is added (default :data:`SMOOTHING`).
    """
    lam = SMOOTHING if smoothing is None else float(smoothing)
    x = np.zeros(HOURS, dtype=np.float64)
    count, wsum, w2sum = 0, 0.0, 0.0
    for i, h in enumerate(member_histograms):
        a = _as_map(h)
        w = 1.0 if weights is None else float(weights[i])
        if a is not None and w > 0:
            x += w * a
            count += 1
            wsum += w
            w2sum += w * w
    prior = _as_map(prior)
    if prior is None:
        prior = np.full(HOURS, 1.0 / HOURS)
    alpha = max(0.0, float(strength))
    if not count:
        return Posterior(prior.copy(), 0, 1.0)
    own = x / wsum
    own = (1.0 - lam) * own + lam * factorized(own)
    n = wsum * wsum / w2sum
    if n + alpha == 0:
        return Posterior(prior.copy(), count, 1.0)
    return Posterior((n * own + alpha * prior) / (n + alpha), count, alpha / (n + alpha))


def fit_prior_strength(counts: np.ndarray, prior: np.ndarray, *, start: float = 10.0,
                       iterations: int = 500, tol: float = 1e-7) -> float:
    """The empirical-Bayes prior strength ``alpha`` (Minka's fixed point, module docstring).

    Parameters
    ----------
    counts : (c, 168)
        Each creator's soft counts (sum of the members' histograms); rows with a total under 2
        carry no information about dispersion and are ignored.
    prior : (168,)
        The population map (the Dirichlet's mean), sums to 1.

    Returns
    -------
    float
        ``alpha`` in [1e-3, 1e5] (the upper bound means the audiences are no more varied than
        sampling from the population would make them).

    Raises
    ------
    ValueError
        No row with a total of 2 or more.
    """
    from scipy.special import digamma

    x = np.asarray(counts, dtype=np.float64)
    x = x[x.sum(axis=1) >= 2.0] if x.ndim == 2 else x
    if x.ndim != 2 or not len(x):
        raise ValueError("fit_prior_strength needs at least one audience with 2 or more members")
    m = np.clip(np.asarray(prior, dtype=np.float64), 1e-12, None)
    m = m / m.sum()
    n = x.sum(axis=1)
    s = float(start)
    for _ in range(iterations):
        num = float((m * (digamma(x + s * m) - digamma(s * m))).sum())
        den = float((digamma(n + s) - digamma(s)).sum())
        if den <= 0 or num <= 0:
            break
        new = min(max(s * num / den, _FIT_BOUNDS[0]), _FIT_BOUNDS[1])
        if abs(new - s) <= tol * s:
            s = new
            break
        s = new
    return s

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

Smoothing over adjacent hours (:func:`hour_smoothed`)
    The posterior mean is finally averaged over a centred window of ``2 * HOUR_BANDWIDTH + 1``
    hours of the week (a circular box kernel, a kernel density estimate in time): someone who
    answered at 17:40 is about as likely to be around at 18:10, and a map read from a few
    people's few weeks is a sparse 168-cell table whose single highest cell is mostly noise. The
    value at hour ``w`` is the mean share of the hours ``w - b .. w + b``; it still sums to 1.
    Smoothing the posterior is smoothing the audience map and the prior alike (the posterior is
    linear in both).

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

__all__ = ["HOURS", "PRIOR_STRENGTH", "Posterior", "hour_of_week", "posterior", "posterior_mean",
           "fit_prior_strength",
           "population_map", "factorized", "SMOOTHING", "HOUR_BANDWIDTH", "hour_smoothed"]

#: Hours of the week: 7 days x 24 hours, Monday 00:00 UTC first.
HOURS = 168
#: Default prior strength (pseudo-members) of the population map: an audience of one effective
#: member is two thirds its own. Chosen, not fitted (module docstring; the eval reports the fit),
#: jointly with :data:`SMOOTHING` and :data:`HOUR_BANDWIDTH` on development splits that never see
#: the reported period: ``pulse eval timing --split S --truth-until 0.6`` for S = 0.3, 0.4 and
#: 0.5, the mean ratio over the three, among strengths 0, 0.1, 0.25, 0.5, 1 and 2, smoothing 0,
#: 0.5 and 1 and bandwidths 0 to 3 (docs/timing.md); the setting attribute
#: ``timing_prior_strength`` overrides it.
PRIOR_STRENGTH = 0.5
#: Weight of the audience map's rank-1 day-of-week x hour-of-day structure (:func:`factorized`)
#: in its own map: a few members' hours of the week are a sparse 7x24 table in which one person's
#: habit at 17:00 on a Monday says they are likely around at 17:00 on other days too; the
#: independence model pools the days. 1 (the independence model alone), chosen with
#: :data:`PRIOR_STRENGTH` (docs/timing.md); the setting attribute ``timing_smoothing`` overrides
#: it.
SMOOTHING = 1.0
#: Half-width in hours of the box kernel over adjacent hours of the week (:func:`hour_smoothed`):
#: 1, a 3-hour window. Chosen with :data:`PRIOR_STRENGTH` among 0 (none), 1, 2 and 3
#: (docs/timing.md); the attribute ``timing_hour_bandwidth`` overrides it.
HOUR_BANDWIDTH = 1
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
    maps, w = _member_maps(histograms, weights)
    return (w @ maps) / w.sum() if len(w) else np.full(HOURS, 1.0 / HOURS)


def factorized(m: np.ndarray) -> np.ndarray:
    """The rank-1 day-of-week x hour-of-day map of ``m`` (168,): ``p(day) * p(hour)`` from its
    marginals (the independence model of a 7x24 contingency table), (168,) float64."""
    grid = np.asarray(m, dtype=np.float64).reshape(7, 24)
    total = grid.sum()
    if total <= 0:
        return np.asarray(m, dtype=np.float64).copy()
    return (np.outer(grid.sum(axis=1), grid.sum(axis=0)) / total).ravel()


def hour_smoothed(m: np.ndarray, bandwidth: int = HOUR_BANDWIDTH) -> np.ndarray:
    """``m`` (168,) averaged over the ``2 * bandwidth + 1`` hours of the week centred on each
    hour, circularly (Sunday 23:00 neighbours Monday 00:00): (168,) float64 with the same sum;
    ``bandwidth`` 0 returns a copy.

    Raises ``ValueError`` for a negative bandwidth or one of 12 hours or more."""
    b = int(bandwidth)
    if not 0 <= b < 12:
        raise ValueError(f"hour bandwidth must be 0 to 11 hours, got {bandwidth}")
    a = np.asarray(m, dtype=np.float64)
    if not b:
        return a.copy()
    # the circular shifts as slices of the map padded with its own ends: the slice starting at
    # b - s is np.roll(a, s); summed in the order of s = -b .. b, the same floats as the rolls
    ext = np.concatenate((a[-b:], a, a[:b]))
    n = len(a)
    return sum(ext[b - s:b - s + n] for s in range(-b, b + 1)) / (2 * b + 1)


def _member_maps(member_histograms, weights) -> tuple[np.ndarray, np.ndarray]:
    """``(maps, w)``: the usable members' histograms as share vectors, ``(n, 168)`` float64 (each
    row sums to 1), and their weights ``(n,)`` float64, in the given order. A member is usable
    when its weight is positive and its histogram is a (168,) vector, finite, non-negative and
    not all zero (:func:`_as_map`, checked for all members at once)."""
    rows, ws = [], []
    for i, h in enumerate(member_histograms):
        if h is None:
            continue
        w = 1.0 if weights is None else float(weights[i])
        if not w > 0:
            continue
        a = h if isinstance(h, np.ndarray) else np.asarray(h, dtype=np.float64)
        if a.shape == (HOURS,):
            rows.append(a)
            ws.append(w)
    if not rows:
        return np.zeros((0, HOURS)), np.zeros(0)
    maps = np.array(rows, dtype=np.float64)
    sums = maps.sum(axis=1)
    ok = np.isfinite(maps).all(axis=1) & (maps >= 0).all(axis=1) & (sums > 0)
    return maps[ok] / sums[ok, None], np.asarray(ws, dtype=np.float64)[ok]


def posterior(member_histograms, prior: np.ndarray, strength: float, weights=None,
              smoothing: float | None = None, bandwidth: int | None = None) -> Posterior:
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
    bandwidth
        Half-width in hours of the box kernel the posterior mean is finally averaged with
        (:func:`hour_smoothed`; default :data:`HOUR_BANDWIDTH`, 0: none). With no usable member
        the map is the prior, smoothed the same way.
    """
    maps, w = _member_maps(member_histograms, weights)
    prior = _as_map(prior)
    if prior is None:
        prior = np.full(HOURS, 1.0 / HOURS)
    mean, count, prior_weight = posterior_mean(maps, w, prior, strength, smoothing)
    b = HOUR_BANDWIDTH if bandwidth is None else int(bandwidth)
    return Posterior(hour_smoothed(mean, b), count, prior_weight)


def posterior_mean(maps: np.ndarray, w: np.ndarray, prior: np.ndarray, strength: float,
                   smoothing: float | None = None) -> tuple[np.ndarray, int, float]:
    """:func:`posterior` before the hours are smoothed, from inputs already checked:
    ``(mean (168,) float64, audience_size, prior_weight)``.

    ``maps`` is ``(n, 168)`` float64, each row a share vector (finite, non-negative, summing to
    1), ``w`` the members' ``(n,)`` positive weights (what :func:`_member_maps` makes of
    histograms and weights, and
    :meth:`agents.shared.activity.AudienceActivity.audience` of a side input), ``prior`` a
    (168,) float64 share vector (:func:`posterior` checks it;
    :meth:`~agents.shared.activity.AudienceActivity.population` is one by construction).
    Nothing is checked again: this runs at every audience signal of timing_optimizer, where
    the checks cost a third of it. The Golden Moment path
    (:func:`models.timing.windows.smoothed_map_and_windows`) then smooths the mean and scores the
    windows in one pass."""
    lam = SMOOTHING if smoothing is None else float(smoothing)
    count = len(w)
    alpha = max(0.0, float(strength))
    if not count:
        return prior, 0, 1.0
    x = w @ maps
    wsum = float(w.sum())
    w2sum = float(w @ w)
    n = wsum * wsum / w2sum
    if n + alpha == 0:
        return prior, count, 1.0
    own = x / wsum
    if lam == 1.0:  # (1 - 1) * own + 1 * f is f, bit for bit
        own = factorized(own)
    elif lam:
        own = (1.0 - lam) * own + lam * factorized(own)
    return (n * own + alpha * prior) / (n + alpha), count, alpha / (n + alpha)


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

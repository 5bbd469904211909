"""The user profile's statistics: decayed interest vector, affinities, active hours, cold start.

Pure functions of a user's engagement history (no state of their own), so user_profiler can
recompute a profile *as of* any event time from the history it keeps, in a fixed order: the
result does not depend on the order in which the events arrived, and a replay reproduces every
bit of it (sums run in history order, float64, then rounded to float32).

Weights of an engagement (how much it says the user wants more of that content; negative: less).
They follow the usual explicit-over-implicit ordering of feed systems (a written reply or a
share says more than a like, which says more than a long look; a hide or report is a strong
"not this"); there is no labelled data here to fit them, so they are documented constants:

=================  ======  ==============================================================
engagement         weight  source
=================  ======  ==============================================================
COMMENT             1.0    an ``interactions`` COMMENT
SHARE               1.0    an ``interactions`` SHARE
ANSWER              1.0    the user's own published post that answers ``parent_post_id``
LIKE                0.7    an ``interactions`` LIKE
OWN_POST            0.5    the user's own published post (what they write about)
LONG_VIEW           0.3    a VIEW with ``dwell_ms`` >= :data:`LONG_DWELL_MS`
SKIP               -0.3    an ``interactions`` SKIP
HIDE               -1.0    an ``interactions`` HIDE
REPORT             -1.5    an ``interactions`` REPORT
=================  ======  ==============================================================

A short VIEW says nothing either way (weight 0: not kept).

Decay: an engagement ``a`` days old counts ``2 ** (-a / half_life_days)``.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

WEIGHTS: dict[str, float] = {
    "COMMENT": 1.0, "SHARE": 1.0, "ANSWER": 1.0, "LIKE": 0.7, "OWN_POST": 0.5,
    "LONG_VIEW": 0.3, "SKIP": -0.3, "HIDE": -1.0, "REPORT": -1.5,
}
#: A VIEW at least this long (ms) is a positive signal (LONG_VIEW).
LONG_DWELL_MS = 10_000
#: Hand-over constant: the own signal's share of the interest vector is n / (n + K) after n
#: engagements with known vectors (a Bayesian-average style shrinkage toward the prior).
HANDOVER_K = 5.0
#: A profile is a cold start while it has fewer engagements with known posts than this (the
#: evaluation's definition of a cold-start user: fewer than 3 earlier engagements).
COLD_START_BELOW = 3
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: Default half-life (days) of an event's weight in the active-hours histogram
#: (``PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS``): clock habits change more slowly than tastes, and
#: a 168-cell histogram needs more events than an interest vector; at the interests' 14 days a
#: user who acts a few times a month keeps a handful of events (docs/timing.md). Readers of the
#: histogram (timing_optimizer's side input) decay a profile's weight with the same half-life.
ACTIVITY_HALF_LIFE_DAYS = 90.0
#: Unix epoch (1970-01-01) was a Thursday: day-of-week 3 with Monday = 0.
_EPOCH_DOW = 3


def engagement_kind(interaction_type: str, dwell_ms: int | None) -> str | None:
    """The engagement an ``interactions`` event is (a :data:`WEIGHTS` key), or None (no signal)."""
    if interaction_type == "VIEW":
        return "LONG_VIEW" if (dwell_ms or 0) >= LONG_DWELL_MS else None
    return interaction_type if interaction_type in WEIGHTS else None


def decay(age_ms: np.ndarray | float, half_life_days: float) -> np.ndarray | float:
    """``2 ** (-age_days / half_life_days)``; ages below zero count as zero."""
    age = np.maximum(np.asarray(age_ms, dtype=np.float64), 0.0)
    return np.exp2(-age / (half_life_days * DAY_MS))


def interest_vector(at_ms: Sequence[int], weights: Sequence[float], vectors: np.ndarray,
                    t_ms: int, half_life_days: float) -> np.ndarray | None:
    """Decayed, weighted sum of post vectors, unit length: ``(d,)`` float32, or None when it is
    zero (no engagement, or positives and negatives cancel).

    ``vectors`` is ``(n, d)`` (unit rows), in the same order as ``at_ms`` and ``weights``.
    """
    if len(at_ms) == 0:
        return None
    w = np.asarray(weights, dtype=np.float64) * decay(t_ms - np.asarray(at_ms, np.int64), half_life_days)
    v = w @ vectors.astype(np.float64)
    n = float(np.linalg.norm(v))
    return None if n < 1e-9 else (v / n).astype(np.float32)


def affinities(at_ms: Sequence[int], weights: Sequence[float],
               keys: Sequence[Mapping[str, float]], t_ms: int, half_life_days: float,
               top: int = 32) -> dict[str, float]:
    """Affinity per key (category, hashtag, creator) in [-1, 1]: the decayed, weighted sum of each
    engagement's ``keys`` (key -> strength in [0, 1]) divided by the decayed sum of ``|weight|``
    (so a user who only ever engaged with one key has affinity 1 for it). The ``top`` keys by
    absolute affinity (ties by key), rounded to 6 decimals."""
    if len(at_ms) == 0:
        return {}
    d = decay(t_ms - np.asarray(at_ms, np.int64), half_life_days)
    w = np.asarray(weights, dtype=np.float64) * d
    total = float(np.abs(w).sum())
    if total == 0.0:
        return {}
    acc: dict[str, float] = {}
    for wi, ks in zip(w.tolist(), keys):
        for k, s in ks.items():
            acc[k] = acc.get(k, 0.0) + wi * float(s)
    out = sorted(((k, v / total) for k, v in acc.items() if v != 0.0), key=lambda kv: (-abs(kv[1]), kv[0]))
    return {k: round(max(-1.0, min(1.0, v)), 6) for k, v in out[:top]}


def hour_of_week(t_ms: int) -> int:
    """Index ``day_of_week * 24 + hour`` (Monday = 0, UTC) of an epoch-ms instant."""
    days = t_ms // DAY_MS
    return ((days + _EPOCH_DOW) % 7) * 24 + (t_ms % DAY_MS) // HOUR_MS


def active_hours(at_ms: Sequence[int], t_ms: int, half_life_days: float) -> list[float]:
    """168 shares (sum 1; all zero without activity): the decayed histogram of activity by hour of
    the week (:func:`hour_of_week`), rounded to 6 decimals."""
    h = np.zeros(168, dtype=np.float64)
    if len(at_ms):
        at = np.asarray(at_ms, np.int64)
        np.add.at(h, [hour_of_week(int(x)) for x in at], decay(t_ms - at, half_life_days))
        s = h.sum()
        if s > 0:
            h /= s
    return [round(float(x), 6) for x in h]


def daily_activity(at_ms: Iterable[int], fading_factor: float = 0.2) -> float:
    """Exponentially weighted mean (river ``stats.EWMean``) of the user's events per active UTC
    day, days in time order: the activity level behind notification tolerance."""
    from river import stats

    counts: dict[int, int] = {}
    for t in at_ms:
        counts[t // DAY_MS] = counts.get(t // DAY_MS, 0) + 1
    m = stats.EWMean(fading_factor=fading_factor)
    for day in sorted(counts):
        m.update(counts[day])
    return round(float(m.get() or 0.0), 6)


def notification_tolerance(daily: float) -> float:
    """Notifications per day a user is taken to welcome before any feedback: one, plus half a
    notification per event on an active day, capped at 10 (a prior; the Notification Generator
    learns each user's own tolerance from ``notification-feedback``)."""
    return round(min(10.0, 1.0 + 0.5 * daily), 6)


def blend(own: np.ndarray | None, prior: np.ndarray | None, n: float,
          k: float = HANDOVER_K) -> tuple[np.ndarray | None, float]:
    """Hand-over from the cold-start ``prior`` to the user's ``own`` vector: returns the unit
    vector ``alpha * own + (1 - alpha) * prior`` and ``alpha = n / (n + k)`` (``n``: engagements
    with known vectors). With one side missing the other is returned (alpha 1 or 0)."""
    if own is None and prior is None:
        return None, 0.0
    if prior is None:
        return own, 1.0
    if own is None:
        return prior, 0.0
    alpha = n / (n + k)
    v = alpha * own.astype(np.float64) + (1.0 - alpha) * prior.astype(np.float64)
    norm = float(np.linalg.norm(v))
    if norm < 1e-9:
        return own, 1.0
    return (v / norm).astype(np.float32), round(alpha, 6)

"""Posting windows per content type: which hour of the week to post in so that the post meets
the most audience activity while the feed still shows it.

How content type changes the map
    A post is worth posting at hour ``w`` in proportion to the audience activity it meets while
    feeds still place it well. Its time-dependent share of feed_ranker's relevance score
    (:mod:`models.ranking.relevance`) at age ``a`` hours is

        ``k(a) = 0.32 * 2^(-a / 24) + 0.05 * 2^(-a / FRESHNESS_HALF_LIFE_H[type])``

    (novelty: people meet posts while they are new, any type; freshness: still current for its
    type), taken at the middle of each hour and cut at the post's lifetime or one week, the
    period of the map (beyond it the sum would wrap onto the same hours):

    ========  ========  ===========================  ==========================================
    type      horizon   freshness half-life          effect on the windows
    ========  ========  ===========================  ==========================================
    FLASH     24 h      6 h                          lives a day (publisher's LIFETIME): only
                                                     the next hours count, the sharpest map
    MEMORY    168 h     48 h                         a 7-day time box: a few days count
    FOREVER   168 h     336 h                        never expires: a flat tail adds every
                                                     hour of the week, so only the first day's
                                                     hours set it apart: the smoothest map
    ========  ========  ===========================  ==========================================

    ``score(w) = sum_a k(a) m[(w + a) mod 168] / sum_a k(a)``: the expected share of the
    audience's activity per hour met by the post, weighted by how well it is placed then (the
    same unit as the hourly map, so the scores of the types are comparable). Weights and
    half-lives are read from the ranker's module, so a change there moves the windows with it.
    ``HOURLY`` (not a content type: kernel ``[1]``) is the posterior map itself, the one
    ``pulse eval timing`` scores.
"""
from __future__ import annotations

import functools

import numpy as np

from models.profiles.interests import DAY_MS, HOUR_MS, hour_of_week
from models.ranking.relevance import FRESHNESS_HALF_LIFE_H, NOVELTY_HALF_LIFE_H, WEIGHTS

from models.timing.shrinkage import HOURS, hour_smoothed

CONTENT_TYPES = ("FLASH", "MEMORY", "FOREVER")
HOURLY = "HOURLY"
#: Hours after posting that count, per content type (FLASH: its 24 h lifetime; the others: one
#: week, the map's period).
HORIZON_H = {"FLASH": 24, "MEMORY": HOURS, "FOREVER": HOURS, HOURLY: 1}
#: Windows recommended per content type (the eval scores the top 3).
TOP_WINDOWS = 3


def kernel(content_type: str) -> np.ndarray:
    """``k(a)`` for ``a = 0 .. horizon - 1`` hours (module docstring), ``(horizon,)`` float64.

    Raises
    ------
    KeyError
        Not FLASH, MEMORY, FOREVER or HOURLY.
    """
    horizon = HORIZON_H[content_type]
    if content_type == HOURLY:
        return np.ones(1)
    a = np.arange(horizon, dtype=np.float64) + 0.5
    return (WEIGHTS["novelty"] * np.exp2(-a / NOVELTY_HALF_LIFE_H)
            + WEIGHTS["freshness"] * np.exp2(-a / FRESHNESS_HALF_LIFE_H[content_type]))


@functools.lru_cache(maxsize=None)
def _operators() -> np.ndarray:
    """The content types' score operators stacked, ``(3 * 168, 168)`` float64 (read-only):
    block ``i`` (rows ``168 i .. 168 i + 167``) is the circulant matrix of
    ``CONTENT_TYPES[i]``, ``C[w, (w + a) mod 168] = k(a) / sum(k)``, computed once. A horizon
    is at most the week, so no two ages of a kernel share a cell."""
    out = np.zeros((len(CONTENT_TYPES) * HOURS, HOURS))
    w = np.arange(HOURS)
    for i, ct in enumerate(CONTENT_TYPES):
        k = kernel(ct)
        k = k / k.sum()
        for a, weight in enumerate(k):
            out[i * HOURS + w, (w + a) % HOURS] = weight
    out.setflags(write=False)
    return out


def all_window_scores(hour_map: np.ndarray) -> dict[str, np.ndarray]:
    """``score(w)`` of every content type and of ``HOURLY`` (module docstring) for every hour of
    the week: ``{type: (168,) float64}``, one matrix-vector product for the three types (the
    golden moment of every audience signal needs all four; per type, gathering ``m[(w + a) mod
    168]`` cost a third of timing_optimizer's time)."""
    m = np.asarray(hour_map, dtype=np.float64)
    stacked = _operators() @ m
    out = {ct: stacked[i * HOURS:(i + 1) * HOURS] for i, ct in enumerate(CONTENT_TYPES)}
    out[HOURLY] = m.copy()  # kernel [1]: the map itself
    return out


def window_scores(hour_map: np.ndarray, content_type: str) -> np.ndarray:
    """``score(w)`` for every hour of the week ``w`` (module docstring): (168,) float64, the
    same floats as :func:`all_window_scores` gives for the type.

    Raises ``KeyError`` for an unknown content type."""
    if content_type not in HORIZON_H:
        raise KeyError(content_type)
    return all_window_scores(hour_map)[content_type]


#: How far below the n-th best raw score a score may lie and still reach the top ``n`` once
#: rounded to 9 decimals (rounding moves a value by at most 5e-10; the rest is a safety margin).
_ROUNDING_MARGIN = 2e-9


def top_windows(scores: np.ndarray, n: int = TOP_WINDOWS) -> list[tuple[int, float]]:
    """The ``n`` best hours of the week: ``[(hour_of_week, score), ...]`` best first, scores
    rounded to 9 decimals before ranking (ties: the earlier hour of the week), so last-bit
    differences never reorder them.

    Only the scores within :data:`_ROUNDING_MARGIN` of the ``n``-th best raw score are rounded
    and sorted (``round`` moves a score by at most 5e-10, so no other can reach the top ``n``):
    the result equals rounding and sorting all of them."""
    s = np.asarray(scores, dtype=np.float64)
    if n <= 0 or len(s) == 0:
        return []
    if len(s) > n:
        kth = np.partition(s, len(s) - n)[len(s) - n]
        candidates = np.flatnonzero(s >= kth - _ROUNDING_MARGIN).tolist()
    else:
        candidates = range(len(s))
    rounded = {w: round(float(s[w]), 9) for w in candidates}
    order = sorted(rounded, key=lambda w: (-rounded[w], w))
    return [(w, rounded[w]) for w in order[:n]]


def content_type_windows(hour_map: np.ndarray, n: int = TOP_WINDOWS) -> dict[str, list[tuple[int, float]]]:
    """``{type: top_windows(window_scores(hour_map, type), n)}`` for the three content types
    (not HOURLY), the same lists as one :func:`top_windows` per type, from one matrix product
    and one sort over the stacked scores (:func:`_stacked_tops`)."""
    m = np.asarray(hour_map, dtype=np.float64)
    return _stacked_tops((_operators() @ m).reshape(len(CONTENT_TYPES), HOURS), n)


@functools.lru_cache(maxsize=None)
def _smoothed_spectra(bandwidth: int) -> np.ndarray:
    """``(4, 85)`` complex128 (read-only), computed once per bandwidth: the conjugated real
    Fourier transforms of the circulant kernels that map a posterior mean to the smoothed map
    (the box of :func:`models.timing.shrinkage.hour_smoothed`, ``1 / (2b + 1)`` on the hours
    ``w - b .. w + b``) and to each content type's scores of that map (:func:`_operators` times
    the box): row 0 of each of the four ``(168, 168)`` circulant matrices, transformed."""
    # column j of the box is hour_smoothed of the unit vector at j (which checks the bandwidth)
    box = np.stack([hour_smoothed(e, bandwidth) for e in np.eye(HOURS)], axis=1)
    scores = _operators() @ box
    first_rows = np.stack([box[0]] + [scores[i * HOURS] for i in range(len(CONTENT_TYPES))])
    out = np.conj(np.fft.rfft(first_rows, axis=1))
    out.setflags(write=False)
    return out


def smoothed_map_and_windows(mean: np.ndarray, bandwidth: int, n: int = TOP_WINDOWS
                             ) -> tuple[np.ndarray, dict[str, list[tuple[int, float]]]]:
    """``(hour_map, windows)``: the posterior ``mean`` (168,) averaged over adjacent hours
    (:func:`models.timing.shrinkage.hour_smoothed` with ``bandwidth``) and
    :func:`content_type_windows` of that map, computed together as four circular correlations
    by FFT (every operator here is circulant: ``out[w] = sum_a k[a] m[(w + a) mod 168]``).
    timing_optimizer needs both at every audience signal; the product with the stacked
    ``(672, 168)`` matrices cost it 65 us per signal, most of it reading the 900 kB matrix back
    into the cache, the transforms about 15 us. The floats differ from the matrix products' in
    their last bits (about 1e-17 on maps that sum to 1); the windows' scores are rounded to 9
    decimals before they are ranked (:func:`top_windows`).

    Raises ``ValueError`` for a bandwidth outside 0 to 11 hours."""
    m = np.asarray(mean, dtype=np.float64)
    out = np.fft.irfft(_smoothed_spectra(bandwidth) * np.fft.rfft(m), n=HOURS, axis=1)
    return out[0], _stacked_tops(out[1:], n)


def _stacked_tops(stacked: np.ndarray, n: int) -> dict[str, list[tuple[int, float]]]:
    """:func:`top_windows` of each row of ``stacked`` (``(3, 168)``, :data:`CONTENT_TYPES`
    order): the ``n``-th best raw score of each row from one sort over the rows, then only the
    scores within :data:`_ROUNDING_MARGIN` of it are rounded and ranked."""
    if not 0 < n < HOURS:
        return {ct: top_windows(stacked[i], n) for i, ct in enumerate(CONTENT_TYPES)}
    floor = np.sort(stacked, axis=1)[:, HOURS - n] - _ROUNDING_MARGIN
    rows, cols = np.nonzero(stacked >= floor[:, None])
    candidates: list[list[tuple[float, int]]] = [[] for _ in CONTENT_TYPES]
    for r, w, v in zip(rows.tolist(), cols.tolist(), stacked[rows, cols].tolist()):
        candidates[r].append((-round(v, 9), w))  # best first; ties: the earlier hour
    out = {}
    for ct, ranked in zip(CONTENT_TYPES, candidates):
        ranked.sort()
        out[ct] = [(w, -r) for r, w in ranked[:n]]
    return out


def next_start(window: int, t_ms: int) -> int:
    """Start (UTC epoch ms) of the first occurrence of hour-of-week ``window`` at or after
    ``t_ms``."""
    hour_start = t_ms - t_ms % HOUR_MS
    ahead = (window - hour_of_week(hour_start)) % HOURS
    start = hour_start + ahead * HOUR_MS
    return start if start >= t_ms else start + 7 * DAY_MS


def day_hour(window: int) -> tuple[int, int]:
    """``(day_of_week, hour)`` of an hour-of-week index (0 = Monday 00:00 UTC)."""
    return window // 24, window % 24

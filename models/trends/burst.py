"""Burst detection of one subject (a hashtag or a category) against its own baseline rate.

Pure functions over a JSON-serialisable per-subject state (a ``dict``, mutated in place: callers
pass a copy), so an agent can keep it in its state tables and a replay recomputes it exactly.

Counting
    Mentions are counted per *slot* of ``slot_ms`` of event time (slot ``s`` covers
    ``[s * slot_ms, (s + 1) * slot_ms)``, UTC epoch ms). The sliding window at clock ``t`` is the
    last ``window_slots`` slots, the one holding ``t`` included: ``[lo, hi]`` with
    ``hi = t // slot_ms``, ``lo = hi - window_slots + 1``. A mention whose slot is already older
    than ``lo`` is *late* and not counted (the count of a window never changes after it slid).

Baseline
    When a slot leaves the window its count ``x`` is folded into an exponentially weighted mean
    ``mu`` and variance ``var`` of the per-slot count (incremental form: Finch 2009, "Incremental
    calculation of weighted mean and variance", University of Cambridge, eq. 143;
    ``d = x - mu; mu += alpha * d; var = (1 - alpha) * (var + alpha * d * d)``), with
    ``alpha = 1 - 2 ** (-slot_ms / half_life_ms)``. Runs of empty slots fold in O(1):
    after ``n`` zeros ``mu_n = r^n mu`` and ``var_n = r^n (var + mu^2 (1 - r^n))``, ``r = 1 - alpha``.
    Both start at 0 when the subject is first seen and are divided by ``1 - r^m`` (``m`` slots
    folded), the usual bias correction of zero-initialised moving averages (Kingma & Ba 2015,
    "Adam", section 3). The window being tested never feeds its own baseline.

Test
    SigniTrend's significance (Schubert, Weiler & Kriegel, KDD 2014, "SigniTrend: scalable
    detection of emerging topics in textual streams by hashed significance thresholds",
    section 3.2), applied to window counts: with ``E = window_slots * mu`` and
    ``V = max(window_slots * var, E)`` (slots independent; the variance is at least the Poisson
    variance, the mean), ``z = (X - max(E, bias)) / (sqrt(V) + bias)``. The bias ``bias``
    (mentions per window) keeps rare subjects, whose few mentions are noise, from trending on
    two or three posts.

Lifecycle
    A trend STARTS when ``z >= z_start`` and ``X >= min_count``; while it is on, one ONGOING
    reading is given per slot in which the subject is evaluated; it ENDS when ``z < z_end``
    (hysteresis: ``z_end < z_start``, so a trend does not flicker around one threshold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

STARTED, ONGOING, ENDED = "STARTED", "ONGOING", "ENDED"
#: After this many empty slots the moving statistics are exactly 0 (r^n underflows far below any
#: count): cheaper than computing a power of a number that close to 1.
_MAX_BIAS_SLOTS = 100_000


@dataclass(frozen=True)
class TrendParams:
    """The detector's constants (defaults: a busy platform, minutes-scale trends).

    Attributes
    ----------
    slot_ms:
        Counting slot (ms): the window slides by one slot. Default 5 minutes.
    window_slots:
        Slots per window. Default 12 (a one-hour window).
    half_life_ms:
        Half-life of the baseline's exponential weights (ms). Default 24 hours.
    bias:
        SigniTrend's bias term, in mentions per window. Default 3.
    z_start, z_end:
        A trend starts at ``z >= z_start`` and ends at ``z < z_end``. Defaults 3.0 and 1.0.
    min_count:
        Mentions in the window a trend needs to start. Default 5.
    samples:
        Recent post ids kept per subject (``sample_post_ids``). Default 5.
    dedupe_keep:
        Mention ids remembered per subject to drop redelivered copies. Default 2048.
    warmup_windows:
        Windows a detector observes before any trend may start (its baselines are still empty:
        when a detector is deployed every subject looks new). Default 3.
    """

    slot_ms: int = 5 * 60_000
    window_slots: int = 12
    half_life_ms: int = 24 * 3_600_000
    bias: float = 3.0
    z_start: float = 3.0
    z_end: float = 1.0
    min_count: int = 5
    samples: int = 5
    dedupe_keep: int = 2048
    warmup_windows: int = 3

    def __post_init__(self) -> None:
        if self.slot_ms <= 0 or self.window_slots <= 0 or self.half_life_ms <= 0:
            raise ValueError("slot_ms, window_slots and half_life_ms must be positive")
        if self.z_end > self.z_start:
            raise ValueError(f"z_end ({self.z_end}) must not exceed z_start ({self.z_start})")

    @property
    def window_ms(self) -> int:
        """Window length in ms (``slot_ms * window_slots``)."""
        return self.slot_ms * self.window_slots

    @property
    def alpha(self) -> float:
        """Weight of the newest slot in the moving statistics."""
        return 1.0 - 2.0 ** (-self.slot_ms / self.half_life_ms)


@dataclass(frozen=True)
class Reading:
    """The subject's window at one clock: ``count`` mentions (int), ``expected`` (float,
    mentions the baseline predicts for a window), ``z`` (the burst score) and the window
    ``[window_start, window_end)`` (UTC epoch ms, slot-aligned)."""

    count: int
    expected: float
    z: float
    window_start: int
    window_end: int
    slot: int


@dataclass(frozen=True)
class Transition:
    """A lifecycle event: ``state`` is STARTED, ONGOING or ENDED; ``seq`` numbers the subject's
    transitions from 1 (a pure function of the mentions folded, so ids derived from it repeat
    in a replay); ``since`` is when the trend started (UTC epoch ms)."""

    state: str
    reading: Reading
    seq: int
    since: int


def new_state() -> dict[str, Any]:
    """An unseen subject's state."""
    return {"slots": [], "mu": 0.0, "var": 0.0, "m": 0, "folded": None, "trend": None,
            "seq": 0, "samples": [], "recent": [], "late": 0}


def _fold_zeros(mu: float, var: float, n: int, r: float) -> tuple[float, float]:
    if n <= 0:
        return mu, var
    rn = 0.0 if n >= _MAX_BIAS_SLOTS else r ** n
    return rn * mu, rn * (var + mu * mu * (1.0 - rn))


def advance(st: dict[str, Any], slot: int, p: TrendParams) -> None:
    """Fold every slot older than the window ending at ``slot`` into the baseline."""
    lo = slot - p.window_slots + 1
    if st["folded"] is None:
        st["folded"] = lo
        return
    if lo <= st["folded"]:
        return
    alpha, r = p.alpha, 1.0 - p.alpha
    mu, var, at = st["mu"], st["var"], st["folded"]
    kept = []
    for s, x in st["slots"]:
        if s >= lo:
            kept.append([s, x])
            continue
        if s < at:  # cannot happen for a state written by this module; ignore defensively
            continue
        mu, var = _fold_zeros(mu, var, s - at, r)
        d = x - mu
        mu += alpha * d
        var = (1.0 - alpha) * (var + alpha * d * d)
        at = s + 1
    mu, var = _fold_zeros(mu, var, lo - at, r)
    st["m"] = min(st["m"] + (lo - st["folded"]), _MAX_BIAS_SLOTS)
    st["mu"], st["var"], st["folded"], st["slots"] = mu, var, lo, kept


def add_mention(st: dict[str, Any], t_ms: int, clock_ms: int, p: TrendParams, mention_id: str,
                post_id: str | None = None) -> bool:
    """Count one mention at event time ``t_ms`` with the partition clock at ``clock_ms``
    (``>= t_ms``). Returns False, counting nothing, for a mention already counted (by id, among
    the last ``dedupe_keep``) or a late one (its slot left the window)."""
    short = mention_id.replace("-", "")[:16]
    if short in st["recent"]:
        return False
    hi = clock_ms // p.slot_ms
    advance(st, hi, p)
    s = t_ms // p.slot_ms
    if s < hi - p.window_slots + 1:
        st["late"] += 1
        return False
    st["recent"].append(short)
    del st["recent"][:-p.dedupe_keep]
    for cell in st["slots"]:
        if cell[0] == s:
            cell[1] += 1
            break
    else:
        st["slots"].append([s, 1])
        st["slots"].sort()
    if post_id is not None:
        st["samples"] = ([x for x in st["samples"] if x[1] != post_id] + [[t_ms, post_id]])
        st["samples"].sort()
        del st["samples"][:-p.samples]
    return True


def reading(st: dict[str, Any], clock_ms: int, p: TrendParams) -> Reading:
    """The window ending at ``clock_ms`` (folds the baseline forward first)."""
    hi = clock_ms // p.slot_ms
    advance(st, hi, p)
    lo = hi - p.window_slots + 1
    x = sum(c for s, c in st["slots"] if lo <= s <= hi)
    w = 1.0 - (1.0 - p.alpha) ** st["m"] if st["m"] else 0.0
    mu = st["mu"] / w if w > 0 else 0.0
    var = st["var"] / w if w > 0 else 0.0
    expected = p.window_slots * mu
    v = max(p.window_slots * var, expected)
    z = (x - max(expected, p.bias)) / (math.sqrt(v) + p.bias)
    return Reading(count=x, expected=expected, z=z, window_start=lo * p.slot_ms,
                   window_end=(hi + 1) * p.slot_ms, slot=hi)


def evaluate(st: dict[str, Any], clock_ms: int, p: TrendParams, may_start: bool = True
             ) -> Transition | None:
    """Advance the subject's lifecycle to ``clock_ms``; the transition it makes, if any.

    STARTED when ``may_start`` (the detector is past its warm-up), no trend is on and
    ``z >= z_start`` with ``count >= min_count``; ENDED when one
    is on and ``z < z_end``; ONGOING when one is on and this is the first evaluation in a new
    slot; else None.
    """
    r = reading(st, clock_ms, p)
    tr = st["trend"]
    if tr is None:
        if may_start and r.z >= p.z_start and r.count >= p.min_count:
            st["trend"] = {"since": clock_ms, "slot": r.slot}
            return _transition(st, STARTED, r, clock_ms)
        return None
    if r.z < p.z_end:
        st["trend"] = None
        return _transition(st, ENDED, r, tr["since"])
    if r.slot > tr["slot"]:
        tr["slot"] = r.slot
        return _transition(st, ONGOING, r, tr["since"])
    return None


def _transition(st: dict[str, Any], state: str, r: Reading, since: int) -> Transition:
    st["seq"] += 1
    return Transition(state=state, reading=r, seq=st["seq"], since=since)


def sample_post_ids(st: dict[str, Any]) -> list[str]:
    """The subject's most recent posts, newest first."""
    return [post_id for _, post_id in reversed(st["samples"])]

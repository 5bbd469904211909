"""Reach, the number of distinct users who saw a post (or any of a creator's posts), with Apache
DataSketches' HyperLogLog sketch.

``datasketches.hll_sketch`` (Flajolet et al. 2007, "HyperLogLog: the analysis of a near-optimal
cardinality estimation algorithm"; DataSketches' implementation with the HIP estimator and
exact coupon LIST and SET modes for small counts) keeps ``2**lg_k`` registers of 4 bits
(``HLL_4``) however many users it sees. Its relative standard error in HLL mode is about
``1.04 / sqrt(2**lg_k)`` (DataSketches documents 1.6 % at ``lg_k = 12``, 0.8 % at 14); below
about ``2**lg_k / 8`` distinct items it is in coupon mode and nearly exact. Serialised compact:
a few bytes per user while small, at most about ``2**(lg_k - 1)`` bytes (2 kB at 12).

Sketches are mergeable (``hll_union``), idempotent (adding a user twice changes nothing, so
re-delivered events cannot inflate reach) and order-independent in their estimate. The bytes
are not: a round trip through ``deserialize`` may re-lay the coupon table of a small sketch, so
the serialisation depends on the sequence of updates *and* round trips. The agents repeat both
identically (one round trip per event, in log order), so a replay writes the same bytes.

:class:`Reach` is the value agents keep in their state: a base64 string of the compact
serialisation (JSON-serialisable).
"""
from __future__ import annotations

import base64

from datasketches import hll_sketch, tgt_hll_type

#: Default log2 of the register count: 4096 registers, about 1.6 % relative standard error.
LG_K = 12
#: DataSketches' bounds for lg_k.
LG_K_MIN, LG_K_MAX = 4, 21


class Reach:
    """A distinct-count sketch of user ids (``HLL_4``, ``lg_k`` registers).

    Raises
    ------
    ValueError
        ``lg_k`` outside ``[4, 21]``, or a stored value that is not a serialised HLL sketch.
    """

    __slots__ = ("sketch",)

    def __init__(self, lg_k: int = LG_K, sketch: hll_sketch | None = None):
        if sketch is None:
            if not LG_K_MIN <= int(lg_k) <= LG_K_MAX:
                raise ValueError(f"lg_k must be in [{LG_K_MIN}, {LG_K_MAX}], not {lg_k}")
            sketch = hll_sketch(int(lg_k), tgt_hll_type.HLL_4)
        self.sketch = sketch

    @classmethod
    def from_state(cls, value: str | None, lg_k: int = LG_K) -> "Reach":
        """The sketch :meth:`to_state` stored (None: an empty one of ``lg_k``; a stored
        sketch keeps its own ``lg_k``)."""
        if not value:
            return cls(lg_k)
        try:
            return cls(sketch=hll_sketch.deserialize(base64.b64decode(value)))
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"not a serialised HLL sketch: {exc}") from None

    def to_state(self) -> str:
        """Base64 of the compact serialisation."""
        return base64.b64encode(self.sketch.serialize_compact()).decode("ascii")

    def add(self, user_id: str) -> None:
        """Count ``user_id`` (a second time changes nothing)."""
        self.sketch.update(user_id)

    def merge(self, other: "Reach") -> "Reach":
        """A new sketch of the union (``lg_k``: the smaller of the two)."""
        from datasketches import hll_union

        u = hll_union(min(self.sketch.lg_config_k, other.sketch.lg_config_k))
        u.update(self.sketch)
        u.update(other.sketch)
        return Reach(sketch=u.get_result(tgt_hll_type.HLL_4))

    @property
    def lg_k(self) -> int:
        return int(self.sketch.lg_config_k)

    def estimate(self) -> int:
        """Distinct users, rounded to the nearest integer."""
        return int(round(self.sketch.get_estimate()))

    def bounds(self, std_devs: int = 2) -> tuple[float, float]:
        """DataSketches' ``(lower, upper)`` bounds at 1, 2 or 3 standard deviations."""
        return self.sketch.get_lower_bound(std_devs), self.sketch.get_upper_bound(std_devs)

    def is_empty(self) -> bool:
        return self.sketch.is_empty()


def relative_error(estimate: float, exact: int) -> float:
    """``|estimate - exact| / exact`` (0.0 when both are 0).

    Raises
    ------
    ValueError
        ``exact`` is 0 and the estimate is not.
    """
    if exact == 0:
        if estimate:
            raise ValueError("relative error of a non-zero estimate of 0")
        return 0.0
    return abs(estimate - exact) / exact

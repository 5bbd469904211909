"""Heavy hitters of a sliding window with Apache DataSketches' frequent-items sketch.

The sketch (``datasketches.frequent_strings_sketch``; Anderson et al. 2017, "A high-performance
algorithm for identifying frequent items in data streams", IMC; the Misra-Gries family) keeps at
most ``0.75 * 2**lg_max_k`` counters however many distinct items it sees; an item's estimate is
within ``[lower, upper]`` and the error is at most ``epsilon * total_weight`` with
``epsilon = 3.5 / 2**lg_max_k`` (DataSketches' documented a-priori error). Sketches are mergeable,
so a window is one sketch per slot, merged when read, and per-partition sketches of disjoint item
sets merge into the global one.

:class:`WindowSketch` is a JSON-serialisable value (slot -> base64 of the serialised sketch) an
agent can keep in its state.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from datasketches import frequent_items_error_type, frequent_strings_sketch

#: log2 of the sketch's maximum map size: 64 counters (48 usable), error <= 5.5 % of the
#: window's total weight; about 1 kB serialised when full.
LG_MAX_K = 6


@dataclass(frozen=True)
class HeavyHitter:
    """An item and its frequency estimate with DataSketches' bounds (``lower <= true <= upper``)."""

    item: str
    estimate: int
    lower: int
    upper: int


class WindowSketch:
    """Frequent items over the last slots: one frequent-items sketch per slot (a slot is an
    integer, e.g. ``event_time_ms // slot_ms``)."""

    def __init__(self, lg_max_k: int = LG_MAX_K, slots: dict[int, frequent_strings_sketch] | None = None):
        self.lg_max_k = lg_max_k
        self.slots: dict[int, frequent_strings_sketch] = dict(slots or {})

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> "WindowSketch":
        """The sketch stored by :meth:`to_json` (None: an empty one)."""
        if not value:
            return cls()
        slots = {int(s): frequent_strings_sketch.deserialize(base64.b64decode(b))
                 for s, b in value.get("slots", {}).items()}
        return cls(int(value.get("lg_max_k", LG_MAX_K)), slots)

    def to_json(self) -> dict[str, Any]:
        """``{"lg_max_k": int, "slots": {"<slot>": base64 str}}``."""
        return {"lg_max_k": self.lg_max_k,
                "slots": {str(s): base64.b64encode(sk.serialize()).decode("ascii")
                          for s, sk in sorted(self.slots.items())}}

    def update(self, slot: int, item: str, weight: int = 1) -> None:
        """Count ``weight`` occurrences of ``item`` in ``slot``."""
        sk = self.slots.get(slot)
        if sk is None:
            sk = self.slots[slot] = frequent_strings_sketch(self.lg_max_k)
        sk.update(item, weight)

    def expire(self, before_slot: int) -> None:
        """Drop the slots older than ``before_slot``."""
        for s in [s for s in self.slots if s < before_slot]:
            del self.slots[s]

    def merged(self, lo: int, hi: int) -> frequent_strings_sketch:
        """One sketch of the slots in ``[lo, hi]``."""
        out = frequent_strings_sketch(self.lg_max_k)
        for s in sorted(self.slots):
            if lo <= s <= hi:
                out.merge(self.slots[s])
        return out

    def top(self, lo: int, hi: int, n: int = 10) -> list[HeavyHitter]:
        """The ``n`` items with the highest estimates in slots ``[lo, hi]``, highest first (ties
        by item), among those the sketch reports with no false negatives."""
        return top_of(self.merged(lo, hi), n)


def top_of(sketch: frequent_strings_sketch, n: int) -> list[HeavyHitter]:
    """The ``n`` most frequent items of ``sketch`` (``NO_FALSE_NEGATIVES``: every item whose
    true frequency may exceed the sketch's error is listed), highest estimate first."""
    rows = sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES)
    hitters = [HeavyHitter(item, int(est), int(lb), int(ub)) for item, est, lb, ub in rows]
    hitters.sort(key=lambda h: (-h.estimate, h.item))
    return hitters[:n]

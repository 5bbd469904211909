"""What surrounds the bandit: the daily budget, quiet hours from the active-hours histogram, the
feasible actions, and when held items are bundled into a digest.

Quiet hours
    The user_profiler's active-hours histogram (168 shares, index ``day_of_week * 24 + hour``,
    UTC) is folded over the days of the week into 24 hour-of-day shares; an hour whose share is
    below ``quiet_share / 24`` (a quarter of a uniform hour, by default) is quiet. No histogram
    (a user with no profile yet): no quiet hours, since nothing says when this user sleeps.

Budget
    At most ``daily_budget`` notifications sent on their own per user and UTC day; digests do not
    count against it (there is at most one per ``digest_interval_ms``).

HOLD's cost (:func:`hold_cost`)
    A digest is one notification shared by its items: in the bandit's currency (Dinkelbach's
    ``meaningful - cost x notifications``) it costs what a push costs, ``send_cost``, and an item
    held for it its share, ``send_cost / k``, ``k`` the user's expected items per digest. ``k``
    is the mean size of the user's own digests so far, shrunk toward ``send_cost / hold_cost``
    (2 with the defaults: ``hold_cost`` is the item's cost before the user has had a digest)
    with :data:`PRIOR_DIGESTS` pseudo-digests, and at least 1. A user whose digests bundle ten
    items pays a tenth of a push per held item; one whose digests carry a single item pays a
    whole push, as a push would.

Digests
    Held items wait in the user's state. They are bundled into one DIGEST notification at the
    first event of the user (a candidate or a feedback) that is outside quiet hours and at least
    ``digest_interval_ms`` after the oldest held item, or as soon as ``digest_max_items`` are held
    (again outside quiet hours). The runtime has no timers: a user with no later event keeps
    their held items until one arrives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from models.notifications import bandit as B

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Pseudo-digests of the prior size ``send_cost / hold_cost`` in a user's expected digest size
#: (:func:`hold_cost`): two digests' worth, so a user's own sizes decide after a day or so.
PRIOR_DIGESTS = 2.0


@dataclass(frozen=True)
class PolicyParams:
    """The generator's constants (docs/notifications.md lists each with its reason)."""

    daily_budget: int = 5
    quiet_share: float = 0.25
    digest_interval_ms: int = 12 * HOUR_MS
    digest_max_items: int = 20
    send_cost: float = B.SEND_COST
    hold_cost: float = B.HOLD_COST
    exploration: float = B.EXPLORATION
    mute_penalty: float = B.MUTE_PENALTY

    def __post_init__(self) -> None:
        if self.daily_budget < 0 or self.digest_max_items < 1 or self.digest_interval_ms < 0:
            raise ValueError("daily_budget >= 0, digest_max_items >= 1 and digest_interval_ms >= 0 required")
        if not 0.0 <= self.quiet_share <= 1.0 or not 0.0 <= self.exploration <= 1.0:
            raise ValueError("quiet_share and exploration must lie in [0, 1]")


def quiet_hours(histogram: Sequence[float] | None, quiet_share: float = 0.25) -> frozenset[int]:
    """The quiet UTC hours of the day (module docstring) of a (168,) active-hours histogram;
    empty for None, a wrong shape or an all-zero histogram."""
    if histogram is None or len(histogram) != 168:
        return frozenset()
    # the days summed in order per hour (numpy reduces the leading axis row after row, as the
    # Python sum did), then the 24 hours in order
    by_hour = np.asarray(histogram, dtype=np.float64).reshape(7, 24).sum(axis=0).tolist()
    total = sum(by_hour)
    if not total > 0:
        return frozenset()
    return frozenset(h for h in range(24) if by_hour[h] / total < quiet_share / 24)


def hour_of_day(t_ms: int) -> int:
    """UTC hour of the day of an epoch-ms instant."""
    return (t_ms % DAY_MS) // HOUR_MS


def feasible(*, quiet: bool, sent_today: int, muted: bool, digests_muted: bool,
             p: PolicyParams) -> tuple[str, ...]:
    """The actions allowed for a candidate: SEND outside quiet hours within the budget, HOLD
    unless digests are muted, never either for a muted type; DROP always."""
    if muted:
        return ("DROP",)
    out = []
    if not quiet and sent_today < p.daily_budget:
        out.append("SEND")
    if not digests_muted:
        out.append("HOLD")
    return (*out, "DROP")


def hold_cost(p: PolicyParams, digests: int = 0, items: int = 0) -> float:
    """The cost of holding one more item for the user's digest (module docstring): ``send_cost``
    shared by the expected items per digest, from the user's ``digests`` digests so far and the
    ``items`` they bundled; ``p.hold_cost`` for a user without digests, 0 when ``p.hold_cost`` is
    0."""
    if p.hold_cost <= 0 or p.send_cost <= 0:
        return max(0.0, p.hold_cost)
    prior_size = p.send_cost / p.hold_cost
    size = (items + PRIOR_DIGESTS * prior_size) / (digests + PRIOR_DIGESTS)
    return p.send_cost / max(1.0, size)


def digest_due(held: Sequence[Any], t_ms: int, quiet: bool, p: PolicyParams) -> bool:
    """Whether the held items (each with its hold time at index 4) go out as a digest at
    ``t_ms`` (module docstring)."""
    if not held or quiet:
        return False
    oldest = min(int(h[4]) for h in held)
    return t_ms - oldest >= p.digest_interval_ms or len(held) >= p.digest_max_items


def digest_title(held: Sequence[Any]) -> str:
    """One line naming a digest's items by type, most first: ``"3 likes, 1 reply"``."""
    counts: dict[str, int] = {}
    for h in held:
        counts[h[1]] = counts.get(h[1], 0) + 1
    words = {"NEW_POST": "new post", "REPLY": "reply", "COMMENT": "comment", "LIKE": "like",
             "SHARE": "share", "FOLLOW": "new follower", "TRENDING": "trend",
             "GOLDEN_MOMENT": "golden moment"}
    parts = []
    for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        w = words.get(k, k.lower())
        parts.append(f"{n} {w}{'' if n == 1 else ('es' if w.endswith('ch') else 's')}")
    return ", ".join(parts)

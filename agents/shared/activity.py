"""Side state over ``profiles`` for timing_optimizer: each user's active-hours histogram (the
user_profiler's decayed 7x24 shares) as of an event time, and the population's mean histogram.

Both answer from complete periods only, so the answer is a function of the log, not of which
profiles of the current period a worker happens to have read (as
:class:`agents.shared.social.UserInterests` does): a user's histogram at ``t`` is that of their
last profile published in an hour before ``t``'s hour (UTC); the population map at ``t`` is the
mean of every user's histogram as of the start of ``t``'s UTC day.

Weight of a user (their expected share of activity, :func:`models.timing.shrinkage.posterior`):
the profile's ``sequence`` (events the profiler folded) times ``2 ** (-age / half_life)``, ``age``
the time from the profile's event time to the reference time (the start of the as-of hour, or of
the day for the population) and ``half_life`` the profiler's active-hours half-life
(``profile_activity_half_life_days``). The histogram is decayed as of the profile's time; a user
whose last profile is months old is not active now, and without the decay their all-time count
gave their last few events the weight of all of them (a user with 239 events of which the
histogram held about 9 at a 14-day half-life made 61 % of the population's top hour, and the
population map scored below uniform guessing: docs/timing.md).
"""
from __future__ import annotations

import bisect
import threading
from math import exp2
from typing import Any

import numpy as np

from models.profiles.interests import ACTIVITY_HALF_LIFE_DAYS
from models.timing.shrinkage import HOURS, population_map
from agents.shared.social import fold_forgotten, fold_version
from streams.contracts.agent import ms_of

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Versions (one per hour with a profile) kept per user, newest; an as-of read older than the
#: oldest kept one gets none. A replay reads as of event times that move forward, so only the
#: newest few are ever asked for; the cap bounds memory at about 8 x 168 x 4 bytes per user.
VERSIONS_KEPT = 8


class AudienceActivity:
    """Users' active-hours histograms as of a time, and the population map. Thread-safe.

    ``half_life_days``: the profiler's active-hours half-life, which decays a profile's weight
    with its age (module docstring).
    """

    def __init__(self, half_life_days: float = ACTIVITY_HALF_LIFE_DAYS) -> None:
        self.half_life_days = float(half_life_days)
        self._half_life_ms = self.half_life_days * DAY_MS
        # user -> [(hour, seq, h, event time ms)], by hour
        self._versions: dict[str, list[tuple[int, int, np.ndarray, int]]] = {}
        # user -> (hour, their _entry as of it): the last as-of read of each user. An audience is
        # read whole at each of its creator's signals, mostly within the hour of the last read;
        # a fold or erasure of the user drops theirs, so a hit is what _entry would compute.
        self._read: dict[str, tuple[int, tuple[np.ndarray, float] | None]] = {}
        self._population: dict[int, np.ndarray] = {}                        # day -> cached map
        self._lock = threading.Lock()
        self._forgotten: set[str] = set()  # users with an erasure marker (:meth:`forget`)

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``ProfileUpdate`` in (a profile without activity, or a re-delivered or older
        sequence of the same hour, changes nothing)."""
        h = np.asarray(record.get("active_hours") or (), dtype=np.float32)
        if h.shape != (HOURS,) or not h.sum() > 0 or not np.isfinite(h).all() or (h < 0).any():
            return  # not a share vector: as if the profile had no activity (:meth:`audience`)
        user, at = record["user_id"], ms_of(record["event_time"])
        hour, seq = at // HOUR_MS, int(record.get("sequence") or 0)
        with self._lock:
            fold_version(self._versions.setdefault(user, []), (hour, seq, h, at), keep=VERSIONS_KEPT)
            self._read.pop(user, None)
            day = at // DAY_MS
            for d in [d for d in self._population if d > day]:
                del self._population[d]

    def forget(self, user_id: str, at_ms: int) -> None:
        """The user's ``profiles`` tombstone (an erasure) at ``at_ms``: from the next hour on,
        the user has no histogram and is out of the population map (``SideState``)."""
        with self._lock:
            if user_id in self._versions:
                self._read.pop(user_id, None)
                hour = fold_forgotten(self._versions[user_id], at_ms, (None, at_ms), keep=VERSIONS_KEPT)
                self._forgotten.add(user_id)
                for d in [d for d in self._population if d * DAY_MS // HOUR_MS > hour]:
                    del self._population[d]

    def forgotten(self, user_id: str, as_of_ms: int) -> bool:
        """Whether ``user_id`` was erased (:meth:`forget`) as of ``as_of_ms``, with no profile
        since."""
        if user_id not in self._forgotten:  # the common case, per audience member: no lock
            return False
        with self._lock:
            versions = self._versions.get(user_id, ())
            i = bisect.bisect_left(versions, (as_of_ms // HOUR_MS, -1))
            return bool(i) and versions[i - 1][2] is None

    def __len__(self) -> int:
        return len(self._versions)

    def histogram(self, user_id: str, as_of_ms: int) -> np.ndarray | None:
        """``user_id``'s (168,) shares as of ``as_of_ms`` (module docstring), or None."""
        got = self.activity(user_id, as_of_ms)
        return None if got is None else got[0]

    def activity(self, user_id: str, as_of_ms: int) -> tuple[np.ndarray, float] | None:
        """``(histogram, weight)`` of ``user_id`` as of ``as_of_ms``: the (168,) shares and the
        user's activity volume, the profile's ``sequence`` (events the profiler folded) decayed
        from the profile's time to the start of ``as_of_ms``'s hour (module docstring), or
        None."""
        with self._lock:
            return self._entry_of(user_id, as_of_ms // HOUR_MS)

    def audience(self, user_ids, as_of_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """``(maps, weights)``: the :meth:`activity` of each of ``user_ids``, read under one lock
        (an audience's members at once), as the arrays
        :func:`models.timing.shrinkage.posterior_mean` takes: ``(n, 168)`` float64 share rows
        (each histogram divided by its sum) and ``(n,)`` float64 positive weights, members
        without an activity (or whose decayed weight underflowed to 0) left out, the rest in the
        order of ``user_ids``. The rows are those :func:`models.timing.shrinkage.posterior` makes
        of the same histograms (:meth:`apply` keeps only finite, non-negative histograms with a
        positive sum), from two array operations instead of its checks per member."""
        hour = as_of_ms // HOUR_MS
        hists, weights = [], []
        with self._lock:
            for u in user_ids:
                got = self._entry_of(u, hour)
                if got is not None and got[1] > 0:
                    hists.append(got[0])
                    weights.append(got[1])
        if not hists:
            return np.zeros((0, HOURS)), np.zeros(0)
        maps = np.array(hists, dtype=np.float64)
        return maps / maps.sum(axis=1)[:, None], np.array(weights, dtype=np.float64)

    def _entry_of(self, user_id: str, hour: int) -> tuple[np.ndarray, float] | None:
        """:meth:`_entry` of ``user_id`` as of ``hour``, through the last-read memo (the lock
        held)."""
        memo = self._read.get(user_id)
        if memo is not None and memo[0] == hour:
            return memo[1]
        got = self._entry(self._versions.get(user_id, ()), hour)
        self._read[user_id] = (hour, got)
        return got

    def _entry(self, versions, hour: int) -> tuple[np.ndarray, float] | None:
        i = bisect.bisect_left(versions, (hour, -1))
        if not i:
            return None
        _, seq, h, at = versions[i - 1]
        if h is None:  # forgotten (an erasure)
            return None
        # 2 ** (-age / half-life), ages below zero as zero (models.profiles.interests.decay)
        return h, max(1, seq) * exp2(-float(max(hour * HOUR_MS - at, 0)) / self._half_life_ms)

    def population(self, as_of_ms: int) -> np.ndarray:
        """The mean histogram of every user as of the start of ``as_of_ms``'s UTC day (users in
        id order), weighted by their events, (168,) float64; uniform before any profile. Cached
        per day."""
        day = as_of_ms // DAY_MS
        with self._lock:
            got = self._population.get(day)
            if got is None:
                hour = day * DAY_MS // HOUR_MS
                entries = [e for e in (self._entry(self._versions[u], hour) for u in sorted(self._versions))
                           if e is not None]
                got = population_map([h for h, _ in entries], [w for _, w in entries])
                self._population[day] = got
            return got


def open_audience_activity(config: Any, models: Any) -> AudienceActivity:
    """``SideInput.open`` for ``profiles``: the profiler's active-hours half-life from
    ``profile_activity_half_life_days`` (default
    :data:`models.profiles.interests.ACTIVITY_HALF_LIFE_DAYS`)."""
    half_life = getattr(config, "profile_activity_half_life_days", None)
    return AudienceActivity(half_life or ACTIVITY_HALF_LIFE_DAYS)

"""Side states over the social graph and user interests, for feed_fanout.

* :class:`FollowGraph` over ``follows``: a creator's followers as of an event time;
* :class:`UserInterests` over ``profiles``: users' interest vectors as of an event time, and the
  users nearest to a post's vector.

Both answer as of an event time from what they have folded, so a replay (which has read the
topic whole) answers as the live run did when the side topic was not behind (see
``AgentSpec.order_sensitive``).
"""
from __future__ import annotations

import bisect
import threading
from typing import Any

import numpy as np

from agents.shared.posts import unit
from streams.contracts.agent import ms_of

HOUR_MS = 3_600_000


class FollowGraph:
    """Followers per creator as of a time (side state over ``follows``). Thread-safe.

    Each (follower, creator) pair keeps its FOLLOW / UNFOLLOW events sorted by (time, event id);
    the pair is a follow at ``t`` when its latest event at or before ``t`` is FOLLOW.
    """

    def __init__(self) -> None:
        self._edges: dict[str, dict[str, list[tuple[int, str, bool]]]] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``Follow`` record in (a re-delivered event changes nothing)."""
        a, b = record["follower_id"], record["followee_id"]
        if a == b:
            return
        item = (ms_of(record["event_time"]), record["event_id"], record["action"] == "FOLLOW")
        with self._lock:
            events = self._edges.setdefault(b, {}).setdefault(a, [])
            i = bisect.bisect_left(events, item)
            if i < len(events) and events[i][:2] == item[:2]:
                return
            events.insert(i, item)

    def followers(self, creator_id: str, as_of_ms: int) -> list[str]:
        """Who follows ``creator_id`` at ``as_of_ms``, sorted."""
        with self._lock:
            edges = list(self._edges.get(creator_id, {}).items())
        return sorted(follower for follower, events in edges if _follows_at(events, as_of_ms))

    def followees(self, user_id: str, as_of_ms: int) -> list[str]:
        """Whom ``user_id`` follows at ``as_of_ms``, sorted. Scans every creator's edges (the
        graph is indexed by creator): for rare questions such as an erasure, not a hot path."""
        with self._lock:
            edges = [(creator, list(by_follower[user_id]))
                     for creator, by_follower in self._edges.items() if user_id in by_follower]
        return sorted(creator for creator, events in edges if _follows_at(events, as_of_ms))


def _follows_at(events: list[tuple[int, str, bool]], as_of_ms: int) -> bool:
    """Whether a pair's FOLLOW / UNFOLLOW events (sorted by time and id) end in a follow at
    ``as_of_ms``."""
    i = bisect.bisect_right(events, (as_of_ms, "\U0010ffff", True))
    return bool(i) and events[i - 1][2]


class UserInterests:
    """Users' interest vectors as of a time (side state over ``profiles``). Thread-safe.

    A user's vector at ``t`` is that of their last profile published in a complete hour before
    ``t``'s hour (UTC), so the answer depends on the log, not on which profiles of the current hour
    a worker has read; per user, the last profile of each hour is kept.
    """

    def __init__(self) -> None:
        self._versions: dict[str, list[tuple[int, int, np.ndarray | None]]] = {}  # (hour, seq, v)
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``ProfileUpdate`` in."""
        user = record["user_id"]
        hour = ms_of(record["event_time"]) // HOUR_MS
        seq = int(record.get("sequence") or 0)
        v = unit(record.get("interest_vector") or None)
        with self._lock:
            fold_version(self._versions.setdefault(user, []), (hour, seq, v))

    def forget(self, user_id: str, at_ms: int) -> None:
        """The user's ``profiles`` tombstone (an erasure) at ``at_ms``: from the next hour on,
        the user has no vector and is never a nearest user (``SideState``)."""
        with self._lock:
            if user_id in self._versions:
                fold_forgotten(self._versions[user_id], at_ms, (None,))

    def __len__(self) -> int:
        return len(self._versions)

    def vector(self, user_id: str, as_of_ms: int) -> np.ndarray | None:
        """``user_id``'s interest vector at ``as_of_ms`` (see the class docstring), or None."""
        with self._lock:
            return self._at(self._versions.get(user_id, ()), as_of_ms // HOUR_MS)

    @staticmethod
    def _at(versions, hour: int) -> np.ndarray | None:
        i = bisect.bisect_left(versions, (hour, -1))
        return versions[i - 1][2] if i else None

    @staticmethod
    def _last_hour(versions, hour: int) -> int:
        """The hour of the last profile before ``hour`` (-1 when none)."""
        i = bisect.bisect_left(versions, (hour, -1))
        return versions[i - 1][0] if i else -1

    def nearest(self, vector: np.ndarray, as_of_ms: int, k: int, min_similarity: float,
                exclude: set[str] = frozenset(), active_since_ms: int | None = None
                ) -> list[tuple[str, float]]:
        """Up to ``k`` ``(user_id, cosine)`` with the highest cosine similarity of their vector at
        ``as_of_ms`` to the unit ``vector``, at least ``min_similarity``, best first (ties by
        user id). With ``active_since_ms``, only users with a profile (one is published at each
        of their events) in an hour at or after that one: recently active users. Exact (a scan of
        every user: milliseconds per thousand users)."""
        hour = as_of_ms // HOUR_MS
        since = None if active_since_ms is None else active_since_ms // HOUR_MS
        with self._lock:
            pairs = [(u, self._at(vs, hour)) for u, vs in self._versions.items()
                     if u not in exclude and (since is None or self._last_hour(vs, hour) >= since)]
        pairs = sorted((u, v) for u, v in pairs if v is not None and v.shape == vector.shape)
        if not pairs or k <= 0:
            return []
        # einsum's own sum-of-products loop, one row at a time, rounded: a user's similarity does
        # not depend on which other users are in the matrix or in what order they arrived (a
        # BLAS product may block differently, and a last-bit difference at the k-th place
        # changed who was pushed between two replays)
        m = np.stack([v for _, v in pairs]).astype(np.float64)
        sims = np.round(np.einsum("ij,j->i", m, vector.astype(np.float64), optimize=False), 6).tolist()
        order = sorted(range(len(pairs)), key=lambda i: (-sims[i], pairs[i][0]))
        return [(pairs[i][0], sims[i]) for i in order[:k] if sims[i] >= min_similarity]


def open_follow_graph(config: Any, models: Any) -> FollowGraph:
    """``SideInput.open`` for ``follows``."""
    return FollowGraph()


def open_user_interests(config: Any, models: Any) -> UserInterests:
    """``SideInput.open`` for ``profiles``."""
    return UserInterests()


FORGOTTEN = 2 ** 62
"""The sequence of an erasure's marker in a user's profile versions: above any profile's, so a
profile of the same hour (re-delivered, or folded after the erasure) does not replace it."""


def fold_forgotten(versions: list[tuple], at_ms: int, payload: tuple, keep: int | None = None) -> int:
    """Fold an erasure's marker ``(hour of at_ms, FORGOTTEN, *payload)`` into a user's profile
    versions (the side states' ``forget``: ``payload`` is what their as-of reads take for "no
    profile"), so that reads as of later hours find none. Returns the marker's hour."""
    hour = at_ms // HOUR_MS
    fold_version(versions, (hour, FORGOTTEN, *payload), keep=keep)
    return hour


def fold_version(versions: list[tuple], entry: tuple, keep: int | None = None) -> None:
    """Fold one profile version ``entry = (hour, sequence, ...)`` into ``versions`` (a user's,
    sorted by hour): a later sequence of the same hour replaces that hour's entry, an equal or
    older one changes nothing (a re-delivery); with ``keep``, only the newest ``keep`` hours stay.
    The as-of reads of the profile side inputs bisect these lists."""
    hour, seq = entry[0], entry[1]
    i = bisect.bisect_left(versions, (hour, -1))
    if i < len(versions) and versions[i][0] == hour:
        if versions[i][1] < seq:
            versions[i] = entry
        return
    versions.insert(i, entry)
    if keep is not None:
        del versions[:-keep]

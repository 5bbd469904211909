"""Side state over ``profiles`` for notification_candidates: who is interested in a hashtag or
category (the user_profiler's affinities), as of an event time.

A user's affinities at ``t`` are those of their last profile published in an hour before ``t``'s
hour (UTC), as :class:`agents.shared.social.UserInterests` answers, so the answer is a function
of the log and not of which profiles of the current hour a worker has read.
"""
from __future__ import annotations

import bisect
import threading
from typing import Any

from agents.shared.social import fold_forgotten, fold_version
from streams.contracts.agent import ms_of

HOUR_MS = 3_600_000
#: Versions kept per user (newest); reads move forward in time, so only the newest are asked for.
VERSIONS_KEPT = 4


class SubjectAffinities:
    """Users' hashtag and category affinities as of a time. Thread-safe."""

    def __init__(self) -> None:
        # user -> [(hour, sequence, {"HASHTAG:tag" | "CATEGORY:name": affinity})], ascending
        self._versions: dict[str, list[tuple[int, int, dict[str, float]]]] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``ProfileUpdate`` in (a re-delivered or older sequence of the same hour
        changes nothing)."""
        user = record.get("user_id")
        if not user:
            return
        aff = {f"CATEGORY:{k}": float(v) for k, v in (record.get("category_affinities") or {}).items()}
        aff.update({f"HASHTAG:{k.lstrip('#').lower()}": float(v)
                    for k, v in (record.get("hashtag_affinities") or {}).items()})
        hour, seq = ms_of(record["event_time"]) // HOUR_MS, int(record.get("sequence") or 0)
        with self._lock:
            fold_version(self._versions.setdefault(user, []), (hour, seq, aff), keep=VERSIONS_KEPT)

    def forget(self, user_id: str, at_ms: int) -> None:
        """The user's ``profiles`` tombstone (an erasure) at ``at_ms``: from the next hour on,
        the user has no affinities (``SideState``)."""
        with self._lock:
            if user_id in self._versions:
                fold_forgotten(self._versions[user_id], at_ms, ({},), keep=VERSIONS_KEPT)

    def __len__(self) -> int:
        return len(self._versions)

    def interested(self, kind: str, subject: str, as_of_ms: int, min_affinity: float, limit: int
                   ) -> list[tuple[str, float]]:
        """Up to ``limit`` ``(user_id, affinity)`` whose affinity to ``subject`` of ``kind``
        (HASHTAG or CATEGORY) at ``as_of_ms`` is at least ``min_affinity``, highest first (ties by
        user id). A scan of every user: called once per trend start."""
        key, hour = f"{kind}:{subject}", as_of_ms // HOUR_MS
        with self._lock:
            got = []
            for user, versions in self._versions.items():
                i = bisect.bisect_left(versions, (hour, -1))
                if i:
                    a = versions[i - 1][2].get(key)
                    if a is not None and a >= min_affinity:
                        got.append((user, a))
        got.sort(key=lambda ua: (-ua[1], ua[0]))
        return got[:max(0, limit)]


def open_subject_affinities(config: Any, models: Any) -> SubjectAffinities:
    """``SideInput.open`` for ``profiles``."""
    return SubjectAffinities()

"""Side states over ``profiles`` forget an erased user as of the tombstone's time
(SideState.forget): answers as of later hours leave the user out, answers as of earlier times do
not change (a replay that reads the tombstone decides as the live run did), a profile of the
same hour does not bring the user back, and a later one does."""
from __future__ import annotations

import numpy as np

from agents.shared.activity import AudienceActivity
from agents.shared.affinities import SubjectAffinities
from agents.shared.social import UserInterests

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_700_000_000_000 // DAY * DAY  # a UTC midnight


def profile(user, at, seq=1, hot=3):
    h = [0.0] * 168
    h[hot] = 1.0
    vec = [0.0] * 8
    vec[hot % 8] = 1.0
    return {"user_id": user, "event_time": at, "sequence": seq, "active_hours": h,
            "interest_vector": vec, "hashtag_affinities": {"qiskit": 0.9}, "category_affinities": {}}


def test_interest_vectors_and_nearest_users_forget_from_the_next_hour():
    side = UserInterests()
    side.apply(profile("ada", T0))
    side.apply(profile("bob", T0))
    erased_at = T0 + 5 * HOUR + 10_000
    side.forget("ada", erased_at)
    side.forget("nobody", erased_at)  # never seen: nothing to do
    probe = np.eye(8, dtype=np.float32)[3]
    assert side.vector("ada", T0 + 5 * HOUR + 20_000) is not None       # same hour: as before
    assert side.vector("ada", T0 + 6 * HOUR) is None                     # from the next hour
    assert [u for u, _ in side.nearest(probe, T0 + 3 * HOUR, 5, 0.1)] == ["ada", "bob"]
    assert [u for u, _ in side.nearest(probe, T0 + 7 * HOUR, 5, 0.1)] == ["bob"]
    side.apply(profile("ada", T0 + 5 * HOUR + 30_000, seq=9))  # same hour: the erasure stands
    assert side.vector("ada", T0 + 6 * HOUR) is None
    side.apply(profile("ada", T0 + 9 * HOUR, seq=10))  # a new profile later: from then on
    assert side.vector("ada", T0 + 10 * HOUR) is not None and side.vector("ada", T0 + 8 * HOUR) is None


def test_activity_and_the_population_map_forget_from_the_next_hour():
    side = AudienceActivity()
    side.apply(profile("ada", T0, hot=3))
    side.apply(profile("bob", T0, hot=20))
    before = side.population(T0 + 2 * DAY)  # cached for that day
    assert before[3] > 0 and before[20] > 0
    side.forget("ada", T0 + DAY + 5 * HOUR)
    assert side.histogram("ada", T0 + DAY + 3 * HOUR) is not None
    assert side.histogram("ada", T0 + DAY + 6 * HOUR) is None and side.activity("ada", T0 + 3 * DAY) is None
    after = side.population(T0 + 2 * DAY)  # the cached map of a later day is recomputed
    assert after[3] == 0 and after[20] > 0
    assert side.population(T0 + DAY)[3] > 0  # a day before the erasure: unchanged


def test_affinities_forget_from_the_next_hour():
    side = SubjectAffinities()
    side.apply(profile("ada", T0))
    side.forget("ada", T0 + 2 * HOUR)
    assert side.interested("HASHTAG", "qiskit", T0 + 2 * HOUR + 1, 0.5, 10) == [("ada", 0.9)]
    assert side.interested("HASHTAG", "qiskit", T0 + 3 * HOUR, 0.5, 10) == []


def test_the_timing_optimizer_prunes_an_erased_member_at_the_creators_next_signal():
    from agents import timing_optimizer as T

    side = AudienceActivity()
    for u in ("ada", "bob"):
        side.apply(profile(u, T0))
    st = {"members": {"ada": [T0, "e1", 1, 0], "bob": [T0, "e2", 1, 0]}}
    T._prune(st, T0 + 3 * HOUR, 30, side)
    assert set(st["members"]) == {"ada", "bob"}
    side.forget("ada", T0 + 4 * HOUR)
    T._prune(st, T0 + 4 * HOUR + 1, 30, side)  # the same hour: kept
    assert set(st["members"]) == {"ada", "bob"}
    assert side.forgotten("ada", T0 + 5 * HOUR) and not side.forgotten("bob", T0 + 5 * HOUR)
    T._prune(st, T0 + 5 * HOUR, 30, side)
    assert set(st["members"]) == {"bob"}

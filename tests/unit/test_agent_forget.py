"""Every stateful agent keyed by user forgets an erased user (agents/shared/erasure.py): the
request reaches it on erasure-requests, its entry leaves each table, the other users' stay, and
it reports into erasure_log; scope POST only reports. Through the worker's engine."""
from __future__ import annotations

import pytest

from agents import creator_analytics, feed_ranker, notification_generator, timing_optimizer, user_profiler
from streams.contracts.effects import StateDelete, Upsert
from tests.unit.agent_harness import Harness

T = 1_700_000_000_000
STATEFUL_BY_USER = [(user_profiler.SPEC, user_profiler.TABLE), (feed_ranker.SPEC, feed_ranker.TABLE),
                    (notification_generator.SPEC, notification_generator.TABLE),
                    (creator_analytics.SPEC, creator_analytics.CREATORS),
                    (timing_optimizer.SPEC, timing_optimizer.TABLE)]


def request(scope="USER", user="ada", post_id=None):
    return {"event_id": "9a4c1f0e-0000-4000-8000-000000000002", "event_time": T + 10_000, "producer": "t",
            "request_id": "req-2", "user_id": user, "scope": scope, "post_id": post_id,
            "legal_basis": "CCPA", "deadline": None}


def harness(spec, tmp_path):
    return Harness(spec, tmp_path, side={s.name: s.open(None, None) for s in spec.side_inputs})


@pytest.mark.parametrize("spec,table", STATEFUL_BY_USER, ids=[s.name for s, _ in STATEFUL_BY_USER])
def test_the_user_entry_is_forgotten_and_reported(spec, table, tmp_path):
    assert "erasure-requests" in spec.topics and "cassandra" in spec.sinks
    h = harness(spec, tmp_path)
    h.table(table).update({"ada": {"anything": 1}, "bob": {"anything": 2}})
    out = h.feed(("erasure-requests", request()))
    assert not out.dead_letters
    assert [c for c, _ in out.state if isinstance(c, StateDelete)] == [StateDelete(table, "ada")]
    assert h.table(table) == {"bob": {"anything": 2}}
    rows = {e.row["item"]: e.row for e in out.views if isinstance(e, Upsert) and e.table == "erasure_log"}
    assert rows[f"state:{table}"]["count"] == 1 and rows["done"]["component"] == spec.name
    again = h.feed(("erasure-requests", {**request(), "event_id": "9a4c1f0e-0000-4000-8000-000000000003"}))
    assert not [c for c, _ in again.state if isinstance(c, StateDelete)]  # nothing left to forget


@pytest.mark.parametrize("spec,table", STATEFUL_BY_USER, ids=[s.name for s, _ in STATEFUL_BY_USER])
def test_a_post_erasure_only_reports(spec, table, tmp_path):
    h = harness(spec, tmp_path)
    h.table(table)["ada"] = {"anything": 1}
    out = h.feed(("erasure-requests", request("POST", post_id="p1")))
    assert h.table(table) == {"ada": {"anything": 1}}
    assert [e.row["item"] for e in out.views if isinstance(e, Upsert)] == ["done"]


def test_the_profiler_forgets_a_real_profile_and_a_replay_of_both_agrees(tmp_path):
    signup = {"event_id": "3b1f8c2e-4a5d-4e6f-8a9b-0c1d2e3f4a51", "event_time": T, "producer": "t",
              "user_id": "ada", "handle": "ada", "declared_interests": ["qubits"], "locale": None,
              "country": None, "about": None}
    bob = {**signup, "event_id": "3b1f8c2e-4a5d-4e6f-8a9b-0c1d2e3f4a52", "user_id": "bob", "handle": "bob"}
    runs = []
    for name in ("live", "replay"):
        h = harness(user_profiler.SPEC, tmp_path / name)
        h.feed(("signups", signup), ("signups", bob))
        assert set(h.table(user_profiler.TABLE)) == {"ada", "bob"}
        h.feed(("erasure-requests", request()))
        runs.append(dict(h.table(user_profiler.TABLE)))
    assert set(runs[0]) == {"bob"} and runs[0] == runs[1]

"""Notification Generator: the bandit (posterior updates, propensities), budget, quiet hours,
digests, the off-policy estimators on cases with known answers, and both agents
(notification_candidates, notification_generator) through the runtime's engine
(tests/unit/agent_harness.py)."""
from __future__ import annotations

import random
import zlib

import numpy as np
import pytest

from agents import notification_generator as N
from agents.shared.activity import AudienceActivity
from agents.shared.affinities import SubjectAffinities
from agents.shared.posts import PublishedPosts
from agents.shared.social import FollowGraph
from models.notifications import bandit as B
from models.notifications import ope
from models.notifications import policy as P
from streams.contracts.agent import ms_of
from streams.contracts.effects import StateSet, Upsert
from tests.unit.agent_harness import DictState, Harness, call, full_record

DAY, HOUR = 86_400_000, 3_600_000
T0 = 1_700_006_400_000 + 12 * HOUR          # Wednesday 2023-11-15 12:00 UTC


# --- the bandit ----------------------------------------------------------------------------------


def test_reward_mapping_counts_each_notification_once():
    arm, flags = B.update([1.0, 1.0], "", "DELIVERED")
    assert arm == [1.0, 2.0]                                   # provisional failure
    arm, flags = B.update(arm, flags, "OPENED")
    assert arm == [2.0, 1.0]                                   # success, failure taken back
    assert B.update(arm, flags, "ACTED") == (arm, flags)       # opened and acted: one success
    assert B.update(arm, flags, "DELIVERED") == (arm, flags)   # re-delivered feedback
    arm2, f2 = B.update([1.0, 1.0], "", "DISMISSED")
    assert arm2 == [1.0, 2.0] and B.update(arm2, f2, "DELIVERED")[0] == [1.0, 2.0]
    arm3, f3 = B.update(arm2, f2, "MUTED")
    assert arm3 == [1.0, 2.0 + B.MUTE_PENALTY] and B.update(arm3, f3, "MUTED")[0] == arm3


def test_propensities_sum_to_one_are_reproducible_and_follow_the_posterior():
    good = {"SEND": [40.0, 10.0], "HOLD": [2.0, 8.0]}          # P(meaningful) ~0.8 when sent
    bad = {"SEND": [2.0, 60.0], "HOLD": [2.0, 60.0]}           # ~0.03 either way
    for arms in (good, bad, {}):
        for feas in (("SEND", "HOLD", "DROP"), ("HOLD", "DROP"), ("DROP",)):
            d = B.decide(arms, feas, random.Random(5))
            assert sum(d.probabilities.values()) == pytest.approx(1.0)
            assert d.probabilities[d.action] == d.propensity > 0
            assert all(d.probabilities[a] == 0.0 for a in B.ACTIONS if a not in feas)
            assert d == B.decide(arms, feas, random.Random(5))   # same seed, same decision
    g = B.decide(good, B.ACTIONS, random.Random(1))
    assert g.probabilities["SEND"] > 0.9 and g.expected["SEND"] == 0.8
    b = B.decide(bad, B.ACTIONS, random.Random(1))
    assert b.probabilities["DROP"] > 0.9
    # exploration keeps every feasible action at >= EXPLORATION / 3
    assert min(b.probabilities.values()) == pytest.approx(B.EXPLORATION / 3)
    assert B.decide(good, ("DROP",), random.Random(1)).probabilities == {"SEND": 0.0, "HOLD": 0.0, "DROP": 1.0}


def test_the_logged_propensity_is_the_frequency_of_the_action():
    arms = {"SEND": [3.0, 4.0], "HOLD": [2.0, 3.0]}
    rng = random.Random(11)
    counts = dict.fromkeys(B.ACTIONS, 0)
    n = 4000
    first = B.decide(arms, B.ACTIONS, rng)
    for _ in range(n):
        d = B.decide(arms, B.ACTIONS, rng)
        assert d.probabilities == first.probabilities      # a function of arms and costs only
        counts[d.action] += 1
    for a in B.ACTIONS:  # the logged propensity is the frequency with which the action is played
        assert counts[a] / n == pytest.approx(first.probabilities[a], abs=0.025)
    assert sum(first.probabilities.values()) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("send, hold, send_cost, hold_cost", [
    ((3.0, 4.0), (2.0, 3.0), B.SEND_COST, B.HOLD_COST),
    ((1.0, 1.0), (1.0, 1.0), B.SEND_COST, B.HOLD_COST),
    ((40.0, 60.0), (5.0, 30.0), B.SEND_COST, 0.05),     # a concentrated SEND arm near its cost
    ((2.0, 30.0), (300.0, 700.0), B.SEND_COST, 0.2),
])
def test_thompson_probabilities_are_thompson_samplings(send, hold, send_cost, hold_cost):
    """The quadrature equals Thompson sampling measured directly: 200,000 pairs of posterior
    draws, each action's share within 4 standard errors (at most 0.0045)."""
    q = dict(zip(B.ACTIONS, B.thompson_probabilities(send, hold, B.ACTIONS, send_cost, hold_cost)))
    th, n = random.Random(4), 200_000
    wins = dict.fromkeys(B.ACTIONS, 0)
    for _ in range(n):
        s, h = th.betavariate(*send) - send_cost, th.betavariate(*hold) - hold_cost
        wins["SEND" if s > max(h, 0) else "HOLD" if h > 0 else "DROP"] += 1
    for a in B.ACTIONS:
        assert q[a] == pytest.approx(wins[a] / n, abs=0.0045)
    # one arm allowed: its value against DROP's 0 exactly
    only_send = B.thompson_probabilities(send, hold, ("SEND", "DROP"), send_cost, hold_cost)
    assert only_send[1] == 0.0 and only_send[0] == pytest.approx(
        sum(th.betavariate(*send) > send_cost for _ in range(n)) / n, abs=0.0045)
    assert B.thompson_probabilities(send, hold, ("DROP",), send_cost, hold_cost) == (0.0, 0.0, 1.0)


def test_decide_refuses_bad_arms_and_exploration():
    with pytest.raises(ValueError, match="exploration"):
        B.decide({}, B.ACTIONS, random.Random(1), exploration=1.5)
    with pytest.raises(ValueError, match="alpha and beta"):
        B.decide({"SEND": [0.0, 1.0]}, B.ACTIONS, random.Random(1))


# --- budget, quiet hours, digests --------------------------------------------------------------


def _night_owl() -> list[float]:
    h = np.zeros(168)
    for d in range(7):
        h[d * 24 + 20: d * 24 + 24] = 1.0                        # active 20:00-24:00 UTC
        h[d * 24 + 12] = 0.5
    return (h / h.sum()).tolist()


def test_quiet_hours_budget_and_feasible_actions():
    quiet = P.quiet_hours(_night_owl())
    assert 3 in quiet and 21 not in quiet and 12 not in quiet
    assert P.quiet_hours(None) == frozenset() and P.quiet_hours([0.0] * 168) == frozenset()
    p = P.PolicyParams(daily_budget=2)
    assert P.feasible(quiet=False, sent_today=1, muted=False, digests_muted=False, p=p) == B.ACTIONS
    assert P.feasible(quiet=False, sent_today=2, muted=False, digests_muted=False, p=p) == ("HOLD", "DROP")
    assert P.feasible(quiet=True, sent_today=0, muted=False, digests_muted=True, p=p) == ("DROP",)
    assert P.feasible(quiet=False, sent_today=0, muted=True, digests_muted=False, p=p) == ("DROP",)
    held = [["n1", "LIKE", None, "a", T0, "e1"], ["n2", "LIKE", None, "b", T0 + HOUR, "e2"],
            ["n3", "REPLY", None, "c", T0 + HOUR, "e3"]]
    assert not P.digest_due(held, T0 + 11 * HOUR, False, p)
    assert P.digest_due(held, T0 + 12 * HOUR, False, p) and not P.digest_due(held, T0 + 12 * HOUR, True, p)
    assert P.digest_due(held, T0, False, P.PolicyParams(digest_max_items=3))
    assert P.digest_title(held) == "2 likes, 1 reply"
    with pytest.raises(ValueError):
        P.PolicyParams(exploration=2.0)


def test_holding_costs_the_users_share_of_a_digest():
    p = P.PolicyParams()                                   # send 0.3, hold 0.15: prior size 2
    assert P.hold_cost(p) == pytest.approx(p.hold_cost)   # no digest yet: the constant
    # ten digests of 8 items: (80 + 2 * 2) / 12 = 7 items expected, a seventh of a push each
    assert P.hold_cost(p, 10, 80) == pytest.approx(p.send_cost / 7)
    # digests of one item: a held item costs a whole push (never more)
    assert P.hold_cost(p, 50, 50) == pytest.approx(p.send_cost * (50 + 2) / (50 + 4))
    assert P.hold_cost(p, 1000, 1000) <= p.send_cost
    assert P.hold_cost(P.PolicyParams(hold_cost=0.0), 3, 30) == 0.0
    # the bandit holds more readily when the share is small: same arms, same draws
    arms = {"SEND": [1.0, 9.0], "HOLD": [2.0, 8.0]}     # a HOLD engages about 0.2 of the time
    costly = B.decide(arms, B.ACTIONS, random.Random(5), hold_cost=P.hold_cost(p))
    shared = B.decide(arms, B.ACTIONS, random.Random(5), hold_cost=P.hold_cost(p, 10, 80))
    assert shared.probabilities["HOLD"] > costly.probabilities["HOLD"] + 0.2


# --- off-policy estimators -----------------------------------------------------------------------


def test_estimators_recover_a_known_value():
    rng = np.random.default_rng(0)
    n, k = 40000, 3
    truth = np.array([0.7, 0.3, 0.0])                          # expected reward per action
    logging = np.array([0.2, 0.5, 0.3])
    actions = rng.choice(k, size=n, p=logging)
    rewards = (rng.random(n) < truth[actions]).astype(float)
    target = np.tile([0.8, 0.1, 0.1], (n, 1))
    value = float(target[0] @ truth)                            # 0.59
    pscore = logging[actions]
    assert ope.ips(rewards, pscore, target, actions) == pytest.approx(value, abs=0.02)
    assert ope.snips(rewards, pscore, target, actions) == pytest.approx(value, abs=0.02)
    q_bad = np.zeros((n, k))                                     # a useless reward model: DR = IPS
    assert ope.doubly_robust(rewards, pscore, target, actions, q_bad) == pytest.approx(
        ope.ips(rewards, pscore, target, actions))
    q_true = np.tile(truth, (n, 1))                              # a perfect one: DR is exact-ish
    assert ope.doubly_robust(rewards, pscore, target, actions, q_true) == pytest.approx(value, abs=0.01)
    # hand-computed: two decisions
    assert ope.ips([1, 0], [0.5, 0.25], [[1, 0], [0, 1]], [0, 1]) == pytest.approx(1.0)
    assert ope.snips([1, 0], [0.5, 0.25], [[1, 0], [0, 1]], [0, 1]) == pytest.approx(2 / 6)
    with pytest.raises(ValueError):
        ope.ips([1], [0.0], [[1.0]], [0])


# --- the agents through the engine ----------------------------------------------------------------


def _sides():
    published, graph, aff = PublishedPosts(), FollowGraph(), SubjectAffinities()
    for pid, creator in (("p1", "alice"), ("p2", "bob")):
        published.apply(full_record("posts-published", post_id=pid, creator_id=creator, event_time=T0 - DAY,
                                    uploaded_at=T0 - DAY))
    for f in ("f1", "f2", "alice"):
        graph.apply(full_record("follows", follower_id=f, followee_id="bob", action="FOLLOW", event_time=T0 - DAY))
    aff.apply(full_record("profiles", user_id="fan", event_time=T0 - DAY, sequence=1,
                          hashtag_affinities={"cats": 0.9}, category_affinities={}))
    aff.apply(full_record("profiles", user_id="meh", event_time=T0 - DAY, sequence=1,
                          hashtag_affinities={"cats": 0.1}, category_affinities={}))
    return {"published": published, "graph": graph, "affinities": aff}


def _raw_inputs():
    ev = [("interactions", full_record("interactions", user_id="bob", post_id="p1", type="LIKE", event_time=T0)),
          ("interactions", full_record("interactions", user_id="alice", post_id="p1", type="LIKE", event_time=T0)),
          ("interactions", full_record("interactions", user_id="carol", post_id="p1", type="SKIP", event_time=T0)),
          ("follows", full_record("follows", follower_id="carol", followee_id="alice", action="FOLLOW",
                                  event_time=T0 + 1)),
          ("posts-published", full_record("posts-published", post_id="p3", creator_id="bob", parent_post_id="p1",
                                          event_time=T0 + 2, uploaded_at=T0)),
          ("trends", full_record("trends", subject_kind="HASHTAG", subject="cats", state="STARTED",
                                 sample_post_ids=["p2"], event_time=T0 + 3)),
          ("trends", full_record("trends", subject_kind="HASHTAG", subject="cats", state="ONGOING",
                                 event_time=T0 + 4)),
          ("golden-moments", full_record("golden-moments", creator_id="bob", content_type="FOREVER",
                                         next_window_start=T0 + 5 * HOUR, event_time=T0 + 5))]
    return [(t, {**r, "event_id": f"00000000-0000-4000-8000-{i:012d}"}) for i, (t, r) in enumerate(ev)]


def test_candidates_are_keyed_by_recipient(tmp_path):
    h = Harness(N.CANDIDATES_SPEC, tmp_path, side=_sides())
    out = h.feed(*_raw_inputs())
    assert not out.dead_letters
    got = [(e.key.decode(), h.decode(e)["type"], h.decode(e)["actor_id"]) for e in out.emits]
    assert got == [("alice", "LIKE", "bob"),                     # alice's own like and the SKIP: none
                   ("alice", "FOLLOW", "carol"),
                   ("alice", "REPLY", "bob"),                    # bob answered alice's p1 ...
                   ("f1", "NEW_POST", "bob"), ("f2", "NEW_POST", "bob"),   # ... alice not told twice
                   ("fan", "TRENDING", None),                    # only the interested user, once
                   ("bob", "GOLDEN_MOMENT", None)]
    assert h.decode(out.emits[5])["subject"] == "cats" and h.decode(out.emits[5])["post_id"] == "p2"


def _cand(i: int, user: str, kind: str, t: int) -> tuple[str, dict]:
    return ("notification-candidates", full_record(
        "notification-candidates", event_id=f"00000000-0000-4000-8000-{i:012d}", user_id=user, type=kind,
        actor_id=f"a{i}", event_time=t))


def _feedback(i: int, user: str, nid: str, kind: str, action: str, t: int) -> tuple[str, dict]:
    return ("notification-feedback", full_record(
        "notification-feedback", event_id=f"00000000-0000-4000-9000-{i:012d}", user_id=user,
        notification_id=nid, notification_type=kind, action=action, event_time=t))


def _activity() -> AudienceActivity:
    side = AudienceActivity()
    side.apply({"user_id": "owl", "event_time": T0 - 2 * DAY, "sequence": 1, "active_hours": _night_owl()})
    return side


def _session(tmp_path, partitions: int = 1, **env):
    """Three users over three days: u1 opens every REPLY and ignores every LIKE; u2 dismisses
    everything; the night owl gets candidates at 03:00 (quiet) and 21:00."""
    h = Harness(N.SPEC, tmp_path, side={"activity": _activity()}, **env)
    outs, i = [], 0

    def run(events):
        nonlocal outs
        out = h.run([h.message(topic, rec, partition=zlib.crc32(rec["user_id"].encode()) % partitions)
                     for topic, rec in events])
        assert not out.dead_letters, out.dead_letters
        outs.append(out)
        return [h.decode(e) for e in out.emits]

    for step in range(60):
        t = T0 + step * 70 * 60_000                                # every 70 minutes, ~3 days
        batch = [_cand(i, "u1", "REPLY" if step % 2 else "LIKE", t), _cand(i + 1, "u2", "COMMENT", t),
                 _cand(i + 2, "owl", "LIKE", t)]
        i += 3
        decided = run(batch)
        fb = []
        for n in decided:
            if n["action"] != "SEND" and n["type"] != "DIGEST":
                continue
            fb.append(_feedback(i, n["user_id"], n["notification_id"], n["type"], "DELIVERED", t + 60_000))
            if n["user_id"] == "u1" and n["type"] == "REPLY":
                fb.append(_feedback(i + 1, "u1", n["notification_id"], "REPLY", "OPENED", t + 120_000))
            if n["user_id"] == "u2":
                fb.append(_feedback(i + 1, "u2", n["notification_id"], n["type"], "DISMISSED", t + 120_000))
            i += 2
        if fb:
            run(fb)
    return h, outs


def _decisions(h, outs):
    return [{**d, "event_time": ms_of(d["event_time"])} for d in (h.decode(e) for out in outs for e in out.emits)]


def test_agent_learns_each_users_taste_within_budget_and_quiet_hours(tmp_path):
    h, outs = _session(tmp_path)
    ev = _decisions(h, outs)
    st = h.table(N.TABLE)
    u1 = st["u1"]["arms"]
    assert B.mean(u1["REPLY"]["SEND"]) > 0.7 and B.mean(u1["LIKE"]["SEND"]) < 0.4
    assert B.mean(st["u2"]["arms"]["COMMENT"]["SEND"]) < 0.2
    # after a day and a half, among the decisions where SEND was allowed (outside quiet hours,
    # within the budget)
    late = [e for e in ev if e["event_time"] >= T0 + 36 * HOUR and e["type"] != "DIGEST"
            and e["action_probabilities"]["SEND"] > 0]
    p_send = lambda u, k: np.mean([e["action_probabilities"]["SEND"] for e in late  # noqa: E731
                                   if e["user_id"] == u and e["type"] == k])
    assert p_send("u1", "REPLY") > 0.85 and p_send("u1", "LIKE") < 0.3 and p_send("u2", "COMMENT") < 0.3
    # every decision carries its propensity, and the probabilities of each decision sum to 1
    for e in ev:
        assert e["propensity"] == e["action_probabilities"][e["action"]] > 0
        assert sum(e["action_probabilities"].values()) == pytest.approx(1.0)
    # the budget: at most 5 sends on their own per user and UTC day
    per_day: dict = {}
    for e in ev:
        if e["action"] == "SEND" and e["type"] != "DIGEST":
            k = (e["user_id"], e["event_time"] // DAY)
            per_day[k] = per_day.get(k, 0) + 1
    assert per_day and max(per_day.values()) <= 5
    # quiet hours: the night owl never gets a push between 01:00 and 11:00 UTC
    owl = [e for e in ev if e["user_id"] == "owl" and e["action"] == "SEND"]
    assert owl and all(not 1 <= (e["event_time"] % DAY) // HOUR <= 11 for e in owl)
    assert all(e["action_probabilities"]["SEND"] == 0.0 for e in ev
               if e["user_id"] == "owl" and 1 <= (e["event_time"] % DAY) // HOUR <= 11 and e["type"] != "DIGEST")


def test_digests_bundle_held_items_and_the_view_follows(tmp_path):
    h, outs = _session(tmp_path)
    ev = _decisions(h, outs)
    held = {e["notification_id"]: e for e in ev if e["action"] == "HOLD"}
    digests = [e for e in ev if e["type"] == "DIGEST"]
    assert held and digests
    bundled = [nid for d in digests for nid in d["digest_notification_ids"]]
    assert len(bundled) == len(set(bundled)) and set(bundled) <= set(held)
    for d in digests:
        assert d["propensity"] == 1.0 and d["action"] == "SEND"
        items = [held[n] for n in d["digest_notification_ids"]]
        assert items and all(i["user_id"] == d["user_id"] and i["event_time"] <= d["event_time"] for i in items)
        assert d["digest_event_ids"] == [i["cause_event_id"] for i in items]
    rows = {}
    for out in outs:
        for v in out.views:
            if isinstance(v, Upsert) and v.table == N.VIEW:
                k = (v.row["user_id"], v.row["notification_id"])
                if k not in rows or v.timestamp_us >= rows[k][0]:
                    rows[k] = (v.timestamp_us, {**rows.get(k, (0, {}))[1], **v.row})
    assert all(rows[(held[n]["user_id"], n)][1]["status"] == "DIGESTED" for n in bundled)
    # each user's digests and the items they bundled: what their HOLD cost is shared by
    st = h.table(N.TABLE)
    for user in {d["user_id"] for d in digests}:
        mine = [d for d in digests if d["user_id"] == user]
        assert st[user]["digest_sizes"] == [len(mine), sum(len(d["digest_notification_ids"]) for d in mine)]
    opened = [r for _, r in rows.values() if r["user_id"] == "u1" and r["type"] == "REPLY" and r["action"] == "SEND"]
    assert opened and all(r["status"] == "OPENED" for r in opened)
    assert not any(k[1] in {e["notification_id"] for e in ev if e["action"] == "DROP"} for k in rows)


def test_a_state_written_before_digest_sizes_is_restored_and_counts_from_there():
    state = DictState(N.TABLE)
    held = [[f"n{i}", "LIKE", None, "a", T0 - 13 * HOUR, f"e{i}"] for i in range(4)]
    state.tables[N.TABLE]["u1"] = {"arms": {}, "day": (T0 - DAY) // DAY, "sent": 0, "held": held,
                                   "digests": 3, "muted": [], "open": {}, "seen": []}   # a v1 state
    topic, rec = _cand(1, "u1", "LIKE", T0)
    out = call(N.SPEC, state, topic, rec)
    st = [e for e in out if isinstance(e, StateSet)][0].value
    assert st["digests"] == 4 and st["digest_sizes"] == [1, 4]


def test_several_partitions_give_the_same_decisions_as_one(tmp_path):
    h1, one = _session(tmp_path / "one", partitions=1)
    h3, three = _session(tmp_path / "three", partitions=3)
    key = lambda outs: sorted((e.key, e.value) for out in outs for e in out.emits)  # noqa: E731
    assert key(one) == key(three)
    assert h1.table(N.TABLE) == h3.table(N.TABLE)


def test_agent_is_deterministic_on_the_same_input_twice(tmp_path):
    ha, a = _session(tmp_path / "a")
    hb, b = _session(tmp_path / "b")
    assert [(e.key, e.value) for o in a for e in o.emits] == [(e.key, e.value) for o in b for e in o.emits]
    assert [o.views for o in a] == [o.views for o in b] and ha.table(N.TABLE) == hb.table(N.TABLE)


def test_redelivery_mute_and_bad_input(tmp_path):
    state = DictState(N.TABLE)
    topic, rec = _cand(1, "u9", "LIKE", T0)
    first = call(N.SPEC, state, topic, rec)
    assert sum(isinstance(e, StateSet) for e in first) == 1
    state.apply(first)
    assert call(N.SPEC, state, topic, rec) == []                         # re-delivered candidate
    nid = [e for e in first if not isinstance(e, (StateSet, Upsert))][0].record["notification_id"]
    _, fb = _feedback(2, "u9", nid, "LIKE", "MUTED", T0 + 1000)
    state.apply(call(N.SPEC, state, "notification-feedback", fb))
    assert state.get(N.TABLE, "u9")["muted"] == ["LIKE"]
    later = [e for e in call(N.SPEC, state, *_cand(3, "u9", "LIKE", T0 + 2000)) if not isinstance(e, (StateSet, Upsert))]
    assert later[0].record["action"] == "DROP" and later[0].record["propensity"] == 1.0
    assert call(N.SPEC, state, topic, {**rec, "user_id": ""}) == []
    h = Harness(N.SPEC, tmp_path, side={"activity": AudienceActivity()})
    out = h.run([h.message("notification-candidates", b"\x00garbage")])
    assert len(out.dead_letters) == 1 and not out.emits
    h1 = Harness(N.CANDIDATES_SPEC, tmp_path, side=_sides())
    out = h1.feed(("interactions", full_record("interactions", user_id="u", post_id="nope", type="LIKE")),
                  ("follows", full_record("follows", follower_id="u", followee_id="u", action="FOLLOW")))
    assert not out.emits and not out.dead_letters


def test_settings_override_the_constants():
    from types import SimpleNamespace

    p = N.params_of(SimpleNamespace(notification_daily_budget=2, notification_digest_interval_h=1.5))
    assert p.daily_budget == 2 and p.digest_interval_ms == int(1.5 * HOUR)
    assert N.params_of(None) == P.PolicyParams()


# --- the eval and the command line -----------------------------------------------------------------


def test_eval_runs_the_agent_on_the_population_and_is_reproducible():
    from streams.bench.notifications import run_notifications_eval

    a = run_notifications_eval(users=25, days=5, seed=3)
    assert a == run_notifications_eval(users=25, days=5, seed=3)
    p = a["policies"]
    assert p["send_everything"]["notifications"] == p["pulse"]["candidates"] > p["pulse"]["notifications"]
    assert p["fixed_cap"]["notifications"] <= 5 * 25 * 6                # 5 a day, 25 users, <= 6 UTC days
    assert sum(p["pulse"]["decisions"].values()) == p["pulse"]["candidates"]
    assert p["pulse"]["meaningful_ratio"] > p["send_everything"]["meaningful_ratio"]
    o = a["off_policy"]
    assert o["decisions"] == p["pulse"]["candidates"] and 0 < o["truth"] < 1
    assert all(abs(v - o["truth"]) < 0.5 for v in o["estimates"].values())


def _pulse_cli(tmp_path, *args, **env):
    import os
    import subprocess
    import sys

    from streams.settings import REPO_ROOT

    full = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    full.update(PULSE_HOME=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=full, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("env", [{}, {"PULSE_CASSANDRA_HOSTS": "127.0.0.1:1"}])
def test_notifications_command_without_cassandra_is_one_line(tmp_path, env):
    out = _pulse_cli(tmp_path, "notifications", "u1", "--limit", "5", COLUMNS="400", **env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "error:" in out.stderr and "Traceback" not in out.stderr
    assert len([ln for ln in out.stderr.splitlines() if ln.strip()]) == 1


def test_every_later_write_on_a_notification_row_has_a_greater_timestamp(tmp_path):
    """Many candidates for one user in one millisecond: the digest that a full hold list sends
    marks the items DIGESTED with timestamps above their HELD rows' (equal timestamps would let
    Cassandra keep the greater value, HELD, whenever the two writes land in different batches),
    in the session above too, with its feedback writes."""
    h = Harness(N.SPEC, tmp_path, side={"activity": _activity()})
    p = N.params_of(h.settings)
    burst = [_cand(i, "busy", "LIKE", T0 + 12 * 3_600_000) for i in range(4 * p.digest_max_items)]
    outs = [h.run([h.message(t, r)]) for t, r in burst]  # one batch each: no coalescing
    _, session = _session(tmp_path / "s")
    for group in (outs, session):
        seen: dict = {}
        statuses = set()
        for out in group:
            for v in out.views:
                if isinstance(v, Upsert) and v.table == N.VIEW:
                    k = (v.row["user_id"], v.row["notification_id"])
                    assert v.timestamp_us > seen.get(k, -1), (k, v.row["status"])
                    seen[k] = v.timestamp_us
                    statuses.add(v.row["status"])
        assert "DIGESTED" in statuses


def test_open_notifications_are_forgotten_after_the_feedback_window_oldest_first():
    """_remember: entries made more than OPEN_TTL_MS before the newest go, in the order they were
    made; OPEN_KEEP still bounds the rest."""
    day = 86_400_000
    st = {"open": {}}
    for i in range(10):
        N._remember(st, f"n{i}", ["LIKE", "SEND", i * day, "", 0, 0, []])
    assert list(st["open"]) == [f"n{i}" for i in range(2, 10)]   # n9 at day 9: days 2..9 stay
    assert all(e[2] >= 9 * day - N.OPEN_TTL_MS for e in st["open"].values())
    st = {"open": {}}
    for i in range(N.OPEN_KEEP + 3):
        N._remember(st, f"m{i:04d}", ["LIKE", "SEND", i, "", 0, 0, []])
    assert len(st["open"]) == N.OPEN_KEEP and "m0000" not in st["open"]


def test_seen_keeps_digests_and_still_recognises_whole_ids_of_older_states():
    key = N._seen_key("14b626e7-3888-5186-8568-13f979474b0f")
    assert len(key) == 16 and key == N._seen_key("14b626e7-3888-5186-8568-13f979474b0f")
    assert N._seen_key("cand-u1-000001") != N._seen_key("cand-u1-000002")  # ids of any shape
    topic, rec = _cand(1, "u1", "LIKE", T0)
    state = DictState(N.TABLE)
    state.tables[N.TABLE]["u1"] = {"arms": {}, "day": T0 // DAY, "sent": 0, "held": [], "digests": 0,
                                   "muted": [], "open": {}, "seen": [rec["event_id"]],  # a whole id
                                   "digest_sizes": [0, 0]}
    assert call(N.SPEC, state, topic, rec) == []                  # a copy of a candidate seen before
    state.tables[N.TABLE]["u1"]["seen"] = []
    st = [e for e in call(N.SPEC, state, topic, rec) if isinstance(e, StateSet)][0].value
    assert st["seen"] == [N._seen_key(rec["event_id"])]
    state.tables[N.TABLE]["u1"] = st
    assert call(N.SPEC, state, topic, rec) == []

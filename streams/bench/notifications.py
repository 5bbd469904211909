"""``pulse eval notifications``: a simulated population fed through notification_generator's own
``process`` (in process, the code the workers run), against send-everything and a fixed daily cap
on the same candidates, and off-policy estimates of a candidate policy from Pulse's logged
decisions against the simulator's truth.

The simulated population (constants below, all seeded)
    :data:`USERS` users over :data:`DAYS` days. Each user wants each notification type or not:
    with probability ``WANT_SHARE[type]`` the user's probability of opening or acting on a
    notification of that type is drawn from Beta(6, 4) (mean 0.6), otherwise from Beta(1, 19)
    (mean 0.05). Candidates of each type arrive as a Poisson process of ``RATES[type]`` a day at
    uniformly random times. Each user is awake :data:`AWAKE_HOURS` consecutive UTC hours from a
    random start; their profile (the ``profiles`` side input) says so (awake hours share 0.98
    of the histogram). Reactions: a push is opened with the user's probability for its type,
    times :data:`ASLEEP_OPEN_FACTOR` when it arrives while they sleep; an opened push is also
    acted on with probability :data:`ACT_SHARE`; an unopened one is dismissed with probability
    :data:`DISMISS_SHARE`, else ignored. Every push is DELIVERED a minute after it is sent. In a
    digest, each item is engaged with (OPENED and ACTED naming the item) with probability
    :data:`DIGEST_ATTENTION` times the user's probability for its type; the digest is OPENED
    when any item is. The three policies see the same candidates and the same uniform draws per
    candidate (common random numbers), so their differences are the policies'.

Measures (per policy): notifications (pushes and digests), meaningful notifications (a push
opened or acted on; a digest with an engaged item), the meaningful ratio, and meaningful items
(pushes opened plus digest items engaged).

Off-policy evaluation: the per-decision reward of Pulse's log is 1 when the decision's item was
engaged (a SEND opened or acted on; a HOLD engaged from its digest), else 0. The candidate
policy (:func:`candidate_policy`) is evaluated from the logged decisions and their propensities
by IPS, self-normalised IPS and doubly robust (:mod:`models.notifications.ope`; the reward model
of DR: the log's mean reward per (type, action)). The truth is the simulator's expected reward
of the candidate policy on the same logged decisions (their contexts: user, type, which actions
were feasible), ``mean_i sum_a pi(a | x_i) E[r | x_i, a]`` (as Open Bandit Pipeline's synthetic
ground truth), with ``E[r | SEND] = p`` (SEND is feasible only while the user is awake),
``E[r | HOLD] = DIGEST_ATTENTION * p`` and ``E[r | DROP] = 0``.
"""
from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Any, Callable

import numpy as np

from agents import notification_generator as N
from models.notifications import ope
from models.notifications.bandit import ACTIONS
from streams.contracts.agent import Context, Event, ms_of
from streams.contracts.effects import Emit, StateDelete, StateSet

DAY_MS, HOUR_MS, MINUTE_MS = 86_400_000, 3_600_000, 60_000
#: Simulated users and days.
USERS = 300
DAYS = 14
#: Candidates per user and day, by type (a Poisson process each).
RATES = {"LIKE": 6.0, "COMMENT": 1.5, "REPLY": 0.6, "FOLLOW": 0.8, "NEW_POST": 3.0, "TRENDING": 0.6}
#: Share of users who want each type (their open probability ~ Beta(6, 4); the rest ~ Beta(1, 19)).
WANT_SHARE = {"LIKE": 0.25, "COMMENT": 0.6, "REPLY": 0.75, "FOLLOW": 0.4, "NEW_POST": 0.35, "TRENDING": 0.2}
WANTED_BETA = (6.0, 4.0)
UNWANTED_BETA = (1.0, 19.0)
#: Consecutive UTC hours each user is awake (from a uniformly random hour).
AWAKE_HOURS = 11
#: A push that arrives while the user sleeps is opened with this factor of their probability.
ASLEEP_OPEN_FACTOR = 0.5
#: Share of opened pushes also acted on; share of unopened pushes dismissed.
ACT_SHARE = 0.4
DISMISS_SHARE = 0.5
#: An item in a digest is engaged with this factor of the user's probability for its type.
DIGEST_ATTENTION = 0.6
#: Pushes per user and UTC day of the fixed-cap baseline (Pulse's own default budget).
FIXED_CAP = 5
#: The simulation starts at 2024-01-01 00:00 UTC (a Monday).
START_MS = 1_704_067_200_000


def population(users: int, days: int, seed: int) -> dict[str, Any]:
    """The simulated users and their candidates (module docstring), seeded:
    ``{"users": {user: {"p": {type: prob}, "awake": start hour}}, "candidates": [record, ...]}``
    with candidates in time order, each with pre-drawn uniforms ``u`` (open, act, dismiss)."""
    rng = np.random.default_rng(seed)
    out_users, cands = {}, []
    for i in range(users):
        user = f"sim{i:04d}"
        p = {}
        for k in RATES:
            a, b = WANTED_BETA if rng.random() < WANT_SHARE[k] else UNWANTED_BETA
            p[k] = float(rng.beta(a, b))
        out_users[user] = {"p": p, "awake": int(rng.integers(24))}
        for k, rate in RATES.items():
            n = int(rng.poisson(rate * days))
            for t in np.sort(rng.uniform(0, days * DAY_MS, n)).astype(np.int64):
                cands.append({"user_id": user, "type": k, "t": START_MS + int(t), "u": rng.random(3).tolist()})
    cands.sort(key=lambda c: (c["t"], c["user_id"], c["type"]))
    for j, c in enumerate(cands):
        c["event_id"] = f"00000000-0000-4000-8000-{j:012d}"
    return {"users": out_users, "candidates": cands}


def awake(user: dict, t_ms: int) -> bool:
    """Whether the simulated user is awake at ``t_ms``."""
    return (t_ms % DAY_MS // HOUR_MS - user["awake"]) % 24 < AWAKE_HOURS


def histogram(user: dict) -> list[float]:
    """The user's active-hours histogram as the profiler would publish it (168 shares)."""
    h = [0.02 / (168 - 7 * AWAKE_HOURS)] * 168
    for d in range(7):
        for j in range(AWAKE_HOURS):
            h[d * 24 + (user["awake"] + j) % 24] = 0.98 / (7 * AWAKE_HOURS)
    return h


def _push_outcome(user: dict, c: dict, t: int) -> tuple[bool, bool, bool]:
    """(opened, acted, dismissed) of a push of candidate ``c`` sent at ``t``."""
    q = user["p"][c["type"]] * (1.0 if awake(user, t) else ASLEEP_OPEN_FACTOR)
    opened = c["u"][0] < q
    return opened, opened and c["u"][1] < ACT_SHARE, (not opened) and c["u"][2] < DISMISS_SHARE


def run_baselines(pop: dict) -> dict[str, dict[str, float]]:
    """Send-everything and the fixed daily cap on the population's candidates."""
    out = {}
    for name in ("send_everything", "fixed_cap"):
        sent, meaningful, per_day = 0, 0, defaultdict(int)
        for c in pop["candidates"]:
            if name == "fixed_cap":
                key = (c["user_id"], c["t"] // DAY_MS)
                if per_day[key] >= FIXED_CAP:
                    continue
                per_day[key] += 1
            sent += 1
            meaningful += _push_outcome(pop["users"][c["user_id"]], c, c["t"])[0]
        out[name] = _summary(sent, meaningful, meaningful, len(pop["candidates"]))
    return out


def _summary(notifications: int, meaningful: int, items: int, candidates: int) -> dict[str, float]:
    return {"candidates": candidates, "notifications": notifications, "meaningful_notifications": meaningful,
            "meaningful_ratio": round(meaningful / notifications, 4) if notifications else 0.0,
            "meaningful_items": items}


class _Activity:
    """The ``activity`` side input of the simulated users (their fixed histograms)."""

    def __init__(self, users: dict) -> None:
        self._h = {u: np.asarray(histogram(v)) for u, v in users.items()}

    def histogram(self, user_id: str, as_of_ms: int):
        return self._h.get(user_id)


def run_pulse(pop: dict, config: Any = None, progress: Callable[[int, int], None] | None = None
              ) -> tuple[dict[str, float], list[dict]]:
    """Run the candidates and the simulated feedback through ``notification_generator.process``
    in event-time order; returns the summary and the logged decisions (one dict per non-digest
    decision: user, type, action, propensity, action probabilities, reward)."""
    users, side = pop["users"], {"activity": _Activity(pop["users"])}
    tables: dict[str, dict] = {N.TABLE: {}}

    class _State:
        def get(self, table, key, default=None):
            v = tables[table].get(key)
            return default if v is None else v

    state = _State()
    queue: list[tuple[int, int, str, dict]] = []
    seq = 0
    for c in pop["candidates"]:
        queue.append((c["t"], seq, "notification-candidates", {
            "event_id": c["event_id"], "event_time": c["t"], "producer": "sim", "cause_event_id": None,
            "user_id": c["user_id"], "type": c["type"], "post_id": None, "actor_id": None, "subject": None,
            "due_at": None}))
        seq += 1
    heapq.heapify(queue)
    by_event = {c["event_id"]: c for c in pop["candidates"]}
    decisions: dict[str, dict] = {}          # notification id -> logged decision
    sent = meaningful = items = fb_n = done = 0
    total = len(pop["candidates"])

    def feedback(t: int, user: str, nid: str, kind: str, action: str) -> None:
        nonlocal seq, fb_n
        fb_n += 1
        heapq.heappush(queue, (t, seq, "notification-feedback", {
            "event_id": f"00000000-0000-4000-9000-{fb_n:012d}", "event_time": t, "producer": "sim",
            "notification_id": nid, "user_id": user, "notification_type": kind, "action": action,
            "latency_ms": None}))
        seq += 1

    while queue:
        t, _, topic, rec = heapq.heappop(queue)
        ctx = Context(N.NAME, rec["event_id"], t, side=side, config=config)
        for e in N.process(state, Event(topic, rec), ctx):
            if isinstance(e, StateSet):
                tables[e.table][e.key] = e.value
            elif isinstance(e, StateDelete):
                tables[e.table].pop(e.key, None)
            elif isinstance(e, Emit):
                n = e.record
                user, nid = n["user_id"], n["notification_id"]
                t_n = ms_of(n["event_time"])
                if n["type"] == "DIGEST":
                    sent += 1
                    feedback(t_n + MINUTE_MS, user, nid, "DIGEST", "DELIVERED")
                    engaged = 0
                    for item in n["digest_notification_ids"]:
                        d = decisions[item]
                        if by_event[d["event_id"]]["u"][0] < DIGEST_ATTENTION * users[user]["p"][d["type"]]:
                            d["reward"], engaged = 1, engaged + 1
                            feedback(t_n + 5 * MINUTE_MS, user, item, d["type"], "ACTED")
                    if engaged:
                        meaningful, items = meaningful + 1, items + engaged
                        feedback(t_n + 4 * MINUTE_MS, user, nid, "DIGEST", "OPENED")
                    continue
                c = by_event[n["cause_event_id"]]
                decisions[nid] = {"event_id": c["event_id"], "user_id": user, "type": n["type"],
                                  "action": n["action"], "propensity": n["propensity"],
                                  "probs": dict(n["action_probabilities"]), "reward": 0}
                if n["action"] != "SEND":
                    continue
                sent += 1
                feedback(t_n + MINUTE_MS, user, nid, n["type"], "DELIVERED")
                opened, acted, dismissed = _push_outcome(users[user], c, t_n)
                if opened:
                    decisions[nid]["reward"] = 1
                    meaningful, items = meaningful + 1, items + 1
                    feedback(t_n + 5 * MINUTE_MS, user, nid, n["type"], "OPENED")
                    if acted:
                        feedback(t_n + 10 * MINUTE_MS, user, nid, n["type"], "ACTED")
                elif dismissed:
                    feedback(t_n + 5 * MINUTE_MS, user, nid, n["type"], "DISMISSED")
        if topic == "notification-candidates":
            done += 1
            if progress is not None and (done % 500 == 0 or done == total):
                progress(done, total)
    return _summary(sent, meaningful, items, total), list(decisions.values())


def candidate_policy(kind: str, probs: dict[str, float]) -> dict[str, float]:
    """The policy evaluated off-policy: a fixed rule by type, within the actions the logged
    decision allowed: REPLY, COMMENT and FOLLOW are sent (held when SEND was not allowed),
    LIKE and NEW_POST held, TRENDING dropped."""
    allowed = [a for a in ACTIONS if probs.get(a, 0.0) > 0]
    want = {"REPLY": "SEND", "COMMENT": "SEND", "FOLLOW": "SEND", "LIKE": "HOLD", "NEW_POST": "HOLD"}.get(kind, "DROP")
    if want not in allowed:
        want = "HOLD" if want == "SEND" and "HOLD" in allowed else "DROP"
    return {a: 1.0 if a == want else 0.0 for a in ACTIONS}


def off_policy(pop: dict, log: list[dict]) -> dict[str, Any]:
    """IPS, SNIPS and DR estimates of :func:`candidate_policy` from ``log`` against the truth."""
    idx = {a: i for i, a in enumerate(ACTIONS)}
    users = pop["users"]
    r = np.array([d["reward"] for d in log], dtype=float)
    ps = np.array([d["propensity"] for d in log])
    acts = np.array([idx[d["action"]] for d in log])
    target = np.array([[candidate_policy(d["type"], d["probs"])[a] for a in ACTIONS] for d in log])
    sums: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for d, ai in zip(log, acts):
        s = sums[(d["type"], ai)]
        s[0] += d["reward"]
        s[1] += 1
    q_hat = np.array([[sums[(d["type"], j)][0] / sums[(d["type"], j)][1] if sums[(d["type"], j)][1] else 0.0
                       for j in range(len(ACTIONS))] for d in log])
    q_true = np.array([[users[d["user_id"]]["p"][d["type"]], DIGEST_ATTENTION * users[d["user_id"]]["p"][d["type"]],
                        0.0] for d in log])
    truth = float((target * q_true).sum(axis=1).mean())
    est = {"ips": ope.ips(r, ps, target, acts), "snips": ope.snips(r, ps, target, acts),
           "dr": ope.doubly_robust(r, ps, target, acts, q_hat)}
    return {"policy": "REPLY/COMMENT/FOLLOW send (hold when SEND not allowed), LIKE/NEW_POST hold, TRENDING drop",
            "decisions": len(log), "truth": round(truth, 5),
            "logging_policy_value": round(float(r.mean()), 5),
            "estimates": {k: round(v, 5) for k, v in est.items()},
            "relative_error": {k: round(abs(v - truth) / truth, 4) for k, v in est.items()},
            "max_importance_weight": round(float((target[np.arange(len(log)), acts] / ps).max()), 2)}


def run_notifications_eval(*, users: int = USERS, days: int = DAYS, seed: int = 7, config: Any = None,
                           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The whole evaluation (module docstring) as one JSON-ready dict."""
    pop = population(users, days, seed)
    base = run_baselines(pop)
    pulse, log = run_pulse(pop, config, progress)
    everything = base["send_everything"]
    ratio_x = pulse["meaningful_ratio"] / everything["meaningful_ratio"] if everything["meaningful_ratio"] else 0.0
    kept = pulse["meaningful_notifications"] / max(1, everything["meaningful_notifications"])
    kept_items = pulse["meaningful_items"] / max(1, everything["meaningful_items"])
    o = off_policy(pop, log)
    actions = defaultdict(int)
    for d in log:
        actions[d["action"]] += 1
    return {
        "population": {"users": users, "days": days, "seed": seed, "rates_per_day": RATES, "want_share": WANT_SHARE,
                       "wanted_beta": WANTED_BETA, "unwanted_beta": UNWANTED_BETA, "awake_hours": AWAKE_HOURS,
                       "asleep_open_factor": ASLEEP_OPEN_FACTOR, "act_share": ACT_SHARE,
                       "dismiss_share": DISMISS_SHARE, "digest_attention": DIGEST_ATTENTION},
        "policies": {"pulse": {**pulse, "decisions": dict(sorted(actions.items()))}, **base,
                     "fixed_cap_per_day": FIXED_CAP},
        "off_policy": o,
        "goals": {"ratio_vs_send_everything": round(ratio_x, 3), "met_ratio_2x": ratio_x >= 2.0,
                  # "delivering at least 80 % of its meaningful notifications": what send-everything
                  # delivered that the user engaged with, reaching the user pushed or in a digest
                  # (items); a digest bundling several engaged items counts once in the other figure
                  "meaningful_items_kept": round(kept_items, 3), "met_kept_80pct": kept_items >= 0.8,
                  "meaningful_notifications_kept": round(kept, 3),
                  "snips_relative_error": o["relative_error"]["snips"],
                  "met_snips_10pct": o["relative_error"]["snips"] <= 0.10},
    }

"""The per-(user, notification type) bandit: Beta posteriors, Thompson sampling over SEND / HOLD /
DROP, and propensities estimated by Monte Carlo.

Arms and value
    Each (user, type) has two Bernoulli arms with Beta posteriors (Chapelle & Li, "An Empirical
    Evaluation of Thompson Sampling", NIPS 2011; Russo, Van Roy, Kazerouni, Osband & Wen, "A
    Tutorial on Thompson Sampling", 2018, ch. 3):

    * ``SEND``: the probability that a notification of this type sent on its own is meaningful
      (opened or acted on);
    * ``HOLD``: the probability that an item of this type is engaged with from a digest.

    DROP is worth 0. Sending costs :data:`SEND_COST` and holding :data:`HOLD_COST` (a digest
    is one interruption shared by its items), so an action's value is ``theta - cost``. The
    objective is the ratio meaningful / all notifications; maximising ``meaningful - cost x
    notifications`` is Dinkelbach's (1967) parametric form of a ratio objective: with the cost
    at the ratio we aim for, an item is worth a notification exactly when it is more likely
    than that to be meaningful, so the policy sends what the user wants and not what merely
    re-engages them.

Thompson sampling
    One sample ``theta`` from each arm's posterior, the feasible action of highest value.
    :func:`decide` draws :data:`MC_DRAWS` such samples from the event's seeded generator and
    counts how often each action wins: ``q_a``. The policy then *plays*
    ``p_a = (1 - EXPLORATION) q_a + EXPLORATION / |feasible|`` by one more uniform draw from the
    same generator. Marginally over the draws, ``E[p_a]`` is the Thompson-sampling probability
    of ``a`` (no closed form for the argmax of two Beta samples against a constant), mixed with
    uniform exploration; conditionally on the draws, ``p_a`` is *exactly* the probability with
    which the logged action was chosen, so it is the propensity an inverse-propensity estimator
    needs, and every feasible action keeps at least ``EXPLORATION / 3`` (bounded importance
    weights). The draws come from ``random.Random`` (stdlib: the same stream on every platform
    and release), so a replay with the same seed repeats every draw and every decision.

Reward mapping (:func:`update`, one notification's feedback, each applied at most once)
    ``DELIVERED``: one provisional failure (beta + 1): shown, not yet opened.
    ``OPENED`` or ``ACTED`` (the first of them): a success (alpha + 1), and the provisional
    failure is taken back (beta - 1) when DELIVERED came first.
    ``DISMISSED``: a failure (beta + 1) unless already counted as delivered or succeeded.
    ``MUTED``: :data:`MUTE_PENALTY` failures (beta + 3) on top; the type is then off for the user.
    Priors: Beta(1, 1) for every arm (uniform; Chapelle & Li's choice).
"""
from __future__ import annotations

import random
from typing import Iterable, NamedTuple

ACTIONS = ("SEND", "HOLD", "DROP")
#: Beta(alpha, beta) prior of every arm: uniform.
PRIOR = (1.0, 1.0)
#: Cost of a notification sent on its own, in meaningful notifications (the ratio aimed for).
SEND_COST = 0.3
#: Cost of an item held for a digest (one interruption shared by the digest's items) before the
#: user has had a digest; then :func:`models.notifications.policy.hold_cost` shares ``SEND_COST``
#: by the user's expected digest size, and :func:`decide` is given that.
HOLD_COST = 0.15
#: Posterior draws per decision for the Monte Carlo propensity (standard error <= 0.0625).
MC_DRAWS = 64
#: Share of decisions spread uniformly over the feasible actions (keeps every propensity
#: >= EXPLORATION / 3 = 0.02, so importance weights stay <= 50).
EXPLORATION = 0.06
#: Failures added to an arm when the user mutes its type.
MUTE_PENALTY = 3.0
FEEDBACK_ACTIONS = ("DELIVERED", "OPENED", "ACTED", "DISMISSED", "MUTED")


class Decision(NamedTuple):
    """A decision: the action played, its propensity ``probabilities[action]``, every action's
    probability (0 for infeasible ones; they sum to 1) and each arm's posterior mean."""

    action: str
    probabilities: dict[str, float]
    expected: dict[str, float]

    @property
    def propensity(self) -> float:
        return self.probabilities[self.action]


def mean(arm: Iterable[float]) -> float:
    """Posterior mean ``alpha / (alpha + beta)`` of a ``[alpha, beta]`` arm."""
    a, b = arm
    return a / (a + b)


def decide(arms: dict[str, list[float]], feasible: Iterable[str], rng: random.Random, *,
           send_cost: float = SEND_COST, hold_cost: float = HOLD_COST, draws: int = MC_DRAWS,
           exploration: float = EXPLORATION) -> Decision:
    """Choose SEND, HOLD or DROP for one candidate (module docstring).

    ``arms``: ``{"SEND": [alpha, beta], "HOLD": [alpha, beta]}`` (missing arms: the prior);
    ``feasible``: the actions allowed now (DROP always is). Uses ``2 * draws + 1`` draws of
    ``rng`` when SEND and HOLD are both feasible, fewer otherwise, none when only DROP is.

    Raises
    ------
    ValueError
        ``draws < 1`` or ``exploration`` outside [0, 1].
    """
    if draws < 1 or not 0.0 <= exploration <= 1.0:
        raise ValueError(f"draws must be >= 1 and exploration in [0, 1], got {draws}, {exploration}")
    ok = [a for a in ACTIONS if a in set(feasible) | {"DROP"}]
    send, hold = arms.get("SEND") or PRIOR, arms.get("HOLD") or PRIOR
    expected = {"SEND": round(mean(send), 6), "HOLD": round(mean(hold), 6)}
    if len(ok) == 1:
        return Decision("DROP", {"SEND": 0.0, "HOLD": 0.0, "DROP": 1.0}, expected)
    wins = dict.fromkeys(ok, 0)
    for _ in range(draws):
        best, value = "DROP", 0.0
        if "SEND" in wins:
            v = rng.betavariate(*send) - send_cost
            if v > value:
                best, value = "SEND", v
        if "HOLD" in wins:
            v = rng.betavariate(*hold) - hold_cost
            if v > value:
                best, value = "HOLD", v
        wins[best] += 1
    probs = {a: (1.0 - exploration) * wins[a] / draws + exploration / len(ok) if a in wins else 0.0
             for a in ACTIONS}
    u, acc, action = rng.random(), 0.0, ok[-1]
    for a in ok:
        acc += probs[a]
        if u < acc:
            action = a
            break
    return Decision(action, probs, expected)


def update(arm: list[float], flags: str, action: str, mute_penalty: float = MUTE_PENALTY
           ) -> tuple[list[float], str]:
    """Fold one feedback ``action`` on one notification into its arm (module docstring).

    ``flags`` is what this notification has already counted: a string of the letters ``d``
    (delivered, provisional failure), ``s`` (success), ``f`` (dismissed failure), ``m`` (muted).
    Returns the new ``[alpha, beta]`` and flags; a repeated action changes nothing.
    """
    a, b = float(arm[0]), float(arm[1])
    if action == "DELIVERED" and not set(flags) & {"d", "s", "f"}:
        b, flags = b + 1, flags + "d"
    elif action in ("OPENED", "ACTED") and "s" not in flags:
        a += 1
        if "d" in flags:
            b -= 1
        if "f" in flags:       # dismissed first, then opened after all: the opening wins
            b -= 1
        flags += "s"
    elif action == "DISMISSED" and not set(flags) & {"d", "s", "f"}:
        b, flags = b + 1, flags + "f"
    elif action == "MUTED" and "m" not in flags:
        b, flags = b + mute_penalty, flags + "m"
    return [a, max(b, 0.0)], flags

"""The per-(user, notification type) bandit: Beta posteriors, Thompson sampling over SEND / HOLD /
DROP, and its exact propensities.

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

Thompson sampling and its propensities
    Thompson sampling draws one ``theta`` from each arm's posterior and plays the feasible action
    of highest value. Its probability of playing each action, ``q_a``, is computed, not sampled
    (:func:`thompson_probabilities`): with ``F`` and ``Q`` an arm's Beta CDF and quantile
    function and ``d = hold_cost - send_cost``,

        ``q_SEND = int_{F_S(c_S)}^1 F_H(Q_S(u) + d) du``, ``q_HOLD`` likewise with the arms
        swapped, ``q_DROP = F_S(c_S) F_H(c_H)``

    (the integral over SEND's quantiles of the chance that HOLD's value is lower, SEND's
    value being positive), by :data:`QUADRATURE_NODES`-point Gauss-Legendre quadrature in ``u``,
    an integrand bounded in [0, 1] (within 1.5e-4 of adaptive quadrature on arms from Beta(1, 1)
    to Beta(600, 400)), normalised to sum to 1. The policy *plays*
    ``p_a = (1 - EXPLORATION) q_a + EXPLORATION / |feasible|`` with one uniform draw of the
    event's seeded generator, so ``p_a`` is *exactly* the probability with which the logged
    action was chosen (the propensity an inverse-propensity estimator needs) and every feasible
    action keeps at least ``EXPLORATION / 3`` (bounded importance weights). The probabilities are
    rounded to 12 decimals (scipy's special functions may differ in the last bits between
    releases; the lock file pins one) and cached per (arms, costs, feasible actions): most
    users' arms are the prior or a few counts from it. Version 2 of the generator estimated
    ``q_a`` from 64 posterior draws per decision (standard error up to 0.0625, and 0.2 ms of a
    decision's 0.3 ms).

Reward mapping (:func:`update`, one notification's feedback, each applied at most once)
    ``DELIVERED``: one provisional failure (beta + 1): shown, not yet opened.
    ``OPENED`` or ``ACTED`` (the first of them): a success (alpha + 1), and the provisional
    failure is taken back (beta - 1) when DELIVERED came first.
    ``DISMISSED``: a failure (beta + 1) unless already counted as delivered or succeeded.
    ``MUTED``: :data:`MUTE_PENALTY` failures (beta + 3) on top; the type is then off for the user.
    Priors: Beta(1, 1) for every arm (uniform; Chapelle & Li's choice).
"""
from __future__ import annotations

import functools
import random
from typing import Iterable, NamedTuple

import numpy as np
from scipy import special

ACTIONS = ("SEND", "HOLD", "DROP")
#: Beta(alpha, beta) prior of every arm: uniform.
PRIOR = (1.0, 1.0)
#: Cost of a notification sent on its own, in meaningful notifications (the ratio aimed for).
SEND_COST = 0.3
#: Cost of an item held for a digest (one interruption shared by the digest's items) before the
#: user has had a digest; then :func:`models.notifications.policy.hold_cost` shares ``SEND_COST``
#: by the user's expected digest size, and :func:`decide` is given that.
HOLD_COST = 0.15
#: Gauss-Legendre nodes of the Thompson-sampling probabilities' integral (module docstring).
QUADRATURE_NODES = 32
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
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


def _cdf(arm: tuple[float, float], x: np.ndarray | float) -> np.ndarray:
    """The Beta(alpha, beta) CDF at ``x`` (0 below 0, 1 above 1)."""
    return special.betainc(arm[0], arm[1], np.clip(x, 0.0, 1.0))


def _beats(arm: tuple[float, float], cost: float, other: tuple[float, float], other_cost: float) -> float:
    """P(theta - cost > max(0, theta' - other_cost)) for theta ~ ``arm``, theta' ~ ``other``,
    independent (module docstring's integral over ``arm``'s quantiles)."""
    u0 = float(_cdf(arm, cost))
    if u0 >= 1.0:
        return 0.0
    u = u0 + (1.0 - u0) * (_NODES + 1.0) / 2.0
    theta = special.betaincinv(arm[0], arm[1], u)
    return float((1.0 - u0) / 2.0 * (_WEIGHTS @ _cdf(other, theta - cost + other_cost)))


@functools.lru_cache(maxsize=65_536)
def thompson_probabilities(send: tuple[float, float], hold: tuple[float, float], feasible: tuple[str, ...],
                           send_cost: float, hold_cost: float) -> tuple[float, float, float]:
    """Thompson sampling's probability of playing SEND, HOLD and DROP (module docstring), with
    ``send`` and ``hold`` the arms' ``(alpha, beta)``, ``feasible`` the actions allowed (a
    subset of :data:`ACTIONS` with DROP); infeasible actions get 0; rounded to 12 decimals;
    they sum to 1 within rounding."""
    q_send = q_hold = 0.0
    if "SEND" in feasible and "HOLD" in feasible:
        q_send = _beats(send, send_cost, hold, hold_cost)
        q_hold = _beats(hold, hold_cost, send, send_cost)
        q_drop = float(_cdf(send, send_cost) * _cdf(hold, hold_cost))
        total = q_send + q_hold + q_drop
        q_send, q_hold, q_drop = q_send / total, q_hold / total, q_drop / total
    elif "SEND" in feasible:
        q_drop = float(_cdf(send, send_cost))
        q_send = 1.0 - q_drop
    elif "HOLD" in feasible:
        q_drop = float(_cdf(hold, hold_cost))
        q_hold = 1.0 - q_drop
    else:
        q_drop = 1.0
    return round(q_send, 12), round(q_hold, 12), round(q_drop, 12)


def decide(arms: dict[str, list[float]], feasible: Iterable[str], rng: random.Random, *,
           send_cost: float = SEND_COST, hold_cost: float = HOLD_COST,
           exploration: float = EXPLORATION) -> Decision:
    """Choose SEND, HOLD or DROP for one candidate (module docstring).

    ``arms``: ``{"SEND": [alpha, beta], "HOLD": [alpha, beta]}`` (missing arms: the prior);
    ``feasible``: the actions allowed now (DROP always is). Uses one draw of ``rng`` unless
    only DROP is feasible.

    Raises
    ------
    ValueError
        ``exploration`` outside [0, 1], or an arm's alpha or beta not positive.
    """
    if not 0.0 <= exploration <= 1.0:
        raise ValueError(f"exploration must lie in [0, 1], got {exploration}")
    ok = [a for a in ACTIONS if a in set(feasible) | {"DROP"}]
    send, hold = arms.get("SEND") or PRIOR, arms.get("HOLD") or PRIOR
    if min(send) <= 0 or min(hold) <= 0:
        raise ValueError(f"arms need alpha and beta > 0, got SEND {list(send)}, HOLD {list(hold)}")
    expected = {"SEND": round(mean(send), 6), "HOLD": round(mean(hold), 6)}
    if len(ok) == 1:
        return Decision("DROP", {"SEND": 0.0, "HOLD": 0.0, "DROP": 1.0}, expected)
    q = dict(zip(ACTIONS, thompson_probabilities(
        (float(send[0]), float(send[1])), (float(hold[0]), float(hold[1])), tuple(ok),
        float(send_cost), float(hold_cost))))
    probs = {a: (1.0 - exploration) * q[a] + exploration / len(ok) if a in ok else 0.0
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

"""The single list of Pulse's agents. ``pulse worker`` runs all of them unless told otherwise."""
from __future__ import annotations

from agents import (clip_ai, content_guard, copyright_guard, copyright_rescan, creator_analytics, eraser,
                    feed_fanout, feed_ranker, materializer, notification_generator, publisher, timing_optimizer,
                    trend_detector, user_profiler)
from streams.contracts.agent import AgentSpec

#: Every agent a worker can run, by name. Later systems add their ``SPEC`` here.
AGENTS: dict[str, AgentSpec] = {spec.name: spec for spec in (
    materializer.SPEC,
    content_guard.SPEC,
    copyright_guard.SPEC,
    copyright_rescan.SPEC,
    publisher.SPEC,
    clip_ai.SPEC,
    user_profiler.SPEC,
    feed_fanout.SPEC,
    feed_ranker.SPEC,
    trend_detector.MENTIONS_SPEC,
    trend_detector.SPEC,
    timing_optimizer.AUDIENCE_SPEC,
    timing_optimizer.SPEC,
    notification_generator.CANDIDATES_SPEC,
    notification_generator.SPEC,
    creator_analytics.SIGNALS_SPEC,
    creator_analytics.POSTS_SPEC,
    creator_analytics.SPEC,
    eraser.SPEC,
)}


def select(names: str | None) -> list[AgentSpec]:
    """Agents named in a comma-separated list (``None`` or ``"all"``: every agent).

    Raises
    ------
    KeyError
        A name is not registered; the message lists the registered agents.
    """
    if not names or names == "all":
        return list(AGENTS.values())
    chosen = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        if n not in AGENTS:
            raise KeyError(f"unknown agent {n!r}; registered agents: {', '.join(AGENTS)}")
        chosen.append(AGENTS[n])
    return chosen


def erasure_components() -> list[str]:
    """The agents that report on an erasure (``erasure_log``): every registered agent that
    consumes ``erasure-requests``, the eraser first."""
    names = [s.name for s in AGENTS.values() if "erasure-requests" in s.topics]
    return sorted(names, key=lambda n: (n != "eraser", n))

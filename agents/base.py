"""The agent contract: a pure ``process`` core plus the metadata the runtime binds to Faust.

An agent is an :class:`AgentSpec`. Its ``process(topic, record) -> list[Effect]`` does no I/O: it
maps one decoded event to effects (rows to upsert, events to emit, vectors to index). The Faust
binding (``streams.runtime``), replay, tests and benchmarks all call the same ``process``.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from streams.effects import Effect

Process = Callable[[str, dict[str, Any]], Sequence[Effect]]

#: Namespace of every id Pulse derives (uuid5), so a derived event's id is a pure function of
#: the agent and its cause: a re-delivered input yields the same output ``event_id``.
PULSE_NAMESPACE = uuid.UUID("6f1c2a4e-5d0b-4c3e-9a57-2b8f0e6d1c44")


def derived_event_id(agent: str, cause_event_id: str, part: str = "") -> str:
    """Deterministic ``event_id`` for an event that ``agent`` derives from ``cause_event_id``.

    ``part`` distinguishes several outputs of one input (e.g. one per topic).
    """
    return str(uuid.uuid5(PULSE_NAMESPACE, f"{agent}|{cause_event_id}|{part}"))


@dataclass(frozen=True)
class AgentSpec:
    """One registered agent.

    Attributes
    ----------
    name:
        Registry name, used by ``pulse worker --agents`` and as the Faust agent name.
    topics:
        Source topics (names from ``infra/kafka/topics.toml``).
    process:
        The pure core: ``(topic, record) -> effects``.
    batch_size:
        The runtime takes every event already buffered, up to ``batch_size``, processes them,
        flushes the sinks, then acknowledges them.
    sinks:
        Which sinks the effects need: subset of ``{"cassandra", "vectors"}``.
    topic_schemas:
        Event types of source or output topics that are not in the catalog (benchmarks).
    """

    name: str
    topics: tuple[str, ...]
    process: Process
    doc: str = ""
    batch_size: int = 500
    sinks: frozenset[str] = frozenset()
    topic_schemas: dict[str, str] = field(default_factory=dict)

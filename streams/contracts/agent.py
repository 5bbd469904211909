"""The agent contract: a pure ``process`` core plus the metadata the runtime binds to Faust.

An agent is an :class:`AgentSpec`. Its ``process(topic, record) -> list[Effect]`` does no I/O: it
maps one decoded event to effects (rows to upsert, events to emit, vectors to index). The Faust
binding (``streams.runtime.batch``), replay, tests and benchmarks all call the same ``process``.
Agents that hold state or models instead give a ``setup`` that builds a :class:`BatchProcessor`
once per worker; its ``process_batch`` is likewise free of I/O except reading media and models.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, MutableMapping, Protocol, Sequence

from streams.contracts.effects import Effect

Process = Callable[[str, dict[str, Any]], Sequence[Effect]]


class BatchProcessor(Protocol):
    """A stateful agent core (models loaded, a reference bank, a join table), built once per
    worker by :attr:`AgentSpec.setup`.

    ``process_batch`` gets the batch's decoded events as ``(topic, record)`` pairs, in consumed
    order, and returns one entry per event: its effects, or the exception that event raised
    (the runtime dead-letters that event alone and keeps the others' effects).
    """

    def process_batch(self, items: Sequence[tuple[str, dict[str, Any]]]
                      ) -> list[Sequence[Effect] | BaseException]: ...


#: ``setup(settings, tables) -> BatchProcessor``: ``tables`` maps each name of
#: :attr:`AgentSpec.tables` to a mutable mapping (a changelogged Faust table in a worker, a dict
#: in replay and tests).
Setup = Callable[[Any, dict[str, MutableMapping[str, Any]]], BatchProcessor]

#: Namespace of every id Pulse derives (uuid5), so a derived event's id is a pure function of
#: the agent and its cause: a re-delivered input yields the same output ``event_id``.
PULSE_NAMESPACE = uuid.UUID("6f1c2a4e-5d0b-4c3e-9a57-2b8f0e6d1c44")


def ms_of(t: Any) -> int:
    """An event time (aware datetime, as decoded, or epoch ms) as epoch milliseconds."""
    if isinstance(t, datetime):
        return int(round(t.timestamp() * 1000))
    return int(t)


def dt_of(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


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
    setup:
        For stateful agents: builds the agent's :class:`BatchProcessor` once per worker (in a
        thread; may load models). When set, ``process`` is not used.
    blocking:
        The processor does CPU-heavy or blocking work (model inference, media decoding): the
        runtime runs each batch in the agent's own worker thread, never on the event loop, so
        heartbeats, fetches and the other agents go on meanwhile.
    tables:
        Names of changelogged tables the processor keeps state in (keyed like the source topics,
        which must be co-partitioned). A worker backs each with a Faust table (memory store,
        changelog topic ``<app_id>-<agent>-<table>-changelog``), restored on partition
        assignment; each event is processed with its own partition as the write partition.
    """

    name: str
    topics: tuple[str, ...]
    process: Process
    doc: str = ""
    batch_size: int = 500
    sinks: frozenset[str] = frozenset()
    topic_schemas: dict[str, str] = field(default_factory=dict)
    setup: Setup | None = None
    blocking: bool = False
    tables: tuple[str, ...] = ()

"""The agent contract: an AI system is a pure function of (its state, an event, a context) that
returns effects.

An agent is an :class:`AgentSpec` whose ``process(state, event, ctx) -> list[Effect]`` does no
I/O. It reads

* ``state`` — a read-only view of the agent's own tables (:class:`State`), keyed like its source
  topics (so one entity's events meet in one partition and one worker);
* ``event`` — one decoded event (:class:`Event`: topic, record, partition, offset);
* ``ctx`` — a :class:`Context`: the event-time clock (``ctx.now()``, never the wall clock), a
  random generator seeded from the agent's name and the event id (``ctx.rng``), the models the
  agent loaded (``ctx.models``, from ``spec.load``), its read-only side inputs as of the event
  (``ctx.side``), and its configuration (``ctx.config``).

and returns effects (:mod:`streams.contracts.effects`): view rows, vector points, emitted events
and *state changes* (:class:`~streams.contracts.effects.StateSet`,
:class:`~streams.contracts.effects.StateDelete`). The runtime does all I/O: batching, executor
threads for CPU-bound models, dead letters, sinks, emits, state writes, offset commits; a worker
(:mod:`streams.runtime`), a replay (:mod:`replay.rebuild`) and a test run the same ``process``
through the same :class:`~streams.runtime.engine.AgentRunner`, so a replay reproduces every
decision.

A minimal stateful agent (counts each creator's uploads and emits nothing)::

    def process(state, event, ctx):
        key = event.record["creator_id"]
        n = (state.get("uploads", key) or 0) + 1
        return [StateSet("uploads", key, n),
                Upsert("creator_counts", {"creator_id": key, "uploads": n}, ctx.timestamp_us)]

    SPEC = AgentSpec(name="upload_counter", topics=("uploads",), process=process,
                     tables=("uploads",), sinks=frozenset({"cassandra"}))

(an agent that emits names its output topics: ``outputs=("creator-stats",)``)

Determinism rules every agent keeps (``pulse replay rebuild --verify`` checks them):

* ids of derived events come from their causes (:meth:`Context.derive_id`), event times from the
  causes' event times (:attr:`Context.event_time_ms`);
* no wall-clock time and no measurement of the run (latency, load) in an event or a row;
* randomness only from ``ctx.rng``;
* the result of an event depends on the state and side inputs, not on how partitions and topics
  happened to interleave: a state fold is commutative where events of several topics meet
  (e.g. the publisher keeps the latest verdict per gate by event time, ties broken by event id).
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

from streams.contracts.effects import Effect

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
    """Deterministic ``event_id`` (uuid5 in :data:`PULSE_NAMESPACE`) for an event that ``agent``
    derives from ``cause_event_id``; ``part`` distinguishes several outputs of one input."""
    return str(uuid.uuid5(PULSE_NAMESPACE, f"{agent}|{cause_event_id}|{part}"))


class Event(NamedTuple):
    """One decoded event as an agent sees it (immutable).

    ``record`` is the Avro record decoded into the topic's current schema (``event_time`` an
    aware UTC datetime); ``partition`` / ``offset`` are the Kafka position (``None`` in unit
    tests that build events by hand).
    """

    topic: str
    record: dict[str, Any]
    partition: int | None = None
    offset: int | None = None

    @property
    def event_id(self) -> str:
        return self.record["event_id"]

    @property
    def event_time_ms(self) -> int:
        """The event's own ``event_time`` as UTC epoch milliseconds."""
        return ms_of(self.record["event_time"])


class State(Protocol):
    """Read-only view of an agent's state tables (values are JSON-serialisable)."""

    def get(self, table: str, key: str, default: Any = None) -> Any:
        """The value stored under ``key`` in ``table``, or ``default``.

        Raises
        ------
        KeyError
            ``table`` is not one of the agent's declared ``tables``.
        """
        ...


class Context:
    """What ``process`` may read besides its state and the event (read-only: the runtime builds
    one per event; a slotted class, since it is made for every event on the hot path).

    Attributes
    ----------
    agent:
        The agent's registry name.
    event_id, event_time_ms:
        The current event's id and event time (UTC epoch ms): the agent's only clock.
    models:
        Whatever ``spec.load(config)`` returned (loaded once per worker), else ``None``.
    side:
        The agent's side inputs by name (read-only; see :class:`SideInput`).
    config:
        The worker's settings (:class:`streams.settings.Settings`), read-only.
    """

    __slots__ = ("agent", "event_id", "event_time_ms", "models", "side", "config", "_rng")

    def __init__(self, agent: str, event_id: str, event_time_ms: int, models: Any = None,
                 side: Mapping[str, Any] | None = None, config: Any = None) -> None:
        self.agent = agent
        self.event_id = event_id
        self.event_time_ms = event_time_ms
        self.models = models
        self.side = {} if side is None else side
        self.config = config
        self._rng: random.Random | None = None

    def __repr__(self) -> str:
        return (f"Context(agent={self.agent!r}, event_id={self.event_id!r}, "
                f"event_time_ms={self.event_time_ms})")

    @property
    def rng(self) -> random.Random:
        """A random generator seeded from ``(agent, event_id)`` (made on first use, then the same
        object for the rest of the event): the same draws in every replay."""
        if self._rng is None:
            seed = uuid.uuid5(PULSE_NAMESPACE, f"{self.agent}|{self.event_id}|rng").int
            self._rng = random.Random(seed)
        return self._rng

    def now(self) -> datetime:
        """The event-time clock: the current event's ``event_time`` (aware UTC datetime)."""
        return dt_of(self.event_time_ms)

    @property
    def timestamp_us(self) -> int:
        """The event time in microseconds: the write timestamp of rows this event causes."""
        return self.event_time_ms * 1000

    def derive_id(self, part: str = "", cause_event_id: str | None = None) -> str:
        """The deterministic id of an event this agent derives from the current event (or from
        ``cause_event_id``); ``part`` distinguishes several outputs of one cause."""
        return derived_event_id(self.agent, cause_event_id or self.event_id, part)


Process = Callable[[State, Event, Context], Sequence[Effect]]


class SideState(Protocol):
    """A side input's in-memory state, folded from its topic by the runtime.

    ``apply`` is called with every decoded event of the side topic, in each partition's offset
    order; the agent reads the object through ``ctx.side[name]`` and must answer *as of the
    current event's time* (e.g. only reference works registered at or before an upload's
    ``event_time``), so that a replay, which has read the whole topic, decides as the live run
    did. It raises nothing for a bad event it can skip: it logs and ignores it.
    """

    def apply(self, record: dict[str, Any]) -> None: ...

    # A side state over a compacted topic may also define ``forget(key: str, at_ms: int)``: the
    # runtime calls it for each tombstone of the topic (the eraser's, ``Tombstone``) with the
    # record key and the tombstone's Kafka timestamp (epoch ms). Answers as of that time on
    # must no longer include the key; answers as of earlier times must not change, so a replay
    # that still reads the tombstone decides as the live run did.


@dataclass(frozen=True)
class SideInput:
    """A global table the agent reads but does not own (Kafka Streams' GlobalKTable): every worker
    reads the whole ``topic`` from the beginning with a group-less consumer and folds it into the
    object ``open(config, models)`` builds. Before each batch the runtime catches up to the
    topic's end offsets as of that moment."""

    name: str
    topic: str
    open: Callable[[Any, Any], SideState]


def _no_load(config: Any) -> None:
    return None


@dataclass(frozen=True)
class AgentSpec:
    """One registered agent.

    Attributes
    ----------
    name:
        Registry name, used by ``pulse worker --agents`` and as the Faust agent name.
    topics:
        Source topics (names from ``infra/kafka/topics.toml``). An agent with ``tables`` needs
        co-partitioned sources (same partition count, keyed by the same entity).
    process:
        The pure core: ``(state, event, ctx) -> effects``.
    outputs:
        The topics the agent emits to (dead letters aside). An ``Emit`` to another topic is an
        effect error (the event is dead-lettered); replay orders agents by them (an agent runs
        before the agents that consume what it emits) and ``--verify`` compares them.
    doc:
        One line for ``pulse agents``.
    batch_size:
        The runtime takes every event already buffered, up to ``batch_size``, processes them,
        writes their effects, then acknowledges them.
    sinks:
        The stores the effects write: a subset of ``{"cassandra", "vectors", "media"}`` (media:
        the media store's files, for the eraser's ``MediaDelete``). A worker opens
        them before it joins the group; an effect for an undeclared store is a configuration
        error (the event is dead-lettered with that reason).
    tables:
        Names of the agent's state tables. A worker backs each with a changelogged Faust table;
        replay and tests with dicts.
    side_inputs:
        Global tables the agent reads (:class:`SideInput`).
    load:
        ``load(config) -> models``, called once per worker (in a thread; may take seconds) before
        the worker joins the group; the result is ``ctx.models``.
    blocking:
        ``process`` does CPU-heavy or blocking work (model inference, media decoding): the runtime
        runs each batch in the agent's own thread, never on the event loop.
    topic_schemas:
        Event types of source or output topics that are not in the catalog (benchmarks).
    order_sensitive:
        The agent joins two live streams without a watermark: a side input it reads as of each
        event's time (e.g. every user's profile, for the posts published at that time) may not
        have arrived yet when a live worker processes the event, so a live run can differ from a
        replay (which reads side inputs whole first). A replay is still deterministic:
        ``pulse replay rebuild --verify`` rebuilds such agents twice and requires the two
        rebuilds to be equal, and reports their differences from the live run as divergence,
        counted, not as errors.
    """

    name: str
    topics: tuple[str, ...]
    process: Process
    outputs: tuple[str, ...] = ()
    doc: str = ""
    batch_size: int = 500
    sinks: frozenset[str] = frozenset()
    tables: tuple[str, ...] = ()
    side_inputs: tuple[SideInput, ...] = ()
    load: Callable[[Any], Any] = _no_load
    blocking: bool = False
    topic_schemas: dict[str, str] = field(default_factory=dict)
    order_sensitive: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.sinks) - {"cassandra", "vectors", "media"}
        if unknown:
            raise ValueError(f"agent {self.name}: unknown sinks {sorted(unknown)} "
                             f"(use 'cassandra', 'vectors' and/or 'media')")

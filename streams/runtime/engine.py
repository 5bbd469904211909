"""The agent engine: runs one agent's pure ``process`` over a batch of consumed messages.

:class:`AgentRunner` is everything a worker does per batch except I/O: decode each message (an
undecodable one becomes a dead letter), skip what the agent's state says it already applied,
build the :class:`~streams.contracts.agent.Context`, call ``process``, check and sort the effects,
apply state changes to an overlay (so the next event of the batch sees them), and encode the
emitted events. The Faust binding (:mod:`streams.runtime.binding`), replay
(:mod:`replay.rebuild`) and the tests all run this class, so they compute the same thing.

Positions: an agent with state tables also keeps, in the reserved table ``__positions__``, the
next offset to apply for every source partition it owns (key ``"<topic>:<partition>"``), written
with the state changes, after the batch's view writes and emits are durable. A message below its
partition's recorded position was already applied with all its outputs: a re-delivery after a
crash skips it (see ``docs/agent-contract.md`` for the whole argument).

Gaps (the worker only, :meth:`AgentRunner.watch_gaps`): a message *above* its partition's
recorded position on a log topic means the events in between never reached the agent (a batch
lost inside the worker, or state that lags the committed offsets). Applying it would move the
position past them, and a later re-delivery would skip them for good, so the runner holds that
partition's messages back (not processed, not acknowledged) and reports the gap, and the binding
asks the consumer to seek the partition back to the offset expected next. Compacted topics have gaps by
design and are not checked; offsets below the log start (deleted by retention) are gone and are
not waited for.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, MutableMapping, NamedTuple, Sequence

from streams.contracts.agent import AgentSpec, Context, Event, ms_of
from streams.contracts.codec import CodecError
from streams.contracts.deadletters import DEAD_LETTER_TOPIC, dead_letter
from streams.contracts.personal import KeyUnavailable, decode_many
from streams.contracts.effects import (STATE_EFFECTS, VIEW_EFFECTS, Delete, Emit, MediaDelete, ShredKey,
                                       StateDelete, StateSet, Tombstone, Upsert)
from streams.contracts.topics import topic_catalog

log = logging.getLogger("pulse.engine")

#: Reserved state table of every stateful agent: ``"<topic>:<partition>" -> next offset``.
POSITIONS_TABLE = "__positions__"

_DELETED = object()
_ABSENT = object()


class RawMessage(NamedTuple):
    """A consumed Kafka message as the runtime sees it (bytes, not yet decoded)."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple = ()
    timestamp_ms: int | None = None


class Encoded(NamedTuple):
    """An emitted event ready for the producer, with the message that caused it; ``value`` is
    ``None`` for a tombstone (:class:`~streams.contracts.effects.Tombstone`)."""

    topic: str
    key: bytes | None
    value: bytes | None
    cause: Any


@dataclass
class BatchOutput:
    """What one batch asks the runtime to do, in the order the runtime does it.

    ``views``: row and vector effects for the sinks; ``emits``: encoded derived events;
    ``dead_letters``: encoded dead letters; ``state``: ``(StateSet | StateDelete, cause message)``
    in the order they were made (positions included); ``events``: messages processed;
    ``skipped``: messages below their recorded position (already applied); ``tombstones``:
    messages with a null value on a compacted topic (a deletion marker, not an event: not
    processed; a null value on a log topic is a broken event and is dead-lettered).
    """

    views: list[Any] = field(default_factory=list)
    emits: list[Encoded] = field(default_factory=list)
    dead_letters: list[Encoded] = field(default_factory=list)
    state: list[tuple[Any, Any]] = field(default_factory=list)
    events: int = 0
    skipped: int = 0
    tombstones: int = 0
    #: Indices (into the batch) of messages held back behind a gap (module docstring): neither
    #: processed nor to be acknowledged; they are delivered again after the seek.
    held_back: list[int] = field(default_factory=list)
    #: ``(topic, partition) -> offset`` to seek back to: gaps found in this batch and not
    #: reported before (:meth:`AgentRunner.watch_gaps`).
    gaps: dict[tuple[str, int], int] = field(default_factory=dict)


class TableState:
    """The :class:`~streams.contracts.agent.State` an agent reads: its backing tables (Faust
    tables in a worker, dicts in replay and tests) seen through the batch's pending changes."""

    def __init__(self, tables: Mapping[str, MutableMapping[str, Any]], overlay: dict):
        self._tables = tables
        self._overlay = overlay

    def get(self, table: str, key: str, default: Any = None) -> Any:
        pending = self._overlay.get((table, key), _ABSENT)
        if pending is not _ABSENT:  # changed earlier in this batch (a value of None reads as unset)
            return default if pending is _DELETED or pending is None else pending
        try:
            backing = self._tables[table]
        except KeyError:
            raise KeyError(f"state table {table!r} is not declared by the agent "
                           f"(tables: {', '.join(t for t in self._tables if t != POSITIONS_TABLE)})"
                           ) from None
        value = backing.get(key)
        return default if value is None else value


class EffectError(ValueError):
    """An agent returned an effect the runtime cannot apply (wrong type, undeclared table or
    store, an event that does not match its topic's schema); the event is dead-lettered."""


def _store_of(effect: Any) -> str:
    if isinstance(effect, MediaDelete):
        return "media"
    return "cassandra" if isinstance(effect, (Upsert, Delete, ShredKey)) else "vectors"


class AgentRunner:
    """One agent's core, ready to run batches (see the module docstring).

    Parameters
    ----------
    spec:
        The agent.
    codecs:
        ``codecs(topic) -> codec`` with ``decode(bytes)`` / ``encode(record)`` (the runtime's
        per-topic codec cache).
    config:
        Settings, passed as ``ctx.config``.
    models:
        What ``spec.load`` returned.
    tables:
        The backing state tables by name (every name of ``spec.tables``, plus
        :data:`POSITIONS_TABLE` for a stateful agent); dicts are made for missing ones.
    side:
        Side-input states by name (every name of ``spec.side_inputs``).
    """

    def __init__(self, spec: AgentSpec, codecs: Callable[[str], Any], *, config: Any = None,
                 models: Any = None, tables: MutableMapping[str, MutableMapping[str, Any]] | None = None,
                 side: Mapping[str, Any] | None = None):
        self.spec = spec
        self.codecs = codecs
        self.config = config
        self.models = models
        self.tables: MutableMapping[str, MutableMapping[str, Any]] = tables if tables is not None else {}
        self.stateful = bool(spec.tables)
        for name in spec.tables + ((POSITIONS_TABLE,) if self.stateful else ()):
            self.tables.setdefault(name, {})
        self.side = dict(side or {})
        missing = {s.name for s in spec.side_inputs} - set(self.side)
        if missing:
            raise ValueError(f"agent {spec.name}: side inputs {sorted(missing)} not provided")
        catalog = topic_catalog()
        self._key_fields = {t: s.key for t, s in catalog.items()}
        #: Topics where a null value is a tombstone (skipped), not a broken event (dead-lettered).
        self._compacted = frozenset(t for t, s in catalog.items() if s.policy == "compacted")
        #: State changes of batches already run but not yet in the backing tables (:meth:`hold`):
        #: ``(table, key) -> (value or _DELETED, batch token)``; every batch reads through them.
        self._unwritten: dict[tuple[str, str], tuple[Any, int]] = {}
        self._unwritten_lock = threading.Lock()
        #: Where the worker's consumer stands (:meth:`watch_gaps`), or None: gaps not checked.
        self._offsets: Any = None
        #: position key -> the offset whose gap was last reported (each reported once).
        self._gaps_reported: dict[str, int] = {}

    def watch_gaps(self, offsets: Any) -> None:
        """Check every stateful message against the next offset its partition should deliver
        (module docstring): the recorded position, or, for a partition with none yet, the first
        offset the consumer delivered since it was assigned or sought
        (``offsets.first_delivered(topic, partition)``). A message above it on a log topic is
        held back (``BatchOutput.held_back``) with the rest of its partition's messages in the
        batch, and the gap reported once (``BatchOutput.gaps``: seek back there). A gap that
        ends at or below ``offsets.log_start(topic, partition)`` is offsets deleted by
        retention, not lost ones, and is applied over. Either method may answer None (not
        known).

        Only the worker's binding turns this on: replay, the benchmarks and the tests hand a
        runner a selection of a topic's events, whose offsets have gaps by design."""
        self._offsets = offsets

    def _lost_before(self, m: Any, expected: int, position_key: str, out: BatchOutput) -> bool:
        """Whether events ``expected`` .. ``m.offset - 1`` are missing (module docstring);
        reports the gap in ``out`` the first time."""
        if m.topic in self._compacted:
            return False
        start = self._offsets.log_start(m.topic, m.partition)
        if start is not None and m.offset <= start:
            return False  # offsets expected .. start - 1 no longer exist
        if self._gaps_reported.get(position_key) != expected:
            self._gaps_reported[position_key] = expected
            out.gaps[(m.topic, m.partition)] = expected
            log.warning("agent %s: %s[%s] delivered offset %s but the next to apply is %s: events "
                        "%s..%s never reached the agent; holding the partition back and seeking "
                        "it to %s", self.spec.name, m.topic, m.partition, m.offset, expected,
                        expected, m.offset - 1, expected)
        return True

    # -- one batch ------------------------------------------------------------------------------

    def run(self, messages: Sequence[Any]) -> BatchOutput:
        """Process ``messages`` (:class:`RawMessage` or Faust ``Message``: ``topic``,
        ``partition``, ``offset``, ``key``, ``value``, ``headers``) in order.

        Never raises for one event's fault: undecodable events, exceptions in ``process`` and
        effects that cannot be applied dead-letter that event alone.
        """
        out = BatchOutput()
        with self._unwritten_lock:
            overlay: dict[tuple[str, str], Any] = {k: v for k, (v, _) in self._unwritten.items()}
        state = TableState(self.tables, overlay)
        decoded = self._decode(messages)
        blocked: set[str] = set()  # partitions held back behind a gap in this batch
        for i, m in enumerate(messages):
            position_key = None
            if self.stateful and m.partition is not None and m.offset is not None:
                position_key = f"{m.topic}:{m.partition}"
                if position_key in blocked:
                    out.held_back.append(i)
                    continue
                done = state.get(POSITIONS_TABLE, position_key)
                if done is not None and m.offset < done:
                    out.skipped += 1
                    continue
                if self._offsets is not None:
                    expected = done
                    if expected is None:  # (a gap reported: messages fetched before the seek)
                        expected = self._gaps_reported.get(position_key)
                    if expected is None:
                        expected = self._offsets.first_delivered(m.topic, m.partition)
                    if (expected is not None and m.offset > expected
                            and self._lost_before(m, expected, position_key, out)):
                        blocked.add(position_key)
                        out.held_back.append(i)
                        continue
            out.events += 1
            if m.value is None and m.topic in self._compacted:  # a tombstone: not an event
                out.tombstones += 1
            else:
                record = decoded[i]
                if isinstance(record, CodecError):
                    out.dead_letters.append(self._dead_letter(m, str(record), "CodecError"))
                else:
                    self._process_one(m, record, state, overlay, out)
            if position_key is not None:
                change = StateSet(POSITIONS_TABLE, position_key, m.offset + 1)
                overlay[(POSITIONS_TABLE, position_key)] = m.offset + 1
                out.state.append((change, m))
        return out

    def _decode(self, messages: Sequence[Any]) -> dict[int, Any]:
        """Each event's record or :class:`CodecError` by its index in ``messages`` (tombstones
        on compacted topics left out). A topic's events are decoded together, so the keys of
        their personal fields are read in a few round trips instead of one per new subject
        (:func:`streams.contracts.personal.decode_many`); the results equal one decode per event.

        Raises
        ------
        KeyUnavailable
            The subjects' keys cannot be read now: the batch fails and is retried.
        """
        by_topic: dict[str, list[int]] = {}
        for i, m in enumerate(messages):
            if not (m.value is None and m.topic in self._compacted):
                by_topic.setdefault(m.topic, []).append(i)
        out: dict[int, Any] = {}
        for topic, idx in by_topic.items():
            out.update(zip(idx, decode_many(self.codecs(topic), [messages[i].value for i in idx])))
        return out

    def _process_one(self, m: Any, record: dict[str, Any], state: TableState,
                     overlay: dict, out: BatchOutput) -> None:
        spec = self.spec
        try:
            ctx = Context(spec.name, record["event_id"], ms_of(record["event_time"]),
                          self.models, self.side, self.config)
            effects = spec.process(state, Event(m.topic, record, m.partition, m.offset), ctx)
            views, emits, changes = self._sort(effects)
        except KeyUnavailable:
            raise  # the key store is down, not the event broken: the batch fails and is retried
        except Exception as exc:  # a bug or bad data in one event must not stop the partition
            if not isinstance(exc, EffectError):
                log.exception("agent %s failed on %s[%s]@%s", spec.name, m.topic, m.partition,
                              m.offset)
            out.dead_letters.append(self._dead_letter(m, f"{spec.name} failed: {exc!r}",
                                                      type(exc).__name__))
            return
        if views:
            out.views.extend(views)
        for topic, key, value in emits:
            out.emits.append(Encoded(topic, key, value, m))
        for change in changes:
            overlay[(change.table, change.key)] = (
                _DELETED if isinstance(change, StateDelete) else change.value)
            out.state.append((change, m))

    def _sort(self, effects: Sequence[Any]) -> tuple[list, list, list]:
        """Split effects into view writes, encoded emits and state changes, checking each.

        Raises
        ------
        EffectError
            An effect of an unknown type, for a store, table or output topic the agent did not
            declare, or an emitted event its topic's codec refuses.
        """
        views, emits, changes = [], [], []
        for e in effects:
            if isinstance(e, Emit):
                if e.topic not in self.spec.outputs:
                    raise EffectError(f"emit to {e.topic}, which agent {self.spec.name} does not "
                                      f"declare in outputs {self.spec.outputs}")
                try:
                    value = self.codecs(e.topic).encode(e.record)
                except (CodecError, KeyError) as exc:
                    raise EffectError(f"emit to {e.topic}: {exc}") from None
                key_field = self._key_fields.get(e.topic)
                key = e.record.get(key_field) if key_field else None
                emits.append((e.topic, None if key is None else str(key).encode(), value))
            elif isinstance(e, Tombstone):
                if e.topic not in self.spec.outputs:
                    raise EffectError(f"tombstone on {e.topic}, which agent {self.spec.name} does "
                                      f"not declare in outputs {self.spec.outputs}")
                if e.topic not in self._compacted or not e.key:
                    raise EffectError(f"tombstone on {e.topic}: only a non-empty key on a compacted "
                                      f"topic can be tombstoned (infra/kafka/topics.toml)")
                emits.append((e.topic, str(e.key).encode(), None))
            elif isinstance(e, STATE_EFFECTS):
                if e.table not in self.spec.tables:
                    raise EffectError(f"state change of undeclared table {e.table!r}")
                changes.append(e)
            elif isinstance(e, VIEW_EFFECTS):
                if _store_of(e) not in self.spec.sinks:
                    raise EffectError(f"{type(e).__name__} needs the {_store_of(e)!r} sink, "
                                      f"which agent {self.spec.name} does not declare")
                views.append(e)
            else:
                raise EffectError(f"not an effect: {e!r}")
        return views, emits, changes

    def _dead_letter(self, m: Any, reason: str, error_type: str) -> Encoded:
        """The encoded dead letter for message ``m`` (a RawMessage or a Faust Message)."""
        if isinstance(m, RawMessage):
            timestamp_ms = m.timestamp_ms
        else:  # Faust: seconds as a float
            timestamp_ms = int(m.timestamp * 1000) if getattr(m, "timestamp", None) else None
        record = dead_letter(
            source_topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
            headers=_headers(m.headers), original_timestamp=timestamp_ms, reason=reason,
            error_type=error_type, consumer=self.spec.name, producer=self.spec.name)
        value = self.codecs(DEAD_LETTER_TOPIC).encode(record)
        key = record.get(self._key_fields.get(DEAD_LETTER_TOPIC, ""), None)
        return Encoded(DEAD_LETTER_TOPIC, None if key is None else str(key).encode(), value, m)

    # -- applying state -------------------------------------------------------------------------

    def hold(self, changes: Sequence[tuple[Any, Any]], token: int) -> None:
        """Make a batch's state ``changes`` visible to the next batches before they reach the
        backing tables: the Faust binding runs batch N + 1 while it still writes batch N's
        outputs (``streams.runtime.binding``), and N + 1 must see the state N left. ``token``
        names the batch for :meth:`release`. Thread-safe."""
        if not changes:
            return
        with self._unwritten_lock:
            for change, _ in changes:
                value = _DELETED if isinstance(change, StateDelete) else change.value
                self._unwritten[(change.table, change.key)] = (value, token)

    def release(self, token: int) -> None:
        """Batch ``token``'s state is in the backing tables: drop what :meth:`hold` kept of it
        (keys a later batch changed stay, with that batch's value). Thread-safe."""
        with self._unwritten_lock:
            for k in [k for k, (_, t) in self._unwritten.items() if t == token]:
                del self._unwritten[k]

    def discard_held(self) -> None:
        """Forget every held change (:meth:`hold`): their batches will not be written (a write
        failed), so no later batch may read them. Thread-safe."""
        with self._unwritten_lock:
            self._unwritten.clear()

    def apply_state(self, changes: Sequence[tuple[Any, Any]]) -> None:
        """Write state changes into the backing tables (replay and tests; the Faust binding
        writes them itself, each as its cause's current event)."""
        for change, _ in changes:
            table = self.tables[change.table]
            if isinstance(change, StateDelete):
                table.pop(change.key, None)
            else:
                table[change.key] = change.value


def _headers(headers) -> tuple:
    """Faust gives headers as a list of pairs or a mapping; normalise to a tuple of pairs."""
    if not headers:
        return ()
    return tuple(headers.items()) if hasattr(headers, "items") else tuple(headers)

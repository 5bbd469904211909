"""Binding agents to Faust: decode, dead-letter, process, flush sinks, emit, then acknowledge.

Per agent, the binding takes up to ``spec.batch_size`` raw events from its channel and:

1. decodes each value with the topic's codec; undecodable values become ``DeadLetter`` events;
2. calls the agent's pure ``process``; an exception there also dead-letters the event (with the
   agent's name and the error), instead of crash-looping the worker on one poison message;
3. writes the batch's view effects through the sinks (in an executor thread, so the event loop
   never blocks on Cassandra or Qdrant) and hands emitted events to Faust's producer;
4. only then acknowledges the events; Faust flushes the producer before it commits offsets.
   Together: at-least-once, and idempotent sinks make it effectively once.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Iterable, NamedTuple, Sequence

from streams.contracts.agent import AgentSpec

from streams.contracts.codec import CodecError, codec_for
from streams.contracts.deadletters import DEAD_LETTER_TOPIC, dead_letter
from streams.contracts.effects import Effect, Emit
from streams.settings import Settings
from streams.sinks.writers import CassandraSink, SinkSet, VectorSink
from streams.contracts.topics import topic_catalog

log = logging.getLogger("pulse.runtime")


class RuntimeContext:
    """What a worker's agents share: settings, codecs per topic, sinks (opened lazily).

    Thread-safety: ``sinks()`` may be first called from executor threads; a lock guards opening.
    """

    def __init__(self, settings: Settings, extra_schemas: dict[str, str] | None = None):
        self.settings = settings
        self._schemas = {name: spec.schema for name, spec in topic_catalog().items()}
        self._schemas.update(extra_schemas or {})
        self._codecs: dict[str, Any] = {}
        self._sinks: SinkSet | None = None
        self._lock = threading.Lock()
        self._closers: list = []
        self.counters: dict[str, int] = {"events": 0, "dead_letters": 0, "emitted": 0, "rows": 0}
        self.emitter = None
        """Where emitted events go: ``send_many(topic, [(key, value)])`` (set by :func:`bind`)."""
        self.first_batch_at: float | None = None
        """``time.perf_counter()`` when the first batch arrived (benchmarks time from here)."""
        self.tables: dict[str, dict[str, Any]] = {}
        """Per agent name: its state tables (Faust tables in a worker, set by :func:`bind`;
        plain dicts otherwise, made on first use)."""
        self._processors: dict[str, Any] = {}

    def processor(self, spec: AgentSpec):
        """``spec.setup``'s :class:`~streams.contracts.agent.BatchProcessor`, built once (thread-safe)."""
        proc = self._processors.get(spec.name)
        if proc is None:
            with self._lock:
                proc = self._processors.get(spec.name)
                if proc is None:
                    tables = self.tables.setdefault(spec.name, {})
                    for name in spec.tables:
                        tables.setdefault(name, {})
                    proc = self._processors[spec.name] = spec.setup(self.settings, tables)
                    close = getattr(proc, "close", None)
                    if close is not None:
                        self._closers.append(close)
        return proc

    def codec(self, topic: str):
        """The codec of ``topic``'s event type (catalog or ``extra_schemas``)."""
        c = self._codecs.get(topic)
        if c is None:
            try:
                schema = self._schemas[topic]
            except KeyError:
                raise KeyError(f"topic {topic!r} carries no known event type") from None
            c = self._codecs[topic] = codec_for(self.settings, schema, topic)
        return c

    def key_of(self, topic: str, record: dict[str, Any]) -> bytes | None:
        """The message key of ``record`` on ``topic``: its catalog key field, UTF-8."""
        spec = topic_catalog().get(topic)
        if spec is None:
            return None
        value = record.get(spec.key)
        return None if value is None else str(value).encode()

    def sinks(self, needs: Iterable[str]) -> SinkSet:
        """The worker's sinks, opening Cassandra / the vector index on first need (blocking)."""
        needs = set(needs)
        with self._lock:
            if self._sinks is None:
                self._sinks = SinkSet()
            if "cassandra" in needs and self._sinks.cassandra is None:
                from streams.stores.cassandra import connect

                cluster, session = connect(self.settings, self.settings.cassandra_keyspace)
                self._closers.append(cluster.shutdown)
                self._sinks.cassandra = CassandraSink(session)
            if "vectors" in needs and self._sinks.vectors is None:
                from streams.stores.vectors import open_vector_index

                index = open_vector_index(self.settings)
                self._closers.append(index.close)
                self._sinks.vectors = VectorSink(index)
            return self._sinks

    def close(self) -> None:
        """Close every sink connection opened so far."""
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # closing is best effort at shutdown
                log.exception("closing a sink failed")
        self._closers.clear()


class RawMessage(NamedTuple):
    """A consumed Kafka message as the runtime sees it (bytes, not yet decoded)."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple = ()
    timestamp_ms: int | None = None


def process_batch(ctx: RuntimeContext, spec: AgentSpec, messages: Sequence[Any]
                  ) -> tuple[list[Effect], list[Emit]]:
    """Decode and process consumed messages: :class:`RawMessage` s or Faust ``Message`` s (both
    have ``topic``, ``partition``, ``offset``, ``key``, ``value`` and ``headers``).

    Returns ``(view_effects, emits)``; undecodable or failing messages become dead-letter emits.
    This is the whole per-batch logic of the worker, without Faust, so replay and tests share it.
    Agents with a ``setup`` get the batch's decoded events in one ``process_batch`` call.
    """
    effects: list[Effect] = []
    emits: list[Emit] = []
    decoded: list[tuple[Any, str, dict[str, Any]]] = []
    for m in messages:
        topic = m.topic
        try:
            record = ctx.codec(topic).decode(m.value)
        except CodecError as exc:
            emits.append(_dead_letter_of(m, spec, str(exc), "CodecError"))
            continue
        if spec.setup is not None:
            decoded.append((m, topic, record))
            continue
        try:
            out = spec.process(topic, record)
        except Exception as exc:  # a bug or bad data in one event must not stop the partition
            log.exception("agent %s failed on %s[%s]@%s", spec.name, topic, m.partition, m.offset)
            emits.append(_dead_letter_of(m, spec, f"{spec.name} failed: {exc!r}", type(exc).__name__))
            continue
        for e in out:
            (emits if isinstance(e, Emit) else effects).append(e)
    if decoded:
        results = _process_stateful(ctx, spec, decoded)
        for (m, topic, _), out in zip(decoded, results):
            if isinstance(out, BaseException):
                log.error("agent %s failed on %s[%s]@%s: %r", spec.name, topic, m.partition,
                          m.offset, out)
                emits.append(_dead_letter_of(m, spec, f"{spec.name} failed: {out!r}",
                                             type(out).__name__))
                continue
            for e in out:
                (emits if isinstance(e, Emit) else effects).append(e)
    return effects, emits


def _process_stateful(ctx: RuntimeContext, spec: AgentSpec,
                      decoded: list[tuple[Any, str, dict[str, Any]]]) -> list[Any]:
    """Run the processor on a batch; if the batch call itself raises, retry event by event so
    that only the failing events are dead-lettered."""
    proc = ctx.processor(spec)
    items = [(topic, record) for _, topic, record in decoded]
    try:
        results = list(proc.process_batch(items))
        if len(results) != len(items):
            raise RuntimeError(f"{spec.name}.process_batch returned {len(results)} results "
                               f"for {len(items)} events")
        return results
    except Exception:
        if len(items) == 1:
            import sys

            return [sys.exc_info()[1]]
        log.exception("agent %s failed on a batch of %d; retrying one by one", spec.name, len(items))
    out: list[Any] = []
    for item in items:
        try:
            out.extend(proc.process_batch([item]))
        except Exception as exc:  # noqa: BLE001 - this event alone is dead-lettered
            out.append(exc)
    return out


def _dead_letter_of(m: Any, spec: AgentSpec, reason: str, error_type: str) -> Emit:
    """The dead-letter emit for message ``m`` (a RawMessage or a Faust Message)."""
    if isinstance(m, RawMessage):
        timestamp_ms = m.timestamp_ms
    else:  # Faust: seconds as a float
        timestamp_ms = int(m.timestamp * 1000) if m.timestamp else None
    return Emit(DEAD_LETTER_TOPIC, dead_letter(
        source_topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
        headers=_headers(m.headers), original_timestamp=timestamp_ms, reason=reason,
        error_type=error_type, consumer=spec.name, producer=spec.name))


async def apply_effects(ctx: RuntimeContext, spec: AgentSpec, effects: list[Effect],
                        emits: list[Emit]) -> None:
    """Write view effects through the sinks (executor thread), then enqueue the emits.

    Emits go through ``ctx.emitter`` (a :class:`~streams.runtime.emitter.BatchEmitter` on the Faust app's
    producer), grouped by topic; Faust flushes the producer before committing offsets.
    """
    if effects:
        ctx.counters["rows"] += await write_with_retry(ctx, spec, effects)
    if not emits:
        return
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for e in emits:
        by_topic.setdefault(e.topic, []).append(
            (ctx.key_of(e.topic, e.record), ctx.codec(e.topic).encode(e.record)))
    for topic, items in by_topic.items():
        await ctx.emitter.send_many(topic, items)
        ctx.counters["dead_letters" if topic == DEAD_LETTER_TOPIC else "emitted"] += len(items)


#: Back-off between attempts to write a batch whose store is unreachable (seconds; doubles).
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0


async def write_with_retry(ctx: RuntimeContext, spec: AgentSpec, effects: list[Effect]) -> int:
    """Buffer ``effects`` in the sinks and flush them, retrying until the stores take them.

    A store that is down (Cassandra restarting, a network partition) blocks this agent's batch,
    and so its partitions, instead of skipping events: the batch is not acknowledged until it is
    written, and each retry writes exactly what is still buffered, with exponential back-off
    (0.5 s doubling to 30 s) and a warning per attempt. The heartbeat goes on meanwhile, so the
    group does not rebalance. A configuration error (an effect for a store this worker has not
    got) is not retried.

    Returns the number of rows and points written.
    """
    from streams.stores.cassandra import ViewStoreError
    from streams.sinks.writers import SinkError

    loop = asyncio.get_running_loop()
    delay, added = RETRY_FIRST_S, False
    while True:
        try:
            sinks = await loop.run_in_executor(None, ctx.sinks, _stores(effects))
            if not added:
                await loop.run_in_executor(None, sinks.add, effects)
                added = True
            return await loop.run_in_executor(None, sinks.flush)
        except (SinkError, ViewStoreError) as exc:
            if not added and isinstance(exc, SinkError):
                raise  # the effects could not even be buffered: a configuration error
            log.warning("agent %s: %s; retrying in %.1f s", spec.name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


def _stores(effects: list[Effect]) -> set[str]:
    """The stores a batch's effects write to: only those are opened (a publisher that never
    updates a vector payload never opens the vector index)."""
    from streams.contracts.effects import Delete, Upsert

    return {"cassandra" if isinstance(e, (Upsert, Delete)) else "vectors" for e in effects}


def _headers(headers) -> tuple:
    """Faust gives headers as a list of pairs or a mapping; normalise to a tuple of pairs."""
    if not headers:
        return ()
    return tuple(headers.items()) if hasattr(headers, "items") else tuple(headers)


def bind(app, ctx: RuntimeContext, spec: AgentSpec):
    """Register ``spec`` as a Faust agent on ``app`` reading its topics as raw bytes.

    The agent drains its channel's queue in batches: it waits for one event, then takes every
    event already buffered, up to ``spec.batch_size`` (natural batching: large batches under
    load, no added latency when idle). Faust's per-event stream iteration (``async for`` /
    ``take_events``) costs more than the decode, process and encode of an event together
    (measured by ``pulse bench backbone``), so the binding acknowledges each event itself once
    the batch's effects are written; Faust commits only acknowledged offsets.
    """
    from streams.runtime.transport import raw_topic_class

    channel = raw_topic_class()(app, topics=list(spec.topics), key_type=bytes, value_type=bytes,
                                key_serializer="raw", value_serializer="raw")
    if ctx.emitter is None:
        from streams.runtime.emitter import BatchEmitter

        ctx.emitter = BatchEmitter(app.producer)

    executor = None
    if spec.blocking:
        from concurrent.futures import ThreadPoolExecutor

        # one thread per agent: batches stay in order, and a slow model never holds up the
        # sinks' executor threads or another agent
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"pulse-{spec.name}")
    faust_tables = _faust_tables(app, ctx, spec)

    async def run(stream):
        queue = stream.channel.queue
        get, get_nowait, empty = queue.get, queue.get_nowait, queue.empty
        limit = spec.batch_size
        loop = asyncio.get_running_loop()
        while True:
            try:
                events = [await get()]
            except StopAsyncIteration:  # Faust ends the channel when the worker stops
                return
            while len(events) < limit and not empty():
                events.append(get_nowait())
            if ctx.first_batch_at is None:
                ctx.first_batch_at = time.perf_counter()
            if faust_tables:
                effects, emits = _process_with_tables(ctx, spec, events)
            elif executor is not None:
                effects, emits = await loop.run_in_executor(
                    executor, process_batch, ctx, spec, [ev.message for ev in events])
            else:
                effects, emits = process_batch(ctx, spec, [ev.message for ev in events])
            await apply_effects(ctx, spec, effects, emits)
            for ev in events:
                ev.ack()
            ctx.counters["events"] += len(events)

    run.__name__ = spec.name
    return app.agent(channel, name=spec.name)(run)


def _faust_tables(app, ctx: RuntimeContext, spec: AgentSpec) -> dict[str, Any]:
    """Create ``spec.tables`` as Faust tables (memory store + changelog topic) on ``app``; keys
    and values are JSON (Faust's default for non-model types)."""
    if not spec.tables:
        return {}
    catalog = topic_catalog()
    partitions = {ctx.settings.topic_partitions or catalog[t].partitions
                  for t in spec.topics if t in catalog}
    if len(partitions) != 1:
        raise ValueError(f"agent {spec.name} keeps tables, so its source topics must be "
                         f"co-partitioned; they have {sorted(partitions)} partitions")
    n = partitions.pop()
    tables = {name: app.Table(f"{spec.name}-{name}", partitions=n, key_type=str,
                              help=f"{spec.name}'s {name} state, keyed like its source topics")
              for name in spec.tables}
    ctx.tables[spec.name] = tables
    return tables


def _process_with_tables(ctx: RuntimeContext, spec: AgentSpec, events: list
                         ) -> tuple[list[Effect], list[Emit]]:
    """Process events one at a time on the event loop, each as Faust's *current event*, so that
    every table write goes to the changelog partition of the event that caused it."""
    import weakref

    from faust.streams import _current_event

    effects: list[Effect] = []
    emits: list[Emit] = []
    try:
        for ev in events:
            _current_event.set(weakref.ref(ev))
            e, m = process_batch(ctx, spec, [ev.message])
            effects.extend(e)
            emits.extend(m)
    finally:
        _current_event.set(None)
    return effects, emits

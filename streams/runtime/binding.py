"""Binding agents to Faust: the only place where an agent's effects meet Kafka and the stores.

Per agent, the binding takes up to ``spec.batch_size`` raw events from its channel, catches its
side inputs up, runs the batch through the agent's :class:`~streams.runtime.engine.AgentRunner`
in a thread (the agent's own when ``spec.blocking``), then applies the output in this order:

1. view writes through the sinks (Cassandra rows at their event's time, vector points by id:
   idempotent), retried while a store is down;
2. emitted events and dead letters; an agent with state waits until the broker has them;
3. state changes and the partitions' next offsets into the agent's changelogged Faust tables:
   the in-memory store, and a changelog record on the partition of the event that caused it,
   as Faust writes a table key (sent in producer batches, :func:`_write_state`): the state
   tables' records first, the positions' once the broker has those, and the binding waits
   until the broker has every one;
4. the events are acknowledged (a stateless agent's once the broker has its emits); Faust
   commits acknowledged offsets.

Steps 1 to 4 of a batch run while the next batch is processed (in a thread). A batch's steps 1
and 2 start once the previous batch's are done, and its step 3 once the previous batch is done,
so rows, emits, state and acknowledgements keep batch order while one batch's rows and emits go
out during the previous batch's state writes (at most two batches being written). The state a
batch changed is held in the runner (:meth:`~streams.runtime.engine.AgentRunner.hold`) until the
tables have it, so the next batches read it.

"The broker has them" means each send's own delivery future resolved (``acks=all``), not a
producer flush: faust-streaming's ``Producer.flush`` returns after any 0.1 s wait with records
still queued in its buffer, and a flush reports no failed send. A send that fails raises
in the agent instead of being acknowledged.

A crash between any two steps loses nothing: the uncommitted events are re-delivered, and
everything before step 3 is idempotent or repeated byte for byte; after step 3 the restored
tables say the events were applied and the runner skips them. ``docs/agent-contract.md`` gives
the whole argument; :mod:`streams.runtime.faults` kills the worker at each step in the tests.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Iterable, Sequence

from streams.contracts.agent import AgentSpec
from streams.contracts.codec import codec_for
from streams.contracts.deadletters import DEAD_LETTER_TOPIC
from streams.contracts.effects import StateDelete
from streams.contracts.topics import topic_catalog
from streams.runtime.engine import POSITIONS_TABLE, AgentRunner, BatchOutput, Encoded
from streams.runtime.faults import CrashPoints
from streams.runtime.metrics import WorkerMetrics
from streams.settings import Settings
from streams.sinks.writers import CassandraSink, SinkSet, VectorSink

log = logging.getLogger("pulse.runtime")


class RuntimeContext:
    """What a worker's agents share: settings, codecs per topic, sinks, each agent's runner and
    side-input readers, counters. ``prepare`` may run in executor threads: a lock guards it.

    ``keyspace``: where the sinks write views. ``None`` (a worker): the keyspace readers use,
    from the view pointer (``streams.query.pointer``) when the sinks first open, so a worker
    started after ``pulse replay swap`` writes the swapped-in views. Vector points go to the
    collections that go with the keyspace (``<keyspace>__content`` for a rebuilt one).
    """

    def __init__(self, settings: Settings, extra_schemas: dict[str, str] | None = None,
                 keyspace: str | None = None, keys: Any = None):
        self.settings = settings
        self.keyspace = keyspace
        self._own_keyspace = keyspace is not None  # a rebuild's: media deletions only counted
        self.keys = keys
        """The data subjects' keys (:class:`~streams.contracts.personal.SubjectKeys`): personal
        fields are decrypted on decode and encrypted on emit (``None``: read and written as they
        are; workers and replays pass :func:`streams.stores.keys.subject_keys`)."""
        self._schemas = {name: spec.schema for name, spec in topic_catalog().items()}
        self._schemas.update(extra_schemas or {})
        self._codecs: dict[str, Any] = {}
        self._sinks: SinkSet | None = None
        self._lock = threading.RLock()
        self._closers: list = []
        self.counters: dict[str, int] = {"events": 0, "dead_letters": 0, "emitted": 0, "rows": 0,
                                         "skipped": 0}
        self.emitter = None
        """Where emitted events go: ``send_many(topic, [(key, value)])`` (set by :func:`bind`)."""
        self.first_batch_at: float | None = None
        """``time.perf_counter()`` when the first batch arrived (benchmarks time from here)."""
        self.tables: dict[str, dict[str, Any]] = {}
        """Per agent name: its backing state tables (Faust tables in a worker, set by
        :func:`bind`; dicts otherwise)."""
        self.runners: dict[str, AgentRunner] = {}
        self.side_readers: dict[str, list] = {}
        self.consumer_offsets: Any = None
        """In a worker (set by :func:`bind`): where its consumer stands
        (:class:`ConsumerOffsets`), and every stateful runner checks its partitions' offsets for
        gaps (``AgentRunner.watch_gaps``); None in replay, which hands runners a selection of a
        topic's events."""
        self.crash = CrashPoints.parse(settings.crash_point)
        if keys is not None and hasattr(keys, "close"):
            self._closers.append(keys.close)
        self.metrics = WorkerMetrics()
        """Per-agent counters and histograms (:mod:`streams.runtime.metrics`); the worker serves
        them at ``/metrics``."""

    def codec(self, topic: str):
        """The codec of ``topic``'s event type (catalog or ``extra_schemas``).

        Raises
        ------
        KeyError
            ``topic`` carries no known event type.
        """
        c = self._codecs.get(topic)
        if c is None:
            try:
                schema = self._schemas[topic]
            except KeyError:
                raise KeyError(f"topic {topic!r} carries no known event type") from None
            c = self._codecs[topic] = codec_for(self.settings, schema, topic, keys=self.keys)
        return c

    def prepare(self, spec: AgentSpec) -> AgentRunner:
        """The agent's runner, built once: models loaded (``spec.load``), declared sinks opened,
        side inputs read up to their current end. Blocking (seconds for models)."""
        runner = self.runners.get(spec.name)
        if runner is not None:
            return runner
        with self._lock:
            runner = self.runners.get(spec.name)
            if runner is not None:
                return runner
            models = spec.load(self.settings)  # a missing model is the first thing to report
            self.sinks(spec.sinks)
            side = {}
            readers = []
            if spec.side_inputs:
                from streams.runtime.side_inputs import SideInputReader

                for si in spec.side_inputs:
                    state = si.open(self.settings, models)
                    reader = SideInputReader(self.settings, si.topic, state.apply,
                                             self.codec(si.topic), name=f"{spec.name}.{si.name}",
                                             forget=getattr(state, "forget", None))
                    reader.catch_up()
                    self._closers.append(reader.close)
                    readers.append(reader)
                    side[si.name] = state
            close = getattr(models, "close", None)
            if close is not None:
                self._closers.append(close)
            tables = self.tables.setdefault(spec.name, {})
            runner = AgentRunner(spec, self.codec, config=self.settings, models=models,
                                 tables=tables, side=side)
            if self.consumer_offsets is not None and runner.stateful:
                runner.watch_gaps(self.consumer_offsets)
            self.side_readers[spec.name] = readers
            self.runners[spec.name] = runner
            return runner

    def run_batch(self, spec: AgentSpec, messages: Sequence[Any]) -> BatchOutput:
        """Catch the side inputs up, then run ``messages`` through the agent (blocking)."""
        runner = self.prepare(spec)
        for reader in self.side_readers.get(spec.name, ()):
            reader.catch_up()
        return runner.run(messages)

    def sinks(self, needs: Iterable[str]) -> SinkSet:
        """The worker's sinks, opening Cassandra / the vector index on first need (blocking)."""
        needs = set(needs)
        with self._lock:
            if self._sinks is None:
                self._sinks = SinkSet()
            if "cassandra" in needs and self._sinks.cassandra is None:
                from streams.stores.cassandra import connect

                cluster, session = connect(self.settings, self._keyspace())
                self._closers.append(cluster.shutdown)
                from streams.stores.keys import CassandraSubjectKeys

                keys = self.keys if isinstance(self.keys, CassandraSubjectKeys) else \
                    CassandraSubjectKeys(self.settings, session=session)
                self._sinks.cassandra = CassandraSink(session, keys=keys)
            if "vectors" in needs and self._sinks.vectors is None:
                from streams.stores.vectors import open_vector_index
                from streams.stores.vectors.prefixed import PrefixedIndex, collection_prefix

                index = open_vector_index(self.settings)
                self._closers.append(index.close)
                prefix = collection_prefix(self._keyspace(), self.settings.cassandra_keyspace)
                self._sinks.vectors = VectorSink(PrefixedIndex(index, prefix) if prefix else index)
            if "media" in needs and self._sinks.media is None:
                from streams.sinks.writers import MediaSink
                from streams.stores.media import MediaStore

                # a rebuild into a keyspace of its own (compare, --into) leaves the live store alone
                self._sinks.media = MediaSink(MediaStore.from_settings(self.settings),
                                              dry=self._own_keyspace)
            return self._sinks

    def _keyspace(self) -> str:
        """The keyspace the sinks write (resolved once)."""
        if self.keyspace is None:
            from streams.query.pointer import active_keyspace
            from streams.stores.cassandra import connect

            cluster, session = connect(self.settings)
            try:
                self.keyspace = active_keyspace(session, self.settings.cassandra_keyspace)
            finally:
                cluster.shutdown()
        return self.keyspace

    def close(self) -> None:
        """Close every sink connection, side-input reader and model opened so far."""
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # closing is best effort at shutdown
                log.exception("closing a resource failed")
        self._closers.clear()


#: Back-off between attempts to write a batch whose store is unreachable (seconds; doubles).
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0


async def write_with_retry(ctx: RuntimeContext, spec: AgentSpec, effects: list) -> int:
    """Buffer ``effects`` in the sinks and flush them, retrying until the stores take them.

    A store that is down (Cassandra restarting, a network partition) blocks this agent's batch,
    and so its partitions, instead of skipping events: the batch is not acknowledged until it is
    written, and each retry writes exactly what is still buffered, with exponential back-off
    (0.5 s doubling to 30 s) and a warning per attempt. The heartbeat goes on meanwhile, so the
    group does not rebalance.

    Returns the number of rows and points written.
    """
    from streams.sinks.writers import SinkError
    from streams.stores.cassandra import ViewStoreError

    loop = asyncio.get_running_loop()
    delay, added = RETRY_FIRST_S, False
    while True:
        try:
            sinks = await loop.run_in_executor(None, ctx.sinks, spec.sinks)
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


async def process_with_retry(ctx: RuntimeContext, spec: AgentSpec, messages: Sequence[Any],
                             executor=None) -> BatchOutput:
    """Run ``messages`` through the agent (:meth:`RuntimeContext.run_batch`) in a thread
    (``executor``, the agent's own, when it blocks; else the loop's default), retrying while
    the data subjects' key store cannot be read
    (:class:`~streams.contracts.personal.KeyUnavailable`), with the sinks' back-off.

    A failed attempt applied nothing (state changes stay in the batch's overlay until the binding
    writes them), so the retry computes exactly what one attempt would have, and the partition
    waits instead of losing the batch. Any other exception propagates."""
    from streams.contracts.personal import KeyUnavailable

    loop = asyncio.get_running_loop()
    delay = RETRY_FIRST_S
    while True:
        try:
            # in a thread, so that the event loop goes on writing the previous batch meanwhile
            return await loop.run_in_executor(executor, ctx.run_batch, spec, messages)
        except KeyUnavailable as exc:
            log.warning("agent %s: %s; retrying the batch in %.1f s", spec.name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


class DeliveryError(RuntimeError):
    """The broker did not accept a record an agent sent (an emit, a dead letter or a changelog
    write); the events that caused it are not acknowledged."""


async def delivered(app, futures: Sequence[Any]) -> None:
    """Wait until the broker has the record behind each of ``futures`` (aiokafka's send futures
    and Faust's ``FutureMessage``; ``acks=all``). The wait is bounded by the producer's own
    request timeout and retries, as a flush is.

    Raises
    ------
    DeliveryError
        A send failed.
    """
    if not futures:
        return
    try:
        await asyncio.gather(*futures)
    except Exception as exc:  # noqa: BLE001 - any send error: do not acknowledge
        raise DeliveryError(f"the broker did not accept a record: {exc!r}") from exc


def ack_when_delivered(events: Sequence[Any], futures: Sequence[Any],
                       failed: list[BaseException]) -> None:
    """Acknowledge ``events`` once every one of ``futures`` resolved (at once when there is none);
    if a send failed, append a :class:`DeliveryError` to ``failed`` instead, for the agent to
    raise. A stateless agent thus goes on to its next batch while its emits are in flight, and
    Faust never commits an offset whose outputs the broker does not have."""
    if not futures:
        for ev in events:
            ev.ack()
        return

    def done(all_sent: asyncio.Future) -> None:
        exc = all_sent.exception() if not all_sent.cancelled() else asyncio.CancelledError()
        if exc is not None:
            failed.append(DeliveryError(f"the broker did not accept a record: {exc!r}"))
            return
        for ev in events:
            ev.ack()

    asyncio.gather(*futures).add_done_callback(done)


async def send_encoded(ctx: RuntimeContext, items: Sequence[Encoded], meter=None) -> list:
    """Hand encoded events to the producer, grouped by topic; returns their delivery futures
    (see :func:`delivered`). ``meter``: the agent's
    :class:`~streams.runtime.metrics.AgentMeter`, counting them."""
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for e in items:
        by_topic.setdefault(e.topic, []).append((e.key, e.value))
    futures: list = []
    for topic, pairs in by_topic.items():
        futures.extend(await ctx.emitter.send_many(topic, pairs) or ())
        ctx.counters["dead_letters" if topic == DEAD_LETTER_TOPIC else "emitted"] += len(pairs)
        if meter is not None:
            if topic == DEAD_LETTER_TOPIC:
                meter.dead_lettered(_error_types(ctx, pairs))
            else:
                meter.emitted(topic, len(pairs))
    return futures


def _error_types(ctx: RuntimeContext, pairs: Sequence[tuple[bytes | None, bytes]]) -> list[str]:
    """The ``error_type`` of each encoded dead letter (rare: decoding them costs nothing that
    matters), the bounded reason label of ``pulse_agent_dead_letters_total``."""
    codec = ctx.codec(DEAD_LETTER_TOPIC)
    out = []
    for _key, value in pairs:
        try:
            out.append(str(codec.decode(value).get("error_type") or "unknown"))
        except Exception:  # noqa: BLE001 - a count must never fail the batch
            out.append("unknown")
    return out


def bind(app, ctx: RuntimeContext, spec: AgentSpec):
    """Register ``spec`` as a Faust agent on ``app`` reading its topics as raw bytes.

    The agent drains its channel's queue in batches: it waits for one event, then takes every
    event already buffered, up to ``spec.batch_size`` (natural batching: large batches under
    load, no added latency when idle). Faust's per-event stream iteration costs more than the
    decode, process and encode of an event together (measured by ``pulse bench backbone``), so
    the binding acknowledges each event itself once the batch is applied; Faust commits only
    acknowledged offsets.
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
    if ctx.consumer_offsets is None:
        ctx.consumer_offsets = ConsumerOffsets(app)
    crash = ctx.crash
    meter = ctx.metrics.meter(spec.name)
    watch_feed = "cassandra" in spec.sinks
    wall = time.time

    async def write(events: list, out: BatchOutput, token: int, arrived: float,
                    failed: list[BaseException], earlier: _Write | None, this: _Write) -> None:
        """Steps 1-4 (module docstring) for one processed batch; a stateless batch's failed
        delivery is appended to ``failed``.

        Steps 1-2 start once ``earlier`` (the previous batch's write) has done its steps 1-2,
        and this batch's state (step 3) once ``earlier`` is done, so rows, emits, state and
        acknowledgements keep batch order while this batch's rows and emits go out during the
        previous batch's state writes."""
        try:
            if earlier is not None:
                await asyncio.shield(earlier.outputs)
            if out.views:
                rows = await write_with_retry(ctx, spec, out.views)
                ctx.counters["rows"] += rows
                meter.rows += rows
                if watch_feed:
                    ctx.metrics.feed_rows_written(out.views, int(wall() * 1000))
            crash.reached(spec.name, "after-sinks")
            sent = []
            if out.emits or out.dead_letters:
                sent = await send_encoded(ctx, out.emits + out.dead_letters, meter)
            if out.state:
                await delivered(app, sent)  # emits durable before the state that says "applied"
                crash.reached(spec.name, "after-emits")
        finally:
            if not this.outputs.done():
                this.outputs.set_result(None)  # a failure surfaces through ``done``
        if out.state:
            if earlier is not None:
                await asyncio.shield(earlier.done)  # its failure stops this batch's state too
            await _write_state(ctx, app, faust_tables, out.state)
            ctx.runners[spec.name].release(token)  # the tables have it now
            crash.reached(spec.name, "after-state")
            for ev in events:
                ev.ack()
        else:
            crash.reached(spec.name, "after-emits")
            crash.reached(spec.name, "after-state")
            ack_when_delivered(events, sent, failed)
        ctx.counters["events"] += out.events
        ctx.counters["skipped"] += out.skipped
        meter.acknowledged(out.events, out.skipped, wall() - arrived)

    async def run(stream):
        queue = stream.channel.queue
        get, get_nowait, empty = queue.get, queue.get_nowait, queue.empty
        limit = spec.batch_size
        failed: list[BaseException] = []  # a stateless batch's failed delivery, raised next batch
        writes: list[_Write] = []  # batches being written (steps 1-4), oldest first; at most two
        token = 0
        loop = asyncio.get_running_loop()
        try:
            while True:
                if writes and empty():
                    # nothing buffered: finish the writes first, so that an acknowledgement, or
                    # the error that stops the agent, never waits for traffic
                    for w in writes:
                        await w.done
                    writes.clear()
                try:
                    events = [await get()]
                except StopAsyncIteration:  # Faust ends the channel when the worker stops
                    for w in writes:
                        await w.done
                    return
                while len(events) < limit and not empty():
                    events.append(get_nowait())
                if ctx.first_batch_at is None:
                    ctx.first_batch_at = time.perf_counter()
                arrived = wall()
                if failed:
                    raise failed[0]  # an earlier batch's emits were not delivered: never acknowledged
                messages = [ev.message for ev in events]
                meter.arrived(messages, arrived)
                # processed while the previous batches' outputs are still being written; their
                # state is held in the runner until the tables have it, so this batch reads it
                out = await process_with_retry(ctx, spec, messages, executor)
                crash.reached(spec.name, "after-process")
                if crash.loses(spec.name):  # fault injection: the batch lost inside the worker
                    events = messages = out = None
                    continue
                if out.gaps:
                    seek_back(app, spec, out.gaps)
                if out.held_back:  # behind a gap: unacknowledged, delivered again after the seek
                    held = set(out.held_back)
                    events = [ev for i, ev in enumerate(events) if i not in held]
                if out.state:
                    token += 1
                    ctx.runners[spec.name].hold(out.state, token)
                while len(writes) >= 2:
                    await writes.pop(0).done  # raises the error that stops the agent
                earlier = writes[-1] if writes else None
                this = _Write(loop.create_future())
                this.done = asyncio.ensure_future(
                    write(events, out, token, arrived, failed, earlier, this))
                writes.append(this)
        except BaseException:
            for w in writes:
                if not w.done.done():
                    w.done.cancel()  # unacknowledged: re-delivered, as after a crash
            runner = ctx.runners.get(spec.name)
            if runner is not None:
                runner.discard_held()  # never written: no later batch may read it
            raise

    run.__name__ = spec.name
    return app.agent(channel, name=spec.name)(run)


class _Write:
    """One batch's write in the binding: ``outputs`` resolves once its view rows and emits are
    out (steps 1-2; resolved on failure too), ``done`` is the task writing it (steps 1-4)."""

    __slots__ = ("outputs", "done")

    def __init__(self, outputs: asyncio.Future) -> None:
        self.outputs = outputs
        self.done: asyncio.Future | None = None


class ConsumerOffsets:
    """What a runner's gap check (``AgentRunner.watch_gaps``) reads of the worker's consumer
    (``streams.runtime.transport.PulseConsumer``'s ``log_start`` and ``first_delivered``; None
    from any other consumer), looked up at each question because Faust makes its consumer
    lazily. Asked from the agent's thread: single dict lookups."""

    def __init__(self, app) -> None:
        self._app = app

    def log_start(self, topic: str, partition: int) -> int | None:
        ask = getattr(self._app.consumer, "log_start", None)
        return ask(topic, partition) if ask is not None else None

    def first_delivered(self, topic: str, partition: int) -> int | None:
        ask = getattr(self._app.consumer, "first_delivered", None)
        return ask(topic, partition) if ask is not None else None


def seek_back(app, spec: AgentSpec, gaps: dict[tuple[str, int], int]) -> None:
    """Ask the worker's consumer to deliver each partition of ``gaps`` (``(topic, partition) ->
    offset``, ``BatchOutput.gaps``) again from its offset: events below a message the agent was
    handed never reached it. A partition no longer assigned here needs nothing (its new owner
    starts from the committed offset, at or below the gap); if the consumer cannot seek, the
    held-back events stay unacknowledged and the commit watchdog rewinds the partition."""
    from faust.types import TP

    rewind = getattr(app.consumer, "rewind_to", None)
    for (topic, partition), offset in gaps.items():
        if rewind is None:
            log.warning("agent %s: %s[%s] has a gap from offset %s and the consumer cannot "
                        "seek; the commit watchdog will rewind it", spec.name, topic, partition,
                        offset)
        elif not rewind(TP(topic, partition), offset):
            log.info("agent %s: %s[%s] is no longer assigned here; its gap from offset %s is "
                     "its new owner's", spec.name, topic, partition, offset)


def _faust_tables(app, ctx: RuntimeContext, spec: AgentSpec) -> dict[str, Any]:
    """Create the agent's state tables (and its positions table) as Faust tables (memory store +
    changelog topic ``<app_id>-<agent>-<table>-changelog``) on ``app``; JSON keys and values."""
    if not spec.tables:
        return {}
    catalog = topic_catalog()
    partitions = {ctx.settings.topic_partitions or catalog[t].partitions
                  for t in spec.topics if t in catalog}
    if len(partitions) != 1:
        raise ValueError(f"agent {spec.name} keeps tables, so its source topics must be "
                         f"co-partitioned; they have {sorted(partitions)} partitions")
    n = partitions.pop()
    import faust

    tables = {name: app.tables.add(faust.Table(
        app, name=f"{spec.name}-{name.strip('_')}", partitions=n, key_type=str,
        beacon=app.tables.beacon, help=f"{spec.name}'s {name} state, keyed like its source topics"))
        for name in spec.tables + (POSITIONS_TABLE,)}
    ctx.tables[spec.name] = tables
    return tables


async def _write_state(ctx: RuntimeContext, app, tables: dict[str, Any],
                       changes: Sequence[tuple[Any, Any]]) -> None:
    """Write state changes into the agent's Faust tables: each change into the table's
    in-memory store, and as a changelog record (the table's own key and value serializers, a
    tombstone for a delete) on the changelog partition of the event that caused it, as Faust's
    ``Table.__setitem__`` would write it with that event current; returns once the broker has
    every record (:func:`delivered`).

    The state tables' records are sent first and the positions' (:data:`POSITIONS_TABLE`) only
    once the broker has those: a crash in between leaves state whose positions did not land,
    whose events are applied again on re-delivery (harmless to a fold that dedupes, as most
    do), never positions whose state did not land, which would skip its events for good
    (docs/agent-contract.md).

    Of several changes of one key in a batch only the last is sent (and stored): the changelog
    is compacted and restored whole, so a key's earlier values within the batch would never be
    read, and every source event of the batch sets its partition's position. Measured with
    ``pulse bench delivery``'s log: notification_generator sent 2 records per event, the
    positions' half of them superseded within the batch; trend_detector rewrote its partition
    record, heavy-hitter sketch and all, once per mention. (Kafka Streams' record cache does the
    same. It was kept out three times because restarted workers stalled with it; the cause was
    Faust's flow control dropping events fetched during a worker's recovery, which the record
    cache's shorter changelogs made frequent: fixed in :mod:`streams.runtime.transport`,
    docs/testing.md.)

    The records go through :class:`~streams.runtime.emitter.BatchEmitter`, one producer batch
    per changelog partition, instead of Faust's per-record path (a ``FutureMessage`` and a trip
    through Faust's producer buffer each): ``pulse bench delivery`` measured that path at up to
    half of a stateful agent's time (docs/delivery.md). Faust restores the tables from these
    records as from its own: the same topic, partition, key and value bytes.

    Raises
    ------
    ValueError
        A changelog topic lacks the cause's partition (it must be co-partitioned with the
        agent's source topics; :func:`_faust_tables`).
    DeliveryError
        The broker refused a record (:func:`delivered`)."""
    state: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
    positions: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
    last: dict[tuple[str, Any, int], tuple[Any, Any]] = {}
    for change, cause in changes:  # a key's last change per changelog partition, in batch order
        ident = (change.table, change.key, cause.partition)
        last.pop(ident, None)
        last[ident] = (change, cause)
    for change, cause in last.values():
        table = tables[change.table]
        topic = table.changelog_topic
        if isinstance(change, StateDelete):
            table.data.pop(change.key, None)
            value = None
        else:
            table.data[change.key] = change.value
            value = topic.prepare_value(change.value, table.value_serializer)[0]
        key = topic.prepare_key(change.key, table.key_serializer)[0]
        records = positions if change.table == POSITIONS_TABLE else state
        records.setdefault((topic.get_topic_name(), cause.partition), []).append((key, value))
    for records in (state, positions):
        futures: list = []
        for (name, partition), items in records.items():
            futures.extend(await ctx.emitter.send_to_partition(name, partition, items))
        if futures:
            await delivered(app, futures)

"""Rebuilding views by replaying the log through the live code path.

:func:`rebuild_views` reads every source topic of the chosen agents as raw bytes, from the start
of each partition (or from a Kafka timestamp) up to the end offsets taken when the replay began,
and feeds them to exactly what a worker runs per batch: the agent's
:class:`~streams.runtime.engine.AgentRunner` in the worker's
:class:`~streams.runtime.binding.RuntimeContext`, then ``ctx.sinks(spec.sinks).write(views)``
and the state changes into the replay's own tables. Views are idempotent upserts written at event
time (``USING TIMESTAMP``), so replaying over a live view leaves the same rows and write times;
``into=KEYSPACE`` writes a fresh keyspace instead (and :mod:`replay.verify` compares it).

Derived events (emits) are counted but not published unless ``emit=True``: a replay must not
duplicate output events. Dead letters found on the way are counted and listed the same way.

Order: one partition's messages in offset order; partitions and topics interleaved by Kafka
timestamp (a k-way merge), so cross-topic order resembles the live stream. Agents whose sources
meet in one state (the publisher) fold commutatively, so their results do not depend on the
interleaving (``streams/contracts/agent.py``, determinism rules). When one agent's batch fills,
every agent processes what it has buffered, upstream agents first (:func:`upstream_first`).
"""
from __future__ import annotations

import heapq
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

from agents.registry import select
from replay.reader import message_counts, offset_ranges, scan_into
from streams.contracts.deadletters import DEAD_LETTER_TOPIC
from streams.runtime.binding import RuntimeContext
from streams.runtime.engine import RawMessage
from streams.settings import Settings
from streams.contracts.topics import TopicError, require_bootstrap

Progress = Callable[[int, int], None]
"""``on_progress(messages_done, messages_total)``; the total shrinks when a partition ends early
(``end_ms``), so it reaches ``done`` at the end."""

MAX_BUFFERED = 2_000
"""Messages buffered per partition before it is paused (bounds memory during the merge)."""

MAX_LISTED_DEAD_LETTERS = 20
"""How many dead letters a replay lists individually (all are counted)."""


class TimeRangeError(ValueError):
    """A ``--from`` / ``--to`` value is not a time, or the range is empty; the message says which."""


def parse_time_ms(text: str, what: str = "time") -> int:
    """Parse an ISO-8601 time (``2018-03-12``, ``2018-03-12T10:00:00Z``, ``...+02:00``) or an
    integer of epoch milliseconds into UTC epoch milliseconds. A time without offset is UTC.

    Raises
    ------
    TimeRangeError
        ``text`` is neither; the message names ``what`` (unless empty) and shows an example.
    """
    s = text.strip()
    if s.lstrip("-").isdigit():
        return int(s)
    try:
        t = datetime.fromisoformat(s[:-1] + "+00:00" if s[-1:] in "zZ" and s else s)
    except ValueError:
        raise TimeRangeError(f"{what + ': ' if what else ''}{text!r} is not an ISO-8601 time (e.g. 2018-03-12 or "
                             f"2018-03-12T10:00:00Z) nor epoch milliseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def check_range(start_ms: int | None, end_ms: int | None) -> None:
    """Raise :class:`TimeRangeError` when ``start_ms >= end_ms`` (both epoch ms)."""
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise TimeRangeError(f"empty time range: from {start_ms} ms is not before to {end_ms} ms")


@dataclass
class _Partition:
    """Replay state of one partition: next offset to deliver, the end (exclusive), its buffer."""

    topic: str
    partition: int
    next: int
    end: int
    buffer: deque
    paused: bool = False


def _consumer(settings: Settings):
    from confluent_kafka import Consumer

    return Consumer({"bootstrap.servers": require_bootstrap(settings),
                     "group.id": f"pulse-replay-{uuid.uuid4()}", "enable.auto.commit": False,
                     "enable.auto.offset.store": False, "enable.partition.eof": True,
                     "auto.offset.reset": "earliest"})


def plan_partitions(consumer, topics: Iterable[str], start_ms: int | None,
                    timeout_s: float = 30.0) -> list[tuple[str, int, int, int]]:
    """``[(topic, partition, start_offset, end_offset)]`` for every partition of ``topics``.

    ``start_offset`` is the low watermark, or the first offset at or after ``start_ms`` (epoch ms,
    ``offsets_for_times``); ``end_offset`` is the high watermark now (exclusive).

    Raises
    ------
    TopicError
        A topic does not exist on the cluster, or the cluster does not answer.
    """
    plan = []
    for topic in topics:
        ranges = offset_ranges(consumer, topic, start_ms=start_ms, timeout_s=timeout_s)
        plan.extend((topic, p, start, end) for p, (start, end) in ranges.items())
    return plan


def read_merged(settings: Settings, topics: Iterable[str], *, start_ms: int | None = None,
                end_ms: int | None = None, on_total: Callable[[int], None] | None = None,
                timeout_s: float = 30.0) -> Iterator[RawMessage]:
    """Yield the raw messages of ``topics`` in ``[start_ms, end_ms)`` merged by Kafka timestamp.

    Within a partition: offset order. A partition ends at its end offset taken at the start, or
    at its first message with timestamp >= ``end_ms``. No consumer-group offsets are committed.
    ``on_total(n)`` is told the number of messages expected (an upper bound, lowered as
    partitions end early).

    Raises
    ------
    TopicError
        A topic is missing, a fetch fails, or nothing arrives for ``timeout_s`` seconds.
    """
    from confluent_kafka import KafkaError, TopicPartition

    consumer = _consumer(settings)
    try:
        parts = {(t, p): _Partition(t, p, s, e, deque())
                 for t, p, s, e in plan_partitions(consumer, topics, start_ms, timeout_s) if s < e}
        total = sum(x.end - x.next for x in parts.values())
        if on_total:
            on_total(total)
        if not parts:
            return
        consumer.assign([TopicPartition(x.topic, x.partition, x.next) for x in parts.values()])
        active = set(parts)          # partitions that may still deliver messages
        heads: list = []             # (timestamp_ms, topic, partition) of each non-empty buffer

        def finish(x: _Partition) -> None:
            nonlocal total
            active.discard((x.topic, x.partition))
            total -= x.end - x.next
            x.next = x.end
            if on_total:
                on_total(total)

        last_message = time.monotonic()
        while active or heads:
            starving = [k for k in active if not parts[k].buffer]
            if not starving:  # every live partition has a head: the oldest head goes next
                _, t, p = heapq.heappop(heads)
                x = parts[(t, p)]
                msg = x.buffer.popleft()
                if x.buffer:
                    heapq.heappush(heads, (x.buffer[0].timestamp_ms or 0, t, p))
                if x.paused and len(x.buffer) < MAX_BUFFERED // 2:
                    consumer.resume([TopicPartition(t, p)])
                    x.paused = False
                yield msg
                continue
            batch = consumer.consume(num_messages=1000, timeout=0.2)
            if batch:
                last_message = time.monotonic()
            elif time.monotonic() - last_message > timeout_s:
                raise TopicError(f"replay stalled: nothing from {sorted(starving)[:3]} for {timeout_s:.0f} s")
            for m in batch:
                key = (m.topic(), m.partition())
                x = parts.get(key)
                if x is None or key not in active:
                    continue
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        finish(x)
                        continue
                    raise TopicError(f"reading {key[0]}[{key[1]}]: {err}")
                if m.offset() < x.next:  # re-fetched after a resume
                    continue
                ts_type, ts = m.timestamp()
                ts = ts if ts_type and ts >= 0 else None
                if end_ms is not None and ts is not None and ts >= end_ms:
                    finish(x)
                    continue
                raw = RawMessage(key[0], key[1], m.offset(), m.key(), m.value(),
                                 tuple(m.headers() or ()), ts)
                total -= m.offset() - x.next  # offsets skipped (compaction, control records)
                x.next = m.offset() + 1
                if not x.buffer:
                    heapq.heappush(heads, (ts or 0, key[0], key[1]))
                x.buffer.append(raw)
                if x.next >= x.end:
                    active.discard(key)
                elif len(x.buffer) >= MAX_BUFFERED and not x.paused:
                    consumer.pause([TopicPartition(*key)])
                    x.paused = True
    finally:
        consumer.close()


def rebuild_views(settings: Settings, agent_names: list[str] | None, *, start_ms: int | None = None,
                  end_ms: int | None = None, emit: bool = False, into: str | None = None,
                  collect: bool = False, on_progress: Progress | None = None) -> dict:
    """Replay the source topics of ``agent_names`` (``None`` or empty: every agent) through the
    live code path — the worker's :class:`~streams.runtime.binding.RuntimeContext` and each
    agent's :class:`~streams.runtime.engine.AgentRunner` — and write their view effects.

    State is rebuilt from the log: every agent starts with empty tables and folds its sources
    from the first offset; side inputs are read whole first and answer as of each event's time.

    Parameters
    ----------
    start_ms / end_ms:
        Kafka-timestamp range ``[start_ms, end_ms)`` in UTC epoch ms (``None``: whole log). Only
        for agents without state (a state fold needs the whole log).
    emit:
        Also publish the emitted events and dead letters, as the worker would; by default they
        are only counted (a replay must not duplicate output events).
    into:
        Write the views into this keyspace (created with the schema) and the vector points into
        collections prefixed ``<into>__``, instead of the active ones.
    collect:
        Keep every encoded derived event (``out["emitted"]``: ``{topic: {event_id: bytes}}``)
        and the tables, columns and vector points the replay wrote (``out["written"]``), for
        :func:`replay.verify.verify_rebuild`.

    Returns
    -------
    dict
        ``agents`` (names), ``topics`` (``{topic: messages read}``), ``events`` (total read),
        ``effects`` (view rows / points written), ``emits_skipped``, ``emits_published``,
        ``dead_letters`` (count), ``dead_letters_published``, ``dead_letter_list`` (up to
        :data:`MAX_LISTED_DEAD_LETTERS` of ``{topic, partition, offset, reason}``), ``keyspace``,
        ``outputs`` (the agents' declared output topics, sorted), ``seconds``, ``events_per_s``;
        with ``collect``, ``emitted`` and ``written``.

    Raises
    ------
    KeyError
        An unknown agent name.
    TopicError
        Kafka is not configured or reachable, or a source topic is missing.
    streams.sinks.writers.SinkError, streams.stores.cassandra.ViewStoreError
        Writing the views failed.
    TimeRangeError
        ``start_ms >= end_ms``, or a range for an agent with state.
    """
    from dataclasses import replace

    check_range(start_ms, end_ms)
    specs = select(",".join(agent_names) if agent_names else None)
    if (start_ms is not None or end_ms is not None) and any(sp.tables for sp in specs):
        raise TimeRangeError("agents with state (" + ", ".join(sp.name for sp in specs if sp.tables)
                             + ") are rebuilt from the whole log: drop --from/--to")
    extra = {t: s for spec in specs for t, s in spec.topic_schemas.items()}
    if into is not None:
        from streams.stores.cassandra import apply_schema

        # the schema in the new keyspace; the context keeps the base keyspace in its settings, so
        # the vector sink writes the rebuilt keyspace's own collections (``<into>__content``)
        apply_schema(replace(settings, cassandra_keyspace=into))
    topics = list(dict.fromkeys(t for spec in specs for t in spec.topics))
    # personal fields decrypted with the live run's keys (a shredded subject's read as erased),
    # read in one scan first where the rebuild needs most of them (scan_into)
    from streams.stores.keys import subject_keys

    keys = subject_keys(settings)
    ctx = RuntimeContext(settings, extra_schemas=extra, keyspace=into, keys=keys)
    by_topic = {t: [sp for sp in specs if t in sp.topics] for t in topics}
    order = upstream_first(specs)
    batches: dict[str, list[RawMessage]] = {sp.name: [] for sp in specs}
    out: dict = {"agents": [sp.name for sp in specs], "topics": dict.fromkeys(topics, 0),
                 "events": 0, "effects": 0, "emits_skipped": 0, "emits_published": 0,
                 "dead_letters": 0, "dead_letters_published": 0, "dead_letter_list": [],
                 "keyspace": ctx.keyspace,
                 "outputs": sorted({t for sp in specs for t in sp.outputs})}
    emitted: dict[str, dict[str, bytes]] = {}
    emitted_by: dict[str, dict[str, str]] = {}   # topic -> event id -> the agent that emitted it
    written = Written()
    publisher = None
    if emit:
        from streams.producer import Publisher

        publisher = Publisher(settings, producer_name="pulse-replay")
    total = [0]
    # write-behind: a batch's view writes run in this thread while the next batch is decoded and
    # processed (one write in flight, in batch order). Rows carry their event time as
    # USING TIMESTAMP, so which of two overlapping writes lands first changes nothing; and no
    # agent reads the views (agents do no I/O), so none can see a write still in flight.
    writer = ThreadPoolExecutor(1, thread_name_prefix="pulse-replay-writer")
    in_flight: list = []

    def write_behind(sinks, views) -> None:
        settle()
        in_flight.append(writer.submit(sinks.write, views))

    def settle() -> None:
        while in_flight:
            out["effects"] += in_flight.pop().result()

    def run(spec, batch: list[RawMessage]) -> None:
        # the worker's per-batch code (streams.runtime.binding.bind), synchronously
        result = ctx.run_batch(spec, batch)
        if result.views:
            write_behind(ctx.sinks(spec.sinks), result.views)
            if collect:
                written.add(result.views, agent=spec.name)
        for e in result.dead_letters:
            out["dead_letters"] += 1
            if len(out["dead_letter_list"]) < MAX_LISTED_DEAD_LETTERS:
                m = e.cause
                out["dead_letter_list"].append({"topic": m.topic, "partition": m.partition,
                                                "offset": m.offset, "reason": _reason(ctx, e)})
        for e in result.emits:
            if collect and e.value is not None:  # a tombstone has no event id (verify skips them)
                eid = _event_id(ctx, e)
                emitted.setdefault(e.topic, {})[eid] = e.value
                emitted_by.setdefault(e.topic, {})[eid] = spec.name
            if publisher is None:
                out["emits_skipped"] += 1
        if publisher is not None:
            for e in result.emits + result.dead_letters:
                publisher.produce_raw(e.topic, e.key, e.value)
                out["dead_letters_published" if e.topic == DEAD_LETTER_TOPIC else
                    "emits_published"] += 1
        ctx.runners[spec.name].apply_state(result.state)
        batch.clear()

    began = time.perf_counter()
    try:
        if keys is not None:
            scan_into(settings, keys, {t: message_counts(settings, t, start_ms) for t in topics})
        for spec in specs:
            ctx.prepare(spec)
        for msg in read_merged(settings, topics, start_ms=start_ms, end_ms=end_ms,
                               on_total=lambda n: total.__setitem__(0, n)):
            out["topics"][msg.topic] += 1
            out["events"] += 1
            full = False
            for spec in by_topic[msg.topic]:
                batch = batches[spec.name]
                batch.append(msg)
                full = full or len(batch) >= spec.batch_size
            if full:  # every agent catches up to here, upstream agents first
                for spec in order:
                    if batches[spec.name]:
                        run(spec, batches[spec.name])
            if on_progress and out["events"] % 200 == 0:
                on_progress(out["events"], total[0])
        for spec in order:
            if batches[spec.name]:
                run(spec, batches[spec.name])
        settle()
        if publisher is not None:
            publisher.flush()
    finally:
        writer.shutdown(wait=True)
        ctx.close()
    if on_progress:
        on_progress(out["events"], out["events"])
    out["seconds"] = round(time.perf_counter() - began, 3)
    out["events_per_s"] = round(out["events"] / out["seconds"]) if out["seconds"] > 0 else 0
    if collect:
        out["emitted"] = emitted
        out["emitted_by"] = emitted_by
        out["written"] = written
    return out


def upstream_first(specs: list) -> list:
    """``specs`` ordered so that an agent comes before the agents that consume a topic it emits
    (Kahn's algorithm; ties and cycles keep the registry order).

    Replay runs the agents' pending batches in this order each time one batch fills, so every
    agent has processed the log up to the same point, and an agent's writes are in place before
    the events it emitted live reach the downstream agent (clip_ai's vector point before the
    publisher marks it for search)."""
    pending = list(specs)
    done: list = []
    while pending:
        for sp in pending:
            feeders = [o for o in pending if o is not sp and set(o.outputs) & set(sp.topics)]
            if not feeders:
                break
        else:  # every pending agent has a feeder: break a cycle at its first agent
            sp = next(s for s in pending if _on_cycle(s, pending))
        pending.remove(sp)
        done.append(sp)
    return done


def _on_cycle(spec, pending: list) -> bool:
    """Whether ``spec`` feeds itself through agents of ``pending``."""
    seen, frontier = set(), [spec]
    while frontier:
        cur = frontier.pop()
        for o in pending:
            if set(cur.outputs) & set(o.topics) and id(o) not in seen:
                if o is spec:
                    return True
                seen.add(id(o))
                frontier.append(o)
    return False


class Written:
    """What a replay wrote: per Cassandra table the columns it set, per vector collection the
    point ids and the payload keys it set (what :mod:`replay.verify` compares)."""

    def __init__(self) -> None:
        self.columns: dict[str, set[str]] = {}
        self.points: dict[str, set[str]] = {}
        self.payload_keys: dict[str, set[str]] = {}
        self.vectors: set[str] = set()
        self.by_agent: dict[str, set[str]] = {}
        """Agent name -> the tables and collections it wrote."""

    def add(self, effects, agent: str | None = None) -> None:
        from streams.contracts.effects import (Delete, ShredKey, Upsert, VectorDelete, VectorSetPayload,
                                               VectorUpsert)

        for e in effects:
            if isinstance(e, ShredKey):
                continue  # a subject's key: not a view to compare
            if agent is not None:
                self.by_agent.setdefault(agent, set()).add(getattr(e, "table", None) or e.collection)
            if isinstance(e, (Upsert, Delete)):
                cols = self.columns.setdefault(e.table, set())
                cols.update(e.row if isinstance(e, Upsert) else e.key)
            elif isinstance(e, VectorUpsert):
                self.points.setdefault(e.collection, set()).add(e.id)
                self.payload_keys.setdefault(e.collection, set()).update(e.payload)
                self.vectors.add(e.collection)
            elif isinstance(e, VectorSetPayload):
                self.points.setdefault(e.collection, set()).update(e.ids)
                self.payload_keys.setdefault(e.collection, set()).update(e.payload)
            elif isinstance(e, VectorDelete):
                self.points.setdefault(e.collection, set()).update(e.ids)


def drop_rebuild(settings: Settings, keyspace: str) -> list[str]:
    """Drop a rebuilt ``keyspace`` and its vector collections (``<keyspace>__<name>``); returns
    the collections dropped. The caller makes sure no reader uses it.

    Raises
    ------
    streams.stores.cassandra.ViewStoreError, VectorIndexError
        A store cannot be reached.
    """
    import tomllib

    from streams.stores.cassandra import connect
    from streams.stores.vectors import open_vector_index
    from streams.stores.vectors.base import COLLECTIONS_TOML

    cluster, session = connect(settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()
    names = [f"{keyspace}__{n}" for n in tomllib.loads(COLLECTIONS_TOML.read_text())["collections"]]
    with open_vector_index(settings) as index:
        return [name for name in names if index.drop_collection(name)]


def _event_id(ctx, e) -> str:
    return ctx.codec(e.topic).decode(e.value)["event_id"]


def _reason(ctx, e) -> str:
    return ctx.codec(e.topic).decode(e.value)["reason"]

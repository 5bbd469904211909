"""Reading a topic back, decoded, by offset or by time: the base of replay and of inspection tools.

A replay runs the live code path (the agents' ``process`` and the sinks) over what this reader
yields; it never re-implements an agent.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Collection, Iterator, Mapping, NamedTuple

from streams.contracts.codec import CodecError, codec_for
from streams.contracts.personal import decode_batches, personal_fields
from streams.contracts.schemas import default_catalog
from streams.settings import Settings
from streams.contracts.topics import TopicError, require_bootstrap, topic_spec


READ_BATCH = 1_000
"""Messages fetched per ``consume`` call by :func:`read_topic`."""

OWN_KEYS: Any = object()
"""``keys`` of :func:`read_topic_batches` when the reader opens (and closes) its own."""


class Position(NamedTuple):
    """Where a message sits: topic, partition, offset, and its Kafka timestamp (epoch ms). A
    named tuple: a reader makes one per message, and one costs 0.22 µs to make against 0.49 µs
    for a frozen dataclass (timeit, these machines)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def read_topic(settings: Settings, topic: str, *, last: int | None = None,
               start_ms: int | None = None, end_ms: int | None = None,
               timeout_s: float = 10.0, on_error: str = "raise",
               partitions: Collection[int] | None = None
               ) -> Iterator[tuple[Position, dict[str, Any]]]:
    """Yield ``(Position, record)`` for a topic's messages up to its current end offsets.

    Parameters
    ----------
    last:
        Only the last ``last`` messages of each partition.
    start_ms / end_ms:
        Only messages whose Kafka timestamp lies in ``[start_ms, end_ms)`` (epoch ms);
        the start is found with ``offsets_for_times``.
    on_error:
        ``"raise"`` (a :class:`CodecError` names the position) or ``"skip"``.
    partitions:
        Only these partitions of the topic (default: all); the parallel export reads a share
        of them in each process.

    Tombstones (null values on compacted topics, e.g. the eraser's) are not events and are
    skipped. Personal fields are decrypted (``PULSE_PERSONAL_DATA_ENCRYPTION``); those of an
    erased subject read as null or empty (``streams.contracts.personal.erased_fields``). All
    partitions are read at once: offset order within a partition, partitions interleaved as
    the broker delivers them. The read stops at the end offsets taken when it began, so it
    terminates on a live topic.

    Raises
    ------
    TopicError
        The topic is not on the cluster, or Kafka does not answer.
    CodecError
        A message cannot be fetched, or (``on_error="raise"``) does not decode.
    """
    for positions, records in read_topic_batches(settings, topic, last=last, start_ms=start_ms,
                                                 end_ms=end_ms, timeout_s=timeout_s,
                                                 on_error=on_error, partitions=partitions):
        yield from zip(positions, records)


def read_topic_batches(settings: Settings, topic: str, *, last: int | None = None,
                       start_ms: int | None = None, end_ms: int | None = None,
                       timeout_s: float = 10.0, on_error: str = "raise",
                       partitions: Collection[int] | None = None, keys: Any = OWN_KEYS
                       ) -> Iterator[tuple[list[Position], list[dict[str, Any]]]]:
    """:func:`read_topic` a fetched batch at a time: ``(positions, records)``, two lists of the
    same length (up to :data:`READ_BATCH`), for readers that handle rows in bulk (the export).
    ``keys``: the subjects' keys to open personal fields with
    (:func:`streams.stores.keys.subject_keys`, or ``None`` when encryption is off), for a caller
    that reads several topics or partitions with one connection and one key cache, and closes
    it; by default the reader opens its own and closes it at the end. Other parameters and
    errors as :func:`read_topic`."""
    from confluent_kafka import Consumer, TopicPartition

    from streams.stores.keys import subject_keys

    own_keys = keys is OWN_KEYS
    if own_keys:  # personal fields decrypted; a shredded subject's read as erased
        keys = subject_keys(settings)
    codec = codec_for(settings, topic_spec(topic).schema, topic, keys=keys)
    consumer = Consumer({"bootstrap.servers": require_bootstrap(settings),
                         "group.id": f"pulse-reader-{uuid.uuid4()}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        ranges = offset_ranges(consumer, topic, last=last, start_ms=start_ms, partitions=partitions,
                               timeout_s=timeout_s)
        ends = {p: end for p, (start, end) in ranges.items() if start < end}
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(ends)])
        # each batch's subjects' keys are read while the next batch is decoded (decode_batches)
        for positions, decoded in decode_batches(codec, _batches(consumer, topic, ends, end_ms, timeout_s)):
            bad = [i for i, record in enumerate(decoded) if isinstance(record, CodecError)]
            if bad:
                if on_error != "skip":
                    first = bad[0]
                    if first:  # the rows before it, as a row-at-a-time reader would have had them
                        yield positions[:first], decoded[:first]
                    pos = positions[first]
                    raise CodecError(f"{topic}[{pos.partition}]@{pos.offset}: {decoded[first]}") from None
                dropped = set(bad)
                positions = [pos for i, pos in enumerate(positions) if i not in dropped]
                decoded = [record for i, record in enumerate(decoded) if i not in dropped]
            if positions:
                yield positions, decoded
    finally:
        consumer.close()
        if own_keys and keys is not None:
            keys.close()


def offset_ranges(consumer, topic: str, *, last: int | None = None, start_ms: int | None = None,
                  partitions: Collection[int] | None = None, timeout_s: float = 10.0
                  ) -> dict[int, tuple[int, int]]:
    """``{partition: (start offset, end offset)}`` of ``topic`` (``partitions`` only, if given)
    as :func:`read_topic` reads it: from the low watermark, or the last ``last`` messages, or the
    first offset at or after ``start_ms`` (``offsets_for_times``), to the high watermark now
    (exclusive). ``consumer`` is a confluent-kafka consumer.

    Raises
    ------
    TopicError
        The topic is not on the cluster, or the cluster does not answer.
    """
    from confluent_kafka import KafkaException, TopicPartition

    try:
        md = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
    except KafkaException as exc:
        raise TopicError(f"Kafka did not answer: {exc}") from None
    if md.error is not None or not md.partitions:
        raise TopicError(f"topic {topic!r} is not on the cluster ({md.error}); run `pulse topics create`")
    out: dict[int, tuple[int, int]] = {}
    for p in sorted(md.partitions):
        if partitions is not None and p not in partitions:
            continue
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
        start = low if last is None else max(low, high - last)
        if start_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(topic, p, start_ms)], timeout=timeout_s)[0]
            start = max(start, found.offset if found.offset >= 0 else high)
        out[p] = (start, high)
    return out


def message_counts(settings: Settings, topic: str, start_ms: int | None = None,
                   timeout_s: float = 10.0) -> dict[int, int]:
    """``{partition: messages}`` that :func:`read_topic` with ``start_ms`` would read at most
    (end minus start offset; compaction and tombstones not subtracted): the export's shares and
    the progress totals of ``pulse export``.

    Raises
    ------
    TopicError
        As :func:`offset_ranges`.
    """
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": require_bootstrap(settings),
                         "group.id": f"pulse-reader-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        return {p: end - start for p, (start, end) in
                offset_ranges(consumer, topic, start_ms=start_ms, timeout_s=timeout_s).items()}
    finally:
        consumer.close()


def _batches(consumer, topic: str, ends: dict[int, int], end_ms: int | None, timeout_s: float
             ) -> Iterator[tuple[list[Position], list[bytes]]]:
    """``(positions, values)`` of the assigned partitions' messages, up to ``READ_BATCH`` per
    ``consume`` call, until every partition of ``ends`` (``{partition: end offset}``, emptied as
    they end) reached its end offset or ``end_ms``, or nothing came for ``timeout_s``.
    Tombstones are left out."""
    idle_since = time.monotonic()
    while ends:
        # batches of up to READ_BATCH messages (one poll per message costs more than the decode);
        # a short wait per call, so the last partial batch is not held for timeout_s
        batch = consumer.consume(num_messages=READ_BATCH, timeout=0.05)
        if not batch:
            if time.monotonic() - idle_since > timeout_s:
                return  # nothing more within timeout_s: the broker has no more for us
            continue
        idle_since = time.monotonic()
        positions: list[Position] = []
        values: list[bytes] = []
        for msg in batch:
            if msg.error():
                raise CodecError(f"reading {topic}[{msg.partition()}]: {msg.error()}")
            p, offset, ts = msg.partition(), msg.offset(), msg.timestamp()[1]
            if p not in ends:
                continue
            if offset + 1 >= ends[p]:
                del ends[p]
            if end_ms is not None and ts >= end_ms:
                ends.pop(p, None)  # this partition has reached the end of the range
                continue
            value = msg.value()
            if value is None:
                continue  # a tombstone on a compacted topic (erasure): a deletion, not an event
            positions.append(Position(topic, p, offset, ts))
            values.append(value)
        if values:
            yield positions, values


def personal_messages(counts: Mapping[str, Mapping[int, int]]) -> int:
    """How many of the messages of ``counts`` (``{topic: {partition: messages}}``) are of an
    event type with personal fields (``streams.contracts.personal``): at most that many
    subjects' keys are needed to open them."""
    return sum(sum(parts.values()) for topic, parts in counts.items()
               if personal_fields(default_catalog().current(topic_spec(topic).schema).schema))


SCAN_MAX_KEYS = 1_000_000
"""The most keys a reader reads in one scan (:func:`scan_limit`): about 300 MB of cache."""


def reader_keys(settings: Settings, scan: int = 0) -> Any:
    """The subjects' keys for a reader of whole topics (:func:`streams.stores.keys.subject_keys`,
    ``None`` when encryption is off), with up to ``scan`` keys read in one scan first
    (:meth:`~streams.stores.keys.CassandraSubjectKeys.load_all`; :func:`scan_limit` gives
    ``scan``; 0: none)."""
    from streams.stores.keys import subject_keys

    keys = subject_keys(settings)
    if scan and keys is not None:
        try:
            keys.load_all(scan)
        except BaseException:
            keys.close()
            raise
    return keys


def scan_limit(settings: Settings, counts: Mapping[str, Mapping[int, int]], keys: Any = None) -> int:
    """How many subjects' keys a reader of ``counts`` (``{topic: {partition: messages}}``; an
    export, a rebuild) reads in one scan before it starts
    (:meth:`~streams.stores.keys.CassandraSubjectKeys.load_all`), rather than in ``IN`` reads
    batch by batch: as many as it will read messages with personal fields
    (:func:`personal_messages`; it needs no more keys than that), at most
    :data:`SCAN_MAX_KEYS`; 0 (no scan) when there are none, or when Cassandra already estimates
    more keys than that (``estimated_subjects``). A scan costs Cassandra far less a key than
    point reads (162,667 keys: about 1 s, against 4.6 s of Cassandra's CPU read batch by batch,
    docs/replay.md), so it pays wherever the reader needs most keys anyway, such as a whole
    topic of signups; a scan cut short by the limit (a slice of a large site's log) costs at
    most what the point reads would have, and leaves the rest to them. ``keys``: the reader's
    own key store, asked for the estimate (default: one opened and closed here)."""
    from streams.stores.keys import subject_keys

    limit = min(personal_messages(counts), SCAN_MAX_KEYS)
    store = (keys or subject_keys(settings)) if limit else None
    if store is None:
        return 0
    try:
        estimate = store.estimated_subjects()
    finally:
        if store is not keys:
            store.close()
    return 0 if estimate is not None and estimate > limit else limit


def scan_into(settings: Settings, keys: Any, counts: Mapping[str, Mapping[int, int]]) -> int:
    """Read into ``keys`` (a reader's own key store, ``None`` when encryption is off) the keys
    :func:`scan_limit` allows for ``counts``, in one scan
    (:meth:`~streams.stores.keys.CassandraSubjectKeys.load_all`), the same store answering the
    size estimate. Returns the limit used (0: no scan).

    Raises
    ------
    KeyStoreError
        Cassandra cannot be reached or refuses.
    """
    limit = scan_limit(settings, counts, keys) if keys is not None else 0
    if limit:
        keys.load_all(limit)
    return limit

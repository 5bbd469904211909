"""Reading a topic back, decoded, by offset or by time: the base of replay and of inspection tools.

A replay runs the live code path (the agents' ``process`` and the sinks) over what this reader
yields; it never re-implements an agent.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from streams.contracts.codec import CodecError, codec_for
from streams.contracts.personal import decode_many
from streams.settings import Settings
from streams.contracts.topics import require_bootstrap, topic_spec


READ_BATCH = 1_000
"""Messages fetched per ``consume`` call by :func:`read_topic`."""


@dataclass(frozen=True)
class Position:
    """Where a message sits: topic, partition, offset, and its Kafka timestamp (epoch ms)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def read_topic(settings: Settings, topic: str, *, last: int | None = None,
               start_ms: int | None = None, end_ms: int | None = None,
               timeout_s: float = 10.0, on_error: str = "raise"
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

    Tombstones (null values on compacted topics, e.g. the eraser's) are not events and are
    skipped. Personal fields are decrypted (``PULSE_PERSONAL_DATA_ENCRYPTION``); those of an
    erased subject read as null or empty (``streams.contracts.personal.erased_fields``). All
    partitions are read at once: offset order within a partition, partitions interleaved as
    the broker delivers them. The read stops at the end offsets taken when it began, so it
    terminates on a live topic.
    """
    from confluent_kafka import Consumer, TopicPartition

    from streams.stores.keys import subject_keys

    keys = subject_keys(settings)  # personal fields decrypted; a shredded subject's read as erased
    codec = codec_for(settings, topic_spec(topic).schema, topic, keys=keys)
    consumer = Consumer({"bootstrap.servers": require_bootstrap(settings),
                         "group.id": f"pulse-reader-{uuid.uuid4()}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        md = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        if md.error is not None:
            raise CodecError(f"cannot read {topic}: {md.error}")
        assign, ends = [], {}
        for p in sorted(md.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            start = low if last is None else max(low, high - last)
            if start_ms is not None:
                found = consumer.offsets_for_times([TopicPartition(topic, p, start_ms)], timeout=timeout_s)[0]
                start = max(start, found.offset if found.offset >= 0 else high)
            if start < high:
                assign.append(TopicPartition(topic, p, start))
                ends[p] = high
        if not assign:
            return
        consumer.assign(assign)
        idle_since = time.monotonic()
        while ends:
            # batches of up to READ_BATCH messages (one poll per message costs more than the decode);
            # a short wait per call, so the last partial batch is not held for timeout_s
            batch = consumer.consume(num_messages=READ_BATCH, timeout=0.05)
            if not batch:
                if time.monotonic() - idle_since > timeout_s:
                    break  # nothing more within timeout_s: the broker has no more for us
                continue
            idle_since = time.monotonic()
            wanted: list[tuple[Position, bytes]] = []
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
                if msg.value() is None:
                    continue  # a tombstone on a compacted topic (erasure): a deletion, not an event
                wanted.append((Position(topic, p, offset, ts), msg.value()))
            # the batch decoded together: each message once, its subjects' keys read in one go
            decoded = decode_many(codec, [value for _, value in wanted])
            for (pos, _), record in zip(wanted, decoded):
                if isinstance(record, CodecError):
                    if on_error == "skip":
                        continue
                    raise CodecError(f"{topic}[{pos.partition}]@{pos.offset}: {record}") from None
                yield pos, record
    finally:
        consumer.close()
        if keys is not None:
            keys.close()

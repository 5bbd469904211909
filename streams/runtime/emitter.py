"""Sending a batch's records with aiokafka's batch API instead of one ``send`` per record.

Faust's ``Producer.send`` goes through aiokafka's ``send`` for each message (partitioning,
serialization checks, a future, and a log call): about 20 µs per event in ``pulse bench
backbone``'s profile, and a table write's changelog record goes through Faust's producer buffer
on top of that (a ``FutureMessage``, a queue and a background task per record). :class:`BatchEmitter`
groups a batch's records by partition (for emits, aiokafka's ``DefaultPartitioner``: murmur2 of
the key, as Java clients and Pulse's publisher do; for changelog records, the partition given),
appends them to one ``BatchBuilder`` per partition and hands each to ``send_batch``. The batches
enter the same accumulator as Faust's own sends. Both methods return each batch's delivery
future: the binding acknowledges a batch's events only once they resolve (a failed send raises
there), since neither a producer flush nor Faust's flush before a commit reports a failed batch.
"""
from __future__ import annotations

from typing import Iterable


class BatchEmitter:
    """Sends encoded ``(key, value)`` pairs through the aiokafka producer behind a Faust app."""

    def __init__(self, faust_producer):
        from aiokafka.partitioner import DefaultPartitioner

        self._faust_producer = faust_producer
        self._partitioner = DefaultPartitioner()

    async def send_many(self, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> list:
        """Enqueue every item on ``topic``, each in the partition of its key; returns the delivery
        futures (``asyncio.Future`` of aiokafka's ``RecordMetadata``; one per batch handed over),
        which resolve once the broker has the records (``acks=all``) or fail with the send's
        error."""
        producer = self._faust_producer._ensure_producer()
        parts = sorted(await producer.partitions_for(topic))  # cached metadata after the first call
        by_partition: dict[int, list] = {}
        for key, value in items:
            by_partition.setdefault(self._partitioner(key, parts, parts), []).append((key, value))
        futures: list = []
        for p, pairs in by_partition.items():
            futures.extend(await _send_batches(producer, topic, p, pairs))
        return futures

    async def send_to_partition(self, topic: str, partition: int,
                                items: Iterable[tuple[bytes | None, bytes | None]]) -> list:
        """Enqueue ``items`` on ``partition`` of ``topic`` in their order (a ``None`` value is a
        tombstone); returns the delivery futures as :meth:`send_many` does.

        Raises
        ------
        ValueError
            ``topic`` has no such partition (per the producer's metadata).
        """
        producer = self._faust_producer._ensure_producer()
        parts = await producer.partitions_for(topic)
        if partition not in parts:
            raise ValueError(f"topic {topic!r} has no partition {partition} "
                             f"(partitions: {sorted(parts)})")
        return await _send_batches(producer, topic, partition, items)


async def _send_batches(producer, topic: str, partition: int,
                        items: Iterable[tuple[bytes | None, bytes | None]]) -> list:
    """Append ``items`` to batches of ``partition`` in order, sending each full batch; a record
    larger than an empty batch goes alone through ``send``. Returns the delivery futures."""
    futures = []
    batch = producer.create_batch()
    for key, value in items:
        if batch.append(key=key, value=value, timestamp=None) is None:
            if batch.record_count():
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # larger than a batch
                futures.append(await producer.send(topic, value, key=key, partition=partition))
    if batch.record_count():
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures

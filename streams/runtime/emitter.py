"""Sending a batch's emitted events with aiokafka's batch API instead of one ``send`` per event.

Faust's ``Producer.send`` goes through aiokafka's ``send`` for each message (partitioning,
serialization checks, a future, and a log call): about 20 µs per event in ``pulse bench
backbone``'s profile. :class:`BatchEmitter` groups a batch's events by partition (aiokafka's
``DefaultPartitioner``: murmur2 of the key, as Java clients and Pulse's publisher do), appends
them to one ``BatchBuilder`` per partition and hands each to ``send_batch``. The batches enter
the same accumulator as Faust's own sends. ``send_many`` returns each batch's delivery future:
the binding acknowledges a batch's events only once they resolve (a failed send raises there),
since neither a producer flush nor Faust's flush before a commit reports a failed batch.
"""
from __future__ import annotations

from typing import Iterable


class BatchEmitter:
    """Emits encoded ``(key, value)`` pairs through the aiokafka producer behind a Faust app."""

    def __init__(self, faust_producer):
        from aiokafka.partitioner import DefaultPartitioner

        self._faust_producer = faust_producer
        self._partitioner = DefaultPartitioner()

    async def send_many(self, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> list:
        """Enqueue every item on ``topic``; returns the delivery futures (``asyncio.Future`` of
        aiokafka's ``RecordMetadata``; one per batch handed over), which resolve once the broker
        has the records (``acks=all``) or fail with the send's error."""
        producer = self._faust_producer._ensure_producer()
        parts = sorted(await producer.partitions_for(topic))  # cached metadata after the first call
        batches: dict[int, object] = {}
        futures = []
        for key, value in items:
            p = self._partitioner(key, parts, parts)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                if batch.record_count():
                    futures.append(await producer.send_batch(batch, topic, partition=p))
                    batch = batches[p] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:  # larger than a batch
                    futures.append(await producer.send(topic, value, key=key, partition=p))
        for p, batch in batches.items():
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=p))
        return futures

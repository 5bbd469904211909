"""Sending a batch's emitted events with aiokafka's batch API instead of one ``send`` per event.

Faust's ``Producer.send`` goes through aiokafka's ``send`` for each message (partitioning,
serialization checks, a future, and a log call): about 20 µs per event in ``pulse bench
backbone``'s profile. :class:`BatchEmitter` groups a batch's events by partition (aiokafka's
``DefaultPartitioner``: murmur2 of the key, as Java clients and Pulse's publisher do), appends
them to one ``BatchBuilder`` per partition and hands each to ``send_batch``. The batches enter
the same accumulator as Faust's own sends, so Faust's flush before each offset commit covers them.
"""
from __future__ import annotations

from typing import Iterable


class BatchEmitter:
    """Emits encoded ``(key, value)`` pairs through the aiokafka producer behind a Faust app."""

    def __init__(self, faust_producer):
        from aiokafka.partitioner import DefaultPartitioner

        self._faust_producer = faust_producer
        self._partitioner = DefaultPartitioner()

    async def send_many(self, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Enqueue every item on ``topic``; returns how many. Delivery completes on flush."""
        producer = self._faust_producer._ensure_producer()
        parts = sorted(await producer.partitions_for(topic))  # cached metadata after the first call
        batches: dict[int, object] = {}
        n = 0
        for key, value in items:
            p = self._partitioner(key, parts, parts)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                if batch.record_count():
                    await producer.send_batch(batch, topic, partition=p)
                    batch = batches[p] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    await producer.send(topic, value, key=key, partition=p)  # larger than a batch
            n += 1
        for p, batch in batches.items():
            if batch.record_count():
                await producer.send_batch(batch, topic, partition=p)
        return n

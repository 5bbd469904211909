"""BatchEmitter (streams.runtime.emitter): batches go to aiokafka closed, so they are sent at once."""
import asyncio

from streams.runtime.emitter import _send_batches


class RecordingProducer:
    """aiokafka's own batches and accumulator (a real, never started producer, linger 5 ms as in
    the worker); ``send_batch`` queues into the real accumulator without a broker."""

    def __init__(self):
        from aiokafka import AIOKafkaProducer

        self.real = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", linger_ms=5)
        self.queued = []

    def create_batch(self):
        return self.real.create_batch()

    async def send_batch(self, batch, topic, *, partition):
        from aiokafka.structs import TopicPartition

        tp = TopicPartition(topic, partition)
        fut = await self.real._message_accumulator.add_batch(batch, tp, 1.0)
        self.queued.append(self.real._message_accumulator._batches[tp][-1])
        return fut

    async def send(self, topic, value, key=None, partition=None):
        raise AssertionError("every record fits a batch here")


def test_batches_are_handed_over_closed_so_they_do_not_linger():
    """A batch handed to aiokafka still open lingers ``linger_ms`` before the sender takes it;
    the binding awaits up to three sends in turn per stateful batch (emits, state, positions),
    so each linger was on the batch's critical path. Closed, aiokafka's accumulator reports no
    linger left (``MessageBatch.remaining_linger``) and the records are all there, in order."""

    async def run():
        producer = RecordingProducer()
        items = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]
        futures = await _send_batches(producer, "t", 0, items)
        assert len(futures) == len(producer.queued) == 1
        batch = producer.queued[0]
        assert batch.remaining_linger() is None
        assert batch.record_count == 50

    asyncio.run(run())

"""Pulse's Kafka transport for Faust: faust-streaming's aiokafka driver with a leaner drain loop.

Profiling a pass-through agent (``pulse bench backbone``) showed that faust-streaming's
``Consumer._drain_messages`` awaits ``Service.wait_first(callback(message), suspend_flow.wait())``
for *every* message: two tasks, an ``asyncio.wait`` and about three event-loop iterations per
message, more than half of a worker's CPU time at 10k events/s. :class:`PulseConsumer` runs the
same loop but awaits the callback directly while the flow is not suspended, and falls back to
Faust's ``wait_first`` only during a suspension (a rebalance), so the semantics are unchanged:
read offsets, gap tracking and periodic commits are as in faust-streaming 0.15.3.

:class:`PulseProducer` is Faust's aiokafka producer made idempotent (``enable_idempotence``,
``acks=all``), like Pulse's publisher: a send retried after a broker failure or a leader change
is written once and in order, which a replicated topic with ``min.insync.replicas`` 2 needs to
keep every event exactly where a run without the fault puts it (docs/clusters.md).
"""
from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka


class PulseConsumer(faust_aiokafka.Consumer):
    """faust-streaming's aiokafka consumer with a drain loop that skips ``wait_first`` per message."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspended = self.suspend_flow.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        sleep = asyncio.sleep
        yield_every, since_yield = 100, 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in ait:
                    since_yield += 1
                    if since_yield > yield_every:
                        await sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # already delivered (Faust logs these as DROPPED at dev level)
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await callback(message)
                    set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


def raw_topic_class():
    """A ``faust.Topic`` subclass whose ``decode`` wraps the message's bytes in an event as they are.

    Faust compiles a topic's decode from its schema: key and value go through the serializer
    registry even for the ``raw`` codec. Pulse's agents decode (and dead-letter) themselves, so
    their channels skip that step.
    """
    import faust

    class RawTopic(faust.Topic):
        def _compile_decode(self) -> None:
            create_event = self.app.create_event

            async def decode(message, *, propagate: bool = False):
                return create_event(message.key, message.value, message.headers, message)

            self.decode = decode

    return RawTopic


class PulseProducer(faust_aiokafka.Producer):
    """faust-streaming's aiokafka producer with ``acks=all`` and idempotence always on.

    Faust turns idempotence on only for transactional apps (``processing_guarantee=exactly_once``);
    Pulse keeps at-least-once processing with idempotent sinks, and wants the producer's own
    retries (after ``NOT_LEADER_OR_FOLLOWER``, a lost connection, ``NOT_ENOUGH_REPLICAS``) to
    neither duplicate nor reorder a partition's events. aiokafka's batch API
    (:mod:`streams.runtime.emitter`) gets producer ids and sequence numbers the same way.
    """

    def _settings_extra(self):
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class PulseTransport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`PulseConsumer` and :class:`PulseProducer`."""

    Consumer = PulseConsumer
    Producer = PulseProducer


def pulse_app_class():
    """A ``faust.App`` subclass whose transports are :class:`PulseTransport`."""
    import faust

    class PulseApp(faust.App):
        def _new_transport(self):
            return PulseTransport(self.conf.broker_consumer, self)

        def _new_producer_transport(self):
            return PulseTransport(self.conf.broker_producer, self)

    return PulseApp

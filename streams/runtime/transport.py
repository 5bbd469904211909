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

:func:`pulse_app_class`'s flow control hands back the events faust-streaming's recovery throws
out of the channel queues when it resumes, and :meth:`PulseConsumer.redeliver` delivers their
partitions again from the committed offset (:func:`recovering_flow_control_class`).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

#: seconds a partition's delivered events may stay uncommitted, with none of them in flight, before
#: the consumer's commit watchdog logs the partition's offset bookkeeping and rewinds it (the
#: default of ``PULSE_COMMIT_STALL_S``)
COMMIT_STALL_S = 30.0
#: rewinds of one partition the watchdog makes per assignment before it only logs
MAX_REWINDS = 3


class PulseConsumer(faust_aiokafka.Consumer):
    """faust-streaming's aiokafka consumer with a drain loop that skips ``wait_first`` per message,
    and a commit watchdog.

    The watchdog: every 10 s (a third of ``PULSE_COMMIT_STALL_S`` when that is shorter), for each
    assigned source partition, it compares the last offset delivered to the agents with the last
    offset the broker accepted as committed (:meth:`_check_commits`). A partition is stuck when
    its delivered events are all acknowledged, none is in flight (queued in a channel or being
    processed), and the committed offset does not cover them (a commit stall: Faust's bookkeeping lost track), or when nothing was
    delivered since it was assigned although its log has records past the committed offset (a
    fetch stall, faust-streaming#629). Stuck with no commit accepted for ``PULSE_COMMIT_STALL_S``
    (:data:`COMMIT_STALL_S`), the group's lag would stay up while the agent sits idle until a
    restart (seen after a worker was SIGKILLed and replaced, ``docs/testing.md``). The watchdog
    logs the bookkeeping (:meth:`commit_state`) as a warning and *rewinds* the partition: the
    drain loop, between two fetches, seeks it back to the broker's committed offset and resets
    the bookkeeping to it, so the events since are delivered again. That is safe under the agent
    contract: a stateful agent's positions make it skip what it applied, a stateless agent's
    outputs are idempotent (``docs/agent-contract.md``). A partition with no committed offset
    goes back to its first offset, where ``auto_offset_reset=earliest`` started it. At most
    :data:`MAX_REWINDS` per partition and assignment; after that it only logs.
    """

    _accepted: dict
    _stalled_since: dict

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._accepted = {}       # TP -> offset the broker last accepted from this consumer
        self._delivered = {}      # TP -> last offset handed to the agents
        self._first_delivered = {}  # TP -> first offset handed over since assigned or rewound
        self._stalled_since = {}  # TP -> (stuck since, logged?, committed offset then)
        self._rewinds = {}        # TP -> offset: rewinds the watchdog or an agent asked for
        self._rewound = {}        # TP -> rewinds made since the partition was assigned
        #: (topic, partition) -> the partition's first offset, read at its last rewind
        self.log_starts: dict[tuple[str, int], int] = {}
        super().__init__(*args, **kwargs)

    def rewind_to(self, tp, offset: int) -> bool:
        """Ask the drain loop to seek assigned partition ``tp`` back to ``offset`` and deliver
        its events from there again (an agent found offsets below a message it was handed
        missing: ``AgentRunner.watch_gaps``); a pending rewind to an earlier offset wins. An
        offset below the partition's log start goes to the log start, recorded in
        :attr:`log_starts`. False when ``tp`` is not assigned to this worker (its new owner
        reads from the committed offset anyway)."""
        if tp not in self.assignment():
            return False
        pending = self._rewinds.get(tp, offset)
        self._rewinds[tp] = None if pending is None else min(pending, offset)
        return True

    def redeliver(self, messages) -> None:
        """Have the drain loop deliver again, from the committed offset, every assigned source
        partition of ``messages``: events that were delivered into a channel queue and then
        thrown away unacknowledged (:func:`recovering_flow_control_class`). The same rewind as the
        watchdog's (:meth:`_rewind`): the broker's committed offset, or the first offset when
        nothing is committed; re-delivered events the agents applied already are skipped by their
        positions or rewritten identically (docs/agent-contract.md)."""
        assigned = self.assignment()
        changelogs = self.app.tables.changelog_topics
        counts: dict = {}
        for m in messages:
            if m.tp in assigned and m.tp.topic not in changelogs:
                counts[m.tp] = counts.get(m.tp, 0) + 1
        for tp in counts:  # None (the first offset) or the lowest offset asked for wins
            accepted = self._accepted.get(tp)
            pending = self._rewinds.get(tp, accepted)
            self._rewinds[tp] = None if pending is None or accepted is None else min(pending, accepted)
        if counts:
            self.log.warning("flow control dropped %s buffered events when it resumed; delivering "
                             "%s again from their committed offsets", sum(counts.values()),
                             sorted(f"{tp.topic}/{tp.partition}" for tp in counts))

    def log_start(self, topic: str, partition: int) -> int | None:
        """The partition's first offset as read at its last rewind, or None."""
        return self.log_starts.get((topic, partition))

    def first_delivered(self, topic: str, partition: int) -> int | None:
        """The first offset handed to the agents since the partition was assigned or rewound,
        or None."""
        # keyed by Faust's TP, a named tuple: a plain (topic, partition) finds it
        return self._first_delivered.get((topic, partition))

    async def on_partitions_revoked(self, revoked) -> None:
        for tp in revoked:
            self._accepted.pop(tp, None)
            self._delivered.pop(tp, None)
            self._first_delivered.pop(tp, None)
            self._stalled_since.pop(tp, None)
            self._rewinds.pop(tp, None)
            self._rewound.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _rewind(self) -> None:
        """Seek each partition the watchdog or an agent asked for back to its offset, and reset
        Faust's commit bookkeeping of it to that offset (run by the drain loop between two
        fetches)."""
        rewinds, self._rewinds = self._rewinds, {}
        assigned = self.assignment()
        rewinds = {tp: offset for tp, offset in rewinds.items() if tp in assigned}
        if not rewinds:
            return
        from aiokafka import TopicPartition

        to_start = [tp for tp, offset in rewinds.items() if offset is None]
        # None (nothing committed yet): where auto_offset_reset=earliest started; an offset below
        # the log start (deleted by retention): the log start
        try:
            firsts = await self._thread.earliest_offsets(
                *(TopicPartition(tp.topic, tp.partition) for tp in rewinds))
        except Exception as exc:  # noqa: BLE001 - the broker did not answer: ask again next fetch
            for tp, offset in rewinds.items():
                self._rewinds.setdefault(tp, offset)
            self.log.warning("reading the log starts for a rewind of %s failed (%r); retrying",
                             sorted(f"{tp.topic}/{tp.partition}" for tp in rewinds), exc)
            return
        for tp, offset in rewinds.items():
            first = firsts.get(TopicPartition(tp.topic, tp.partition)) or 0
            self.log_starts[(tp.topic, tp.partition)] = first
            rewinds[tp] = first if offset is None else max(offset, first)
        # an explicit offset, not aiokafka's seek_to_beginning: that leaves the partition without
        # a valid position until its reset completes, and Faust's livelock check then asserts
        await self.seek_wait(rewinds)
        for tp, offset in rewinds.items():
            self._read_offset[tp] = offset
            self._committed_offset[tp] = None if tp in to_start else offset
            self._acked[tp].clear()
            self._acked_index[tp].clear()
            self._gap.pop(tp, None)
            self._delivered.pop(tp, None)
            self._first_delivered.pop(tp, None)
            self._stalled_since.pop(tp, None)
            self._rewound[tp] = self._rewound.get(tp, 0) + 1
        self.log.warning("rewound %s: their events since the committed offset are delivered again",
                         {f"{tp.topic}/{tp.partition}": o for tp, o in rewinds.items()})

    async def _commit(self, offsets) -> bool:
        ok = await super()._commit(offsets)
        if ok:
            self._accepted.update(offsets)
        else:
            self.log.warning("commit of %s was not accepted (Faust keeps the offsets as committed)",
                             {f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()})
        return ok

    async def perform_seek(self) -> None:
        await super().perform_seek()
        for tp, offset in self._committed_offset.items():
            if offset is not None:
                self._accepted[tp] = offset

    def _unacked_before_first_commit(self, tp) -> bool:
        """Whether ``tp`` has no committed offset yet and the first offset delivered since it was
        assigned (or rewound) is not acknowledged while later ones are."""
        if self._committed_offset.get(tp) is not None:
            return False
        first, acked = self._first_delivered.get(tp), self._acked.get(tp)
        return first is not None and bool(acked) and min(acked) > first

    def _new_offset(self, tp):
        """Faust's next offset to commit for ``tp``, but ``None`` (not yet) while
        :meth:`_unacked_before_first_commit`: faust-streaming refuses to commit across
        unacknowledged offsets only after a partition's first commit, and before it would commit
        from the lowest acknowledged offset on, past events still in flight or lost."""
        if self._unacked_before_first_commit(tp):
            return None
        return super()._new_offset(tp)

    def commit_state(self, tp) -> dict:
        """The commit bookkeeping of partition ``tp``: ``committed`` (what Faust believes is
        committed), ``accepted`` (what the broker last accepted from this worker, or the committed
        offset read at the last seek), ``read`` (Faust's read offset), ``delivered`` (the last
        offset handed to the agents), ``acked`` (count, lowest, highest acknowledged but
        not yet committed), ``gaps`` (offset ranges Faust counts as acknowledged because they were
        never delivered), ``in_flight`` (delivered, not yet acknowledged: offsets), ``active`` and
        ``paused``."""
        acked = list(self._acked.get(tp) or ())
        in_flight = sorted(m.offset for m in list(self._unacked_messages)
                           if m.tp == tp and not m.acked)
        return {
            "committed": self._committed_offset.get(tp),
            "accepted": self._accepted.get(tp),
            "read": self._read_offset.get(tp),
            "delivered": self._delivered.get(tp),
            "acked": [len(acked), min(acked, default=None), max(acked, default=None)],
            "gaps": [(i.begin, i.end) for i in sorted(self._gap.get(tp) or ())][:5],
            "in_flight": in_flight[:5] + ([f"... {len(in_flight)} in all"] if len(in_flight) > 5 else []),
            "active": tp in (self._active_partitions or ()),
            "paused": tp in self._paused_partitions,
            "queued": self._queued(tp),
        }

    def _queued(self, tp) -> list:
        """Events waiting in each channel Faust's conductor routes ``tp`` to (channel id: size)."""
        try:
            index = self.app.topics._tp_index
            return [(id(chan) % 100_000, chan.queue.qsize()) for chan in index.get(tp, ())]
        except Exception:  # noqa: BLE001 - best effort, for the diagnosis
            return []

    @Service.task
    async def _commit_watchdog(self) -> None:  # pragma: no cover - needs a broker
        stall_s = getattr(self.app, "pulse_commit_stall_s", COMMIT_STALL_S)
        tick = min(10.0, max(1.0, stall_s / 3))
        await self.sleep(tick)
        async for _ in self.itertimer(tick, name="commit_watchdog"):
            if self.app.rebalancing:
                continue
            try:
                idle = self._idle_partitions()
                lagging = await self._lagging(idle) if idle else set()
                if not self.app.rebalancing:
                    self._check_commits(time.monotonic(), stall_s, lagging)
            except Exception:  # noqa: BLE001 - a diagnostic must never stop the consumer
                self.log.exception("commit watchdog failed")

    def _idle_partitions(self) -> list:
        """Assigned source partitions that Faust fetches (active, not paused, not held back by a
        full stream buffer) and to which nothing was delivered since they were assigned or
        rewound."""
        changelogs = self.app.tables.changelog_topics
        active = self._active_partitions or set()
        return [tp for tp in self.assignment()
                if tp.topic not in changelogs and tp in active and tp not in self._paused_partitions
                and tp not in self._buffered_partitions and self._delivered.get(tp) is None]

    async def _lagging(self, tps) -> set:
        """Those of ``tps`` whose log has records past the committed offset (past the log start
        when nothing is committed): two ListOffsets requests."""
        from aiokafka import TopicPartition

        aio = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
        ends = await self._thread.highwaters(*aio)
        uncommitted = [a for a, tp in aio.items() if self._accepted.get(tp) is None]
        starts = await self._thread.earliest_offsets(*uncommitted) if uncommitted else {}
        lagging = set()
        for a, tp in aio.items():
            base = self._accepted.get(tp)
            if base is None:
                base = starts.get(a) or 0
            end = ends.get(a)
            if end is not None and end > base:
                lagging.add(tp)
        return lagging

    def _check_commits(self, now: float, stall_s: float = COMMIT_STALL_S,
                       lagging: set | frozenset = frozenset()) -> None:
        """One watchdog tick. A partition is stuck when events were delivered, none is in flight
        and the broker's committed offset does not cover the last (a *commit* stall), or when
        nothing was delivered since it was assigned although its log has records past the
        committed offset (``lagging``, from :meth:`_lagging`: a *fetch* stall). Stuck with no
        commit accepted for ``stall_s``, it is logged once and queued for :meth:`_rewind`."""
        changelogs = self.app.tables.changelog_topics
        dumped = False
        for tp in self.assignment():
            if tp.topic in changelogs:
                continue
            last, accepted = self._delivered.get(tp), self._accepted.get(tp)
            if last is None:
                stuck = tp in lagging
            else:
                in_flight = any(m.tp == tp and not m.acked for m in list(self._unacked_messages))
                stuck = not in_flight and (accepted is None or accepted <= last)
            if not stuck:
                self._stalled_since.pop(tp, None)
                continue
            since, logged, mark = self._stalled_since.get(tp) or (now, False, accepted)
            if mark != accepted:  # a commit went through meanwhile: progress, start again
                since, logged, mark = now, False, accepted
            self._stalled_since[tp] = (since, logged, mark)
            if logged or now - since < stall_s:
                continue
            self._stalled_since[tp] = (since, True, mark)
            done = self._rewound.get(tp, 0)
            if done < MAX_REWINDS:
                self._rewinds[tp] = accepted
                target = "the first offset" if accepted is None else f"offset {accepted}"
                action = f"rewinding to {target} ({done + 1} of {MAX_REWINDS})"
            else:
                action = f"not rewinding ({done} rewinds already): restart the worker"
            what = ("commit stalled for %.0f s on %s/%s: every delivered event is acknowledged but "
                    "the broker's committed offset does not cover them" if last is not None else
                    "fetch stalled for %.0f s on %s/%s: its log has records past the committed "
                    "offset but none was delivered since the partition was assigned")
            self.log.warning(what + "; %s; bookkeeping %s", now - since, tp.topic, tp.partition,
                             action, self.commit_state(tp))
            if not dumped:
                dumped = True
                try:  # where each agent is waiting: the other half of the diagnosis
                    self.log.warning("agents at the stall:\n%s", self.app.agents.human_tracebacks())
                except Exception:  # noqa: BLE001 - best effort
                    pass

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspended = self.suspend_flow.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_delivered = self._delivered.__setitem__
        first_delivered = self._first_delivered
        track = self._unacked_messages.add
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        sleep = asyncio.sleep
        yield_every, since_yield = 100, 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if self._rewinds:
                    try:
                        await self._rewind()
                    except Exception:  # noqa: BLE001 - a failed rewind leaves the stall logged
                        self.log.exception("rewinding stalled partitions failed")
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                rewinds = self._rewinds
                async for tp, message in ait:
                    if tp in rewinds:
                        # fetched before the seek, and fetched again after it; the other
                        # partitions' messages of this fetch are delivered (breaking out of the
                        # fetch here would lose them: the client's positions are past them)
                        continue
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
                    if tp not in first_delivered:
                        first_delivered[tp] = offset
                    # in flight from here (queued in a channel or processed) until acknowledged:
                    # Faust's stream iteration would track it, but the binding reads queues itself
                    track(message)
                    if suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await callback(message)
                    set_read_offset(tp, offset)
                    set_delivered(tp, offset)
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


def buffered_messages(queues) -> list:
    """The unacknowledged messages of the events waiting in ``queues`` (Faust channel queues),
    in queue order."""
    out = []
    for queue in list(queues):
        for event in list(getattr(queue, "_queue", ())):
            message = getattr(event, "message", None)
            if message is not None and not message.acked:
                out.append(message)
    return out


def recovering_flow_control_class():
    """A ``mode`` ``FlowControlEvent`` whose :meth:`resume` reports the events it throws away.

    ``FlowControlEvent.resume()`` empties every channel queue (Faust makes them with
    ``clear_on_resume``). faust-streaming 0.15.3's recovery calls it *after* it resumed the
    source partitions and sought them to their committed offsets (``Recovery.on_recovery_completed``
    and ``_resume_streams``), while the fetcher is already running: events fetched during that
    seek are in the queues, and resume drops them, unacknowledged, with the consumer's position
    past them. Nothing fetched them again; the partition's commits stopped at the last
    acknowledged offset until the commit watchdog's rewind 36 s later, or for good for a
    stateful agent's later events. Seen in the delivery kill tests' restarted workers
    (docs/testing.md). ``on_cleared(messages)`` gets the dropped messages, before the queues are
    emptied."""
    from mode.utils.queues import FlowControlEvent

    class RecoveringFlowControl(FlowControlEvent):
        on_cleared = None

        def resume(self) -> None:
            dropped = buffered_messages(self._queues) if self._queues else []
            super().resume()
            if dropped and self.on_cleared is not None:
                self.on_cleared(dropped)

    return RecoveringFlowControl


def pulse_app_class():
    """A ``faust.App`` subclass whose transports are :class:`PulseTransport` and whose flow
    control hands the events it drops on resume back to the consumer
    (:func:`recovering_flow_control_class`, :meth:`PulseConsumer.redeliver`)."""
    import faust
    from mode.utils.objects import cached_property

    class PulseApp(faust.App):
        def _new_transport(self):
            return PulseTransport(self.conf.broker_consumer, self)

        def _new_producer_transport(self):
            return PulseTransport(self.conf.broker_producer, self)

        @cached_property
        def flow_control(self):
            control = recovering_flow_control_class()(loop=self.loop)
            control.on_cleared = self._redeliver
            return control

        def _redeliver(self, messages) -> None:
            redeliver = getattr(self.consumer, "redeliver", None)
            if redeliver is not None:
                redeliver(messages)

    return PulseApp

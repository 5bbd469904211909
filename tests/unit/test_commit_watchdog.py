"""Tier 1: the consumer's commit watchdog (``streams.runtime.transport.PulseConsumer``), on a
stand-in for the consumer's bookkeeping (pure logic; the worker tests run the real consumer)."""
from __future__ import annotations

import logging
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP
from intervaltree import Interval, IntervalTree

from streams.runtime.transport import COMMIT_STALL_S, PulseConsumer


class _Message:
    def __init__(self, tp, offset, acked):
        self.tp, self.offset, self.acked = tp, offset, acked


def _consumer(tps, changelogs=()):
    log = logging.getLogger("test.watchdog")
    c = SimpleNamespace(
        app=SimpleNamespace(rebalancing=False, tables=SimpleNamespace(changelog_topics=set(changelogs)),
                            agents=SimpleNamespace(human_tracebacks=lambda: "probe: queue.get()")),
        assignment=lambda: set(tps), log=log, _accepted={}, _delivered={}, _stalled_since={},
        _rewinds={}, _rewound={}, _first_delivered={}, log_starts={},
        _unacked_messages=set(), _committed_offset={}, _read_offset={}, _acked=defaultdict(list),
        _gap={}, _active_partitions=set(tps), _paused_partitions=set(), _buffered_partitions=set())
    c.commit_state = lambda tp: PulseConsumer.commit_state(c, tp)
    c._queued = lambda tp: PulseConsumer._queued(c, tp)
    c.check = lambda now, lagging=frozenset(): PulseConsumer._check_commits(c, now, COMMIT_STALL_S,
                                                                            lagging)
    return c


def test_a_partition_whose_acknowledged_events_are_never_committed_is_reported_once(caplog):
    tp, other = TP("uploads", 0), TP("uploads", 1)
    c = _consumer([tp, other])
    c._delivered.update({tp: 41, other: 7})
    c._accepted.update({tp: 30, other: 8})        # `other` is committed past what it delivered
    c._committed_offset[tp] = 42                  # Faust believes 42 is committed; the broker has 30
    with caplog.at_level(logging.WARNING, logger="test.watchdog"):
        c.check(100.0)
        c.check(100.0 + COMMIT_STALL_S - 1)
        assert not caplog.records                  # not stalled for long enough yet
        c.check(100.0 + COMMIT_STALL_S)
        c.check(100.0 + 2 * COMMIT_STALL_S)
    (record,) = [r for r in caplog.records if "stalled" in r.getMessage()]                     # once per stall, and only for uploads/0
    text = record.getMessage()
    assert "uploads/0" in text and "'committed': 42" in text and "'accepted': 30" in text
    assert "'delivered': 41" in text and "rewinding to offset 30 (1 of 3)" in text
    assert c._rewinds == {tp: 30}                  # for the drain loop, between two fetches


def test_events_in_flight_or_covered_by_a_commit_are_not_a_stall(caplog):
    tp, changelog = TP("uploads", 0), TP("app-state-changelog", 0)
    c = _consumer([tp, changelog], changelogs=["app-state-changelog"])
    c._delivered.update({tp: 41, changelog: 5})
    c._accepted[tp] = 30
    c._unacked_messages.add(_Message(tp, 35, acked=False))   # the agent is still on it
    with caplog.at_level(logging.WARNING, logger="test.watchdog"):
        for t in range(0, 200, 10):
            c.check(float(t))
        assert not caplog.records
        c._unacked_messages.clear()
        c._accepted[tp] = 42                       # committed past the last delivered offset
        for t in range(200, 400, 10):
            c.check(float(t))
    assert not caplog.records and c._stalled_since == {}


def test_a_stalled_partition_is_rewound_to_its_committed_offset_at_most_three_times(caplog):
    import asyncio

    from streams.runtime.transport import MAX_REWINDS

    tp, fresh = TP("uploads", 0), TP("uploads", 1)
    c = _consumer([tp, fresh])
    seeks = []

    async def seek_wait(offsets):
        seeks.append(dict(offsets))

    async def earliest_offsets(*tps):
        assert all(type(t).__name__ == "TopicPartition" for t in tps)  # aiokafka's, not Faust's
        return {t: 5 for t in tps}                # the log starts at 5 (retention)

    c.seek_wait, c._thread = seek_wait, SimpleNamespace(earliest_offsets=earliest_offsets)
    c._acked_index = defaultdict(set)
    rewind = lambda: asyncio.run(PulseConsumer._rewind(c))  # noqa: E731
    t = 0.0
    for n in range(MAX_REWINDS + 1):
        c._delivered.update({tp: 41, fresh: 3})
        c._accepted[tp] = 30                  # `fresh` has no committed offset at all
        c._acked[tp].extend([39, 40, 41])
        c._acked_index[tp].update([39, 40, 41])
        c._gap[tp] = IntervalTree([Interval(35, 37)])
        with caplog.at_level(logging.WARNING, logger="test.watchdog"):
            c.check(t)
            c.check(t + COMMIT_STALL_S)
        t += 2 * COMMIT_STALL_S
        if n < MAX_REWINDS:
            assert c._rewinds == {tp: 30, fresh: None}
            rewind()
            assert seeks[-1] == {tp: 30, fresh: 5}      # an explicit offset for the fresh one too
            assert c._read_offset[tp] == c._committed_offset[tp] == 30
            assert c._read_offset[fresh] == 5 and c._committed_offset[fresh] is None
            assert c._acked[tp] == [] and not c._acked_index[tp] and tp not in c._gap
            assert tp not in c._delivered and c._stalled_since == {}
        else:
            assert c._rewinds == {}           # three rewinds: from now on it only logs
    assert c._rewound == {tp: MAX_REWINDS, fresh: MAX_REWINDS}
    messages = [r.getMessage() for r in caplog.records if "commit stalled" in r.getMessage()]
    assert any("uploads/0" in m and "rewinding to offset 30 (1 of 3)" in m for m in messages)
    assert any("uploads/1" in m and "rewinding to the first offset (3 of 3)" in m for m in messages)
    assert sum("restart the worker" in m for m in messages) == 2 and len(messages) == 8


def test_an_agent_asks_for_a_partition_to_be_delivered_again_from_an_offset():
    """``rewind_to``: an agent found offsets missing below a message (``AgentRunner.watch_gaps``).
    The earliest pending target wins, a partition not assigned here is refused, and an offset
    deleted by retention goes to the log start, which the agent then reads in ``log_starts``."""
    import asyncio

    tp, gone, other = TP("uploads", 0), TP("uploads", 1), TP("uploads", 2)
    c = _consumer([tp, gone])
    seeks = []

    async def seek_wait(offsets):
        seeks.append(dict(offsets))

    async def earliest_offsets(*tps):
        return {t: 0 if t.partition == 0 else 50 for t in tps}

    c.seek_wait, c._thread = seek_wait, SimpleNamespace(earliest_offsets=earliest_offsets)
    c._acked_index = defaultdict(set)
    assert PulseConsumer.rewind_to(c, tp, 12) and PulseConsumer.rewind_to(c, tp, 9)
    assert PulseConsumer.rewind_to(c, tp, 15)
    assert PulseConsumer.rewind_to(c, gone, 20)
    assert not PulseConsumer.rewind_to(c, other, 3)
    assert c._rewinds == {tp: 9, gone: 20}
    c._rewinds[gone] = None  # the watchdog's "first offset" beats any agent's target
    PulseConsumer.rewind_to(c, gone, 20)
    assert c._rewinds[gone] is None
    c._rewinds[gone] = 20

    async def unreachable(*tps):
        raise ConnectionError("broker down")

    c._thread = SimpleNamespace(earliest_offsets=unreachable)
    asyncio.run(PulseConsumer._rewind(c))      # the log starts cannot be read: asked again later
    assert seeks == [] and c._rewinds == {tp: 9, gone: 20}
    c._thread = SimpleNamespace(earliest_offsets=earliest_offsets)
    asyncio.run(PulseConsumer._rewind(c))
    assert seeks == [{tp: 9, gone: 50}]
    assert c._read_offset == {tp: 9, gone: 50} and c._committed_offset == {tp: 9, gone: 50}
    assert c.log_starts == {("uploads", 0): 0, ("uploads", 1): 50}
    # what the agents' gap check asks (streams.runtime.binding.ConsumerOffsets)
    assert PulseConsumer.log_start(c, "uploads", 1) == 50
    assert PulseConsumer.log_start(c, "uploads", 2) is None
    c._first_delivered[tp] = 9
    assert PulseConsumer.first_delivered(c, "uploads", 0) == 9
    assert PulseConsumer.first_delivered(c, "uploads", 1) is None
    assert c._rewinds == {}


def test_a_partition_with_records_but_nothing_delivered_is_a_fetch_stall(caplog):
    """faust-streaming#629: a partition assigned but never fetched. The watchdog asks the broker
    for the log's end (and start, with nothing committed) only for partitions that got nothing."""
    import asyncio

    tp, idle, paused, fed = (TP("uploads", p) for p in range(4))
    c = _consumer([tp, idle, paused, fed])
    c._paused_partitions.add(paused)
    c._delivered[fed] = 9
    c._accepted.update({tp: 30, idle: 12, fed: 10})   # `fed` is committed past what it got
    asked = []

    async def highwaters(*tps):
        asked.append(("end", sorted((t.topic, t.partition) for t in tps)))
        return {t: {0: 45, 1: 12, 2: 99}[t.partition] for t in tps}

    async def earliest_offsets(*tps):
        asked.append(("start", tps))
        return {}

    c._thread = SimpleNamespace(highwaters=highwaters, earliest_offsets=earliest_offsets)
    candidates = PulseConsumer._idle_partitions(c)
    assert sorted(candidates) == [tp, idle]        # not the paused one, not the one fed
    lagging = asyncio.run(PulseConsumer._lagging(c, candidates))
    assert lagging == {tp} and asked == [("end", [("uploads", 0), ("uploads", 1)])]
    with caplog.at_level(logging.WARNING, logger="test.watchdog"):
        c.check(0.0, lagging)
        c.check(COMMIT_STALL_S, lagging)
    (record,) = [r for r in caplog.records if "stalled" in r.getMessage()]
    assert "fetch stalled" in record.getMessage() and "uploads/0" in record.getMessage()
    assert c._rewinds == {tp: 30}


def test_a_commit_going_through_restarts_the_stall_clock(caplog):
    tp = TP("uploads", 0)
    c = _consumer([tp])
    c._delivered[tp], c._accepted[tp] = 50, 10
    with caplog.at_level(logging.WARNING, logger="test.watchdog"):
        c.check(0.0)
        c._accepted[tp] = 20                      # progress, though still behind
        c.check(COMMIT_STALL_S)
        assert not caplog.records
        c.check(2 * COMMIT_STALL_S)
    stalls = [r for r in caplog.records if "stalled" in r.getMessage()]
    dumps = [r for r in caplog.records if r.getMessage().startswith("agents at the stall")]
    assert len(stalls) == 1 and c._rewinds == {tp: 20}
    assert len(dumps) == 1 and "probe: queue.get()" in dumps[0].getMessage()


def test_before_a_partitions_first_commit_the_first_delivered_offset_must_be_acknowledged():
    """faust-streaming commits from the lowest acknowledged offset on while a partition has no
    committed offset: a lost or slow first batch would be committed past. PulseConsumer waits."""
    tp = TP("uploads", 0)
    c = _consumer([tp])
    c._first_delivered = {tp: 10}
    c._committed_offset[tp] = None
    c._acked[tp].extend([12, 13])
    check = lambda: PulseConsumer._unacked_before_first_commit(c, tp)  # noqa: E731
    assert check()                                  # 10 and 11 delivered, not acknowledged
    c._acked[tp][:0] = [10, 11]
    assert not check()                              # from the first delivered offset on
    c._acked[tp][:] = [12, 13]
    c._committed_offset[tp] = 12                    # after a commit Faust's own gap check rules
    assert not check()
    c._committed_offset[tp], c._first_delivered = None, {}
    assert not check()                              # nothing delivered since assignment


def test_events_flow_control_drops_on_resume_are_handed_back_before_the_queues_empty():
    """faust-streaming's recovery resumes flow control after it sought the source partitions,
    and resume empties the channel queues: what the fetcher put there meanwhile was lost."""
    import asyncio

    from mode.utils.queues import FlowControlQueue

    from streams.runtime.transport import recovering_flow_control_class

    async def go():
        control = recovering_flow_control_class()(loop=asyncio.get_running_loop())
        handed = []
        control.on_cleared = handed.append
        queue = FlowControlQueue(flow_control=control, clear_on_resume=True)
        tp = TP("uploads", 1)
        waiting = [_Message(tp, 70, acked=False), _Message(tp, 71, acked=False),
                   _Message(tp, 69, acked=True)]   # applied already: nothing to deliver again
        for m in waiting:
            queue.put_nowait(SimpleNamespace(message=m))
        control.resume()
        assert queue.qsize() == 0                  # Faust's behaviour is kept: the queue is emptied
        assert [[m.offset for m in batch] for batch in handed] == [[70, 71]]
        control.resume()                           # nothing queued: nothing handed back
        assert len(handed) == 1

    asyncio.run(go())


def test_dropped_events_partitions_are_rewound_to_their_committed_offsets(caplog):
    source, fresh, changelog, gone = (TP("uploads", 0), TP("uploads", 1), TP("app-state-changelog", 0),
                                      TP("uploads", 2))
    c = _consumer([source, fresh, changelog], changelogs=["app-state-changelog"])
    c._accepted[source] = 70                       # committed by the worker before it was replaced
    dropped = [_Message(source, 80, False), _Message(source, 81, False), _Message(fresh, 3, False),
               _Message(changelog, 5, False), _Message(gone, 9, False)]
    with caplog.at_level(logging.WARNING, logger="test.watchdog"):
        PulseConsumer.redeliver(c, dropped)
    # the committed offset, or the first offset (None) where nothing is committed; a changelog and
    # a partition no longer assigned here are left alone
    assert c._rewinds == {source: 70, fresh: None}
    (record,) = caplog.records
    assert "dropped 3 buffered events" in record.getMessage()
    c._rewinds[source] = 60                        # an earlier rewind already asked for wins
    PulseConsumer.redeliver(c, [_Message(source, 90, False)])
    assert c._rewinds[source] == 60

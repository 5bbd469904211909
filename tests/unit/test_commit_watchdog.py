"""Tier 1: the consumer's commit watchdog (``streams.runtime.transport.PulseConsumer``), on a
stand-in for the consumer's bookkeeping (pure logic; the worker tests run the real consumer)."""
from __future__ import annotations

import logging
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP

from streams.runtime.transport import COMMIT_STALL_S, PulseConsumer


class _Message:
    def __init__(self, tp, offset, acked):
        self.tp, self.offset, self.acked = tp, offset, acked


def _consumer(tps, changelogs=()):
    log = logging.getLogger("test.watchdog")
    c = SimpleNamespace(
        app=SimpleNamespace(rebalancing=False, tables=SimpleNamespace(changelog_topics=set(changelogs))),
        assignment=lambda: set(tps), log=log, _accepted={}, _delivered={}, _stalled_since={},
        _unacked_messages=set(), _committed_offset={}, _read_offset={}, _acked=defaultdict(list),
        _gap={}, _active_partitions=set(tps), _paused_partitions=set())
    c.commit_state = lambda tp: PulseConsumer.commit_state(c, tp)
    c.check = lambda now: PulseConsumer._check_commits(c, now)
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
    (record,) = caplog.records                     # once per stall, and only for uploads/0
    text = record.getMessage()
    assert "uploads/0" in text and "'committed': 42" in text and "'accepted': 30" in text
    assert "'delivered': 41" in text


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

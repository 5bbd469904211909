"""What the fault tests on clusters share (``test_fault_broker.py``, ``test_fault_cassandra.py``).

- :func:`cluster`: servers started by ``pulse up``'s own launcher in a ``PULSE_HOME`` of their
  own (``PULSE_KAFKA_BROKERS`` / ``PULSE_CASSANDRA_NODES`` say how many nodes), provisioned like
  ``pulse up`` does, and stopped by PID afterwards (a watchdog stops them if pytest dies);
- :func:`dump_stream`: the stream, the shipped Stack Exchange sample's sign-ups, uploads and
  follows (the materializer's topics) in event-time order, as ``pulse demo`` publishes them;
- :func:`assert_views_equal`: every row of every view the materializer writes, read back from
  Cassandra in full, against the rows the same engine (:class:`~streams.runtime.engine.AgentRunner`)
  writes for the same events in this process without any fault. The reference is exact: a
  view row is a pure function of the events (keyed by their ids, last write wins by event
  time), so a fault that lost, duplicated, reordered or half-applied anything shows as a
  missing, extra or different row.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from replay.verify import _norm, primary_key
from streams.contracts.effects import Delete, Upsert
from streams.demo.run import KIND_TOPIC, group_lag
from streams.demo.sources.stackexchange import SAMPLE_DUMP, iter_events_in_time_order, load_dump
from streams.producer import Publisher
from streams.settings import Settings, read_state
from streams.stores.cassandra import connect

from tests.conftest import _watchdog, server_env
from tests.integration.conftest import Workers, unique, wait_until
from tests.integration.test_crash_safety import _expected

TOPICS = ["uploads", "signups", "follows"]
"""The materializer's source topics."""


@contextlib.contextmanager
def cluster(home: Path, **env: str) -> Iterator[Settings]:
    """Settings of servers started in ``home`` with ``env`` (e.g. ``PULSE_KAFKA_BROKERS="3"``),
    topics created and views applied; stopped when the block ends, also on failure.

    Prints how long the servers took to answer and to provision.
    """
    from streams.servers.provision import provision
    from streams.servers.supervisor import MissingToolError, down, up

    environment = server_env(home, **env)
    settings = Settings.from_env(environment)
    watchdog = _watchdog(settings.home)
    try:
        t0 = time.monotonic()
        try:
            up(settings)
        except MissingToolError as exc:
            pytest.skip(f"no embedded servers: {exc}")
        t1 = time.monotonic()
        live = Settings.from_env(environment)
        provision(live)
        print(f"\n{home.name}: servers answering after {t1 - t0:.1f} s, provisioned after "
              f"{time.monotonic() - t1:.1f} s more")
        yield live
    finally:
        down(settings)
        watchdog.terminate()
        watchdog.wait()


def node_pid(settings: Settings, server: str, index: int) -> int:
    """The PID of node ``index`` (0-based) of ``server``'s cluster, from the state file."""
    return read_state(settings.state_file)[server]["nodes"][index]["pid"]


def kill_node(settings: Settings, server: str, index: int) -> int:
    """SIGKILL node ``index`` of ``server`` (no shutdown hook, no flush: as a machine dies) and
    wait until the process is gone; its PID."""
    from streams.servers.processes import alive

    pid = node_pid(settings, server, index)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 30, f"PID {pid} to die after SIGKILL", interval_s=0.1)
    return pid


def dump_stream() -> list[tuple[str, dict]]:
    """``[(topic, record)]``: the Stack Exchange sample's events on :data:`TOPICS`, in time order."""
    events = [(KIND_TOPIC[kind], record) for kind, record in iter_events_in_time_order(load_dump(SAMPLE_DUMP))]
    return [(topic, record) for topic, record in events if topic in TOPICS]


def publish(settings: Settings, events: list[tuple[str, dict]]) -> None:
    """Publish ``events`` in order through Pulse's publisher (idempotent, ``acks=all``) and wait
    until every one is acknowledged."""
    with Publisher(settings, producer_name="fault-test") as pub:
        for topic, record in events:
            pub.publish(topic, record)
        pub.flush(timeout_s=180)


def expected_views(settings: Settings, events: list[tuple[str, dict]]) -> dict[str, dict[tuple, dict]]:
    """``{table: {primary key: row}}`` the materializer leaves after ``events`` without a fault.

    Folds the fault-free run's effects as Cassandra applies them: per row the newest write
    wins (by its event-time timestamp), an upsert after a delete starts a new row, and a row
    whose newest write is a delete is gone.
    """
    out = _expected(settings, "materializer", events)
    cluster_, session = connect(settings, settings.cassandra_keyspace)
    try:
        keys = {}
        final: dict[tuple, tuple[int, dict | None]] = {}
        for e in out.views:
            if not isinstance(e, (Upsert, Delete)):
                continue
            pk = keys.setdefault(e.table, primary_key(session, settings.cassandra_keyspace, e.table))
            cols = e.row if isinstance(e, Upsert) else e.key
            key = (e.table, tuple(cols[c] for c in pk))
            prev = final.get(key)
            if prev is None or prev[0] <= e.timestamp_us:
                merged = dict(prev[1]) if prev and isinstance(e, Upsert) and prev[1] else {}
                final[key] = (e.timestamp_us, {**merged, **cols} if isinstance(e, Upsert) else None)
    finally:
        cluster_.shutdown()
    views: dict[str, dict[tuple, dict]] = {table: {} for table in keys}
    for (table, key), (_, row) in final.items():
        if row is not None:
            views[table][key] = row
    return views


def assert_views_equal(settings: Settings, expected: dict[str, dict[tuple, dict]]) -> dict[str, int]:
    """Every row of each table in ``expected`` (full scans at the settings' consistency level)
    equals the expected rows on the columns those carry, and no table has a row more or less.
    Returns the row count per table."""
    cluster_, session = connect(settings, settings.cassandra_keyspace)
    counts = {}
    try:
        for table, rows in expected.items():
            pk = primary_key(session, settings.cassandra_keyspace, table)
            columns = sorted({c for row in rows.values() for c in row} - set(pk))
            rows = {tuple(_norm(v) for v in key): row for key, row in rows.items()}
            got = {}
            for r in session.execute(f"SELECT {', '.join(pk + columns)} FROM {table}"):
                got[tuple(_norm(v) for v in r[:len(pk)])] = dict(zip(columns, r[len(pk):]))
            missing = sorted(set(rows) - set(got))[:5]
            extra = sorted(set(got) - set(rows))[:5]
            assert not missing and not extra, f"{table}: {len(set(rows) - set(got))} rows missing " \
                f"(e.g. {missing}), {len(set(got) - set(rows))} extra (e.g. {extra})"
            for key, row in rows.items():
                for c in columns:
                    if c in row:
                        assert _norm(got[key][c]) == _norm(row[c]), \
                            f"{table} {key} {c}: {got[key][c]!r} != {row[c]!r}"
            counts[table] = len(rows)
    finally:
        cluster_.shutdown()
    return counts


def stream_with_fault(settings: Settings, logs: Path, fault: Callable[[str], str]) -> tuple[dict, dict]:
    """Publish the first half of :func:`dump_stream`, start a worker running the materializer,
    call ``fault(consumer group)`` once the worker has committed offsets (work in flight), then
    publish the second half and wait until the worker has caught up, without restarting it.

    Returns ``(expected views, timings)``; the caller compares the views (the cluster as the
    fault left it, or after repairing it). The worker is stopped before returning.
    """
    events = dump_stream()
    half = len(events) // 2
    t0 = time.monotonic()
    publish(settings, events[:half])
    expected = expected_views(settings, events)
    workers = Workers(settings, logs)
    try:
        group = unique("fault")
        proc = workers.start(group)
        lag = {}

        def working():
            lag["now"] = group_lag(settings, group, TOPICS)
            return lag["now"][0] > 0

        wait_until(working, 180, "the worker to commit its first offsets", diagnose=lambda: workers.log(proc))
        what = fault(group)
        t_fault = time.monotonic()
        print(f"\n{what} with the worker at committed/end offsets {lag['now']}")
        publish(settings, events[half:])
        t_published = time.monotonic()

        def caught_up():
            committed, end = group_lag(settings, group, TOPICS)
            return end > 0 and committed >= end

        wait_until(caught_up, 300, "the worker to catch up after the fault", interval_s=1.0,
                   diagnose=lambda: workers.log(proc))
        assert proc.poll() is None, "the worker died:\n" + workers.log(proc)
        now = time.monotonic()
        log = Path(proc.log_path).read_text(errors="replace").splitlines()
        notable = [line[:200] for line in log if "WARN" in line or "ERROR" in line]
        print(f"worker log: {len(notable)} warnings and errors; the first ones:\n" + "\n".join(notable[:12]))
        return expected, {"before_fault": t_fault - t0, "fault_to_published": t_published - t_fault,
                          "fault_to_caught_up": now - t_fault}
    finally:
        workers.stop_all()


def timings(**figures: float) -> str:
    """One JSON line of rounded durations (seconds), printed by the tests for docs/clusters.md."""
    return json.dumps({k: round(v, 1) for k, v in figures.items()})

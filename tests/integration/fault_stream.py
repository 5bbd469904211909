"""What the fault tests on clusters share (``test_fault_broker.py``, ``test_fault_cassandra.py``).

- :func:`cluster`: servers started by ``pulse up``'s own launcher in a ``PULSE_HOME`` of their
  own (``PULSE_KAFKA_BROKERS`` / ``PULSE_CASSANDRA_NODES`` say how many nodes), provisioned like
  ``pulse up`` does, and stopped by PID afterwards (a watchdog stops them if pytest dies);
- :func:`dump_stream`: the stream, the shipped Stack Exchange sample's sign-ups, uploads and
  follows (the materializer's topics) in event-time order, as ``pulse demo`` publishes them,
  optionally with the gates' verdicts on each upload (for the stateful publisher);
- :func:`stream_with_fault`: half the stream, a worker, the fault, the other half, caught up;
- :func:`reference`, :func:`assert_views_equal`, :func:`assert_emits_equal`: every row of every
  view the agents write, read back from Cassandra in full, and every event they emit, against
  what the same engine (:class:`~streams.runtime.engine.AgentRunner`) produces for the same
  events in this process without any fault. The reference is exact: a view row and a derived
  event are pure functions of the events (keyed by their ids, last write wins by event time,
  emits with ids and times from their causes), so a fault that lost, duplicated, reordered or
  half-applied anything shows as a missing, extra or different row or event. A second live
  run on the same cluster would not be: it would share the fault it is meant to expose.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from agents.registry import AGENTS
from replay.rebuild import read_merged
from replay.verify import _norm, primary_key
from streams.contracts.codec import codec_for
from streams.contracts.topics import topic_spec
from streams.contracts.effects import Delete, Upsert
from streams.demo.run import KIND_TOPIC, group_lag
from streams.demo.sources.stackexchange import SAMPLE_DUMP, iter_events_in_time_order, load_dump
from streams.producer import Publisher
from streams.settings import Settings, read_state
from streams.stores.cassandra import connect

from tests.conftest import _watchdog, server_env
from tests.integration.conftest import Workers, unique, wait_until
from tests.integration.test_crash_safety import _expected
from tests.integration.test_publisher_gate import copyright_, moderation

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


def dump_stream(gates: bool = False) -> list[tuple[str, dict]]:
    """``[(topic, record)]``: the Stack Exchange sample's events on :data:`TOPICS`, in time order.

    With ``gates``, each upload is followed by Content Guard's and Copyright Guard's verdicts on
    it (10 and 20 ms later; every seventh post blocked by moderation, every eleventh by
    copyright), for the publisher, which joins them and emits ``posts-published``.
    """
    events = []
    for kind, record in iter_events_in_time_order(load_dump(SAMPLE_DUMP)):
        topic = KIND_TOPIC[kind]
        if topic not in TOPICS:
            continue
        events.append((topic, record))
        if gates and topic == "uploads":
            post, at, n = record["post_id"], record["event_time"], len(events)
            events.append(("moderation-verdicts", {**moderation(post, "BLOCK" if n % 7 == 0 else "ALLOW", at + 10),
                                                   "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"m/{post}"))}))
            events.append(("copyright-verdicts", {**copyright_(post, "BLOCK" if n % 11 == 0 else "ALLOW", at + 20),
                                                  "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"c/{post}"))}))
    return events


def publish(settings: Settings, events: list[tuple[str, dict]]) -> None:
    """Publish ``events`` in order through Pulse's publisher (idempotent, ``acks=all``) and wait
    until every one is acknowledged."""
    with Publisher(settings, producer_name="fault-test") as pub:
        for topic, record in events:
            pub.publish(topic, record)
        pub.flush(timeout_s=180)


def reference(settings: Settings, events: list[tuple[str, dict]], agents: tuple[str, ...]):
    """``(views, emits)`` of ``agents`` over ``events`` without a fault, each agent through its own
    engine over the events of its topics (the publisher with the moderation and copyright gates).

    ``views`` is ``{table: {primary key: row}}``, the agents' effects folded as Cassandra applies
    them, cell by cell: a cell holds the value of its newest write (by event-time timestamp), a
    delete removes the cells written no later than it, and a row whose every write is deleted is
    gone. ``emits`` are the encoded derived events.
    """
    views, emits = [], []
    for name in agents:
        spec = AGENTS[name]
        agent_settings = replace(settings, gates=("moderation", "copyright")) if name == "publisher" else settings
        out = _expected(agent_settings, name, [(t, r) for t, r in events if t in spec.topics])
        views += [e for e in out.views if isinstance(e, (Upsert, Delete))]
        emits += out.emits
    cluster_, session = connect(settings, settings.cassandra_keyspace)
    try:
        keys = {t: primary_key(session, settings.cassandra_keyspace, t) for t in {e.table for e in views}}
    finally:
        cluster_.shutdown()
    cells: dict[tuple, dict[str, tuple[int, object]]] = {}
    deleted: dict[tuple, int] = {}
    for e in views:
        cols = e.row if isinstance(e, Upsert) else e.key
        key = (e.table, tuple(cols[c] for c in keys[e.table]))
        if isinstance(e, Delete):
            deleted[key] = max(deleted.get(key, e.timestamp_us), e.timestamp_us)
            continue
        row = cells.setdefault(key, {})
        for c, v in e.row.items():
            if c not in row or row[c][0] <= e.timestamp_us:
                row[c] = (e.timestamp_us, v)
    folded: dict[str, dict[tuple, dict]] = {t: {} for t in keys}
    for (table, key), row in cells.items():
        alive = {c: v for c, (ts, v) in row.items() if ts > deleted.get((table, key), -1)}
        if alive:
            folded[table][key] = alive
    return folded, emits


def assert_emits_equal(settings: Settings, emits) -> int:
    """The output topics hold exactly ``emits``: every event once by id, byte for byte (a copy
    re-sent after a fault must be byte-identical). Returns how many events were compared."""
    codecs = {}
    want: dict[str, dict[str, bytes]] = {}
    for e in emits:
        codec = codecs.setdefault(e.topic, codec_for(settings, topic_spec(e.topic).schema, e.topic))
        want.setdefault(e.topic, {})[codec.decode(e.value)["event_id"]] = e.value
    for topic, values in want.items():
        got: dict[str, set[bytes]] = {}
        for m in read_merged(settings, [topic]):
            got.setdefault(codecs[topic].decode(m.value)["event_id"], set()).add(m.value)
        assert all(len(v) == 1 for v in got.values()), f"{topic}: copies of one event differ"
        assert {k: next(iter(v)) for k, v in got.items()} == values, \
            f"{topic}: {len(set(values) - set(got))} events missing, {len(set(got) - set(values))} extra"
    return sum(len(v) for v in want.values())


def _scan(session, cql: str, attempts: int = 4) -> list:
    """All rows of a full-table ``cql`` scan, in pages of 500; the whole scan is retried (up to
    ``attempts`` times, 2 s apart) when a page times out. A range scan at QUORUM with a replica
    just killed can time out on a loaded machine until the survivors' failure detectors have
    convicted it; an analyst's scan would retry too. Any other error, or the last timeout, is
    raised."""
    from cassandra import OperationTimedOut, ReadTimeout
    from cassandra.query import SimpleStatement

    for attempt in range(attempts):
        try:
            return list(session.execute(SimpleStatement(cql, fetch_size=500), timeout=60))
        except (ReadTimeout, OperationTimedOut):
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    return []


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
            for r in _scan(session, f"SELECT {', '.join(pk + columns)} FROM {table}"):
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


def stream_with_fault(settings: Settings, logs: Path, fault: Callable[[str], str],
                      agents: tuple[str, ...] = ("materializer",)) -> tuple[tuple[dict, list], dict]:
    """Publish the first half of :func:`dump_stream`, start a worker running ``agents``, call
    ``fault(consumer group)`` once the worker has committed offsets (work in flight), then
    publish the second half and wait until the worker has caught up, without restarting it.

    Returns ``(reference(...), timings)``; the caller compares the views and topics (the cluster
    as the fault left it, or after repairing it). The worker is stopped before returning.
    """
    events = dump_stream(gates="publisher" in agents)
    topics = sorted({t for name in agents for t in AGENTS[name].topics})
    half = len(events) // 2
    t0 = time.monotonic()
    publish(settings, events[:half])
    expected = reference(settings, events, agents)
    workers = Workers(settings, logs)
    try:
        group = unique("fault")
        proc = workers.start(group, agents=",".join(agents), PULSE_GATES="moderation,copyright")
        lag = {}

        def working():
            lag["now"] = group_lag(settings, group, topics)
            return lag["now"][0] > 0

        wait_until(working, 180, "the worker to commit its first offsets", diagnose=lambda: workers.log(proc))
        what = fault(group)
        t_fault = time.monotonic()
        print(f"\n{what} with the worker at committed/end offsets {lag['now']}")
        publish(settings, events[half:])
        t_published = time.monotonic()

        def caught_up():
            committed, end = group_lag(settings, group, topics)
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

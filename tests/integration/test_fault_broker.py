"""A Kafka broker SIGKILLed in the middle of a stream: the views equal those of a run without it.

``pulse up --brokers 3``'s cluster (three KRaft nodes, each broker and controller; topics and
``__consumer_offsets`` with 3 replicas and min ISR 2) with one Cassandra node, in a home of its
own. The first half of the Stack Exchange sample (with the gates' verdicts on each upload) is
published, a worker runs the materializer and the publisher (stateful: its gate table lives in
a changelog topic with 3 replicas, and it emits ``posts-published``), and once it has committed
some offsets (so work is in flight) the broker that coordinates its consumer group is killed:
the worker loses its group coordinator and the partitions that broker led, the controller
quorum loses a voter. The second half is then published through the two survivors, the worker
must catch up without restarting, and every view and every emitted event equals the same
engine's run over the same events without the fault (:mod:`tests.integration.fault_stream`).

As an operator would, the test then brings the broker back (``pulse up`` starts just the
missing node) and waits until every partition of every topic (``__consumer_offsets`` and the
changelog included) has its three replicas in sync again.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.servers.supervisor import status, up
from streams.servers.topics_admin import admin_client

from tests.integration.conftest import wait_until
from tests.integration.fault_stream import (assert_emits_equal, assert_views_equal, cluster, kill_node,
                                            stream_with_fault, timings)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def brokers3(tmp_path_factory: pytest.TempPathFactory):
    with cluster(tmp_path_factory.mktemp("pulse-3-brokers"), PULSE_KAFKA_BROKERS="3") as settings:
        yield settings


def _in_sync(settings, replicas: int) -> bool:
    """Every partition of every topic (``__consumer_offsets`` and changelogs included) has
    ``replicas`` in-sync replicas."""
    md = admin_client(settings).list_topics(timeout=10)
    return all(len(p.isrs) == replicas for t in md.topics.values() for p in t.partitions.values())


def _node_state(settings, node_id: int) -> str:
    return next(n["state"] for n in status(settings)["kafka"]["nodes"] if n["server"] == f"kafka-{node_id}")


def test_views_survive_a_broker_killed_mid_stream(brokers3, tmp_path: Path) -> None:
    settings = brokers3
    assert _in_sync(settings, 3)
    killed = []

    def kill_the_group_coordinator(group: str) -> str:
        admin = admin_client(settings)
        victim = admin.describe_consumer_groups([group])[group].result(timeout=30).coordinator.id
        pid = kill_node(settings, "kafka", victim - 1)
        killed.append(victim)
        assert _node_state(settings, victim) == "stopped"
        return f"killed broker {victim} (PID {pid}), the consumer group's coordinator,"

    t0 = time.monotonic()
    (views, emits), times = stream_with_fault(settings, tmp_path, kill_the_group_coordinator,
                                              agents=("materializer", "publisher"))
    t1 = time.monotonic()
    counts = assert_views_equal(settings, views)
    assert counts["posts"] > 1000 and counts["followers"] > 1000, counts
    counts["emitted events"] = assert_emits_equal(settings, emits)
    assert counts["emitted events"] > 1000, counts
    t2 = time.monotonic()

    up(settings)  # an operator brings the node back: only the missing one starts
    assert _node_state(settings, killed[0]) == "running"
    wait_until(lambda: _in_sync(settings, 3), 180, "every partition to have 3 in-sync replicas again",
               interval_s=1.0)
    print(f"view rows: {counts}")
    print(timings(**times, compare=t2 - t1, restart_to_in_sync=time.monotonic() - t2, test=time.monotonic() - t0))

"""A Cassandra node SIGKILLed in the middle of a stream: the views equal those of a run without it.

``pulse up --cassandra-nodes 3``'s ring (127.0.0.1-3, keyspace replication factor 3, every
read and write at QUORUM) with one Kafka broker, in a home of its own. The first half of the
Stack Exchange sample (with the gates' verdicts on each upload) is published, a worker runs the
materializer and the publisher, and once it has committed some offsets (so writes are in
flight) the first node is killed: the seed, and the first contact point of every client, so the
worker's driver loses connections and most likely its control connection. The second half is
then published, the worker must catch up without restarting, and every view, read in full at
QUORUM from the two survivors, and every emitted event equal the same engine's run over the
same events without the fault (:mod:`tests.integration.fault_stream`).

As an operator would, the test then brings the node back (``pulse up`` starts just the missing
node; hinted handoff and read repair bring its replicas up to date) and reads every view again
at QUORUM, now with the returned node among the replicas that answer.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.servers.supervisor import status, up
from streams.settings import Settings
from streams.stores.cassandra import connect

from tests.integration.conftest import worker_env
from tests.integration.fault_stream import (assert_emits_equal, assert_views_equal, cluster, kill_node,
                                            stream_with_fault, timings)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ring3(tmp_path_factory: pytest.TempPathFactory):
    with cluster(tmp_path_factory.mktemp("pulse-3-cassandra"), PULSE_CASSANDRA_NODES="3") as settings:
        yield settings


def _node_states(settings) -> list[str]:
    return [n["state"] for n in status(settings)["cassandra"]["nodes"]]


def test_ring_and_worker_settings(ring3) -> None:
    """Three nodes on three loopback addresses own a third of the ring each, the keyspace has 3
    replicas, and a worker of this home writes at QUORUM."""
    assert [h.rsplit(":", 1)[0] for h in ring3.cassandra_hosts] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    cluster_, session = connect(ring3)
    try:
        peers = {r.peer for r in session.execute("SELECT peer FROM system.peers_v2")}
        replication = session.execute("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
                                      (ring3.cassandra_keyspace,)).one().replication
    finally:
        cluster_.shutdown()
    assert len(peers) == 2 and replication["replication_factor"] == "3", (peers, replication)
    worker = Settings.from_env(worker_env(ring3, "any"))
    assert (worker.cassandra_replication, worker.cassandra_consistency) == (3, "QUORUM")


def test_views_survive_a_cassandra_node_killed_mid_stream(ring3, tmp_path: Path) -> None:
    settings = ring3

    def kill_the_seed(group: str) -> str:
        pid = kill_node(settings, "cassandra", 0)
        assert _node_states(settings) == ["stopped", "running", "running"]
        return f"killed Cassandra node 127.0.0.1 (PID {pid}), the seed and first contact point,"

    t0 = time.monotonic()
    (expected, emits), times = stream_with_fault(settings, tmp_path, kill_the_seed,
                                                 agents=("materializer", "publisher"))
    t1 = time.monotonic()
    counts = assert_views_equal(settings, expected)  # QUORUM from the two survivors
    assert counts["posts"] > 1000 and counts["followers"] > 1000, counts
    counts["emitted events"] = assert_emits_equal(settings, emits)
    t2 = time.monotonic()

    up(settings)  # an operator brings the node back: only the missing one starts
    assert _node_states(settings) == ["running", "running", "running"]
    t3 = time.monotonic()
    assert_views_equal(settings, expected)  # QUORUM again, the returned node among the replicas
    print(f"view rows: {counts}")
    print(timings(**times, compare=t2 - t1, restart=t3 - t2, compare_after_restart=time.monotonic() - t3,
                  test=time.monotonic() - t0))

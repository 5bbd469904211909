"""What ``pulse up --brokers N`` / ``--cassandra-nodes N`` configure, without starting a server:
replication per cluster size, the KRaft quorum, the ring's addresses and tokens, and the settings
a home with a recorded cluster gives every process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.contracts.topics import replication_for
from streams.servers.cassandra import cassandra_yaml, node_address
from streams.servers.kafka import server_properties
from streams.settings import Settings, SettingsError


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_replication_follows_the_cluster_size():
    assert replication_for(1) == (1, 1)
    assert replication_for(2) == (2, 1)  # min ISR 2 of 2 would stop writes whenever a broker is down
    assert replication_for(3) == (3, 2)
    assert replication_for(5) == (3, 2)  # the catalog asks for 3 at most
    assert replication_for(1, wanted=1) == (1, 1)
    assert replication_for(3, override=1) == (1, 1)  # PULSE_KAFKA_REPLICATION


def test_single_broker_properties_are_a_standalone_quorum():
    p = _props(server_properties(Path("/d"), 9092, 9093))
    assert p["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert "controller.quorum.voters" not in p
    assert p["offsets.topic.replication.factor"] == p["min.insync.replicas"] == "1"


def test_cluster_properties_name_every_voter_and_replicate_internal_topics():
    voters = {1: 9101, 2: 9102, 3: 9103}
    p = _props(server_properties(Path("/d2"), 9002, 9102, node_id=2, voters=voters))
    assert p["node.id"] == "2" and p["process.roles"] == "broker,controller"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    assert "controller.quorum.bootstrap.servers" not in p
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "share.coordinator.state.topic.replication.factor"):
        assert p[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr"):
        assert p[key] == "2", key


def test_ring_node_yaml():
    text = cassandra_yaml(Path("/n2"), 9042, 7000, address=node_address(2), seed=node_address(1),
                          initial_token=-3074457345618258603)
    assert "listen_address: 127.0.0.2" in text and "rpc_address: 127.0.0.2" in text
    assert 'seeds: "127.0.0.1:7000"' in text
    assert 'initial_token: "-3074457345618258603"' in text and "auto_bootstrap: false" in text
    alone = cassandra_yaml(Path("/n"), 9042, 7000)
    assert "initial_token" not in alone and "auto_bootstrap" not in alone and "listen_address: 127.0.0.1" in alone


def _home_with(tmp_path: Path, kafka_nodes: int, cassandra_nodes: int) -> dict[str, str]:
    """A state file with a running Kafka cluster and a stopped Cassandra ring of those sizes."""
    state = {"kafka": {"bootstrap": "127.0.0.1:1", "nodes": [{}] * kafka_nodes},
             "stopped": {"cassandra": {"hosts": ["127.0.0.1:2"], "nodes": [{}] * cassandra_nodes}}}
    (tmp_path / "servers.json").write_text(json.dumps(state))
    return {"PULSE_HOME": str(tmp_path)}


def test_settings_follow_the_recorded_cluster(tmp_path):
    one = Settings.from_env({"PULSE_HOME": str(tmp_path)})
    assert (one.kafka_brokers, one.cassandra_nodes, one.cassandra_replication, one.cassandra_consistency) == \
        (1, 1, 1, "LOCAL_ONE")
    env = _home_with(tmp_path, 3, 3)  # a stopped ring still says how big the home's ring is
    s = Settings.from_env(env)
    assert (s.kafka_brokers, s.cassandra_nodes, s.cassandra_replication, s.cassandra_consistency) == \
        (3, 3, 3, "QUORUM")
    s = Settings.from_env({**env, "PULSE_CASSANDRA_REPLICATION": "1"})
    assert s.cassandra_consistency == "LOCAL_ONE"
    s = Settings.from_env({**env, "PULSE_CASSANDRA_CONSISTENCY": "local_quorum", "PULSE_KAFKA_BROKERS": "1"})
    assert (s.cassandra_consistency, s.kafka_brokers) == ("LOCAL_QUORUM", 1)


def test_bad_cluster_settings_name_the_variable(tmp_path):
    home = {"PULSE_HOME": str(tmp_path)}
    with pytest.raises(SettingsError, match="PULSE_CASSANDRA_CONSISTENCY='SOMETIMES'"):
        Settings.from_env({**home, "PULSE_CASSANDRA_CONSISTENCY": "sometimes"})
    with pytest.raises(SettingsError, match="PULSE_KAFKA_BROKERS=0 must be 1 or more"):
        Settings.from_env({**home, "PULSE_KAFKA_BROKERS": "0"})
    with pytest.raises(SettingsError, match="PULSE_KAFKA_REPLICATION=-1 is negative"):
        Settings.from_env({**home, "PULSE_KAFKA_REPLICATION": "-1"})


def test_up_refuses_another_cluster_size_before_starting_anything(tmp_path):
    from streams.servers.supervisor import ServerError, up

    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    (tmp_path / "servers.json").write_text(json.dumps({"stopped": {"kafka": {
        "bootstrap": "127.0.0.1:1", "pid": None, "data": str(data), "ports": {"broker": 1, "controller": 2}}}}))
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BROKERS": "3",
                                  "PULSE_CASSANDRA_HOSTS": "127.0.0.1:9"})
    with pytest.raises(ServerError, match=r"holds a Kafka of 1 node\(s\) .* not 3: .*`pulse up --brokers 1`"):
        up(settings)
    assert "kafka" not in json.loads((tmp_path / "servers.json").read_text())  # still only recorded as stopped

"""The embedded-server launcher behind ``pulse up`` / ``down`` / ``status``, on the real servers.

Apart from the first test (which uses the shared ``servers`` fixture, or external servers), each
test starts its own servers in its own ``PULSE_HOME`` so that it can stop, break and restart them.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from streams.servers.supervisor import MissingToolError, ServerError, down, status, up
from streams.settings import REPO_ROOT, Settings, cassandra_contact_points
from tests.conftest import server_env

pytestmark = pytest.mark.integration

NOWHERE = "127.0.0.1:9"  # "external" address for the server a test does not want started


# ------------------------------------------------------------------------------------ helpers


def _up(settings: Settings) -> dict:
    try:
        return up(settings)
    except MissingToolError as exc:
        pytest.skip(f"no embedded servers: {exc}")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0, "message not delivered"


def _consume_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every value in partition 0 of ``topic``, from the beginning to the end offset."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values, deadline = [], time.monotonic() + 30
        while len(values) < high and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                values.append(msg.value())
        return values
    finally:
        consumer.close()


def _cql(settings: Settings, *statements: str) -> list:
    """Run CQL statements against ``settings.cassandra_hosts``; the rows of the last one."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    points, port = cassandra_contact_points(settings.cassandra_hosts)
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
    cluster = Cluster(points, port=port, protocol_version=settings.cassandra_protocol_version,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        session = cluster.connect()
        rows = []
        for stmt in statements:
            rows = list(session.execute(stmt))
        return rows
    finally:
        cluster.shutdown()


def _listening_socket(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


# ------------------------------------------------------------------------- the shared fixture


def test_servers_fixture_answers_kafka_and_cql(servers: Settings) -> None:
    st = status(servers)
    assert st["kafka"]["answering"] and st["cassandra"]["answering"], st
    topic = f"test-servers-{uuid.uuid4().hex[:8]}"
    _produce(servers.kafka_bootstrap, topic, b"hello")
    assert _consume_all(servers.kafka_bootstrap, topic) == [b"hello"]
    (row,) = _cql(servers, "SELECT release_version FROM system.local")
    if "cassandra" not in servers.external:
        assert row.release_version.startswith("5.0."), row.release_version


# ---------------------------------------------------------------------------------- lifecycle


def test_up_down_up_keeps_data_on_same_and_on_new_ports(tmp_path: Path) -> None:
    env = server_env(tmp_path / "home")
    settings = Settings.from_env(env)
    code = "from streams.settings import Settings; from streams.servers.supervisor import up; up(Settings.from_env())"
    # 1. `pulse up` in a process that exits: the servers must outlive it.
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=settings.startup_timeout_s * 2 + 120)
    if proc.returncode != 0 and "MissingToolError" in proc.stderr:
        pytest.skip(f"no embedded servers: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    try:
        first = json.loads(settings.state_file.read_text())
        pids = {name: first[name]["pid"] for name in ("kafka", "cassandra")}
        st = status(settings)
        for name in ("kafka", "cassandra"):
            assert st[name]["state"] == "running" and st[name]["answering"], st
            assert st[name]["pid"] == pids[name]
        assert Path(first["qdrant"]["path"]).is_dir()

        # 2. Idempotent: a second `up` keeps the running processes.
        again = _up(settings)
        assert {n: again[n]["pid"] for n in pids} == pids

        # 3. A server of this home that the state file does not know is refused, not doubled.
        saved = settings.state_file.read_text()
        settings.state_file.unlink()
        with pytest.raises(ServerError, match="not recorded"):
            up(settings)
        settings.state_file.write_text(saved)

        # 4. Data written now must survive.
        live = Settings.from_env(env)
        _produce(live.kafka_bootstrap, "survivor", b"before-restart")
        _cql(live, "CREATE KEYSPACE IF NOT EXISTS t WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
             "CREATE TABLE IF NOT EXISTS t.kv (k text PRIMARY KEY, v text)",
             "INSERT INTO t.kv (k, v) VALUES ('a', 'before-restart')")

        # 5. down stops exactly the recorded PIDs; the addresses leave the settings.
        lines = down(settings)
        assert len(lines) == 2 and all("stopped PID" in line for line in lines), lines
        assert not any(_alive(pid) for pid in pids.values())
        assert Settings.from_env(env).kafka_bootstrap is None
        assert {v["state"] for k, v in status(settings).items() if k != "qdrant"} == {"stopped"}

        # 6. up again: the same ports are free, so the same addresses, and the data is there.
        second = _up(settings)
        assert second["kafka"]["bootstrap"] == first["kafka"]["bootstrap"]
        assert second["cassandra"]["hosts"] == first["cassandra"]["hosts"]
        live = Settings.from_env(env)
        assert _consume_all(live.kafka_bootstrap, "survivor") == [b"before-restart"]
        assert [r.v for r in _cql(live, "SELECT v FROM t.kv WHERE k = 'a'")] == ["before-restart"]
        down(settings)

        # 7. up with all the old ports (client, KRaft controller, gossip, JMX) taken by someone
        #    else: every port changes, and the metadata log and the sstables still load.
        old_ports = [p for n in ("kafka", "cassandra") for p in first[n]["ports"].values()]
        with contextlib.ExitStack() as stack:
            for port in old_ports:
                stack.enter_context(_listening_socket(port))
            third = _up(settings)
        assert not set(old_ports) & {p for n in ("kafka", "cassandra") for p in third[n]["ports"].values()}
        live = Settings.from_env(env)
        _produce(live.kafka_bootstrap, "survivor", b"after-port-change")
        assert _consume_all(live.kafka_bootstrap, "survivor") == [b"before-restart", b"after-port-change"]
        assert [r.v for r in _cql(live, "SELECT v FROM t.kv WHERE k = 'a'")] == ["before-restart"]
    finally:
        down(settings)


# ------------------------------------------------------------------------------------ failures


def test_kafka_that_exits_during_start_raises_with_its_log_tail(tmp_path: Path) -> None:
    env = server_env(tmp_path / "home", PULSE_CASSANDRA_HOSTS=NOWHERE)
    settings = Settings.from_env(env)
    data = settings.home / "kafka" / "data"
    data.mkdir(parents=True)
    # A storage formatted for another node: the broker refuses it and exits.
    (data / "meta.properties").write_text("version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\nnode.id=7\n")
    try:
        with pytest.raises(ServerError) as info:
            _up(settings)
        message = str(info.value)
        assert "Kafka" in message and "exited with code" in message, message
        assert "Last" in message and "kafka.log" in message and "Stored node id 7" in message.split("kafka.log")[-1], message
        assert "kafka" not in json.loads(settings.state_file.read_text())  # recorded as stopped
    finally:
        down(settings)


def test_port_taken_between_choice_and_start_raises_with_log_tail(tmp_path: Path, monkeypatch) -> None:
    from streams.servers import supervisor

    env = server_env(tmp_path / "home", PULSE_CASSANDRA_HOSTS=NOWHERE)
    settings = Settings.from_env(env)
    settings.home.mkdir(parents=True)
    with _listening_socket() as taken:
        port = taken.getsockname()[1]
        # The state file asks for that port again, and (as in a race) it looked free when checked.
        settings.state_file.write_text(json.dumps({"stopped": {"kafka": {"ports": {"broker": port}}}}))
        monkeypatch.setattr(supervisor, "_port_free", lambda p: True)
        try:
            with pytest.raises(ServerError) as info:
                _up(settings)
        finally:
            down(settings)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "exited" in message, message
    assert "Address already in use" in message, message


def test_server_that_does_not_answer_in_time_is_stopped(tmp_path: Path) -> None:
    env = server_env(tmp_path / "home", PULSE_KAFKA_BOOTSTRAP=NOWHERE, PULSE_STARTUP_TIMEOUT_S="3")
    settings = Settings.from_env(env)
    try:
        t0 = time.monotonic()
        with pytest.raises(ServerError) as info:
            _up(settings)
        message = str(info.value)
        assert "did not answer" in message and "within 3 s" in message and "Last" in message, message
        assert not _alive(int(re.search(r"PID (\d+)", message).group(1)))
        assert json.loads(settings.state_file.read_text())["stopped"]["cassandra"]["pid"] is None
        assert time.monotonic() - t0 < 3 + 60 + 10 + 30  # timeout + SIGTERM grace + SIGKILL + jar check
    finally:
        down(settings)


def test_down_never_signals_a_pid_that_is_not_ours(tmp_path: Path) -> None:
    settings = Settings.from_env(server_env(tmp_path / "home"))
    settings.home.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        settings.state_file.write_text(json.dumps({
            "kafka": {"bootstrap": "127.0.0.1:1", "pid": sleeper.pid},
            "cassandra": {"hosts": ["127.0.0.1:2"], "pid": os.getpid()}}))
        lines = down(settings)
        assert sleeper.poll() is None and _alive(os.getpid())
        assert len(lines) == 2 and all("left alone" in line for line in lines), lines
        assert "kafka" not in json.loads(settings.state_file.read_text())
    finally:
        sleeper.kill()
        sleeper.wait()


def test_down_of_another_home_never_stops_these_servers(servers: Settings, tmp_path: Path) -> None:
    if servers.external:
        pytest.skip("the servers are external")
    theirs = json.loads(servers.state_file.read_text())
    other = Settings.from_env(server_env(tmp_path / "other-home"))
    other.home.mkdir(parents=True)
    other.state_file.write_text(json.dumps({n: theirs[n] for n in ("kafka", "cassandra")}))
    lines = down(other)
    assert all("left alone" in line for line in lines) and len(lines) == 2, lines
    assert all(_alive(theirs[n]["pid"]) for n in ("kafka", "cassandra"))
    assert status(servers)["kafka"]["answering"]


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    settings = Settings.from_env(server_env(tmp_path / "home", PULSE_KAFKA_BOOTSTRAP=NOWHERE))
    with pytest.raises(MissingToolError, match="`java` is not on PATH"):
        up(settings)


def test_maven_failure_carries_its_output(tmp_path: Path) -> None:
    from streams.servers.maven import find_tool, resolve_jars

    try:
        find_tool("mvn", "test")
    except MissingToolError as exc:
        pytest.skip(str(exc))
    pom = tmp_path / "pom.xml"
    pom.write_text((REPO_ROOT / "infra" / "kafka" / "pom.xml").read_text()
                   .replace("<version>4.3.1</version>", "<version>0.0.0-no-such-version</version>"))
    with pytest.raises(ServerError, match=r"mvn failed to resolve the kafka jars .*\(exit 1\):\n.*") as info:
        resolve_jars(pom, "kafka_2.13", "kafka", tmp_path / "cache")
    assert "0.0.0-no-such-version" in str(info.value)
    assert not any((tmp_path / "cache").glob("kafka-*/lib"))


def test_compacted_topics_get_the_erasure_bound_and_old_ones_are_aligned(servers: Settings) -> None:
    """On the real broker: a compacted topic created from the catalog carries
    ``max.compaction.lag.ms`` and ``delete.retention.ms``; one created before those configs
    existed (made here without them) gets them set by the next ``create_topics``, its data and
    partitions untouched, and a third call changes nothing."""
    from confluent_kafka.admin import ConfigResource, NewTopic

    from streams.contracts.topics import TopicSpec
    from streams.servers.topics_admin import admin_client, create_topics

    def configs(name):
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        entries = admin.describe_configs([res])[res].result(timeout=30)
        return {k: entries[k].value for k in ("cleanup.policy", "max.compaction.lag.ms", "delete.retention.ms")}

    admin = admin_client(servers)
    fresh, old = (f"erasure-bound-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("new", "old"))
    spec = lambda name: TopicSpec(name, "ProfileUpdate", "user_id", 2, 1, "compacted")  # noqa: E731
    assert create_topics(servers, [spec(fresh)]) == {fresh: "created"}
    assert configs(fresh) == {"cleanup.policy": "compact", "max.compaction.lag.ms": "86400000",
                              "delete.retention.ms": "86400000"}
    admin.create_topics([NewTopic(old, num_partitions=2, replication_factor=1,
                                  config={"cleanup.policy": "compact"})])[old].result(timeout=30)
    assert configs(old)["max.compaction.lag.ms"] != "86400000"
    got = create_topics(servers, [spec(old)])
    assert got[old].startswith("exists; configs set:") and "max.compaction.lag.ms" in got[old], got
    assert configs(old) == configs(fresh)
    assert create_topics(servers, [spec(old), spec(fresh)]) == {old: "exists", fresh: "exists"}
    admin.delete_topics([fresh, old])

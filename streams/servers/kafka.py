"""Apache Kafka in KRaft mode: each JVM is both broker and controller, alone or in a cluster.

One node (the default): layout under ``$PULSE_HOME/kafka``: ``server.properties`` (rewritten on
every start, so the listeners follow the ports chosen then) and ``data/`` (``log.dirs``: topic
partitions and the ``__cluster_metadata`` log). The storage is formatted once with
``kafka.tools.StorageTool format --standalone``, which writes ``meta.properties`` (cluster id,
node id) and the controller's bootstrap snapshot; later starts load that metadata log, also when
the ports have changed (verified with Kafka 4.3.1: the topics and their records are still there).

A cluster (``pulse up --brokers N``, :func:`prepare_cluster`): node ``i`` lives in
``$PULSE_HOME/kafka/broker-<i>`` with its own ports on 127.0.0.1; every node is a voter of a
static controller quorum (``controller.quorum.voters``), each storage formatted once with the
one cluster id; internal topics get ``min(3, N)`` replicas and min ISR 2 from three nodes up.
"""
from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Callable

from streams.contracts.topics import replication_for
from streams.settings import REPO_ROOT, Settings
from streams.servers import Launch, ServerError, process_marker

ARTIFACT = "kafka_2.13"
POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
LOG4J2 = REPO_ROOT / "infra" / "kafka" / "log4j2.xml"
MAIN_CLASS = "kafka.Kafka"
PORTS = ("broker", "controller")
"""Port names: ``broker`` is the PLAINTEXT listener clients use, ``controller`` the KRaft quorum's."""

JVM_FLAGS = ["-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"]
"""``KAFKA_JVM_PERFORMANCE_OPTS`` of Kafka's own ``bin/kafka-run-class.sh``."""

def server_properties(data_dir: Path, broker_port: int, controller_port: int, *, node_id: int = 1,
                      voters: dict[int, int] | None = None) -> str:
    """``server.properties`` of one KRaft node on 127.0.0.1 that is both broker and controller.

    Alone (``voters`` unset): a one-node cluster whose controller quorum is bootstrapped with
    ``--standalone``; replication factor and min ISR are 1 for every internal topic
    (``__consumer_offsets``, ``__transaction_state``, ``__share_group_state``).

    In a cluster (``voters``: ``{node id: controller port}`` of every node, this one included): a
    static controller quorum (``controller.quorum.voters``, every node a voter, so a majority
    survives the loss of any one of three), and the internal topics and topics created without
    a factor get ``min(3, nodes)`` replicas with ``min.insync.replicas`` 2 from three nodes up
    (:func:`streams.contracts.topics.replication_for`).

    Topics are never auto-created (Pulse creates them from ``infra/kafka/`` with their partition
    counts); consumer groups rebalance at once.
    """
    factor, min_isr = replication_for(len(voters or {1: controller_port}))
    quorum = ({"controller.quorum.voters": ",".join(f"{n}@127.0.0.1:{p}" for n, p in sorted(voters.items()))}
              if voters else {"controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}"})
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        **quorum,
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": str(factor),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(factor),
        # 50 partitions (the default) take tens of seconds to create on 2 cores, during which
        # every consumer group gets NOT_COORDINATOR; one node needs no more than a few.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",  # same for the idempotent producers' PIDs
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    lines = ["# Written by `pulse up` (streams/servers/kafka.py) on every start; edits are overwritten."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """A random Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).

    Same format as ``kafka-storage.sh random-uuid`` (``org.apache.kafka.common.Uuid``), which also
    never hands out an id starting with ``-`` (it would parse as a command-line option).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def read_cluster_id(data_dir: Path) -> str | None:
    """The ``cluster.id`` in ``data_dir/meta.properties``, or ``None`` when not formatted yet."""
    try:
        text = (data_dir / "meta.properties").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    return None


def prepare(settings: Settings, java: str, lib: Path, ports: dict[str, int], version: str,
            on_step: Callable[[str], None] = lambda _m: None) -> Launch:
    """Write ``server.properties``, format the storage on first use, and build the command.

    Raises
    ------
    ServerError
        Formatting the storage failed (the message has StorageTool's output).
    """
    root = settings.home / "kafka"
    data = root / "data"
    config = root / "server.properties"
    data.mkdir(parents=True, exist_ok=True)
    config.write_text(server_properties(data, ports["broker"], ports["controller"]))
    cluster_id = read_cluster_id(data)
    if cluster_id is None:
        on_step("kafka: formatting storage (KRaft, standalone controller)")
        cluster_id = new_cluster_id()
        _format_storage(java, lib, config, cluster_id, settings.startup_timeout_s, ["--standalone"])
    marker = process_marker("kafka", settings.home)
    return Launch(argv=_argv(settings, java, lib, marker, config), cwd=root, marker=marker, record={
        "bootstrap": f"127.0.0.1:{ports['broker']}", "ports": dict(ports), "data": str(data),
        "config": str(config), "cluster_id": cluster_id, "version": version})


def cluster_root(settings: Settings, node_id: int) -> Path:
    """``$PULSE_HOME/kafka/broker-<node id>``: one cluster node's ``server.properties`` and ``data/``."""
    return settings.home / "kafka" / f"broker-{node_id}"


def prepare_cluster(settings: Settings, java: str, lib: Path, ports: list[dict[str, int]], version: str,
                    on_step: Callable[[str], None] = lambda _m: None) -> tuple[dict, list[Launch]]:
    """Configure a cluster of ``len(ports)`` KRaft nodes (node ids 1..N), each broker and controller.

    Every node gets its own directory (:func:`cluster_root`) and ports; the storage of each
    node not formatted yet is formatted with the cluster's id (taken from a node already
    formatted, else a new one), so the id is chosen once. Returns the cluster's record for the
    state file (``bootstrap`` lists every broker) and one :class:`Launch` per node, in node
    order; the caller starts them together (a controller quorum needs a majority to elect a
    leader, so no node answers alone).

    Raises
    ------
    ServerError
        Formatting a node's storage failed, or the nodes' storages name different clusters.
    """
    voters = {i + 1: p["controller"] for i, p in enumerate(ports)}
    roots = [cluster_root(settings, i + 1) for i in range(len(ports))]
    ids = {read_cluster_id(r / "data") for r in roots} - {None}
    if len(ids) > 1:
        raise ServerError(f"the Kafka nodes under {settings.home / 'kafka'} belong to different clusters "
                          f"({', '.join(sorted(ids))}); delete that directory to start afresh")
    cluster_id = ids.pop() if ids else new_cluster_id()
    launches = []
    for (node_id, node_ports), root in zip(enumerate(ports, start=1), roots):
        data, config = root / "data", root / "server.properties"
        data.mkdir(parents=True, exist_ok=True)
        config.write_text(server_properties(data, node_ports["broker"], node_ports["controller"],
                                            node_id=node_id, voters=voters))
        if read_cluster_id(data) is None:
            on_step(f"kafka: formatting the storage of node {node_id} (cluster {cluster_id})")
            _format_storage(java, lib, config, cluster_id, settings.startup_timeout_s, [])
        name = f"kafka-{node_id}"
        marker = process_marker(name, settings.home)
        launches.append(Launch(argv=_argv(settings, java, lib, marker, config), cwd=root, marker=marker, record={
            "server": name, "node_id": node_id, "address": f"127.0.0.1:{node_ports['broker']}",
            "ports": dict(node_ports), "data": str(data), "config": str(config)}))
    record = {"bootstrap": ",".join(launch.record["address"] for launch in launches),
              "cluster_id": cluster_id, "version": version}
    return record, launches


def _argv(settings: Settings, java: str, lib: Path, marker: str, config: Path) -> list[str]:
    return [java, f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}", *JVM_FLAGS, marker,
            f"-Dlog4j2.configurationFile={LOG4J2}", "-cp", f"{lib}/*", MAIN_CLASS, str(config)]


def _format_storage(java: str, lib: Path, config: Path, cluster_id: str, timeout_s: float,
                    flags: list[str]) -> None:
    cmd = [java, f"-Dlog4j2.configurationFile={LOG4J2}", "-cp", f"{lib}/*", "kafka.tools.StorageTool",
           "format", "-t", cluster_id, "-c", str(config), *flags]
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ServerError(f"formatting the Kafka storage did not finish within {timeout_s:.0f} s "
                          f"(PULSE_STARTUP_TIMEOUT_S)") from None
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-30:])
        raise ServerError(f"formatting the Kafka storage in {config.parent / 'data'} failed "
                          f"(exit {out.returncode}):\n{tail}")


def probe(bootstrap: str, timeout_s: float = 2.0, node_id: int | None = None) -> str | None:
    """The cluster id when the cluster answers a metadata request with at least one live broker.

    ``bootstrap`` is ``host:port[,host:port]``. With ``node_id``, that broker must also be among
    the live (registered, unfenced) brokers the answer lists: a cluster node is ready once it
    serves as a broker. Returns ``None`` when nothing answers within about ``timeout_s`` seconds
    (a closed port is detected at once, without a Kafka client).
    """
    hosts = [h.strip() for h in bootstrap.split(",") if h.strip()]
    if not any(_port_open(h, min(timeout_s, 1.0)) for h in hosts):
        return None
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0,
                         "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000))})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return None
    if not metadata.brokers or (node_id is not None and node_id not in metadata.brokers):
        return None
    return metadata.cluster_id or ""


def _port_open(host_port: str, timeout_s: float) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False

"""Single-node Apache Kafka in KRaft mode: one JVM is both broker and controller.

Layout under ``$PULSE_HOME/kafka``: ``server.properties`` (rewritten on every start, so the
listeners follow the ports chosen then) and ``data/`` (``log.dirs``: topic partitions and the
``__cluster_metadata`` log). The storage is formatted once with
``kafka.tools.StorageTool format --standalone``, which writes ``meta.properties`` (cluster id,
node id) and the controller's bootstrap snapshot; later starts load that metadata log, also when
the ports have changed (verified with Kafka 4.3.1: the topics and their records are still there).
"""
from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Callable

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

def server_properties(data_dir: Path, broker_port: int, controller_port: int) -> str:
    """``server.properties`` of a one-node cluster on 127.0.0.1 (KRaft, no ZooKeeper).

    Replication factor and min ISR are 1 for every internal topic (``__consumer_offsets``,
    ``__transaction_state``, ``__share_group_state``); topics are never auto-created (Pulse creates
    them from ``infra/kafka/`` with their partition counts); consumer groups rebalance at once.
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        # 50 partitions (the default) take tens of seconds to create on 2 cores, during which
        # every consumer group gets NOT_COORDINATOR; one node needs no more than a few.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",  # same for the idempotent producers' PIDs
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
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
        _format_storage(java, lib, config, cluster_id, settings.startup_timeout_s)
    marker = process_marker("kafka", settings.home)
    argv = [java, f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}", *JVM_FLAGS, marker,
            f"-Dlog4j2.configurationFile={LOG4J2}", "-cp", f"{lib}/*", MAIN_CLASS, str(config)]
    return Launch(argv=argv, cwd=root, marker=marker, record={
        "bootstrap": f"127.0.0.1:{ports['broker']}", "ports": dict(ports), "data": str(data),
        "config": str(config), "cluster_id": cluster_id, "version": version})


def _format_storage(java: str, lib: Path, config: Path, cluster_id: str, timeout_s: float) -> None:
    cmd = [java, f"-Dlog4j2.configurationFile={LOG4J2}", "-cp", f"{lib}/*", "kafka.tools.StorageTool",
           "format", "-t", cluster_id, "-c", str(config), "--standalone"]
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


def probe(bootstrap: str, timeout_s: float = 2.0) -> str | None:
    """The cluster id when the cluster answers a metadata request with at least one live broker.

    ``bootstrap`` is ``host:port[,host:port]``. Returns ``None`` when nothing answers within about
    ``timeout_s`` seconds (a closed port is detected at once, without a Kafka client).
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
    return (metadata.cluster_id or "") if metadata.brokers else None


def _port_open(host_port: str, timeout_s: float) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False

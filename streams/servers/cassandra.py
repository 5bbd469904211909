"""Single-node Apache Cassandra 5.0 run from ``cassandra-all`` and its jars (no tarball, no scripts).

The JVM runs ``org.apache.cassandra.service.CassandraDaemon`` directly, as embedded-Cassandra test
libraries do, with the flags of Cassandra's own ``conf/jvm-server.options`` and
``conf/jvm17-server.options`` (kept in ``infra/cassandra/jvm17-server.options``), the jamm agent
that arrives with the jars, and a ``cassandra.yaml`` written here. Layout under
``$PULSE_HOME/cassandra``: ``cassandra.yaml`` (rewritten on every start, so the ports follow the
ones chosen then), ``data/``, ``commitlog/``, ``saved_caches/``, ``hints/``, ``cdc_raw/``,
``triggers/``. Keyspaces and rows survive a restart, also on other ports.

A ring (``pulse up --cassandra-nodes N``, :func:`prepare_cluster`): node ``i`` listens on
``127.0.0.<i>`` with the same native and storage ports and its own JMX port, its directories
under ``$PULSE_HOME/cassandra/node-<i>``; the first node is the seed.
"""
from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path
from typing import Callable, Sequence

from streams.settings import REPO_ROOT, Settings, cassandra_contact_points
from streams.servers import Launch, ServerError, process_marker

ARTIFACT = "cassandra-all"
POM = REPO_ROOT / "infra" / "cassandra" / "pom.xml"
LOGBACK = REPO_ROOT / "infra" / "cassandra" / "logback.xml"
JVM_OPTIONS = REPO_ROOT / "infra" / "cassandra" / "jvm17-server.options"
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
PORTS = ("native", "storage", "jmx")
"""Port names: ``native`` is the CQL native transport clients use, ``storage`` the internode
(gossip) port, ``jmx`` the local-only JMX port (``nodetool -p``); each home gets its own."""

DIRS = ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "triggers")


def cassandra_yaml(root: Path, native_port: int, storage_port: int, *, address: str = "127.0.0.1",
                   seed: str = "127.0.0.1", initial_token: int | None = None) -> str:
    """``cassandra.yaml`` of one node listening on ``address`` with its directories under ``root``.

    Alone: a one-node cluster on 127.0.0.1 that is its own seed. In a ring
    (:func:`prepare_cluster`): the node's own loopback address, the first node as the seed, an
    even ``initial_token`` and ``auto_bootstrap: false`` (a new, empty ring: no node has data to
    stream, as ccm starts its clusters; a node restarted later keeps its tokens).

    Only keys Cassandra 5.0 knows (it refuses to start on unknown or Thrift-era keys such as
    ``start_rpc``); everything not named keeps Cassandra's default.
    """
    q = json.dumps  # a JSON string is a valid YAML scalar
    ring = [] if initial_token is None else [f"initial_token: {q(str(initial_token))}", "auto_bootstrap: false"]
    return "\n".join([
        "# Written by `pulse up` (streams/servers/cassandra.py) on every start; edits are overwritten.",
        "cluster_name: 'Pulse'",
        "num_tokens: 1",
        *ring,
        "partitioner: org.apache.cassandra.dht.Murmur3Partitioner",
        "endpoint_snitch: SimpleSnitch",
        f"listen_address: {address}",
        f"rpc_address: {address}",
        "start_native_transport: true",
        f"native_transport_port: {native_port}",
        f"storage_port: {storage_port}",
        "seed_provider:",
        "  - class_name: org.apache.cassandra.locator.SimpleSeedProvider",
        "    parameters:",
        f"      - seeds: {q(f'{seed}:{storage_port}')}",
        "data_file_directories:",
        f"  - {q(str(root / 'data'))}",
        f"commitlog_directory: {q(str(root / 'commitlog'))}",
        f"saved_caches_directory: {q(str(root / 'saved_caches'))}",
        f"hints_directory: {q(str(root / 'hints'))}",
        f"cdc_raw_directory: {q(str(root / 'cdc_raw'))}",
        "commitlog_sync: periodic",
        "commitlog_sync_period: 10s",
        "auto_snapshot: false",
        "# the sinks send unlogged batches of up to 20 rows that share a replica",
        "# (streams/sinks/writers.py BATCH_ROWS); warn only above that",
        "unlogged_batch_across_partitions_warn_threshold: 32",
        "",
    ])


def jvm_options(path: Path = JVM_OPTIONS) -> list[str]:
    """The flags in a Cassandra ``*.options`` file: every line starting with ``-``, split like a shell would."""
    flags: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("-"):
            flags += shlex.split(line)
    return flags


def prepare(settings: Settings, java: str, lib: Path, ports: dict[str, int], version: str,
            on_step: Callable[[str], None] = lambda _m: None) -> Launch:
    """Write ``cassandra.yaml``, create the directories and build the ``CassandraDaemon`` command.

    Raises
    ------
    ServerError
        The jamm agent jar is missing from ``lib`` (a broken jar cache: delete it and retry).
    """
    root = settings.home / "cassandra"
    config = _write_config(root, cassandra_yaml(root, ports["native"], ports["storage"]))
    marker = process_marker("cassandra", settings.home)
    return Launch(argv=_argv(settings, java, lib, marker, root, config, ports["jmx"]), cwd=root, marker=marker,
                  record={"hosts": [f"127.0.0.1:{ports['native']}"], "ports": dict(ports), "data": str(root),
                          "config": str(config), "version": version})


def node_address(index: int) -> str:
    """The loopback address of ring node ``index`` (1-based): ``127.0.0.<index>``.

    Linux answers on all of 127.0.0.0/8 through ``lo`` without any configuration, so every node
    can use the same native and storage ports on its own address (the Python driver takes one
    port for all contact points).
    """
    return f"127.0.0.{index}"


def prepare_cluster(settings: Settings, java: str, lib: Path, ports: list[dict[str, int]], version: str,
                    on_step: Callable[[str], None] = lambda _m: None) -> tuple[dict, list[Launch]]:
    """Configure a ring of ``len(ports)`` nodes on 127.0.0.1, 127.0.0.2, ... (``$PULSE_HOME/cassandra/node-<i>``).

    Every node uses the first node's ``native`` and ``storage`` ports on its own address and its
    own ``jmx`` port; the first node is the seed; tokens are spread evenly over the Murmur3 range.
    Returns the ring's record for the state file (``hosts``: every node's contact point) and one
    :class:`Launch` per node, in order: the caller starts each only once the one before answers
    (nodes join a ring one at a time).

    Raises
    ------
    ServerError
        The jamm agent jar is missing from ``lib``, or a node's address is not local here.
    """
    native, storage = ports[0]["native"], ports[0]["storage"]
    n = len(ports)
    for i in range(1, n + 1):
        _require_local(node_address(i))
    launches = []
    for i, node_ports in enumerate(ports, start=1):
        root, address = settings.home / "cassandra" / f"node-{i}", node_address(i)
        token = -2**63 + (i - 1) * (2**64 // n)
        config = _write_config(root, cassandra_yaml(root, native, storage, address=address, seed=node_address(1),
                                                    initial_token=token))
        name = f"cassandra-{i}"
        marker = process_marker(name, settings.home)
        launches.append(Launch(argv=_argv(settings, java, lib, marker, root, config, node_ports["jmx"]), cwd=root,
                               marker=marker, record={
                                   "server": name, "address": f"{address}:{native}",
                                   "ports": {"native": native, "storage": storage, "jmx": node_ports["jmx"]},
                                   "data": str(root), "config": str(config), "token": str(token)}))
    record = {"hosts": [launch.record["address"] for launch in launches], "version": version}
    return record, launches


def _require_local(address: str) -> None:
    """Raise :class:`ServerError` unless this machine can listen on ``address``."""
    try:
        with socket.socket() as s:
            s.bind((address, 0))
    except OSError as exc:
        raise ServerError(f"cannot listen on {address} ({exc}), which ring node {address.rsplit('.', 1)[1]} "
                          f"needs: Linux routes all of 127.0.0.0/8 to `lo` when it has 127.0.0.1/8; add the "
                          f"address with `ip addr add {address}/8 dev lo` (as root)") from None


def _write_config(root: Path, yaml: str) -> Path:
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    config = root / "cassandra.yaml"
    config.write_text(yaml)
    return config


def _argv(settings: Settings, java: str, lib: Path, marker: str, root: Path, config: Path, jmx_port: int) -> list[str]:
    jamm = sorted(lib.glob("jamm-*.jar"))
    if not jamm:
        raise ServerError(f"no jamm-*.jar in {lib}; delete {lib.parent} so that `pulse up` resolves the jars again")
    return [java, f"-Xms{settings.cassandra_heap}", f"-Xmx{settings.cassandra_heap}", *jvm_options(), marker,
            f"-javaagent:{jamm[-1]}",
            f"-Dcassandra.config={config.as_uri()}",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            f"-Dcassandra.jmx.local.port={jmx_port}",
            f"-Dcassandra.triggers_dir={root / 'triggers'}",
            f"-Dcassandra.storagedir={root}",
            f"-Dlogback.configurationFile={LOGBACK}",
            "-cp", f"{lib}/*", MAIN_CLASS]


def probe(hosts: Sequence[str], protocol_version: int = 5, timeout_s: float = 2.0,
          only: bool = False) -> str | None:
    """Cassandra's ``release_version`` (e.g. ``"5.0.8"``) when a CQL query answers, else ``None``.

    ``hosts`` are ``host[:port]`` contact points (see :func:`streams.settings.cassandra_contact_points`).
    A closed native port is detected at once, without the driver; otherwise the driver gets about
    ``timeout_s`` seconds to connect and ``timeout_s`` for ``SELECT release_version FROM system.local``.
    With ``only``, the query goes to the contact points alone, never to peers the driver
    discovers (a ring node is ready once it answers itself).
    """
    points, port = cassandra_contact_points(tuple(hosts))
    if not any(_port_open(p, port, min(timeout_s, 1.0)) for p in points):
        return None
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy, WhiteListRoundRobinPolicy

    policy = WhiteListRoundRobinPolicy(points) if only else RoundRobinPolicy()
    profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=timeout_s)
    cluster = Cluster(points, port=port, protocol_version=protocol_version, connect_timeout=timeout_s,
                      control_connection_timeout=timeout_s, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
        return row.release_version if row else None
    except Exception:  # NoHostAvailable, OperationTimedOut, a node still starting: all mean "not answering"
        return None
    finally:
        cluster.shutdown()


def _port_open(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False

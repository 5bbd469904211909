"""Start, watch and stop the embedded servers: ``pulse up``, ``pulse down``, ``pulse status``.

``up`` starts Cassandra and Kafka (each unless ``settings.external`` names it) as detached JVMs
(their own session, so they outlive the Python process that started them and a closed terminal),
on 127.0.0.1 and free ports, and waits until each answers a real request. It records them in the
state file ``$PULSE_HOME/servers.json``::

    {"kafka": {"bootstrap": "127.0.0.1:P", "pid": N, "log": ..., "data": ..., "ports": {...},
               "config": ..., "cluster_id": ..., "version": "4.3.1", "started_at": ISO-8601 UTC,
               "answering_after_s": 4.2},
     "cassandra": {"hosts": ["127.0.0.1:P"], "pid": N, "log": ..., ..., "version": "5.0.8"},
     "qdrant": {"path": "$PULSE_HOME/qdrant"},
     "stopped": {"kafka": {..., "pid": null, "stopped_at": ...}}}

A cluster (``settings.kafka_brokers`` / ``settings.cassandra_nodes`` above 1) keeps the same
client-facing fields and lists its nodes, each with its own process marker (``kafka-2``)::

    {"kafka": {"bootstrap": "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3", "cluster_id": ..., "version": ...,
               "nodes": [{"server": "kafka-1", "node_id": 1, "address": "127.0.0.1:P1", "pid": N,
                          "log": ..., "data": ..., "ports": {...}, "config": ...}, ...]},
     "cassandra": {"hosts": ["127.0.0.1:P", "127.0.0.2:P", "127.0.0.3:P"], "version": ...,
                   "nodes": [{"server": "cassandra-1", "address": "127.0.0.1:P", "pid": N, ...}, ...]}}

``down`` moves the entries it stopped under ``"stopped"`` (so ``Settings.from_env`` no longer hands
out their addresses) and ``up`` reuses the ports recorded there when they are still free. A PID
is signalled only while ``/proc/<pid>/cmdline`` is a ``java`` command carrying this server's
:func:`~streams.servers.process_marker` for this ``PULSE_HOME``; data directories are never removed.
Linux only (``/proc``). The process and port plumbing (spawning, signalling, ``/proc`` checks,
log tails, free ports) lives in :mod:`.processes`.
"""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Callable

from streams.settings import Settings, read_state
from streams.servers import MissingToolError, ServerError, cassandra, kafka
from streams.servers.maven import find_tool, java_major_version, resolve_jars
from streams.servers.processes import (alive, cmdline, exit_code, find_ours, free_port, is_ours, spawn, tail_message, terminate,
                        utc_now)
from streams.servers.processes import port_free as _port_free  # looked up here, so a test can fake a port-taken race

__all__ = ["ServerError", "MissingToolError", "up", "down", "status"]

SERVERS: dict[str, ModuleType] = {"cassandra": cassandra, "kafka": kafka}
"""Start order: Cassandra first (slowest to start); Kafka's jars and storage format run meanwhile."""
SIZE = {"kafka": "kafka_brokers", "cassandra": "cassandra_nodes"}
"""The setting that says how many nodes each server's cluster has (``pulse up --brokers N --cassandra-nodes N``)."""
SEQUENTIAL = {"cassandra"}
"""Servers whose cluster nodes start one after another, each once the one before answers."""
TITLES = {"kafka": "Kafka", "cassandra": "Cassandra"}

PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.5


def up(settings: Settings, *, on_step: Callable[[str], None] | None = None) -> dict:
    """Start what is not running yet, wait until every server answers, write and return the state.

    Idempotent: a recorded PID that is still our server is left running (and waited for if it does
    not answer yet); in a cluster (``settings.kafka_brokers`` / ``settings.cassandra_nodes`` above
    1) only the nodes that are not running are started, so ``up`` also brings back a node that
    was killed. Kafka nodes start together (their controller quorum needs a majority); Cassandra
    nodes one after another, each once the one before answers (nodes join a ring one at a time).
    Each node gets ``settings.startup_timeout_s`` seconds from its launch. ``on_step`` receives
    progress lines such as ``"kafka: formatting storage ..."``.

    Raises
    ------
    ServerError
        ``java``/``mvn`` missing, jar resolution or storage format failed, a server exited while
        starting or did not answer in time (then it, and the rest of its cluster, is stopped), a
        server of this ``PULSE_HOME`` runs unrecorded, or the home holds a cluster of another
        size. Servers already answering stay running and recorded.
    """
    step = on_step or (lambda _m: None)
    settings.home.mkdir(parents=True, exist_ok=True)
    old = read_state(settings.state_file)
    state: dict = {"stopped": {n: e for n, e in old.get("stopped", {}).items() if n in SERVERS}}
    state["stopped"].update({n: old[n] for n in SERVERS if isinstance(old.get(n), dict)})
    state["qdrant"] = _qdrant(settings)
    for name in SERVERS:  # before anything starts
        if name not in settings.external:
            _check_size(settings, name, state["stopped"].get(name) or {}, getattr(settings, SIZE[name]))
    start = _Start(settings, state, step)
    for name, module in SERVERS.items():
        entry = state["stopped"].get(name) or {}
        if name in settings.external:
            if any(_ours(name, m, settings) for m in _members(entry)):  # keep it recorded, so `down` stops it
                state[name] = state["stopped"].pop(name)
                step(f"{name}: using the external one; the embedded one runs until `pulse down`")
            continue
        start.server(name, module, entry)
    _write_state(settings.state_file, state)
    start.wait()
    _write_state(settings.state_file, state)
    return {k: v for k, v in state.items() if k != "stopped" or v}


class _Start:
    """One ``up``: launches nodes, then polls them until each answers (or fails)."""

    def __init__(self, settings: Settings, state: dict, step: Callable[[str], None]):
        self.settings, self.state, self.step = settings, state, step
        self.waiting: dict[tuple[str, int], tuple[float, float]] = {}  # (server, node) -> (launch, deadline)
        self.queued: dict[str, list[tuple[int, list[str]]]] = {}  # server -> nodes to spawn one by one
        self.taken: set[int] = set()
        self.java: str | None = None

    def server(self, name: str, module: ModuleType, entry: dict) -> None:
        size = getattr(self.settings, SIZE[name])
        members = _members(entry)
        ours = [_ours(name, m, self.settings) for m in members] if _recorded_size(entry) == size else [False] * size
        for m, running in zip(members, ours):
            if not running and m.get("pid"):  # it died (crash, reboot, kill) without `pulse down`: forget its PID
                m["pid"] = None
            if running:
                self.taken.update(p for p in (m.get("ports") or {}).values() if isinstance(p, int))
        if all(ours):
            self.state[name] = self.state["stopped"].pop(name)
            for i, m in enumerate(_members(self.state[name])):
                address = _member_address(name, m)
                if _probe_member(name, m, self.settings) is not None:
                    self.step(f"{_member_name(name, m)}: already running (PID {m['pid']}) at {address}")
                else:
                    self.step(f"{_member_name(name, m)}: PID {m['pid']} is running but not answering yet; waiting for it")
                    self.waiting[(name, i)] = (time.monotonic(), time.monotonic() + self.settings.startup_timeout_s)
            return
        for i in range(size):
            member_name = name if size == 1 else f"{name}-{i + 1}"
            stray = None if i < len(ours) and ours[i] else find_ours(member_name, self.settings.home)
            if stray:
                raise ServerError(f"a {TITLES[name]} of PULSE_HOME={self.settings.home} runs as PID {stray} but is "
                                  f"not recorded in {self.settings.state_file}; stop it (kill {stray}) and run "
                                  f"`pulse up` again")
        self.java = self.java or _java(self.step)
        lib, version = resolve_jars(module.POM, module.ARTIFACT, name, self.settings.cache_dir, self.step)
        old_members = members if _recorded_size(entry) == size else []
        ports = []
        for i in range(size):
            previous = old_members[i] if i < len(old_members) else (entry if size == 1 else {})
            keep = i < len(ours) and ours[i]
            ports.append(previous["ports"] if keep else _choose_ports(module.PORTS, previous.get("ports") or {}, self.taken))
        if size == 1:
            launch = module.prepare(self.settings, self.java, lib, ports[0], version, self.step)
            self._spawn(name, None, launch)
            return
        record, launches = module.prepare_cluster(self.settings, self.java, lib, ports, version, self.step)
        nodes = [{**launch.record, **({"pid": m["pid"], "log": m["log"], "started_at": m.get("started_at")}
                                      if keep else {"pid": None})}
                 for launch, m, keep in zip(launches, old_members or [{}] * size, ours)]
        self.state["stopped"].pop(name, None)
        self.state[name] = {**record, "nodes": nodes}
        todo = [(i, launch) for i, (launch, keep) in enumerate(zip(launches, ours)) if not keep]
        if name in SEQUENTIAL:
            self.queued[name] = todo
            self._spawn_next(name)
        else:
            for i, launch in todo:
                self._spawn(name, i, launch)

    def _spawn(self, name: str, index: int | None, launch) -> None:
        """Start one node: the whole server when ``index`` is None, else node ``index`` of its cluster."""
        member_name = name if index is None else launch.record["server"]
        log = self.settings.home / "logs" / f"{member_name}.log"
        pid = spawn(launch.argv, launch.cwd, log)
        fields = {"pid": pid, "log": str(log), "started_at": utc_now()}
        if index is None:
            self.state["stopped"].pop(name, None)
            self.state[name] = {**launch.record, **fields}
        else:
            self.state[name]["nodes"][index].update(fields)
        _write_state(self.settings.state_file, self.state)
        member = self.state[name] if index is None else self.state[name]["nodes"][index]
        self.step(f"{member_name}: started {TITLES[name]} {self.state[name].get('version')} as PID {pid}; "
                  f"waiting for {_member_address(name, member)}")
        self.waiting[(name, index or 0)] = (time.monotonic(), time.monotonic() + self.settings.startup_timeout_s)

    def _spawn_next(self, name: str) -> None:
        if self.queued.get(name) and not any(n == name for n, _ in self.waiting):
            index, launch = self.queued[name].pop(0)
            self._spawn(name, index, launch)

    def wait(self) -> None:
        """Poll every started node until it answers; start queued ring nodes as their turn comes."""
        while self.waiting:
            for key in list(self.waiting):
                name, index = key
                member = _members(self.state[name])[index]
                pid, log, address = member["pid"], Path(member["log"]), _member_address(name, member)
                title = TITLES[name] if len(_members(self.state[name])) == 1 else \
                    f"{TITLES[name]} node {_member_name(name, member)}"
                if not alive(pid):
                    code = exit_code(pid)
                    self._fail(name)
                    how = f" with code {code}" if code is not None else ""
                    raise ServerError(f"{title} (PID {pid}) exited{how} while starting on {address}."
                                      f"{tail_message(log)}")
                answer = _probe_member(name, member, self.settings)
                launched, deadline = self.waiting[key]
                if answer is not None:
                    member["answering_after_s"] = round(time.monotonic() - launched, 1)
                    self.step(f"{_member_name(name, member)}: answering at {address} after "
                              f"{member['answering_after_s']} s")
                    del self.waiting[key]
                    self._spawn_next(name)
                elif time.monotonic() > deadline:
                    how = terminate([pid]).get(pid, "")
                    self._fail(name)
                    raise ServerError(
                        f"{title} (PID {pid}) did not answer on {address} within "
                        f"{self.settings.startup_timeout_s:.0f} s, so it was stopped ({how}). On a slow or busy "
                        f"machine raise PULSE_STARTUP_TIMEOUT_S.{tail_message(log)}")
            if self.waiting:
                time.sleep(POLL_INTERVAL_S)

    def _fail(self, name: str) -> None:
        """A node of ``name`` failed to start: stop the rest of its cluster and record it stopped."""
        others = [m["pid"] for m in _members(self.state[name]) if m.get("pid") and _ours(name, m, self.settings)]
        if others:
            terminate(others)
        self.state["stopped"][name] = _stopped(self.state.pop(name))
        _write_state(self.settings.state_file, self.state)


def down(settings: Settings) -> list[str]:
    """Stop the recorded servers (SIGTERM, then SIGKILL after :data:`~.processes.STOP_TIMEOUT_S`); keep their data.

    Only PIDs from the state file are signalled, and only while they are still this home's
    server JVMs; in a cluster, every node. Returns one line per node that was stopped or left
    alone (and why).
    """
    old = read_state(settings.state_file)
    if not old:
        return []
    stopped = old.get("stopped") if isinstance(old.get("stopped"), dict) else {}
    entries = {**stopped, **{n: old[n] for n in SERVERS if isinstance(old.get(n), dict)}}
    state = {k: v for k, v in old.items() if k not in SERVERS}
    state["stopped"] = dict(stopped)
    lines, ours = [], {}
    for name, entry in entries.items():
        if name not in SERVERS or not isinstance(entry, dict):
            continue
        for member in _members(entry):
            pid, member_name = member.get("pid"), _member_name(name, member)
            if pid and is_ours(pid, member_name, settings.home):
                ours[pid] = (member_name, member)
            elif pid and alive(pid):
                lines.append(f"{member_name}: PID {pid} is no longer Pulse's {TITLES[name]} "
                             f"({' '.join(cmdline(pid) or ['?'])[:120]}); left alone")
        if any(m.get("pid") for m in _members(entry)) or name in old:
            state["stopped"][name] = _stopped(entry)
    for pid, how in terminate(list(ours)).items():
        member_name, member = ours[pid]
        lines.append(f"{member_name}: stopped PID {pid} ({how}); data kept in {member.get('data')}")
    _write_state(settings.state_file, state)
    return lines


def status(settings: Settings) -> dict:
    """Per server: ``{"state": "running"|"stopped"|"external", "address", "pid", "answering", ...}``.

    ``answering`` is a live probe (Kafka metadata request, CQL query; about 2 s at most each).
    A cluster adds ``"nodes"`` (the same fields per node, ``server`` naming it: ``kafka-2``);
    its ``state`` is ``"degraded"`` while some of its nodes run and others do not, and
    ``answering`` says whether the cluster as a whole answers.
    ``qdrant`` is ``"embedded"`` (its directory) or ``"external"`` (``PULSE_QDRANT_URL``).
    """
    st = read_state(settings.state_file)
    out: dict[str, dict] = {}
    for name in ("kafka", "cassandra"):
        if name in settings.external:
            address = settings.kafka_bootstrap if name == "kafka" else ",".join(settings.cassandra_hosts)
            answer = _probe(name, address or "", settings)
            out[name] = {"state": "external", "address": address, "pid": None,
                         "answering": answer is not None, "version": answer if name == "cassandra" else None}
            continue
        entry = st.get(name) or st.get("stopped", {}).get(name) or {}
        nodes = []
        for member in _members(entry):
            pid = member.get("pid")
            running = bool(pid) and _ours(name, member, settings)
            answer = _probe_member(name, member, settings) if running else None
            nodes.append({"server": _member_name(name, member), "state": "running" if running else "stopped",
                          "address": _member_address(name, member) if member else None,
                          "pid": pid if running else None, "answering": answer is not None,
                          "log": member.get("log")})
        if "nodes" not in entry:
            node = nodes[0]
            out[name] = {"state": node["state"], "address": node["address"], "pid": node["pid"],
                         "answering": node["answering"], "version": entry.get("version"), "log": node["log"]}
            continue
        running = sum(n["state"] == "running" for n in nodes)
        answer = _probe(name, _address(name, entry), settings) if running else None
        out[name] = {"state": "running" if running == len(nodes) else "degraded" if running else "stopped",
                     "address": _address(name, entry), "pid": None, "answering": answer is not None,
                     "version": entry.get("version"), "log": None, "nodes": nodes}
    if "qdrant" in settings.external:
        out["qdrant"] = {"state": "external", "address": settings.qdrant_url, "pid": None,
                         "answering": _http_ok(f"{settings.qdrant_url.rstrip('/')}/readyz")}
    else:
        out["qdrant"] = {"state": "embedded", "address": str(settings.qdrant_path), "pid": None,
                         "answering": settings.qdrant_path.is_dir()}
    return out


# ------------------------------------------------------------------------------------ members


def _members(entry: dict) -> list[dict]:
    """The nodes of a server's state entry: its ``"nodes"`` in a cluster, else the entry itself."""
    nodes = entry.get("nodes")
    return nodes if isinstance(nodes, list) else [entry]


def _recorded_size(entry: dict) -> int:
    """How many nodes the entry records (0 when it records no server that ever ran)."""
    if isinstance(entry.get("nodes"), list):
        return len(entry["nodes"])
    return 1 if entry.get("data") else 0


def _member_name(name: str, member: dict) -> str:
    """``kafka`` for a single node, ``kafka-2`` for node 2 of a cluster (its process marker's name)."""
    return member.get("server", name)


def _member_address(name: str, member: dict) -> str:
    return member.get("address") or _address(name, member)


def _ours(name: str, member: dict, settings: Settings) -> bool:
    pid = member.get("pid")
    return bool(pid) and is_ours(pid, _member_name(name, member), settings.home)


def _stopped(entry: dict) -> dict:
    """``entry`` with every node's PID cleared and the time it was stopped."""
    now = utc_now()
    if isinstance(entry.get("nodes"), list):
        return {**entry, "nodes": [{**m, "pid": None, "stopped_at": now} for m in entry["nodes"]]}
    return {**entry, "pid": None, "stopped_at": now}


def _check_size(settings: Settings, name: str, entry: dict, size: int) -> None:
    """Refuse to start a cluster of another size than the one this home's data belongs to."""
    recorded = _recorded_size(entry)
    if not recorded or recorded == size:
        return
    data = [m.get("data") for m in _members(entry) if m.get("data") and Path(m["data"]).exists()]
    if not data:
        return
    flag = "--brokers" if name == "kafka" else "--cassandra-nodes"
    raise ServerError(f"PULSE_HOME={settings.home} holds a {TITLES[name]} of {recorded} node(s) (data in "
                      f"{data[0]}), not {size}: a cluster's size is fixed when its storage is first written. "
                      f"Run `pulse up {flag} {recorded}`, use another PULSE_HOME, or `pulse down` and delete "
                      f"{settings.home / name} to start an empty one.")


def _probe_member(name: str, member: dict, settings: Settings) -> str | None:
    """Whether one node answers on its own: a broker listed live by the cluster, a ring node's CQL."""
    if "server" not in member:
        return _probe(name, _address(name, member), settings)
    if name == "kafka":
        return kafka.probe(member["address"], PROBE_TIMEOUT_S, node_id=member.get("node_id"))
    return cassandra.probe([member["address"]], settings.cassandra_protocol_version, PROBE_TIMEOUT_S, only=True)


def _probe(name: str, address: str, settings: Settings) -> str | None:
    if not address:
        return None
    if name == "kafka":
        return kafka.probe(address, PROBE_TIMEOUT_S)
    return cassandra.probe(address.split(","), settings.cassandra_protocol_version, PROBE_TIMEOUT_S)


def _address(name: str, entry: dict) -> str:
    return entry.get("bootstrap", "") if name == "kafka" else ",".join(entry.get("hosts", []))


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as resp:
            return 200 <= resp.status < 300
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------- java


def _java(step: Callable[[str], None]) -> str:
    java = find_tool("java", "run Kafka and Cassandra")
    major = java_major_version(java)
    if major < 17:
        raise ServerError(f"{java} is Java {major}; Kafka 4 needs Java 17 (Cassandra 5.0 runs on 11 and 17). "
                          f"Install OpenJDK 17 or set JAVA_HOME to one.")
    if major > 17:
        step(f"warning: {java} is Java {major}; Cassandra 5.0 supports Java 11 and 17 only")
    return java


# -------------------------------------------------------------------------------- ports, state


def _choose_ports(names: tuple[str, ...], previous: dict, taken: set[int]) -> dict[str, int]:
    """A port per name: the previous one while it is free, else a fresh free one; all distinct."""
    ports = {}
    for name in names:
        port = previous.get(name)
        if not (isinstance(port, int) and port not in taken and _port_free(port)):
            port = free_port(taken)
        ports[name] = port
        taken.add(port)
    return ports


def _qdrant(settings: Settings) -> dict:
    if "qdrant" in settings.external:
        return {"url": settings.qdrant_url}
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    return {"path": str(settings.qdrant_path)}


def _write_state(path: Path, state: dict) -> None:
    body = {k: v for k, v in state.items() if k != "stopped" or v}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)

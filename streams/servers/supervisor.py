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
TITLES = {"kafka": "Kafka", "cassandra": "Cassandra"}

PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.5


def up(settings: Settings, *, on_step: Callable[[str], None] | None = None) -> dict:
    """Start what is not running yet, wait until every server answers, write and return the state.

    Idempotent: a recorded PID that is still our server is left running (and waited for if it does
    not answer yet). Each server gets ``settings.startup_timeout_s`` seconds from its launch.
    ``on_step`` receives progress lines such as ``"kafka: formatting storage ..."``.

    Raises
    ------
    ServerError
        ``java``/``mvn`` missing, jar resolution or storage format failed, a server exited while
        starting or did not answer in time (then it is stopped), or a server of this
        ``PULSE_HOME`` runs unrecorded. Servers already answering stay running and recorded.
    """
    step = on_step or (lambda _m: None)
    settings.home.mkdir(parents=True, exist_ok=True)
    old = read_state(settings.state_file)
    state: dict = {"stopped": {n: e for n, e in old.get("stopped", {}).items() if n in SERVERS}}
    state["stopped"].update({n: old[n] for n in SERVERS if isinstance(old.get(n), dict)})
    state["qdrant"] = _qdrant(settings)
    deadlines: dict[str, tuple[float, float]] = {}  # name -> (monotonic launch time, deadline)
    taken: set[int] = set()
    java = None
    for name, module in SERVERS.items():
        entry = state["stopped"].get(name) or {}
        pid = entry.get("pid")
        if name in settings.external:
            if pid and is_ours(pid, name, settings.home):  # keep it recorded, so `down` stops it
                state[name] = state["stopped"].pop(name)
                step(f"{name}: using the external one; the embedded one (PID {pid}) runs until `pulse down`")
            continue
        if pid and is_ours(pid, name, settings.home):
            state[name] = state["stopped"].pop(name)
            if _probe(name, _address(name, entry), settings) is not None:
                step(f"{name}: already running (PID {pid}) at {_address(name, entry)}")
            else:
                step(f"{name}: PID {pid} is running but not answering yet; waiting for it")
                deadlines[name] = (time.monotonic(), time.monotonic() + settings.startup_timeout_s)
            continue
        if pid:  # it died (crash, reboot) without `pulse down`: keep its ports, forget its PID
            state["stopped"][name] = {**entry, "pid": None}
        stray = find_ours(name, settings.home)
        if stray:
            raise ServerError(f"a {TITLES[name]} of PULSE_HOME={settings.home} runs as PID {stray} but is not "
                              f"recorded in {settings.state_file}; stop it (kill {stray}) and run `pulse up` again")
        java = java or _java(step)
        lib, version = resolve_jars(module.POM, module.ARTIFACT, name, settings.cache_dir, step)
        ports = _choose_ports(module.PORTS, entry.get("ports") or {}, taken)
        launch = module.prepare(settings, java, lib, ports, version, step)
        log = settings.home / "logs" / f"{name}.log"
        pid = spawn(launch.argv, launch.cwd, log)
        state["stopped"].pop(name, None)
        state[name] = {**launch.record, "pid": pid, "log": str(log), "started_at": utc_now()}
        _write_state(settings.state_file, state)
        step(f"{name}: started {TITLES[name]} {version} as PID {pid}; waiting for {_address(name, state[name])}")
        deadlines[name] = (time.monotonic(), time.monotonic() + settings.startup_timeout_s)
    _write_state(settings.state_file, state)
    _wait_until_answering(settings, state, deadlines, step)
    _write_state(settings.state_file, state)
    return {k: v for k, v in state.items() if k != "stopped" or v}


def down(settings: Settings) -> list[str]:
    """Stop the recorded servers (SIGTERM, then SIGKILL after :data:`~.processes.STOP_TIMEOUT_S`); keep their data.

    Only PIDs from the state file are signalled, and only while they are still this home's
    server JVMs. Returns one line per server that was stopped or left alone (and why).
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
        pid = entry.get("pid")
        if pid and is_ours(pid, name, settings.home):
            ours[pid] = name
        elif pid and alive(pid):
            lines.append(f"{name}: PID {pid} is no longer Pulse's {TITLES[name]} "
                         f"({' '.join(cmdline(pid) or ['?'])[:120]}); left alone")
        if pid or name in old:
            state["stopped"][name] = {**entry, "pid": None, "stopped_at": utc_now()}
    for pid, how in terminate(list(ours)).items():
        lines.append(f"{ours[pid]}: stopped PID {pid} ({how}); data kept in {entries[ours[pid]].get('data')}")
    _write_state(settings.state_file, state)
    return lines


def status(settings: Settings) -> dict:
    """Per server: ``{"state": "running"|"stopped"|"external", "address", "pid", "answering", ...}``.

    ``answering`` is a live probe (Kafka metadata request, CQL query; about 2 s at most each).
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
        pid = entry.get("pid")
        running = bool(pid) and is_ours(pid, name, settings.home)
        address = _address(name, entry) if entry else None
        answer = _probe(name, address, settings) if running else None
        out[name] = {"state": "running" if running else "stopped", "address": address,
                     "pid": pid if running else None, "answering": answer is not None,
                     "version": entry.get("version"), "log": entry.get("log")}
    if "qdrant" in settings.external:
        out["qdrant"] = {"state": "external", "address": settings.qdrant_url, "pid": None,
                         "answering": _http_ok(f"{settings.qdrant_url.rstrip('/')}/readyz")}
    else:
        out["qdrant"] = {"state": "embedded", "address": str(settings.qdrant_path), "pid": None,
                         "answering": settings.qdrant_path.is_dir()}
    return out


# ------------------------------------------------------------------------------------ waiting


def _wait_until_answering(settings: Settings, state: dict, deadlines: dict[str, tuple[float, float]],
                          step: Callable[[str], None]) -> None:
    while deadlines:
        for name in list(deadlines):
            entry = state[name]
            pid, log, address = entry["pid"], Path(entry["log"]), _address(name, entry)
            if not alive(pid):
                code = exit_code(pid)
                _mark_stopped(settings, state, name)
                how = f" with code {code}" if code is not None else ""
                raise ServerError(f"{TITLES[name]} (PID {pid}) exited{how} while starting on {address}."
                                  f"{tail_message(log)}")
            answer = _probe(name, address, settings)
            launched, deadline = deadlines[name]
            if answer is not None:
                entry["answering_after_s"] = round(time.monotonic() - launched, 1)
                step(f"{name}: answering at {address} after {entry['answering_after_s']} s")
                del deadlines[name]
            elif time.monotonic() > deadline:
                how = terminate([pid]).get(pid, "")
                _mark_stopped(settings, state, name)
                raise ServerError(
                    f"{TITLES[name]} (PID {pid}) did not answer on {address} within "
                    f"{settings.startup_timeout_s:.0f} s, so it was stopped ({how}). On a slow or busy "
                    f"machine raise PULSE_STARTUP_TIMEOUT_S.{tail_message(log)}")
        if deadlines:
            time.sleep(POLL_INTERVAL_S)


def _mark_stopped(settings: Settings, state: dict, name: str) -> None:
    state["stopped"][name] = {**state.pop(name), "pid": None, "stopped_at": utc_now()}
    _write_state(settings.state_file, state)


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

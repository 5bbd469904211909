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
Linux only (``/proc``).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Callable

from ..settings import Settings, read_state
from . import MissingToolError, ServerError, cassandra, kafka, process_marker
from .maven import find_tool, java_major_version, resolve_jars

__all__ = ["ServerError", "MissingToolError", "up", "down", "status"]

SERVERS: dict[str, ModuleType] = {"cassandra": cassandra, "kafka": kafka}
"""Start order: Cassandra first (slowest to start); Kafka's jars and storage format run meanwhile."""
TITLES = {"kafka": "Kafka", "cassandra": "Cassandra"}

PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 60.0
"""How long ``down`` waits after SIGTERM (Kafka's controlled shutdown and Cassandra's flush take ~5-7 s)."""
KILL_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40
LOG_LINE_CHARS = 400
"""Longer log lines (Cassandra's one-line config and classpath dumps) are cut in error messages."""
LOG_ROTATE_BYTES = 20 * 2**20
_BANNER = "==== pulse up:"

_children: dict[int, subprocess.Popen] = {}
"""Processes this Python process started, kept so they can be reaped (no zombies, no ResourceWarning)."""


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
            if pid and _is_ours(pid, name, settings.home):  # keep it recorded, so `down` stops it
                state[name] = state["stopped"].pop(name)
                step(f"{name}: using the external one; the embedded one (PID {pid}) runs until `pulse down`")
            continue
        if pid and _is_ours(pid, name, settings.home):
            state[name] = state["stopped"].pop(name)
            if _probe(name, _address(name, entry), settings) is not None:
                step(f"{name}: already running (PID {pid}) at {_address(name, entry)}")
            else:
                step(f"{name}: PID {pid} is running but not answering yet; waiting for it")
                deadlines[name] = (time.monotonic(), time.monotonic() + settings.startup_timeout_s)
            continue
        if pid:  # it died (crash, reboot) without `pulse down`: keep its ports, forget its PID
            state["stopped"][name] = {**entry, "pid": None}
        stray = _find_ours(name, settings.home)
        if stray:
            raise ServerError(f"a {TITLES[name]} of PULSE_HOME={settings.home} runs as PID {stray} but is not "
                              f"recorded in {settings.state_file}; stop it (kill {stray}) and run `pulse up` again")
        java = java or _java(step)
        lib, version = resolve_jars(module.POM, module.ARTIFACT, name, settings.cache_dir, step)
        ports = _choose_ports(module.PORTS, entry.get("ports") or {}, taken)
        launch = module.prepare(settings, java, lib, ports, version, step)
        log = settings.home / "logs" / f"{name}.log"
        pid = _spawn(launch.argv, launch.cwd, log)
        state["stopped"].pop(name, None)
        state[name] = {**launch.record, "pid": pid, "log": str(log), "started_at": _now()}
        _write_state(settings.state_file, state)
        step(f"{name}: started {TITLES[name]} {version} as PID {pid}; waiting for {_address(name, state[name])}")
        deadlines[name] = (time.monotonic(), time.monotonic() + settings.startup_timeout_s)
    _write_state(settings.state_file, state)
    _wait_until_answering(settings, state, deadlines, step)
    _write_state(settings.state_file, state)
    return {k: v for k, v in state.items() if k != "stopped" or v}


def down(settings: Settings) -> list[str]:
    """Stop the recorded servers (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`); keep their data.

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
        if pid and _is_ours(pid, name, settings.home):
            ours[pid] = name
        elif pid and _alive(pid):
            lines.append(f"{name}: PID {pid} is no longer Pulse's {TITLES[name]} "
                         f"({' '.join(_cmdline(pid) or ['?'])[:120]}); left alone")
        if pid or name in old:
            state["stopped"][name] = {**entry, "pid": None, "stopped_at": _now()}
    for pid, how in _terminate(list(ours)).items():
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
        running = bool(pid) and _is_ours(pid, name, settings.home)
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
            if not _alive(pid):
                code = _children[pid].returncode if pid in _children else None
                _mark_stopped(settings, state, name)
                how = f" with code {code}" if code is not None else ""
                raise ServerError(f"{TITLES[name]} (PID {pid}) exited{how} while starting on {address}."
                                  f"{_tail_message(log)}")
            answer = _probe(name, address, settings)
            launched, deadline = deadlines[name]
            if answer is not None:
                entry["answering_after_s"] = round(time.monotonic() - launched, 1)
                step(f"{name}: answering at {address} after {entry['answering_after_s']} s")
                del deadlines[name]
            elif time.monotonic() > deadline:
                how = _terminate([pid]).get(pid, "")
                _mark_stopped(settings, state, name)
                raise ServerError(
                    f"{TITLES[name]} (PID {pid}) did not answer on {address} within "
                    f"{settings.startup_timeout_s:.0f} s, so it was stopped ({how}). On a slow or busy "
                    f"machine raise PULSE_STARTUP_TIMEOUT_S.{_tail_message(log)}")
        if deadlines:
            time.sleep(POLL_INTERVAL_S)


def _mark_stopped(settings: Settings, state: dict, name: str) -> None:
    state["stopped"][name] = {**state.pop(name), "pid": None, "stopped_at": _now()}
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


# ---------------------------------------------------------------------------------- processes


def _java(step: Callable[[str], None]) -> str:
    java = find_tool("java", "run Kafka and Cassandra")
    major = java_major_version(java)
    if major < 17:
        raise ServerError(f"{java} is Java {major}; Kafka 4 needs Java 17 (Cassandra 5.0 runs on 11 and 17). "
                          f"Install OpenJDK 17 or set JAVA_HOME to one.")
    if major > 17:
        step(f"warning: {java} is Java {major}; Cassandra 5.0 supports Java 11 and 17 only")
    return java


def _spawn(argv: list[str], cwd: Path, log: Path) -> int:
    """Start ``argv`` detached (new session, stdin closed) with stdout+stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists() and log.stat().st_size > LOG_ROTATE_BYTES:
        log.replace(log.with_name(log.name + ".1"))
    env = {k: v for k, v in os.environ.items() if k != "CLASSPATH"}
    with open(log, "ab") as out:
        out.write(f"\n{_BANNER} {_now()} in {cwd}: {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _children[proc.pid] = proc
    return proc.pid


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a] or None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (and is reaped when it is our child)."""
    if pid in _children:
        return _children[pid].poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def _is_ours(pid: int, name: str, home: Path) -> bool:
    args = _cmdline(pid)
    return (bool(args) and os.path.basename(args[0]) == "java"
            and process_marker(name, home) in args and _alive(pid))


def _find_ours(name: str, home: Path) -> int | None:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _is_ours(int(proc.name), name, home):
            return int(proc.name)
    return None


def _terminate(pids: list[int]) -> dict[int, str]:
    """SIGTERM every PID, wait up to :data:`STOP_TIMEOUT_S`, SIGKILL the rest; ``{pid: how}``."""
    t0, done = time.monotonic(), {}
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    for sig, limit in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S + KILL_TIMEOUT_S)):
        if sig == signal.SIGKILL:
            for pid in pids:
                if pid not in done:
                    _signal(pid, signal.SIGKILL)
        while len(done) < len(pids) and time.monotonic() - t0 < limit:
            for pid in pids:
                if pid not in done and not _alive(pid):
                    done[pid] = f"{sig.name}, {time.monotonic() - t0:.1f} s"
            time.sleep(0.1)
    for pid in pids:
        done.setdefault(pid, "still running after SIGKILL")
    return done


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _tail_message(log: Path) -> str:
    lines = log_tail(log)
    if not lines:
        return f" Its log {log} is empty."
    shown = (line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS] + " [...]" for line in lines)
    return f" Last {len(lines)} lines of {log}:\n" + "\n".join("    " + line for line in shown)


def log_tail(log: Path, n: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``n`` lines a server wrote to ``log`` since its latest start (``[]`` if none)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 256 * 1024))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    starts = [i for i, line in enumerate(lines) if line.startswith(_BANNER)]
    if starts:
        lines = lines[starts[-1] + 1:]
    return lines[-n:]


# -------------------------------------------------------------------------------- ports, state


def _choose_ports(names: tuple[str, ...], previous: dict, taken: set[int]) -> dict[str, int]:
    """A port per name: the previous one while it is free, else a fresh free one; all distinct."""
    ports = {}
    for name in names:
        port = previous.get(name)
        if not (isinstance(port, int) and port not in taken and _port_free(port)):
            port = _free_port(taken)
        ports[name] = port
        taken.add(port)
    return ports


def _port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port(taken: set[int]) -> int:
    """A free port below the kernel's ephemeral range, so outgoing connections never occupy it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low > 16000:
        for _ in range(200):
            port = random.randrange(15000, low)
            if port not in taken and _port_free(port):
                return port
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


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


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")

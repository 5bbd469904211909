"""Process and port plumbing for the embedded servers (Linux only: it reads ``/proc``).

Start a command detached with its output appended to a log (:func:`spawn`), recognise a PID as
one of this ``PULSE_HOME``'s server JVMs by its command line (:func:`is_ours`), stop PIDs with
SIGTERM then SIGKILL (:func:`terminate`), show the log lines of a server's latest start
(:func:`log_tail`, :func:`tail_message`) and find free ports on 127.0.0.1 (:func:`port_free`,
:func:`free_port`). :mod:`.supervisor` decides what to start and stop and records it.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from streams.servers import process_marker

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


# ---------------------------------------------------------------------------------- processes


def spawn(argv: list[str], cwd: Path, log: Path) -> int:
    """Start ``argv`` detached (new session, stdin closed) with stdout+stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists() and log.stat().st_size > LOG_ROTATE_BYTES:
        log.replace(log.with_name(log.name + ".1"))
    env = {k: v for k, v in os.environ.items() if k != "CLASSPATH"}
    with open(log, "ab") as out:
        out.write(f"\n{_BANNER} {utc_now()} in {cwd}: {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _children[proc.pid] = proc
    return proc.pid


def exit_code(pid: int) -> int | None:
    """The exit code of a process this Python process spawned and has seen exit, else ``None``."""
    return _children[pid].returncode if pid in _children else None


def cmdline(pid: int) -> list[str] | None:
    """The arguments of ``pid`` from ``/proc/<pid>/cmdline``, or ``None`` when it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a] or None


def alive(pid: int) -> bool:
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


def is_ours(pid: int, name: str, home: Path) -> bool:
    """Whether ``pid`` runs and is a ``java`` command carrying :func:`process_marker` ``(name, home)``."""
    args = cmdline(pid)
    return (bool(args) and os.path.basename(args[0]) == "java"
            and process_marker(name, home) in args and alive(pid))


def find_ours(name: str, home: Path) -> int | None:
    """The PID of a running server ``name`` of ``home`` (see :func:`is_ours`), or ``None``."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and is_ours(int(proc.name), name, home):
            return int(proc.name)
    return None


def terminate(pids: list[int]) -> dict[int, str]:
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
                if pid not in done and not alive(pid):
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


# ---------------------------------------------------------------------------------------- logs


def tail_message(log: Path) -> str:
    """The end of an error message about a server: the lines of :func:`log_tail` ``(log)``, indented
    and cut at :data:`LOG_LINE_CHARS`, or a note that the log is empty."""
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


def utc_now() -> str:
    """Now as ISO 8601 UTC with milliseconds (``2024-05-01T12:00:00.000+00:00``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------------------- ports


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port(taken: set[int]) -> int:
    """A free port below the kernel's ephemeral range, so outgoing connections never occupy it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low > 16000:
        for _ in range(200):
            port = random.randrange(15000, low)
            if port not in taken and port_free(port):
                return port
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port

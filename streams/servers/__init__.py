"""Embedded Apache Kafka and Apache Cassandra for one machine: ``pulse up`` / ``down`` / ``status``.

Pulse runs the servers' own official jars from Maven Central; nothing here imitates a server.

- :mod:`.maven` resolves the jars once per version into ``$PULSE_CACHE`` (``mvn dependency:copy-dependencies``).
- :mod:`.kafka` writes a KRaft ``server.properties`` (broker + controller) per node, alone or in
  a cluster of N (``pulse up --brokers N``), formats the storage once and builds the
  ``kafka.Kafka`` command; its probe is a real metadata request.
- :mod:`.cassandra` writes ``cassandra.yaml`` per node, alone or in a ring on 127.0.0.1-N
  (``pulse up --cassandra-nodes N``), and builds the ``CassandraDaemon`` command with the Java 17
  flags of Cassandra's own ``conf/jvm17-server.options``; its probe is a CQL query.
- :mod:`.processes` is the process and port plumbing: spawning detached JVMs, checking a PID's
  ``/proc`` command line, signalling, log tails, free ports.
- :mod:`.supervisor` picks the ports, starts the servers, waits until they answer, records them
  in ``$PULSE_HOME/servers.json`` and stops them by PID.

Only the errors, :class:`Launch` and :func:`process_marker` live here, so the modules
can share them without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServerError", "MissingToolError", "Launch", "process_marker"]


def process_marker(name: str, home: Path) -> str:
    """The ``-Dpulse.server=<name>@<home>`` JVM argument that tags a server process as Pulse's.

    The JVM ignores the property; ``down`` and ``status`` look for it, as one exact argument, in
    ``/proc/<pid>/cmdline`` before they signal or report a recorded PID.
    """
    return f"-Dpulse.server={name}@{home}"


class ServerError(RuntimeError):
    """A server could not be resolved, started, reached or stopped.

    The message says what failed and what to do; when a server exited or timed out it ends with
    the last lines of that server's log.
    """


class MissingToolError(ServerError):
    """``java`` or ``mvn`` is not installed, so the embedded servers cannot run on this machine."""


@dataclass(frozen=True)
class Launch:
    """Everything the supervisor needs to start one server process and recognise it later.

    Attributes
    ----------
    argv:
        The full command (``[java, ...flags, main class, ...]``).
    cwd:
        Working directory of the process (the server's directory under ``$PULSE_HOME``).
    marker:
        :func:`process_marker` of this server and ``PULSE_HOME``, also present in ``argv``;
        ``down`` signals a PID only when its command line is a ``java`` command containing it.
    record:
        What the state file records for the server besides PID, log and timestamps (address,
        ports, data directory, config path, version, cluster id, ...).
    """

    argv: list[str]
    cwd: Path
    marker: str
    record: dict = field(default_factory=dict)

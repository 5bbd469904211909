"""Session-wide fixtures shared by every test tier.

``servers`` gives integration tests a real Apache Kafka broker and a real Apache Cassandra node:

- by default ``pulse up``'s own launcher starts both in a temporary ``PULSE_HOME`` (jars come from
  the normal ``PULSE_CACHE``, so they are resolved once per machine, not once per run) and
  ``pulse down``'s stops them by PID when the session ends;
- ``PULSE_TEST_KAFKA_BOOTSTRAP`` / ``PULSE_TEST_CASSANDRA_HOSTS`` point the tests at servers
  that run elsewhere instead (each on its own: set one and only the other is started);
- without ``java`` (or without ``mvn`` before the jars are cached) the tests that need servers
  are skipped with the reason.

The fixture is lazy: only tests that request it start the servers. A watchdog process stops them
should the pytest process die without running its teardown.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from streams.settings import REPO_ROOT, Settings

PASSED_THROUGH = ("PULSE_CACHE", "PULSE_KAFKA_HEAP", "PULSE_CASSANDRA_HEAP", "PULSE_STARTUP_TIMEOUT_S",
                  "PULSE_CASSANDRA_PROTOCOL")
"""Variables of the outer environment the test servers honour; every other ``PULSE_*`` is ignored."""


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for ``Settings.from_env``: ``PULSE_HOME=home``, the passed-through variables, ``extra``."""
    env = {k: os.environ[k] for k in PASSED_THROUGH if os.environ.get(k)}
    env["PULSE_HOME"] = str(home)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings whose ``kafka_bootstrap`` and ``cassandra_hosts`` answer; servers stop at session end."""
    from streams.servers.supervisor import MissingToolError, down, up

    extra = {}
    if os.environ.get("PULSE_TEST_KAFKA_BOOTSTRAP"):
        extra["PULSE_KAFKA_BOOTSTRAP"] = os.environ["PULSE_TEST_KAFKA_BOOTSTRAP"]
    if os.environ.get("PULSE_TEST_CASSANDRA_HOSTS"):
        extra["PULSE_CASSANDRA_HOSTS"] = os.environ["PULSE_TEST_CASSANDRA_HOSTS"]
    env = server_env(tmp_path_factory.mktemp("pulse-home"), **extra)
    settings = Settings.from_env(env)
    watchdog = _watchdog(settings.home) if {"kafka", "cassandra"} - settings.external else None
    try:
        try:
            up(settings)
        except MissingToolError as exc:
            pytest.skip(f"no embedded servers: {exc}")
        yield Settings.from_env(env)  # re-read: the state file now holds the chosen addresses
    finally:
        down(settings)  # also what did start before a failure
        if watchdog is not None:
            watchdog.terminate()
            watchdog.wait()


_WATCHDOG = """
import os, sys, time
from streams.settings import Settings
from streams.servers.supervisor import down
pid, home = int(sys.argv[1]), sys.argv[2]
def alive():
    try:
        return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False
while alive():
    time.sleep(2)
down(Settings.from_env({"PULSE_HOME": home}))
"""


def _watchdog(home: Path) -> subprocess.Popen:
    """A detached process that runs ``down`` for ``home`` once this pytest process is gone.

    The fixture's own teardown stops the servers; this covers a session that is killed (SIGKILL,
    a CI job timeout), which would otherwise leave two JVMs (~2 GB) running on a shared machine.
    """
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(home)], cwd=REPO_ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

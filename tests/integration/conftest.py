"""Fixtures for tests on the real broker and Cassandra: topics and views applied once, worker
processes started and stopped by PID, and a polling helper (no sleeps with fixed outcomes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from streams.settings import REPO_ROOT, Settings
from tests.media_roots import TEST_MEDIA_READ_ROOTS, TEST_MEDIA_ROOTS


@pytest.fixture(scope="session")
def pipeline(servers: Settings) -> Settings:
    """The test servers with every catalog topic created and the view schema applied; media is
    read from the tests' media roots (:data:`tests.media_roots.TEST_MEDIA_ROOTS`) and the store."""
    from streams.stores.cassandra import apply_schema
    from streams.servers.topics_admin import create_topics

    create_topics(servers)
    apply_schema(servers)
    return servers.with_(media_read_roots=TEST_MEDIA_ROOTS)


def worker_env(settings: Settings, app_id: str, **extra: str) -> dict[str, str]:
    """Environment for a `pulse worker` child using the test servers and consumer group ``app_id``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update(PULSE_HOME=str(settings.home), PULSE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               PULSE_CASSANDRA_HOSTS=",".join(settings.cassandra_hosts), PULSE_APP_ID=app_id,
               PULSE_SESSION_TIMEOUT_S="6", PULSE_MEDIA_READ_ROOTS=TEST_MEDIA_READ_ROOTS)
    env.update(extra)
    return env


class Workers:
    """Starts `pulse worker` processes; stops every one still alive at teardown."""

    def __init__(self, settings: Settings, logs: Path):
        self.settings, self.logs, self.procs = settings, logs, []

    def start(self, app_id: str, agents: str = "materializer", loglevel: str | None = None,
              **extra: str) -> subprocess.Popen:
        """A worker of group ``app_id``; ``loglevel`` (default PULSE_TEST_WORKER_LOGLEVEL, else
        warning): info logs Faust's table recovery and ``Worker ready`` (:func:`ready`)."""
        log = open(self.logs / f"worker-{len(self.procs)}.log", "wb")
        level = loglevel or os.environ.get("PULSE_TEST_WORKER_LOGLEVEL", "warning")
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--agents", agents,
                                 "--loglevel", level],
                                env=worker_env(self.settings, app_id, **extra), cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log.name
        self.procs.append(proc)
        return proc

    @staticmethod
    def ready(proc: subprocess.Popen) -> bool:
        """Whether a worker started with ``loglevel="info"`` finished its start-up: Faust logs
        ``Worker ready`` once its recovery has resumed the source partitions and flow control."""
        return "Worker ready" in Path(proc.log_path).read_text(errors="replace")

    def log(self, proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text(errors="replace")[-4000:]

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def workers(pipeline: Settings, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(pipeline, tmp_path)
    try:
        yield w
    finally:
        w.stop_all()


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.5, diagnose: Callable[[], str] = lambda: "") -> object:
    """Poll ``predicate`` until truthy; fail the test with ``what`` (and ``diagnose()``) on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{diagnose()}")
        time.sleep(interval_s)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"

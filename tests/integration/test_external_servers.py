"""Pointing Pulse at servers it did not start: `pulse up` starts nothing, only provisions."""
from __future__ import annotations

import json
import subprocess
import sys

from streams.settings import REPO_ROOT

from tests.integration.conftest import worker_env


def run(env, *args):
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def java_pids_of(home) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"pulse.server=.*@{home}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_up_with_external_kafka_and_cassandra_starts_nothing(pipeline, tmp_path):
    home = tmp_path / "client-home"
    env = worker_env(pipeline, "external-test", PULSE_HOME=str(home))
    up = run(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Traceback" not in up.stderr
    assert "already there" in up.stdout  # the catalog's topics exist on the external cluster
    assert java_pids_of(home) == []
    status = json.loads(run(env, "status", "--json").stdout)
    assert status["kafka"]["state"] == "external" and status["cassandra"]["state"] == "external"
    assert status["kafka"]["address"] == pipeline.kafka_bootstrap
    down = run(env, "down")
    assert down.returncode == 0 and "Traceback" not in down.stderr
    # the external servers still answer after `pulse down` of the client home
    assert run(env, "topics", "list", "--json").returncode == 0

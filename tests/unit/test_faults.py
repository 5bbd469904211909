"""Fault injection (streams.runtime.faults): parsing ``PULSE_CRASH_POINT`` and killing the process
with SIGKILL at the n-th time the chosen agent reaches the chosen step, and never otherwise."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from streams.runtime.faults import POINTS, CrashPointError, CrashPoints
from streams.settings import REPO_ROOT


@pytest.mark.parametrize("raw, agent, point, nth", [
    ("publisher:after-sinks", "publisher", "after-sinks", 1),
    ("publisher:after-state:3", "publisher", "after-state", 3),
    ("materializer:after-process:1", "materializer", "after-process", 1),
    ("copyright_guard:after-emits:12", "copyright_guard", "after-emits", 12),
])
def test_valid_crash_points_parse(raw, agent, point, nth):
    c = CrashPoints.parse(raw)
    assert (c.agent, c.point, c.nth, c.seen) == (agent, point, nth, 0)


@pytest.mark.parametrize("raw", ["", None])
def test_unset_disables(raw):
    c = CrashPoints.parse(raw)
    assert c.agent is None
    for point in POINTS:
        c.reached("publisher", point)  # returns: nothing to kill
    assert c.seen == 0


@pytest.mark.parametrize("raw, message", [
    ("publisher", "expected <agent>:<point>[:<n>] with point one of after-process, after-sinks, "
                  "after-emits, after-state, lose-batch"),
    ("publisher:after-lunch", "expected <agent>:<point>[:<n>]"),
    ("publisher:after-sinks:1:2", "expected <agent>:<point>[:<n>]"),
    (":after-sinks", "expected <agent>:<point>[:<n>]"),
    ("publisher:AFTER-SINKS", "expected <agent>:<point>[:<n>]"),
    ("publisher:after-sinks:0", "n must be a positive integer"),
    ("publisher:after-sinks:-1", "n must be a positive integer"),
    ("publisher:after-sinks:two", "n must be a positive integer"),
    ("publisher:after-sinks:", "n must be a positive integer"),
    ("publisher:after-sinks:\u00b2", "n must be a positive integer"),
])
def test_malformed_crash_points_are_clear_errors(raw, message):
    with pytest.raises(CrashPointError) as err:
        CrashPoints.parse(raw)
    text = str(err.value)
    assert text.startswith(f"PULSE_CRASH_POINT={raw!r}: ") and message in text
    assert isinstance(err.value, ValueError)


def run_points(crash: str, calls: list[tuple[str, str]]) -> subprocess.CompletedProcess:
    """Run ``reached`` for each call in a subprocess, printing the call's index after it."""
    code = textwrap.dedent(f"""
        from streams.runtime.faults import CrashPoints
        c = CrashPoints.parse({crash!r})
        for i, (agent, point) in enumerate({calls!r}):
            c.reached(agent, point)
            print(i, flush=True)
        print("survived", flush=True)
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)


def test_reached_kills_the_process_with_sigkill_at_the_nth_hit():
    calls = [("publisher", "after-sinks"),    # 0: hit 1
             ("materializer", "after-sinks"),  # 1: another agent
             ("publisher", "after-emits"),     # 2: another point
             ("publisher", "after-sinks"),     # 3: hit 2
             ("publisher", "after-sinks"),     # 4: hit 3 -> killed
             ("publisher", "after-sinks")]
    out = run_points("publisher:after-sinks:3", calls)
    assert out.returncode == -signal.SIGKILL == -9, out.stderr
    assert out.stdout.split() == ["0", "1", "2", "3"]
    assert "killing the worker at publisher:after-sinks (batch 3)" in out.stderr


def test_reached_kills_at_the_first_hit_by_default():
    out = run_points("materializer:after-process", [("publisher", "after-process"),
                                                    ("materializer", "after-process")])
    assert out.returncode == -9 and out.stdout.split() == ["0"]


def test_reached_does_nothing_for_other_agents_and_points():
    calls = [(agent, point) for agent in ("materializer", "publisher_2", "Publisher")
             for point in POINTS] + [("publisher", p) for p in POINTS if p != "after-state"]
    out = run_points("publisher:after-state", calls)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "survived"


def test_lose_batch_drops_only_the_nth_batch_of_its_agent_and_never_kills():
    c = CrashPoints.parse("publisher:lose-batch:2")
    assert (c.agent, c.point, c.nth) == ("publisher", "lose-batch", 2)
    assert [c.loses("materializer"), c.loses("publisher"), c.loses("publisher"),
            c.loses("publisher")] == [False, False, True, False]
    for point in POINTS:
        c.reached("publisher", point)  # a lose-batch configuration kills nothing
    assert not CrashPoints.parse("publisher:after-sinks").loses("publisher")
    assert not CrashPoints.parse("").loses("publisher")

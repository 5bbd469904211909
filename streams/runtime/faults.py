"""Fault injection: kill the worker at a chosen step of a chosen agent's batch.

``PULSE_CRASH_POINT=<agent>:<point>[:<n>]`` makes the worker SIGKILL itself (no clean-up, no
commit, as a power cut or the OOM killer would) the ``n``-th time (default 1) a batch of
``agent`` reaches ``point``, one of :data:`POINTS` (the steps of
:func:`streams.runtime.binding.bind`):

* ``after-process`` — the batch's effects and state changes are computed, nothing written;
* ``after-sinks`` — view rows and vector points are written;
* ``after-emits`` — emitted events are sent and flushed, state not yet written;
* ``after-state`` — state and positions are in the changelog; the events are not yet
  acknowledged, so their offsets are not committed.

``PULSE_CRASH_POINT=<agent>:lose-batch[:<n>]`` instead drops the ``n``-th batch after processing:
nothing written, nothing acknowledged, the events forgotten, as a batch lost inside the worker
would be. Faust then never commits past it; the consumer's commit watchdog
(:mod:`streams.runtime.transport`) must notice and deliver the events again.

Used by ``tests/integration/test_crash_safety.py`` to prove that a restart after a kill at any
point gives the views and output topics of a run without the fault. Unset (the default), the
checks cost one attribute test per step.
"""
from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

log = logging.getLogger("pulse.faults")

POINTS = ("after-process", "after-sinks", "after-emits", "after-state")
LOSE_BATCH = "lose-batch"


class CrashPointError(ValueError):
    """``PULSE_CRASH_POINT`` is malformed; the message shows the expected form."""


@dataclass
class CrashPoints:
    """The parsed ``PULSE_CRASH_POINT`` (``agent`` ``None``: disabled)."""

    agent: str | None = None
    point: str | None = None
    nth: int = 1
    seen: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "CrashPoints":
        """Parse ``<agent>:<point>[:<n>]``; empty or ``None`` disables.

        Raises
        ------
        CrashPointError
            Wrong number of parts, an empty agent, an unknown point, or ``n`` not a positive
            integer.
        """
        if not raw:
            return cls()
        parts = raw.split(":")
        if len(parts) not in (2, 3) or not parts[0] or parts[1] not in POINTS + (LOSE_BATCH,):
            raise CrashPointError(f"PULSE_CRASH_POINT={raw!r}: expected <agent>:<point>[:<n>] with "
                                  f"point one of {', '.join(POINTS + (LOSE_BATCH,))}")
        nth = 1
        if len(parts) == 3:
            # isascii: str.isdigit also accepts digits such as '²' that int() refuses
            if not (parts[2].isascii() and parts[2].isdigit()) or int(parts[2]) < 1:
                raise CrashPointError(f"PULSE_CRASH_POINT={raw!r}: n must be a positive integer")
            nth = int(parts[2])
        return cls(parts[0], parts[1], nth)

    def reached(self, agent: str, point: str) -> None:
        """Called by the runtime at each step; kills this process when the configured step is
        reached for the ``nth`` time."""
        if self.agent is None or agent != self.agent or point != self.point:
            return
        self.seen += 1
        if self.seen >= self.nth:
            log.warning("PULSE_CRASH_POINT: killing the worker at %s:%s (batch %d)", agent, point,
                        self.seen)
            for h in logging.getLogger().handlers:
                h.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def loses(self, agent: str) -> bool:
        """Called by the runtime after each batch of ``agent`` is processed: ``True`` exactly once,
        for the ``nth`` batch when the configured point is ``lose-batch``."""
        if self.agent is None or agent != self.agent or self.point != LOSE_BATCH:
            return False
        self.seen += 1
        if self.seen == self.nth:
            log.warning("PULSE_CRASH_POINT: dropping batch %d of %s unacknowledged", self.seen, agent)
            return True
        return False

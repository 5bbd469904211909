"""Benchmarks behind `pulse bench ...`: each returns one JSON-able dict with its figures and a
baseline measured in the same run (a ratio > 1 means Pulse is faster than the baseline)."""

from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def bench_servers(prefix: str = "pulse-bench-", on_step: Callable[[str], None] = lambda m: None,
                  **env_extra: str) -> Iterator[tuple]:
    """Kafka and Cassandra of a benchmark's own, in a temporary ``PULSE_HOME`` (removed
    afterwards): yields ``(settings, home, up_seconds)`` once both answer (``up_seconds``: how
    long the cold start took), and stops them on exit. Only ``PULSE_CACHE`` and the servers'
    heap settings are taken from the environment, plus ``env_extra``."""
    import os
    import tempfile
    import time
    from pathlib import Path

    from streams.servers.supervisor import down, up
    from streams.settings import Settings

    with tempfile.TemporaryDirectory(prefix=prefix) as home:
        env = {k: v for k, v in os.environ.items() if k in ("PULSE_CACHE", "PULSE_KAFKA_HEAP",
                                                            "PULSE_CASSANDRA_HEAP")}
        env.update(env_extra, PULSE_HOME=home)
        first = Settings.from_env(env)
        on_step("pulse up (cold)")
        began = time.perf_counter()
        up(first, on_step=on_step)
        up_seconds = time.perf_counter() - began
        try:
            yield Settings.from_env(env), Path(home), up_seconds  # re-read: up wrote the addresses
        finally:
            down(first)

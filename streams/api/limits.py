"""Rate limits of the HTTP API: one token bucket per API key and per user, in process.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; each request takes
one, and a request that finds the bucket empty is refused with 429 and ``Retry-After`` (whole
seconds until a token is back). The buckets live in the API process: with N API processes behind
a load balancer a key gets up to N times its rate (a shared limiter, e.g. in Redis, would be the
production answer when that matters). At most :data:`MAX_BUCKETS` are kept, least recently used
dropped (a dropped bucket comes back full, which only ever allows more).
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Callable

MAX_BUCKETS = 100_000


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full. Not thread-safe on its own."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate, self.burst, self.tokens, self.at = float(rate), float(burst), float(burst), now

    def take(self, now: float) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be (nothing taken)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Buckets by identity (``"key:<id>"``, ``"user:<id>"``), each with the ``(rate, burst)`` of
    its kind. Thread-safe."""

    def __init__(self, limits: dict[str, tuple[float, int]], clock: Callable[[], float] = time.monotonic,
                 max_buckets: int = MAX_BUCKETS) -> None:
        self.limits = dict(limits)
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, identity: str) -> int:
        """0 when ``identity`` may make a request now, else the ``Retry-After`` seconds (>= 1)."""
        kind = identity.split(":", 1)[0]
        rate, burst = self.limits[kind]
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(identity)
            if bucket is None:
                bucket = self._buckets[identity] = TokenBucket(rate, burst, now)
                if len(self._buckets) > self._max:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(identity)
            wait = bucket.take(now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))

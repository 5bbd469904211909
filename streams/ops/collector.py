"""The dashboard's collector: once a second, one :class:`~streams.ops.snapshot.Reading` of the
workers, Kafka and the views, turned into a snapshot; about 15 minutes of them kept in memory.

Sources, each read in the collector's own thread (a failing one is reported in the snapshot's
``errors`` and the others go on):

* the workers' ``/metrics`` (the discovery files of :mod:`streams.runtime.metrics` under
  ``$PULSE_HOME/run/metrics/``, plus ``extra_targets``), parsed with
  ``prometheus_client.parser`` and summed over workers;
* consumer lag of every discovered worker's group on its agents' topics
  (:class:`~streams.ops.kafka.LagReader`), plus ``extra_groups``;
* the review queue (``review_pending``: tasks and oldest age per queue) and open trends
  (:func:`streams.query.trends.read_trends`) from the views, through the process's read side;
* moderation decisions by tier and action, copyright verdicts and matches, and dead letters by
  consumer and error type from their topics (:class:`~streams.ops.kafka.TopicTally`): no view
  aggregates them.

Subscribers (the server-sent-events streams) get each new snapshot through
:meth:`Collector.wait_newer`.
"""
from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections import deque
from typing import Any, Callable, Iterable

from streams.ops.snapshot import (RATE_WINDOW_S, Reading, build_snapshot, history_point, sum_samples)
from streams.settings import Settings

log = logging.getLogger("pulse.ops")

#: Seconds between two readings.
INTERVAL_S = 1.0
#: Seconds of snapshots kept (the charts' time span).
HISTORY_S = 15 * 60
QUEUES = ("moderation", "copyright")
SCRAPE_TIMEOUT_S = 2.0


def scrape(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> list[tuple[str, dict[str, str], float]]:
    """``[(sample name, labels, value)]`` of one Prometheus text endpoint.

    Raises ``OSError`` (``urllib.error.URLError``) when it does not answer, ``ValueError`` when
    the text does not parse.
    """
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - our own workers' URLs
        text = resp.read().decode("utf-8")
    out = []
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("pulse_"):
            continue  # the process collector's series stay on the worker
        for s in fam.samples:
            out.append((s.name, dict(s.labels), float(s.value)))
    return out


def review_queue(rs: Any, now_ms: int) -> list[dict[str, Any]]:
    """``[{"queue", "tasks", "oldest_age_s"}]`` from ``review_pending`` (one partition per queue,
    oldest first; ``oldest_age_s`` None for an empty queue; ages from the tasks' creation
    event times)."""
    out = []
    for q in QUEUES:
        n = rs.execute("SELECT COUNT(*) AS n FROM {ks}.review_pending WHERE queue = ?", (q,)).one().n
        first = rs.execute("SELECT created_at FROM {ks}.review_pending WHERE queue = ? LIMIT 1", (q,)).one()
        oldest = None
        if first is not None and first.created_at is not None:
            from datetime import timezone

            t = first.created_at.replace(tzinfo=timezone.utc).timestamp() * 1000
            oldest = max(0.0, (now_ms - t) / 1000.0)
        out.append({"queue": q, "tasks": int(n), "oldest_age_s": oldest})
    return out


def open_trends(rs: Any, limit: int = 10) -> list[dict[str, Any]]:
    """The open trends (STARTED, ONGOING), best burst first, per kind."""
    from streams.query.trends import read_trends

    return [{"kind": t.subject_kind, "subject": t.subject, "state": t.state,
             "burst_score": t.burst_score, "count": t.count} for t in read_trends(rs, None, limit=limit)]


class Collector:
    """Reads everything every :data:`INTERVAL_S` in a daemon thread (:meth:`start`), or once per
    :meth:`tick` (tests). Thread-safe readers: :meth:`latest`, :meth:`history`,
    :meth:`wait_newer`.

    Parameters
    ----------
    settings:
        ``home`` (discovery), Kafka and Cassandra addresses.
    read_side:
        The process's :class:`~streams.query.read_side.ReadSide` (None: views not read).
    extra_targets:
        More ``/metrics`` URLs to scrape (workers on other hosts).
    extra_groups:
        More ``{consumer group: topics}`` to report lag for.
    clock:
        Wall clock, seconds.
    """

    def __init__(self, settings: Settings, read_side: Any = None, *, extra_targets: Iterable[str] = (),
                 extra_groups: dict[str, Iterable[str]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.read_side = read_side
        self.extra_targets = list(extra_targets)
        self.extra_groups = {g: list(t) for g, t in (extra_groups or {}).items()}
        self._clock = clock
        self._readings: deque[Reading] = deque(maxlen=int(RATE_WINDOW_S / INTERVAL_S) + 3)
        self._history: deque[dict] = deque(maxlen=int(HISTORY_S / INTERVAL_S))
        self._latest: dict | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lag = None
        self._tallies: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    # ---------------------------------------------------------------------------- lifetime

    def start(self) -> "Collector":
        """Start the reading thread (idempotent); returns self."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pulse-ops-collector", daemon=True)
                self._thread.start()
        return self

    def close(self) -> None:
        """Stop the reading thread and close the Kafka clients (left to the garbage collector
        when the thread is still inside a read after 15 s: closing a librdkafka client another
        thread is using crashes the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            if self._thread.is_alive():
                log.warning("ops collector still reading after 15 s; its Kafka clients are not closed")
                return
        for t in self._tallies.values():
            t.close()
        if self._lag is not None:
            self._lag.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the loop must survive anything one reading does
                log.exception("ops collector tick failed")
            self._stop.wait(max(0.05, INTERVAL_S - (time.monotonic() - started)))

    # ------------------------------------------------------------------------------ reading

    def _guard(self, name: str, fn: Callable[[], Any], default: Any) -> Any:
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - reported in the snapshot, retried next tick
            if self.errors.get(name) != str(exc):
                log.warning("ops: reading %s failed: %s", name, exc)
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            return default
        self.errors.pop(name, None)
        return value

    def _tally(self, topic: str):
        t = self._tallies.get(topic)
        if t is None:
            from streams.ops.kafka import (TopicTally, copyright_key, dead_letter_key, dead_letter_sample,
                                           moderation_key)

            key = {"moderation-verdicts": moderation_key, "copyright-verdicts": copyright_key,
                   "dead-letters": dead_letter_key}[topic]
            t = self._tallies[topic] = TopicTally(self.settings, topic, key,
                                                  sample=dead_letter_sample if topic == "dead-letters" else None)
        return t.poll()

    def read(self) -> Reading:
        """One reading of every source (errors recorded in :attr:`errors`)."""
        from streams.runtime.metrics import discovered_workers

        now = self._clock()
        workers = discovered_workers(self.settings.home)
        targets = [(w.get("url"), w) for w in workers] + [(u, {"url": u}) for u in self.extra_targets]
        scrapes, shown = [], []
        for url, info in targets:
            samples = self._guard(f"scrape {url}", lambda u=url: scrape(u), None)
            shown.append({"pid": info.get("pid"), "url": url, "app_id": info.get("app_id"),
                          "agents": info.get("agents", []), "up": samples is not None})
            if samples is not None:
                scrapes.append(samples)
        reading = Reading(at=now, samples=sum_samples(scrapes), workers=shown)
        groups: dict[str, set[str]] = {}
        for w in workers:
            groups.setdefault(w.get("app_id") or self.settings.app_id, set()).update(w.get("topics", []))
        for g, topics in self.extra_groups.items():
            groups.setdefault(g, set()).update(topics)
        if self.settings.kafka_bootstrap:
            def lag():
                if self._lag is None:
                    from streams.ops.kafka import LagReader

                    self._lag = LagReader(self.settings, clock=self._clock)
                return self._lag.read(groups)

            reading.lag = self._guard("kafka lag", lag, [])
            reading.moderation = dict(self._guard("moderation-verdicts", lambda: self._tally("moderation-verdicts"), {}))
            cr = self._guard("copyright-verdicts", lambda: self._tally("copyright-verdicts"), {})
            reading.copyright_verdicts = {v: n for (kind, v), n in cr.items() if kind == "verdict"}
            reading.copyright_matches = {v: n for (kind, v), n in cr.items() if kind == "match"}
            reading.dead_letters = dict(self._guard("dead-letters", lambda: self._tally("dead-letters"), {}))
            tally = self._tallies.get("dead-letters")
            reading.recent_dead_letters = list(reversed(tally.recent)) if tally is not None else []
        if self.read_side is not None:
            reading.review_queue = self._guard("review queue", lambda: review_queue(self.read_side, int(now * 1000)), [])
            reading.trends = self._guard("trends", lambda: open_trends(self.read_side), [])
        return reading

    def tick(self) -> dict:
        """Read once, build the snapshot, keep it; returns it."""
        reading = self.read()
        # the newest kept reading about RATE_WINDOW_S old (while fewer are kept: the oldest)
        before = None
        for r in self._readings:
            if reading.at - r.at >= RATE_WINDOW_S - INTERVAL_S / 2:
                before = r
        if before is None and self._readings:
            before = self._readings[0]
        snap = build_snapshot(reading, before)
        snap["errors"] = dict(self.errors)
        self._readings.append(reading)
        with self._cond:
            self._latest = snap
            self._history.append(history_point(snap))
            self._cond.notify_all()
        return snap

    # ------------------------------------------------------------------------------ readers

    def latest(self) -> dict | None:
        with self._cond:
            return self._latest

    def exposition(self) -> tuple[dict | None, dict | None]:
        """``(the latest reading's summed worker samples, the latest snapshot)`` for
        :class:`~streams.ops.exposition.SnapshotCollector`."""
        with self._cond:
            samples = self._readings[-1].samples if self._readings else None
            return samples, self._latest

    def history(self) -> list[dict]:
        """The kept history points, oldest first (:func:`~streams.ops.snapshot.history_point`)."""
        with self._cond:
            return list(self._history)

    def wait_newer(self, at_ms: int | None, timeout_s: float) -> dict | None:
        """The latest snapshot once it is newer than ``at_ms`` (None: any), or None after
        ``timeout_s`` seconds. Blocking: call it from a worker thread."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._latest is None or (at_ms is not None and self._latest["at_ms"] <= at_ms):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._latest

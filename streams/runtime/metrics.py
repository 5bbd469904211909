"""A worker's metrics: what each agent consumed, emitted and dead-lettered, how long its batches
took and how old its events were, exported in the Prometheus text format.

The binding's hot loop (:mod:`streams.runtime.binding`) calls one :class:`AgentMeter` per agent
with plain integer and list arithmetic (no locks, no label lookups: one dict increment per
emitted topic and a bisect per event's age); :class:`WorkerMetrics` is a
``prometheus_client`` custom collector that turns the meters into metric families only when
``/metrics`` is scraped. The worker serves them with ``prometheus_client``'s HTTP server on
``PULSE_METRICS_PORT`` (0: an ephemeral port) and writes the address to
``$PULSE_HOME/run/metrics/<pid>.json`` (:func:`serve_worker_metrics`), removed at exit, so
``pulse dashboard`` finds every worker of the machine.

Exported (Prometheus naming: base units, ``_total`` counters, ``_seconds``; no user ids as
labels; ``reason`` is the dead letter's error type, a class name, so bounded):

=================================================  =========  ==================================
``pulse_agent_events_in_total{agent}``             counter    events consumed (skipped included)
``pulse_agent_events_skipped_total{agent}``        counter    re-deliveries below the position
``pulse_agent_events_out_total{agent,topic}``      counter    derived events emitted
``pulse_agent_dead_letters_total{agent,reason}``   counter    events sent to ``dead-letters``
``pulse_agent_view_rows_total{agent}``             counter    rows and points the sinks wrote
``pulse_agent_batches_total{agent}``               counter    batches applied
``pulse_agent_processing_seconds{agent}``          histogram  a batch's arrival to its
                                                              acknowledgment, once per event
``pulse_agent_event_age_seconds{agent}``           histogram  wall clock minus the Kafka record
                                                              timestamp when the batch arrived
``pulse_upload_to_feed_seconds``                   histogram  a post's upload (event time) to
                                                              its row in the feeds' fresh pool
                                                              or pulled posts being written
=================================================  =========  ==================================
"""
from __future__ import annotations

import atexit
import json
import os
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any, Iterable, Sequence

#: Histogram bucket upper bounds (seconds) of the processing and age histograms: 1 ms to 10 min.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 120.0, 300.0, 600.0)
#: Bucket bounds (seconds) of the upload-to-feed histogram: 50 ms to 1 h.
FEED_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                1800.0, 3600.0)
#: View tables whose rows put a published post into feeds, with the column holding its upload
#: or publication time (UTC epoch ms): ``fresh_posts`` (every feed read ranks it from then on)
#: and ``pulled_posts`` (followers of a large creator read it).
FEED_ENTRY_TABLES = {"fresh_posts": "published_at", "pulled_posts": "published_at"}
#: Upload-to-feed observations beyond this many seconds (or negative) are history being
#: replayed or backfilled, not live latency: they are counted, not observed.
FEED_LATENCY_MAX_S = 3600.0
DISCOVERY_DIR = ("run", "metrics")


class Histogram:
    """Cumulative-bucket histogram that takes a weight (``observe(v, n)`` = n observations of v).

    ``counts[i]`` counts observations ``<= bounds[i]`` exclusively of lower buckets (the last
    slot is +Inf); :meth:`cumulative` gives Prometheus' ``le`` buckets. Not thread-safe: one
    agent's loop writes it, a scrape reads a possibly one-batch-stale copy.
    """

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Sequence[float]):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, cumulative count), ..., ("+Inf", count)]``."""
        out, acc = [], 0
        for bound, c in zip(self.bounds + (float("inf"),), self.counts):
            acc += c
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), acc))
        return out


class AgentMeter:
    """One agent's counters and histograms (see the module docstring for what each means)."""

    __slots__ = ("name", "events_in", "skipped", "out", "dead", "rows", "batches", "processing",
                 "age", "watch_feed")

    def __init__(self, name: str, watch_feed: bool = False):
        self.name = name
        self.events_in = self.skipped = self.rows = self.batches = 0
        self.out: dict[str, int] = {}
        self.dead: dict[str, int] = {}
        self.processing = Histogram(LATENCY_BUCKETS)
        self.age = Histogram(LATENCY_BUCKETS)
        self.watch_feed = watch_feed

    def arrived(self, messages: Sequence[Any], now: float) -> None:
        """A batch arrived at ``now`` (wall clock, seconds): observe each event's age from its
        Kafka timestamp (Faust: seconds as a float; a message without one is not observed)."""
        age = self.age
        counts, bounds = age.counts, age.bounds
        total, n = 0.0, 0
        for m in messages:  # Histogram.observe inlined: this runs once per event
            ts = m.timestamp
            if ts:
                seconds = now - ts
                counts[bisect_left(bounds, seconds)] += 1
                total += seconds
                n += 1
        age.sum += total
        age.count += n

    def emitted(self, topic: str, n: int) -> None:
        self.out[topic] = self.out.get(topic, 0) + n

    def dead_lettered(self, reasons: Iterable[str]) -> None:
        dead = self.dead
        for r in reasons:
            dead[r] = dead.get(r, 0) + 1

    def acknowledged(self, events: int, skipped: int, seconds: float) -> None:
        """A batch of ``events`` messages (``skipped`` of them already applied) was acknowledged
        ``seconds`` after it arrived."""
        n = events + skipped
        self.events_in += n
        self.skipped += skipped
        self.batches += 1
        if n:
            self.processing.observe(seconds, n)


class WorkerMetrics:
    """Every agent meter of one worker, plus the upload-to-feed histogram; a
    ``prometheus_client`` collector (register it on a ``CollectorRegistry``)."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentMeter] = {}
        self.upload_to_feed = Histogram(FEED_BUCKETS)
        self.feed_history_rows = 0

    def meter(self, agent: str, watch_feed: bool = False) -> AgentMeter:
        m = self.agents.get(agent)
        if m is None:
            m = self.agents[agent] = AgentMeter(agent, watch_feed)
        return m

    def feed_rows_written(self, views: Sequence[Any], now_ms: int) -> None:
        """Observe upload-to-feed latency for each :data:`FEED_ENTRY_TABLES` upsert among
        ``views`` just written (``now_ms``: wall clock, UTC epoch ms)."""
        hist = self.upload_to_feed
        for v in views:
            column = FEED_ENTRY_TABLES.get(getattr(v, "table", None))
            if column is None or not hasattr(v, "row"):
                continue
            at = v.row.get(column)
            if not isinstance(at, int):
                continue
            seconds = (now_ms - at) / 1000.0
            if 0.0 <= seconds <= FEED_LATENCY_MAX_S:
                hist.observe(seconds)
            else:
                self.feed_history_rows += 1

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        meters = list(self.agents.values())
        # (name without _total, help, extra label, per meter: {extra label value: count})
        counters = (
            ("pulse_agent_events_in", "Events an agent consumed (re-deliveries included).", None,
             lambda m: {None: m.events_in}),
            ("pulse_agent_events_skipped", "Re-delivered events an agent skipped because its state "
             "says they were applied.", None, lambda m: {None: m.skipped}),
            ("pulse_agent_events_out", "Derived events an agent emitted, per topic.", "topic", lambda m: m.out),
            ("pulse_agent_dead_letters", "Events an agent sent to dead-letters, per error type.", "reason",
             lambda m: m.dead),
            ("pulse_agent_view_rows", "View rows and vector points an agent's sinks wrote.", None,
             lambda m: {None: m.rows}),
            ("pulse_agent_batches", "Batches an agent applied.", None, lambda m: {None: m.batches}),
        )
        for name, doc, extra, values in counters:
            fam = CounterMetricFamily(name, doc, labels=["agent"] + ([extra] if extra else []))
            for m in meters:
                for label, n in sorted(values(m).items(), key=lambda kv: str(kv[0])):
                    fam.add_metric([m.name] + ([label] if extra else []), n)
            yield fam
        for name, attr, doc in (
                ("pulse_agent_processing_seconds", "processing",
                 "Seconds from a batch's arrival to its acknowledgment, once per event."),
                ("pulse_agent_event_age_seconds", "age",
                 "Seconds between an event's Kafka timestamp and its batch's arrival.")):
            fam = HistogramMetricFamily(name, doc, labels=["agent"])
            for m in meters:
                h = getattr(m, attr)
                fam.add_metric([m.name], h.cumulative(), sum_value=h.sum)
            yield fam
        fam = HistogramMetricFamily("pulse_upload_to_feed_seconds", "Seconds from a post's upload "
                                    "(event time) to its feed entry (fresh pool or pulled posts) being written.")
        fam.add_metric([], self.upload_to_feed.cumulative(), sum_value=self.upload_to_feed.sum)
        yield fam
        yield CounterMetricFamily("pulse_upload_to_feed_history_rows", "Feed entries written for posts "
                                  "uploaded over an hour before (history replayed), not observed.",
                                  value=self.feed_history_rows)


# ------------------------------------------------------------------------------ serving


def discovery_dir(home: Path) -> Path:
    """``$PULSE_HOME/run/metrics``: one ``<pid>.json`` per running worker."""
    return Path(home).joinpath(*DISCOVERY_DIR)


def serve_worker_metrics(settings: Any, metrics: WorkerMetrics, *, agents: Sequence[str],
                         topics: Sequence[str]) -> str | None:
    """Serve ``metrics`` (and the process collector) on ``settings.metrics_host:metrics_port``
    and write the discovery file; returns the ``/metrics`` URL, or None when
    ``metrics_port`` is negative (off).

    The discovery file ``$PULSE_HOME/run/metrics/<pid>.json`` holds ``{"pid", "url",
    "app_id", "agents", "topics", "started_at_ms"}``; it is removed at interpreter exit (a
    SIGKILLed worker leaves it: readers check that the pid lives).

    Raises ``OSError`` when the port cannot be bound.
    """
    if settings.metrics_port < 0:
        return None
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    registry.register(metrics)
    ProcessCollector(registry=registry)
    server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    port = server.server_address[1]
    host = settings.metrics_host if settings.metrics_host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{host}:{port}/metrics"
    folder = discovery_dir(settings.home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "url": url, "app_id": settings.app_id,
                               "agents": list(agents), "topics": sorted(set(topics)),
                               "started_at_ms": int(time.time() * 1000)}))
    os.replace(tmp, path)

    def remove() -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        server.shutdown()

    atexit.register(remove)
    return url


def discovered_workers(home: Path) -> list[dict[str, Any]]:
    """The discovery records of the workers alive on this machine (stale files of dead pids
    are skipped and removed)."""
    out = []
    folder = discovery_dir(home)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
            os.kill(int(rec["pid"]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass  # alive, another user's process
        except (OSError, ValueError, KeyError):
            continue  # being written, or not ours to judge
        out.append(rec)
    return out

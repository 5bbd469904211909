"""The dashboard's figures from raw readings: pure functions, no I/O (unit-tested).

A :class:`Reading` is what the collector gathered at one moment: the workers' metric samples
summed over workers (``{(sample name, labels): value}``, as ``prometheus_client.parser`` gives
them), the consumer lag per group, topic and partition, and the views' figures.
:func:`build_snapshot` turns the newest reading and one about :data:`RATE_WINDOW_S` older into
the snapshot the page, ``/v1/ops/snapshot`` and ``/metrics`` show::

    {"at_ms": 1733357000000,                       # UTC epoch ms of the reading
     "window_s": 5.0,                              # seconds the rates and quantiles cover
     "workers": [{"pid", "url", "app_id", "agents", "up"}],
     "agents": [{"agent", "in_per_s", "out_per_s", "processing_p50_s", "processing_p99_s",
                 "age_p50_s", "age_p99_s", "events_in", "events_out", "dead_letters"}],
     "lag": [{"group", "topic", "partition", "committed", "end", "messages", "seconds"}],
     "moderation": [{"tier", "action", "decisions"}],
     "review_queue": [{"queue", "tasks", "oldest_age_s"}],
     "copyright": {"verdicts": [{"action", "verdicts"}], "matches": [{"kind", "matches"}]},
     "dead_letters": [{"consumer", "reason", "count"}],          # reason: the error type
     "recent_dead_letters": [{"at_ms", "consumer", "error_type", "source_topic", "partition",
                              "offset", "reason"}],               # newest first, reason text
     "trends": [{"kind", "subject", "state", "burst_score", "count"}],
     "upload_to_feed": {"p50_s", "p99_s", "p50_all_s", "p99_all_s", "observed", "per_s"}}

(``_all_s``: over every observation the workers hold, for when the window saw none.)

Rates are per second over the window; a counter that went down (a worker restarted or left)
counts from zero, as Prometheus' ``rate`` does. Quantiles interpolate linearly inside the
bucket that holds the rank, as Prometheus' ``histogram_quantile`` does; ``None`` when the window
saw no observation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

#: Seconds the rates and quantiles of a snapshot cover.
RATE_WINDOW_S = 5.0

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def labels_of(d: Mapping[str, str]) -> Labels:
    """A hashable, ordered label set."""
    return tuple(sorted(d.items()))


def sum_samples(scrapes: Iterable[Iterable[tuple[str, Mapping[str, str], float]]]) -> Samples:
    """Sum ``(name, labels, value)`` samples of several workers by name and labels."""
    out: Samples = {}
    for samples in scrapes:
        for name, labels, value in samples:
            key = (name, labels_of(labels))
            out[key] = out.get(key, 0.0) + float(value)
    return out


@dataclass
class Reading:
    """Everything read at ``at`` (wall clock, seconds)."""

    at: float
    samples: Samples = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    lag: list[dict[str, Any]] = field(default_factory=list)
    moderation: dict[tuple[str, str], int] = field(default_factory=dict)
    review_queue: list[dict[str, Any]] = field(default_factory=list)
    copyright_verdicts: dict[str, int] = field(default_factory=dict)
    copyright_matches: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)
    recent_dead_letters: list[dict[str, Any]] = field(default_factory=list)
    trends: list[dict[str, Any]] = field(default_factory=list)


def lag_seconds(now_ms: int, committed: int, end: int, first_unconsumed_ms: int | None) -> float | None:
    """Seconds the group is behind on one partition: 0 when it consumed everything
    (``committed >= end``), else ``now - timestamp of the first unconsumed record`` (never
    negative: clocks of producers may run ahead), None when that timestamp is unknown."""
    if committed >= end:
        return 0.0
    if first_unconsumed_ms is None or first_unconsumed_ms < 0:
        return None
    return max(0.0, (now_ms - first_unconsumed_ms) / 1000.0)


def counter_delta(now: float, before: float | None) -> float:
    """Increase of a counter; a decrease is a reset, so the new value is the increase."""
    if before is None:
        return now
    return now - before if now >= before else now


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0..1) of cumulative ``[(le, count)]`` buckets (``le`` ascending, the
    last +Inf), interpolated like Prometheus' ``histogram_quantile``; None without observations.
    A rank in the +Inf bucket gives the largest finite bound."""
    if not buckets:
        return None
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def _by(samples: Samples, name: str, key: str) -> dict[str, float]:
    """``{label value of key: summed value}`` of the samples called ``name``."""
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        if n == name:
            k = dict(labels).get(key, "")
            out[k] = out.get(k, 0.0) + v
    return out


def _buckets(samples: Samples, name: str, match: Mapping[str, str]) -> dict[float, float]:
    out: dict[float, float] = {}
    for (n, labels), v in samples.items():
        if n != name + "_bucket":
            continue
        d = dict(labels)
        if any(d.get(k) != val for k, val in match.items()):
            continue
        le = float(d["le"])
        out[le] = out.get(le, 0.0) + v
    return out


def window_quantiles(now: Samples, before: Samples | None, name: str, match: Mapping[str, str],
                     qs: tuple[float, ...] = (0.5, 0.99)) -> list[float | None]:
    """Quantiles of the observations histogram ``name`` (labels ``match``) got in the window."""
    cur = _buckets(now, name, match)
    prev = _buckets(before, name, match) if before is not None else {}
    delta = [(le, counter_delta(c, prev.get(le))) for le, c in cur.items()]
    # a reset in some buckets only would make the deltas non-monotonic: keep them cumulative
    delta.sort()
    fixed, high = [], 0.0
    for le, c in delta:
        high = max(high, c)
        fixed.append((le, high))
    return [histogram_quantile(q, fixed) for q in qs]


def _rate(now: Mapping[str, float], before: Mapping[str, float] | None, key: str, seconds: float) -> float:
    if seconds <= 0:
        return 0.0
    return counter_delta(now.get(key, 0.0), None if before is None else before.get(key)) / seconds


def agent_rows(now: Reading, before: Reading | None) -> list[dict[str, Any]]:
    """Per agent: events/s in and out, processing and age p50/p99 (seconds) over the window,
    and the totals."""
    cur, prev = now.samples, before.samples if before is not None else None
    seconds = now.at - before.at if before is not None else 0.0
    ins = _by(cur, "pulse_agent_events_in_total", "agent")
    outs = _by(cur, "pulse_agent_events_out_total", "agent")
    dead = _by(cur, "pulse_agent_dead_letters_total", "agent")
    ins_before = _by(prev, "pulse_agent_events_in_total", "agent") if prev is not None else None
    outs_before = _by(prev, "pulse_agent_events_out_total", "agent") if prev is not None else None
    rows = []
    for agent in sorted(ins):
        p50, p99 = window_quantiles(cur, prev, "pulse_agent_processing_seconds", {"agent": agent})
        a50, a99 = window_quantiles(cur, prev, "pulse_agent_event_age_seconds", {"agent": agent})
        rows.append({"agent": agent,
                     "in_per_s": _rate(ins, ins_before, agent, seconds),
                     "out_per_s": _rate(outs, outs_before, agent, seconds),
                     "processing_p50_s": p50, "processing_p99_s": p99,
                     "age_p50_s": a50, "age_p99_s": a99,
                     "events_in": int(ins.get(agent, 0)), "events_out": int(outs.get(agent, 0)),
                     "dead_letters": int(dead.get(agent, 0))})
    return rows


def build_snapshot(now: Reading, before: Reading | None) -> dict[str, Any]:
    """The snapshot (module docstring) of reading ``now``, with rates and quantiles over the
    window since ``before`` (None: rates 0, quantiles over everything observed)."""
    seconds = now.at - before.at if before is not None else 0.0
    p50, p99 = window_quantiles(now.samples, before.samples if before else None,
                                "pulse_upload_to_feed_seconds", {})
    all50, all99 = window_quantiles(now.samples, None, "pulse_upload_to_feed_seconds", {})
    observed = sum(v for (n, _), v in now.samples.items() if n == "pulse_upload_to_feed_seconds_count")
    observed_before = (sum(v for (n, _), v in before.samples.items() if n == "pulse_upload_to_feed_seconds_count")
                       if before is not None else None)
    return {
        "at_ms": int(now.at * 1000),
        "window_s": round(seconds, 3),
        "workers": now.workers,
        "agents": agent_rows(now, before),
        "lag": sorted(now.lag, key=lambda r: (r["group"], r["topic"], r["partition"])),
        "moderation": [{"tier": t, "action": a, "decisions": n}
                       for (t, a), n in sorted(now.moderation.items())],
        "review_queue": now.review_queue,
        "copyright": {"verdicts": [{"action": a, "verdicts": n} for a, n in sorted(now.copyright_verdicts.items())],
                      "matches": [{"kind": m, "matches": n} for m, n in sorted(now.copyright_matches.items())]},
        "dead_letters": [{"consumer": c, "reason": r, "count": n}
                         for (c, r), n in sorted(now.dead_letters.items())],
        "recent_dead_letters": now.recent_dead_letters,
        "trends": now.trends,
        "upload_to_feed": {"p50_s": p50, "p99_s": p99, "p50_all_s": all50, "p99_all_s": all99,
                           "observed": int(observed),
                           "per_s": (counter_delta(observed, observed_before) / seconds) if seconds > 0 else 0.0},
    }


def history_point(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a snapshot the charts plot over time (kept for the history)."""
    lag_msgs: dict[str, int] = {}
    lag_secs: dict[str, float] = {}
    for r in snapshot["lag"]:
        key = f"{r['group']}/{r['topic']}"
        lag_msgs[key] = lag_msgs.get(key, 0) + int(r["messages"])
        if r["seconds"] is not None:
            lag_secs[key] = max(lag_secs.get(key, 0.0), float(r["seconds"]))
    return {"at_ms": snapshot["at_ms"],
            "agents": {a["agent"]: [a["in_per_s"], a["out_per_s"], a["processing_p50_s"], a["processing_p99_s"]]
                       for a in snapshot["agents"]},
            "lag_messages": lag_msgs, "lag_seconds": lag_secs,
            "upload_to_feed": [snapshot["upload_to_feed"]["p50_s"], snapshot["upload_to_feed"]["p99_s"]],
            "review_tasks": sum(q["tasks"] for q in snapshot["review_queue"])}

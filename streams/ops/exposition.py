"""``/metrics`` of the API and dashboard process: every dashboard figure in the Prometheus text
format, from the collector's latest reading (a custom ``prometheus_client`` collector: nothing
is computed at scrape time but the formatting).

* the workers' agent series, summed over the workers this process sees, under their own names
  (``pulse_agent_events_in_total``, ``pulse_agent_events_out_total``,
  ``pulse_agent_dead_letters_total``, ``pulse_agent_processing_seconds``,
  ``pulse_agent_event_age_seconds``, ``pulse_upload_to_feed_seconds``, ...): a Prometheus that
  scrapes this endpoint needs no access to the workers (scrape either this or the workers for
  those series, not both, or sums double);
* what only the collector reads, listed in :data:`OWN_METRICS`.

No label carries a user id: labels are agents, topics, partitions, groups, tiers, actions,
queues, fingerprint kinds, consumers, error types and trend subjects (hashtags, categories).
"""
from __future__ import annotations

from typing import Any, Callable

#: The collector's own metric families: ``name -> (type, help, labels)``; names as exposed
#: (counters with ``_total``).
OWN_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pulse_consumer_lag_messages": ("gauge", "Records a consumer group has not consumed, per partition.",
                                    ("group", "topic", "partition")),
    "pulse_consumer_lag_seconds": ("gauge", "Seconds since the first unconsumed record's Kafka timestamp "
                                   "(0 when caught up).", ("group", "topic", "partition")),
    "pulse_moderation_decisions_total": ("counter", "Moderation verdicts on moderation-verdicts, by tier "
                                         "and action.", ("tier", "action")),
    "pulse_review_queue_tasks": ("gauge", "Pending human review tasks.", ("queue",)),
    "pulse_review_queue_oldest_age_seconds": ("gauge", "Age of the oldest pending review task.", ("queue",)),
    "pulse_copyright_verdicts_total": ("counter", "Copyright verdicts, by action.", ("action",)),
    "pulse_copyright_matches_total": ("counter", "Matched reference works in copyright verdicts, by "
                                      "fingerprint kind.", ("kind",)),
    "pulse_dead_letters_total": ("counter", "Records on dead-letters, by consumer and error type.",
                                 ("consumer", "reason")),
    "pulse_trends_open": ("gauge", "Open trends (STARTED or ONGOING), by kind.", ("kind",)),
    "pulse_trend_burst_score": ("gauge", "Burst score of each open trend (the strongest 10 per kind).",
                                ("kind", "subject")),
    "pulse_workers": ("gauge", "Workers discovered, and whether their /metrics answered.", ("up",)),
    "pulse_ops_source_errors": ("gauge", "Sources the last reading failed to read.", ()),
}
#: Families re-exported from the workers (base names, as the workers' collectors define them).
WORKER_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pulse_agent_events_in_total": ("counter", "Events an agent consumed (summed over workers).", ("agent",)),
    "pulse_agent_events_skipped_total": ("counter", "Re-delivered events skipped.", ("agent",)),
    "pulse_agent_events_out_total": ("counter", "Derived events emitted, per topic.", ("agent", "topic")),
    "pulse_agent_dead_letters_total": ("counter", "Events an agent dead-lettered, per error type.",
                                       ("agent", "reason")),
    "pulse_agent_view_rows_total": ("counter", "View rows and points written.", ("agent",)),
    "pulse_agent_batches_total": ("counter", "Batches applied.", ("agent",)),
    "pulse_upload_to_feed_history_rows_total": ("counter", "Feed entries of history, not observed.", ()),
    "pulse_agent_processing_seconds": ("histogram", "Batch arrival to acknowledgment, per event.", ("agent",)),
    "pulse_agent_event_age_seconds": ("histogram", "Kafka timestamp to batch arrival.", ("agent",)),
    "pulse_upload_to_feed_seconds": ("histogram", "Upload to feed entry written.", ()),
}


def exported_names() -> set[str]:
    """Every series name ``/metrics`` can expose (histograms with ``_bucket``, ``_sum``,
    ``_count``)."""
    names = set()
    for table in (OWN_METRICS, WORKER_METRICS):
        for name, (kind, _, _) in table.items():
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


class SnapshotCollector:
    """A ``prometheus_client`` collector over ``source() -> (reading samples, snapshot)``
    (the collector's latest; ``(None, None)`` before the first reading)."""

    def __init__(self, source: Callable[[], tuple[dict | None, dict | None]]):
        self.source = source

    def collect(self):
        samples, snap = self.source()
        yield from worker_families(samples or {})
        if snap is not None:
            yield from snapshot_families(snap)

    def describe(self):
        return []


def worker_families(samples: dict) -> list[Any]:
    """Metric families of the summed worker samples ``{(sample name, labels): value}``."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    out = []
    for name, (kind, doc, labels) in WORKER_METRICS.items():
        if kind == "counter":
            base = name[:-len("_total")]
            fam = CounterMetricFamily(base, doc, labels=list(labels))
            for (n, lab), v in sorted(samples.items()):
                if n == name:
                    d = dict(lab)
                    fam.add_metric([d.get(k, "") for k in labels], v)
            out.append(fam)
        else:
            fam = HistogramMetricFamily(name, doc, labels=list(labels))
            groups: dict[tuple, dict] = {}
            for (n, lab), v in samples.items():
                d = dict(lab)
                key = tuple(d.get(k, "") for k in labels)
                if n == name + "_bucket":
                    groups.setdefault(key, {"b": {}, "s": 0.0})["b"][float(d["le"])] = v
                elif n == name + "_sum":
                    groups.setdefault(key, {"b": {}, "s": 0.0})["s"] = v
            for key, g in sorted(groups.items()):
                buckets = [("+Inf" if le == float("inf") else repr(le), c) for le, c in sorted(g["b"].items())]
                if buckets and buckets[-1][0] == "+Inf":
                    fam.add_metric(list(key), buckets, sum_value=g["s"])
            out.append(fam)
    return out


def snapshot_families(snap: dict) -> list[Any]:
    """Metric families of the collector's own figures in ``snap``."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def fam(name: str):
        kind, doc, labels = OWN_METRICS[name]
        if kind == "counter":
            return CounterMetricFamily(name[:-len("_total")], doc, labels=list(labels))
        return GaugeMetricFamily(name, doc, labels=list(labels))

    out = []
    lm, ls = fam("pulse_consumer_lag_messages"), fam("pulse_consumer_lag_seconds")
    for r in snap["lag"]:
        key = [r["group"], r["topic"], str(r["partition"])]
        lm.add_metric(key, r["messages"])
        if r["seconds"] is not None:
            ls.add_metric(key, r["seconds"])
    out += [lm, ls]
    f = fam("pulse_moderation_decisions_total")
    for r in snap["moderation"]:
        f.add_metric([r["tier"], r["action"]], r["decisions"])
    out.append(f)
    tasks, age = fam("pulse_review_queue_tasks"), fam("pulse_review_queue_oldest_age_seconds")
    for r in snap["review_queue"]:
        tasks.add_metric([r["queue"]], r["tasks"])
        age.add_metric([r["queue"]], r["oldest_age_s"] or 0.0)
    out += [tasks, age]
    f = fam("pulse_copyright_verdicts_total")
    for r in snap["copyright"]["verdicts"]:
        f.add_metric([r["action"]], r["verdicts"])
    out.append(f)
    f = fam("pulse_copyright_matches_total")
    for r in snap["copyright"]["matches"]:
        f.add_metric([r["kind"]], r["matches"])
    out.append(f)
    f = fam("pulse_dead_letters_total")
    for r in snap["dead_letters"]:
        f.add_metric([r["consumer"], r["reason"]], r["count"])
    out.append(f)
    open_, burst = fam("pulse_trends_open"), fam("pulse_trend_burst_score")
    kinds: dict[str, int] = {}
    for t in snap["trends"]:
        kinds[t["kind"]] = kinds.get(t["kind"], 0) + 1
        burst.add_metric([t["kind"], t["subject"]], t["burst_score"])
    for k, n in sorted(kinds.items()):
        open_.add_metric([k], n)
    out += [open_, burst]
    f = fam("pulse_workers")
    up = sum(1 for w in snap["workers"] if w["up"])
    f.add_metric(["1"], up)
    f.add_metric(["0"], len(snap["workers"]) - up)
    out.append(f)
    f = fam("pulse_ops_source_errors")
    f.add_metric([], len(snap.get("errors", {})))
    out.append(f)
    return out

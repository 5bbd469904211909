"""The operator dashboard's pure parts: the worker meters and their exposition, lag in seconds,
rates and quantiles over a window, the snapshot's Prometheus exposition and its naming rules,
and the Grafana dashboard querying only names Pulse exports."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.contracts.effects import Upsert
from streams.ops.exposition import OWN_METRICS, WORKER_METRICS, SnapshotCollector, exported_names
from streams.ops.snapshot import (Reading, build_snapshot, histogram_quantile, history_point, lag_seconds,
                                  sum_samples, window_quantiles)
from streams.runtime.metrics import FEED_LATENCY_MAX_S, WorkerMetrics
from streams.settings import REPO_ROOT

GRAFANA = REPO_ROOT / "infra" / "grafana" / "pulse-dashboard.json"


class Msg:
    def __init__(self, ts):
        self.timestamp = ts


def worker_text(w: WorkerMetrics) -> str:
    reg = CollectorRegistry()
    reg.register(w)
    return generate_latest(reg).decode()


def samples_of(text: str):
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def busy_worker(events: int, seconds: float = 0.02) -> WorkerMetrics:
    w = WorkerMetrics()
    m = w.meter("content_guard")
    m.arrived([Msg(100.0)] * events, 100.5)
    m.emitted("moderation-verdicts", events)
    m.dead_lettered(["CodecError", "ValueError", "CodecError"])
    m.acknowledged(events, 0, seconds)
    return w


# ------------------------------------------------------------------------------- worker meters


def test_worker_meters_export_counts_and_weighted_histograms():
    w = busy_worker(40, 0.02)
    got = {(n, tuple(sorted(l.items()))): v for n, l, v in samples_of(worker_text(w))}
    a = (("agent", "content_guard"),)
    assert got[("pulse_agent_events_in_total", a)] == 40
    assert got[("pulse_agent_events_out_total", a + (("topic", "moderation-verdicts"),))] == 40
    assert got[("pulse_agent_dead_letters_total", a + (("reason", "CodecError"),))] == 2
    assert got[("pulse_agent_dead_letters_total", a + (("reason", "ValueError"),))] == 1
    # one batch of 40 events, 20 ms from arrival to ack: 40 observations of 0.02 s
    assert got[("pulse_agent_processing_seconds_count", a)] == 40
    assert got[("pulse_agent_processing_seconds_sum", a)] == pytest.approx(0.8)
    assert got[("pulse_agent_processing_seconds_bucket", a + (("le", "0.01"),))] == 0
    assert got[("pulse_agent_processing_seconds_bucket", a + (("le", "0.025"),))] == 40
    assert got[("pulse_agent_event_age_seconds_bucket", a + (("le", "0.5"),))] == 40


def test_upload_to_feed_observes_live_posts_and_counts_history():
    w = WorkerMetrics()
    now = 1_700_000_000_000
    w.feed_rows_written([Upsert("fresh_posts", {"post_id": "p", "published_at": now - 1500}, 0),
                         Upsert("pulled_posts", {"post_id": "q", "published_at": now - 300}, 0),
                         Upsert("posts", {"post_id": "r", "published_at": now - 10}, 0),  # not a feed table
                         Upsert("fresh_posts", {"post_id": "old", "published_at": now - int(FEED_LATENCY_MAX_S * 2000)}, 0)],
                        now)
    assert w.upload_to_feed.count == 2
    assert w.upload_to_feed.sum == pytest.approx(1.8)
    assert w.feed_history_rows == 1


# ------------------------------------------------------------------------------------ lag


@pytest.mark.parametrize("committed,end,first_ms,expected", [
    (10, 10, None, 0.0),            # caught up: 0 whatever the timestamp
    (12, 10, None, 0.0),            # committed past a truncated end
    (5, 10, 1_000_000 - 2_500, 2.5),
    (5, 10, 1_000_000 + 4_000, 0.0),  # a producer clock ahead: never negative
    (5, 10, None, None),            # not read yet
    (5, 10, -1, None),              # no timestamp on the record
])
def test_lag_seconds(committed, end, first_ms, expected):
    assert lag_seconds(1_000_000, committed, end, first_ms) == expected


# ------------------------------------------------------------------------- rates, quantiles


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (float("inf"), 40.0)]
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)   # rank 20: halfway in (0.1, 0.5]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * (39.6 - 30) / 10)
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 10.0)]) == 1.0  # in +Inf: last bound


def test_snapshot_rates_and_window_quantiles_from_two_readings():
    before = Reading(at=100.0, samples=sum_samples([samples_of(worker_text(busy_worker(10, 0.002)))]))
    w1, w2 = busy_worker(10, 0.002), busy_worker(50, 0.2)  # two workers now; the second is slow
    now = Reading(at=105.0, samples=sum_samples([samples_of(worker_text(w1)), samples_of(worker_text(w2))]))
    snap = build_snapshot(now, before)
    (row,) = snap["agents"]
    assert row["agent"] == "content_guard"
    assert row["in_per_s"] == pytest.approx(50 / 5.0)
    assert row["out_per_s"] == pytest.approx(50 / 5.0)
    # the window saw only the slow worker's 50 events at 0.2 s
    assert 0.1 < row["processing_p50_s"] <= 0.25
    assert row["events_in"] == 60 and row["dead_letters"] == 6
    point = history_point(snap)
    assert point["agents"]["content_guard"][0] == pytest.approx(10.0)


def test_a_counter_reset_counts_from_zero():
    before = Reading(at=0.0, samples=sum_samples([samples_of(worker_text(busy_worker(500)))]))
    now = Reading(at=5.0, samples=sum_samples([samples_of(worker_text(busy_worker(20)))]))  # restarted
    (row,) = build_snapshot(now, before)["agents"]
    assert row["in_per_s"] == pytest.approx(20 / 5.0)
    p50, _ = window_quantiles(now.samples, before.samples, "pulse_agent_processing_seconds", {"agent": "content_guard"})
    assert p50 is not None


# --------------------------------------------------------------------- snapshot exposition


def full_snapshot() -> tuple[dict, dict]:
    samples = sum_samples([samples_of(worker_text(busy_worker(30)))])
    reading = Reading(
        at=200.0, samples=samples,
        workers=[{"pid": 1, "url": "http://127.0.0.1:1/metrics", "app_id": "pulse", "agents": ["content_guard"], "up": True}],
        lag=[{"group": "pulse", "topic": "uploads", "partition": 0, "committed": 5, "end": 9, "messages": 4, "seconds": 1.5},
             {"group": "pulse", "topic": "uploads", "partition": 1, "committed": 3, "end": 3, "messages": 0, "seconds": 0.0}],
        moderation={("FAST", "ALLOW"): 7, ("HUMAN", "BLOCK"): 1},
        review_queue=[{"queue": "moderation", "tasks": 2, "oldest_age_s": 30.0}],
        copyright_verdicts={"BLOCK": 1}, copyright_matches={"PDQ": 2},
        dead_letters={("publish", "CodecError"): 3},
        trends=[{"kind": "HASHTAG", "subject": "qubits", "state": "STARTED", "burst_score": 4.2, "count": 9}])
    return samples, build_snapshot(reading, None)


def exposition_text() -> str:
    samples, snap = full_snapshot()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(lambda: (samples, snap)))
    return generate_latest(reg).decode()


def test_snapshot_exposition_carries_every_figure():
    got = {(n, tuple(sorted(l.items()))): v for n, l, v in samples_of(exposition_text())}
    assert got[("pulse_consumer_lag_messages", (("group", "pulse"), ("partition", "0"), ("topic", "uploads")))] == 4
    assert got[("pulse_consumer_lag_seconds", (("group", "pulse"), ("partition", "0"), ("topic", "uploads")))] == 1.5
    assert got[("pulse_moderation_decisions_total", (("action", "BLOCK"), ("tier", "HUMAN")))] == 1
    assert got[("pulse_review_queue_tasks", (("queue", "moderation"),))] == 2
    assert got[("pulse_review_queue_oldest_age_seconds", (("queue", "moderation"),))] == 30
    assert got[("pulse_copyright_matches_total", (("kind", "PDQ"),))] == 2
    assert got[("pulse_dead_letters_total", (("consumer", "publish"), ("reason", "CodecError")))] == 3
    assert got[("pulse_trend_burst_score", (("kind", "HASHTAG"), ("subject", "qubits")))] == 4.2
    assert got[("pulse_agent_events_in_total", (("agent", "content_guard"),))] == 30
    assert got[("pulse_agent_processing_seconds_count", (("agent", "content_guard"),))] == 30


def test_every_exported_name_follows_prometheus_naming_and_no_user_labels():
    text = exposition_text() + worker_text(busy_worker(3))
    families = list(text_string_to_metric_families(text))
    assert families
    for fam in families:
        if not fam.name.startswith("pulse_"):
            continue
        assert re.fullmatch(r"pulse_[a-z0-9_]+", fam.name), fam.name
        if fam.type == "counter":
            assert all(s.name.endswith("_total") for s in fam.samples), fam.name
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), fam.name
        if fam.type == "gauge":  # a base unit or a count of things
            assert re.search(r"_(seconds|messages|tasks|open|score|workers|errors)$", fam.name), fam.name
        for s in fam.samples:
            assert not set(s.labels) & {"user", "user_id", "creator_id", "post_id", "author_id"}, (fam.name, s.labels)
            assert s.name in exported_names(), s.name
    assert set(WORKER_METRICS) >= {"pulse_agent_events_in_total", "pulse_upload_to_feed_seconds"}
    assert all(not n.endswith("_total") or OWN_METRICS[n][0] == "counter" for n in OWN_METRICS)


# ---------------------------------------------------------------------------- Grafana


def grafana_metric_names(dashboard: dict) -> set[str]:
    """Every ``pulse_*`` series name the panels' PromQL queries name."""
    names = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names.update(re.findall(r"\bpulse_[a-z0-9_]+", target["expr"]))
    return names


def test_grafana_dashboard_queries_only_exported_metrics():
    dashboard = json.loads(GRAFANA.read_text())
    names = grafana_metric_names(dashboard)
    assert names, "the dashboard queries no Pulse metric"
    unknown = names - exported_names()
    assert not unknown, f"the Grafana dashboard queries metrics Pulse does not export: {sorted(unknown)}"
    # one panel per dashboard figure
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for figure in ("events/s in", "events/s out", "processing latency", "consumer lag (messages)",
                   "consumer lag (seconds)", "moderation decisions", "review queue", "copyright matches",
                   "dead letters", "trends", "upload-to-feed"):
        assert figure in titles, figure


def test_prometheus_example_config_is_valid_yaml_with_both_jobs():
    import yaml

    cfg = yaml.safe_load((REPO_ROOT / "infra" / "grafana" / "prometheus.yml").read_text())
    jobs = {j["job_name"] for j in cfg["scrape_configs"]}
    assert {"pulse-api", "pulse-workers"} <= jobs


# ---------------------------------------------------------------------- workers on other hosts


def test_remote_worker_targets_are_scraped_beside_local_ones(tmp_path):
    """``PULSE_METRICS_TARGETS`` names workers the dashboard cannot discover under
    ``$PULSE_HOME/run/metrics/``: the collector scrapes them (a real ``prometheus_client``
    HTTP server here, as a worker on another host runs), sums their samples and reads the lag of
    ``PULSE_APP_ID`` over every agent's topics; a URL that is not http(s) is refused by name."""
    from prometheus_client import start_http_server

    from streams.api.ops import remote_workers
    from streams.ops.collector import Collector
    from streams.settings import Settings, SettingsError

    reg = CollectorRegistry()
    reg.register(busy_worker(42))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_METRICS_TARGETS": f" {url} ,",
                                      "PULSE_APP_ID": "fleet"})
        assert settings.metrics_targets == (url,)
        extra = remote_workers(settings)
        assert extra["extra_targets"] == (url,)
        assert {"uploads", "interactions", "erasure-requests"} <= set(extra["extra_groups"]["fleet"])
        reading = Collector(settings, **extra).read()  # no Kafka configured: the scrape alone
        assert reading.workers == [{"pid": None, "url": url, "app_id": None, "agents": [], "up": True}]
        assert reading.samples[("pulse_agent_events_in_total", (("agent", "content_guard"),))] == 42
    finally:
        server.shutdown()
        thread.join(5)
    assert remote_workers(Settings.from_env({"PULSE_HOME": str(tmp_path)})) == {}
    with pytest.raises(SettingsError, match="PULSE_METRICS_TARGETS.*not an http"):
        Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_METRICS_TARGETS": "file:///etc/passwd"})

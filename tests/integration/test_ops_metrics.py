"""The operator dashboard's data on the real broker and Cassandra: a `pulse worker` serves its
metrics and announces them; the collector reports a group's lag in messages and seconds before
the worker runs, the worker's events once it has, and the API's /metrics exports both to a key
granted the metrics read (and refuses one without it)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from streams.ops.collector import Collector
from streams.producer import Publisher
from streams.runtime.metrics import discovered_workers

from tests.integration.browser import serve_api
from tests.integration.conftest import unique, wait_until
from tests.integration.test_publish import upload_line
from tests.integration.test_worker_views import caught_up

N = 30


def get(url: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.timeout(600)
def test_worker_metrics_collector_lag_and_api_metrics(pipeline, workers):
    from streams.api.auth import KeyStore

    app_id, creator = unique("ops"), unique("c")
    now = int(time.time() * 1000)
    with Publisher(pipeline) as pub:
        for i in range(N):
            pub.publish("uploads", upload_line(f"{creator}-p{i}", creator, event_time=now + i))
        pub.produce_raw("uploads", creator.encode(), b"not an avro event")  # a dead letter

    # before any worker: the group's lag covers what was published, with its age in seconds
    collector = Collector(pipeline, extra_groups={app_id: ["uploads"]})
    try:
        time.sleep(1.2)

        def group_lag():  # a fresh broker's group coordinator may still be loading: ticks retry
            rows = [r for r in collector.tick()["lag"] if r["group"] == app_id and r["topic"] == "uploads"]
            lagging = [r for r in rows if r["messages"]]
            return rows if rows and all(r["seconds"] is not None for r in lagging) else None

        lag = wait_until(group_lag, 60, "the group's lag", diagnose=lambda: str(collector.errors))
        assert sum(r["messages"] for r in lag) >= N
        assert all(r["committed"] == 0 for r in lag)
        lagging = [r for r in lag if r["messages"]]
        assert all(r["seconds"] is not None and r["seconds"] >= 1.0 for r in lagging), lagging

        proc = workers.start(app_id)
        diagnose = lambda: workers.log(proc)  # noqa: E731
        wait_until(lambda: [w for w in discovered_workers(pipeline.home) if w["pid"] == proc.pid], 120,
                   "the worker's metrics discovery file", diagnose=diagnose)
        (me,) = [w for w in discovered_workers(pipeline.home) if w["pid"] == proc.pid]
        assert me["app_id"] == app_id and "uploads" in me["topics"] and me["agents"] == ["materializer"]
        wait_until(lambda: caught_up(pipeline, app_id, ["uploads", "signups", "follows"]), 120,
                   "the worker to commit every offset", diagnose=diagnose)

        status, text = get(me["url"])
        assert status == 200
        worker = samples(text)
        assert worker[("pulse_agent_events_in_total", (("agent", "materializer"),))] >= N
        assert worker[("pulse_agent_processing_seconds_count", (("agent", "materializer"),))] >= N
        assert worker[("pulse_agent_event_age_seconds_count", (("agent", "materializer"),))] >= N
        assert worker[("pulse_agent_dead_letters_total", (("agent", "materializer"), ("reason", "CodecError")))] >= 1

        def tallied():  # the dead-letters topic is tallied with bounded work per tick
            s = collector.tick()
            return s if any(d["consumer"] == "materializer" and d["reason"] == "CodecError"
                            for d in s["dead_letters"]) else None

        snap = wait_until(tallied, 30, "the dead letter in the collector's tally")
        (row,) = [a for a in snap["agents"] if a["agent"] == "materializer"]
        assert row["events_in"] >= N
        assert any(w["pid"] == proc.pid and w["up"] for w in snap["workers"])
        assert row["dead_letters"] >= 1
        assert any(d["consumer"] == "materializer" and d["source_topic"] == "uploads" and d["reason"]
                   for d in snap["recent_dead_letters"])  # the newest, with the reason text
        lag = [r for r in snap["lag"] if r["group"] == app_id and r["topic"] == "uploads"]
        assert lag and all(r["messages"] == 0 and r["seconds"] == 0.0 for r in lag)
    finally:
        collector.close()

    # the API's /metrics: a key granted `metrics`, every figure; a key without it: 403
    key, _ = KeyStore.for_settings(pipeline).create(unique("prom"), reads="metrics")
    other, _ = KeyStore.for_settings(pipeline).create(unique("app"), reads="feeds")
    with serve_api(pipeline) as base:
        assert get(f"{base}/metrics")[0] == 401
        assert get(f"{base}/metrics", {"X-API-Key": other})[0] == 403
        assert get(f"{base}/v1/ops/snapshot", {"X-API-Key": key})[0] == 403  # the dashboard: operators only
        status, text = get(f"{base}/metrics", {"X-API-Key": key})
        assert status == 200, text
        api = samples(text)
        assert api[("pulse_agent_events_in_total", (("agent", "materializer"),))] >= N
        assert any(name == "pulse_consumer_lag_messages" and dict(labels).get("group") == app_id
                   for name, labels in api), "no lag series for the worker's group"
        assert not any("user" in k for _, labels in api for k, _v in labels)
        # an operator's bearer token reads the snapshot and the feed inspector
        from streams.api.auth import issue_token, token_secret

        op = {"Authorization": "Bearer " + issue_token(token_secret(pipeline), unique("op"), ttl_s=600, role="operator")}
        status, body = get(f"{base}/v1/ops/snapshot", op)
        assert status == 200, body
        assert {"snapshot", "history"} <= set(json.loads(body))
        status, body = get(f"{base}/v1/ops/feeds/{creator}", op)
        assert status == 200, body
        feed = json.loads(body)
        assert feed["user_id"] == creator and isinstance(feed["items"], list) and feed["profile_text"]
        user = {"Authorization": "Bearer " + issue_token(token_secret(pipeline), creator, ttl_s=600)}
        assert get(f"{base}/v1/ops/feeds/{creator}", user)[0] == 403

"""`pulse bench replay`'s pieces at toy size on a real broker and Cassandra of their own, as the
bench runs (:func:`streams.bench.bench_servers`): a scaled slice of the Stack Exchange history is
published, read back plainly, exported and rebuilt, and every count and every field of the JSON
agrees. Servers of its own, not the session's: other tests leave undecodable messages on the
shared topics on purpose, and the bench's export stops at one, as it should on its own topics."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from streams.bench import bench_servers
from streams.bench.replay import GOALS, TOPICS, run_on, scaled_history
from streams.demo.sources.stackexchange import SAMPLE_DUMP, iter_events_in_time_order, load_dump
from streams.servers.provision import provision

MATERIALIZER_TOPICS = ("uploads", "signups", "follows")


def test_bench_replay_pieces_count_every_event_and_report_every_field(tmp_path):
    history = list(iter_events_in_time_order(load_dump(SAMPLE_DUMP)))[:100]
    events = 250  # copies 0, 1, 2 of the first 100 events, the last cut at 50
    keyspace = "bench_replay_rebuild"
    with bench_servers("pulse-test-bench-replay-") as (settings, _home, _up):
        provision(settings)
        r = run_on(settings, history, events, tmp_path, into=keyspace)
    json.dumps(r)  # the CLI prints it as JSON

    published = r["publish"]["by_topic"]
    assert r["history"] == {"events": 100, "copies": 3, "scaled_events": events}
    assert sum(published.values()) == r["publish"]["events"] == events
    expected = {t: published[t] for t in TOPICS}  # the topics were empty
    assert all(expected[t] > 0 for t in TOPICS)
    assert r["plain_read"]["by_topic"] == expected
    assert r["plain_read"]["events"] == sum(expected.values()) and r["plain_read"]["bytes"] > 0
    for export in ("export", "export_one_process"):
        assert r[export]["by_topic"] == expected
        assert r[export]["progress_end"] == {t: [n, n] for t, n in expected.items()}
        assert len(r[export]["runs_seconds"]) == 2 and min(r[export]["runs_seconds"]) == r[export]["seconds"]
    assert r["export_one_process"]["jobs"] == 1
    assert r["rebuild_materializer"]["by_topic"] == {t: expected[t] for t in MATERIALIZER_TOPICS}
    assert r["rebuild_materializer"]["progress_end"] == [r["rebuild_materializer"]["events"]] * 2
    assert r["rebuild_materializer"]["keyspace"] == keyspace
    assert r["rebuild_materializer"]["dead_letters"] == 0
    assert r["counts_agree"] is True
    for figure in ("plain_read", "export", "export_one_process", "rebuild_materializer"):
        assert r[figure]["events_per_s"] > 0 and r[figure]["seconds"] > 0, figure
    assert r["export_ratio"] > 0 and r["export_one_process_ratio"] > 0 and r["rebuild_ratio"] > 0
    assert {k: r["goals"][k] for k in GOALS} == GOALS
    assert {k for k in r["goals"] if k.endswith("_met")} == {f"{k}_met" for k in GOALS}

    # the copies are in the Parquet files with their new ids
    ids = {rec["event_id"] for t, rec in scaled_history(history, events) if t == "uploads"}
    exported = set(pq.read_table(tmp_path / "export" / "uploads.parquet",
                                 columns=["event_id"]).column("event_id").to_pylist())
    assert ids and ids <= exported

"""`pulse bench feeds`' fan-out part runs the real agents in-process (so it cannot rot when an
agent gains a side input): pushes equal the followers below the pull threshold, one row above."""
from __future__ import annotations

from streams.bench.feeds import bench_fanout
from streams.settings import Settings


def test_bench_fanout_pushes_below_the_threshold_and_pulls_above(tmp_path):
    s = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_FEED_PULL_THRESHOLD": "100"})
    out = bench_fanout(s, followers=(50, 200))
    small, large = out["creators"]["50"], out["creators"]["200"]
    assert small["hybrid"]["candidates_emitted"] == small["push"]["candidates_emitted"] == 50
    assert large["hybrid"]["candidates_emitted"] == 0 and large["push"]["candidates_emitted"] == 200
    assert out["rerank_per_push_ms"] > 0 and out["pool_posts"] == 3000

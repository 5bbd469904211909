"""`pulse bench feeds`' read part on the real Cassandra, at toy size, in both client modes: every
read is timed on both paths and the bench removes what it wrote."""
from __future__ import annotations

import pytest

from streams.bench.feeds import bench_feed_reads
from streams.query.read_side import ReadSide


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_feed_read_bench_times_both_paths_and_cleans_up(pipeline, mode):
    out = bench_feed_reads(pipeline, users=12, items=30, clients=2, reads=40, fresh=25, dim=16,
                           client_mode=mode)
    assert out["client_mode"] == mode and out["api"]["n"] == 40 and out["raw_driver"]["n"] == 80
    assert out["api"]["p50_ms"] > 0 and out["raw_driver"]["p50_ms"] > 0
    with ReadSide(pipeline) as rs:
        left = rs.execute("SELECT user_id FROM {ks}.user_feeds").all()
        assert not [r.user_id for r in left if r.user_id.startswith("bench-")]
        fresh = rs.execute("SELECT post_id FROM {ks}.fresh_posts WHERE bucket = 0").all()
        assert not [r.post_id for r in fresh if r.post_id.startswith("bench-")]


def test_unknown_client_mode_is_refused(pipeline):
    with pytest.raises(ValueError, match="client_mode"):
        bench_feed_reads(pipeline, users=1, reads=1, client_mode="fibers")

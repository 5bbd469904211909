"""The combination of trending and content hashtags (``streams.query.hashtags.combine``)."""
from __future__ import annotations

from streams.query.hashtags import combine


def test_fitting_trends_first_then_content_suggestions_in_order():
    got = combine(["Own"], ["a", "b", "own", "t2"], [("t1", 0.7, 5.0), ("t2", 0.6, 9.0), ("t3", 0.4, 50.0)],
                  limit=5)
    assert [(g.tag, g.source) for g in got] == [("t1", "trending"), ("t2", "trending+content"),
                                                ("a", "content"), ("b", "content")]
    assert got[1].content_rank == 4 and got[0].content_rank is None and got[2].content_rank == 1


def test_at_most_max_trending_and_limit_and_ties_by_burst_then_tag():
    trends = [("x", 0.8, 1.0), ("y", 0.8, 3.0), ("w", 0.8, 3.0), ("z", 0.9, 0.0)]
    got = combine([], ["c1", "c2", "c3"], trends, limit=4, max_trending=3)
    assert [g.tag for g in got] == ["z", "w", "y", "c1"]
    assert [g.tag for g in combine([], ["c1"], trends, max_trending=0)] == ["c1"]
    assert combine(["#X"], [], [("x", 0.9, 1.0)]) == []  # own tags (any case, with '#') never


def test_the_similarity_cut_is_inclusive():
    assert [g.tag for g in combine([], [], [("t", 0.5, 1.0)], min_similarity=0.5)] == ["t"]
    assert combine([], [], [("t", 0.4999, 1.0)], min_similarity=0.5) == []

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


def test_the_cut_eval_separates_a_tags_own_posts_from_another_tags():
    """Posts embedded by their tag (one direction per tag, plus noise): a post's own tag's
    centroid is close, another tag's is not, so every cut keeps own pairs and rejects others."""
    import numpy as np

    from streams.bench.hashtags import run_hashtags_eval

    rng = np.random.default_rng(0)
    tags = ["a", "b", "c"]
    uploads = [{"title": f"{tags[i % 3]} {i}", "caption": "", "hashtags": [f"#{tags[i % 3].upper()}"]}
               for i in range(30)]
    axes = {t: np.eye(8)[k] for k, t in enumerate(tags)}

    def encode(texts):
        v = np.stack([axes[t.split()[0]] + 0.05 * rng.standard_normal(8) for t in texts])
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    r = run_hashtags_eval(uploads, encode, posts=30, sample=3, min_posts=4)
    assert r["tags"] == 3 and r["pairs"]["own"] == 30 and r["pairs"]["other"] == 30
    assert r["at_default"] == {"own_kept": 1.0, "other_suggested": 0.0}
    assert r["quantiles"]["own"]["p10"] > 0.9 > 0.2 > r["quantiles"]["other"]["p90"]

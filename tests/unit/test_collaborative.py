"""The collaborative candidate source: item-kNN training from engagements, the artifact in the
model registry, recommendations, the log's engagement rows, and feed_ranker's COLLABORATIVE
candidates."""
from __future__ import annotations

import pytest

from models.ranking.collaborative import (CollaborativeModelError, ItemNeighbours, fit,
                                          holdout_hit_rate, train)
from models.registry import read_entry, verify
from replay.training import engagement_rows

# u1..u3 engage with a and b together; u4 with c and d; u5 with a only
PAIRS = [(1, "u1", "a"), (2, "u1", "b"), (3, "u2", "a"), (4, "u2", "b"), (5, "u3", "a"),
         (6, "u3", "b"), (7, "u4", "c"), (8, "u4", "d"), (9, "u5", "a")]


def test_item_knn_recommends_co_engaged_posts_deterministically():
    model = fit([(u, p) for _, u, p in PAIRS])
    assert model.items == ["a", "b", "c", "d"]
    recs = model.recommend(["a"], 5)
    assert [p for p, _ in recs] == ["b"] and recs[0][1] == pytest.approx(3 / 12 ** 0.5, abs=1e-6)
    assert model.recommend(["c"], 5)[0][0] == "d"
    assert model.recommend(["a", "c"], 5) == model.recommend(["c", "a"], 5)
    assert model.recommend(["a"], 5, exclude=["b"]) == []
    assert model.recommend(["unknown"], 5) == [] and fit([]).recommend(["a"], 5) == []


def test_holdout_measures_the_model_against_popularity():
    # u*: x then y (y held out); v*: y, x, then z (z held out, unseen in training); w*: p1, p2
    # then p3 (held out). Co-engagement finds y for u* and p3 for w*; popularity (x, p1, p2 most
    # engaged) finds neither.
    pairs = [(i, f"u{i}", "x") for i in range(6)] + [(10 + i, f"u{i}", "y") for i in range(6)]
    pairs += [(20 + i, f"v{i}", p) for i in range(8) for p in ("x", "y")]
    pairs += [(40 + i, f"v{i}", "z") for i in range(8)]
    pairs += [(50 + i, f"w{i}", p) for i in range(10) for p in ("p1", "p2")]
    pairs += [(70 + i, f"w{i}", "p3") for i in range(10)]
    # t*: p1, p2, p3 then q (q held out): p3's co-engagement stays in the training part
    pairs += [(80 + i, f"t{i}", p) for i in range(5) for p in ("p1", "p2", "p3")]
    pairs += [(90 + i, f"t{i}", "q") for i in range(5)]
    got = holdout_hit_rate(pairs, n=1)
    assert got["holdout_users"] == 29
    assert got["hit@1"] == pytest.approx(16 / 29, abs=1e-4) and got["popular_hit@1"] == 0.0


def test_artifact_round_trip_is_in_the_registry(tmp_path):
    model, metrics = train(PAIRS, "v1")
    assert metrics["pairs"] == len(PAIRS) and metrics["trained_until_ms"] == 9
    directory = tmp_path / "models" / "collaborative" / "v1"
    manifest = model.save(directory, command="pulse train collaborative --version v1",
                          metrics=metrics, training_data={"engagements": len(PAIRS)})
    assert manifest["family"] == "collaborative" and manifest["model_version"] == "item-knn@v1"
    assert set(manifest["files"]) == {"items.json", "similarity.npz", "config.json", "metrics.json"}
    assert verify(read_entry("collaborative", directory)) == []
    loaded = ItemNeighbours.load(directory)
    assert loaded.version == "v1" and loaded.recommend(["a"], 5) == model.recommend(["a"], 5)
    with pytest.raises(CollaborativeModelError, match="pulse train collaborative"):
        ItemNeighbours.load(tmp_path / "nothing")


def test_engagement_rows_from_the_log():
    published = [
        {"post_id": "q", "creator_id": "asker", "event_time": 10, "parent_post_id": None},
        {"post_id": "ans", "creator_id": "helper", "event_time": 20, "parent_post_id": "q"},
        {"post_id": "self", "creator_id": "asker", "event_time": 25, "parent_post_id": "q"},
    ]
    interactions = [
        {"user_id": "fan", "post_id": "q", "type": "LIKE", "event_time": 30},
        {"user_id": "fan", "post_id": "ans", "type": "VIEW", "event_time": 31},
        {"user_id": "asker", "post_id": "q", "type": "LIKE", "event_time": 32},  # own post
        {"user_id": "fan", "post_id": "ans", "type": "SHARE", "event_time": 40},
    ]
    assert engagement_rows(interactions, published) == [
        (20, "helper", "q"), (30, "fan", "q"), (40, "fan", "ans")]
    assert engagement_rows(interactions, published, until_ms=35) == [(20, "helper", "q"), (30, "fan", "q")]

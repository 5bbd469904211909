"""The warm-up grid search behind feed_ranker's weights (streams/bench/ranking_fit.py)."""
from __future__ import annotations

import numpy as np
import pytest

from streams.bench.ranking_fit import Case, _rank, fit, ndcg


def case(period, age_h, target, **signals):
    return Case(period, np.asarray(age_h, dtype=float),
                {k: np.asarray(v, dtype=float) for k, v in signals.items()}, target)


def test_rank_breaks_ties_by_position_newest_first():
    assert _rank(np.asarray([1.0, 1.0, 0.5]), 1) == 2
    assert _rank(np.asarray([0.2, 0.9, 0.9]), 2) == 2
    assert _rank(np.asarray([0.2, 0.9, 0.9]), 0) == 3


def test_ndcg_counts_a_target_outside_the_pool_as_a_miss():
    hit = case("warmup", [1.0, 5.0], 0, reply=[0.0, 0.0])
    miss = case("warmup", [1.0, 5.0], None, reply=[0.0, 0.0])
    cfg = {"novelty_half_life_h": 24.0, "reply": 0.0}
    assert ndcg([hit], cfg) == pytest.approx(1.0)
    assert ndcg([hit, miss], cfg) == pytest.approx(0.5)


def test_fit_chooses_on_the_warmup_and_reports_the_evaluation_beside():
    # in the warm-up the engaged post is an older reply (index 2): only a reply weight lifts it;
    # in the evaluation period the newest post is engaged, so newest-first is perfect there
    warm = [case("warmup", [1.0, 2.0, 30.0], 2, reply=[0.0, 0.0, 1.0]) for _ in range(3)]
    held = [case("evaluation", [1.0, 2.0, 30.0], 0, reply=[0.0, 0.0, 1.0]) for _ in range(2)]
    report = fit(warm + held, grid={"novelty_half_life_h": (24.0,), "reply": (0.0, 1.0)}, top=2)
    assert report["events"] == {"warmup": 3, "evaluation": 2}
    assert report["best"]["reply"] == 1.0 and report["best"]["warmup_ndcg10"] == pytest.approx(1.0)
    assert report["best"]["evaluation_ndcg10"] < report["newest_first"]["evaluation_ndcg10"] == 1.0
    assert [t["reply"] for t in report["top"]] == [1.0, 0.0]

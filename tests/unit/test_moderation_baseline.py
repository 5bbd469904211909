"""The same-run baseline of `pulse eval moderation`: Davidson et al.'s method re-implemented."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.moderation.evaluation import best_recall_at_precision

DAVIDSON = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "davidson" / "labeled_dev.csv"


def test_best_recall_at_precision_sweeps_every_distinct_score():
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    pos = np.array([1, 1, 0, 1, 1, 0, 0, 1, 0, 0], bool)
    # top 5: 4 of 5 right (0.8), recall 4/5; top 8: 5 of 8 (0.625), recall 1.0
    assert best_recall_at_precision(score, pos, 0.8) == 0.8
    assert best_recall_at_precision(score, pos, 0.6) == 1.0
    assert best_recall_at_precision(score, pos, 0.99) == 0.0  # top 1-2 are perfect but < 5 items
    # ties: a cut can only fall between distinct scores
    tied = np.array([0.5] * 10)
    assert best_recall_at_precision(tied, pos, 0.5) == 1.0
    assert best_recall_at_precision(tied, pos, 0.51) == 0.0


def test_other_features_follow_the_notebook():
    from models.moderation.baseline import DavidsonBaseline

    b = DavidsonBaseline()
    f = b.other_features("RT @someone: I love #sunny days http://t.co/x #ff")
    names = ["FKRA", "FRE", "syllables", "avg_syl", "chars", "chars_total", "terms", "words",
             "unique", "neg", "pos", "neu", "compound", "hashtags", "mentions", "urls", "retweet"]
    d = dict(zip(names, f))
    assert (d["hashtags"], d["mentions"], d["urls"], d["retweet"]) == (2, 1, 1, 0.0)
    assert d["pos"] > 0 and d["compound"] > 0  # "love" is positive in VADER
    assert b.other_features("rt that was so bad")[-1] == 1.0
    assert b.other_features("rt that was so bad")[9] > 0  # "bad" is negative


@pytest.mark.skipif(not DAVIDSON.is_file(), reason=f"real data absent: {DAVIDSON}")
def test_baseline_learns_the_davidson_classes():
    from models.moderation.baseline import DavidsonBaseline
    from models.moderation.datasets import read_labelled
    from sklearn.metrics import f1_score

    rows = read_labelled(DAVIDSON)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(rows))
    tr, te = idx[:6000], idx[6000:8000]
    model = DavidsonBaseline().fit([rows[i].text for i in tr], np.array([rows[i].label for i in tr]))
    y = np.array([rows[i].label for i in te])
    pred = model.predict([rows[i].text for i in te])
    majority = np.full_like(y, np.bincount(y).argmax())
    assert f1_score(y, pred, average="weighted") > f1_score(y, majority, average="weighted") + 0.2
    assert (pred[y == 0] == 0).mean() > 0.3  # balanced class weights: hate is found
    assert model.predict_proba([rows[i].text for i in te[:3]]).shape == (3, 3)

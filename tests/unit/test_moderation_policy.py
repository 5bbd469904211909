"""The moderation policy file: parsing, validation, and which score leads to which action."""
from __future__ import annotations

import numpy as np
import pytest

from models.moderation.policy import ACTIONS, PolicyError, load_policy
from models.moderation.routing import TierRule, calibrate_band, calibrate_hate_threshold, labels
from models.moderation.tiers import Verdict, combine


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def test_shipped_policy_names_categories_actions_and_targets(policy):
    assert policy.version == "v1"
    assert set(policy.order) == set(ACTIONS)
    for c in ("hate", "harassment", "threat", "sexual", "graphic_violence", "bad_media"):
        assert c in policy.categories
    assert policy.categories["graphic_violence"].model == "none"  # no model: said, not faked
    assert policy.tiers["fast"]["min_decided"] == pytest.approx(0.90)


@pytest.mark.parametrize("label, scores, action, cats", [
    ("hate", {"hate": 0.7, "harassment": 0.2, "none": 0.1}, "BLOCK", ["hate"]),
    ("harassment", {"hate": 0.1, "harassment": 0.8, "none": 0.1}, "RESTRICT", ["harassment"]),
    ("none", {"hate": 0.0, "harassment": 0.1, "none": 0.9}, "ALLOW", []),
    ("none", {"hate": 0.0, "harassment": 0.1, "none": 0.9, "threat": 0.6}, "BLOCK", ["threat"]),
    ("harassment", {"hate": 0.0, "harassment": 0.9, "none": 0.1, "threat": 0.3}, "REVIEW",
     ["harassment", "threat"]),
])
def test_text_action(policy, label, scores, action, cats):
    got, got_cats, reasons = policy.text_action(label, scores)
    assert (got, got_cats) == (action, cats)
    assert len(reasons) == len(cats)


@pytest.mark.parametrize("nsfw, action", [(0.01, "ALLOW"), (0.5, "REVIEW"), (0.95, "BLOCK")])
def test_image_action(policy, nsfw, action):
    assert policy.image_action(nsfw)[0] == action


def test_strictest(policy):
    assert policy.strictest(["ALLOW", "RESTRICT", "REVIEW"]) == "REVIEW"
    assert policy.strictest(["REVIEW", "BLOCK", "ALLOW"]) == "BLOCK"
    assert policy.strictest([]) == "ALLOW"


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('action = "BLOCK"            # when the tier', 'action = "NUKE"  #'), "NUKE"),
    (lambda s: s.replace("review_at = 0.4 ", "review_at = 0.9 "), "review_at"),
    (lambda s: s.replace("[categories.threat]", "[categories.menace]"), "threat"),
    (lambda s: s.replace("min_decided = 0.90", "min_decided = 1.5"), "min_decided"),
    (lambda s: s + "\n[[[", "not valid TOML"),
])
def test_bad_policy_files_are_refused_with_the_key(policy, tmp_path, edit, message):
    bad = tmp_path / "policy.toml"
    bad.write_text(edit(open(policy.path, encoding="utf-8").read()), encoding="utf-8")
    with pytest.raises(PolicyError, match=message):
        load_policy(bad)


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "nope.toml")


def _v(action, tier="FAST", **scores):
    return Verdict(action, tier, scores, [f"{action} because"], "m", "1", 1.0,
                   [] if action == "ALLOW" else ["x"])


def test_combine_strictest_wins_and_reasons_merge(policy):
    v = combine([_v("ALLOW", hate=0.1), _v("RESTRICT", hate=0.3), _v("ALLOW", "HEAVY", sexual=0.2)],
                policy)
    assert v.action == "RESTRICT" and v.tier == "HEAVY"
    assert v.scores == {"hate": 0.3, "sexual": 0.2}
    assert v.reasons == ["ALLOW because", "RESTRICT because"]
    assert v.latency_ms == 3.0
    with pytest.raises(ValueError):
        combine([], policy)


def test_hate_threshold_rule_and_band():
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.05, 0.1, 0.85], [0.31, 0.35, 0.34]])
    assert labels(p, 0.3).tolist() == [0, 1, 2, 0]
    rule = TierRule(0.3, 1.0, 0.5)
    # item 3 sits on the hate threshold and item 1's harassment-vs-none odds are close: undecided
    assert rule.decided(p).tolist() == [True, False, True, False]


def test_calibrated_band_meets_the_coverage_target_and_drops_errors():
    rng = np.random.default_rng(1)
    n = 2000
    y = rng.integers(0, 3, n)
    conf = rng.uniform(0.34, 0.99, n)
    right = rng.uniform(size=n) < conf  # confident items are right more often
    pred = np.where(right, y, (y + 1) % 3)
    p = np.full((n, 3), 0.0)
    p[np.arange(n), pred] = conf
    for k in range(3):
        p[:, k] = np.where(p[:, k] == 0, (1 - conf) / 2, p[:, k])
    t = calibrate_hate_threshold(p, y, 0.5)
    rule = calibrate_band(p, y, t, 0.9)
    d = rule.decided(p)
    assert d.mean() >= 0.9
    lab = rule.labels(p)
    assert (lab[d] == y[d]).mean() > (lab == y).mean()


def test_band_with_the_next_tiers_labels_hands_on_what_the_next_tier_gets_right():
    # the fast tier is wrong on the items near its boundary; a next tier that is right on them
    # makes the system-error band hand them on, one that is wrong keeps them
    rng = np.random.default_rng(3)
    n = 1000
    y = rng.integers(1, 3, n)  # harassment or none, no hate
    margin = rng.uniform(0.0, 3.0, n)  # logit distance from the harassment/none boundary
    fast_label = np.where(margin < 0.5, 3 - y, y)  # wrong within 0.5 logits
    z = np.where(fast_label == 1, margin, -margin)
    p_h = 1 / (1 + np.exp(-z))
    p = np.column_stack([np.full(n, 1e-4), p_h * (1 - 1e-4), (1 - p_h) * (1 - 1e-4)])
    right_next = calibrate_band(p, y, 0.5, 0.5, next_labels=y)
    wrong_next = calibrate_band(p, y, 0.5, 0.5, next_labels=3 - y)
    assert right_next.band_harassment >= 0.5
    assert wrong_next.band_harassment == 0.0

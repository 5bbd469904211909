"""The shipped text moderator: routing of clear and uncertain texts, verdicts, artifact round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.moderation import ModelNotFound, load_moderator
from models.moderation.artifacts import resolve
from models.moderation.datasets import read_labelled, text_key
from models.moderation.text_fast import FastTextModel
from models.moderation.text_heavy import HeavyHead

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DAVIDSON = DATA / "davidson" / "labeled_dev.csv"


@pytest.fixture(scope="module")
def moderator():
    try:
        return load_moderator()
    except ModelNotFound as err:
        pytest.skip(f"no shipped moderation artifact: {err}")


def test_clear_texts_are_decided_by_the_fast_tier(moderator):
    texts = ["Thank you all so much for the birthday wishes, have a lovely weekend",
             "shut up you stupid bitch nobody likes you"]
    fast = moderator.fast(texts)
    assert [v.action for v in fast] == ["ALLOW", "RESTRICT"]
    for v in fast:
        assert v.tier == "FAST" and v.model == "pulse-text-fast"
        assert v.model_version.startswith(moderator.version)
        assert sum(v.scores[c] for c in ("hate", "harassment", "none")) == pytest.approx(1.0)
        assert v.latency_ms > 0 and v.policy_version == "v1"
    assert fast[1].categories == ["harassment"]


def test_unknown_version_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="pulse train moderation"):
        load_moderator("no-such-version")
    with pytest.raises(ModelNotFound):
        resolve(tmp_path)


@pytest.mark.skipif(not DAVIDSON.is_file(), reason=f"real data absent: {DAVIDSON}")
def test_uncertain_texts_go_to_the_heavy_tier_then_review(moderator):
    seen = np.load(moderator.directory / "seen_keys.npy")
    held_out = [r.text for r in read_labelled(DAVIDSON) if int(text_key(r.text), 16) not in set(seen.tolist())]
    assert len(held_out) > 2000
    sample = held_out[:400]
    fast = moderator.fast(sample)
    undecided = [t for t, v in zip(sample, fast) if v is None]
    assert 0 < len(undecided) <= 0.2 * len(sample)  # the band was calibrated for >= 90 % decided
    heavy = moderator.heavy(undecided)
    assert all(v.tier == "HEAVY" and "threat" in v.scores for v in heavy)
    assert {v.action for v in heavy} <= {"ALLOW", "RESTRICT", "BLOCK", "REVIEW"}
    both = moderator.moderate_texts(sample)
    assert [v.tier for v in both] == ["FAST" if v is not None else "HEAVY" for v in fast]
    review = [v for v in both if v.action == "REVIEW"]
    assert all(v.reasons and v.label in ("hate", "harassment", "none") for v in review)


def test_heavy_tier_scores_a_threat(moderator):
    (v,) = moderator.heavy(["I am going to find you and kill you, you are dead"])
    assert v.scores["threat"] > 0.1
    assert v.scores["jigsaw.toxic"] > 0.5


def test_artifact_round_trip_gives_identical_scores(moderator, tmp_path):
    d = moderator.directory
    texts = ["what a day", "you are a clown", "go back where you came from"]
    for name in moderator.config["fast"]:
        m = FastTextModel.load(d / f"fast_{name}.npz")
        m.save(tmp_path / "f.npz")
        np.testing.assert_array_equal(FastTextModel.load(tmp_path / "f.npz").predict_proba(texts),
                                      m.predict_proba(texts))
    h = HeavyHead.load(d / "heavy.npz")
    h.save(tmp_path / "h.npz")
    feats = np.random.default_rng(0).normal(size=(4, h.coef.shape[1]))
    np.testing.assert_array_equal(HeavyHead.load(tmp_path / "h.npz").predict_proba(feats),
                                  h.predict_proba(feats))


def test_finetuned_classifier_round_trip_gives_identical_logits(moderator, tmp_path):
    from models.moderation.text_finetuned import CONFIG_FILE, FineTunedClassifier

    ft = FineTunedClassifier.load(moderator.directory)
    texts = ["what a day", "you are a clown", "go back where you came from", ""]
    ft.save(tmp_path)
    again = FineTunedClassifier.load(tmp_path)
    np.testing.assert_array_equal(again.logits(texts), ft.logits(texts))
    # batching and order do not change a text's logits beyond float noise
    np.testing.assert_allclose(ft.logits(texts[::-1])[::-1], ft.logits(texts), atol=1e-5)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["config"] == moderator.config["finetune"]


def test_finetuned_classifier_refuses_another_embedding_matrix(moderator, tmp_path):
    from models.moderation.encoders import EncoderUnavailable
    from models.moderation.text_finetuned import CONFIG_FILE, WEIGHTS_FILE, FineTunedClassifier

    (tmp_path / WEIGHTS_FILE).write_bytes((moderator.directory / WEIGHTS_FILE).read_bytes())
    meta = json.loads((moderator.directory / CONFIG_FILE).read_text())
    meta["embedding_sha256"] = "0" * 64
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(EncoderUnavailable, match="embedding matrix"):
        FineTunedClassifier.load(tmp_path)


def test_artifact_is_small_safe_and_documented(moderator):
    d = moderator.directory
    files = {p.name: p.stat().st_size for p in d.iterdir()}
    assert sum(files.values()) < 32 * 2**20  # the fine-tuned encoder is ~21 MB of float16
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib", ".pt", ".bin"))]
    for f in files:
        if f.endswith(".npz"):
            np.load(d / f, allow_pickle=False).close()  # would raise on pickled objects
    card = (d / "MODEL_CARD.md").read_text()
    assert moderator.config["command"].startswith("pulse train moderation") and moderator.config["command"] in card
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["default_fast"] == moderator.fast_variant


def test_an_artifact_from_an_older_pulse_is_refused_with_the_retrain_command(moderator, tmp_path):
    import shutil

    d = tmp_path / "old"
    shutil.copytree(moderator.directory, d)
    cfg = json.loads((d / "config.json").read_text())
    del cfg["heavy"]["features"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelNotFound, match="older Pulse.*retrain it with `pulse train moderation"):
        load_moderator(d)


def test_finetuned_classifier_serves_several_threads(moderator):
    from concurrent.futures import ThreadPoolExecutor

    from models.moderation.text_finetuned import FineTunedClassifier

    ft = FineTunedClassifier.load(moderator.directory)
    batches = [[f"text number {i} from thread {k}, you fool" for i in range(40)] for k in range(6)]
    alone = [ft.logits(b) for b in batches]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(ft.logits, batches))
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-5)

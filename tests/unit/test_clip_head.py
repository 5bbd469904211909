"""The category head: fitting, calibration, the no-pickle artifact, and clip_ai using it.

The numpy-only tests use synthetic features; the last ones load the real towers once (module
fixture) and train a head on text posts through the same ``ContentModels.enrich`` path the agent
runs, then check that enrichment and the ``content-enriched`` event take their categories and
model version from it.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from models.clip import head as head_mod
from models.clip.dataset import Row
from models.clip.head import (CategoryHead, HeadMismatch, HeadNotFound, feature_matrix, fit_head, fit_temperature,
                              resolve_head)

FEATS = {"semantic": 8, "text": 4}


def blobs(n_per: int = 30, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three well-separated classes in 12 dimensions."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 12)) * 3
    x = np.vstack([c + rng.standard_normal((n_per, 12)) for c in centres]).astype(np.float32)
    return x, [k for k in ("food", "sport", "pets") for _ in range(n_per)]


def test_fit_predicts_the_classes_and_probabilities_sum_to_one():
    x, y = blobs()
    h = fit_head(x, y, FEATS)
    assert h.classes == ("food", "pets", "sport")
    p = h.predict_proba(x)
    assert p.shape == (90, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(np.asarray(h.classes)[p.argmax(1)] == np.asarray(y)) > 0.95
    with pytest.raises(ValueError, match="two categories"):
        fit_head(x[:5], ["food"] * 5, FEATS)
    with pytest.raises(ValueError, match=r"\(n, 12\)"):
        h.predict_proba(x[:, :5])


def test_save_load_round_trip_is_pickle_free_and_versioned(tmp_path):
    x, y = blobs()
    h = fit_head(x, y, FEATS, temperature=1.7, encoders={"semantic": "enc-a", "text": "enc-b"}, name="category-head.t")
    d = h.save(tmp_path / "v1", extra_config={"command": "pulse train clip --dataset D"})
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "head.npz"]
    with zipfile.ZipFile(d / "head.npz") as z:  # plain .npy members, no object arrays
        assert sorted(z.namelist()) == ["coef.npy", "intercept.npy", "mean.npy", "scale.npy"]
    loaded = CategoryHead.load(d)
    np.testing.assert_allclose(loaded.predict_proba(x), h.predict_proba(x), rtol=1e-6)
    assert loaded.version == h.version and h.version.startswith("category-head.t-") and len(h.version) == len("category-head.t-") + 12
    assert loaded.temperature == 1.7 and loaded.encoders == {"semantic": "enc-a", "text": "enc-b"}
    assert json.loads((d / "config.json").read_text())["command"] == "pulse train clip --dataset D"
    other = fit_head(x, y, FEATS, c=0.01, name="category-head.t").save(tmp_path / "v2")
    assert CategoryHead.load(other).version != h.version  # the version follows the weights


def test_heads_resolve_by_name_under_the_artifacts_dir_or_by_path(tmp_path, monkeypatch):
    monkeypatch.setattr(head_mod, "ARTIFACTS_DIR", tmp_path)
    x, y = blobs()
    fit_head(x, y, FEATS).save(tmp_path / "mine")
    assert resolve_head("mine") == tmp_path / "mine"
    assert resolve_head(str(tmp_path / "mine")) == tmp_path / "mine"
    with pytest.raises(HeadNotFound, match="pulse train clip"):
        CategoryHead.load("nope")
    cfg = json.loads((tmp_path / "mine" / "config.json").read_text())
    (tmp_path / "mine" / "config.json").write_text(json.dumps({**cfg, "classes": ["a", "b"]}))
    with pytest.raises(ValueError, match="does not fit"):
        CategoryHead.load("mine")
    (tmp_path / "mine" / "config.json").write_text(json.dumps({**cfg, "format": "pickle"}))
    with pytest.raises(ValueError, match="format"):
        CategoryHead.load("mine")


def test_feature_matrix_fills_absent_blocks_with_zeros_and_checks_widths():
    m = feature_matrix(FEATS, {"semantic": [np.ones(8), None], "text": [None, np.full(4, 2.0)], "image": [None, None]})
    np.testing.assert_array_equal(m, [[1] * 8 + [0] * 4, [0] * 8 + [2] * 4])
    with pytest.raises(HeadMismatch, match="trained on \\(4,\\)"):
        feature_matrix(FEATS, {"semantic": [np.ones(8)], "text": [np.ones(5)]})
    with pytest.raises(ValueError, match="needs feature block 'text'"):
        feature_matrix(FEATS, {"semantic": [np.ones(8)]})


def test_fit_temperature_recovers_the_temperature_of_overconfident_logits():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4000, 5)) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(z * 3, y) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.1)
    assert fit_temperature(z * 100, y) == pytest.approx(4.0)  # bounded: [0.25, 4]
    separable = np.eye(5)[y] * 5
    assert fit_temperature(separable, y) == pytest.approx(0.25)


def test_check_encoders_refuses_other_encoders_and_widths():
    x, y = blobs()
    h = fit_head(x, y, FEATS, encoders={"semantic": "bridge-v1", "text": "minilm-v1"})
    h.check_encoders({"semantic": "bridge-v1", "text": "minilm-v1", "image": "x"}, {"semantic": 8, "text": 4})
    with pytest.raises(HeadMismatch, match="minilm-v1"):
        h.check_encoders({"semantic": "bridge-v1", "text": "minilm-v2"}, {"semantic": 8, "text": 4})
    with pytest.raises(HeadMismatch, match="4-d"):
        h.check_encoders({"semantic": "bridge-v1", "text": "minilm-v1"}, {"semantic": 8, "text": 384})


# --------------------------------------------------------------------------- with the real towers

FOOD = ["a plate of pasta with tomato sauce", "fresh bread from the bakery", "my grandmother's apple pie recipe",
        "sushi dinner with friends", "a bowl of ramen noodles", "pancakes with maple syrup for breakfast",
        "grilled vegetables and rice", "homemade pizza straight from the oven", "a cup of coffee and a croissant",
        "spicy curry with naan bread", "chocolate cake for a birthday", "a salad with avocado and eggs"]
SPORT = ["the football match went to penalties", "morning run along the river, 10 km", "tennis final on clay",
         "skateboarding tricks at the park", "our basketball team won the league", "cycling up the mountain pass",
         "a swimmer diving into the pool", "surfing big waves at dawn", "the marathon finish line",
         "baseball pitcher throws a fastball", "gym workout: squats and deadlifts", "skiing down a steep slope"]


@pytest.fixture(scope="module")
def models():
    from models.clip.enrich import ContentModels

    return ContentModels()


@pytest.fixture(scope="module")
def trained(models, tmp_path_factory):
    from models.clip.train import train_head

    rows = [Row(f"t{i}", None, cap, cat, label_source="test") for i, (cap, cat) in
            enumerate([(c, "food") for c in FOOD] + [(c, "sport") for c in SPORT])]
    out = tmp_path_factory.mktemp("heads") / "text-v1"
    head, metrics = train_head(models, rows, out, command="pytest", dataset="inline")
    return head, metrics, out


def test_train_head_writes_artifact_with_metrics_against_zero_shot(trained):
    head, metrics, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "config.json", "head.npz", "metrics.json"]
    assert head.classes == ("food", "sport") and head.features == {"semantic": 384, "text": 384}
    assert metrics["held_out_rows"] + metrics["train_rows"] == 24
    for who in ("head", "zero_shot"):
        assert {"accuracy", "macro_f1", "log_loss", "ece"} <= set(metrics["held_out"][who])
        assert {"accuracy", "macro_f1"} <= set(metrics["grouped_cv_5fold"][who])
    assert metrics["held_out"]["head"]["accuracy"] >= 0.8  # food vs sport captions are easy for MiniLM
    assert "pytest" in (out / "MODEL_CARD.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["version"] == head.version


def test_enrich_and_the_event_take_categories_from_the_head(models, trained):
    from agents.clip_ai import SPEC
    from streams.contracts.agent import Context, Event

    head, _, out = trained
    zero_shot_version = models.model_version
    uploads = [{"event_id": "00000000-0000-4000-8000-000000000001", "event_time": 1_700_000_000_000,
                "post_id": "p1", "creator_id": "u1", "kind": "TEXT", "content_type": "FOREVER",
                "caption": "a big bowl of spaghetti for dinner tonight", "title": None, "hashtags": [], "media_uri": None}]
    try:
        models.use_head(CategoryHead.load(out))
        assert models.model_version == f"{zero_shot_version}+{head.version}"
        [e] = models.enrich(uploads)
        assert set(e.categories) == set(models.category_names)  # the head's classes, the others at 0
        assert max(e.categories, key=e.categories.get) == "food"
        assert e.categories["food"] + e.categories["sport"] == pytest.approx(1.0, abs=1e-5)
        ctx = Context(agent=SPEC.name, event_id=uploads[0]["event_id"],
                      event_time_ms=uploads[0]["event_time"], models=models)
        [emit, _] = SPEC.process(None, Event("uploads", uploads[0]), ctx)
        assert emit.record["model_version"].endswith(head.version) and "category_head" in emit.record["model"]
    finally:
        models.use_head(None)
    assert models.model_version == zero_shot_version
    [e] = models.enrich(uploads)
    assert e.categories["music"] > 0  # zero-shot again: every category gets some probability


def test_a_head_from_other_encoders_is_refused(models, trained, tmp_path):
    _, _, out = trained
    cfg = json.loads((out / "config.json").read_text())
    d = tmp_path / "other"
    d.mkdir()
    (d / "head.npz").write_bytes((out / "head.npz").read_bytes())
    (d / "config.json").write_text(json.dumps({**cfg, "encoders": {**cfg["encoders"], "text": "minilm-other"}}))
    with pytest.raises(HeadMismatch, match="minilm-other"):
        models.use_head(CategoryHead.load(d))
    (d / "config.json").write_text(json.dumps({**cfg, "classes": ["food", "knitting"]}))
    with pytest.raises(HeadMismatch, match="knitting"):
        models.use_head(CategoryHead.load(d))
    assert models.head is None


def test_a_missing_head_fails_before_the_towers_load(tmp_path):
    from models.clip.enrich import ClipConfig, ContentModels

    with pytest.raises(HeadNotFound, match="no category head"):
        ContentModels(ClipConfig(category_head=str(tmp_path / "absent")))


def test_the_agent_loads_the_models_the_settings_name(tmp_path, monkeypatch):
    from agents import clip_ai
    from models.clip import enrich
    from streams.settings import Settings

    settings = Settings.from_env({"PULSE_HOME": str(tmp_path),
                                  "PULSE_CLIP_CATEGORY_HEAD": str(tmp_path / "head")})
    built = []
    monkeypatch.setattr(enrich, "ContentModels", lambda config: built.append(config) or
                        type("M", (), {"model": "m", "model_version": "1"})())
    assert clip_ai.SPEC.load is clip_ai.load and clip_ai.SPEC.blocking
    clip_ai.load(settings)
    assert built == [enrich.ClipConfig.from_settings(settings)]
    assert built[0].category_head == str(tmp_path / "head")

"""Training on a small real slice of Davidson is reproducible and writes a loadable artifact."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.moderation.datasets import DataError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DAVIDSON = DATA / "davidson" / "labeled_dev.csv"
SE = DATA / "stackexchange-quantumcomputing"

pytestmark = pytest.mark.skipif(not (DAVIDSON.is_file() and SE.is_dir()),
                                reason=f"real data absent: {DAVIDSON} / {SE}")


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory):
    import csv

    from models.moderation.datasets import read_labelled

    rows = read_labelled(DAVIDSON)
    by_class = {c: [r for r in rows if r.label == c][:k] for c, k in ((0, 60), (1, 240), (2, 120))}
    out = tmp_path_factory.mktemp("slice") / "slice.csv"
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tweet", "class"])
        for c in (0, 1, 2):
            for r in by_class[c]:
                w.writerow([r.text, c])
    return out


@pytest.fixture(scope="module")
def two_runs(slice_csv, tmp_path_factory):
    from models.moderation.training import train

    base = tmp_path_factory.mktemp("runs")
    from models.moderation.text_finetuned import FineTuneConfig

    # one epoch keeps the fine-tuning to ~20 s; the recipe is otherwise the shipped one
    return [train([slice_csv], SE, "slice", out_dir=base / f"run{i}", command="test",
                  max_unlabelled=60, cache_dir=None, finetune=FineTuneConfig(epochs=1))
            for i in (1, 2)]


def test_same_command_same_metrics_and_weights(two_runs):
    a, b = two_runs
    ma, mb = (json.loads((r.directory / "metrics.json").read_text()) for r in two_runs)
    for m in (ma, mb):
        m.pop("train_seconds")
    assert ma == mb
    for f in ("fast_base.npz", "fast_distilled.npz", "heavy.npz"):
        za, zb = np.load(a.directory / f), np.load(b.directory / f)
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k])
    assert (a.directory / "config.json").read_text() == (b.directory / "config.json").read_text()
    assert (a.directory / "finetuned.safetensors").read_bytes() == (b.directory / "finetuned.safetensors").read_bytes()


def test_fine_tuning_cache_gives_the_same_artifact(two_runs, slice_csv, tmp_path):
    from models.moderation.text_finetuned import FineTuneConfig
    from models.moderation.training import train

    cache = tmp_path / "cache"
    runs = [train([slice_csv], None, "slice", out_dir=tmp_path / f"c{i}", command="test",
                  cache_dir=cache, finetune=FineTuneConfig(epochs=1)) for i in (1, 2)]
    assert len(list(cache.glob("finetuned-*/finetuned.safetensors"))) == 1
    a, b = (r.directory for r in runs)
    assert (a / "finetuned.safetensors").read_bytes() == (two_runs[0].directory / "finetuned.safetensors").read_bytes()
    assert (a / "finetuned.safetensors").read_bytes() == (b / "finetuned.safetensors").read_bytes()
    np.testing.assert_array_equal(np.load(a / "heavy.npz")["coef"], np.load(b / "heavy.npz")["coef"])
    # a damaged cache entry is trained again, not trusted
    (entry,) = cache.glob("finetuned-*/finetuned.json")
    entry.write_text("{not json")
    again = train([slice_csv], None, "slice", out_dir=tmp_path / "c3", command="test",
                  cache_dir=cache, finetune=FineTuneConfig(epochs=1))
    assert (again.directory / "finetuned.safetensors").read_bytes() == (a / "finetuned.safetensors").read_bytes()
    assert json.loads(entry.read_text())["config"]["epochs"] == 1


def test_trained_slice_loads_and_moderates(two_runs):
    from models.moderation import load_moderator

    m = load_moderator(two_runs[0].directory)
    cfg = m.config
    assert cfg["split"]["rows"] == 420 and cfg["split"]["train"] + cfg["split"]["validation"] < 420
    assert cfg["unlabelled"]["texts"] == 60
    vs = m.moderate_texts(["have a great day friends", "fuck you bitch"])
    assert len(vs) == 2 and all(v.action in ("ALLOW", "RESTRICT", "BLOCK", "REVIEW") for v in vs)


def test_too_few_rows_per_class_is_refused(tmp_path):
    from models.moderation.training import train

    f = tmp_path / "tiny.csv"
    f.write_text("text,class\n" + "".join(f"text number {i},{i % 3}\n" for i in range(12)))
    with pytest.raises(DataError, match="at least 10"):
        train([f], None, "tiny", out_dir=tmp_path / "out", cache_dir=None)

"""`pulse train clip` / `pulse dataset clip`: the dataset format, the export from topic records,
the training run's artifact, and the real open_clip fine-tune loop (1 step, tiny checkpoint).

The embedding models are replaced by :class:`FakeModels` (deterministic vectors with the real
widths), so these tests check the plumbing; the real towers are exercised in test_clip_head.py.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.clip.dataset import DatasetError, load_dataset, write_dataset
from models.clip.enrich import ClipConfig, Enrichment
from models.clip.head import CategoryHead
from models.clip.taxonomy import load_taxonomy
from models.clip.train import TrainError, train_clip
from streams.contracts.media import MediaRoots
from replay.training import clip_rows

CATEGORIES = [c.name for c in load_taxonomy()]
def _unit(seed: str, dim: int) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(seed.encode())).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass
class _Version:
    version: str


@dataclass
class FakeModels:
    """The parts of ContentModels training uses: vectors depend on the caption's first word."""

    category_names: list = field(default_factory=lambda: list(CATEGORIES))
    imagenet: _Version = field(default_factory=lambda: _Version("fake-imagenet"))
    minilm: _Version = field(default_factory=lambda: _Version("fake-minilm"))
    clip: None = None
    image_dim: int = 1280
    model: str = "fake"
    model_version: str = "fake-1"

    class bridge:  # noqa: N801
        top_k = 5

    def enrich(self, records):
        out = []
        for r in records:
            word = (r.get("caption") or "x").split()[0]
            e = Enrichment(r["post_id"], semantic=_unit("s" + word, 384), text=_unit("t" + word, 384),
                           image=_unit("i" + word, 1280) if r.get("media_uri") else None)
            e.categories = {c: 1 / len(self.category_names) for c in self.category_names}
            out.append(e)
        return out


def image(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(colour))
    arr = np.clip(np.array(colour)[None, None] + rng.integers(-20, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    """36 rows: 3 categories x 6 photos x 2 captions; a photo's captions share a group."""
    d = tmp_path / "ds"
    rows = []
    for cat, word, colour in (("food", "pizza", (200, 60, 40)), ("sport", "tennis", (40, 160, 60)),
                              ("pets", "dog", (60, 60, 200))):
        for i in range(6):
            image(d / "media" / f"{cat}{i}.png", colour)
            for k in range(2):
                rows.append({"post_id": f"{cat}-{i}-{k}", "image": f"media/{cat}{i}.png",
                             "caption": f"{word} photo number {i} take {k}", "category": cat,
                             "label_source": "test", "group": f"{cat}{i}"})
    write_dataset(d, rows, source="test")
    return d


# --------------------------------------------------------------------------- the dataset format

def test_load_dataset_resolves_images_and_groups(dataset):
    rows = load_dataset(dataset, CATEGORIES)
    assert len(rows) == 36 and rows[0].image.is_absolute() and rows[0].image.is_file()
    assert rows[0].split_group == rows[1].split_group == "food0"
    assert rows[0].upload()["kind"] == "IMAGE"
    manifest = json.loads((dataset / "dataset.json").read_text())
    assert manifest["format"] == "pulse-clip-dataset/1" and manifest["categories"] == {"food": 12, "sport": 12, "pets": 12}


@pytest.mark.parametrize("line,match", [
    ("not json", "not JSON"),
    ('{"post_id": "a", "category": "knitting"}', "not in the taxonomy"),
    ('{"post_id": "a", "category": "food", "image": "media/none.png"}', "not found"),
    ('{"category": "food"}', "'post_id'"),
    ('{"post_id": "a", "category": "food"}\n{"post_id": "a", "category": "food"}', "duplicate"),
])
def test_load_dataset_names_the_bad_line(tmp_path, line, match):
    (tmp_path / "rows.jsonl").write_text(line + "\n")
    with pytest.raises(DatasetError, match=match):
        load_dataset(tmp_path, CATEGORIES)
    with pytest.raises(FileNotFoundError, match="pulse dataset clip"):
        load_dataset(tmp_path / "absent")


# --------------------------------------------------------------------------- export from topics

def test_clip_rows_join_label_and_respect_erasure(tmp_path):
    media = tmp_path / "store"
    files = {n: image(media / f"{n}.jpg", (10 * i, 0, 0)) for i, n in enumerate(["a", "b", "c", "d", "e"])}

    def up(pid, creator="u1", kind="IMAGE", tags=(), uri=None):
        return {"post_id": pid, "creator_id": creator, "kind": kind, "caption": f"caption {pid}", "title": None,
                "hashtags": list(tags), "media_uri": uri if uri is not None else f"file://{files.get(pid, media / 'x')}"}

    def enr(pid, t, cats):
        return {"post_id": pid, "event_time": t, "model_version": "mv-1", "categories": cats}

    outside = image(tmp_path / "outside.jpg", (0, 0, 0))  # a real image, but not in the media roots
    uploads = [up("a", tags=["#Foodie", "travel"]), up("b"), up("c", creator="gone"), up("d"), up("e", kind="VIDEO"),
               up("missing"), up("f"), up("a"), up("g", uri=outside.as_uri()), up("h", uri="/etc/passwd")]
    enrichments = [enr("a", 1, {"food": 0.3, "travel": 0.6}), enr("b", 1, {"pets": 0.9, "food": 0.1}),
                   enr("b", 2, {"food": 0.8, "pets": 0.2}), enr("c", 1, {"food": 1.0}), enr("e", 1, {"food": 1.0}),
                   enr("missing", 1, {"food": 1.0}), enr("g", 1, {"food": 1.0}), enr("h", 1, {"food": 1.0})]
    erasures = [{"user_id": "gone", "scope": "USER", "post_id": None},
                {"user_id": "u1", "scope": "POST", "post_id": "d"}]
    out = tmp_path / "out"
    rows, skipped = clip_rows(uploads, enrichments, erasures, load_taxonomy(), out, MediaRoots(media))
    by_id = {r["post_id"]: r for r in rows}
    assert set(by_id) == {"a", "b"}
    # two creator tags name food and travel: the one clip_ai ranked higher wins
    assert (by_id["a"]["category"], by_id["a"]["label_source"]) == ("travel", "creator_hashtag")
    assert (by_id["b"]["category"], by_id["b"]["label_source"]) == ("food", "clip_ai:mv-1")  # the latest enrichment
    # g and h lie outside the media roots: never copied into the dataset
    assert skipped == {"not_image": 1, "erased": 2, "not_enriched": 1, "media_missing": 3, "duplicate": 1}
    assert (out / by_id["a"]["image"]).read_bytes() == files["a"].read_bytes()
    write_dataset(out, rows, source="test")
    assert [r.post_id for r in load_dataset(out, CATEGORIES)] == ["a", "b"]


# --------------------------------------------------------------------------- training runs

def test_train_clip_writes_a_versioned_head_and_refuses_to_overwrite_it(dataset, tmp_path):
    report = train_clip(dataset, tmp_path / "art", "v1", ClipConfig(), features=("semantic", "text", "image"),
                        command="pulse train clip --dataset ds", models=FakeModels())
    out = tmp_path / "art" / "v1"
    assert report["artifact"] == str(out) and report["finetune"] is None
    head = CategoryHead.load(out)
    assert head.version == report["head"]["version"] and head.classes == ("food", "pets", "sport")
    assert head.features == {"semantic": 384, "text": 384, "image": 1280}
    assert head.encoders["text"] == "fake-minilm"
    # a caption's first word decides its vectors, so the held-out photos are recognised
    assert report["head"]["held_out"]["head"]["accuracy"] == 1.0
    assert report["head"]["held_out"]["zero_shot"]["accuracy"] <= 0.5  # the fake zero-shot is uniform
    assert report["head"]["held_out_groups"] < report["head"]["groups"]
    with pytest.raises(TrainError, match="already holds"):
        train_clip(dataset, tmp_path / "art", "v1", ClipConfig(), models=FakeModels())
    with pytest.raises(TrainError, match="PULSE_CLIP_CHECKPOINT"):
        train_clip(dataset, tmp_path / "art", "v2", ClipConfig(), finetune=True, models=FakeModels())


def test_finetune_runs_the_real_loop_and_writes_a_loadable_checkpoint(dataset, tmp_path, tiny_clip):
    from safetensors.torch import load_file

    from models.clip.openclip import OpenClipTower

    config = ClipConfig(clip_model="pulse-test-tiny-clip", clip_checkpoint=str(tiny_clip / "tiny.pt"),
                        clip_model_config=str(tiny_clip / "pulse-test-tiny-clip.json"))
    report = train_clip(dataset, tmp_path / "art", "ft", config, finetune=True, max_steps=1, batch_size=8,
                        lr=1e-3, models=FakeModels())
    ft = report["finetune"]
    assert ft["steps"] == 1 and np.isfinite(ft["loss_first"])
    for when in ("held_out_before", "held_out_after"):
        assert set(ft[when]) == {"image_to_caption", "caption_to_image"}
        assert set(ft[when]["image_to_caption"]) == {"recall@1", "recall@5"}
    assert ft["held_out_images"] + ft["train_images"] == 18 and ft["chance"]["caption_to_image"]["recall@1"] > 0
    out = tmp_path / "art" / "ft" / "clip"
    before = torch.load(tiny_clip / "tiny.pt", weights_only=True)
    after = load_file(out / "open_clip_model.safetensors")
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # one optimiser step changed weights
    tower = OpenClipTower("pulse-test-tiny-clip", out / "open_clip_model.safetensors")
    assert tower.version == ft["version"] and tower.dim == 32
    assert json.loads((out / "config.json").read_text())["use"].startswith("PULSE_CLIP_MODEL=pulse-test-tiny-clip")


def test_cli_train_and_dataset_commands(dataset, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import models.clip.enrich
    from streams.cli import app

    monkeypatch.setattr(models.clip.enrich, "ContentModels", lambda config: FakeModels())
    monkeypatch.setenv("PULSE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    r = runner.invoke(app, ["train", "clip", "--dataset", str(dataset), "--out", str(tmp_path / "art"),
                            "--version", "cli-v1"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout[r.stdout.index("{"):])
    assert report["head"]["version"].startswith("category-head.cli-v1-")
    assert "pulse train clip --dataset" in (tmp_path / "art" / "cli-v1" / "MODEL_CARD.md").read_text()
    r = runner.invoke(app, ["train", "clip", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "art")])
    assert r.exit_code == 1 and "rows.jsonl" in r.output.replace("\n", "")
    r = runner.invoke(app, ["dataset", "clip", "--out", str(tmp_path / "d"), "--coco", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "captions.json" in r.output.replace("\n", "")

"""`pulse moderate`, `pulse eval moderation` and `pulse train moderation` as a user runs them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.moderation.artifacts import ARTIFACTS_DIR, DEFAULT_VERSION
from streams.settings import REPO_ROOT

PHOTOS = Path(REPO_ROOT).parent / "shared" / "data" / "coco-captions" / "images"
shipped = pytest.mark.skipif(not (ARTIFACTS_DIR / DEFAULT_VERSION / "config.json").is_file(),
                             reason="no shipped moderation artifact")


def pulse(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env["PULSE_HOME"] = str(tmp_path)
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


@shipped
def test_moderate_text_prints_one_verdict(tmp_path):
    out = pulse(tmp_path, "moderate", "--text", "thanks for sharing, this is lovely")
    assert out.returncode == 0, out.stderr
    v = json.loads(out.stdout)
    assert v["action"] == "ALLOW" and v["tier"] == "FAST"
    assert v["model_version"].startswith(DEFAULT_VERSION)


@shipped
def test_moderate_text_and_bad_image_combine_to_the_strictest(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = pulse(tmp_path, "moderate", "--text", "good morning", "--image", str(bad))
    assert out.returncode == 0, out.stderr
    v = json.loads(out.stdout)
    assert v["action"] == "BLOCK" and "bad_media" in v["categories"]
    assert [p["action"] for p in v["parts"]] == ["ALLOW", "BLOCK"]


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"real photos absent: {PHOTOS}")
@shipped
def test_moderate_image(tmp_path):
    photo = sorted(PHOTOS.glob("*.jpg"))[1]
    v = json.loads(pulse(tmp_path, "moderate", "--image", str(photo)).stdout)
    assert v["action"] == "ALLOW" and v["scores"]["sexual"] < 0.2


@pytest.mark.parametrize("args, message", [
    (("moderate", "--text", "x", "--model", "nope"), "no moderation model at"),
    (("eval", "moderation", "--data", "missing.csv"), "missing.csv: no such file"),
    (("train", "moderation", "--data", "missing.csv", "--out", "/tmp/x"), "missing.csv: no such file"),
])
def test_user_errors_are_one_line(tmp_path, args, message):
    out = pulse(tmp_path, *args)
    assert out.returncode == 1, out.stdout + out.stderr
    assert message in " ".join(out.stderr.split())
    assert "Traceback" not in out.stderr


DAVIDSON = Path(REPO_ROOT).parent / "shared" / "data" / "davidson" / "labeled_dev.csv"


@shipped
@pytest.mark.skipif(not DAVIDSON.is_file(), reason=f"real data absent: {DAVIDSON}")
def test_eval_on_held_out_rows_with_same_run_baseline_and_plot(tmp_path):
    import csv

    from models.moderation import artifacts
    from models.moderation.datasets import read_labelled, text_key

    seen = set(artifacts.load_seen_keys(artifacts.resolve(None)).tolist())
    rows = read_labelled(DAVIDSON)
    is_seen = [int(text_key(r.text), 16) in seen for r in rows]
    held = [r for r, s in zip(rows, is_seen) if not s][:300]
    trained = [r for r, s in zip(rows, is_seen) if s][:900]
    f = tmp_path / "slice.csv"
    with f.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["tweet", "class"])
        w.writerows([r.text, r.label] for r in held + trained)
    png = tmp_path / "pr.png"
    out = pulse(tmp_path, "eval", "moderation", "--data", str(f), "--plot", str(png))
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["evaluated_rows"] == 300 and rep["rows_in_file"] == 1200
    assert sum(rep["share_decided"].values()) == pytest.approx(1.0, abs=1e-3)
    base = rep["baseline_same_run"]
    assert base["trained_on_rows"] == 900
    assert set(base["per_class"]) == {"hate", "harassment", "none"}
    assert isinstance(base["system_beats_baseline"]["weighted_f1"], bool)
    assert rep["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

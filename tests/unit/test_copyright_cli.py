"""`pulse copyright match` as an analyst runs it (no server): one JSON verdict per file with the
fields issue 5 names, bad files get a verdict with the reason, exit 1 only when nothing could be
read. The commands run in-process through typer's CliRunner (a subprocess per test would spend
most of its time importing), on an 80-column console (``COLUMNS``), whatever the terminal."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from streams.cli import app

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
COCO = sorted((DATA / "coco-captions" / "images").glob("*.jpg"))
needs_data = pytest.mark.skipif(len(COCO) < 4, reason=f"COCO photos not found under {DATA}")


class Out:
    def __init__(self, result):
        self.returncode = result.exit_code
        self.stdout, self.stderr = result.stdout, result.stderr


def pulse(tmp_path, *args):
    result = CliRunner().invoke(app, list(args), env={"PULSE_HOME": str(tmp_path / "home"),
                                                      "COLUMNS": "80"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Out(result)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    if len(COCO) < 4:
        pytest.skip(f"COCO photos not found under {DATA}")
    d = tmp_path_factory.mktemp("refs")
    for p in COCO[:2]:
        shutil.copy(p, d / p.name)
    (d / "README.txt").write_text("not media: ignored")
    return d


@needs_data
def test_match_json_one_verdict_per_file(refs, tmp_path):
    im = Image.open(COCO[1]).convert("RGB")
    w, h = im.size
    crop = tmp_path / "crop.jpg"
    im.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(crop, quality=80)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    out = pulse(tmp_path, "copyright", "match", "--references", str(refs), str(crop),
                str(COCO[3]), str(bad), "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [v["file"] for v in lines] == [str(crop), str(COCO[3]), str(bad)]
    for v in lines:
        assert {"file", "matched", "reference", "modality", "distance", "error_rate",
                "action"} <= v.keys()
    copy, other, broken = lines
    assert copy["matched"] and copy["reference"] == COCO[1].stem and copy["action"] == "BLOCK"
    assert copy["modality"] == "IMAGE"
    assert not other["matched"] and other["action"] == "ALLOW" and other["reference"] is None
    assert broken["error"] and not broken["matched"] and broken["action"] == "REVIEW"
    assert "2 references registered" in out.stderr


@needs_data
def test_table_and_exit_code_when_nothing_is_readable(refs, tmp_path, monkeypatch):
    # a path the test chooses (relative to its own directory), so its length does not depend on
    # where pytest puts temporary directories
    monkeypatch.chdir(tmp_path)
    Path("bad.png").write_bytes(b"nope")
    out = pulse(tmp_path, "copyright", "match", "-r", str(refs), "bad.png")
    assert out.returncode == 1
    lines = [line.split() for line in out.stdout.splitlines()]
    assert ["file", "bad.png"] in lines
    verdict = lines[lines.index(["file", "bad.png"]) - 1]
    assert verdict == ["REVIEW", "-", "-"]  # action, modality, reference


def test_missing_reference_folder_is_one_line(tmp_path):
    out = pulse(tmp_path, "copyright", "match", "--references", str(tmp_path / "nope"), "x.jpg")
    assert out.returncode == 1
    assert "no such folder" in " ".join(out.stderr.split()) and "Traceback" not in out.stderr


def test_eval_and_bench_are_registered(tmp_path):
    for group in ("eval", "bench"):
        out = pulse(tmp_path, group, "--help")
        assert out.returncode == 0 and "copyright" in out.stdout

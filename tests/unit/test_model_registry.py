"""The model registry: manifests record every file's hash, listing hides nothing, verification
finds every kind of drift, and the shipped artifacts are exactly what their manifests say."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from models.registry import (MANIFEST, RegistryError, data_digest, default_roots, list_models,
                             read_entry, read_manifest, verify, write_manifest)
from streams.settings import REPO_ROOT


def _artifact(root: Path, version: str, **files: bytes) -> Path:
    d = root / version
    (d / "sub").mkdir(parents=True)
    (d / "weights.npz").write_bytes(b"\x00\x01weights")
    (d / "sub" / "head.json").write_text('{"c": 1}\n')
    (d / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "rows": 12}))
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


def test_write_manifest_hashes_every_file_but_itself_and_reads_metrics(tmp_path):
    d = _artifact(tmp_path, "v1")
    m = write_manifest(d, family="ranker", version="v1", command="pulse train ranker",
                       training_data={"events": {"topic": "engagements", "offsets": [0, 99]}},
                       created_at="2026-01-02T03:04:05+01:00", model_version="ranker-v1")
    assert list(m) == ["family", "version", "created_at", "command", "model_version", "files",
                       "metrics", "training_data"]
    assert list(m["files"]) == ["metrics.json", "sub/head.json", "weights.npz"]
    assert m["files"]["weights.npz"] == {"sha256": hashlib.sha256(b"\x00\x01weights").hexdigest(),
                                         "bytes": 9}
    assert m["created_at"] == "2026-01-02T02:04:05Z"
    assert m["metrics"] == {"accuracy": 0.75, "rows": 12}
    text = (d / MANIFEST).read_text()
    assert text.endswith("}\n") and json.loads(text) == m and text == json.dumps(m, indent=2) + "\n"
    # rewriting leaves the hashes alone and never lists the manifest itself
    assert write_manifest(d, family="ranker", version="v1", created_at=m["created_at"])["files"] == m["files"]


def test_written_metrics_win_over_metrics_json(tmp_path):
    d = _artifact(tmp_path, "v1")
    assert write_manifest(d, family="f", version="v1", metrics={"ndcg@10": 0.4})["metrics"] == {"ndcg@10": 0.4}


def test_list_then_verify_finds_changed_missing_and_extra_files(tmp_path):
    root = tmp_path / "ranker"
    write_manifest(_artifact(root, "v1"), family="ranker", version="v1", created_at="2026-01-02T00:00:00Z")
    write_manifest(_artifact(root, "v0"), family="ranker", version="v0", created_at="2026-01-01T00:00:00Z")
    entries = list_models([("ranker", root)])
    assert [(e.family, e.version, e.status) for e in entries] == [("ranker", "v0", "ok"), ("ranker", "v1", "ok")]
    e = entries[1]
    assert verify(e) == []
    assert len(e.files) == 3 and e.bytes == sum(p.stat().st_size for p in e.path.rglob("*")
                                                if p.is_file() and p.name != MANIFEST)

    (e.path / "weights.npz").write_bytes(b"\x00\x02weights")
    (e.path / "sub" / "head.json").unlink()
    (e.path / "notes.txt").write_text("added later")
    problems = verify(e)
    assert len(problems) == 3
    assert problems[0] == "extra file notes.txt (not in manifest.json)"
    assert problems[1] == "missing file sub/head.json"
    assert problems[2].startswith("changed file weights.npz: sha256 ")
    assert verify(entries[0]) == []  # the other version is untouched


def test_a_directory_without_manifest_is_listed_not_hidden(tmp_path):
    root = tmp_path / "cf"
    write_manifest(_artifact(root, "als-v1"), family="cf", version="als-v1")
    _artifact(root, "als-v2")
    (root / ".partial").mkdir()  # hidden directories (half-written artifacts) are not versions
    entries = list_models([("cf", root), ("missing", tmp_path / "nope")])
    assert [(e.version, e.status) for e in entries] == [("als-v2", "no manifest"), ("als-v1", "ok")]
    bare = entries[0]
    assert bare.created_at is None and len(bare.files) == 3 and bare.bytes > 0
    assert verify(bare) == [f"{bare.path}: no manifest.json, nothing to verify"]
    assert bare.to_json()["status"] == "no manifest"


def test_invalid_manifest_raises_registry_error_naming_the_file(tmp_path):
    d = _artifact(tmp_path / "f", "v1")
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(RegistryError, match=f"{d / MANIFEST}: not valid JSON"):
        list_models([("f", tmp_path / "f")])
    (d / MANIFEST).write_text(json.dumps({"family": "f", "version": "v1", "created_at": "x",
                                          "files": {"a": {"sha256": "00"}}}))
    with pytest.raises(RegistryError, match=f"{d / MANIFEST}: 'files' must map"):
        read_manifest(d)
    (d / MANIFEST).write_text("[]")
    with pytest.raises(ValueError, match="expected a JSON object"):  # RegistryError is a ValueError
        read_entry("f", d)
    with pytest.raises(RegistryError, match="no artifact directory"):
        write_manifest(tmp_path / "absent", family="f", version="v1")
    with pytest.raises(RegistryError, match="no UTC offset"):
        write_manifest(d, family="f", version="v1", created_at="2026-01-01T00:00:00")


def test_data_digest_of_a_directory_changes_with_any_file(tmp_path):
    d = tmp_path / "data"
    (d / "media").mkdir(parents=True)
    (d / "rows.jsonl").write_text('{"post_id": "a"}\n')
    (d / "media" / "a.jpg").write_bytes(b"jpeg")
    first = data_digest(d)
    assert first["files"] == 2 and first["bytes"] == 21
    assert data_digest(d / "rows.jsonl")["bytes"] == 17
    (d / "media" / "a.jpg").write_bytes(b"jpeg!")
    assert data_digest(d)["sha256"] != first["sha256"]
    with pytest.raises(FileNotFoundError):
        data_digest(tmp_path / "nope")


def test_default_roots_add_every_family_under_pulse_home(tmp_path):
    (tmp_path / "models" / "cf").mkdir(parents=True)
    (tmp_path / "models" / "notes.txt").write_text("not a family")
    roots = default_roots(REPO_ROOT, tmp_path)
    assert roots == [("moderation", REPO_ROOT / "models/moderation/artifacts"),
                     ("clip", REPO_ROOT / "models/clip/artifacts"), ("cf", tmp_path / "models" / "cf")]
    assert default_roots(REPO_ROOT, None) == roots[:2]


def test_shipped_artifacts_have_manifests_that_verify_clean():
    entries = {(e.family, e.version): e for e in list_models(default_roots(REPO_ROOT, None))}
    moderation, clip = entries[("moderation", "davidson-v2")], entries[("clip", "coco-captions-v1")]
    for e in (moderation, clip):
        assert e.status == "ok" and verify(e) == [], e.path
        config = json.loads((e.path / "config.json").read_text())
        assert e.command == config["command"] and e.model_version == config["version"]
        assert e.metrics == json.loads((e.path / "metrics.json").read_text())
        assert e.created_at.startswith("2026-11-22T") and e.created_at.endswith("Z")
    assert moderation.training_data["split"]["rows"] == 17276
    assert clip.training_data["rows"] == 226 and clip.training_data["rows_in_dataset"] == 255

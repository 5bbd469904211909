"""The CLI answers bad situations with one actionable line and exit code 1, never a traceback.

These run `pulse` as a user would (a subprocess) against an empty PULSE_HOME, so nothing is
configured and no server runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streams.settings import REPO_ROOT


def pulse(tmp_path, *args, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    full.update(PULSE_HOME=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=full, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (("posts", "--creator", "u1"), "no Cassandra configured: run `pulse up`"),
    (("follows", "u1"), "no Cassandra configured: run `pulse up`"),
    (("topics", "list"), "no Kafka cluster configured: run `pulse up`"),
    (("dead-letters",), "no Kafka cluster configured: run `pulse up`"),
    (("worker", "--agents", "nope"), "unknown agent 'nope'; registered agents: materializer"),
    (("publish", "missing.jsonl", "--topic", "uploads"), "missing.jsonl: no such file"),
    (("replay", "rebuild", "--agents", "nope"), "unknown agent 'nope'; registered agents: materializer"),
    (("replay", "swap", "rebuilt_1"), "no Cassandra configured: run `pulse up`"),
    (("feed", "u1"), "no Cassandra configured: run `pulse up`"),
    (("profile", "u1"), "no Cassandra configured: run `pulse up`"),
    (("feed", "u1", "--cursor", "page-two"), "cursor 'page-two' is not one this API returned"),
    (("replay", "rebuild", "--agents", "publisher", "--from", "2020-01-01"),
     "agents with state (publisher) are rebuilt from the whole log"),  # a type registered by name
])
def test_user_errors_are_one_line(tmp_path, args, message):
    out = pulse(tmp_path, *args)
    assert out.returncode == 1, out.stdout + out.stderr
    assert message in " ".join(out.stderr.split())
    assert "Traceback" not in out.stderr


def test_bad_setting_names_the_variable(tmp_path):
    out = pulse(tmp_path, "status", PULSE_PARTITIONS="lots")
    assert out.returncode == 1
    assert "PULSE_PARTITIONS='lots' is not an integer" in out.stderr
    assert "Traceback" not in out.stderr


def test_status_with_nothing_started(tmp_path):
    out = pulse(tmp_path, "status", "--json")
    assert out.returncode == 0, out.stderr
    assert '"kafka"' in out.stdout and '"cassandra"' in out.stdout


def test_replay_is_a_command_group(tmp_path):
    out = pulse(tmp_path, "replay", "--help")
    assert out.returncode == 0, out.stderr
    for command in ("rebuild", "swap", "reset", "drop"):
        assert command in out.stdout


def test_agents_lists_the_registry(tmp_path):
    out = pulse(tmp_path, "agents")
    assert out.returncode == 0 and "materializer" in out.stdout and "uploads" in out.stdout


def test_worker_whose_model_is_missing_stops_at_start_with_the_reason(tmp_path):
    out = pulse(tmp_path, "worker", "--agents", "content_guard", PULSE_KAFKA_BOOTSTRAP="127.0.0.1:1",
                PULSE_MODERATION_MODEL="no-such-version")
    assert out.returncode == 1, out.stdout + out.stderr
    text = " ".join(out.stderr.split())
    assert "agent content_guard could not start" in text and "pulse train moderation" in text
    assert "Traceback" not in out.stderr


def test_models_list_json_names_the_shipped_versions_and_the_one_in_use(tmp_path):
    out = pulse(tmp_path, "models", "list", "--json", "--verify")
    assert out.returncode == 0, out.stderr
    rows = {(r["family"], r["version"]): r for r in json.loads(out.stdout)}
    moderation = rows[("moderation", "davidson-v2")]
    assert moderation["status"] == "ok" and moderation["problems"] == [] and moderation["in_use"]
    assert moderation["files"]["finetuned.safetensors"]["bytes"] > 0
    assert not rows[("clip", "coco-captions-v1")]["in_use"]  # no category head set: zero-shot

    # a family under PULSE_HOME is listed too, and --verify fails on a file changed after training
    from models.registry import write_manifest

    als = tmp_path / "models" / "cf" / "als-v1"
    als.mkdir(parents=True)
    (als / "factors.npy").write_bytes(b"before")
    write_manifest(als, family="cf", version="als-v1")
    (als / "factors.npy").write_bytes(b"after")
    out = pulse(tmp_path, "models", "list", "--json", "--verify")
    assert out.returncode == 1 and "1 artifact(s) do not match" in out.stderr
    assert "Traceback" not in out.stderr
    (cf,) = [r for r in json.loads(out.stdout) if r["family"] == "cf"]
    assert cf["version"] == "als-v1" and cf["problems"][0].startswith("changed file factors.npy")


def test_error_types_registered_by_name_exist_and_starting_pulse_imports_none_of_their_modules():
    """register_user_errors("module:Class") keeps the agents and scikit-learn off every command's
    start (and off the processes `pulse export` starts): each name must resolve to an exception
    class defined in that module, and a fresh `import streams.cli` must not import them."""
    import importlib

    from streams.cli import common

    assert common._NAMED_USER_ERRORS
    for ref in common._NAMED_USER_ERRORS:
        module, _, name = ref.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == module, ref
    out = subprocess.run([sys.executable, "-c", "import sys, streams.cli; print(sorted(m for m in "
                          "('agents.registry', 'replay.rebuild', 'sklearn', 'scipy', 'torch') "
                          "if m in sys.modules))"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_unreachable_subject_keys_are_one_line_not_a_traceback(capsys):
    """A reader that cannot reach the subjects' keys (Cassandra down while Kafka answers: an
    export of a topic with personal fields) reports the store's message, which says what to
    check, and exits 1."""
    import typer

    from streams.cli.common import friendly
    from streams.stores.keys import KeyStoreError

    @friendly
    def command():
        raise KeyStoreError("subject keys in pulse_keys: NoHostAvailable: ...; is Cassandra up "
                            "(`pulse status`)?")

    with pytest.raises(typer.Exit) as exit_:
        command()
    assert exit_.value.exit_code == 1
    err = capsys.readouterr().err
    assert "is Cassandra up" in err and "Traceback" not in err

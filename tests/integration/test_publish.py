"""Publishing through the SDK and `pulse publish` on the real broker: good lines land, bad lines
are reported with their line number and dead-lettered with their original text."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

from replay.reader import read_topic
from streams.producer import Publisher, publish_jsonl
from streams.settings import REPO_ROOT

from tests.integration.conftest import unique, worker_env


def upload_line(post_id: str, creator: str, **kw) -> dict:
    rec = {"post_id": post_id, "creator_id": creator, "kind": "TEXT", "content_type": "FOREVER",
           "media_uri": None, "caption": "a qubit walks into a bar", "hashtags": ["qubits"],
           "duration_ms": None, "size_bytes": None}
    rec.update(kw)
    return rec


def test_jsonl_with_bad_lines_publishes_the_good_and_dead_letters_the_bad(pipeline, tmp_path):
    creator = unique("creator")
    good = [upload_line(unique("p"), creator, event_time="2018-03-12T10:00:00.123Z") for _ in range(3)]
    lines = [json.dumps(good[0]), "{not json", json.dumps(good[1]), "",
             json.dumps(upload_line(unique("p"), creator, kind="GIF")), json.dumps(good[2]), "[1, 2]"]
    path = tmp_path / "uploads.jsonl"
    path.write_text("\n".join(lines) + "\n")

    with Publisher(pipeline, producer_name="test") as pub:
        report = publish_jsonl(pub, path, "uploads")
    assert (report.published, report.invalid, report.dead_lettered) == (3, 3, 3)
    assert [n for n, _ in report.errors] == [2, 5, 7]
    assert "'kind'" in report.errors[1][1] and "GIF" in report.errors[1][1]

    # the session's topics are shared: other tests put undecodable bytes on uploads on purpose
    # (test_ops_metrics' dead letter), which this read steps over
    mine = [r for _, r in read_topic(pipeline, "uploads", on_error="skip") if r["creator_id"] == creator]
    assert sorted(r["post_id"] for r in mine) == sorted(g["post_id"] for g in good)
    assert all(r["event_time"].year == 2018 and r["producer"] == "test" for r in mine)
    uuid.UUID(mine[0]["event_id"])

    dead = [r for _, r in read_topic(pipeline, "dead-letters") if creator.encode() in r["value"]
            or r["value"] in (b"{not json", b"[1, 2]")]
    assert {r["value"] for r in dead} >= {b"{not json", lines[4].encode(), b"[1, 2]"}
    assert all(r["source_topic"] == "uploads" and r["reason"].startswith("line ") for r in dead)


def test_cli_publish_reports_and_exits_2_on_bad_lines(pipeline, tmp_path):
    path = tmp_path / "follows.jsonl"
    a, b = unique("u"), unique("u")
    path.write_text(json.dumps({"follower_id": a, "followee_id": b, "action": "FOLLOW"}) + "\n"
                    + json.dumps({"follower_id": a, "action": "FOLLOW"}) + "\n")
    out = subprocess.run([sys.executable, "-m", "streams.cli", "publish", str(path), "--topic", "follows"],
                         env=worker_env(pipeline, "cli"), cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert "line 2:" in out.stderr and "followee_id" in out.stderr
    assert "published 1, invalid 1" in out.stdout
    assert "Traceback" not in out.stderr


def test_cli_unknown_topic_is_one_clear_line(pipeline, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    out = subprocess.run([sys.executable, "-m", "streams.cli", "publish", str(path), "--topic", "upload"],
                         env=worker_env(pipeline, "cli"), cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert "unknown topic 'upload'" in out.stderr and "Traceback" not in out.stderr

"""Content Guard and the publish gate on the real broker, end to end with the shipped models:
clean posts are published, hateful ones blocked, comments moderated, bad media (truncated,
unsupported, over the size limit, a decompression bomb) gets a verdict saying so, and a post the
models cannot decide waits in the review queue until `pulse review decide` publishes it; deciding
it again, or an unknown task, is refused with a message."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from replay.reader import read_topic
from streams.producer import Publisher
from streams.settings import REPO_ROOT

from tests.integration.conftest import unique, wait_until, worker_env
from tests.integration.test_publish import upload_line
from tests.integration.test_worker_views import caught_up

SHARED = REPO_ROOT.parent / "shared" / "data"
DAVIDSON = SHARED / "davidson" / "labeled_dev.csv"
COCO = SHARED / "coco-captions" / "images"
pytestmark = pytest.mark.skipif(not (DAVIDSON.is_file() and COCO.is_dir()),
                                reason=f"{SHARED} (davidson, coco-captions) is absent")
T0 = 1_580_000_000_000


@pytest.fixture(scope="module")
def texts():
    """A clean text, a hateful one and one the shipped models send to human review, chosen by
    running the real tiers over Davidson rows (the test then checks the stream round trip)."""
    from models.moderation import load_moderator

    mod = load_moderator()
    with open(DAVIDSON, newline="", encoding="utf-8") as f:
        rows = [r["tweet"] for r, _ in zip(csv.DictReader(f), range(3000))]
    as_caption = mod.moderate_texts([r + "\n#qubits" for r in rows])  # what the agent moderates
    as_comment = mod.moderate_texts(rows)
    by = {}
    for text, v, w in zip(rows, as_caption, as_comment):
        if v.action != "BLOCK" or w.action == "BLOCK":  # a BLOCK text must be one as a comment too
            by.setdefault(v.action, text)
    assert "REVIEW" in by, "no Davidson text among 3000 lands in the review band"
    assert "BLOCK" in by
    return {"clean": "Lovely sunset over the harbour tonight, the light was golden", **by}


def cli(settings, app_id, *args):
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO_ROOT,
                          env=worker_env(settings, app_id), capture_output=True, text=True, timeout=120)


def verdicts_of(settings, posts):
    return {r["post_id"]: r for _, r in read_topic(settings, "moderation-verdicts")
            if r["post_id"] in posts and r["comment_id"] is None}


def test_content_gate_end_to_end_with_review_round_trip(pipeline, workers, texts, tmp_path):
    c = unique("c")
    posts = {n: f"{c}-{n}" for n in ("clean", "hate", "review", "photo", "truncated", "fake",
                                     "huge", "bomb")}
    photo = sorted(COCO.glob("*.jpg"))[0]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[:400])
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is not an image")
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as f:  # sparse: 151 MB on paper, nothing on disk
        f.truncate(151 * 1024 * 1024)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 megapixels in a few kB
    media = {"photo": photo, "truncated": truncated, "fake": fake, "huge": huge, "bomb": bomb}
    with Publisher(pipeline) as pub:
        pub.publish("uploads", upload_line(posts["clean"], c, caption=texts["clean"], event_time=T0))
        pub.publish("uploads", upload_line(posts["hate"], c, caption=texts["BLOCK"], event_time=T0 + 1))
        pub.publish("uploads", upload_line(posts["review"], c, caption=texts["REVIEW"], event_time=T0 + 2))
        for i, (name, path) in enumerate(media.items()):
            pub.publish("uploads", upload_line(posts[name], c, kind="IMAGE", caption=texts["clean"],
                                               media_uri=Path(path).resolve().as_uri(),
                                               event_time=T0 + 10 + i))
        pub.publish("interactions", {"user_id": "fan", "post_id": posts["clean"], "type": "COMMENT",
                                     "comment_id": f"{c}-comment", "comment_text": texts["BLOCK"],
                                     "event_time": T0 + 20})
    app_id = unique("content")
    proc = workers.start(app_id, agents="content_guard,publisher", PULSE_GATES="moderation")
    wait_until(lambda: caught_up(pipeline, app_id, ["uploads", "interactions"]), 240,
               "content_guard to catch up", diagnose=lambda: workers.log(proc))
    v = wait_until(lambda: (lambda d: d if len(d) == len(posts) else None)(
        verdicts_of(pipeline, set(posts.values()))), 60, "a verdict per post",
        diagnose=lambda: workers.log(proc))
    action = {n: v[p]["action"] for n, p in posts.items()}
    assert action["clean"] == "ALLOW" and action["photo"] == "ALLOW"
    assert action["hate"] == "BLOCK" and action["review"] == "REVIEW"
    for name in ("truncated", "fake", "huge", "bomb"):
        assert action[name] == "BLOCK", (name, v[posts[name]]["reasons"])
        assert any("media" in r for r in v[posts[name]]["reasons"]), v[posts[name]]["reasons"]
    assert all(x["model_version"] and x["latency_ms"] is None for x in v.values())
    comment = [r for _, r in read_topic(pipeline, "moderation-verdicts") if r["comment_id"] == f"{c}-comment"]
    assert comment and comment[0]["action"] == "BLOCK" and comment[0]["author_id"] == "fan"

    # the review queue shows the task; deciding publishes the post
    task_id = v[posts["review"]]["review_task_id"]
    listed = cli(pipeline, app_id, "review", "list", "--json", "--limit", "20000")
    assert listed.returncode == 0, listed.stderr
    tasks = [json.loads(line) for line in listed.stdout.splitlines()]
    assert task_id in [t["task_id"] for t in tasks]
    mine = next(t for t in tasks if t["task_id"] == task_id)
    assert mine["scores"] and mine["reasons"] and mine["text"] == texts["REVIEW"] + "\n#qubits"
    done = cli(pipeline, app_id, "review", "decide", task_id, "--action", "allow",
               "--category", "harassment", "--note", "banter", "--reviewer", "mod1")
    assert done.returncode == 0, done.stderr
    again = cli(pipeline, app_id, "review", "decide", task_id, "--action", "block", "--reviewer", "mod2")
    assert again.returncode == 1 and "already decided" in again.stderr and "Traceback" not in again.stderr
    unknown = cli(pipeline, app_id, "review", "decide", "0000000000000-000000000000", "--action", "allow")
    assert unknown.returncode == 1 and "no review task" in unknown.stderr

    published = lambda: {r["post_id"] for _, r in read_topic(pipeline, "posts-published")  # noqa: E731
                         if r["post_id"] in set(posts.values())}
    wait_until(lambda: posts["review"] in published(), 60, "the reviewed post published",
               diagnose=lambda: workers.log(proc))
    assert published() == {posts["clean"], posts["photo"], posts["review"]}
    final = [r for _, r in read_topic(pipeline, "moderation-verdicts")
             if r["post_id"] == posts["review"] and r["tier"] == "HUMAN"]
    assert final[0]["action"] == "ALLOW" and final[0]["review_task_id"] == task_id
    listed = cli(pipeline, app_id, "review", "list", "--json", "--limit", "20000")
    assert task_id not in listed.stdout
    assert proc.poll() is None

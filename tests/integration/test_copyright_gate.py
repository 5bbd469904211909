"""Copyright Guard on the real broker: a work registered with `pulse copyright register`, then
uploads: a re-encoded copy is blocked (and never published), an
unrelated photo is allowed and published, broken media gets a verdict saying so, and the worker
keeps running."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from replay.reader import read_topic
from streams.producer import Publisher
from streams.settings import REPO_ROOT

from tests.integration.conftest import unique, wait_until, worker_env
from tests.integration.test_publish import upload_line
from tests.integration.test_worker_views import caught_up

COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-captions" / "images"
pytestmark = pytest.mark.skipif(not COCO.is_dir(), reason=f"{COCO} is absent (shared data)")


def image_upload(post, creator, path, at):
    return upload_line(post, creator, kind="IMAGE", media_uri=Path(path).resolve().as_uri(),
                       caption="my photo", event_time=at)


def test_registered_work_blocks_its_copy_and_allows_the_rest(pipeline, workers, tmp_path):
    images = sorted(COCO.glob("*.jpg"))
    work, other = images[3], images[4]
    copy = tmp_path / "copy.jpg"
    im = Image.open(work).convert("RGB")
    w, h = im.size
    im.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(copy, quality=50)  # 10 % crop
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(work.read_bytes()[:300])

    ref_id, c = unique("work"), unique("c")
    reg = subprocess.run([sys.executable, "-m", "streams.cli", "copyright", "register", str(work),
                          "--reference-id", ref_id, "--title", "A registered photo",
                          "--rights-holder", "studio-1", "--json"], cwd=REPO_ROOT,
                         env=worker_env(pipeline, "cli"), capture_output=True, text=True, timeout=120)
    assert reg.returncode == 0, reg.stderr
    summary = json.loads(reg.stdout)
    assert summary["reference_id"] == ref_id and summary["fingerprints"]["PDQ"] >= 1
    # uploads after the registration (the bank answers as of each upload's event time)
    T0 = int(time.time() * 1000) + 1000
    with Publisher(pipeline) as pub:
        pub.publish("uploads", image_upload(f"{c}-copy", c, copy, T0 + 1))
        pub.publish("uploads", image_upload(f"{c}-other", c, other, T0 + 2))
        pub.publish("uploads", image_upload(f"{c}-broken", c, broken, T0 + 3))
        pub.publish("uploads", upload_line(f"{c}-text", c, event_time=T0 + 4))
    app_id = unique("copyright")
    proc = workers.start(app_id, agents="copyright_guard,publisher", PULSE_GATES="copyright")
    wait_until(lambda: caught_up(pipeline, app_id, ["uploads"]), 180, "copyright_guard to catch up",
               diagnose=lambda: workers.log(proc))
    posts = {f"{c}-{n}" for n in ("copy", "other", "broken", "text")}
    verdicts = wait_until(
        lambda: (lambda v: v if len(v) == 4 else None)(
            {r["post_id"]: r for _, r in read_topic(pipeline, "copyright-verdicts") if r["post_id"] in posts}),
        60, "four copyright verdicts", diagnose=lambda: workers.log(proc))
    copy_v = verdicts[f"{c}-copy"]
    assert copy_v["action"] == "BLOCK", copy_v["reasons"]
    # (servers shared with earlier runs may hold other registrations of the same photo)
    assert ref_id in {m["reference_id"] for m in copy_v["matches"]}
    assert verdicts[f"{c}-other"]["action"] == "ALLOW" and verdicts[f"{c}-other"]["matches"] == []
    assert verdicts[f"{c}-text"]["action"] == "ALLOW"
    assert "could not be checked" in " ".join(verdicts[f"{c}-broken"]["reasons"])
    published = wait_until(
        lambda: {r["post_id"] for _, r in read_topic(pipeline, "posts-published")
                 if r["post_id"] in posts} >= {f"{c}-other", f"{c}-text"} and
        {r["post_id"] for _, r in read_topic(pipeline, "posts-published") if r["post_id"] in posts},
        60, "the allowed posts published", diagnose=lambda: workers.log(proc))
    assert published == {f"{c}-other", f"{c}-text"}
    assert proc.poll() is None

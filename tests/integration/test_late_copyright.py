"""Late copyright matches on the real broker and Cassandra: an image post is uploaded and
published (no work registered yet: Copyright Guard allows it and emits its fingerprints), then a
rights holder registers the photo (`pulse copyright register` of a resized re-encode): the
copyright_rescan worker matches it against the published post, emits a late BLOCK verdict, and the
publisher takes the post down (status TAKEN_DOWN, a takedowns event and row)."""
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
from streams.query.read_side import ReadSide
from streams.query.views import view_session
from streams.settings import REPO_ROOT

from tests.integration.conftest import unique, wait_until, worker_env
from tests.integration.test_publish import upload_line

COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-captions" / "images"
pytestmark = pytest.mark.skipif(not COCO.is_dir(), reason=f"{COCO} is absent (shared data)")


@pytest.mark.timeout(900)
def test_a_work_registered_after_publication_takes_the_published_copy_down(pipeline, workers,
                                                                          tmp_path):
    photo = sorted(COCO.glob("*.jpg"))[5]
    registered = tmp_path / "registered.jpg"  # the rights holder's file: resized and re-encoded
    im = Image.open(photo).convert("RGB")
    im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(registered, quality=60)
    c, ref_id = unique("c"), unique("late-work")
    post = f"{c}-copy"
    with Publisher(pipeline) as pub:
        pub.publish("uploads", upload_line(post, c, kind="IMAGE", media_uri=photo.resolve().as_uri(),
                                           caption="my photo", event_time=int(time.time() * 1000)))
    proc = workers.start(unique("late"), agents="copyright_guard,publisher,copyright_rescan",
                         PULSE_GATES="copyright")
    diagnose = lambda: workers.log(proc)  # noqa: E731
    wait_until(lambda: any(r["post_id"] == post for _, r in read_topic(pipeline, "posts-published")),
               240, "the post to be published", diagnose=diagnose)
    [fp] = [r for _, r in read_topic(pipeline, "content-fingerprints") if r["post_id"] == post]
    assert fp["media_kind"] == "IMAGE" and len(fp["fingerprints"]) == 10

    reg = subprocess.run([sys.executable, "-m", "streams.cli", "copyright", "register", str(registered),
                          "--reference-id", ref_id, "--title", "A photo registered late",
                          "--rights-holder", "studio-late", "--json"], cwd=REPO_ROOT,
                         env=worker_env(pipeline, "cli"), capture_output=True, text=True, timeout=120)
    assert reg.returncode == 0, reg.stderr
    assert json.loads(reg.stdout)["reference_id"] == ref_id

    late = wait_until(lambda: [r for _, r in read_topic(pipeline, "copyright-verdicts")
                               if r["post_id"] == post and r["producer"] == "copyright_rescan"],
                      180, "the late verdict", diagnose=diagnose)
    assert late[0]["action"] == "BLOCK" and late[0]["matches"][0]["reference_id"] == ref_id
    assert late[0]["reasons"][0].startswith(f"late match: reference {ref_id}")
    down = wait_until(lambda: [r for _, r in read_topic(pipeline, "takedowns") if r["post_id"] == post],
                      120, "the takedown event", diagnose=diagnose)
    assert down[0]["gate"] == "copyright" and down[0]["cause_event_id"] == late[0]["event_id"]
    with ReadSide(pipeline) as rs, view_session(rs) as s:
        wait_until(lambda: s.execute("SELECT status FROM posts WHERE post_id = %s",
                                     (post,)).one().status == "TAKEN_DOWN",
                   60, "status TAKEN_DOWN", diagnose=diagnose)
        row = s.execute("SELECT gate, reasons FROM takedowns WHERE bucket = 0 AND post_id = %s",
                        (post,)).one()
        assert row is not None and row.gate == "copyright"
        assert any(ref_id in r for r in row.reasons)
        match = s.execute("SELECT action FROM copyright_matches WHERE post_id = %s", (post,)).one()
        assert match.action == "BLOCK"
    assert proc.poll() is None

"""`pulse replay compare` on the real broker and Cassandra: one slice of uploads replayed through
content_guard with two fast-tier variants of the shipped model, into scratch keyspaces that are
dropped afterwards; the same version twice differs nowhere."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from streams.producer import Publisher
from streams.settings import REPO_ROOT

from tests.integration.conftest import unique, worker_env

TEXTS = [
    "what a lovely sunset over the harbour tonight",
    "you people are the worst, get out of here",
    "I will find you and hurt you, you worthless idiot",
    "this recipe uses three eggs and a cup of flour",
    "shut up you stupid moron nobody asked",
    "those immigrants are vermin and should be gassed",
    "great match today, what a goal in the last minute",
    "go back to your country you filthy animal",
]


def _publish_slice(settings) -> tuple[int, int, list[str]]:
    start = int(time.time() * 1000) - 1
    posts = []
    with Publisher(settings, producer_name="test-compare") as pub:
        for text in TEXTS:
            post = unique("cmp-post")
            posts.append(post)
            pub.publish("uploads", {
                "event_id": str(uuid.uuid4()), "event_time": int(time.time() * 1000), "producer": "test",
                "post_id": post, "creator_id": unique("cmp-creator"), "kind": "TEXT", "content_type": "FOREVER",
                "media_uri": None, "caption": text, "title": None, "hashtags": [], "duration_ms": None,
                "size_bytes": None, "width": None, "height": None, "parent_post_id": None})
        pub.flush()
    time.sleep(0.05)
    return start, int(time.time() * 1000) + 1, posts


def _compare(settings, versions: str, start: int, end: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "compare", "--agent", "content_guard",
                          "--versions", versions, "--from", str(start), "--to", str(end), "--json"],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
                         env=worker_env(settings, unique("cmp")))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_compare_replays_one_slice_through_two_versions_and_cleans_up(pipeline):
    from streams.query.pointer import keyspace_exists
    from streams.stores.cassandra import connect

    start, end, posts = _publish_slice(pipeline)
    r = _compare(pipeline, "davidson-v2:distilled,davidson-v2:base", start, end)
    assert r["events"] == {"a": len(TEXTS), "b": len(TEXTS)}
    assert r["decisions"] == len(TEXTS) and r["only_a"] == r["only_b"] == 0
    assert r["same"] + r["differ"] == len(TEXTS)
    # fast-tier verdicts name the variant (heavy-tier ones name davidson-v2:heavy in both)
    assert "davidson-v2:distilled" in r["model_versions"]["a"] and "davidson-v2:base" not in r["model_versions"]["a"]
    assert "davidson-v2:base" in r["model_versions"]["b"] and "davidson-v2:distilled" not in r["model_versions"]["b"]
    assert sum(r["transitions"].values()) == sum(r["by_category"].values()) == r["differ"]
    assert {e["post_id"] for e in r["examples"]} <= set(posts)
    same = _compare(pipeline, "davidson-v2,davidson-v2", start, end)
    assert same["differ"] == 0 and same["tier_changes"] == 0 and same["decisions"] == len(TEXTS)
    cluster, session = connect(pipeline)
    try:
        assert not [ks for ks in session.cluster.metadata.keyspaces if ks.startswith("compare_")]
        assert not keyspace_exists(session, "compare_x_a")
    finally:
        cluster.shutdown()


def test_compare_refuses_an_agent_it_cannot_compare(pipeline):
    out = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "compare", "--agent", "feed_ranker",
                          "--versions", "a,b"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                         env=worker_env(pipeline, unique("cmp")))
    assert out.returncode == 1 and "knows how to compare content_guard" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr

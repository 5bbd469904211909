"""Feeds on the real broker and Cassandra: user_profiler, feed_fanout and feed_ranker in a worker
(with the materializer for the follow views). Covers fan-out to followers, pull of a large
creator's posts at read time, seen filtering, re-ranking on a profile change, and replay
determinism (two rebuilds of the feed agents agree)."""
from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from models.ranking.feed_row import stored_post_ids
from streams.producer import Publisher
from streams.query.feeds import read_feed, read_feed_async, read_profile
from streams.query.views import view_session
from streams.query.read_side import ReadSide

from tests.integration.conftest import unique, wait_until
from tests.integration.test_worker_views import caught_up

T0 = 1_580_000_000_000
HOUR = 3_600_000
#: The deployed content space (MiniLM, images through the ImageNet bridge). PostVectors keeps the
#: first space it reads, and other tests publish real 384-d enrichments to the same topic, so a
#: smaller test space would be ignored whenever one of them ran first.
DIM = 384
AGENTS = "materializer,user_profiler,feed_fanout,feed_ranker"
SOURCES = ["follows", "signups", "interactions", "posts-published", "profiles", "feed-candidates"]


def axis(i: int, j: int | None = None) -> list[float]:
    v = np.zeros(DIM)
    v[i] = 1.0
    if j is not None:
        v[j] = 0.3
    return [float(x) for x in v / np.linalg.norm(v)]


def base(producer: str, at: int) -> dict:
    return {"event_id": str(uuid.uuid4()), "event_time": at, "producer": producer}


def follow(a: str, b: str, at: int) -> dict:
    return {**base("app", at), "follower_id": a, "followee_id": b, "action": "FOLLOW"}


def publish_post(pub: Publisher, post: str, creator: str, at: int, vec: list[float]) -> None:
    pub.publish("content-enriched", {
        **base("clip_ai", at), "cause_event_id": None, "model": "test", "model_version": "0",
        "post_id": post, "creator_id": creator, "image_embedding": None, "text_embedding": vec,
        "categories": {"science": 0.9}, "alignment_score": None, "quality_score": 0.7,
        "alt_text": None, "suggested_hashtags": [], "keyframe_count": None, "latency_ms": None})
    pub.publish("posts-published", {
        **base("publisher", at), "cause_event_id": None, "post_id": post, "creator_id": creator,
        "kind": "TEXT", "content_type": "FOREVER", "distribution": "FULL", "uploaded_at": at,
        "expires_at": None, "hashtags": ["physics"], "categories": {"science": 0.9},
        "quality_score": 0.7, "parent_post_id": None, "moderation_event_id": None,
        "copyright_event_id": None, "enrichment_event_id": None})


def interaction(user: str, post: str, at: int, kind: str) -> dict:
    return {**base("app", at), "user_id": user, "post_id": post, "type": kind, "dwell_ms": None,
            "comment_id": None, "comment_text": None, "report_reason": None, "surface": "feed"}


def feed_ids(rs: ReadSide, user: str, fresh: int = 0) -> list[tuple[str, str]]:
    """The user's feed as ``(post, source)``. The fresh pool is global (every published post of
    the session, other tests' included), so tests of what the agents materialized leave it out."""
    return [(i.post_id, i.source) for i in read_feed(rs, user, limit=50, fresh=fresh).items]


def start_feed_agents(pipeline, workers, app_id: str, **env: str):
    """A worker running :data:`AGENTS` with ``env``, caught up on the sources; returns its log
    reader (for ``wait_until``'s diagnose)."""
    proc = workers.start(app_id, agents=AGENTS, **env)
    diagnose = lambda: workers.log(proc)  # noqa: E731
    wait_until(lambda: caught_up(pipeline, app_id, SOURCES), 240, "the feed agents to catch up",
               diagnose=diagnose)
    return diagnose


@pytest.mark.timeout(900)
def test_fanout_pull_seen_filter_rerank_and_replay_determinism(pipeline, workers):
    app_id, r = unique("feeds"), unique("f")
    small, big, other = f"{r}-small", f"{r}-big", f"{r}-other"
    f1, f2 = f"{r}-u1", f"{r}-u2"
    fans = [f"{r}-fan{i}" for i in range(3)]
    p_small, p_big, p_seen_axis1, p_axis1 = (f"{r}-p-{n}" for n in ("small", "big", "seen", "axis1"))
    with Publisher(pipeline) as pub:
        for u in (f1, f2):
            pub.publish("follows", follow(u, small, T0))
        for u in fans:
            pub.publish("follows", follow(u, big, T0))
        pub.flush()
        publish_post(pub, p_small, small, T0 + HOUR, axis(0))
        publish_post(pub, p_big, big, T0 + HOUR, axis(0, 2))
        publish_post(pub, p_seen_axis1, other, T0 + HOUR, axis(1))
        publish_post(pub, p_axis1, other, T0 + HOUR + 1, axis(1, 3))
    diagnose = start_feed_agents(pipeline, workers, app_id, PULSE_FEED_PULL_THRESHOLD="3",
                                 PULSE_FEED_INTEREST_PUSH="0")
    with ReadSide(pipeline) as rs:
        # fan-out: both followers of the small creator have its post, pushed in-network
        wait_until(lambda: (p_small, "IN_NETWORK") in feed_ids(rs, f1), 60, "f1's pushed post",
                   diagnose=diagnose)
        assert (p_small, "IN_NETWORK") in feed_ids(rs, f2)
        # pull: the big creator (3 followers, threshold 3) pushed nothing; its post is merged
        # into each fan's feed when the feed is read
        # (not asserted first: a fan without a profile is a cold start, whose feed holds the
        # newest posts of the session, other tests' included, as new as this one)
        page = {i.post_id: i for i in read_feed(rs, fans[0], limit=50, fresh=0).items}
        assert page[p_big].source == "IN_NETWORK" and "pulled at read" in page[p_big].reasons
        assert page[p_big].rank < 5
        # the API's event-loop read (awaited queries, the pulled creators' posts included)
        # serves the same page, as it does a second page and a user without a feed
        first = read_feed(rs, fans[0], limit=2, fresh=0)
        assert asyncio.run(read_feed_async(rs, fans[0], limit=2, fresh=0)).as_dict() == first.as_dict()
        assert asyncio.run(read_feed_async(rs, fans[0], limit=2, cursor=first.next_cursor, fresh=0)).as_dict() \
            == read_feed(rs, fans[0], limit=2, cursor=first.next_cursor, fresh=0).as_dict()
        assert asyncio.run(read_feed_async(rs, f"{r}-nobody")).items == []
        with view_session(rs) as s:
            stored = s.execute("SELECT feed, items FROM user_feeds WHERE user_id = %s", (fans[0],)).one()
        assert p_big not in (stored_post_ids(stored._asdict()) if stored else [])  # pulled, not pushed

        with Publisher(pipeline) as pub:
            pub.publish("interactions", interaction(f1, p_small, T0 + 2 * HOUR, "VIEW"))
            pub.publish("interactions", interaction(f2, p_seen_axis1, T0 + 2 * HOUR, "LIKE"))
        wait_until(lambda: caught_up(pipeline, app_id, SOURCES), 240, "the interactions",
                   diagnose=diagnose)
        # seen: the viewed post left f1's feed
        wait_until(lambda: p_small not in dict(feed_ids(rs, f1)), 60, "the seen post to drop",
                   diagnose=diagnose)
        # re-rank on the profile change: f2 liked an axis-1 post, so the other axis-1 post now
        # leads f2's feed as an interest candidate, above the followed creator's axis-0 post
        wait_until(lambda: (read_profile(rs, f2) or {}).get("engagements") == 1, 60, "f2's profile",
                   diagnose=diagnose)
        wait_until(lambda: feed_ids(rs, f2)[:1] == [(p_axis1, "INTEREST")], 60,
                   "f2's feed re-ranked by interest", diagnose=lambda: f"{feed_ids(rs, f2)}\n{diagnose()}")
        assert p_seen_axis1 not in dict(feed_ids(rs, f2)) and p_small in dict(feed_ids(rs, f2))
    workers.stop_all()

    # replay: the feed agents rebuilt twice agree (events byte for byte, rows, points)
    from replay.rebuild import drop_rebuild, rebuild_views
    from replay.verify import verify_rebuild

    into = f"feeds_{uuid.uuid4().hex[:8]}"
    try:
        rebuilt = rebuild_views(pipeline, ["user_profiler", "feed_fanout", "feed_ranker"], into=into,
                                collect=True)
        report = verify_rebuild(pipeline, rebuilt)
        assert not report.differences, "\n".join(d.line() for d in report.differences[:30])
        assert report.rechecked.get("rows user_feeds", 0) >= 5
        assert report.rechecked.get("events profiles", 0) >= 2
    finally:
        drop_rebuild(pipeline, into)


@pytest.mark.timeout(600)
def test_a_moderators_block_after_publication_takes_the_post_out_of_feeds(pipeline, workers):
    """publisher + feed_fanout + feed_ranker: a post published to a follower's feed, then a
    moderator's BLOCK (a HUMAN verdict, as content_guard emits it from a review decision): the
    post is taken down, leaves the feed read at once and the ranked feed at the next re-rank."""
    import time

    from streams.query.views import view_session
    from tests.integration.test_publish import upload_line
    from tests.integration.test_publisher_gate import moderation

    app_id, r = unique("takedown"), unique("t")
    creator, fan, post = f"{r}-c", f"{r}-fan", f"{r}-p"
    with Publisher(pipeline) as pub:
        pub.publish("follows", follow(fan, creator, T0))
        pub.publish("uploads", upload_line(post, creator, event_time=T0 + HOUR))
        pub.publish("moderation-verdicts", moderation(post, "ALLOW", T0 + HOUR))
    proc = workers.start(app_id, agents="materializer,publisher,feed_fanout,feed_ranker",
                         PULSE_GATES="moderation", PULSE_FEED_INTEREST_PUSH="0")
    diagnose = lambda: workers.log(proc)  # noqa: E731
    with ReadSide(pipeline) as rs:
        wait_until(lambda: (post, "IN_NETWORK") in feed_ids(rs, fan), 240, "the post in the feed",
                   diagnose=diagnose)
        with Publisher(pipeline) as pub:
            pub.publish("moderation-verdicts", moderation(post, "BLOCK", T0 + 2 * HOUR, tier="HUMAN"))
        began = time.monotonic()
        wait_until(lambda: post not in dict(feed_ids(rs, fan)), 60, "the post to leave the feed",
                   interval_s=0.1, diagnose=diagnose)
        print(f"takedown reached the feed read in {time.monotonic() - began:.2f} s")
        with view_session(rs) as s:
            assert s.execute("SELECT status FROM posts WHERE post_id = %s", (post,)).one().status == "TAKEN_DOWN"
            row = s.execute("SELECT feed, items FROM user_feeds WHERE user_id = %s", (fan,)).one()
        assert post in stored_post_ids(row._asdict())  # still in the stored ranking until a re-rank
        with Publisher(pipeline) as pub:  # the fan's next event re-ranks without it
            pub.publish("follows", follow(fan, f"{r}-other", T0 + 3 * HOUR))
        wait_until(lambda: post not in stored_post_ids(rs.execute(
            "SELECT feed, items FROM {ks}.user_feeds WHERE user_id = ?", (fan,)).one()._asdict()), 60,
            "the re-ranked feed without the post", diagnose=diagnose)


#: Later than any other test's events, so that this test's posts are the newest of the session's
#: fresh pool and its reading time (the newest post's) is its own.
T_LATE = 2_000_000_000_000


@pytest.mark.timeout(600)
def test_read_time_ranking_adds_posts_published_since_the_ranking(pipeline, workers):
    """A post no fan-out pushed (a stranger's, interest push off) reaches a feed read at once
    through the fresh pool, source RECENT; the reader's interaction with it re-ranks the feed
    and the read drops it; a cursor pins the reading time."""
    app_id, r = unique("fresh"), unique("r")
    user, friend, stranger = f"{r}-u", f"{r}-friend", f"{r}-stranger"
    p_friend, p_stranger = f"{r}-p-friend", f"{r}-p-stranger"
    with Publisher(pipeline) as pub:
        pub.publish("follows", follow(user, friend, T_LATE))
        pub.flush()
        publish_post(pub, p_friend, friend, T_LATE + HOUR, axis(5))
        publish_post(pub, p_stranger, stranger, T_LATE + 2 * HOUR, axis(6))
    diagnose = start_feed_agents(pipeline, workers, app_id, PULSE_FEED_INTEREST_PUSH="0")
    with ReadSide(pipeline) as rs:
        wait_until(lambda: (p_friend, "IN_NETWORK") in feed_ids(rs, user), 60, "the pushed post",
                   diagnose=diagnose)
        # materialized: only the pushed post; read: the stranger's newer post joins it (below
        # it: the followed creator's post is an hour older but followed)
        assert p_stranger not in dict(feed_ids(rs, user))
        wait_until(lambda: feed_ids(rs, user, fresh=500)[:2] == [(p_friend, "IN_NETWORK"),
                                                                 (p_stranger, "RECENT")],
                   10, "the fresh post in the read", diagnose=lambda: f"{feed_ids(rs, user, 500)}")
        page = read_feed(rs, user, limit=1)
        assert page.items[0].post_id == p_friend
        # the cursor pins the reading time: the newest post's publication
        assert page.next_cursor is not None and page.next_cursor.startswith(f"{T_LATE + 2 * HOUR}.")
        second = read_feed(rs, user, limit=1, cursor=page.next_cursor).items[0]
        assert second.post_id == p_stranger and "source recent" in second.reasons
        with Publisher(pipeline) as pub:
            pub.publish("interactions", interaction(user, p_stranger, T_LATE + 3 * HOUR, "VIEW"))
        wait_until(lambda: p_stranger not in dict(feed_ids(rs, user, fresh=500)), 60,
                   "the seen fresh post to leave the read", diagnose=diagnose)
        assert p_friend in dict(feed_ids(rs, user, fresh=500))
    workers.stop_all()


@pytest.mark.timeout(600)
def test_collaborative_model_trained_from_the_log_feeds_candidates(pipeline, workers):
    """`pulse train collaborative` reads the engagements back from the real log into the model
    registry; a worker loading it adds the posts co-engaged with a user's likes as COLLABORATIVE
    candidates, and its outputs name the model version."""
    import json
    import subprocess
    import sys

    from models.registry import read_entry, verify
    from tests.integration.conftest import worker_env

    app_id, r = unique("cf"), unique("cf")
    user, others, creator = f"{r}-u", [f"{r}-o{i}" for i in range(3)], f"{r}-c"
    p_liked, p_co = f"{r}-p-liked", f"{r}-p-co"
    t = T_LATE + 10 * HOUR
    with Publisher(pipeline) as pub:
        publish_post(pub, p_liked, creator, t, axis(10))
        publish_post(pub, p_co, creator, t, [-x for x in axis(10, 11)])  # far from the liked one
        pub.flush()
        for o in others:  # the others like both posts
            pub.publish("interactions", interaction(o, p_liked, t + HOUR, "LIKE"))
            pub.publish("interactions", interaction(o, p_co, t + HOUR, "LIKE"))
        pub.publish("interactions", interaction(user, p_liked, t + 2 * HOUR, "LIKE"))
    version = f"cf-test-{r}"
    done = subprocess.run([sys.executable, "-m", "streams.cli", "train", "collaborative", "--version", version],
                          env=worker_env(pipeline, app_id), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["pairs"] >= 7 and report["items"] >= 2
    entry = read_entry("collaborative", pipeline.home / "models" / "collaborative" / version)
    assert verify(entry) == [] and entry.training_data["engagements"] == report["pairs"]

    diagnose = start_feed_agents(pipeline, workers, app_id, PULSE_FEED_INTEREST_PUSH="0",
                                 PULSE_COLLABORATIVE_MODEL=version)
    with ReadSide(pipeline) as rs:
        wait_until(lambda: (p_co, "COLLABORATIVE") in feed_ids(rs, user), 60, "the co-engaged post",
                   diagnose=lambda: f"{feed_ids(rs, user)}\n{diagnose()}")
        row = rs.execute("SELECT model_version FROM {ks}.user_feeds WHERE user_id = ?", (user,)).one()
        assert row.model_version.endswith(f"+item-knn@{version}")
    workers.stop_all()

"""user_profiler, feed_fanout and feed_ranker through the engine (no broker, no store): the side
inputs are filled by hand, events are encoded and decoded with the real codecs."""
from __future__ import annotations

import uuid

import numpy as np
import pytest

from agents import feed_fanout, feed_ranker, user_profiler
from agents.shared.posts import PostVectors, PublishedPosts, Takedowns
from agents.shared.social import FollowGraph, UserInterests
from models.ranking import relevance as R
from models.ranking.feed_row import unpack_feed
from streams.contracts.effects import Upsert, VectorUpsert
from tests.unit.agent_harness import Harness, full_record

DAY = 86_400_000
T0 = 1_700_000_000_000
DIM = 8


def axis(i: int, j: int | None = None) -> list[float]:
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    if j is not None:
        v[j] = 1.0
    return list(v / np.linalg.norm(v))


def eid() -> str:
    return str(uuid.uuid4())


def published(post_id, creator, at, *, hashtags=(), distribution="FULL", content_type="FOREVER",
              parent=None, categories=None, quality=0.6):
    return full_record("posts-published", event_id=eid(), event_time=at, producer="publisher",
                       post_id=post_id, creator_id=creator, kind="TEXT", content_type=content_type,
                       distribution=distribution, uploaded_at=at, hashtags=list(hashtags),
                       categories=categories or {}, quality_score=quality, parent_post_id=parent)


def enriched(post_id, creator, at, vec):
    return full_record("content-enriched", event_id=eid(), event_time=at, producer="clip_ai",
                       model="m", model_version="1", post_id=post_id, creator_id=creator,
                       text_embedding=vec, quality_score=0.6)


def interaction(user, post, at, kind="LIKE", dwell=None, event_id=None):
    return full_record("interactions", event_id=event_id or eid(), event_time=at, producer="app",
                       user_id=user, post_id=post, type=kind, dwell_ms=dwell)


def follow(a, b, at, action="FOLLOW"):
    return full_record("follows", event_id=eid(), event_time=at, producer="app",
                       follower_id=a, followee_id=b, action=action)


def signup(user, at, declared=()):
    return full_record("signups", event_id=eid(), event_time=at, producer="app", user_id=user,
                       handle=user, declared_interests=list(declared))


@pytest.fixture()
def world():
    """Posts: c1 writes about axis 0 (p1, p3), c2 about axis 1 (p2, tagged 'qiskit'), c3 a
    RESTRICTED post on axis 0 (p4)."""
    posts, vectors = PublishedPosts(), PostVectors()
    for pid, creator, day, vec, extra in (
            ("p1", "c1", 0, axis(0), {"hashtags": ["physics"]}),
            ("p2", "c2", 1, axis(1), {"hashtags": ["qiskit"]}),
            ("p3", "c1", 2, axis(0, 2), {}),
            ("p4", "c3", 2, axis(0), {"distribution": "RESTRICTED"})):
        at = T0 + day * DAY
        posts.apply(published(pid, creator, at, **extra))
        vectors.apply(enriched(pid, creator, at, vec))
    return {"published": posts, "vectors": vectors, "takedowns": Takedowns()}


def profiler_side(world):
    return {"published": world["published"], "vectors": world["vectors"],
            "population": user_profiler.InterestPopulation()}


def emits(out, topic):
    return [e for e in out.emits if e.topic == topic]


# --- user_profiler ----------------------------------------------------------------------------


def test_profile_learns_from_engagement_and_ignores_redelivery(tmp_path, world):
    h = Harness(user_profiler.SPEC, tmp_path, side=profiler_side(world))
    like = interaction("u", "p2", T0 + 3 * DAY)
    out = h.feed(("interactions", like))
    [profile] = [h.decode(e) for e in emits(out, "profiles")]
    assert profile["sequence"] == 1 and profile["cold_start"] is True
    assert np.allclose(profile["interest_vector"], axis(1), atol=1e-6)
    assert profile["creator_affinities"] == {"c2": 1.0}
    assert profile["hashtag_affinities"] == {"qiskit": 1.0}
    assert abs(sum(profile["active_hours"]) - 1.0) < 1e-5
    assert any(isinstance(v, VectorUpsert) and v.collection == "user_interests" for v in out.views)
    again = h.feed(("interactions", like))
    assert not again.emits and not again.views


def test_negative_engagement_pushes_away(tmp_path, world):
    h = Harness(user_profiler.SPEC, tmp_path, side=profiler_side(world))
    h.feed(("interactions", interaction("u", "p2", T0 + 3 * DAY)),
           ("interactions", interaction("u", "p1", T0 + 3 * DAY + 1, kind="HIDE")))
    last = h.decode(emits(h.feed(("interactions", interaction("u", "p3", T0 + 3 * DAY + 2, "SKIP"))),
                          "profiles")[-1])
    v = np.asarray(last["interest_vector"])
    assert v[1] > 0.4 and v[0] < 0  # liked axis 1, hid and skipped axis-0 posts
    assert last["creator_affinities"]["c1"] < 0 < last["creator_affinities"]["c2"]


def test_cold_start_prior_hands_over_to_own_signal(tmp_path, world):
    h = Harness(user_profiler.SPEC, tmp_path, side=profiler_side(world))
    out = h.feed(("signups", signup("u", T0 + 3 * DAY, declared=["physics"])))
    first = h.decode(emits(out, "profiles")[0])
    assert first["own_signal_weight"] == 0.0 and first["cold_start"]
    assert np.allclose(first["interest_vector"], axis(0), atol=1e-6)  # p1 is tagged physics
    weights = []
    for i in range(6):
        out = h.feed(("interactions", interaction("u", "p2", T0 + 3 * DAY + 10 + i, event_id=eid())))
        weights.append(h.decode(emits(out, "profiles")[0])["own_signal_weight"])
    # the same post six times: n / (n + 5) grows with every engagement
    assert weights == sorted(weights) and weights[0] == pytest.approx(1 / 6, abs=1e-6)
    last = h.decode(emits(out, "profiles")[0])
    assert last["cold_start"] is False
    assert last["interest_vector"][1] > last["interest_vector"][0] > 0


def test_answers_count_as_engagement_with_the_question(tmp_path, world):
    world["published"].apply(published("a1", "u", T0 + 3 * DAY, parent="p2"))
    h = Harness(user_profiler.SPEC, tmp_path, side=profiler_side(world))
    out = h.feed(("follows", follow("u", "c2", T0 + 3 * DAY + 5)))
    profile = h.decode(emits(out, "profiles")[0])
    assert profile["engagement_count"] == 2  # OWN_POST a1 (no vector) and ANSWER on p2
    assert np.allclose(profile["interest_vector"], axis(1), atol=1e-6)


def test_profile_is_a_function_of_the_event_set(tmp_path, world):
    events = [("signups", signup("u", T0, ["physics"])),
              ("interactions", interaction("u", "p2", T0 + 3 * DAY)),
              ("follows", follow("u", "c1", T0 + 3 * DAY + 1)),
              ("interactions", interaction("u", "p3", T0 + 3 * DAY + 2, "COMMENT"))]
    finals = []
    for order in (events, events[::-1], events[1::2] + events[::2]):
        h = Harness(user_profiler.SPEC, tmp_path, side=profiler_side(world))
        for e in order:
            out = h.feed(e)
        finals.append(h.decode(emits(out, "profiles")[0]))
    assert finals[0] == finals[1] == finals[2]
    assert finals[0]["sequence"] == 4


# --- feed_fanout ------------------------------------------------------------------------------


def fanout_side(world, follows=(), profiles=()):
    graph, interests = FollowGraph(), UserInterests()
    for a, b, at in follows:
        graph.apply(follow(a, b, at))
    for user, vec, at in profiles:
        interests.apply(full_record("profiles", event_id=eid(), event_time=at, producer=user_profiler.NAME,
                                    model="m", model_version="1", user_id=user, sequence=1,
                                    interest_vector=vec))
    return {"published": world["published"], "follows": graph, "interests": interests,
            "vectors": world["vectors"]}


def test_fanout_pushes_to_followers_and_nearest_users(tmp_path, world):
    side = fanout_side(world, follows=[("f1", "c1", T0 - DAY), ("f2", "c1", T0 - DAY),
                                       ("late", "c1", T0 + 10 * DAY)],
                       profiles=[("near", axis(0), T0 - DAY), ("far", axis(1), T0 - DAY),
                                 ("f1", axis(0), T0 - DAY)])
    world["vectors"].apply(enriched("p9", "c1", T0 + 5 * DAY, axis(0)))
    h = Harness(feed_fanout.SPEC, tmp_path, side=side, PULSE_FEED_INTEREST_MIN_SIMILARITY="0.5")
    out = h.feed(("posts-published", published("p9", "c1", T0 + 5 * DAY)))
    got = {(r["user_id"], r["source"]) for r in map(h.decode, out.emits)}
    assert got == {("f1", "IN_NETWORK"), ("f2", "IN_NETWORK"), ("near", "INTEREST")}


def test_fanout_pushes_a_reply_to_the_parent_author(tmp_path, world):
    # p2 is c2's; c1's reply r1 reaches c2 (no follow needed); a reply to one's own post does not
    side = fanout_side(world)
    for post, creator in (("r1", "c1"), ("r2", "c2")):
        rec = published(post, creator, T0 + 5 * DAY, parent="p2")
        world["published"].apply(rec)
        h = Harness(feed_fanout.SPEC, tmp_path, side=side)
        got = [(r["user_id"], r["source"]) for r in map(h.decode, h.feed(("posts-published", rec)).emits)]
        assert got == ([("c2", "IN_NETWORK")] if post == "r1" else [])


def test_fanout_interest_push_skips_dormant_users(tmp_path, world):
    # "dormant" last had a profile 8 days before the post: outside PULSE_FEED_ACTIVE_DAYS (7)
    side = fanout_side(world, profiles=[("active", axis(0), T0 + 4 * DAY),
                                        ("dormant", axis(0), T0 - 3 * DAY)])
    world["vectors"].apply(enriched("p9", "c1", T0 + 5 * DAY, axis(0)))
    got = {}
    for days in ("7", "0"):
        h = Harness(feed_fanout.SPEC, tmp_path, side=side, PULSE_FEED_ACTIVE_DAYS=days)
        out = h.feed(("posts-published", published("p9", "c1", T0 + 5 * DAY)))
        got[days] = sorted(h.decode(e)["user_id"] for e in out.emits)
    assert got == {"7": ["active"], "0": ["active", "dormant"]}


def test_fanout_candidate_ids_are_derived(tmp_path, world):
    side = fanout_side(world, follows=[("f1", "c1", T0 - DAY)])
    rec = published("p9", "c1", T0 + 5 * DAY)
    ids = []
    for _ in range(2):
        h = Harness(feed_fanout.SPEC, tmp_path, side=side)
        ids.append([h.decode(e)["event_id"] for e in h.feed(("posts-published", rec)).emits])
    assert ids[0] == ids[1] and len(ids[0]) == 1


def test_fanout_pulls_large_creators_and_keeps_restricted_posts_in_network(tmp_path, world):
    side = fanout_side(world, follows=[(f"f{i}", "c1", T0 - DAY) for i in range(3)],
                       profiles=[("near", axis(0), T0 - DAY)])
    world["vectors"].apply(enriched("p9", "c1", T0 + 5 * DAY, axis(0)))
    h = Harness(feed_fanout.SPEC, tmp_path, side=side, PULSE_FEED_PULL_THRESHOLD="3")
    out = h.feed(("posts-published", published("p9", "c1", T0 + 5 * DAY)))
    assert [h.decode(e)["user_id"] for e in out.emits] == ["near"]
    tables = {v.table for v in out.views if isinstance(v, Upsert)}
    assert tables == {"pull_creators", "pulled_posts", "fresh_posts"}
    fresh = next(v.row for v in out.views if isinstance(v, Upsert) and v.table == "fresh_posts")
    assert fresh["post_id"] == "p9" and fresh["published_at"] == T0 + 5 * DAY
    assert fresh["vector"] == pytest.approx(axis(0)) and not fresh["is_reply"]
    h2 = Harness(feed_fanout.SPEC, tmp_path, side=side)
    out = h2.feed(("posts-published", published("p4", "c1", T0 + 5 * DAY, distribution="RESTRICTED")))
    assert {h2.decode(e)["source"] for e in out.emits} == {"IN_NETWORK"}
    # a RESTRICTED post reaches followers only: it is not in the fresh pool of read-time ranking
    assert not [v for v in out.views if isinstance(v, Upsert) and v.table == "fresh_posts"]


# --- feed_ranker ------------------------------------------------------------------------------


def profile_event(user, vec, at, seq, cold=False, declared=(), categories=None):
    return full_record("profiles", event_id=eid(), event_time=at, producer=user_profiler.NAME,
                       model="m", model_version="1", user_id=user, sequence=seq,
                       interest_vector=vec, cold_start=cold, declared_interests=list(declared),
                       category_affinities=categories or {})


def items_of(row: dict) -> list[tuple]:
    """A ``user_feeds`` row's items as ``(post, creator, score, source, reasons, published)``."""
    return [(s.post_id, s.creator_id, s.score, s.source, s.reasons(), s.published_at)
            for s in unpack_feed(row["feed"]).scored()]


def feed_of(out) -> list[tuple]:
    """The items of the last ``user_feeds`` row a batch wrote."""
    rows = [v for v in out.views if isinstance(v, Upsert) and v.table == "user_feeds"]
    return items_of(rows[-1].row)


def test_ranker_ranks_in_network_and_interest_candidates(tmp_path, world):
    h = Harness(feed_ranker.SPEC, tmp_path, side=dict(world))
    t = T0 + 3 * DAY
    out = h.feed(("follows", follow("u", "c1", t)))
    items = feed_of(out)
    assert items[0][:1] + items[0][3:4] == ("p3", "IN_NETWORK")
    assert {(i[0], i[3]) for i in items} == {("p3", "IN_NETWORK"), ("p1", "IN_NETWORK"),
                                             ("p2", "COLD_START")}
    [update] = [h.decode(e) for e in emits(out, "feed-updates")]
    assert [i["post_id"] for i in update["items"]] == [i[0] for i in items]
    before = {i[0]: i[2] for i in items}
    # a profile pointing at axis 1 makes p2 an interest candidate and lifts it by the interest
    # weight (cosine 1); the restricted p4 from a creator the user does not follow never appears
    out = h.feed(("profiles", profile_event("u", axis(1), t + 1, seq=1)))
    items = feed_of(out)
    p2 = next(i for i in items if i[0] == "p2")
    assert p2[3] == "INTEREST" and "interest 1.00" in p2[4] and "p4" not in [i[0] for i in items]
    assert p2[2] - before["p2"] == pytest.approx(R.WEIGHTS["interest"], abs=1e-6)
    assert [i[0] for i in items] == [i[0] for i in sorted(items, key=lambda i: -i[2])]
    # the top kept its order, so no feed-updates event (it is sent when the top ids change)
    assert not emits(out, "feed-updates")


def test_ranker_drops_seen_hidden_own_and_expired_posts(tmp_path, world):
    flash = published("flash", "c1", T0 + 3 * DAY, content_type="FLASH")
    world["published"].apply({**flash, "expires_at": T0 + 4 * DAY})
    world["published"].apply(published("mine", "u", T0 + 3 * DAY))
    h = Harness(feed_ranker.SPEC, tmp_path, side=dict(world))
    t = T0 + 3 * DAY + 1000
    ids = [i[0] for i in feed_of(h.feed(("follows", follow("u", "c1", t))))]
    assert "flash" in ids and "mine" not in ids
    out = h.feed(("interactions", interaction("u", "p3", t + 1, "VIEW")),
                 ("interactions", interaction("u", "p1", t + 2, "HIDE")))
    ids = [i[0] for i in feed_of(out)]
    assert "p3" not in ids and "p1" not in ids
    # an interaction with a post not in the feed does not re-rank it
    assert not h.feed(("interactions", interaction("u", "zzz", t + 3, "VIEW"))).views
    # a day later (a follow moves the clock) the Flash post has expired
    expired = h.feed(("follows", follow("u", "c2", t + DAY + 1)))
    assert "flash" not in [i[0] for i in feed_of(expired)]


def test_ranker_row_carries_read_time_inputs_and_reranks_on_fresh_pool_interactions(tmp_path, world):
    from models.ranking.readtime import SIGNAL_NAMES

    h = Harness(feed_ranker.SPEC, tmp_path, side=dict(world))
    t = T0 + 3 * DAY
    out = h.feed(("profiles", profile_event("u", axis(1), t, seq=1)))
    row = [v for v in out.views if isinstance(v, Upsert) and v.table == "user_feeds"][-1].row
    packed = unpack_feed(row["feed"])
    assert len(packed) > 0 and packed.signals.shape == (len(packed), len(SIGNAL_NAMES))
    assert packed.signal_names == SIGNAL_NAMES and min(packed.scores) >= 0
    assert len(packed.content_types) == len(packed)
    assert packed.interest_vector.tolist() == pytest.approx(axis(1), abs=1e-6)
    # the items as the ranking scored them, each with the signals that placed it
    assert [s.post_id for s in packed.scored()] == packed.post_ids
    # a post published after this ranking is in the read side's fresh pool: the user's
    # interaction with it re-ranks the feed (so the read leaves it out from then on) ...
    world["published"].apply(published("late", "c2", t + 10))
    out = h.feed(("interactions", interaction("u", "late", t + 20, "VIEW")))
    rows = [v.row for v in out.views if isinstance(v, Upsert) and v.table == "user_feeds"]
    assert rows and rows[-1]["generated_at"] == t + 20
    assert "late" not in unpack_feed(rows[-1]["feed"]).post_ids
    # ... while an interaction with an older post outside the feed does not
    world["published"].apply(published("old", "c2", t - DAY))
    assert not h.feed(("interactions", interaction("u", "old", t + 30, "VIEW"))).views


def test_ranker_collaborative_source_from_a_registered_model(tmp_path, world):
    from models.ranking.collaborative import fit

    # others who liked p1 also liked p2: u's like of p1 brings p2 in as COLLABORATIVE
    model = fit([("a", "p1"), ("a", "p2"), ("b", "p1"), ("b", "p2"), ("c", "p3")], version="cf1")
    h = Harness(feed_ranker.SPEC, tmp_path, side=dict(world), models=model)
    t = T0 + 3 * DAY
    h.feed(("follows", follow("u", "c9", t)))
    h.feed(("interactions", interaction("u", "p3", t + 1, "LIKE")))
    out = h.feed(("interactions", interaction("u", "p1", t + 2, "LIKE")))
    assert not out.dead_letters, [h.codec("dead-letters").decode(d.value)["reason"] for d in out.dead_letters]
    row = [v.row for v in out.views if isinstance(v, Upsert) and v.table == "user_feeds"][-1]
    sources = {i[0]: i[3] for i in items_of(row)}
    assert sources.get("p2") == "COLLABORATIVE" and "p1" not in sources
    assert row["model_version"] == "feed_ranker.relevance@3+item-knn@cf1"
    # without a model (the default), no collaborative candidates
    plain = Harness(feed_ranker.SPEC, tmp_path, side=dict(world))
    plain.feed(("follows", follow("u", "c9", t)))
    out = plain.feed(("interactions", interaction("u", "p1", t + 2, "LIKE")))
    rows = [v.row for v in out.views if isinstance(v, Upsert) and v.table == "user_feeds"]
    assert all(i[3] != "COLLABORATIVE" for r in rows for i in items_of(r))


def test_ranker_unfollow_removes_in_network_posts_and_pushes_enter(tmp_path, world):
    h = Harness(feed_ranker.SPEC, tmp_path, side=dict(world))
    t = T0 + 3 * DAY
    h.feed(("follows", follow("u", "c1", t)))
    out = h.feed(("follows", follow("u", "c1", t + 5, action="UNFOLLOW")))
    assert all(i[3] != "IN_NETWORK" for i in feed_of(out))
    push = full_record("feed-candidates", event_id=eid(), event_time=t + 6, producer="feed_fanout",
                       model="m", model_version="1", user_id="u", post_id="p1", creator_id="c1",
                       source="INTEREST", similarity=0.9, published_at=T0)
    items = feed_of(h.feed(("feed-candidates", push)))
    assert ("p1", "INTEREST") in [(i[0], i[3]) for i in items]


def test_ranker_feed_is_a_function_of_the_event_set(tmp_path, world):
    t = T0 + 3 * DAY
    events = [("follows", follow("u", "c1", t)),
              ("profiles", profile_event("u", axis(1), t + 1, seq=1)),
              ("interactions", interaction("u", "p1", t + 2, "VIEW")),
              ("profiles", profile_event("u", axis(0, 1), t + 3, seq=2))]
    finals = []
    for order in (events, events[::-1], events[2:] + events[:2]):
        h = Harness(feed_ranker.SPEC, tmp_path, side=dict(world))
        rows = [v for e in order for v in h.feed(e).views if isinstance(v, Upsert)]
        # what Cassandra keeps: the row written last in each run (its write timestamp orders
        # a run's own rankings; the runs differ in how many events changed the state)
        finals.append(max(rows, key=lambda r: r.timestamp_us).row)
    assert finals[0] == finals[1] == finals[2]


def test_relevance_diversity_discounts_repeated_authors():
    from models.ranking import relevance as R

    ranked = [R.Scored(f"a{i}", "A", "INTEREST", 0, {}, 1.0 - i * 0.01) for i in range(3)]
    ranked.append(R.Scored("b0", "B", "INTEREST", 0, {}, 0.8))
    out = R.diversify(ranked, 4)
    assert [s.post_id for s in out] == ["a0", "b0", "a1", "a2"]
    assert R.freshness(6 * R.HOUR_MS, "FLASH") == pytest.approx(0.5)
    assert R.freshness(6 * R.HOUR_MS, "FOREVER") > 0.98


def test_ranker_drops_taken_down_posts(tmp_path, world):
    h = Harness(feed_ranker.SPEC, tmp_path, side=dict(world))
    t = T0 + 3 * DAY
    assert "p1" in [i[0] for i in feed_of(h.feed(("follows", follow("u", "c1", t))))]
    world["takedowns"].apply(full_record("takedowns", event_id=eid(), event_time=t + 1,
                                         producer="publisher", post_id="p1", creator_id="c1",
                                         gate="moderation", reasons=["hate"]))
    items = feed_of(h.feed(("follows", follow("u", "c2", t + 2))))
    assert "p1" not in [i[0] for i in items] and "p3" in [i[0] for i in items]


def test_ranker_scores_replies_to_the_users_posts_and_inherits_their_hashtags(tmp_path, world):
    # u asked q (tagged qiskit); c1 answered with r (untagged); another untagged post x by c1 is
    # no reply. r gets the reply signal and q's hashtag, x neither
    t = T0 + 3 * DAY
    world["published"].apply(published("q", "u", t - 2 * R.HOUR_MS, hashtags=["qiskit"]))
    world["published"].apply(published("r", "c1", t - R.HOUR_MS, parent="q"))
    world["published"].apply(published("x", "c1", t - R.HOUR_MS))
    h = Harness(feed_ranker.SPEC, tmp_path, side=dict(world))
    h.feed(("follows", follow("u", "c1", t)))
    prof = profile_event("u", axis(1), t + 1, seq=1)
    prof["hashtag_affinities"] = {"qiskit": 1.0}
    items = {i[0]: i for i in feed_of(h.feed(("profiles", prof)))}
    assert "reply 1.00" in items["r"][4] and not any(x.startswith("reply") for x in items["x"][4])
    assert list(items).index("r") == 0 and items["r"][2] > items["x"][2]
    posts = world["published"]
    assert posts.topic_hashtags(posts.get("r", t), t) == ("qiskit",)
    assert posts.topic_hashtags(posts.get("x", t), t) == ()

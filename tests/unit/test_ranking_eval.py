"""``pulse eval ranking`` (streams.bench.ranking): metrics with hand-computed values, the
declared-interest correction, engagement extraction, and the prequential read (the feed is read
before the engaged event is fed) on tiny synthetic histories through the live agents, with a
stand-in content enricher instead of clip_ai's models. One slower test runs the real dump's
first weeks with clip_ai."""
from __future__ import annotations

import math
import uuid
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from agents.clip_ai import enrichment_effects
from agents.shared.posts import PostFacts
from streams.bench import ranking as R
from streams.contracts.agent import AgentSpec
from streams.settings import Settings

DAY = 86_400_000
T0 = 1_600_000_000_000
ANON = "se-u-anonymous"
SHARED_DUMP = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "stackexchange-quantumcomputing"


# --- tiny histories --------------------------------------------------------------------------


def eid(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def signup(user: str, at: int, declared=()) -> tuple[str, dict]:
    return "user_signup", {"event_id": eid(f"s-{user}"), "event_time": at, "producer": "test",
                           "user_id": user, "handle": user, "declared_interests": list(declared),
                           "locale": None, "country": None, "about": None}


def upload(post: str, creator: str, at: int, tags=(), parent: str | None = None) -> tuple[str, dict]:
    return "upload", {"event_id": eid(f"u-{post}"), "event_time": at, "producer": "test", "post_id": post,
                      "creator_id": creator, "kind": "TEXT", "content_type": "FOREVER",
                      "media_uri": None, "caption": f"post {post}", "title": None if parent else post,
                      "hashtags": list(tags), "duration_ms": None, "size_bytes": None, "width": None,
                      "height": None, "parent_post_id": parent}


def interaction(key: str, user: str, post: str, at: int, type_: str = "COMMENT") -> tuple[str, dict]:
    return "interaction", {"event_id": eid(f"i-{key}"), "event_time": at, "producer": "test",
                           "user_id": user, "post_id": post, "type": type_, "dwell_ms": None,
                           "comment_id": f"c-{key}" if type_ == "COMMENT" else None,
                           "comment_text": "hi" if type_ == "COMMENT" else None,
                           "report_reason": None, "surface": None}


def follow(follower: str, followee: str, at: int) -> tuple[str, dict]:
    return "follow", {"event_id": eid(f"f-{follower}>{followee}"), "event_time": at, "producer": "test",
                      "follower_id": follower, "followee_id": followee, "action": "FOLLOW"}


def in_order(*events: tuple[str, dict]) -> list[tuple[str, dict]]:
    rank = {t: i for i, t in enumerate(R.TOPIC_OF)}
    return sorted(events, key=lambda e: (e[1]["event_time"], rank[e[0]]))


def _fake_enrich(state, event, ctx):
    """A content enricher standing in for clip_ai: an 8-d unit vector from the post's first tag
    (its text for an untagged post), through clip_ai's own event builder."""
    r = event.record
    seed = (r.get("hashtags") or [r["post_id"]])[0]
    v = np.random.default_rng(zlib.crc32(seed.encode())).normal(size=8)
    e = SimpleNamespace(image_embedding=None, text_embedding=v / np.linalg.norm(v), categories={},
                        alignment=None, quality={"score": 0.5}, alt_text=None, hashtags=[],
                        keyframes=None, image=None, semantic=None, text=None, clip_text=None,
                        top_categories=[])
    return enrichment_effects(r, e, "fake", "1")[:1]  # the content-enriched event only


FAKE_CONTENT = (AgentSpec(name="fake_enricher", topics=("uploads",), process=_fake_enrich,
                          outputs=("content-enriched",)), None)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"PULSE_HOME": str(tmp_path)})


def evaluate(history, settings, warmup_days=1.0) -> R.RankingEvaluation:
    ev = R.RankingEvaluation(history, settings, anonymous_user_id=ANON, warmup_days=warmup_days,
                             content=FAKE_CONTENT)
    ev.run()
    return ev


# --- metrics -------------------------------------------------------------------------------


def test_ndcg_hit_and_reciprocal_rank_by_hand():
    assert R.ndcg_at(1) == 1.0
    assert R.ndcg_at(3) == pytest.approx(0.5)             # 1 / log2(4)
    assert R.ndcg_at(10) == pytest.approx(1 / math.log2(11))
    assert R.ndcg_at(11) == 0.0 and R.ndcg_at(None) == 0.0
    assert R.hit_at(10, 10) == 1.0 and R.hit_at(11, 10) == 0.0 and R.hit_at(None, 50) == 0.0
    assert R.reciprocal_rank(4) == 0.25 and R.reciprocal_rank(120) == pytest.approx(1 / 120)
    assert R.reciprocal_rank(None) == 0.0
    s = R.summarize([1, None, 3, 60])
    assert s["events"] == 4
    assert s["ndcg10"] == pytest.approx((1 + 0.5) / 4)
    assert s["hit10"] == pytest.approx(0.5) and s["hit50"] == pytest.approx(0.5)
    assert s["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 60) / 4)
    assert R.summarize([])["ndcg10"] is None
    assert R.rank_of(["a", "b", "c"], "c") == 3 and R.rank_of(["a"], "z") is None
    assert R.rank_of(None, "a") is None


def test_gini_and_coverage_by_hand():
    assert R.gini([3, 3, 3, 3]) == pytest.approx(0.0)
    assert R.gini([0, 0, 0, 4]) == pytest.approx(0.75)     # (2*4-4-1)*4 / (4*4)
    assert R.gini([1, 2, 3]) == pytest.approx(2 / 9)       # (-2*1 + 0*2 + 2*3) / (3*6)
    assert R.gini([]) is None and R.gini([0, 0]) is None
    assert R.coverage({"a", "b", "x"}, ["a", "b", "c", "d"]) == 0.5
    assert R.coverage({"a"}, []) is None


def test_goals_compare_pulse_with_the_best_baselines():
    def m(nd, cold):
        return {"events": 10, "ndcg10": nd, "cold_start": {"events": 4, "ndcg10": cold}}

    rankers = {n: m(0.1, 0.05) for n in R.RANKERS}
    rankers["pulse"] = m(0.3, 0.2)
    rankers["popular_7d"] = m(0.25, 0.1)
    rankers["item_knn"] = m(0.35, 0.25)
    g = R.goals(rankers)
    assert g["best_simple"] == "popular_7d" and g["ndcg10_vs_best_simple"] == pytest.approx(1.2)
    assert g["met_1_2x"] is True
    assert g["best_library"] == "item_knn" and g["met_library"] is False
    assert g["best_cold_start_baseline"] == "item_knn" and g["met_cold_start"] is False
    assert g["cold_start_vs_best_baseline"] == pytest.approx(0.8)


# --- the history -----------------------------------------------------------------------------


def test_declared_interests_use_only_activity_before_the_cutoff():
    history = in_order(
        upload("q1", "a", T0, tags=("qiskit", "noise")),
        upload("q2", "b", T0 + 1, tags=("noise", "qaoa")),
        upload("ans", "c", T0 + 2, parent="q1"),                       # c: qiskit, noise
        interaction("1", "c", "q2", T0 + 3),                           # c: noise, qaoa
        interaction("2", "c", "q2", T0 + 10 * DAY),                    # after the cutoff
        upload("q3", "d", T0 + 10 * DAY, tags=("future",)),            # d: only after
        interaction("3", ANON, "q1", T0 + 4, "LIKE"),
    )
    declared = R.declared_interests_before(history, T0 + 5 * DAY, ANON)
    assert declared["c"] == ["noise", "qaoa", "qiskit"]               # noise 2, then by name
    assert declared["a"] == ["noise", "qiskit"]
    assert "d" not in declared and ANON not in declared
    fixed = R.with_declared_interests([signup("d", T0, declared=("future",)), signup("c", T0)], declared)
    assert fixed[0][1]["declared_interests"] == [] and fixed[1][1]["declared_interests"] == declared["c"]
    assert R.declared_interests_before(history, T0 + 5 * DAY, ANON, top=1)["c"] == ["noise"]


def test_engagements_skip_own_posts_and_the_anonymous_user():
    history = in_order(
        upload("q1", "a", T0, tags=("x",)),
        upload("ans1", "b", T0 + 1, parent="q1"),            # b answers a: engages q1
        upload("ans2", "a", T0 + 2, parent="q1"),            # a answers self: own post
        interaction("c1", "a", "q1", T0 + 3),                # comment on own post
        interaction("c2", "c", "ans1", T0 + 4),              # c comments on b's answer
        interaction("v1", ANON, "q1", T0 + 5, "LIKE"),       # an upvote: nobody
        interaction("v2", "c", "q1", T0 + 6, "LIKE"),        # c's favourite
        interaction("v3", "a", "ans1", T0 + 7, "LIKE"),      # a accepts b's answer
    )
    engagements, skipped = R.extract_engagements(history, ANON)
    got = [(e.user_id, e.post_id, e.creator_id, e.kind) for e in engagements]
    assert got == [("b", "q1", "a", "ANSWER"), ("c", "ans1", "b", "COMMENT"),
                   ("c", "q1", "a", "LIKE"), ("a", "ans1", "b", "LIKE")]
    assert skipped == {"own_post": 2, "anonymous_user": 1}


def test_eligible_pool_is_the_horizon_minus_own_and_seen_posts():
    from agents.shared.posts import PublishedPosts

    pub = PublishedPosts()
    for post, creator, at in (("old", "a", T0), ("mine", "u", T0 + 20 * DAY), ("seen", "a", T0 + 21 * DAY),
                              ("ok", "a", T0 + 22 * DAY), ("later", "a", T0 + 40 * DAY)):
        pub.apply({"post_id": post, "creator_id": creator, "event_time": at, "uploaded_at": at,
                   "kind": "TEXT", "content_type": "FOREVER", "distribution": "FULL"})
    pool = R.eligible_pool(pub, "u", T0 + 35 * DAY, 30 * DAY, {"seen"}, set())
    assert [f.post_id for f in pool] == ["ok"]


def _facts(post, creator, at):
    return PostFacts(post, creator, at, at, "TEXT", "FOREVER", "FULL", None, (), (), None, None)


def test_ranked_breaks_ties_newest_first():
    pool = [_facts("p1", "a", 1), _facts("p2", "a", 2), _facts("p3", "b", 3)]
    assert R.ranked(pool) == ["p3", "p2", "p1"]
    assert R.ranked(pool, lambda f: 1.0 if f.post_id == "p1" else 0.0) == ["p1", "p3", "p2"]


def test_item_knn_ranks_the_co_engaged_post_first():
    obs = R.Observed(ANON)
    for at, user, post in ((1, "u1", "p1"), (2, "u1", "p2"), (3, "u2", "p1"), (4, "u3", "p3"),
                           (5, "u4", "p3"), (6, "u4", "p4")):
        obs._cf(at, user, post)
    cf = R.CollaborativeBaselines()
    cf.maybe_retrain(10, obs)
    pool = [_facts(p, "x", 5) for p in ("p2", "p3", "p4")]
    assert cf.rank("item_knn", "u2", pool, obs)[0] == "p2"
    assert cf.rank("als", "nobody", pool, obs) is None            # unknown user: no ranking
    assert cf.rank("als", "u2", pool + [_facts("new", "x", 9)], obs) is not None
    assert "new" not in cf.rank("als", "u2", pool + [_facts("new", "x", 9)], obs)


# --- the prequential read --------------------------------------------------------------------


def test_the_feed_is_read_before_the_engaged_event_is_fed(settings):
    """b answers a's question; the follow that answer causes puts the question into b's feed.
    Read before the event as materialized (no fresh pool), the question is absent (rank None);
    after the run it is in the feed, so a read after the event would have found it. With the
    fresh pool the read side adds it at read time (published after b's feed was ranked)."""
    import dataclasses

    history = in_order(
        signup("a", T0), signup("b", T0 + 1),
        upload("q", "a", T0 + 2 * DAY, tags=("x",)),
        upload("ans", "b", T0 + 3 * DAY, parent="q"),
        follow("b", "a", T0 + 3 * DAY),
    )
    fresh = evaluate(history, settings)
    assert fresh.tallies["pulse"].ranks == [1]
    ev = evaluate(history, dataclasses.replace(settings, feed_fresh_pool=0))
    assert ev.tallies["pulse"].ranks == [None]
    assert "q" in (ev.pipeline.feed_of("b") or [])
    assert ev.tallies["reverse_chronological_all"].ranks == [1]   # the pool had it
    assert ev.tallies["reverse_chronological_following"].ranks == [None]  # not followed yet
    report = ev.report("synthetic")
    assert report["events_evaluated"] == 1 and report["cold_start_events"] == 1
    assert report["diagnostics"]["dead_letters"] == {s.spec.name: 0 for s in ev.pipeline.stages}


def test_a_post_already_in_the_feed_is_found_and_metrics_add_up(settings):
    history = in_order(
        signup("a", T0), signup("b", T0 + 1), signup("c", T0 + 2),
        upload("q", "a", T0 + 2 * DAY, tags=("x",)),
        upload("other", "c", T0 + 2 * DAY + 5, tags=("y",)),
        follow("b", "a", T0 + 2 * DAY + 10),
        interaction("1", "b", "q", T0 + 3 * DAY),                  # evaluated
        interaction("2", "b", "q", T0 + 4 * DAY),                  # already interacted: skipped
        interaction("3", "a", "q", T0 + 4 * DAY + 1),              # own post: not a candidate
        interaction("4", ANON, "other", T0 + 4 * DAY + 2, "LIKE"),  # never fed, never evaluated
        interaction("5", "b", "other", T0 + 5 * DAY + 3, "LIKE"),  # evaluated
    )
    ev = evaluate(history, settings)
    assert ev.tallies["pulse"].ranks[0] == 1
    assert ev.tallies["reverse_chronological_following"].ranks == [1, None]
    assert ev.skipped["already_interacted"] == 1 and ev.skipped["own_post"] == 1
    assert ev.skipped["anonymous_user"] == 1
    assert ev.pipeline.records["interactions"] == 4                 # the anonymous like was not fed
    report = ev.report("synthetic")
    pulse = report["rankers"]["pulse"]
    assert pulse["events"] == 2 and pulse["ndcg10"] == pytest.approx(
        (1.0 + R.ndcg_at(ev.tallies["pulse"].ranks[1])) / 2)
    assert report["rankers"]["popular_all_time"]["events"] == 2
    assert set(report["rankers"]) == set(R.RANKERS)


def test_nothing_is_evaluated_during_the_warmup(settings):
    history = in_order(signup("a", T0), signup("b", T0 + 1), upload("q", "a", T0 + 1000, tags=("x",)),
                       interaction("1", "b", "q", T0 + 2000))
    ev = evaluate(history, settings, warmup_days=1.0)
    assert ev.tallies["pulse"].ranks == [] and ev.skipped["before_warmup"] == 1
    assert ev.pipeline.feeds == {}          # b is never evaluated: its feed is never ranked


def test_history_out_of_order_is_refused(settings):
    with pytest.raises(ValueError, match="event-time order"):
        R.RankingEvaluation([signup("b", T0 + 5), signup("a", T0)], settings,
                            anonymous_user_id=ANON, content=FAKE_CONTENT)


# --- the real dump (slow: clip_ai's models) -------------------------------------------------


@pytest.mark.timeout(400)
def test_real_dump_first_weeks(tmp_path):
    if not SHARED_DUMP.is_dir():
        pytest.skip(f"{SHARED_DUMP} is absent (see ../shared/data/README.md)")
    import torch

    from streams.demo.sources.stackexchange import ANONYMOUS_USER_ID, iter_events_in_time_order, load_dump

    torch.set_num_threads(1)
    history = list(iter_events_in_time_order(load_dump(SHARED_DUMP)))
    plot = tmp_path / "ndcg.png"
    report = R.run_ranking_eval(history, Settings.from_env({"PULSE_HOME": str(tmp_path)}),
                                anonymous_user_id=ANONYMOUS_USER_ID, dataset="qc", warmup_days=14,
                                days=20, plot=plot)
    assert report["events_evaluated"] > 50
    assert set(report["skipped"]) >= {"before_warmup", "own_post", "anonymous_user"}
    assert all(v == 0 for v in report["diagnostics"]["dead_letters"].values())
    assert report["rankers"]["pulse"]["ranked_events"] > 0
    assert 0.0 <= report["rankers"]["pulse"]["ndcg10"] <= 1.0
    assert plot.stat().st_size > 1000


def test_with_collaborative_candidates_the_ranker_loads_a_model_of_the_log_before_each_retrain(settings):
    """``collaborative=True``: at the baselines' retraining moment (b's first evaluated comment)
    feed_ranker gets an item-kNN of the engagements strictly before it (c's two comments, not
    b's), and b's next ranking draws q2, co-engaged with q1 by c, as a COLLABORATIVE candidate.
    Without it, the ranker runs as shipped, with no model."""
    from models.ranking.collaborative import ItemNeighbours
    from models.ranking.readtime import feed_inputs

    history = in_order(
        signup("a", T0), signup("b", T0 + 1), signup("c", T0 + 2), signup("d", T0 + 3),
        upload("q1", "a", T0 + DAY, tags=("x",)),
        upload("q2", "d", T0 + DAY + 1, tags=("z",)),
        interaction("c1", "c", "q1", T0 + DAY + DAY // 2),
        interaction("c2", "c", "q2", T0 + DAY + DAY // 2 + 1),
        interaction("b1", "b", "q1", T0 + 2 * DAY),                 # evaluated: the retrain
    )
    ev = R.RankingEvaluation(history, settings, anonymous_user_id=ANON, warmup_days=1.9,
                             content=FAKE_CONTENT, collaborative=True)
    ev.run()
    model = ev._ranker.runner.models
    assert ev.collaborative_retrains == ev.cf.retrains == 1
    assert isinstance(model, ItemNeighbours) and sorted(model.items) == ["q1", "q2"]
    assert [p for p, _ in model.recommend(["q1"], 5)] == ["q2"]
    _, row = ev.pipeline.feeds["b"]
    stored, _ = feed_inputs("b", row, int(row["generated_at"]))
    assert dict(zip(stored.post_ids, stored.sources)).get("q2") == "COLLABORATIVE"
    report = ev.report("synthetic")
    assert report["diagnostics"]["pulse_collaborative_retrains"] == 1
    assert sum(report["diagnostics"]["pulse_top10_sources"].values()) >= 1  # b's feed was read

    shipped = evaluate(history, settings, warmup_days=1.9)
    assert shipped._ranker.runner.models is None and shipped.collaborative_retrains == 0

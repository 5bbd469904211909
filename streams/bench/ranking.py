"""``pulse eval ranking``: a prequential evaluation of Pulse's feed ranking on a real history.

The history (a Stack Exchange dump as Pulse events, :mod:`streams.demo.sources.stackexchange`,
which the CLI loads: this package may not import ``streams.demo``) is replayed in event-time
order through the *live* agents, in-process, with the runtime's own
:class:`~streams.runtime.engine.AgentRunner` and codecs (no Kafka, no Cassandra):

    uploads ─▶ clip_ai ─▶ content-enriched ─▶ publisher (gates: enrichment) ─▶ posts-published
    signups, follows, interactions ─▶ user_profiler ─▶ profiles
    posts-published ─▶ feed_fanout ─▶ feed-candidates
    feed-candidates, profiles, follows, interactions ─▶ feed_ranker ─▶ user_feeds (the view)

:class:`Pipeline` is the simulated log: a record enters a topic, is folded into every side state
over that topic (one object per ``(topic, SideInput.open)``, shared by the agents that declare
it), then is run, as a batch of one, through every agent consuming the topic; what they emit
enters the log the same way (breadth first) before the next input event is read. So every
derived event is processed before any later input event, and carries its cause's event time (the
agents stamp them so). The latest ``user_feeds`` row of each user (highest write timestamp) is the
materialized feed; the ``fresh_posts`` rows, in log order, are the read side's fresh pool.

At each evaluated engagement (:func:`extract_engagements`), *before* the event enters the log,
the engaged post's rank is read from the user's materialized feed and from six baselines, each
ranking the same eligible pool (:func:`eligible_pool`); then the event is fed. Decisions, written
down because nobody could be asked:

* **Declared interests.** The loader's stand-in looks at the whole dump; they are replaced by the
  top 5 tags (count, then name) of the user's own activity strictly before the end of the warm-up
  (:func:`declared_interests_before`): questions count their tags; answers, comments and named
  likes the tags of the question concerned. Empty for users with none.
* **The anonymous user.** Upvotes carry no voter, so the loader gives them one shared id; it is
  no person: its interactions are dropped from the agents' input and from every baseline
  (popularity counts included), and it is never evaluated.
* **Evaluated engagements**: an answer (engaged post: the question), a comment (the commented
  post), a named LIKE (a favourite, or the acceptance of an answer by the question's owner). Not
  on one's own post; only at or after the end of the warm-up; the engaged post must have been
  published by the pipeline at or before the event (else ``skipped.not_published``). Not when
  the user interacted with the post before (``skipped.already_interacted``): the ranker drops
  such "seen" posts from the feed by design and the baselines' pool excludes them too, so no
  ranker could place them and the event says nothing about ranking. Answering is not an
  interaction in Pulse, so a comment on a question one answered is still evaluated.
* **Cold start**: fewer than 3 earlier engagements of the evaluated kinds by the user (not on
  own posts, any time before, warm-up included).
* **Pool** (:func:`eligible_pool`): the posts the ranker could show at the event time ``t``:
  published in ``[t - feed_horizon_days, t]`` and live, not the user's own, not interacted with
  before; RESTRICTED posts only from followed creators (the ranker's rule). An engaged post
  older than the horizon is then a miss for every ranker (``diagnostics.target_outside_pool``).
  Pulse's feed is what the read side serves at the event's time: the feed materialized as of
  the user's latest event (including every post feed_fanout pushed by then), ranked again at
  read time (:func:`models.ranking.readtime.rerank`, exactly as :func:`streams.query.feeds.read_feed`
  does) with the posts published since, from the newest ``feed_fresh_pool`` rows feed_fanout
  wrote to ``fresh_posts``; the reading time is the event's time. That is what a user would see.
* **Baselines**: reverse-chronological over the pool (all creators; followed creators only),
  most popular (count of earlier interactions and answers on the post: all time; last 7 days),
  and two collaborative filters from ``implicit`` trained on the user-post engagement matrix
  (answers, comments, named likes, and authorship, each counting 1) of everything before the
  moment, retrained every :data:`RETRAIN_DAYS` days of event time (:class:`CollaborativeBaselines`).
  Ties everywhere broken newest first, then by post id.
* **Feed ranker users.** feed_ranker is keyed by user, reads only as-of side states and feeds no
  other agent in this chain, so it is run only for users with an engagement to evaluate, and for
  each only on records up to the time of their last such engagement: a user's feed at an event
  depends only on that user's records up to then (the log is in time order), not on whether
  other users' feeds, or this user's later ones, were computed. This saves most of the replay's
  time (each ranker event re-ranks a feed) and changes no feed that is read. Everything upstream
  (clip_ai, publisher, profiler, fan-out) runs for everyone.

Metrics (:func:`ndcg_at`, :func:`hit_at`, :func:`reciprocal_rank`, :func:`gini`): one relevant
item per event, so NDCG@10 = ``1 / log2(rank + 1)`` for a 1-based rank <= 10, else 0; hit@k; MRR
over the whole list (0 when absent). A ranker that produced no list for an event (no feed yet,
a user unknown to a collaborative model) scores 0 there and its ``ranked_events`` says how often
that happened. Catalogue coverage: the share of posts published during the evaluation period
that appeared in some evaluated top 10. Author diversity: the Gini coefficient of author exposure
counts over all evaluated top-10 lists, over every creator with a post published from
``horizon`` before the evaluation period to its end (zeros included; 0 = even exposure).

Nothing was tuned on the evaluated period: the relevance weights were chosen on the warm-up
period only (``pulse eval ranking-fit``, :mod:`streams.bench.ranking_fit`), the agents run with the
settings given, the baselines with the constants below (chosen before the first run, from their
papers' or libraries' defaults).
"""
from __future__ import annotations

import bisect
import math
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from agents.shared.posts import PostFacts, PublishedPosts
from models.ranking.feed_row import stored_post_ids
from models.ranking.readtime import FreshPost, feed_inputs, fresh_post_of, rerank
from streams.contracts.agent import AgentSpec, ms_of
from streams.contracts.effects import Upsert
from streams.runtime.binding import RuntimeContext
from streams.runtime.engine import AgentRunner, RawMessage
from streams.settings import Settings

DAY_MS = 86_400_000
#: Source event types of the dump (``streams.demo.sources.EVENT_TYPES``) -> their topics.
TOPIC_OF = {"user_signup": "signups", "upload": "uploads", "interaction": "interactions",
            "follow": "follows"}
RANKERS = ("pulse", "reverse_chronological_all", "reverse_chronological_following",
           "popular_all_time", "popular_7d", "als", "item_knn")
SIMPLE = ("reverse_chronological_all", "reverse_chronological_following", "popular_all_time",
          "popular_7d")
LIBRARY = ("als", "item_knn")
#: Cold start: fewer earlier engagements than this (``models.profiles.interests.COLD_START_BELOW``).
COLD_START_BELOW = 3
DECLARED_TOP = 5
POPULAR_RECENT_DAYS = 7
#: Collaborative baselines are retrained every this many days of event time (prequential).
RETRAIN_DAYS = 7
#: ALS (Hu, Koren and Volinsky, ICDM 2008): confidence ``alpha * count`` with the paper's
#: alpha = 40; 32 factors for a catalogue of about 2k posts; regularization 0.1, 15 iterations
#: (implicit's default). Not tuned here.
ALS_PARAMS = {"factors": 32, "regularization": 0.1, "alpha": 40.0, "iterations": 15}
#: Item-kNN: implicit's CosineRecommender (cosine between item columns, top K neighbours kept).
#: Chosen over BM25Recommender because cosine has no weighting parameters to fit (BM25's K1 and
#: B would need tuning we cannot do without a validation split); K = 50 rather than the default
#: 20 because the matrix is very sparse (a few engagements per user), so more neighbours keep
#: items reachable from a short history.
KNN_K = 50
SEED = 0
PLOT_WINDOW_DAYS = 14
DEFAULT_PLOT = Path("docs/figures/ranking-ndcg.png")


# --- metrics ---------------------------------------------------------------------------------


def ndcg_at(rank: int | None, k: int = 10) -> float:
    """NDCG@k with one relevant item at 1-based ``rank`` (None: absent): ``1 / log2(rank + 1)``
    when ``rank <= k``, else 0 (the ideal DCG is 1)."""
    return 1.0 / math.log2(rank + 1) if rank is not None and 1 <= rank <= k else 0.0


def hit_at(rank: int | None, k: int) -> float:
    """1.0 when the relevant item is in the top ``k``, else 0.0."""
    return 1.0 if rank is not None and 1 <= rank <= k else 0.0


def reciprocal_rank(rank: int | None) -> float:
    """``1 / rank`` when the item is anywhere in the list, else 0 (its mean is the MRR)."""
    return 1.0 / rank if rank is not None and rank >= 1 else 0.0


def gini(counts: Iterable[float]) -> float | None:
    """Gini coefficient of non-negative ``counts`` (0: all equal; towards 1: concentrated on
    one): ``sum_i (2i - n - 1) x_i / (n sum x)`` over the counts sorted ascending, i = 1..n.
    None for no counts or a zero total."""
    x = np.sort(np.asarray(list(counts), dtype=np.float64))
    n, total = len(x), float(x.sum()) if len(x) else 0.0
    if n == 0 or total <= 0:
        return None
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def coverage(shown: Iterable[str], catalogue: Iterable[str]) -> float | None:
    """Share of ``catalogue`` that is in ``shown`` (None for an empty catalogue)."""
    cat = set(catalogue)
    return len(cat & set(shown)) / len(cat) if cat else None


def rank_of(ranked: Sequence[str] | None, post_id: str) -> int | None:
    """1-based position of ``post_id`` in ``ranked``, None when absent or no list."""
    if ranked is None:
        return None
    for i, p in enumerate(ranked):
        if p == post_id:
            return i + 1
    return None


# --- the history -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Engagement:
    """A user's engagement with someone else's post (times UTC epoch ms). ``kind``: ANSWER (the
    engaged post is the question), COMMENT or LIKE; ``event_id``: the source event's."""

    event_id: str
    at_ms: int
    user_id: str
    post_id: str
    creator_id: str
    kind: str


def _time(record: Mapping[str, Any]) -> int:
    return ms_of(record["event_time"])


def extract_engagements(history: Sequence[tuple[str, dict]], anonymous_user_id: str | None
                        ) -> tuple[list[Engagement], Counter]:
    """The candidate engagements of ``history`` (``(event_type, record)`` in time order), and
    the count of those left out by reason (``anonymous_user``, ``own_post``).

    An answer (upload with ``parent_post_id``) engages the question, a COMMENT or LIKE the post;
    other interaction types are not engagements. Nothing is decided here about time (warm-up,
    publication): :func:`run_ranking_eval` does that as it replays."""
    owner: dict[str, str] = {}
    out: list[Engagement] = []
    skipped: Counter = Counter()
    for event_type, r in history:
        if event_type == "upload":
            owner[r["post_id"]] = r["creator_id"]
            if not r.get("parent_post_id"):
                continue
            user, post, kind = r["creator_id"], r["parent_post_id"], "ANSWER"
        elif event_type == "interaction" and r["type"] in ("COMMENT", "LIKE"):
            user, post, kind = r["user_id"], r["post_id"], r["type"]
            if user == anonymous_user_id:
                skipped["anonymous_user"] += 1
                continue
        else:
            continue
        creator = owner.get(post)
        if creator is None:
            skipped["post_unknown"] += 1
            continue
        if creator == user:
            skipped["own_post"] += 1
            continue
        out.append(Engagement(r["event_id"], _time(r), user, post, creator, kind))
    return out, skipped


def declared_interests_before(history: Sequence[tuple[str, dict]], cutoff_ms: int,
                              anonymous_user_id: str | None = None, top: int = DECLARED_TOP
                              ) -> dict[str, list[str]]:
    """``{user_id: top tags}`` from each user's own activity strictly before ``cutoff_ms``: a
    question counts its tags; an answer, a comment or a LIKE the tags of the question concerned
    (an answer's parent). The ``top`` tags by count, ties by name; users without such activity
    are absent (their declared interests are empty)."""
    tags: dict[str, list[str]] = {}      # post -> its question's tags
    counts: dict[str, Counter] = {}
    for event_type, r in history:
        at = _time(r)
        if event_type == "upload":
            parent = r.get("parent_post_id")
            tags[r["post_id"]] = list(r.get("hashtags") or []) if not parent else tags.get(parent, [])
            user = r["creator_id"]
            post_tags = tags[r["post_id"]]
        elif event_type == "interaction":
            user = r["user_id"]
            if user == anonymous_user_id:
                continue
            post_tags = tags.get(r["post_id"], [])
        else:
            continue
        if at < cutoff_ms and post_tags:
            counts.setdefault(user, Counter()).update(post_tags)
    return {u: [t for t, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
            for u, c in counts.items()}


def with_declared_interests(history: Sequence[tuple[str, dict]],
                            declared: Mapping[str, list[str]]) -> list[tuple[str, dict]]:
    """``history`` with every signup's ``declared_interests`` replaced by ``declared`` (empty
    for users not in it); other records are the same objects."""
    out = []
    for event_type, r in history:
        if event_type == "user_signup":
            r = {**r, "declared_interests": list(declared.get(r["user_id"], []))}
        out.append((event_type, r))
    return out


# --- the pipeline ----------------------------------------------------------------------------


@dataclass
class Stage:
    """One agent in the pipeline: its runner and which of its input records it takes
    (``accepts(topic, record)``; None: all)."""

    spec: AgentSpec
    runner: AgentRunner
    accepts: Callable[[str, dict], bool] | None = None
    events: int = 0
    dead_letters: int = 0


class Pipeline:
    """The agents over an in-process log (module docstring).

    Parameters
    ----------
    settings:
        Codec settings (``RuntimeContext``) and the default agent configuration.
    stages:
        ``(spec, models, config, accepts)`` in dependency order; ``config`` None means
        ``settings``; ``accepts`` None means every record of the agent's topics.
    ahead:
        The name of a stage to run ahead in a thread of its own (:meth:`run_ahead`): one whose
        inputs and side inputs are all one *source* topic, whose records are known before the
        replay (clip_ai: uploads). Its results are a function of that topic's records in log
        order only, so computing them early changes nothing; its model inference (which
        releases the GIL) then overlaps the other agents' work.
    """

    def __init__(self, settings: Settings,
                 stages: Sequence[tuple[AgentSpec, Any, Settings | None, Callable | None]],
                 ahead: str | None = None):
        self.rctx = RuntimeContext(settings)
        self.side_by_topic: dict[str, list[Any]] = defaultdict(list)
        self._shared: dict[tuple[str, Any], Any] = {}
        self.stages: list[Stage] = []
        self.consumers: dict[str, list[Stage]] = defaultdict(list)
        self._ahead: Stage | None = None
        self._ahead_side: list[Any] = []
        self._ahead_results: list[Future] = []
        for spec, models, config, accepts in stages:
            config = config or settings
            side = {}
            if spec.name == ahead:
                if {si.topic for si in spec.side_inputs} - set(spec.topics) or len(spec.topics) != 1:
                    raise ValueError(f"{spec.name} reads more than one source topic: cannot run ahead")
                for si in spec.side_inputs:  # private: folded by the ahead thread
                    side[si.name] = si.open(config, models)
                    self._ahead_side.append(side[si.name])
                ahead_rctx = RuntimeContext(settings)
                runner = AgentRunner(spec, ahead_rctx.codec, config=config, models=models, side=side)
                self._ahead = Stage(spec, runner, None)
                self.stages.append(self._ahead)
                self.consumers[spec.topics[0]].append(self._ahead)
                continue
            for si in spec.side_inputs:
                key = (si.topic, si.open)
                if key not in self._shared:
                    self._shared[key] = si.open(config, models)
                    self.side_by_topic[si.topic].append(self._shared[key])
                side[si.name] = self._shared[key]
            stage = Stage(spec, AgentRunner(spec, self.codec, config=config, models=models, side=side),
                          accepts)
            self.stages.append(stage)
            for topic in spec.topics:
                self.consumers[topic].append(stage)
        self.offsets: Counter = Counter()
        self.feeds: dict[str, tuple[int, dict]] = {}   # user -> (write timestamp µs, row)
        self.fresh: list[FreshPost] = []                # fresh_posts rows, in log order
        self.fresh_times: list[int] = []
        self.records: Counter = Counter()               # topic -> records entered the log
        self.log: dict[str, list[bytes]] | None = None
        """Set to a ``defaultdict(list)`` to record every topic's encoded records in log order
        (``pulse bench delivery`` publishes them)."""

    def codec(self, topic: str):
        return self.rctx.codec(topic)

    def run_ahead(self, records: Sequence[dict]) -> None:
        """Start the ahead stage on ``records``: every record its topic will receive, in the
        order :meth:`publish` will enter them (a daemon thread; results are waited for in
        :meth:`publish`)."""
        stage = self._ahead
        if stage is None:
            return
        topic = stage.spec.topics[0]
        self._ahead_results = [Future() for _ in records]
        # torch's intra-op thread count is per thread: the ahead thread uses the caller's, so the
        # embeddings (whose low bits depend on it) are those a single-threaded replay computes
        torch = sys.modules.get("torch")
        threads = torch.get_num_threads() if torch is not None else None

        def work() -> None:
            if threads is not None:
                torch.set_num_threads(threads)
            for offset, record in enumerate(records):
                fut = self._ahead_results[offset]
                try:
                    value = stage.runner.codecs(topic).encode(record)
                    decoded = stage.runner.codecs(topic).decode(value)
                    for state in self._ahead_side:
                        state.apply(decoded)
                    out = stage.runner.run([RawMessage(topic, 0, offset, None, value)])
                    stage.runner.apply_state(out.state)
                except BaseException as exc:  # handed to publish, which raises it
                    fut.set_exception(exc)
                    for rest in self._ahead_results[offset + 1:]:
                        rest.set_exception(exc)
                    return
                fut.set_result(out)

        threading.Thread(target=work, name=f"ahead-{stage.spec.name}", daemon=True).start()

    def side_state(self, kind: type) -> Any:
        """The shared side state of class ``kind`` (e.g. :class:`PublishedPosts`), or None."""
        return next((s for s in self._shared.values() if isinstance(s, kind)), None)

    def publish(self, topic: str, record: dict) -> None:
        """Enter ``record`` into ``topic`` and process it and everything it causes."""
        queue: deque[tuple[str, bytes]] = deque([(topic, self.codec(topic).encode(record))])
        while queue:
            topic, value = queue.popleft()
            decoded = self.codec(topic).decode(value)
            offset = self.offsets[topic]
            self.offsets[topic] += 1
            self.records[topic] += 1
            if self.log is not None:
                self.log[topic].append(value)
            for state in self.side_by_topic.get(topic, ()):
                state.apply(decoded)
            for stage in self.consumers.get(topic, ()):
                if stage.accepts is not None and not stage.accepts(topic, decoded):
                    continue
                if stage is self._ahead and self._ahead_results:
                    out = self._ahead_results[offset].result()
                else:
                    out = stage.runner.run([RawMessage(topic, 0, offset, None, value)])
                    stage.runner.apply_state(out.state)
                stage.events += 1
                stage.dead_letters += len(out.dead_letters)
                for effect in out.views:
                    if isinstance(effect, Upsert) and effect.table == "user_feeds":
                        user = effect.row["user_id"]
                        old = self.feeds.get(user)
                        if old is None or effect.timestamp_us >= old[0]:
                            self.feeds[user] = (effect.timestamp_us, effect.row)
                    elif isinstance(effect, Upsert) and effect.table == "fresh_posts":
                        self.fresh.append(fresh_post_of(effect.row))
                for emitted in out.emits:
                    if emitted.topic in self.consumers or emitted.topic in self.side_by_topic:
                        queue.append((emitted.topic, emitted.value))
                    else:
                        self.records[emitted.topic] += 1
                        if self.log is not None:
                            self.log[emitted.topic].append(emitted.value)

    def feed_of(self, user: str, at_ms: int | None = None, fresh: int = 0) -> list[str] | None:
        """The post ids of ``user``'s feed, best first; None before the first ranking. With
        ``at_ms``, as the read side serves it at that time (:func:`models.ranking.readtime.rerank`
        of the materialized row with the newest ``fresh`` posts of ``fresh_posts`` published by
        then); without, as materialized."""
        got = self.feeds.get(user)
        if got is None:
            return None
        served = None if at_ms is None else self.served_feed(user, at_ms, fresh)
        return stored_post_ids(got[1]) if served is None else [s.post_id for s in served]

    def served_feed(self, user: str, at_ms: int, fresh: int = 0) -> list[Any] | None:
        """``user``'s feed as the read side serves it at ``at_ms`` (:meth:`feed_of`), each entry
        a :class:`models.ranking.relevance.Scored` (its source and signals); None before the
        first ranking or for a row that read-time ranking cannot read."""
        got = self.feeds.get(user)
        if got is None:
            return None
        row = got[1]
        inputs = feed_inputs(user, row, int(row["generated_at"]))
        if inputs is None:
            return None
        stored, reader = inputs
        if len(self.fresh_times) != len(self.fresh):
            self.fresh_times = [p.published_at for p in self.fresh]
        hi = bisect.bisect_right(self.fresh_times, at_ms) if fresh > 0 else 0
        pool = self.fresh[max(0, hi - fresh):hi]
        size = max(len(stored), int(getattr(self.rctx.settings, "feed_size", 200)))
        return rerank(stored, pool, reader, at_ms, size)


def default_stages(settings: Settings, content: tuple[AgentSpec, Any] | None,
                   ranked_until: Mapping[str, int] | None) -> list[tuple]:
    """The chain of the module docstring. ``content``: the content-enrichment agent and its
    models (default: clip_ai, loaded here, seconds); ``ranked_until``: the users feed_ranker
    runs for, each up to an event time (UTC epoch ms, inclusive) after which their feed is never
    read (None: everyone, always)."""
    from agents import clip_ai, feed_fanout, feed_ranker, publisher, user_profiler

    if content is None:
        content = (clip_ai.SPEC, clip_ai.SPEC.load(settings))
    pub = settings.with_(gates=("enrichment",))
    def until_last_read(topic: str, r: dict) -> bool:
        until = ranked_until.get(r["follower_id"] if topic == "follows" else r["user_id"])
        return until is not None and _time(r) <= until

    accepts = None if ranked_until is None else until_last_read
    return [
        (content[0], content[1], None, None),
        (publisher.SPEC, publisher.SPEC.load(pub), pub, None),
        (user_profiler.SPEC, None, None, None),
        (feed_fanout.SPEC, None, None, None),
        (feed_ranker.SPEC, None, None, accepts),
    ]


# --- what the baselines know -----------------------------------------------------------------


class Observed:
    """The history fed so far, as the baselines read it: each user's interacted posts, follows,
    engagement counts; each post's engagement times; the collaborative-filtering triples."""

    def __init__(self, anonymous_user_id: str | None) -> None:
        self.anonymous = anonymous_user_id
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.follows: dict[str, set[str]] = defaultdict(set)
        self.engaged_at: dict[str, list[int]] = defaultdict(list)  # post -> times, ascending
        self.prior: Counter = Counter()     # user -> evaluated-kind engagements so far
        self.cf: list[tuple[int, str, str]] = []   # (at, user, post), ascending
        self.cf_user: dict[str, Counter] = defaultdict(Counter)

    def observe(self, event_type: str, r: dict, engagement: Engagement | None) -> None:
        at = _time(r)
        if event_type == "interaction":
            if r["user_id"] == self.anonymous:
                return
            self.seen[r["user_id"]].add(r["post_id"])
            self.engaged_at[r["post_id"]].append(at)
        elif event_type == "upload":
            self._cf(at, r["creator_id"], r["post_id"])
            if r.get("parent_post_id"):
                self.engaged_at[r["parent_post_id"]].append(at)
        elif event_type == "follow":
            if r["action"] == "FOLLOW":
                self.follows[r["follower_id"]].add(r["followee_id"])
            else:
                self.follows[r["follower_id"]].discard(r["followee_id"])
        if engagement is not None:
            self.prior[engagement.user_id] += 1
            self._cf(at, engagement.user_id, engagement.post_id)

    def _cf(self, at: int, user: str, post: str) -> None:
        self.cf.append((at, user, post))
        self.cf_user[user][post] += 1

    def popularity(self, post: str, since_ms: int, t: int) -> int:
        """Engagements (interactions, answers) with ``post`` in ``[since_ms, t)``."""
        times = self.engaged_at.get(post, ())
        return sum(1 for a in times if since_ms <= a < t)


def eligible_pool(published: PublishedPosts, user: str, t: int, horizon_ms: int,
                  seen: set[str], followed: set[str]) -> list[PostFacts]:
    """The posts any ranker may show ``user`` at ``t`` (module docstring), oldest first."""
    return [f for f in published.window(t - horizon_ms, t)
            if f.live_at(t) and f.creator_id != user and f.post_id not in seen
            and (f.distribution == "FULL" or f.creator_id in followed)]


def ranked(pool: Sequence[PostFacts], score: Callable[[PostFacts], float] | None = None) -> list[str]:
    """Post ids by ``score`` descending (None: recency only), ties newest first, then by id."""
    key = ((lambda f: (-f.published_at, f.post_id)) if score is None
           else (lambda f: (-score(f), -f.published_at, f.post_id)))
    return [f.post_id for f in sorted(pool, key=key)]


class CollaborativeBaselines:
    """implicit's ALS and item-kNN, trained on the engagement triples before the moment and
    retrained every :data:`RETRAIN_DAYS` days of event time.

    Serving: a user's vector is folded in from their *current* engagement history (ALS:
    ``recalculate_user``, the least-squares user step against the trained item factors; kNN: the
    history row times the item-item similarity), as such models are served between retrains.
    A user with no engagement on a post the model knows gets no ranking; posts the model does
    not know (no engagement before the last retrain) cannot be scored and are left out of its
    list (their rank is None)."""

    def __init__(self, retrain_ms: int = RETRAIN_DAYS * DAY_MS) -> None:
        self.retrain_ms = retrain_ms
        self.trained_at: int | None = None
        self.items: dict[str, int] = {}
        self.als = None
        self.knn = None
        self.retrains = 0
        self.train_seconds = 0.0

    def maybe_retrain(self, t: int, observed: Observed) -> bool:
        """Retrain on everything before ``t`` if :data:`RETRAIN_DAYS` have passed since the last
        training (or there was none); returns whether it did."""
        if self.trained_at is not None and t < self.trained_at + self.retrain_ms:
            return False
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import CosineRecommender
        from scipy.sparse import csr_matrix
        from threadpoolctl import threadpool_limits

        started = time.perf_counter()
        triples = [(u, p) for at, u, p in observed.cf if at < t]
        users = {u: i for i, u in enumerate(sorted({u for u, _ in triples}))}
        self.items = {p: i for i, p in enumerate(sorted({p for _, p in triples}))}
        self.trained_at = t
        if not triples:
            self.als = self.knn = None
            return True
        counts = Counter((users[u], self.items[p]) for u, p in triples)
        rows, cols = zip(*counts)
        m = csr_matrix((np.fromiter(counts.values(), np.float32, len(counts)), (rows, cols)),
                       shape=(len(users), len(self.items)))
        with threadpool_limits(1, "blas"):
            self.als = AlternatingLeastSquares(**ALS_PARAMS, num_threads=1, random_state=SEED)
            self.als.fit(m, show_progress=False)
            self.knn = CosineRecommender(K=KNN_K, num_threads=1)
            with warnings.catch_warnings():  # its own fit hands its kernel a non-CSR matrix
                warnings.filterwarnings("ignore", message="Method expects CSR input")
                self.knn.fit(m, show_progress=False)
        self.retrains += 1
        self.train_seconds += time.perf_counter() - started
        return True

    def _row(self, user: str, observed: Observed):
        from scipy.sparse import csr_matrix

        hist = {self.items[p]: float(n) for p, n in observed.cf_user.get(user, {}).items()
                if p in self.items}
        if not hist:
            return None
        cols = sorted(hist)
        return csr_matrix((np.asarray([hist[c] for c in cols], np.float32),
                           (np.zeros(len(cols), int), np.asarray(cols))), shape=(1, len(self.items)))

    def rank(self, which: str, user: str, pool: Sequence[PostFacts], observed: Observed
             ) -> list[str] | None:
        """``which`` (``als`` or ``item_knn``)'s ranking of the pool posts it knows, or None."""
        model = self.als if which == "als" else self.knn
        if model is None:
            return None
        row = self._row(user, observed)
        if row is None:
            return None
        known = [f for f in pool if f.post_id in self.items]
        idx = np.asarray([self.items[f.post_id] for f in known], dtype=np.int64)
        if which == "als":
            factors = model.recalculate_user(0, row)  # applies alpha itself
            scores = model.item_factors[idx] @ factors if len(idx) else np.zeros(0)
        else:
            scores = np.asarray((row @ model.similarity).todense()).ravel()[idx] if len(idx) else np.zeros(0)
        by_id = {f.post_id: float(s) for f, s in zip(known, scores)}
        return ranked(known, lambda f: round(by_id[f.post_id], 9))


# --- the evaluation --------------------------------------------------------------------------


@dataclass
class Tally:
    """One ranker's per-event results."""

    ranks: list[int | None] = field(default_factory=list)
    cold: list[bool] = field(default_factory=list)
    at: list[int] = field(default_factory=list)
    listed: int = 0
    shown: set[str] = field(default_factory=set)
    exposure: Counter = field(default_factory=Counter)

    def add(self, rank: int | None, cold: bool, at: int, top: Sequence[PostFacts] | None) -> None:
        self.ranks.append(rank)
        self.cold.append(cold)
        self.at.append(at)
        if top is not None:
            self.listed += 1
            for f in top:
                self.shown.add(f.post_id)
                self.exposure[f.creator_id] += 1


def summarize(ranks: Sequence[int | None]) -> dict[str, Any]:
    """``{"events", "ndcg10", "hit10", "hit50", "mrr"}`` over ``ranks`` (None: absent)."""
    n = len(ranks)
    if not n:
        return {"events": 0, "ndcg10": None, "hit10": None, "hit50": None, "mrr": None}
    return {"events": n,
            "ndcg10": sum(ndcg_at(r, 10) for r in ranks) / n,
            "hit10": sum(hit_at(r, 10) for r in ranks) / n,
            "hit50": sum(hit_at(r, 50) for r in ranks) / n,
            "mrr": sum(reciprocal_rank(r) for r in ranks) / n}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


class RankingEvaluation:
    """One prequential run (module docstring): build it (loads the models), :meth:`run`, then
    :meth:`report`. ``pipeline`` and ``tallies`` stay readable afterwards (tests).

    Parameters
    ----------
    history:
        ``(event_type, record)`` (types of :data:`TOPIC_OF`) sorted by ``event_time`` (the
        loader's ``iter_events_in_time_order``).
    settings:
        The agents' settings (feed size and horizon, profile half-life, clip models...).
    anonymous_user_id:
        The dump's stand-in voter (never a person), or None.
    warmup_days:
        Days from the first event during which nothing is evaluated.
    days:
        Only the first ``days`` of the history (None: all).
    content:
        The content-enrichment agent and its models instead of clip_ai (tests).
    collaborative:
        Run feed_ranker with its collaborative candidate source, trained from the log before
        each of the baselines' retraining moments (:meth:`retrain_collaborative`); by default
        it runs as shipped, with none loaded (``PULSE_COLLABORATIVE_MODEL`` unset).

    Raises
    ------
    ValueError
        ``history`` is empty or not in event-time order.
    """

    def __init__(self, history: Sequence[tuple[str, dict]], settings: Settings, *,
                 anonymous_user_id: str | None, warmup_days: float = 30.0, days: float | None = None,
                 content: tuple[AgentSpec, Any] | None = None, collaborative: bool = False) -> None:
        self.started = time.perf_counter()
        history = list(history)
        if not history:
            raise ValueError("the history is empty: nothing to evaluate")
        times = [_time(r) for _, r in history]
        if any(b < a for a, b in zip(times, times[1:])):
            raise ValueError("the history is not in event-time order")
        start = times[0]
        if days is not None:
            cut = start + int(days * DAY_MS)
            history = [(e, r) for (e, r), t in zip(history, times) if t < cut]
        self.settings, self.anonymous = settings, anonymous_user_id
        self.warmup_days, self.days = warmup_days, days
        self.warm_end = start + int(warmup_days * DAY_MS)
        self.history = with_declared_interests(
            history, declared_interests_before(history, self.warm_end, anonymous_user_id))
        engagements, self.skipped = extract_engagements(self.history, anonymous_user_id)
        self.by_event = {e.event_id: e for e in engagements}
        ranked_until: dict[str, int] = {}
        for e in engagements:
            if e.at_ms >= self.warm_end:
                ranked_until[e.user_id] = max(e.at_ms, ranked_until.get(e.user_id, e.at_ms))
        stages = default_stages(settings, content, ranked_until)
        self.pipeline = Pipeline(settings, stages, ahead=stages[0][0].name)
        self.published: PublishedPosts = self.pipeline.side_state(PublishedPosts)
        self.observed = Observed(anonymous_user_id)
        self.cf = CollaborativeBaselines()
        self.collaborative = collaborative
        self.collaborative_retrains = 0
        self._engaging: list[dict] = []  # interactions fed to the agents (collaborative training)
        self._ranker = next(st for st in self.pipeline.stages if st.spec.name == "feed_ranker")
        self.pulse_sources: Counter = Counter()      # sources of Pulse's top 10s as served
        self.pulse_hit_sources: Counter = Counter()  # source of the engaged post, when in them
        self.horizon_ms = int(float(settings.feed_horizon_days) * DAY_MS)
        self.fresh_pool = int(getattr(settings, "feed_fresh_pool", 0))
        self.tallies = {name: Tally() for name in RANKERS}
        self.diagnostics: Counter = Counter()
        self.setup_seconds = time.perf_counter() - self.started

    def run(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Replay the history, evaluating each engagement just before it is fed;
        ``progress(events done, total)`` is called after each event."""
        total = len(self.history)
        self.pipeline.run_ahead([r for event_type, r in self.history if event_type == "upload"])
        for i, (event_type, r) in enumerate(self.history):
            e = self.by_event.get(r["event_id"])
            if e is not None:
                if e.at_ms < self.warm_end:
                    self.skipped["before_warmup"] += 1
                elif self.published.get(e.post_id, e.at_ms) is None:
                    self.skipped["not_published"] += 1
                elif e.post_id in self.observed.seen.get(e.user_id, ()):
                    self.skipped["already_interacted"] += 1
                else:
                    self.evaluate(e)
            if not (event_type == "interaction" and r["user_id"] == self.anonymous):
                self.pipeline.publish(TOPIC_OF[event_type], r)
                if self.collaborative and event_type == "interaction":
                    self._engaging.append(r)
            self.observed.observe(event_type, r, e)
            if progress is not None:
                progress(i + 1, total)

    def evaluate(self, e: Engagement) -> None:
        """Read every ranker's list for ``e`` as of just before it (the event is not fed yet)."""
        t, user, observed, published = e.at_ms, e.user_id, self.observed, self.published
        cold = observed.prior[user] < COLD_START_BELOW
        followed = observed.follows.get(user, set())
        pool = eligible_pool(published, user, t, self.horizon_ms, observed.seen.get(user, set()),
                             followed)
        facts = {f.post_id: f for f in pool}
        if e.post_id not in facts:
            self.diagnostics["target_outside_pool"] += 1
        if self.cf.maybe_retrain(t, observed) and self.collaborative:
            self.retrain_collaborative(t)
        since_recent = t - POPULAR_RECENT_DAYS * DAY_MS
        served = self.pipeline.served_feed(user, t, self.fresh_pool)
        if served is None:  # no feed yet, or a row read-time ranking cannot read: as stored
            pulse = self.pipeline.feed_of(user)
        else:
            pulse = [s.post_id for s in served]
            self.pulse_sources.update(s.source for s in served[:10])
            hit = next((s.source for s in served[:10] if s.post_id == e.post_id), None)
            if hit is not None:
                self.pulse_hit_sources[hit] += 1
        lists: dict[str, list[str] | None] = {
            "pulse": pulse,
            "reverse_chronological_all": ranked(pool),
            "reverse_chronological_following": ranked([f for f in pool if f.creator_id in followed]),
            "popular_all_time": ranked(pool, lambda f: observed.popularity(f.post_id, 0, t)),
            "popular_7d": ranked(pool, lambda f: observed.popularity(f.post_id, since_recent, t)),
            "als": self.cf.rank("als", user, pool, observed),
            "item_knn": self.cf.rank("item_knn", user, pool, observed),
        }
        for name, ids in lists.items():
            top = None
            if ids is not None:
                top = [f for f in (facts.get(p) or published.get(p, t) for p in ids[:10])
                       if f is not None]
            self.tallies[name].add(rank_of(ids, e.post_id), cold, t, top)
        if lists["pulse"] is None:
            self.diagnostics["pulse_no_feed_yet"] += 1

    def retrain_collaborative(self, t: int) -> None:
        """Train feed_ranker's collaborative candidate source as ``pulse train collaborative``
        would from the log before ``t`` (:func:`replay.training.engagement_rows` of the
        interactions fed so far and the posts published before ``t``: likes, comments, shares
        and replies, never on one's own post; :func:`models.ranking.collaborative.fit`), and
        load it into the running feed_ranker, as a worker restarted with
        ``PULSE_COLLABORATIVE_MODEL`` would: feeds ranked from then on draw COLLABORATIVE
        candidates from it. Called at the baselines' retraining moments, so the collaborative
        model is never newer than theirs."""
        from models.ranking.collaborative import fit
        from replay.training import engagement_rows

        published = [{"post_id": f.post_id, "creator_id": f.creator_id,
                      "parent_post_id": f.parent_post_id, "event_time": f.published_at}
                     for f in self.published.window(0, t - 1)]
        rows = engagement_rows([r for r in self._engaging if _time(r) < t], published, until_ms=t - 1)
        self.collaborative_retrains += 1
        self._ranker.runner.models = (fit([(u, p) for _, u, p in rows],
                                          version=f"eval-{self.collaborative_retrains}")
                                      if rows else None)

    def report(self, dataset: str = "", plot: Path | None = None) -> dict[str, Any]:
        """The JSON-able report (module docstring); saves the plot at ``plot`` when given."""
        tallies, published = self.tallies, self.published
        end = _time(self.history[-1][1])
        catalogue = [f.post_id for f in published.window(self.warm_end, end)]
        creators = {f.creator_id for f in published.window(self.warm_end - self.horizon_ms, end)}
        rankers = {}
        for name, tally in tallies.items():
            cold = [r for r, c in zip(tally.ranks, tally.cold) if c]
            warm = [r for r, c in zip(tally.ranks, tally.cold) if not c]
            rankers[name] = {
                **summarize(tally.ranks),
                "ranked_events": tally.listed,
                "cold_start": summarize(cold),
                "warm": summarize(warm),
                "catalogue_coverage10": coverage(tally.shown, catalogue),
                "author_gini10": gini([tally.exposure.get(c, 0) for c in creators | set(tally.exposure)]),
            }
        n_events = len(tallies["pulse"].ranks)
        plotted = None
        if plot is not None and n_events:
            plotted = str(plot_ndcg_over_time(tallies, self.warm_end, plot))
        pipeline, cf = self.pipeline, self.cf
        return {
            "dataset": dataset,
            "events_evaluated": n_events,
            "cold_start_events": sum(tallies["pulse"].cold),
            "skipped": dict(sorted(self.skipped.items())),
            "warmup_days": self.warmup_days,
            "days": self.days,
            "seconds": round(time.perf_counter() - self.started, 1),
            "rankers": rankers,
            "goals": goals(rankers),
            "diagnostics": {
                **dict(sorted(self.diagnostics.items())),
                "setup_seconds": round(self.setup_seconds, 1),
                "catalogue_posts": len(catalogue),
                "creators": len(creators),
                "users_ranked_by_pulse": len(pipeline.feeds),
                "cf_retrains": cf.retrains,
                "pulse_top10_sources": dict(sorted(self.pulse_sources.items())),
                "pulse_hit10_sources": dict(sorted(self.pulse_hit_sources.items())),
                "pulse_collaborative": self.collaborative,
                "pulse_collaborative_retrains": self.collaborative_retrains,
                "cf_train_seconds": round(cf.train_seconds, 2),
                "log_records": dict(sorted(pipeline.records.items())),
                "agent_events": {st.spec.name: st.events for st in pipeline.stages},
                "dead_letters": {st.spec.name: st.dead_letters for st in pipeline.stages},
                "feed_size": self.settings.feed_size,
                "feed_horizon_days": self.settings.feed_horizon_days,
                "baseline_params": {"als": ALS_PARAMS, "item_knn": {"K": KNN_K, "kind": "cosine"},
                                    "retrain_days": RETRAIN_DAYS, "seed": SEED},
            },
            "plot": plotted,
        }


def goals(rankers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's goals from the per-ranker metrics: Pulse's NDCG@10 at least 1.2 times the best
    reverse-chronological or most-popular feed's and at least the best library baseline's; for
    cold-start users at least the best of all six baselines'. Ratios are None when the
    denominator is 0; a goal is not met when Pulse was never evaluated."""
    def nd(name: str, part: str | None = None) -> float:
        r = rankers[name] if part is None else rankers[name][part]
        return r["ndcg10"] or 0.0

    best_simple = max(SIMPLE, key=nd)
    best_library = max(LIBRARY, key=nd)
    best_cold = max(SIMPLE + LIBRARY, key=lambda n: nd(n, "cold_start"))
    pulse, pulse_cold = nd("pulse"), nd("pulse", "cold_start")
    evaluated = rankers["pulse"]["events"] > 0
    return {
        "ndcg10_vs_best_simple": _ratio(pulse, nd(best_simple)),
        "met_1_2x": evaluated and pulse >= 1.2 * nd(best_simple),
        "ndcg10_vs_best_library": _ratio(pulse, nd(best_library)),
        "met_library": evaluated and pulse >= nd(best_library),
        "cold_start_vs_best_baseline": _ratio(pulse_cold, nd(best_cold, "cold_start")),
        "met_cold_start": rankers["pulse"]["cold_start"]["events"] > 0
        and pulse_cold >= nd(best_cold, "cold_start"),
        "best_simple": best_simple,
        "best_library": best_library,
        "best_cold_start_baseline": best_cold,
    }


def run_ranking_eval(history: Sequence[tuple[str, dict]], settings: Settings, *,
                     anonymous_user_id: str | None, dataset: str = "", warmup_days: float = 30.0,
                     days: float | None = None, plot: Path | None = DEFAULT_PLOT,
                     content: tuple[AgentSpec, Any] | None = None, collaborative: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Build, run and report a :class:`RankingEvaluation` (parameters there; ``plot``: the PNG
    path, None for none; ``dataset``: the name the report gives)."""
    evaluation = RankingEvaluation(history, settings, anonymous_user_id=anonymous_user_id,
                                   warmup_days=warmup_days, days=days, content=content,
                                   collaborative=collaborative)
    evaluation.run(progress)
    return evaluation.report(dataset, plot)


def plot_ndcg_over_time(tallies: Mapping[str, Tally], start_ms: int, path: Path,
                        window_days: int = PLOT_WINDOW_DAYS) -> Path:
    """Mean NDCG@10 per ``window_days`` window of evaluated events (from ``start_ms``), one line
    per ranker, saved as a PNG at ``path`` (directories made). Returns ``path``."""
    from datetime import datetime, timezone

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width = window_days * DAY_MS
    fig = Figure(figsize=(9, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, tally in tallies.items():
        buckets: dict[int, list[float]] = defaultdict(list)
        for at, r in zip(tally.at, tally.ranks):
            buckets[(at - start_ms) // width].append(ndcg_at(r))
        keys = sorted(buckets)
        xs = [datetime.fromtimestamp((start_ms + k * width + width / 2) / 1000, tz=timezone.utc) for k in keys]
        ys = [sum(buckets[k]) / len(buckets[k]) for k in keys]
        ax.plot(xs, ys, marker="o", linewidth=2.5 if name == "pulse" else 1.2, label=name)
    ax.set_ylabel("NDCG@10 (mean per window)")
    ax.set_xlabel(f"event time ({window_days}-day windows after the warm-up)")
    ax.set_title("Prequential NDCG@10 of the feed rankings")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path

"""Feed Ranker: each user's feed, ranked for relevance (never predicted engagement), materialized
into ``user_feeds`` (one row per user) and announced on ``feed-updates`` (compacted).

Sources (keyed by user, so one user's events meet in one partition): ``feed-candidates``
(feed_fanout's pushes), ``profiles`` (user_profiler), ``follows`` (the user's own), and
``interactions`` (what the user has seen, hidden or reported), and ``erasure-requests`` (the
user's entry is forgotten, :mod:`agents.shared.erasure`). Side inputs: ``posts-published``
(:class:`PublishedPosts`), ``content-enriched`` (:class:`PostVectors`) and ``takedowns``
(:class:`Takedowns`).

State (table ``feeds``, one JSON object per user)::

    {"profile": {"seq", "at", "vector", "categories", "hashtags", "declared", "cold"} | null,
     "follows": {creator_id: [at ms, event_id, "FOLLOW" | "UNFOLLOW"]},
     "seen": {post_id: at ms}, "hidden": {post_id: at ms},
     "pushed": {post_id: [at ms, source, similarity | null]},
     "n": events folded, "latest": [at ms, event_id],
     "ids": [post_id, ...] (the ranked feed), "top": [post_id, ...] (its first EVENT_ITEMS),
     "ranked_at": T of the last ranking, "engaged": {post_id: at ms} (likes, comments, shares)}

Every event re-ranks the user's feed as of the latest event time folded ``T`` (an interaction
with a post that is neither in the feed nor published after the last ranking, so in the read
side's fresh pool, only updates the state)
(:func:`rank`): candidates are the posts of followed creators published in the horizon
(IN_NETWORK), the posts pushed to the user (their source), the published FULL posts nearest to
the interest vector (INTEREST), with a collaborative model loaded (``load``:
``PULSE_COLLABORATIVE_MODEL``) the posts most similar to the user's engagements
(COLLABORATIVE, :mod:`models.ranking.collaborative`), and for a cold-start profile the recent
posts of the declared interests (COLD_START). Live at ``T`` (published, not expired, within ``feed_horizon_days``),
not the user's own, not seen, hidden or reported, not taken down; RESTRICTED posts only from
followed creators.
Scored by :mod:`models.ranking.relevance`, diversified by author, the top ``feed_size`` kept.
The row (:func:`feed_row`) holds the feed packed as columns in one ``blob``
(:mod:`models.ranking.feed_row`) with what read-time ranking needs
(:mod:`models.ranking.readtime`: each item's signals and content type, the interest vector and
affinities); it is written at ``T * 1000 + min(n, 999)`` µs (``n``: events that changed the state), so
the last ranking computed stays and no rank of an older one lingers; ``feed-updates`` carries the top :data:`EVENT_ITEMS` whenever
they change.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from agents.shared.erasure import ERASURE_TOPIC, forget_user
from agents.shared.posts import (PostFacts, PostVectors, PublishedPosts, open_published, open_takedowns,
                                 open_vectors, unit)
from models.ranking import relevance as R
from models.ranking.collaborative import ItemNeighbours
from models.ranking.collaborative import model_version as collaborative_version
from models.ranking.collaborative import resolve as resolve_collaborative
from models.ranking.feed_row import pack_feed
from models.ranking.readtime import SIGNAL_NAMES
from streams.contracts.agent import AgentSpec, Context, Event, SideInput, State
from streams.contracts.effects import Effect, Emit, StateSet, Upsert

NAME = "feed_ranker"
MODEL = "feed_ranker.relevance"
MODEL_VERSION = "3"
TABLE = "feeds"
#: Posts in each ``feed-updates`` event (the first screen); the view holds ``feed_size``.
EVENT_ITEMS = 10
#: Bounds of the per-user memory (newest kept): seen and hidden posts, pushed candidates.
SEEN_MAX, HIDDEN_MAX, PUSHED_MAX = 2000, 500, 500
#: Recent posts per declared interest considered for a cold start.
COLD_START_POSTS = 50
DAY_MS = 86_400_000
_HIDING = ("HIDE", "REPORT")
#: Interactions that are engagement for the collaborative source (what the model was trained
#: on: :data:`replay.training.ENGAGEMENT_TYPES`), and how many of the newest it starts from.
ENGAGING = ("LIKE", "COMMENT", "SHARE")
ENGAGED_MAX = 200
#: Collaborative candidates per ranking (the most similar posts to the user's engagements).
COLLABORATIVE_POSTS = 100


def _bounded(d: dict[str, Any], limit: int, at=lambda v: v) -> dict[str, Any]:
    if len(d) <= limit:
        return d
    keep = sorted(d.items(), key=lambda kv: (at(kv[1]), kv[0]))[-limit:]
    return dict(sorted(keep))


def _fold(st: dict[str, Any], event: Event) -> bool:
    """Merge ``event`` into the user's state; False when it changes nothing (a re-delivery)."""
    r, at, eid = event.record, event.event_time_ms, event.event_id
    if event.topic == "profiles":
        old = st.get("profile")
        if old is not None and old["seq"] >= r["sequence"]:
            return False
        st["profile"] = {
            "seq": r["sequence"], "at": at,
            "vector": [round(float(x), 6) for x in r.get("interest_vector") or []],
            "categories": dict(r.get("category_affinities") or {}),
            "hashtags": dict(r.get("hashtag_affinities") or {}),
            "declared": list(r.get("declared_interests") or []), "cold": bool(r.get("cold_start"))}
    elif event.topic == "follows":
        old = st["follows"].get(r["followee_id"])
        if old is not None and (old[0], old[1]) >= (at, eid):
            return False
        st["follows"][r["followee_id"]] = [at, eid, r["action"]]
    elif event.topic == "interactions":
        table, limit = ("hidden", HIDDEN_MAX) if r["type"] in _HIDING else ("seen", SEEN_MAX)
        old = st[table].get(r["post_id"])
        engaged = st.get("engaged") or {}
        is_new_engagement = r["type"] in ENGAGING and engaged.get(r["post_id"], at + 1) > at
        if old is not None and old <= at and not is_new_engagement:
            return False
        if old is None or old > at:
            st[table] = _bounded({**st[table], r["post_id"]: at}, limit)
        if is_new_engagement:
            st["engaged"] = _bounded({**engaged, r["post_id"]: at}, ENGAGED_MAX)
    elif event.topic == "feed-candidates":
        item = [at, r["source"], r.get("similarity")]
        old = st["pushed"].get(r["post_id"])
        if old is not None and (old[0], old[1]) <= (at, r["source"]):
            return False
        st["pushed"] = _bounded({**st["pushed"], r["post_id"]: item}, PUSHED_MAX, at=lambda v: v[0])
    else:
        return False
    st["n"] = st.get("n", 0) + 1
    st["latest"] = max(st.get("latest") or [0, ""], [at, eid])
    return True


#: When one post comes from several sources, the feed names the strongest reason it is there.
_SOURCE_RANK = {"IN_NETWORK": 0, "INTEREST": 1, "COLLABORATIVE": 2, "TRENDING": 3, "COLD_START": 4}


def _add(out: dict, f: PostFacts | None, source: str) -> None:
    if f is None:
        return
    old = out.get(f.post_id)
    if old is None or _SOURCE_RANK[source] < _SOURCE_RANK[old[1]]:
        out[f.post_id] = (f, source)


def _sims(vectors: PostVectors, ids: list[str], vec: np.ndarray, t: int) -> dict[str, float]:
    """Cosine of each known post vector with the unit ``vec`` (float32 rows). Computed with
    ``einsum``'s own sum-of-products loop, one row at a time, so a post's similarity does not
    depend on which other posts are in the matrix (a BLAS matrix-vector product may block and
    thread differently by size)."""
    known, m = vectors.matrix(ids, t)
    if not known or m.shape[1] != vec.shape[0]:
        return {}
    sims = np.einsum("ij,j->i", m, vec.astype(np.float32), optimize=False)
    return dict(zip(known, sims.astype(np.float64).tolist()))


def _candidates(st: dict[str, Any], user: str, t: int, since: int, size: int,
                posts: PublishedPosts, vectors: PostVectors | None,
                vec: np.ndarray | None, collaborative: ItemNeighbours | None = None
                ) -> tuple[dict[str, tuple[PostFacts, str]], dict[str, float]]:
    """``(post_id -> (facts, source), post_id -> interest similarity)`` before filtering; the
    strongest source wins (:data:`_SOURCE_RANK`)."""
    out: dict[str, tuple[PostFacts, str]] = {}
    sims: dict[str, float] = {}
    profile = st.get("profile") or {}
    if collaborative is not None:
        engaged = sorted(p for p, at in (st.get("engaged") or {}).items() if at <= t)
        for post_id, _ in collaborative.recommend(engaged, COLLABORATIVE_POSTS, exclude=st["hidden"]):
            _add(out, posts.get(post_id, t), "COLLABORATIVE")
    if vec is not None and vectors is not None:
        window = [f for f in posts.window(since, t) if f.distribution == "FULL"]
        sims = _sims(vectors, [f.post_id for f in window], vec, t)
        best = sorted(((s, p) for p, s in sims.items() if s > 0), key=lambda sp: (-sp[0], sp[1]))[:size]
        for _, post_id in best:
            _add(out, posts.get(post_id, t), "INTEREST")
    if vec is None or profile.get("cold", True):
        declared = profile.get("declared") or []
        pool = ([f for d in declared for f in posts.by_tag(d, since, t)[-COLD_START_POSTS:]] if declared
                else posts.window(since, t)[-COLD_START_POSTS:])
        for f in pool:
            _add(out, f, "COLD_START")
    for post_id, (at, source, _) in sorted(st["pushed"].items()):
        if at <= t:
            _add(out, posts.get(post_id, t), source)
    for creator, (at, _, action) in sorted(st["follows"].items()):
        if action == "FOLLOW" and at <= t:
            for f in posts.by_creator(creator, since, t):
                _add(out, f, "IN_NETWORK")
    if vec is not None and vectors is not None:
        missing = [p for p in out if p not in sims]
        if missing:
            sims.update(_sims(vectors, missing, vec, t))
    return out, sims


def _replies_to(posts: PublishedPosts, f: PostFacts, user: str, t: int) -> bool:
    """The post replies to (its parent is) a post of ``user``."""
    if not f.parent_post_id:
        return False
    parent = posts.get(f.parent_post_id, t)
    return parent is not None and parent.creator_id == user


def rank(st: dict[str, Any], user: str, ctx: Context) -> tuple[list[R.Scored], int]:
    """The user's feed as of their latest event: ``(top feed_size scored posts best first,
    candidates considered)``."""
    cfg = ctx.config
    size = int(getattr(cfg, "feed_size", 200))
    t = st["latest"][0]
    since = t - int(float(getattr(cfg, "feed_horizon_days", 30.0)) * DAY_MS)
    posts: PublishedPosts | None = ctx.side.get("published")
    vectors: PostVectors | None = ctx.side.get("vectors")
    if posts is None:
        return [], 0
    profile = st.get("profile") or {}
    vec = unit(profile.get("vector") or None)
    cands, sims = _candidates(st, user, t, since, size, posts, vectors, vec,
                              ctx.models if isinstance(ctx.models, ItemNeighbours) else None)
    followed = {c for c, (at, _, a) in st["follows"].items() if a == "FOLLOW" and at <= t}
    takedowns = ctx.side.get("takedowns")
    categories, hashtags = profile.get("categories") or {}, profile.get("hashtags") or {}
    kept: list[tuple[str, PostFacts, str]] = []
    for post_id, (f, source) in sorted(cands.items()):
        if (f is None or not f.live_at(t) or f.published_at < since or f.creator_id == user
                or post_id in st["seen"] or post_id in st["hidden"]
                or (takedowns is not None and takedowns.taken_down(post_id, t))
                or (f.distribution != "FULL" and f.creator_id not in followed)):
            continue
        kept.append((post_id, f, source))
    if not kept:
        return [], len(cands)
    trust = {c: R.creator_trust(*posts.standing(c, t)) for c in sorted({f.creator_id for _, f, _ in kept})}
    ages = [t - f.published_at for _, f, _ in kept]
    columns = {
        "novelty": R.novelty_array(ages),
        "interest": [max(0.0, sims.get(p, 0.0)) for p, _, _ in kept],
        "reply": [1.0 if _replies_to(posts, f, user, t) else 0.0 for _, f, _ in kept],
        "top_level": [0.0 if f.parent_post_id else 1.0 for _, f, _ in kept],
        "category": [R.category_match(categories, f.categories) if categories else 0.0 for _, f, _ in kept],
        "hashtag": [R.hashtag_match(hashtags, posts.topic_hashtags(f, t)) if hashtags else 0.0
                    for _, f, _ in kept],
        "quality": [0.5 if f.quality is None else float(f.quality) for _, f, _ in kept],
        "trust": [trust[f.creator_id] for _, f, _ in kept],
        "freshness": R.freshness_array(ages, [f.content_type for _, f, _ in kept]),
        "following": [1.0 if f.creator_id in followed else 0.0 for _, f, _ in kept],
    }
    signals, scores = R.score_columns(columns)
    scored = [R.Scored(p, f.creator_id, source, f.published_at, sig, sc)
              for (p, f, source), sig, sc in zip(kept, signals, scores)]
    return R.diversify(scored, size), len(cands)


#: Hashtag affinities stored with a feed for read-time ranking (largest magnitude first).
READ_HASHTAGS = 64


def _in_fresh_pool(st: dict[str, Any], post_id: str, t: int, ctx: Context) -> bool:
    """The post was published after the feed was last ranked, so the read side's fresh pool may
    add it (:mod:`models.ranking.readtime`): the feed must be re-ranked to leave it out."""
    posts: PublishedPosts | None = ctx.side.get("published")
    f = posts.get(post_id, t) if posts is not None else None
    return f is not None and f.published_at > st.get("ranked_at", 0)


def feed_row(user: str, feed: list[R.Scored], considered: int, t: int,
             profile: dict[str, Any] | None, ctx: Context) -> dict[str, Any]:
    """The ``user_feeds`` row of a ranking: ``feed``, the items packed as columns
    (:func:`models.ranking.feed_row.pack_feed`: post, creator, source, content type, publish
    time, score and signals in :data:`~models.ranking.readtime.SIGNAL_NAMES` order), with what
    read-time ranking needs (:mod:`models.ranking.readtime`): the interest vector and the
    category and hashtag affinities the ranking used."""
    posts: PublishedPosts | None = ctx.side.get("published")
    types = []
    for s in feed:
        f = posts.get(s.post_id, t) if posts is not None else None
        types.append(f.content_type if f is not None else "FOREVER")
    profile = profile or {}
    tags = sorted((profile.get("hashtags") or {}).items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    packed = pack_feed([s.post_id for s in feed], [s.creator_id for s in feed],
                       [s.source for s in feed], types, [s.published_at for s in feed],
                       [s.score for s in feed], SIGNAL_NAMES,
                       [[float(s.signals.get(k, 0.0)) for k in SIGNAL_NAMES] for s in feed],
                       profile.get("vector") or None, dict(tags[:READ_HASHTAGS]),
                       profile.get("categories") or {})
    return {"user_id": user, "candidate_count": considered, "generated_at": t,
            "model_version": f"{MODEL}@{version(ctx)}", "feed": packed}


def version(ctx: Context) -> str:
    """The ranker's version as its outputs name it: :data:`MODEL_VERSION`, plus the collaborative
    model's (``3+item-knn@<version>``) when one is loaded."""
    cf = ctx.models if isinstance(ctx.models, ItemNeighbours) else None
    return MODEL_VERSION if cf is None else f"{MODEL_VERSION}+{collaborative_version(cf.version)}"


def load(config: Any) -> ItemNeighbours | None:
    """The collaborative model named by ``config.collaborative_model`` (None when unset).

    Raises :class:`models.ranking.collaborative.CollaborativeModelError` when it cannot be read
    (the worker stops with that message)."""
    name = getattr(config, "collaborative_model", None)
    if not name:
        return None
    return ItemNeighbours.load(resolve_collaborative(config.home, name))


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """Fold one event into the user's state and re-rank their feed (module docstring); an
    erasure request forgets the user."""
    if event.topic == ERASURE_TOPIC:
        return forget_user(state, event, NAME, (TABLE,))
    r = event.record
    user = r["follower_id"] if event.topic == "follows" else r["user_id"]
    st = state.get(TABLE, user) or {"profile": None, "follows": {}, "seen": {}, "hidden": {},
                                     "pushed": {}, "n": 0, "latest": None, "top": []}
    st = {**st, "follows": dict(st["follows"])}
    if not _fold(st, event):
        return []
    if event.topic == "interactions" and r["post_id"] not in st.get("ids", ()) \
            and not _in_fresh_pool(st, r["post_id"], event.event_time_ms, ctx):
        # seen, hidden or reported a post that is neither in the feed nor among the posts the
        # read side adds to it: the ranking stands (the next re-rank leaves the post out)
        return [StateSet(TABLE, user, st)]
    feed, considered = rank(st, user, ctx)
    st["ids"] = [s.post_id for s in feed]
    n, (t, cause) = st["n"], st["latest"]
    st["ranked_at"] = t
    out: list[Effect] = [Upsert("user_feeds", feed_row(user, feed, considered, t, st.get("profile"), ctx),
                                t * 1000 + min(n, 999))]
    top = [s.post_id for s in feed[:EVENT_ITEMS]]
    if top != st.get("top"):
        st["top"] = top
        out.append(Emit("feed-updates", {
            "event_id": ctx.derive_id(f"seq:{n}", cause_event_id=user), "event_time": t,
            "producer": NAME, "cause_event_id": cause, "model": MODEL, "model_version": version(ctx),
            "user_id": user, "candidate_count": considered,
            "items": [{"post_id": s.post_id, "creator_id": s.creator_id, "score": s.score,
                       "source": s.source, "reasons": s.reasons()} for s in feed[:EVENT_ITEMS]]}))
    out.append(StateSet(TABLE, user, st))
    return out


SPEC = AgentSpec(
    name=NAME,
    topics=("feed-candidates", "profiles", "follows", "interactions", ERASURE_TOPIC),
    process=process,
    outputs=("feed-updates",),
    tables=(TABLE,),
    side_inputs=(SideInput("published", "posts-published", open_published),
                 SideInput("vectors", "content-enriched", open_vectors),
                 SideInput("takedowns", "takedowns", open_takedowns)),
    load=load,
    doc="Ranks each user's feed for relevance and materializes it in Cassandra.",
    order_sensitive=True,
    batch_size=200,
    sinks=frozenset({"cassandra"}),
)

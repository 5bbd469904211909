"""Read-time ranking: a materialized feed re-scored at the moment it is read, with the posts
published since it was ranked.

feed_ranker ranks a user's feed when one of the user's events arrives (their own action, a
profile change, a post pushed to them). Between two such events the stored ranking goes stale in
two ways: its time-dependent signals (novelty, freshness) were computed for the ranking time
``T``, not for the reading time ``now``; and the posts published after ``T`` that no fan-out
pushed to the user are missing. On the Stack Exchange history 40 % of the engagements of
``pulse eval ranking`` are with posts published after the user's previous event, so the second
matters most (docs/feeds.md, "Evaluation on real history").

:func:`rerank` fixes both with the ranker's own scoring (:mod:`models.ranking.relevance`):

1. every stored item keeps the signals it was ranked with, except ``novelty`` and ``freshness``,
   recomputed for its age at ``now``;
2. the **fresh pool** (:class:`FreshPost`: the newest published FULL posts, materialized by
   feed_fanout into ``fresh_posts``) adds the posts published in ``(T, now]`` that are not in the
   feed, not the reader's own, live at ``now`` and not excluded (taken down, seen), scored with
   every signal the read side knows: novelty, freshness, interest (the cosine of the post's
   vector and the interest vector the ranker stored with the feed), reply (the post replies to
   the reader), top-level, hashtag and category affinity, quality, creator trust at publication;
   ``following`` is 0, because a followed creator's post is pushed to the follower and so is
   ranked into the feed itself (or merged by the pull path for creators too large to push).
   Their source is ``RECENT``;
3. the union is diversified by author (:func:`models.ranking.relevance.diversify`) and cut to
   ``size``.

The result depends only on its arguments: the same feed row, pool and ``now`` give the same
list, so a page cursor that pins ``now`` pages through one ranking, and an evaluation can call it
at any event time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np

from models.ranking import relevance as R

#: Order of the signals stored with each feed item (``user_feeds.signals``).
SIGNAL_NAMES: tuple[str, ...] = tuple(R.WEIGHTS)
#: Signals that depend on the reading time.
TIME_SIGNALS = ("novelty", "freshness")
#: Source of a post that reached the feed at read time from the fresh pool.
RECENT = "RECENT"


@dataclass(frozen=True)
class FreshPost:
    """A newly published FULL post as the read side knows it (one ``fresh_posts`` row).

    ``published_at``/``expires_at`` are event times in ms since the epoch; ``vector`` is the
    post's unit content vector (``(d,)`` float32) or None; ``trust`` the creator's trust at
    publication (:func:`models.ranking.relevance.creator_trust`); ``quality`` clip_ai's score
    or None; ``parent_creator_id`` the author of the post replied to (None: not a reply, or the
    parent is unknown); ``is_reply`` whether the post has a parent."""

    post_id: str
    creator_id: str
    published_at: int
    content_type: str = "FOREVER"
    is_reply: bool = False
    parent_creator_id: str | None = None
    hashtags: tuple[str, ...] = ()
    categories: tuple[tuple[str, float], ...] = ()
    quality: float | None = None
    trust: float = 1.0
    vector: np.ndarray | None = None
    expires_at: int | None = None
    source: str = RECENT
    following: float = 0.0
    note: str | None = None


@dataclass
class StoredItem:
    """One item of a materialized feed with the signals it was ranked with: a mapping by name,
    or a sequence in :data:`SIGNAL_NAMES` order (as ``user_feeds.signals`` stores them)."""

    post_id: str
    creator_id: str
    source: str
    published_at: int
    content_type: str
    signals: Mapping[str, float] | Sequence[float]
    note: str | None = None


@dataclass(frozen=True)
class Reader:
    """What the ranker stored about the reader with their feed: ``vector`` (unit ``(d,)`` or
    None), hashtag and category affinities, and ``ranked_at`` (ms, the ranking's event time)."""

    user_id: str
    ranked_at: int
    vector: np.ndarray | None = None
    hashtags: Mapping[str, float] = field(default_factory=dict)
    categories: Mapping[str, float] = field(default_factory=dict)


def unit(v: Iterable[float] | np.ndarray | None) -> np.ndarray | None:
    """``v`` as a unit-length float32 array; None when empty or zero (the feed agents' interest
    and post vectors are normalized with it too: ``agents.shared.posts.unit``)."""
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(a)) if a.size else 0.0
    return None if n == 0.0 else a / n


def feed_inputs(user_id: str, row: Mapping[str, Any], ranked_at_ms: int
                ) -> tuple[list[StoredItem], Reader] | None:
    """A ``user_feeds`` row (as a mapping of its columns) -> ``(stored items, reader)`` for
    :func:`rerank`; None for a row of an older ranker that stored no signals."""
    items, signals = list(row.get("items") or []), row.get("signals")
    if signals is None or len(signals) != len(items):
        return None
    types = row.get("content_types") or ["FOREVER"] * len(items)
    stored = [StoredItem(it[0], it[1], it[3], it[5], ctype, sig)
              for it, sig, ctype in zip(items, signals, types)]
    reader = Reader(user_id, int(ranked_at_ms), unit(row.get("interest_vector")),
                    dict(row.get("hashtag_affinity") or {}), dict(row.get("category_affinity") or {}))
    return stored, reader


def fresh_post_of(row: Mapping[str, Any], ms: Callable[[Any], int] = int) -> FreshPost:
    """A ``fresh_posts`` row (a mapping of its columns; times converted to epoch ms by ``ms``:
    ``int`` for the ms feed_fanout writes, a datetime converter for rows read back) ->
    :class:`FreshPost`."""
    vec = row.get("vector")
    return FreshPost(
        post_id=row["post_id"], creator_id=row["creator_id"], published_at=ms(row["published_at"]),
        content_type=row.get("content_type") or "FOREVER", is_reply=bool(row.get("is_reply")),
        parent_creator_id=row.get("parent_creator_id"), hashtags=tuple(row.get("hashtags") or ()),
        categories=tuple(sorted((row.get("categories") or {}).items())), quality=row.get("quality"),
        trust=1.0 if row.get("trust") is None else float(row["trust"]),
        vector=None if not vec else np.asarray(vec, dtype=np.float32),
        expires_at=None if row.get("expires_at") is None else ms(row["expires_at"]))


class FreshPool:
    """Fresh posts as column arrays, oldest first (ties by post id), for :func:`rerank`: built
    once per pool (a reading process caches it), so a read costs array operations over the posts
    it adds, not Python objects per post.

    ``vectors`` is ``(n, d)`` float32 with zero rows for posts without a vector (their interest
    is 0); ``d`` is the first vector's dimension, and vectors of another dimension count as
    missing."""

    def __init__(self, posts: Sequence[FreshPost]) -> None:
        self.posts = sorted(posts, key=lambda p: (p.published_at, p.post_id))
        n = len(self.posts)
        self.times = np.asarray([p.published_at for p in self.posts], dtype=np.int64)
        dims = [p.vector.shape[0] for p in self.posts if p.vector is not None]
        self.dim = dims[0] if dims else 0
        self.vectors = np.zeros((n, self.dim), dtype=np.float32)
        for i, p in enumerate(self.posts):
            if p.vector is not None and p.vector.shape == (self.dim,):
                self.vectors[i] = p.vector
        self.top_level = np.asarray([0.0 if p.is_reply else 1.0 for p in self.posts])
        self.quality = np.asarray([0.5 if p.quality is None else float(p.quality) for p in self.posts])
        self.trust = np.asarray([float(p.trust) for p in self.posts])
        self.following = np.asarray([float(p.following) for p in self.posts])

    def __len__(self) -> int:
        return len(self.posts)

    def between(self, after_ms: int, until_ms: int) -> range:
        """Indices of the posts published in ``(after_ms, until_ms]``."""
        return range(int(np.searchsorted(self.times, after_ms, side="right")),
                     int(np.searchsorted(self.times, until_ms, side="right")))


def rerank(items: Sequence[StoredItem], pool: FreshPool | Sequence[FreshPost], reader: Reader,
           now_ms: int, size: int, exclude: Collection[str] = (),
           stats: dict | None = None) -> list[R.Scored]:
    """The feed as of ``now_ms`` (module docstring): at most ``size`` scored posts, best first.

    ``items`` are the stored feed's items (any order); ``pool`` the fresh posts (any order; only
    those published in ``(reader.ranked_at, now_ms]`` count); ``exclude`` post ids never shown
    (taken down, seen). ``now_ms`` earlier than the ranking counts as the ranking time. ``stats``,
    when given, receives ``candidates``: how many posts were ranked (before the cut to ``size``).
    """
    if not isinstance(pool, FreshPool):
        pool = FreshPool(pool)
    now = max(int(now_ms), int(reader.ranked_at))
    ids: list[str] = []
    creators: list[str] = []
    sources: list[str] = []
    published: list[int] = []
    types: list[str] = []
    notes: list[str | None] = []
    have: set[str] = set()
    static = [n for n in SIGNAL_NAMES if n not in TIME_SIGNALS]
    stored_cols: list[Sequence[float]] = []
    for it in items:
        if it.post_id in exclude or it.post_id in have:
            continue
        have.add(it.post_id)
        ids.append(it.post_id), creators.append(it.creator_id), sources.append(it.source)
        published.append(it.published_at), types.append(it.content_type), notes.append(it.note)
        sig = it.signals
        stored_cols.append([float(sig.get(k, 0.0)) for k in SIGNAL_NAMES] if isinstance(sig, Mapping)
                           else sig)
    fresh: list[int] = []
    for i in pool.between(reader.ranked_at, now):
        p = pool.posts[i]
        if (p.post_id in have or p.post_id in exclude or p.creator_id == reader.user_id
                or (p.expires_at is not None and p.expires_at <= now)):
            continue
        have.add(p.post_id)
        fresh.append(i)
        ids.append(p.post_id), creators.append(p.creator_id), sources.append(p.source)
        published.append(p.published_at), types.append(p.content_type), notes.append(p.note)
    if stats is not None:
        stats["candidates"] = len(ids)
    if not ids:
        return []
    m = len(stored_cols)
    stored_m = np.asarray(stored_cols, dtype=np.float64).reshape(m, len(SIGNAL_NAMES))
    columns: dict[str, np.ndarray] = {}
    for name in static:
        col = np.zeros(len(ids), dtype=np.float64)
        col[:m] = stored_m[:, SIGNAL_NAMES.index(name)]
        columns[name] = col
    if fresh:
        f = np.asarray(fresh, dtype=np.int64)
        sl = slice(m, len(ids))
        if reader.vector is not None and pool.dim and reader.vector.shape == (pool.dim,):
            sims = np.einsum("ij,j->i", pool.vectors[f], reader.vector.astype(np.float32), optimize=False)
            columns["interest"][sl] = np.maximum(sims.astype(np.float64), 0.0)
        columns["top_level"][sl] = pool.top_level[f]
        columns["quality"][sl] = pool.quality[f]
        columns["trust"][sl] = pool.trust[f]
        columns["following"][sl] = pool.following[f]
        posts = [pool.posts[i] for i in fresh]
        columns["reply"][sl] = [1.0 if p.parent_creator_id is not None and p.parent_creator_id == reader.user_id
                                else 0.0 for p in posts]
        if reader.categories:
            columns["category"][sl] = [R.category_match(reader.categories, p.categories) for p in posts]
        if reader.hashtags:
            columns["hashtag"][sl] = [R.hashtag_match(reader.hashtags, p.hashtags) for p in posts]
    ages = [now - t for t in published]
    columns["novelty"] = R.novelty_array(ages)
    columns["freshness"] = R.freshness_array(ages, types)
    matrix, scores = R.score_matrix(columns)
    scored = [R.Scored(ids[i], creators[i], sources[i], published[i], {}, scores[i], note=notes[i])
              for i in range(len(ids))]
    out = R.diversify(scored, size)
    index = {pid: i for i, pid in enumerate(ids)}
    names = [k for k in R.WEIGHTS if k in columns]
    for s in out:
        s.signals = dict(zip(names, matrix[index[s.post_id]]))
    return out

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
from models.ranking.feed_row import signals_as, unpack_feed

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


class StoredFeed:
    """A materialized feed's items as columns, for :func:`rerank`: ``post_ids``, ``creator_ids``,
    ``sources``, ``published_at`` (ms), ``content_types`` and ``notes`` (lists of ``n``), and
    ``signals``, ``(n, len(SIGNAL_NAMES))`` float64 in :data:`SIGNAL_NAMES` order; ``times``
    (``published_at`` as int64) and ``half_lives`` (each content type's freshness half-life,
    hours) as ``(n,)`` arrays. A read turns the row's columns into arrays once instead of
    building an object per item."""

    def __init__(self, post_ids: Sequence[str], creator_ids: Sequence[str], sources: Sequence[str],
                 published_at: Sequence[int], content_types: Sequence[str], signals: np.ndarray,
                 notes: Sequence[str | None] | None = None) -> None:
        self.post_ids, self.creator_ids, self.sources = list(post_ids), list(creator_ids), list(sources)
        self.published_at, self.content_types = list(published_at), list(content_types)
        self.signals = np.asarray(signals, dtype=np.float64).reshape(len(self.post_ids), len(SIGNAL_NAMES))
        self.notes = list(notes) if notes is not None else [None] * len(self.post_ids)
        self.times = np.asarray(self.published_at, dtype=np.int64).reshape(len(self.post_ids))
        self.half_lives = R.half_lives_h(self.content_types)

    def __len__(self) -> int:
        return len(self.post_ids)

    @classmethod
    def of(cls, items: Sequence[StoredItem]) -> "StoredFeed":
        """Items with signals by name (missing ones 0) or in :data:`SIGNAL_NAMES` order."""
        rows = [[float(it.signals.get(k, 0.0)) for k in SIGNAL_NAMES] if isinstance(it.signals, dict)
                or hasattr(it.signals, "keys") else list(it.signals) for it in items]
        return cls([it.post_id for it in items], [it.creator_id for it in items],
                   [it.source for it in items], [it.published_at for it in items],
                   [it.content_type for it in items], np.asarray(rows, dtype=np.float64),
                   [it.note for it in items])


def feed_inputs(user_id: str, row: Mapping[str, Any], ranked_at_ms: int
                ) -> tuple[StoredFeed, Reader] | None:
    """A ``user_feeds`` row (as a mapping of its columns) -> ``(stored feed, reader)`` for
    :func:`rerank`.

    A row with ``feed`` (the packed feed, :mod:`models.ranking.feed_row`) is read from it, its
    signals mapped to :data:`SIGNAL_NAMES` by name. A row of an older ranker holds the items as
    collections (``items``, ``signals``, ``content_types``, ``interest_vector``, the
    affinities); None for such a row without signals (or with signals of another length than
    :data:`SIGNAL_NAMES`), which is served as stored.

    Raises :class:`models.ranking.feed_row.FeedRowError` for a ``feed`` that cannot be read."""
    packed = row.get("feed")
    if packed is not None:
        f = unpack_feed(packed)
        stored = StoredFeed(f.post_ids, f.creator_ids, f.sources, f.published_at, f.content_types,
                            signals_as(f, SIGNAL_NAMES))
        return stored, Reader(user_id, int(ranked_at_ms), unit(f.interest_vector),
                              f.hashtag_affinity, f.category_affinity)
    items, signals = list(row.get("items") or []), row.get("signals")
    if signals is None or len(signals) != len(items):
        return None
    matrix = np.asarray(signals, dtype=np.float64)
    if items and matrix.shape != (len(items), len(SIGNAL_NAMES)):
        return None
    types = row.get("content_types") or ["FOREVER"] * len(items)
    stored = StoredFeed([it[0] for it in items], [it[1] for it in items], [it[3] for it in items],
                        [it[5] for it in items], types, matrix)
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


_NEVER = np.iinfo(np.int64).max


class FreshPool:
    """Fresh posts as column arrays, oldest first (ties by post id), for :func:`rerank`: built
    once per pool (a reading process caches it), so a read costs array operations over the posts
    it adds, not Python work per post.

    ``vectors`` is ``(n, d)`` float32 with zero rows for posts without a vector (their interest
    is 0); ``d`` is the first vector's dimension, and vectors of another dimension count as
    missing. Hashtags and categories are kept as sparse rows (CSR: a vocabulary, per-entry
    column indices and row offsets), so a reader's affinity match of every post is a gather and
    a few vector additions."""

    def __init__(self, posts: Sequence[FreshPost]) -> None:
        self.posts = sorted(posts, key=lambda p: (p.published_at, p.post_id))
        n = len(self.posts)
        self.times = np.asarray([p.published_at for p in self.posts], dtype=np.int64)
        self.index = {p.post_id: i for i, p in enumerate(self.posts)}

        def column(name: str) -> np.ndarray:
            out = np.empty(n, dtype=object)
            out[:] = [getattr(p, name) for p in self.posts]
            return out

        self.ids, self.creators, self.parents = column("post_id"), column("creator_id"), column("parent_creator_id")
        self.sources, self.content_types, self.notes = column("source"), column("content_type"), column("note")
        self.half_lives = R.half_lives_h([p.content_type for p in self.posts])
        self.expires = np.asarray([_NEVER if p.expires_at is None else p.expires_at for p in self.posts],
                                  dtype=np.int64)
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
        self.hashtags = _Sparse([[(h, 1.0) for h in p.hashtags] for p in self.posts])
        self.categories = _Sparse([list(p.categories) for p in self.posts])

    def __len__(self) -> int:
        return len(self.posts)

    def between(self, after_ms: int, until_ms: int) -> range:
        """Indices of the posts published in ``(after_ms, until_ms]``."""
        return range(int(np.searchsorted(self.times, after_ms, side="right")),
                     int(np.searchsorted(self.times, until_ms, side="right")))


class _Sparse:
    """Rows of ``(key, value)`` pairs as CSR arrays: ``vocab`` (key -> column), ``cols`` and
    ``values`` per entry in row order, ``starts``/``lengths`` per row."""

    def __init__(self, rows: Sequence[Sequence[tuple[str, float]]]) -> None:
        self.vocab: dict[str, int] = {}
        cols, values, lengths = [], [], []
        for row in rows:
            lengths.append(len(row))
            for key, value in row:
                cols.append(self.vocab.setdefault(key, len(self.vocab)))
                values.append(float(value))
        self.cols = np.asarray(cols, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64) if rows \
            else np.zeros(0, dtype=np.int64)

    def weigh(self, affinity: Mapping[str, float]) -> np.ndarray:
        """``affinity`` over the vocabulary (0 for keys it lacks): ``(len(vocab),)`` float64."""
        a = np.zeros(len(self.vocab), dtype=np.float64)
        for key, value in affinity.items():
            col = self.vocab.get(key)
            if col is not None:
                a[col] = value
        return a

    def row_sums(self, rows: np.ndarray, per_entry: np.ndarray) -> np.ndarray:
        """Sum of ``per_entry`` over each of ``rows``' entries, added left to right as Python's
        ``sum`` adds them (so the values equal :func:`models.ranking.relevance.hashtag_match` and
        :func:`~models.ranking.relevance.category_match` bit for bit): ``(len(rows),)``."""
        total = np.zeros(len(rows), dtype=np.float64)
        lengths, starts = self.lengths[rows], self.starts[rows]
        for j in range(int(lengths.max()) if len(rows) else 0):
            has = lengths > j
            total[has] += per_entry[starts[has] + j]
        return total


def rerank(items: StoredFeed | Sequence[StoredItem], pool: FreshPool | Sequence[FreshPost], reader: Reader,
           now_ms: int, size: int, exclude: Collection[str] = (),
           stats: dict | None = None, pulled: FreshPool | Sequence[FreshPost] = ()) -> list[R.Scored]:
    """The feed as of ``now_ms`` (module docstring): at most ``size`` scored posts, best first.

    ``items`` are the stored feed's items (any order); ``pool`` the fresh posts (any order; only
    those published in ``(reader.ranked_at, now_ms]`` count); ``pulled`` more posts like the
    pool's that take precedence over a pool entry of the same id (a followed pulled creator's
    posts, source IN_NETWORK); ``exclude`` post ids never shown (taken down, seen). ``now_ms``
    earlier than the ranking counts as the ranking time. ``stats``, when given, receives
    ``candidates``: how many posts were ranked (before the cut to ``size``).
    """
    stored = items if isinstance(items, StoredFeed) else StoredFeed.of(items)
    now = max(int(now_ms), int(reader.ranked_at))
    have = set(stored.post_ids)
    if len(have) == len(stored) and not (exclude and not have.isdisjoint(exclude)):
        keep = np.arange(len(stored))  # the usual case: nothing to drop
        ids, creators, sources = list(stored.post_ids), list(stored.creator_ids), list(stored.sources)
        notes = list(stored.notes)
    else:
        keep_list, have = [], set()
        for k, pid in enumerate(stored.post_ids):
            if pid in exclude or pid in have:
                continue
            have.add(pid)
            keep_list.append(k)
        keep = np.asarray(keep_list, dtype=np.int64)
        ids = [stored.post_ids[k] for k in keep_list]
        creators = [stored.creator_ids[k] for k in keep_list]
        sources = [stored.sources[k] for k in keep_list]
        notes = [stored.notes[k] for k in keep_list]
    m = len(keep)
    times, halves = [stored.times[keep]], [stored.half_lives[keep]]
    blocks = []
    for fp in (pulled, pool):
        if not isinstance(fp, FreshPool):
            if not fp:
                continue
            fp = FreshPool(fp)
        picked = _fresh_indices(fp, reader, now, have, exclude)
        if len(picked):
            blocks.append((fp, picked))
            added = fp.ids[picked].tolist()
            have.update(added)
            ids += added
            creators += fp.creators[picked].tolist()
            sources += fp.sources[picked].tolist()
            times.append(fp.times[picked])
            halves.append(fp.half_lives[picked])
            notes += fp.notes[picked].tolist()
    if stats is not None:
        stats["candidates"] = len(ids)
    if not ids:
        return []
    columns: dict[str, np.ndarray] = {}
    kept = stored.signals[keep] if m else np.zeros((0, len(SIGNAL_NAMES)))
    for j, name in enumerate(SIGNAL_NAMES):
        if name not in TIME_SIGNALS:
            col = np.zeros(len(ids), dtype=np.float64)
            col[:m] = kept[:, j]
            columns[name] = col
    at = m
    for fp, f in blocks:
        sl = slice(at, at + len(f))
        at += len(f)
        if reader.vector is not None and fp.dim and reader.vector.shape == (fp.dim,):
            # over the span of ``f`` as a view (the picked rows are most of it) instead of a copy
            # of the picked rows: each row's product is the same
            span = fp.vectors[int(f[0]):int(f[-1]) + 1]
            sims = np.einsum("ij,j->i", span, reader.vector.astype(np.float32), optimize=False)
            columns["interest"][sl] = np.maximum(sims[f - f[0]].astype(np.float64), 0.0)
        columns["top_level"][sl] = fp.top_level[f]
        columns["quality"][sl] = fp.quality[f]
        columns["trust"][sl] = fp.trust[f]
        columns["following"][sl] = fp.following[f]
        columns["reply"][sl] = (fp.parents[f] == reader.user_id).astype(np.float64)
        if reader.categories:
            sums = fp.categories.row_sums(f, fp.categories.weigh(reader.categories)[fp.categories.cols]
                                          * fp.categories.values)
            columns["category"][sl] = np.clip(sums, -1.0, 1.0)
        if reader.hashtags:
            tags = fp.hashtags
            sums = tags.row_sums(f, tags.weigh(reader.hashtags)[tags.cols])
            n_tags = tags.lengths[f]
            columns["hashtag"][sl] = np.where(n_tags > 0, sums / np.maximum(n_tags, 1), 0.0)
    published = np.concatenate(times)
    ages = now - published
    columns["novelty"] = R.novelty_array(ages)
    columns["freshness"] = R.freshness_of_half_lives(ages, np.concatenate(halves))
    names, matrix, scores = R.score_arrays(columns)
    out = []
    for i, score in R.diversified(scores, ids, creators, size):
        out.append(R.Scored(ids[i], creators[i], sources[i], int(published[i]),
                            dict(zip(names, matrix[i].tolist())), score, note=notes[i]))
    return out


def _fresh_indices(pool: FreshPool, reader: Reader, now: int, have: Collection[str],
                   exclude: Collection[str]) -> np.ndarray:
    """Indices (ascending) of the pool's posts published in ``(reader.ranked_at, now]`` that are
    live at ``now``, not the reader's own, and neither in ``have`` nor in ``exclude``."""
    span = pool.between(reader.ranked_at, now)
    lo, hi = span.start, span.stop
    if hi <= lo:
        return np.zeros(0, dtype=np.int64)
    ok = (pool.expires[lo:hi] > now) & (pool.creators[lo:hi] != reader.user_id)
    for ids in (have, exclude):
        if len(ids) <= hi - lo:  # look the fewer ids up
            found = np.fromiter((i for i in map(pool.index.get, ids) if i is not None), dtype=np.int64)
            found = found[(found >= lo) & (found < hi)]
            ok[found - lo] = False
        else:
            for i in range(lo, hi):
                if ok[i - lo] and pool.posts[i].post_id in ids:
                    ok[i - lo] = False
    return np.flatnonzero(ok) + lo

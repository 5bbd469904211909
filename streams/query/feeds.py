"""Reading feeds and profiles: what ``pulse feed`` / ``pulse profile`` and the HTTP API show.

A feed read is one partition read of ``user_feeds`` (the ranked feed feed_ranker materialized,
with each item's signals, packed in one cell: :mod:`models.ranking.feed_row`), ranked again
for the reading time by :func:`models.ranking.readtime.rerank`:

* the stored items, their novelty and freshness recomputed for ``now``;
* the **fresh pool**: the posts published since the feed was ranked, from the newest
  ``feed_fresh_pool`` published FULL posts (``fresh_posts``, cached per process for
  :data:`FRESH_CACHE_S`), source ``RECENT``;
* when some creators are *pulled* rather than pushed (``pull_creators``, cached for
  :data:`PULL_CACHE_S`), the followed ones' posts published after the ranking (source
  IN_NETWORK, following 1, creator trust the prior for a new creator, reason ``pulled at read``);
* less the posts taken down after publication (``takedowns``, cached for :data:`TAKEDOWN_CACHE_S`).

``now`` is the platform's event time as the read side knows it: the latest of the ranking time
and the newest post in the pool, not the wall clock, so a feed read after a replayed history is
ranked as of that history's end, and a read is a function of the views alone. A row written by
an older ranker (without signals) is served as stored, less takedowns, until its next re-rank.

Cursor pagination: a page's ``next_cursor`` is ``"<now ms>.<offset>"``; the next page is ranked
at the same ``now`` and continues at that offset. If the feed was re-ranked in between the next
page continues at the same offset of the new ranking, so a post may repeat or be skipped across
that boundary (feeds change as people act; a client refreshes from the top).
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generator

from models.ranking.relevance import creator_trust
from models.ranking.readtime import FreshPool, FreshPost, feed_inputs, fresh_post_of, rerank
from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings

PULL_CACHE_S = 5.0
"""How long a process reuses the ``pull_creators`` list (seconds)."""
TAKEDOWN_CACHE_S = 1.0
"""How long a process reuses the set of posts taken down after publication (seconds): a
takedown leaves every feed read within this plus the publisher's processing time."""
PULLED_PER_CREATOR = 20
"""Newest pulled posts read per followed pulled creator."""
MAX_LIMIT = 200


class CursorError(ValueError):
    """A cursor that no page of this API produced; the message says what a cursor looks like."""


@dataclass
class FeedItem:
    """One post in a page: its rank (0 = top), score, source and the signals that placed it."""

    rank: int
    post_id: str
    creator_id: str
    score: float
    source: str
    reasons: list[str]
    published_at: datetime | None


@dataclass
class FeedPage:
    """A page of a user's feed; ``next_cursor`` is None on the last page. ``generated_at`` is when
    (event time) the ranking was computed, None when the user has no materialized feed."""

    user_id: str
    items: list[FeedItem] = field(default_factory=list)
    next_cursor: str | None = None
    generated_at: datetime | None = None
    total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "generated_at": _iso(self.generated_at), "total": self.total,
                "next_cursor": self.next_cursor,
                "items": [{**i.__dict__, "published_at": _iso(i.published_at)} for i in self.items]}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _ms(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(round(t.timestamp() * 1000))


def _parse_cursor(cursor: str | None) -> tuple[int | None, int]:
    if not cursor:
        return None, 0
    try:
        gen, off = cursor.split(".", 1)
        offset = int(off)
        if offset < 0:
            raise ValueError
        return int(gen), offset
    except ValueError:
        raise CursorError(f"cursor {cursor!r} is not one this API returned (they look like "
                          f"'1700000000000.20'); start without a cursor") from None


_pull_cache: dict[tuple[int, str], tuple[float, dict[str, int]]] = {}
_pull_lock = threading.Lock()


def pulled_creators(rs: ReadSide, keyspace: str) -> dict[str, int]:
    """``{creator_id: followers}`` of the creators pulled at read time (cached per read side)."""
    key = (id(rs), keyspace)
    with _pull_lock:
        hit = _pull_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < PULL_CACHE_S:
            return hit[1]
    rows = rs.execute("SELECT creator_id, followers FROM {ks}.pull_creators WHERE bucket = 0",
                      keyspace=keyspace)
    found = {r.creator_id: r.followers for r in rows}
    with _pull_lock:
        _pull_cache[key] = (time.monotonic(), found)
    return found


_takedown_cache: dict[tuple[int, str], tuple[float, frozenset[str]]] = {}


def taken_down(rs: ReadSide, keyspace: str) -> frozenset[str]:
    """Ids of the posts withdrawn after publication (the ``takedowns`` view; cached per read
    side for :data:`TAKEDOWN_CACHE_S`)."""
    key = (id(rs), keyspace)
    with _pull_lock:
        hit = _takedown_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < TAKEDOWN_CACHE_S:
            return hit[1]
    ids = frozenset(r.post_id for r in rs.execute(
        "SELECT post_id FROM {ks}.takedowns WHERE bucket = 0", keyspace=keyspace))
    with _pull_lock:
        _takedown_cache[key] = (time.monotonic(), ids)
    return ids


_fresh_cache: dict[tuple[int, str, int], tuple[float, FreshPool]] = {}
FRESH_CACHE_S = 1.0
"""How long a process reuses the fresh pool (seconds); a refresh reads only the rows newer than
the newest it holds."""


_FRESH_COLUMNS = ("post_id, published_at, creator_id, content_type, is_reply, parent_creator_id, "
                  "hashtags, categories, quality, trust, vector, expires_at")


def fresh_pool(rs: ReadSide, keyspace: str, size: int) -> FreshPool:
    """The newest ``size`` published FULL posts (the ``fresh_posts`` view) as a
    :class:`~models.ranking.readtime.FreshPool`; cached per read side for :data:`FRESH_CACHE_S`,
    refreshed with only the rows newer than the newest held. Empty when ``size`` is 0."""
    if size <= 0:
        return FreshPool([])
    key = (id(rs), keyspace, size)
    with _pull_lock:
        hit = _fresh_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < FRESH_CACHE_S:
        return hit[1]
    held = hit[1].posts if hit is not None else []
    if held:
        rows = rs.execute("SELECT " + _FRESH_COLUMNS + " FROM {ks}.fresh_posts WHERE bucket = 0 "
                          "AND published_at >= ? LIMIT ?",
                          (datetime.fromtimestamp(held[-1].published_at / 1000, tz=timezone.utc), size),
                          keyspace=keyspace)
    else:
        rows = rs.execute("SELECT " + _FRESH_COLUMNS + " FROM {ks}.fresh_posts WHERE bucket = 0 LIMIT ?",
                          (size,), keyspace=keyspace)
    new = [fresh_post_of(r._asdict(), _ms) for r in rows]
    held_ids = {p.post_id for p in held}
    if hit is not None and all(p.post_id in held_ids for p in new):
        pool = hit[1]  # nothing newer: keep the built pool
    else:
        new_ids = {p.post_id for p in new}
        posts = sorted(new + [p for p in held if p.post_id not in new_ids],
                       key=lambda p: (-p.published_at, p.post_id))[:size]
        pool = FreshPool(posts)
    with _pull_lock:
        _fresh_cache[key] = (time.monotonic(), pool)
    return pool


def read_feed(source: Settings | ReadSide, user_id: str, *, limit: int = 20,
              cursor: str | None = None, fresh: int | None = None) -> FeedPage:
    """A page of ``user_id``'s feed, ranked at read time (module docstring).

    ``fresh`` is the size of the fresh pool (default: the settings' ``feed_fresh_pool``; 0
    leaves out the posts published since the ranking).

    Raises
    ------
    CursorError
        ``cursor`` is malformed.
    ValueError
        ``limit`` is not in 1..200.
    streams.stores.cassandra.ViewStoreError
        Cassandra cannot be reached.
    models.ranking.feed_row.FeedRowError
        The stored feed is of a format this version cannot read.
    """
    rs = read_side_of(source)
    steps = _read_steps(rs, user_id, limit, cursor, fresh)
    try:
        queries = next(steps)
        while True:
            queries = steps.send([list(rs.execute(cql, params, keyspace=ks))
                                  for cql, params, ks in queries])
    except StopIteration as done:
        return done.value


async def read_feed_async(rs: ReadSide, user_id: str, *, limit: int = 20, cursor: str | None = None,
                          fresh: int | None = None) -> FeedPage:
    """:func:`read_feed` for an event loop (the HTTP API): the same page, with the feed row, the
    followed pulled creators and their posts awaited (:meth:`ReadSide.fetch`; the posts of
    several pulled creators side by side) instead of blocking a thread. The per-process caches
    (takedowns, fresh pool, pulled creators, the active-keyspace pointer) are refreshed in place
    when stale: a blocking query each, at most once every one to five seconds.

    Raises as :func:`read_feed`."""
    steps = _read_steps(rs, user_id, limit, cursor, fresh)
    try:
        queries = next(steps)
        while True:
            if len(queries) == 1:  # no task to make for a single query
                (cql, params, ks), = queries
                queries = steps.send([await rs.fetch(cql, params, keyspace=ks)])
            else:
                queries = steps.send(await asyncio.gather(*(rs.fetch(cql, params, keyspace=ks)
                                                            for cql, params, ks in queries)))
    except StopIteration as done:
        return done.value


def _read_steps(rs: ReadSide, user_id: str, limit: int, cursor: str | None, fresh: int | None
                ) -> Generator[list[tuple[str, tuple, str]], list[list[Any]], FeedPage]:
    """The feed read of :func:`read_feed`, written once for both callers: it does not run the
    read's own queries but yields those it needs next, ``[(cql, params, keyspace)]``
    (independent of each other), is sent their rows in the same order (lists of named tuples),
    and returns the page. The blocking and the awaiting reader each drive it with their own
    I/O. The per-process caches it consults (takedowns, fresh pool, pulled creators, the
    active-keyspace pointer) still refresh themselves with a blocking query when stale."""
    pinned, offset = _parse_request(limit, cursor)
    ks = rs.active_keyspace()
    (rows,) = yield [(_FEED_ROW, (user_id,), ks)]
    if not rows:
        return FeedPage(user_id)
    row = rows[0]
    if row.feed is not None:
        columns: dict[str, Any] = {"feed": row.feed}
    else:  # a row of a ranker before the packed feed (infra/cassandra/schema.cql)
        (old,) = yield [(_COLLECTIONS_ROW, (user_id,), ks)]
        columns = old[0]._asdict() if old else {}
    inputs = feed_inputs(user_id, columns, _ms(row.generated_at))
    pulled: list[FreshPost] = []
    if inputs is not None and pulled_creators(rs, ks):
        (follows,) = yield [(_FOLLOWING, (user_id,), ks)]
        followed = _pulled_followed(rs, ks, follows)
        if followed:
            pages = yield [(_PULLED_POSTS, (c, row.generated_at, PULLED_PER_CREATOR), ks)
                           for c in followed]
            pulled = [_pulled_post(c, r) for c, page in zip(followed, pages) for r in page]
    return _page(rs, ks, user_id, row.generated_at, columns, inputs, pulled, limit, pinned, offset, fresh)


_FEED_ROW = "SELECT feed, generated_at FROM {ks}.user_feeds WHERE user_id = ?"
_COLLECTIONS_ROW = ("SELECT items, signals, content_types, interest_vector, hashtag_affinity, "
                    "category_affinity FROM {ks}.user_feeds WHERE user_id = ?")
_FOLLOWING = "SELECT followee_id FROM {ks}.following WHERE follower_id = ?"
_PULLED_POSTS = ("SELECT post_id, published_at, content_type, distribution, quality, expires_at "
                 "FROM {ks}.pulled_posts WHERE creator_id = ? AND published_at > ? LIMIT ?")


def _parse_request(limit: int, cursor: str | None) -> tuple[int | None, int]:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return _parse_cursor(cursor)


def _pulled_followed(rs: ReadSide, ks: str, follows: Any) -> list[str]:
    """The pulled creators among the ``following`` rows ``follows``, sorted."""
    return sorted({r.followee_id for r in follows} & set(pulled_creators(rs, ks)))


def _pulled_post(creator: str, r: Any) -> FreshPost:
    """A ``pulled_posts`` row of a followed pulled creator as a pool entry: source IN_NETWORK,
    following 1, the trust of a new creator, reason ``pulled at read``."""
    return FreshPost(post_id=r.post_id, creator_id=creator, published_at=_ms(r.published_at),
                     content_type=r.content_type or "FOREVER", quality=r.quality,
                     expires_at=None if r.expires_at is None else _ms(r.expires_at),
                     trust=creator_trust(0, 0), source="IN_NETWORK", following=1.0,
                     note="pulled at read")


def _page(rs: ReadSide, ks: str, user_id: str, generated: datetime, columns: dict[str, Any],
          inputs: Any, pulled: list[FreshPost], limit: int, pinned: int | None, offset: int,
          fresh: int | None) -> FeedPage:
    """The page of a feed row read (``columns``, ranked at ``generated``; ``inputs`` its
    :func:`~models.ranking.readtime.feed_inputs`), with the followed pulled creators' posts
    published after the ranking (``pulled``, newest :data:`PULLED_PER_CREATOR` per creator)."""
    page = FeedPage(user_id, generated_at=generated)
    down = taken_down(rs, ks)
    items: list[tuple] = list(columns.get("items") or [])
    now = pinned
    if inputs is not None:
        stored, reader = inputs
        settings = rs.settings
        size = fresh if fresh is not None else int(getattr(settings, "feed_fresh_pool", 500))
        pool = fresh_pool(rs, ks, size)
        # a followed pulled creator's post is theirs, not a stranger's RECENT one: rerank takes
        # ``pulled`` before the pool
        if now is None:
            now = max([reader.ranked_at] + [p.published_at for p in pulled]
                      + ([int(pool.times[-1])] if len(pool) else []))
        feed_size = max(len(items), int(getattr(settings, "feed_size", 200)))
        stats: dict = {}
        ranked = rerank(stored, pool, reader, now, min(feed_size, offset + limit), exclude=down,
                        stats=stats, pulled=pulled)
        total = min(feed_size, stats.get("candidates", 0))
        items = [(s.post_id, s.creator_id, s.score, s.source, s.reasons(), s.published_at)
                 for s in ranked]
    else:  # a row of an older ranker: served as stored, less takedowns, until its next re-rank
        items = [it for it in items if it[0] not in down]
        total = len(items)
    page.total = total
    for rank, it in enumerate(items[offset:offset + limit], start=offset):
        post_id, creator, score, src, reasons, published_ms = it
        page.items.append(FeedItem(rank, post_id, creator, float(score), src, list(reasons or []),
                                   None if published_ms is None else
                                   datetime.fromtimestamp(published_ms / 1000, tz=timezone.utc)))
    if offset + limit < total:
        page.next_cursor = f"{now if now is not None else _ms(generated)}.{offset + limit}"
    return page


def read_profile(source: Settings | ReadSide, user_id: str) -> dict[str, Any] | None:
    """The ``profiles`` row of ``user_id`` as a dict, or None when the user has no profile.

    Raises ``streams.stores.cassandra.ViewStoreError`` when Cassandra cannot be reached.
    """
    row = read_side_of(source).execute("SELECT * FROM {ks}.profiles WHERE user_id = ?", (user_id,)).one()
    return None if row is None else row._asdict()


def describe_profile(p: dict) -> list[str]:
    """A profile row in words: one sentence per aspect."""
    def top(d, n=5):
        items = sorted((d or {}).items(), key=lambda kv: -kv[1])
        likes = [f"{k} ({v:+.2f})" for k, v in items[:n] if v > 0]
        avoids = [f"{k} ({v:+.2f})" for k, v in sorted((d or {}).items(), key=lambda kv: kv[1])[:n] if v < 0]
        return likes, avoids

    lines = []
    state = "cold start" if p.get("cold_start") else "warm"
    lines.append(f"{p['user_id']}: {state} profile from {p.get('engagements') or 0} engagements "
                 f"({p.get('interactions') or 0} interactions); {100 * (p.get('own_signal_weight') or 0):.0f} % "
                 f"of the interest vector is the user's own signal, the rest the cold-start prior.")
    if p.get("declared_interests"):
        lines.append("Declared at signup: " + ", ".join(p["declared_interests"]) + ".")
    for label, col in (("categories", "category_affinity"), ("hashtags", "hashtag_affinity"),
                       ("creators", "creator_affinity")):
        likes, avoids = top(p.get(col))
        if likes:
            lines.append(f"Engages with {label}: " + ", ".join(likes) + ".")
        if avoids:
            lines.append(f"Avoids {label}: " + ", ".join(avoids) + ".")
    hours = p.get("active_hours") or []
    if hours and sum(hours) > 0:
        days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        best = sorted(range(len(hours)), key=lambda i: -hours[i])[:3]
        lines.append("Most active (UTC): " + ", ".join(
            f"{days[i // 24]} {i % 24:02d}:00 ({100 * hours[i]:.0f} %)" for i in best) + ".")
    lines.append(f"About {p.get('daily_activity') or 0:.1f} events per active day; welcomes about "
                 f"{p.get('notification_tolerance') or 0:.1f} notifications a day.")
    if p.get("updated_at"):
        lines.append(f"Updated {p['updated_at']:%Y-%m-%d %H:%M} UTC ({p.get('model_version')}).")
    return lines

"""Reading feeds and profiles: what ``pulse feed`` / ``pulse profile`` and the HTTP API show.

A feed read is one partition read of ``user_feeds`` (the ranked feed feed_ranker materialized),
less the posts taken down after publication (``takedowns``, cached for
:data:`TAKEDOWN_CACHE_S`), plus, when some creators are *pulled* rather than pushed (``pull_creators``, read once and cached
for :data:`PULL_CACHE_S`), the followed ones' posts published after the ranking, merged in by the
same relevance score (:func:`models.ranking.relevance.score`) with the signals known at read time
(quality, freshness 1: newer than everything ranked, following 1, creator trust unknown: 0.5).

Cursor pagination: a page's ``next_cursor`` is ``"<generated_at ms>.<offset>"``; the next page
continues at that offset. If the feed was re-ranked in between (a new ``generated_at``) the next
page continues at the same offset of the new ranking, so a post may repeat or be skipped across
that boundary (feeds change as people act; a client refreshes from the top).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from models.ranking import relevance as R
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


def read_feed(source: Settings | ReadSide, user_id: str, *, limit: int = 20,
              cursor: str | None = None) -> FeedPage:
    """A page of ``user_id``'s feed (module docstring).

    Raises
    ------
    CursorError
        ``cursor`` is malformed.
    ValueError
        ``limit`` is not in 1..200.
    streams.stores.cassandra.ViewStoreError
        Cassandra cannot be reached.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    _, offset = _parse_cursor(cursor)
    rs = read_side_of(source)
    ks = rs.active_keyspace()
    row = rs.execute("SELECT items, generated_at FROM {ks}.user_feeds WHERE user_id = ?",
                     (user_id,), keyspace=ks).one()
    page = FeedPage(user_id)
    items: list[tuple] = list(row.items or []) if row is not None else []
    generated = row.generated_at if row is not None else None
    page.generated_at = generated
    pulled = pulled_creators(rs, ks)
    if pulled:
        items = _merge_pulled(rs, ks, user_id, pulled, items, generated)
    down = taken_down(rs, ks)
    if down:
        items = [it for it in items if it[0] not in down]
    page.total = len(items)
    for rank, it in enumerate(items[offset:offset + limit], start=offset):
        post_id, creator, score, src, reasons, published_ms = it
        page.items.append(FeedItem(rank, post_id, creator, float(score), src, list(reasons or []),
                                   None if published_ms is None else
                                   datetime.fromtimestamp(published_ms / 1000, tz=timezone.utc)))
    if offset + limit < len(items):
        page.next_cursor = f"{_ms(generated) if generated else 0}.{offset + limit}"
    return page


def _merge_pulled(rs: ReadSide, ks: str, user_id: str, pulled: dict[str, int], items: list[tuple],
                  generated: datetime | None) -> list[tuple]:
    """``items`` with the followed pulled creators' posts published after ``generated`` merged in
    by score."""
    follows = {r.followee_id for r in rs.execute(
        "SELECT followee_id FROM {ks}.following WHERE follower_id = ?", (user_id,), keyspace=ks)}
    creators = sorted(follows & set(pulled))
    if not creators:
        return items
    after = generated or datetime.fromtimestamp(0, tz=timezone.utc)
    now_ms = int(time.time() * 1000)
    have = {it[0] for it in items}
    extra = []
    for c in creators:
        for r in rs.execute("SELECT post_id, published_at, quality, expires_at FROM {ks}.pulled_posts "
                            "WHERE creator_id = ? AND published_at > ? LIMIT ?",
                            (c, after, PULLED_PER_CREATOR), keyspace=ks):
            if r.post_id in have or (r.expires_at is not None and _ms(r.expires_at) <= now_ms):
                continue
            signals = {"quality": 0.5 if r.quality is None else float(r.quality), "trust": 0.5,
                       "freshness": 1.0, "following": 1.0}
            s = R.Scored(r.post_id, c, "IN_NETWORK", _ms(r.published_at), signals, R.score(signals))
            extra.append((r.post_id, c, s.score, "IN_NETWORK", s.reasons() + ["pulled at read"],
                          _ms(r.published_at)))
    merged = items + extra
    merged.sort(key=lambda it: (-float(it[2]), it[0]))
    return merged


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

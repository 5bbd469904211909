"""Reading creator analytics: what ``pulse creator-stats`` shows, from the ``creator_stats`` view
(one partition per creator: the row with ``post_id ''`` holds creator_analytics' totals, every
other row one post's figures from post_analytics, with its virality prediction once its early
horizon has closed)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings
from streams.stores.cassandra import ViewStoreError

#: Orders of a creator's posts: column, descending.
SORTS = {"virality": "predicted_virality", "reach": "reach", "likes": "likes", "recent": "published_at"}


class UnknownCreator(LookupError):
    """No analytics have been materialized for the creator."""


class UnknownSort(ValueError):
    """A sort order other than :data:`SORTS`."""


@dataclass
class StatsRow:
    """One post's (or, with ``post_id`` None, the creator's) figures. ``reach`` and ``engaged``:
    distinct users (HyperLogLog estimates); rates None where their denominator is 0;
    ``predicted_engagement``: net endorsements expected at maturity; ``predicted_virality``:
    share in [0, 1] of recently matured posts below that (None before the prediction)."""

    creator_id: str
    post_id: str | None
    reach: int
    engaged: int
    views: int
    likes: int
    comments: int
    shares: int
    replies: int
    hides: int
    reports: int
    engagement_rate: float | None
    meaningful_engagement_ratio: float | None
    predicted_engagement: float | None
    predicted_virality: float | None
    posts: int | None
    published_at: datetime | None
    updated_at: datetime | None
    model_version: str | None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("published_at", "updated_at"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


@dataclass
class CreatorStats:
    """A creator's totals and posts (ordered as asked)."""

    totals: StatsRow | None
    posts: list[StatsRow]

    def as_dict(self) -> dict[str, Any]:
        return {"totals": self.totals.as_dict() if self.totals else None,
                "posts": [p.as_dict() for p in self.posts]}


def _row(r: Any) -> StatsRow:
    def n(name: str) -> int:
        return int(getattr(r, name, None) or 0)

    return StatsRow(
        creator_id=r.creator_id, post_id=r.post_id or None, reach=n("reach"), engaged=n("engaged"),
        views=n("views"), likes=n("likes"), comments=n("comments"), shares=n("shares"),
        replies=n("replies"), hides=n("hides"), reports=n("reports"),
        engagement_rate=r.engagement_rate, meaningful_engagement_ratio=r.meaningful_engagement_ratio,
        predicted_engagement=r.predicted_engagement, predicted_virality=r.predicted_virality,
        posts=r.posts if not r.post_id else None, published_at=r.published_at,
        updated_at=r.updated_at, model_version=r.model_version)


def read_creator_stats(source: Settings | ReadSide, creator_id: str, *, sort: str = "virality",
                       limit: int = 10) -> CreatorStats:
    """The creator's totals and at most ``limit`` posts, best first by ``sort`` (a
    :data:`SORTS` key; posts without the value last, then by post id).

    Raises :class:`UnknownSort`, :class:`UnknownCreator` (no row at all), and ``ViewStoreError``
    when Cassandra cannot be reached or the keyspace lacks the view's columns.
    """
    from cassandra import InvalidRequest

    if sort not in SORTS:
        raise UnknownSort(f"unknown sort {sort!r}; use {', '.join(SORTS)}")
    rs = read_side_of(source)
    ks = rs.active_keyspace()
    try:
        rows = list(rs.execute("SELECT * FROM {ks}.creator_stats WHERE creator_id = ?", (creator_id,),
                               keyspace=ks))
    except InvalidRequest as exc:
        raise ViewStoreError(f"keyspace {ks} has no creator_stats view "
                             f"({exc.args[0] if exc.args else exc}); `pulse up` applies "
                             f"infra/cassandra/schema.cql") from None
    if not rows:
        raise UnknownCreator(f"no analytics for creator {creator_id!r} (creator_analytics has "
                             f"written nothing for them: unknown id, or no post published yet)")
    stats = [_row(r) for r in rows]
    totals = next((s for s in stats if s.post_id is None), None)
    posts = [s for s in stats if s.post_id is not None and s.published_at is not None]
    col = SORTS[sort]

    def key(s: StatsRow) -> tuple:
        v = getattr(s, col)
        if isinstance(v, datetime):
            v = v.timestamp()
        return (v is None, -(v or 0), s.post_id)

    return CreatorStats(totals, sorted(posts, key=key)[:limit])

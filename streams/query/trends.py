"""Reading trends: what ``pulse trends`` shows, from the views trend_detector materializes.

``trending`` holds one row per subject that has trended (its latest reading); the current
trends are the rows not ENDED, ranked by burst score across all the detector's partitions.
``trend_heavy_hitters`` holds each detector partition's most mentioned subjects of its current
window (frequent-items sketch estimates); partitions hold disjoint subjects, so the global list
is their union, summed and sorted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings
from streams.stores.cassandra import ViewStoreError

KINDS = ("HASHTAG", "CATEGORY")


class UnknownKind(ValueError):
    """A trend kind other than hashtag or category."""


@dataclass
class TrendRow:
    """One current trend: counts in its window, the baseline's expectation, the burst score
    (z), the window (UTC datetimes) and a few recent posts; ``rank`` 1 = top of its kind."""

    rank: int
    subject_kind: str
    subject: str
    state: str
    count: int
    baseline_count: float
    burst_score: float
    started_at: datetime | None
    updated_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    sample_post_ids: list[str]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("started_at", "updated_at", "window_start", "window_end"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


def read_trends(source: Settings | ReadSide, kind: str | None = None, *, limit: int = 20,
                include_ended: bool = False) -> list[TrendRow]:
    """Current trends of ``kind`` (HASHTAG or CATEGORY; None: both), best burst score first,
    at most ``limit`` per kind.

    Raises :class:`UnknownKind` for an unknown kind and ``streams.stores.cassandra.ViewStoreError``
    when Cassandra cannot be reached.
    """
    kinds = KINDS if kind is None else (kind.upper(),)
    if any(k not in KINDS for k in kinds):
        raise UnknownKind(f"unknown trend kind {kind!r}; use hashtag or category")
    rs = read_side_of(source)
    ks = rs.active_keyspace()
    out: list[TrendRow] = []
    for k in kinds:
        rows = [r for r in _select(rs, "SELECT * FROM {ks}.trending WHERE subject_kind = ?", k, ks)
                if include_ended or r.state != "ENDED"]
        rows.sort(key=lambda r: (-(r.burst_score or 0.0), r.subject))
        for i, r in enumerate(rows[:limit]):
            out.append(TrendRow(rank=i + 1, subject_kind=k, subject=r.subject, state=r.state,
                                count=int(r.count or 0), baseline_count=float(r.baseline_count or 0.0),
                                burst_score=float(r.burst_score or 0.0), started_at=r.started_at,
                                updated_at=r.updated_at, window_start=r.window_start,
                                window_end=r.window_end, sample_post_ids=list(r.sample_post_ids or [])))
    return out


def read_heavy_hitters(source: Settings | ReadSide, kind: str = "HASHTAG", *, limit: int = 10
                       ) -> list[tuple[str, int]]:
    """The most mentioned subjects of ``kind`` in the detector's current windows:
    ``[(subject, estimated mentions), ...]``, most first (ties by name).

    Raises :class:`UnknownKind` for an unknown kind and ``ViewStoreError`` when Cassandra cannot be
    reached.
    """
    if kind.upper() not in KINDS:
        raise UnknownKind(f"unknown trend kind {kind!r}; use hashtag or category")
    total: dict[str, int] = {}
    rs = read_side_of(source)
    for r in _select(rs, "SELECT counts FROM {ks}.trend_heavy_hitters WHERE subject_kind = ?",
                     kind.upper(), rs.active_keyspace()):
        for subject, n in (r.counts or {}).items():
            total[subject] = total.get(subject, 0) + int(n)
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def _select(rs: ReadSide, cql: str, kind: str, keyspace: str) -> list[Any]:
    """Rows of ``cql`` for ``kind``; a keyspace without the trend tables (created before them,
    never brought up with this schema) is a :class:`ViewStoreError` saying so."""
    from cassandra import InvalidRequest

    try:
        return list(rs.execute(cql, (kind,), keyspace=keyspace))
    except InvalidRequest as exc:
        raise ViewStoreError(f"keyspace {keyspace} has no trend views ({exc.args[0] if exc.args else exc}); "
                             f"`pulse up` applies infra/cassandra/schema.cql") from None

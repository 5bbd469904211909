"""Reading golden moments: what ``pulse golden-moment`` shows, from the ``golden_moments`` view
timing_optimizer materializes (one row per creator and content type: the best hours of the week
to post in, the posterior hourly map, the audience size and the prior's weight)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings
from streams.stores.cassandra import ViewStoreError

CONTENT_TYPES = ("FLASH", "MEMORY", "FOREVER")


class UnknownContentType(ValueError):
    """A content type other than flash, memory or forever."""


class UnknownCreator(LookupError):
    """No golden moment has been materialized for the creator."""


@dataclass
class GoldenMomentRow:
    """One creator's recommendation for one content type: ``windows`` = ``[(day_of_week 0 =
    Monday, hour UTC, score), ...]`` best first; ``score`` = expected share of the audience's
    activity met per hour. ``hour_map``: the creator's audience map the windows were chosen
    from (168 shares of the audience's activity, Monday 00:00 UTC first, summing to 1; the
    same for every content type: a static column), or None in a table made before the column
    was static whose row is not FLASH's; :func:`models.timing.windows.all_window_scores` of it
    gives each content type's score for every hour of the week."""

    creator_id: str
    content_type: str
    windows: list[tuple[int, int, float]]
    audience_size: int
    prior_weight: float
    next_window_start: datetime | None
    updated_at: datetime | None
    model_version: str | None
    hour_map: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"creator_id": self.creator_id, "content_type": self.content_type,
                "windows": [{"day_of_week": d, "hour": h, "score": s} for d, h, s in self.windows],
                "audience_size": self.audience_size, "prior_weight": self.prior_weight,
                "next_window_start": self.next_window_start.isoformat() if self.next_window_start else None,
                "updated_at": self.updated_at.isoformat() if self.updated_at else None,
                "model_version": self.model_version}


def read_golden_moments(source: Settings | ReadSide, creator_id: str,
                        content_type: str | None = None) -> list[GoldenMomentRow]:
    """The creator's golden moments (one per content type, FLASH, MEMORY, FOREVER order; only
    ``content_type`` when given).

    Raises :class:`UnknownContentType`, :class:`UnknownCreator` (no row), and
    ``ViewStoreError`` when Cassandra cannot be reached or the keyspace lacks the view.
    """
    from cassandra import InvalidRequest

    types = CONTENT_TYPES if content_type is None else (content_type.upper(),)
    if any(t not in CONTENT_TYPES for t in types):
        raise UnknownContentType(f"unknown content type {content_type!r}; use flash, memory or forever")
    rs = read_side_of(source)
    ks = rs.active_keyspace()
    try:
        rows = list(rs.execute("SELECT * FROM {ks}.golden_moments WHERE creator_id = ?", (creator_id,),
                               keyspace=ks))
    except InvalidRequest as exc:
        raise ViewStoreError(f"keyspace {ks} has no golden_moments view "
                             f"({exc.args[0] if exc.args else exc}); `pulse up` applies "
                             f"infra/cassandra/schema.cql") from None
    by_type = {r.content_type: r for r in rows}
    out = []
    for t in types:
        r = by_type.get(t)
        if r is None:
            continue
        out.append(GoldenMomentRow(
            creator_id=creator_id, content_type=t,
            windows=[(int(d), int(h), float(s)) for d, h, s in zip(r.window_days or [], r.window_hours or [],
                                                                 r.window_scores or [])],
            audience_size=int(r.audience_size or 0), prior_weight=float(r.prior_weight or 0.0),
            next_window_start=r.next_window_start, updated_at=r.updated_at, model_version=r.model_version,
            hour_map=[float(x) for x in r.hour_map] if getattr(r, "hour_map", None) else None))
    if not out:
        raise UnknownCreator(f"no golden moment for creator {creator_id!r}"
                             + (f" and content type {types[0].lower()}" if content_type else "")
                             + " (timing_optimizer has seen no audience or post of theirs)")
    return out

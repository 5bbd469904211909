"""Reading the materialized views back from Cassandra (what `pulse posts` / `pulse follows` show).

Every function takes the process's :class:`~streams.query.read_side.ReadSide` or the settings to
find it by (:func:`~streams.query.read_side.get_read_side`): one pooled session for all reads,
prepared statements, and the active keyspace that ``pulse replay swap`` sets.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator

from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings

_TABLE_NAME = re.compile(r"^[A-Za-z_]\w*$")


@contextmanager
def view_session(settings: Settings | ReadSide) -> Iterator[Any]:
    """The shared driver session of the process's read side (not closed on exit).

    Its default keyspace is the base keyspace (``PULSE_CASSANDRA_KEYSPACE``): unqualified
    statements do not follow a swapped pointer. For direct statements (writes, tests); reads of
    the views go through the functions below.
    """
    yield read_side_of(settings).session


def posts_by_creator(settings: Settings | ReadSide, creator_id: str, limit: int = 20) -> list[dict]:
    """Up to ``limit`` of a creator's posts, newest first (dicts of ``posts_by_creator`` columns)."""
    rows = read_side_of(settings).execute(
        "SELECT * FROM {ks}.posts_by_creator WHERE creator_id = ? LIMIT ?", (creator_id, limit))
    return [r._asdict() for r in rows]


def follow_summary(settings: Settings | ReadSide, user_id: str, limit: int = 20) -> dict:
    """``{"followers": n, "following": n, "followees": [rows]}`` for ``user_id``.

    Counts are the row counts of the user's ``followers`` / ``following`` partitions: exact and
    idempotent under re-delivery (no counter columns).
    """
    rs = read_side_of(settings)
    ks = rs.active_keyspace()  # one keyspace for the three reads, even across a swap
    followers = rs.execute("SELECT COUNT(*) FROM {ks}.followers WHERE followee_id = ?", (user_id,),
                           keyspace=ks).one()[0]
    following = rs.execute("SELECT COUNT(*) FROM {ks}.following WHERE follower_id = ?", (user_id,),
                           keyspace=ks).one()[0]
    rows = rs.execute("SELECT followee_id, since FROM {ks}.following WHERE follower_id = ? LIMIT ?",
                      (user_id, limit), keyspace=ks)
    return {"followers": followers, "following": following, "followees": [r._asdict() for r in rows]}


def table_counts(settings: Settings | ReadSide,
                 tables: tuple[str, ...] = ("users", "posts", "following")) -> dict[str, int]:
    """Row count of each table (full scans: for the demo's summary and tests, not for hot paths).

    Raises ``ValueError`` for a name that is not a plain table name.
    """
    bad = [t for t in tables if not _TABLE_NAME.match(t)]
    if bad:
        raise ValueError(f"not a table name: {bad[0]!r}")
    rs = read_side_of(settings)
    ks = rs.active_keyspace()
    return {t: rs.execute(f"SELECT COUNT(*) FROM {{ks}}.{t}", keyspace=ks, timeout=120).one()[0]
            for t in tables}

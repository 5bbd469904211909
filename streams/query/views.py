"""Reading the materialized views back from Cassandra (what `pulse posts` / `pulse follows` show)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from streams.stores.cassandra import connect
from streams.settings import Settings


@contextmanager
def view_session(settings: Settings) -> Iterator[Any]:
    """A driver session on the Pulse keyspace, closed on exit."""
    cluster, session = connect(settings, settings.cassandra_keyspace)
    try:
        yield session
    finally:
        cluster.shutdown()


def posts_by_creator(settings: Settings, creator_id: str, limit: int = 20) -> list[dict]:
    """Up to ``limit`` of a creator's posts, newest first (dicts of ``posts_by_creator`` columns)."""
    with view_session(settings) as s:
        rows = s.execute("SELECT * FROM posts_by_creator WHERE creator_id = %s LIMIT %s",
                         (creator_id, limit))
        return [r._asdict() for r in rows]


def follow_summary(settings: Settings, user_id: str, limit: int = 20) -> dict:
    """``{"followers": n, "following": n, "followees": [rows]}`` for ``user_id``.

    Counts are the row counts of the user's ``followers`` / ``following`` partitions: exact and
    idempotent under re-delivery (no counter columns).
    """
    with view_session(settings) as s:
        followers = s.execute("SELECT COUNT(*) FROM followers WHERE followee_id = %s", (user_id,)).one()[0]
        following = s.execute("SELECT COUNT(*) FROM following WHERE follower_id = %s", (user_id,)).one()[0]
        rows = s.execute("SELECT followee_id, since FROM following WHERE follower_id = %s LIMIT %s",
                         (user_id, limit))
        return {"followers": followers, "following": following, "followees": [r._asdict() for r in rows]}


def table_counts(settings: Settings, tables: tuple[str, ...] = ("users", "posts", "following")) -> dict[str, int]:
    """Row count of each table (full scans: for the demo's summary and tests, not for hot paths)."""
    with view_session(settings) as s:
        return {t: s.execute(f"SELECT COUNT(*) FROM {t}", timeout=120).one()[0] for t in tables}

"""The backbone's view materializer: ``posts``, ``posts_by_creator``, ``users``, ``following``
and ``followers`` in Cassandra, from ``uploads``, ``signups`` and ``follows``.

Every row is written at its event's time (``USING TIMESTAMP``), so re-delivery and replay give
the same rows, and an unfollow followed by a re-delivered older follow cannot resurrect the edge.
"""
from __future__ import annotations

from typing import Any

from streams.contracts.effects import Delete, Effect, Upsert, event_time_us

from streams.contracts.agent import AgentSpec, Context, Event, State


def _ms(record: dict[str, Any]) -> int:
    return event_time_us(record) // 1000


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """Map one event to view writes (stateless: ``state`` is unused).

    ``uploads`` -> ``posts`` + ``posts_by_creator``; ``signups`` -> ``users``;
    ``follows`` -> ``following`` + ``followers`` (FOLLOW upserts, UNFOLLOW deletes).
    """
    topic, record = event.topic, event.record
    ts = event_time_us(record)
    if topic == "uploads":
        at = _ms(record)
        hashtags = list(record.get("hashtags") or [])
        return [
            Upsert("posts", {
                "post_id": record["post_id"], "creator_id": record["creator_id"],
                "kind": record["kind"], "content_type": record["content_type"],
                "media_uri": record.get("media_uri"), "caption": record.get("caption"),
                "title": record.get("title"), "hashtags": hashtags,
                "duration_ms": record.get("duration_ms"), "size_bytes": record.get("size_bytes"),
                "width": record.get("width"), "height": record.get("height"),
                "parent_post_id": record.get("parent_post_id"), "uploaded_at": at,
                "event_id": record["event_id"],
            }, ts),
            Upsert("posts_by_creator", {
                "creator_id": record["creator_id"], "uploaded_at": at, "post_id": record["post_id"],
                "kind": record["kind"], "content_type": record["content_type"],
                "title": record.get("title"), "caption": (record.get("caption") or "")[:280],
                "hashtags": hashtags,
            }, ts),
        ]
    if topic == "signups":
        return [Upsert("users", {
            "user_id": record["user_id"], "handle": record["handle"],
            "declared_interests": list(record.get("declared_interests") or []),
            "locale": record.get("locale"), "country": record.get("country"),
            "about": record.get("about"), "signed_up_at": _ms(record), "event_id": record["event_id"],
        }, ts)]
    if topic == "follows":
        a, b = record["follower_id"], record["followee_id"]
        if record["action"] == "FOLLOW":
            return [Upsert("following", {"follower_id": a, "followee_id": b, "since": _ms(record)}, ts),
                    Upsert("followers", {"followee_id": b, "follower_id": a, "since": _ms(record)}, ts)]
        return [Delete("following", {"follower_id": a, "followee_id": b}, ts),
                Delete("followers", {"followee_id": b, "follower_id": a}, ts)]
    return []


SPEC = AgentSpec(
    name="materializer",
    topics=("uploads", "signups", "follows"),
    process=process,
    doc="Materializes the posts, users and follows views into Cassandra.",
    sinks=frozenset({"cassandra"}),
)

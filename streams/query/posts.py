"""A post's status and the gates' verdicts on it: what ``GET /v1/posts/{post_id}`` shows, from the
``posts`` view (the publisher's ``status`` and ``status_reasons``), Content Guard's
``moderation_log`` (every decision, machine and human, in order) and Copyright Guard's
``copyright_matches``."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).isoformat().replace("+00:00", "Z")


def read_post(source: Settings | ReadSide, post_id: str) -> dict[str, Any] | None:
    """``{"post_id", "creator_id", "kind", "content_type", "uploaded_at", "status",
    "status_reasons", "moderation": [...], "copyright": [...]}`` (times ISO-8601 UTC), or None when
    no upload of ``post_id`` was materialized. ``status`` is None until the publisher has
    decided (PENDING, IN_REVIEW, PUBLISHED, RESTRICTED, BLOCKED, TAKEN_DOWN).

    Raises ``streams.stores.cassandra.ViewStoreError`` when Cassandra cannot be reached.
    """
    rs = read_side_of(source)
    ks = rs.active_keyspace()  # one keyspace for the three reads, even across a swap
    post = rs.execute("SELECT post_id, creator_id, kind, content_type, uploaded_at, status, status_reasons "
                      "FROM {ks}.posts WHERE post_id = ?", (post_id,), keyspace=ks).one()
    if post is None:
        return None
    moderation = [{"decided_at": _iso(r.decided_at), "action": r.action, "tier": r.tier,
                   "scores": dict(r.category_scores or {}), "reasons": list(r.reasons or []),
                   "model": r.model, "model_version": r.model_version}
                  for r in rs.execute("SELECT * FROM {ks}.moderation_log WHERE post_id = ?", (post_id,),
                                      keyspace=ks)]
    copyright_ = [{"reference_id": r.reference_id, "modality": r.modality, "distance": r.distance,
                   "matched_span": r.matched_span, "action": r.action, "matched_at": _iso(r.matched_at),
                   "model_version": r.model_version}
                  for r in rs.execute("SELECT * FROM {ks}.copyright_matches WHERE post_id = ?", (post_id,),
                                      keyspace=ks)]
    return {"post_id": post.post_id, "creator_id": post.creator_id, "kind": post.kind,
            "content_type": post.content_type, "uploaded_at": _iso(post.uploaded_at),
            "status": post.status, "status_reasons": list(post.status_reasons or []),
            "moderation": moderation, "copyright": copyright_}

"""The contract between clip_ai (which writes each post's point in the ``content`` collection)
and the publisher (which marks it for search)."""
from __future__ import annotations

#: The vector collection of posts (``infra/qdrant/collections.toml``).
CONTENT_COLLECTION = "content"
#: The payload keys the publisher owns on ``content`` points (``published``, ``gate_status``,
#: ``moderation_action``, ``distribution``); clip_ai's upserts keep them
#: (``VectorUpsert.keep``), so re-running clip_ai does not hide published posts from search.
SEARCH_MARKS = ("published", "gate_status", "moderation_action", "distribution")

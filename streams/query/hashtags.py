"""Hashtag suggestions for a new post: what is trending, where it fits the post's content, before
CLIP AI's suggestions from the content itself (``pulse hashtags POST_ID``).

Inputs, all materialized by agents (no model is loaded here):

* the post's point in the ``content`` collection (clip_ai): its ``semantic`` vector (MiniLM
  space: media bridged into it, text posts' text), its own hashtags and ``suggested_hashtags``
  (clip_ai's nearest known hashtags to the content, best first; posts enriched before that
  payload field existed have none);
* the open hashtag trends (``trending``, trend_detector) with the posts that made each trend
  (``sample_post_ids``, up to a few per trend).

A trending hashtag fits the post when the cosine between the post's ``semantic`` vector and the
normalised mean of its sample posts' ``semantic`` vectors (the trend's *centroid*, the post itself
left out) is at least ``min_similarity``. Fitting trends come first, most similar first (ties:
higher burst score, then the tag), at most ``max_trending`` of them, so most of the list stays
about the post; CLIP AI's suggestions fill the rest in their order. A tag both trending and
suggested by CLIP AI is listed once, as trending, with source ``trending+content``. The post's
own hashtags are never suggested.

``min_similarity`` default 0.5: on MiniLM (all-MiniLM-L6-v2) sentence embeddings, cosines of 0.5
and above are topically related texts, well above unrelated pairs (around 0 to 0.2); it is a
parameter (``--min-similarity``) because the right cut depends on the platform's content.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings

COLLECTION = "content"
VECTOR = "semantic"
MIN_SIMILARITY = 0.5
MAX_TRENDING = 2
LIMIT = 5


class UnknownPost(LookupError):
    """The post has no point in the content collection (not enriched yet, or erased)."""


@dataclass(frozen=True)
class HashtagSuggestion:
    """One suggested hashtag (lowercase, no ``#``): ``source`` is ``trending``, ``content`` (CLIP
    AI) or ``trending+content``; ``similarity`` is the cosine with the trend's centroid and
    ``burst_score`` the trend's (trending tags only); ``content_rank`` is the tag's place in
    CLIP AI's suggestions (1 = best; None when it is not among them)."""

    tag: str
    source: str
    similarity: float | None = None
    burst_score: float | None = None
    content_rank: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return None if n == 0.0 else v / n


def combine(own: Sequence[str], content: Sequence[str], trends: Sequence[tuple[str, float, float]], *,
            limit: int = LIMIT, max_trending: int = MAX_TRENDING,
            min_similarity: float = MIN_SIMILARITY) -> list[HashtagSuggestion]:
    """The suggestions (module docstring) from the post's ``own`` tags, CLIP AI's ``content``
    suggestions (best first) and ``trends`` as ``(tag, similarity, burst_score)``. Pure."""
    skip = {t.lstrip("#").lower() for t in own}
    rank: dict[str, int] = {}  # tag -> place among CLIP AI's suggestions, in their order
    for i, t in enumerate(content):
        rank.setdefault(t.lstrip("#").lower(), i + 1)
    fitting = sorted(((tag, sim, burst) for tag, sim, burst in trends
                      if sim >= min_similarity and tag not in skip),
                     key=lambda x: (-x[1], -x[2], x[0]))
    out: list[HashtagSuggestion] = []
    seen: set[str] = set()
    for tag, sim, burst in fitting[:max(0, max_trending)]:
        if tag in seen:
            continue
        seen.add(tag)
        out.append(HashtagSuggestion(tag, "trending+content" if tag in rank else "trending",
                                     round(sim, 4), round(burst, 3), rank.get(tag)))
    for tag in rank:
        if len(out) >= limit:
            break
        if tag not in seen and tag not in skip:
            seen.add(tag)
            out.append(HashtagSuggestion(tag, "content", content_rank=rank[tag]))
    return out[:limit]


def suggest_hashtags(source: Settings | ReadSide, index: Any, post_id: str, *, limit: int = LIMIT,
                     max_trending: int = MAX_TRENDING, min_similarity: float = MIN_SIMILARITY,
                     trends_considered: int = 50) -> list[HashtagSuggestion]:
    """Up to ``limit`` hashtags for post ``post_id`` (module docstring). ``index``: the vector
    index holding ``content`` (:class:`streams.stores.vectors.VectorIndex`);
    ``trends_considered``: how many open hashtag trends (best burst first) are tried.

    Raises :class:`UnknownPost` when the post has no point, ``ValueError`` for a ``limit`` below
    1, and ``ViewStoreError`` when Cassandra cannot be reached.
    """
    from streams.query.trends import read_trends

    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    found = index.get(COLLECTION, [post_id])
    if not found:
        raise UnknownPost(f"post {post_id!r} has no content point (not enriched by clip_ai yet, or erased)")
    point = found[0]
    payload = point.payload or {}
    vectors = point.vector if isinstance(point.vector, dict) else {}
    mine = _unit(np.asarray(vectors[VECTOR], np.float64)) if VECTOR in vectors else None
    trends = read_trends(read_side_of(source), "HASHTAG", limit=trends_considered)
    scored: list[tuple[str, float, float]] = []
    if mine is not None and trends:
        samples = {pid for t in trends for pid in t.sample_post_ids if pid != post_id}
        by_id = {p.id: p for p in index.get(COLLECTION, sorted(samples))} if samples else {}
        for t in trends:
            vs = [np.asarray(by_id[pid].vector[VECTOR], np.float64) for pid in t.sample_post_ids
                  if pid in by_id and isinstance(by_id[pid].vector, dict) and VECTOR in by_id[pid].vector]
            centroid = _unit(np.mean([v / max(np.linalg.norm(v), 1e-12) for v in vs], axis=0)) if vs else None
            if centroid is not None:
                scored.append((t.subject, float(mine @ centroid), t.burst_score))
    return combine(payload.get("hashtags") or [], payload.get("suggested_hashtags") or [], scored,
                   limit=limit, max_trending=max_trending, min_similarity=min_similarity)

"""Semantic search over posts: the ``content`` vector collection that clip_ai fills.

>>> with ContentSearch.open(settings) as search:                      # doctest: +SKIP
...     hits = search.text("sunset at the beach", kind="image", limit=10)
...     more = search.like(hits[0].post_id)

A long-lived process (the HTTP API, the dashboard) uses the read side's instead, whose index and
query encoder are opened once: ``get_read_side(settings).search`` (see
:mod:`streams.query.read_side`), or ``ContentSearch.from_read_side(read_side)``.

By text: the query is embedded with MiniLM and searched against the ``semantic`` vectors (media
bridged into MiniLM space, text posts' text) and the ``text`` vectors (captions), and, with a
CLIP checkpoint configured, embedded with CLIP's text tower and searched against the ``image``
vectors. The ranked lists are merged by reciprocal rank fusion (Cormack, Clarke and Buettcher,
SIGIR 2009: ``sum 1 / (60 + rank)``), since cosines from different spaces are not comparable.
By example (``like``): the post's own ``image`` and ``semantic`` vectors, fused the same way.

Which posts are eligible (the gate rule). The publisher sets ``published`` (and
``moderation_action``) on a post's payload once both gates have decided; clip_ai never writes
them. Search always excludes posts with ``published = false`` or a ``moderation_action`` in
:data:`HIDDEN_ACTIONS`. Posts not yet gated (no ``published`` field) are included by default,
because a deployment without the publisher (or before it has caught up) would otherwise find
nothing; ``published_only=True`` (``pulse search --published-only``) restricts results to
posts the gates allowed, which is what a user-facing surface must use.

Concurrency: the embedded qdrant-edge engine allows one process per collection. While a worker
runs clip_ai it holds ``content``, and opening it here raises
:class:`~streams.stores.vectors.IndexLockedError`; search from inside the worker process, after it
stops, or through a Qdrant server (``PULSE_QDRANT_URL``), which any number of processes share.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from streams.stores.vectors import Hit, VectorIndex

COLLECTION = "content"
HIDDEN_ACTIONS = ("BLOCK", "REMOVE", "REJECT", "QUARANTINE")
"""``moderation_action`` values that hide a post from search (and their lower-case forms)."""
RRF_K = 60


@dataclass(frozen=True)
class SearchHit:
    """One post found: fused ``score`` (reciprocal rank fusion), the cosine per vector that found
    it (``{"semantic": 0.41, "text": 0.37}``) and the point's payload."""

    post_id: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


class QueryEncoder:
    """Text queries -> ``{vector name: (n, d)}``: MiniLM for ``semantic``/``text``; CLIP's text
    tower for ``image`` when a checkpoint is configured. Loads only the text models."""

    def __init__(self, settings: Any = None) -> None:
        from models.clip.text import MiniLM

        self.minilm = MiniLM()
        self.clip = None
        if settings is not None and getattr(settings, "clip_checkpoint", None):
            from models.clip.openclip import OpenClipTower

            self.clip = OpenClipTower(settings.clip_model, settings.clip_checkpoint,
                                      model_config=settings.clip_model_config)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        m = self.minilm.encode(texts)
        out = {"semantic": m, "text": m}
        if self.clip is not None:
            out["image"] = self.clip.encode_texts(texts)
        return out


def gate_filters(published_only: bool) -> tuple[dict, dict]:
    """``(must, must_not)`` of the gate rule (module docstring)."""
    must_not: dict[str, Any] = {"moderation_action": [*HIDDEN_ACTIONS, *(a.lower() for a in HIDDEN_ACTIONS)]}
    if published_only:
        return {"published": True}, must_not
    return {}, {**must_not, "published": False}


def fuse(ranked: dict[str, list[Hit]], limit: int, exclude: Sequence[str] = ()) -> list[SearchHit]:
    """Reciprocal rank fusion of several best-first hit lists, keyed by vector name."""
    acc: dict[str, dict] = {}
    for name, hits in ranked.items():
        rank = 0
        for h in hits:
            if h.id in exclude:
                continue
            rank += 1
            a = acc.setdefault(h.id, {"score": 0.0, "scores": {}, "payload": h.payload})
            a["score"] += 1.0 / (RRF_K + rank)
            a["scores"][name] = h.score
    best = sorted(acc.items(), key=lambda kv: (-kv[1]["score"], kv[0]))[:limit]
    return [SearchHit(pid, a["score"], a["scores"], a["payload"]) for pid, a in best]


class ContentSearch:
    """Search API over an open :class:`VectorIndex` (see the module docstring).

    ``encoder``: a :class:`QueryEncoder` (built on first text query when not given).
    ``owns_index``: :meth:`close` closes ``index`` (False when it is shared, e.g. a read side's).
    """

    def __init__(self, index: VectorIndex, encoder: QueryEncoder | None = None, settings: Any = None,
                 *, owns_index: bool = True) -> None:
        self.index = index
        self._encoder = encoder
        self._settings = settings
        self.owns_index = owns_index

    @classmethod
    def open(cls, settings: Any) -> "ContentSearch":
        """Open the configured vector index (raises IndexLockedError while a worker holds it)."""
        from streams.stores.vectors import open_vector_index

        return cls(open_vector_index(settings), settings=settings)

    @classmethod
    def from_read_side(cls, read_side: Any) -> "ContentSearch":
        """Search over a :class:`~streams.query.read_side.ReadSide`'s vector index (opened on
        first use; raises IndexLockedError while a worker holds the embedded engine's storage).
        Closing this search leaves the index open: the read side closes it."""
        return cls(read_side.vectors, settings=read_side.settings, owns_index=False)

    @property
    def encoder(self) -> QueryEncoder:
        if self._encoder is None:
            self._encoder = QueryEncoder(self._settings)
        return self._encoder

    def _filters(self, kind: str | None, since_ms: int | None, published_only: bool,
                 creator_id: str | None = None) -> tuple[dict, dict]:
        must, must_not = gate_filters(published_only)
        if kind:
            must["kind"] = kind.lower()
        if since_ms is not None:
            must["created_at"] = {"gte": int(since_ms)}
        if creator_id:
            must["creator_id"] = creator_id
        return must, must_not

    def _vectors(self) -> dict[str, int]:
        size = self.index.dims(COLLECTION)
        return size if isinstance(size, dict) else {}

    def text(self, query: str, limit: int = 10, *, kind: str | None = None, since_ms: int | None = None,
             published_only: bool = False, creator_id: str | None = None) -> list[SearchHit]:
        """Posts best matching ``query`` (see the module docstring), at most ``limit``.

        ``kind``: image | video | text; ``since_ms``: only posts uploaded at or after (UTC epoch ms).
        Raises ``ValueError`` for an empty query; CollectionNotFoundError before clip_ai ran.
        """
        if not query.strip():
            raise ValueError("empty search query")
        must, must_not = self._filters(kind, since_ms, published_only, creator_id)
        widths = self._vectors()
        ranked = {}
        for name, q in self.encoder.encode([query]).items():
            if name in widths and q.shape[1] == widths[name]:
                ranked[name] = self.index.search(COLLECTION, q[0], limit * 3, must, must_not, using=name)
        return fuse(ranked, limit)

    def like(self, post_id: str, limit: int = 10, *, kind: str | None = None, since_ms: int | None = None,
             published_only: bool = False) -> list[SearchHit]:
        """Posts most similar to post ``post_id`` (its ``image`` and ``semantic`` vectors), itself excluded.

        Raises ``KeyError`` when the post has no point (not enriched yet, or erased).
        """
        found = self.index.get(COLLECTION, [post_id])
        if not found:
            raise KeyError(f"post {post_id!r} is not in the {COLLECTION!r} collection (not enriched yet?)")
        vectors = found[0].vector
        must, must_not = self._filters(kind, since_ms, published_only)
        ranked = {name: self.index.search(COLLECTION, vectors[name], limit * 3 + 1, must, must_not, using=name)
                  for name in ("image", "semantic") if name in vectors}
        return fuse(ranked, limit, exclude=[post_id])

    def close(self) -> None:
        """Close the index if this search owns it (see ``owns_index``)."""
        if self.owns_index:
            self.index.close()

    def __enter__(self) -> "ContentSearch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

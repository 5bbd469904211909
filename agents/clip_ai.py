"""CLIP AI: content intelligence for every upload (DESIGN.md, "The AI systems").

``uploads`` -> ``content-enriched`` (one event per upload: embeddings, zero-shot categories,
caption-image alignment, quality, alt-text, hashtag suggestions, and the model and version of
every model used) + one point per post in the ``content`` vector collection (named vectors
``image`` / ``semantic`` / ``text`` / ``clip_text``, payload below).

The core is :class:`ClipProcessor` (built once per worker by :func:`setup`, which loads the
models); ``blocking=True``: batches run in the agent's own thread. Bad media never raises: the
post gets an enrichment without image fields and the reason is logged. Re-delivery gives the
same ``event_id`` (derived from the upload's) and the same point id (the post id), so replays
are idempotent.

Point payload: ``post_id``, ``creator_id``, ``kind`` / ``content_type`` (lower case),
``categories`` (top categories), ``hashtags`` (the post's own), ``created_at`` (upload time, epoch
ms), ``quality``, ``alignment``, ``title``, ``caption`` (first 280 characters), ``alt_text``,
``media_uri``. ``published``, ``gate_status``, ``moderation_action`` and ``distribution`` are the
publisher's to set (``publisher.SEARCH_MARKS``); clip_ai never writes them, and its upserts keep
them (``VectorUpsert.keep``), so a re-run or replay of clip_ai leaves the gates' marks in place
(see ``streams/search.py`` for how search treats posts not yet gated).

Collection: :func:`setup` ensures ``content`` (with the image tower's width) before the first
batch. With the embedded qdrant-edge engine it opens, ensures and closes the collection; the
worker's vector sink opens it afterwards and holds it (one process per shard directory).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from streams.contracts.effects import Effect, Emit, VectorUpsert

from streams.contracts.agent import AgentSpec, derived_event_id
from agents.publisher import SEARCH_MARKS

log = logging.getLogger(__name__)

NAME = "clip_ai"
COLLECTION = "content"


def _ms(t: Any) -> int:
    return t if isinstance(t, int) else int(round(t.timestamp() * 1000))


def ensure_content_collection(settings: Any, image_dim: int) -> None:
    """Create (or check) the ``content`` collection for an image tower of width ``image_dim``."""
    from streams.stores.vectors import load_collection_specs, open_vector_index

    spec = load_collection_specs(dims={"image_dim": image_dim})[COLLECTION]
    with open_vector_index(settings) as index:
        index.ensure_collection(spec)


class ClipProcessor:
    """The agent core: ``process_batch([(topic, upload)]) -> [effects]`` (see :class:`streams.contracts.agent.BatchProcessor`)."""

    def __init__(self, models: Any) -> None:
        self.models = models

    def effects(self, record: dict, e: Any) -> list[Effect]:
        """The ``content-enriched`` event and the vector point of one enriched upload."""
        vec = lambda v: None if v is None else [float(x) for x in v]  # noqa: E731
        event = {
            "event_id": derived_event_id(NAME, record["event_id"]),
            "event_time": int(time.time() * 1000),
            "producer": NAME,
            "cause_event_id": record["event_id"],
            "model": self.models.model,
            "model_version": self.models.model_version,
            "post_id": record["post_id"],
            "creator_id": record["creator_id"],
            "image_embedding": vec(e.image_embedding),
            "text_embedding": vec(e.text_embedding),
            "categories": {k: float(v) for k, v in e.categories.items()},
            "alignment_score": e.alignment,
            "quality_score": float(e.quality.get("score", 0.5)),
            "alt_text": e.alt_text,
            "suggested_hashtags": list(e.hashtags),
            "keyframe_count": e.keyframes,
            "latency_ms": int(e.latency_ms),
        }
        out: list[Effect] = [Emit("content-enriched", event)]
        vectors = {name: v for name, v in (("image", e.image), ("semantic", e.semantic), ("text", e.text),
                                           ("clip_text", e.clip_text)) if v is not None}
        if vectors:
            payload = {
                "post_id": record["post_id"], "creator_id": record["creator_id"],
                "kind": str(record["kind"]).lower(), "content_type": str(record["content_type"]).lower(),
                "categories": e.top_categories, "hashtags": [h.lstrip("#").lower() for h in record.get("hashtags") or []],
                "created_at": _ms(record["event_time"]), "quality": float(e.quality.get("score", 0.5)),
                "alignment": e.alignment, "title": record.get("title"),
                "caption": (record.get("caption") or "")[:280], "alt_text": e.alt_text,
                "media_uri": record.get("media_uri"),
            }
            out.append(VectorUpsert(COLLECTION, record["post_id"], vectors, payload, keep=SEARCH_MARKS))
        return out

    def process_batch(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[Sequence[Effect] | BaseException]:
        """Enrich every upload of the batch in one batched pass through the models."""
        results: list[Sequence[Effect] | BaseException] = [[] for _ in items]
        uploads = [(i, r) for i, (topic, r) in enumerate(items) if topic == "uploads"]
        if not uploads:
            return results
        try:
            enriched = self.models.enrich([r for _, r in uploads])
        except Exception:  # a model failure on the batch: retry per event, so one bad event dead-letters alone
            log.exception("clip_ai: batch of %d failed; retrying one by one", len(uploads))
            for i, r in uploads:
                try:
                    results[i] = self.effects(r, self.models.enrich([r])[0])
                except Exception as exc:  # noqa: BLE001 -- the runtime dead-letters it
                    results[i] = exc
            return results
        for (i, r), e in zip(uploads, enriched):
            try:
                results[i] = self.effects(r, e)
            except Exception as exc:  # noqa: BLE001 -- the runtime dead-letters it
                results[i] = exc
        return results


def setup(settings: Any, tables: dict) -> ClipProcessor:
    """Load the models named in ``settings`` (seconds) and ensure the ``content`` collection."""
    from models.clip.enrich import ClipConfig, ContentModels

    models = ContentModels(ClipConfig.from_settings(settings))
    ensure_content_collection(settings, models.image_dim)
    log.info("clip_ai: loaded %s (%s)", models.model, models.model_version)
    return ClipProcessor(models)


def _no_stateless(topic: str, record: dict[str, Any]) -> list[Effect]:
    raise RuntimeError("clip_ai is stateful: the runtime calls setup() and process_batch()")


SPEC = AgentSpec(
    name=NAME,
    topics=("uploads",),
    process=_no_stateless,
    doc="Content intelligence: embeddings, categories, alignment, quality, alt-text, hashtags; vectors into Qdrant.",
    batch_size=32,
    sinks=frozenset({"vectors"}),
    setup=setup,
    blocking=True,
)

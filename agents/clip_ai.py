"""CLIP AI: content intelligence for every upload (DESIGN.md, "The AI systems").

``uploads`` -> ``content-enriched`` (one event per upload: embeddings, zero-shot categories,
caption-image alignment, quality, alt-text, hashtag suggestions, and the model and version of
every model used) + one point per post in the ``content`` vector collection (named vectors
``image`` / ``semantic`` / ``text`` / ``clip_text``, payload below).

:func:`load` loads the models once per worker (:class:`models.clip.enrich.ContentModels`, the
result is ``ctx.models``); :func:`process` enriches one upload per call (a batch of one), in the
agent's own thread (``blocking=True``). Uploads are never batched through the towers together:
batched inference pads and reduces differently with the batch's composition, so the low bits
of an embedding would depend on which uploads a worker happened to consume together, and a replay
must reproduce every event byte for byte. For the same reason the event carries the upload's
``event_time`` (not the wall clock) and no ``latency_ms`` (null, ``content_enrichment.v2``).
Hashtag suggestions come from the taxonomy's tags and every tag the platform's uploads used
before this post's time: a side input over ``uploads`` (:func:`open_hashtags`), so they do not
depend on which uploads one worker process saw first. Bad media never raises: the post gets an enrichment without image fields and the reason is
logged; a ``media_uri`` outside the media roots is such bad media (:mod:`agents.shared.media`):
it is never opened. Re-delivery gives the same ``event_id`` (derived from the upload's) and the same point
id (the post id), so replays are idempotent.

Point payload: ``post_id``, ``creator_id``, ``kind`` / ``content_type`` (lower case),
``categories`` (top categories), ``hashtags`` (the post's own), ``created_at`` (upload time, epoch
ms), ``quality``, ``alignment``, ``title``, ``caption`` (first 280 characters), ``alt_text``,
``media_uri``. ``published``, ``gate_status``, ``moderation_action`` and ``distribution`` are the
publisher's to set (:data:`agents.shared.search.SEARCH_MARKS`); clip_ai never writes them, and its
upserts keep them (``VectorUpsert.keep``), so a re-run or replay of clip_ai leaves the gates'
marks in place (see :mod:`streams.query.search` for how search treats posts not yet gated).

Collection: the agent opens no store. The worker's vector sink creates the ``content``
collection before its first upsert when it is missing, with the widths of the vectors upserted
(``infra/qdrant/collections.toml``, :class:`streams.sinks.writers.VectorSink`).
"""
from __future__ import annotations

import logging
from typing import Any

from agents.shared.media import MediaRoots
from agents.shared.search import CONTENT_COLLECTION, SEARCH_MARKS
from streams.contracts.agent import (AgentSpec, Context, Event, SideInput, State, derived_event_id,
                                    ms_of)
from streams.contracts.effects import Effect, Emit, VectorUpsert

log = logging.getLogger(__name__)

NAME = "clip_ai"


def load(config: Any):
    """Load the models named in the settings (seconds; no network): a
    :class:`models.clip.enrich.ContentModels`.

    Raises
    ------
    models.clip.head.HeadNotFound, models.clip.head.HeadMismatch
        ``PULSE_CLIP_CATEGORY_HEAD`` names no head, or one trained on other encoders.
    """
    from models.clip.enrich import ClipConfig, ContentModels

    models = ContentModels(ClipConfig.from_settings(config))
    log.info("clip_ai: loaded %s (%s)", models.model, models.model_version)
    return models


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """One upload -> its ``content-enriched`` event and its ``content`` point (``ctx.models``:
    a loaded ``ContentModels``); other topics give nothing. Raises what the models raise for
    this upload (the runtime dead-letters it alone)."""
    if event.topic != "uploads":
        return []
    models = ctx.models
    [enrichment] = models.enrich([event.record], hashtags=ctx.side.get("hashtags"),
                                 resolve_media=MediaRoots.from_settings(ctx.config).resolve)
    return enrichment_effects(event.record, enrichment, models.model, models.model_version)


def _floats(v: Any) -> list[float] | None:
    return None if v is None else [float(x) for x in v]


def enrichment_effects(record: dict[str, Any], e: Any, model: str,
                       model_version: str) -> list[Effect]:
    """The ``content-enriched`` event and the vector point of upload ``record`` enriched as ``e``
    (a :class:`models.clip.enrich.Enrichment`) by ``model`` at ``model_version``. A pure
    function of its arguments: event time is the upload's, ``latency_ms`` is null."""
    event = {
        "event_id": derived_event_id(NAME, record["event_id"]),
        "event_time": ms_of(record["event_time"]),
        "producer": NAME,
        "cause_event_id": record["event_id"],
        "model": model,
        "model_version": model_version,
        "post_id": record["post_id"],
        "creator_id": record["creator_id"],
        "image_embedding": _floats(e.image_embedding),
        "text_embedding": _floats(e.text_embedding),
        "categories": {k: float(v) for k, v in e.categories.items()},
        "alignment_score": e.alignment,
        "quality_score": float(e.quality.get("score", 0.5)),
        "alt_text": e.alt_text,
        "suggested_hashtags": list(e.hashtags),
        "keyframe_count": e.keyframes,
        "latency_ms": None,
    }
    out: list[Effect] = [Emit("content-enriched", event)]
    vectors = {name: v for name, v in (("image", e.image), ("semantic", e.semantic),
                                       ("text", e.text), ("clip_text", e.clip_text))
               if v is not None}
    if vectors:
        payload = {
            "post_id": record["post_id"], "creator_id": record["creator_id"],
            "kind": str(record["kind"]).lower(),
            "content_type": str(record["content_type"]).lower(),
            "categories": e.top_categories,
            "hashtags": [h.lstrip("#").lower() for h in record.get("hashtags") or []],
            "created_at": ms_of(record["event_time"]),
            "quality": float(e.quality.get("score", 0.5)),
            "alignment": e.alignment, "title": record.get("title"),
            "caption": (record.get("caption") or "")[:280], "alt_text": e.alt_text,
            "suggested_hashtags": list(e.hashtags),
            "media_uri": record.get("media_uri"),
        }
        out.append(VectorUpsert(CONTENT_COLLECTION, record["post_id"], vectors, payload,
                                keep=SEARCH_MARKS))
    return out


def open_hashtags(config: Any, models: Any):
    """The side-input state: the platform's hashtags as of each post's time
    (:class:`models.clip.understanding.HashtagHistory`), fed from every upload."""
    return models.hashtag_history()


SPEC = AgentSpec(
    name=NAME,
    topics=("uploads",),
    process=process,
    outputs=("content-enriched",),
    load=load,
    side_inputs=(SideInput("hashtags", "uploads", open_hashtags),),
    doc="Content intelligence: embeddings, categories, alignment, quality, alt-text, hashtags; "
        "vectors into Qdrant.",
    batch_size=32,
    sinks=frozenset({"vectors"}),
    blocking=True,
)

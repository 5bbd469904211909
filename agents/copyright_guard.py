"""Copyright Guard: matches every upload's media against the registered reference works (the
second gate the publisher waits for).

Consumes ``uploads`` and ``review-decisions`` through the worker's consumer group, and
``copyright-references`` as a *side input* (``ctx.side["references"]``, a
:class:`~models.copyright.VersionedReferenceBank`): the runtime reads that whole topic with a
group-less consumer on every worker, whatever partitions it owns, and folds each event in with
``apply`` before each batch (a replay folds the whole topic in before it starts). An upload is
matched against the works registered, and not withdrawn or replaced, *as of its own
event_time*, so a replay decides every upload as the live run did (see
:mod:`models.copyright.versioned` for the exact semantics and the one limit: reference events
that arrive late with an earlier event time). A registration carries its fingerprints
(``pulse copyright register`` computes them) or only a ``media_uri``, which the worker
fingerprints when it applies the event.

Per upload, one event at a time: IMAGE and VIDEO posts (frames, and a video's soundtrack) are
fingerprinted and matched; TEXT posts have nothing to fingerprint and are allowed. Emits one
``CopyrightVerdict`` (version 3: ``latency_ms`` null, since how long a run took is not part of a
reproducible verdict) on ``copyright-verdicts`` and writes one ``copyright_matches`` row per
match. Bad media (unreadable, truncated, unsupported, over ``PULSE_MEDIA_MAX_BYTES``, too short)
gets the verdict that says so (``models.copyright.BAD_MEDIA_ACTION``), never a crash; so does a
``media_uri`` outside the media roots (:mod:`agents.shared.media`), and a ``media_uri``-only
registration outside them is skipped with the reason logged.
``blocking=True``: the runtime runs batches in the agent's own thread.

A REVIEW verdict (borderline evidence, media that could not be checked) puts a task in the
``copyright`` review queue (:mod:`agents.shared.review_tasks`); the moderator's decision, consumed
from ``review-decisions``, becomes the final verdict (model ``human-review``, ``latency_ms`` the
decision's event time minus the task's creation time).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from agents.shared.copyright import QUEUE, match_rows, review_effects
from agents.shared.media import MediaRoots, upload_media
from agents.shared.review_tasks import (HUMAN_MODEL, close_task_effects, decision_queue,
                                        decision_reasons, dt_of, task_created_ms)
from streams.contracts.agent import AgentSpec, Context, Event, SideInput, State
from streams.contracts.effects import Effect, Emit

log = logging.getLogger("pulse.copyright_guard")

NAME = "copyright_guard"
REFERENCES = "copyright-references"
FINGERPRINTS = "content-fingerprints"
DEFAULT_MEDIA_MAX_BYTES = 150 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What ``load`` gives ``process`` (``ctx.models``): the settings it needs."""

    media_max_bytes: int = DEFAULT_MEDIA_MAX_BYTES


def load(config: Any) -> Limits:
    """The settings ``process`` reads (``PULSE_MEDIA_MAX_BYTES``); the reference bank is a side
    input, not a model."""
    return Limits(media_max_bytes=getattr(config, "media_max_bytes", None)
                  or DEFAULT_MEDIA_MAX_BYTES)


def open_references(config: Any, models: Any):  # noqa: ARG001 - nothing to configure
    """The side state of ``copyright-references``: an empty
    :class:`~models.copyright.VersionedReferenceBank` that fingerprints ``media_uri``-only
    registrations itself, from inside the media roots of ``config`` only."""
    from models.copyright import VersionedReferenceBank

    return VersionedReferenceBank(resolve_media=MediaRoots.from_settings(config).resolve)


def features_and_decision(record: dict[str, Any], references, at_ms: int, limits: Limits,
                          roots: MediaRoots):
    """``(QueryFeatures or None, CopyrightDecision)`` for one upload against the references valid
    at ``at_ms``: the media fingerprinted once (:func:`models.copyright.query_features`), then
    matched. Features are None for a text post and for media that could not be read (the
    decision then says why; so does a ``media_uri`` outside ``roots``). The decision's
    ``latency_ms`` is this run's: it is not emitted."""
    from models.copyright import (CopyrightDecision, bad_media_decision, own_work_allowed,
                                  query_features)

    if record["kind"] == "TEXT":
        return None, CopyrightDecision(matched=False, action="ALLOW", modality=None,
                                       reasons=["text post: no media to fingerprint"])
    try:
        features = query_features(upload_media(record, limits.media_max_bytes, roots))
    except (ValueError, OSError) as exc:  # MediaError is a ValueError
        return None, bad_media_decision(str(exc))
    metadata = {"title": record.get("title"), "caption": record.get("caption"),
                "hashtags": list(record.get("hashtags") or [])}
    d = references.decision_for_features(features, at_ms, metadata=metadata)
    return features, own_work_allowed(d, record["creator_id"])


def decision(record: dict[str, Any], references, at_ms: int, limits: Limits, roots: MediaRoots):
    """The :class:`~models.copyright.CopyrightDecision` for one upload against the references
    valid at ``at_ms`` (its ``latency_ms`` is this run's: it is not emitted)."""
    return features_and_decision(record, references, at_ms, limits, roots)[1]


def fingerprint_event(record: dict[str, Any], features, ctx: Context) -> dict[str, Any]:
    """The ``ContentFingerprint`` event of an upload's features (``content-fingerprints``): id
    derived from the upload's, time the upload's."""
    from models.copyright import MODEL_NAME, MODEL_VERSION, to_fingerprints

    return {"event_id": ctx.derive_id("fingerprints"), "event_time": dt_of(ctx.event_time_ms),
            "producer": NAME, "cause_event_id": record["event_id"], "model": MODEL_NAME,
            "model_version": MODEL_VERSION, "post_id": record["post_id"],
            "creator_id": record["creator_id"], "media_kind": features.modality,
            "fingerprints": to_fingerprints(features)}


def on_upload(record: dict[str, Any], ctx: Context) -> list[Effect]:
    from models.copyright import MODEL_NAME, MODEL_VERSION

    at = ctx.event_time_ms
    features, d = features_and_decision(record, ctx.side["references"], at,
                                        ctx.models or Limits(), MediaRoots.from_settings(ctx.config))
    modality = d.modality or ("TEXT" if record["kind"] == "TEXT" else None)
    matches = []
    for m in d.matches:
        row = m.as_avro()
        row.update(modality=m.modality, title=m.title or None)
        matches.append(row)
    verdict = {
        "event_id": ctx.derive_id(), "event_time": dt_of(at), "producer": NAME,
        "cause_event_id": record["event_id"], "model": MODEL_NAME, "model_version": MODEL_VERSION,
        "post_id": record["post_id"], "creator_id": record["creator_id"], "action": d.action,
        "matches": matches, "reasons": list(d.reasons), "latency_ms": None,
        "modality": modality,
    }
    effects: list[Effect] = [Emit("copyright-verdicts", verdict)]
    if features is not None:
        effects.append(Emit(FINGERPRINTS, fingerprint_event(record, features, ctx)))
    if d.action == "REVIEW":
        effects += review_effects(record, verdict, d, agent=NAME, text=record.get("caption"),
                                  media_uri=record.get("media_uri"))
    effects += match_rows(record["post_id"], d, at, ctx.timestamp_us)
    return effects


def on_decision(d: dict[str, Any], ctx: Context) -> list[Effect]:
    """A moderator's decision on a ``copyright`` task -> the final verdict (model
    ``human-review``, which the publisher ranks above automatic verdicts). ``latency_ms`` is the
    decision's ``review_ms``, else its event time minus the task's creation time: both come from
    events, so a replay gives the same value."""
    if decision_queue(d) != QUEUE:
        return []
    at = ctx.event_time_ms
    verdict = {
        "event_id": ctx.derive_id(), "event_time": dt_of(at), "producer": NAME,
        "cause_event_id": d["event_id"], "model": HUMAN_MODEL, "model_version": d["reviewer_id"],
        "post_id": d["post_id"], "creator_id": d.get("author_id") or "", "action": d["action"],
        "matches": [], "reasons": decision_reasons(d),
        "latency_ms": int(d.get("review_ms") or max(0, at - task_created_ms(d["task_id"]))),
        "modality": None,
    }
    return [Emit("copyright-verdicts", verdict)] + close_task_effects(d)


def process(state: State, event: Event, ctx: Context) -> list[Effect]:  # noqa: ARG001 - stateless
    """One upload -> its verdict (and review task, match rows); one ``copyright`` review decision
    -> the final verdict; anything else -> nothing."""
    if event.topic == "uploads":
        return on_upload(event.record, ctx)
    if event.topic == "review-decisions":
        return on_decision(event.record, ctx)
    return []


SPEC = AgentSpec(
    name=NAME,
    topics=("uploads", "review-decisions"),
    process=process,
    outputs=("copyright-verdicts", "review-queue", FINGERPRINTS),
    doc="Matches uploads against registered works (audio, image, video) as of each upload's "
        "event time; gate 2 of publishing. Reads copyright-references as a side input.",
    batch_size=32,
    sinks=frozenset({"cassandra"}),
    side_inputs=(SideInput(name="references", topic=REFERENCES, open=open_references),),
    load=load,
    blocking=True,
)

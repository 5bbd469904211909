"""Content Guard: tiered moderation of every upload and comment before it reaches distribution.

Consumes ``uploads`` (caption, title and hashtags; the image, or a video's keyframes),
``interactions`` (the text of COMMENT events: a comment is content too) and
``review-decisions`` (human moderators). Emits ``moderation-verdicts`` (the first gate the
publisher waits for) and ``review-queue`` tasks, and writes the ``moderation_log``,
``review_tasks`` and ``review_pending`` views.

Tiers (models in :mod:`models.moderation`): the fast tier scores every text of the batch; the
texts it cannot decide (its calibrated uncertainty band) go, as one batch, to the heavy tier;
what the heavy tier cannot decide becomes a REVIEW verdict plus a review task. Images go through
open_nsfw, videos through their keyframes. The whole batch runs in the agent's own thread
(``blocking=True``): model inference never blocks the worker's event loop.

Bad media (unreadable, truncated, unsupported, over ``PULSE_MEDIA_MAX_BYTES``, a decompression
bomb) gets a BLOCK verdict whose reason says what is wrong with the file: the post cannot be
shown as uploaded, and nothing is lost (the upload stays on its topic; a fixed re-upload is a new
event).

A moderator's decision on a task of the ``moderation`` queue becomes the final HUMAN-tier verdict
for the post (or comment), marks the task DECIDED and removes it from the pending queue (see
:mod:`agents.review_tasks`).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from streams.contracts.effects import Effect, Emit, Upsert

from streams.contracts.agent import AgentSpec, derived_event_id
from agents.review_tasks import (close_task_effects, decision_queue, decision_reasons, dt_of, ms_of,
                           task_created_ms, task_effects)

#: ``model`` of verdicts that a human moderator decided (``model_version`` is the moderator id).
HUMAN_MODEL = "human-review"

log = logging.getLogger("pulse.content_guard")

NAME = "content_guard"
QUEUE = "moderation"


def upload_text(record: dict[str, Any]) -> str:
    """The text of an upload that is moderated: title, caption and hashtags (as ``#tag``)."""
    parts = [record.get("title") or "", record.get("caption") or ""]
    parts += [f"#{h.lstrip('#')}" for h in record.get("hashtags") or []]
    return "\n".join(p for p in parts if p)


def media_path(uri: str | None) -> str | None:
    """A local path from an upload's ``media_uri`` (``file://`` URI or plain path).

    Raises
    ------
    ValueError
        A scheme Pulse cannot read here (``http``, ``s3``, ...): the message says so.
    """
    if not uri:
        return None
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    if "://" in uri:
        raise ValueError(f"media_uri scheme of {uri!r} is not supported (use file:// or a path)")
    return uri


def check_media_size(path: str, max_bytes: int) -> None:
    """Refuse media over ``PULSE_MEDIA_MAX_BYTES`` before decoding it.

    Raises
    ------
    MediaError
        The file is larger than ``max_bytes`` (the message gives both sizes in MB).
    OSError
        The file cannot be read (missing, no permission).
    """
    import os

    from models.fingerprints import MediaError

    size = os.path.getsize(path)
    if size > max_bytes:
        raise MediaError(f"file too large: {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB "
                         f"limit (PULSE_MEDIA_MAX_BYTES)")


def upload_media(record: dict[str, Any], max_bytes: int) -> str:
    """The local path of an IMAGE or VIDEO upload's media, checked against the size limit.

    Raises
    ------
    MediaError
        No ``media_uri``, or the file is over ``max_bytes``.
    ValueError
        A ``media_uri`` scheme Pulse cannot read (:func:`media_path`).
    OSError
        The file cannot be read.
    """
    from models.fingerprints import MediaError

    path = media_path(record.get("media_uri"))
    if path is None:
        raise MediaError(f"a {record['kind'].lower()} post without media_uri")
    check_media_size(path, max_bytes)
    return path


class ContentGuard:
    """The agent's core over a loaded :class:`models.moderation.Moderator`."""

    def __init__(self, moderator, max_media_bytes: int):
        self.moderator = moderator
        self.max_media_bytes = max_media_bytes

    # -- batch ----------------------------------------------------------------------------------

    def process_batch(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        out: list[Any] = [None] * len(items)
        texts: list[tuple[int, str]] = []
        for i, (topic, record) in enumerate(items):
            try:
                if topic == "review-decisions":
                    out[i] = self.on_decision(record)
                elif topic == "interactions":
                    if record.get("type") == "COMMENT" and (record.get("comment_text") or "").strip():
                        texts.append((i, record["comment_text"]))
                    else:
                        out[i] = []
                elif topic == "uploads":
                    texts.append((i, upload_text(record)))
                else:
                    out[i] = []
            except Exception as exc:  # noqa: BLE001 - dead-lettered alone by the runtime
                out[i] = exc
        if texts:
            text_verdicts = self._moderate_texts([t for _, t in texts])
            for (i, _), tv in zip(texts, text_verdicts):
                topic, record = items[i]
                try:
                    out[i] = self.on_item(topic, record, tv)
                except Exception as exc:  # noqa: BLE001
                    out[i] = exc
        return out

    def _moderate_texts(self, texts: list[str]) -> list[Any]:
        """Fast tier on all texts, heavy tier (one batch) on those the fast tier left open."""
        verdicts = list(self.moderator.fast(texts))
        open_ = [i for i, v in enumerate(verdicts) if v is None]
        if open_:
            for i, v in zip(open_, self.moderator.heavy([texts[i] for i in open_])):
                verdicts[i] = v
        return verdicts

    def _moderate_media(self, record: dict[str, Any]):
        """The media verdict of an IMAGE or VIDEO upload; bad media -> a BLOCK verdict."""
        kind = record.get("kind")
        if kind not in ("IMAGE", "VIDEO"):
            return None
        start = time.perf_counter()
        try:
            path = upload_media(record, self.max_media_bytes)
            if kind == "IMAGE":
                return self.moderator.moderate_image(path)
            return self.moderator.moderate_video(path)
        except (ValueError, OSError) as exc:  # MediaError is a ValueError
            return self.moderator.bad_media(str(exc), (time.perf_counter() - start) * 1000)

    # -- one item -------------------------------------------------------------------------------

    def on_item(self, topic: str, record: dict[str, Any], text_verdict) -> list[Effect]:
        if topic == "uploads":
            from models.moderation import combine

            media = self._moderate_media(record)
            verdict = text_verdict if media is None else combine([text_verdict, media])
            return self._verdict_effects(record, verdict, post_id=record["post_id"],
                                         author_id=record["creator_id"], comment_id=None,
                                         text=upload_text(record), media_uri=record.get("media_uri"))
        return self._verdict_effects(record, text_verdict, post_id=record["post_id"],
                                     author_id=record["user_id"], comment_id=record.get("comment_id"),
                                     text=record.get("comment_text"), media_uri=None)

    def _verdict_effects(self, cause: dict[str, Any], v, *, post_id: str, author_id: str,
                         comment_id: str | None, text: str | None, media_uri: str | None) -> list[Effect]:
        at = ms_of(cause["event_time"])
        scores = {k: float(s) for k, s in v.scores.items()}
        verdict = {
            "event_id": derived_event_id(NAME, cause["event_id"]), "event_time": dt_of(at),
            "producer": NAME, "cause_event_id": cause["event_id"], "model": v.model,
            "model_version": v.model_version, "post_id": post_id, "author_id": author_id,
            "comment_id": comment_id, "action": v.action, "tier": v.tier, "scores": scores,
            "reasons": list(v.reasons), "latency_ms": int(round(v.latency_ms)),
            "review_task_id": None,
        }
        effects: list[Effect] = []
        if v.action == "REVIEW":
            top = max(scores.values(), default=0.0)
            priority = "URGENT" if scores.get("threat", 0.0) >= 0.5 else \
                "HIGH" if top >= 0.8 else "NORMAL"
            verdict["review_task_id"], effects = task_effects(
                agent=NAME, queue=QUEUE, cause=cause, verdict_event_id=verdict["event_id"],
                model=v.model, model_version=v.model_version, post_id=post_id, author_id=author_id,
                comment_id=comment_id, scores=scores, reasons=verdict["reasons"], text=text,
                media_uri=media_uri, priority=priority)
        return [Emit("moderation-verdicts", verdict), self._log_row(verdict, at)] + effects

    @staticmethod
    def _log_row(verdict: dict[str, Any], at: int) -> Upsert:
        return Upsert("moderation_log", {
            "post_id": verdict["post_id"], "decided_at": at, "event_id": verdict["event_id"],
            "action": verdict["action"], "tier": verdict["tier"],
            "category_scores": verdict["scores"], "reasons": verdict["reasons"],
            "model": verdict["model"], "model_version": verdict["model_version"]}, at * 1000)

    def on_decision(self, d: dict[str, Any]) -> list[Effect]:
        """A moderator's decision on a ``moderation`` task -> the final HUMAN verdict; the task
        leaves the queue. Decisions on other queues belong to other gates."""
        if decision_queue(d) != QUEUE:
            return []
        at = ms_of(d["event_time"])
        created = task_created_ms(d["task_id"])
        verdict = {
            "event_id": derived_event_id(NAME, d["event_id"]), "event_time": dt_of(at),
            "producer": NAME, "cause_event_id": d["event_id"], "model": HUMAN_MODEL,
            "model_version": d["reviewer_id"], "post_id": d["post_id"],
            "author_id": d.get("author_id") or "", "comment_id": d.get("comment_id"),
            "action": d["action"], "tier": "HUMAN", "scores": {}, "reasons": decision_reasons(d),
            "latency_ms": int(d.get("review_ms") or max(0, at - created)),
            "review_task_id": d["task_id"],
        }
        return [Emit("moderation-verdicts", verdict), self._log_row(verdict, at)] + close_task_effects(d)


def setup(settings, tables) -> ContentGuard:  # noqa: ARG001 - no tables
    """Load the moderation model named by ``PULSE_MODERATION_MODEL`` (default: the shipped one)."""
    from models.moderation import load_moderator

    return ContentGuard(load_moderator(settings.moderation_model), settings.media_max_bytes)


SPEC = AgentSpec(
    name=NAME,
    topics=("uploads", "interactions", "review-decisions"),
    process=lambda topic, record: [],  # unused: ``setup`` builds the stateful core
    doc="Tiered moderation of uploads and comments; review queue round trip (gate 1 of publishing).",
    batch_size=64,
    sinks=frozenset({"cassandra"}),
    setup=setup,
    blocking=True,
)

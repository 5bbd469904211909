"""The review queue over HTTP, for moderators (the /moderation page and any tool of theirs).

Every endpoint needs role ``moderator`` (:func:`~streams.api.app.require_role`): a moderator's
browser session (``POST /v1/session``) or bearer token (``pulse token NAME --role moderator``).
They call the functions ``pulse review`` calls (:mod:`streams.query.review`) on the process's read
side, so a decision here is the decision ``pulse review decide`` publishes: claimed in Cassandra
(of two moderators deciding one task, one wins, the other gets 409), then published on
``review-decisions`` for the gate that asked. The decision's ``reviewer_id`` is the caller's name,
never a field of the body.

- ``GET /v1/review/tasks?queue=&limit=``: pending tasks, oldest first, with the models' scores
  and reasons, the text, and ``media_url`` when the task has media;
- ``POST /v1/review/tasks/{task_id}/decision`` with ``{"action", "categories", "note"}``;
- ``GET /v1/review/tasks/{task_id}/media``: the task's media file, resolved only through the
  media roots (:class:`~streams.contracts.media.MediaRoots`, the check the gates make): a
  ``media_uri`` outside them is answered 404 with the reason, never with the file;
- ``GET /v1/review/categories``: the moderation policy's categories (names and descriptions)
  the decision may name.
"""
from __future__ import annotations

import functools
import mimetypes
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from streams.api.app import context, require_role
from streams.api.auth import Principal
from streams.api.errors import ApiError

router = APIRouter(prefix="/v1/review", tags=["review"])
moderator = require_role("moderator")

MEDIA_TYPES = ("image/", "video/", "audio/")
"""Media the endpoint serves inline; any other file is refused (the store takes only these)."""


class Decision(BaseModel):
    """A moderator's decision on one task."""

    action: str = Field(..., description="ALLOW, RESTRICT or BLOCK", max_length=16)
    categories: list[str] = Field(default_factory=list, max_length=20,
                                  description="policy categories the decision is about (GET /v1/review/categories)")
    note: str | None = Field(None, max_length=2000, description="free text for the record")


@contextmanager
def _views() -> Iterator[None]:
    """Unreachable views (as the reads answer them) or broker: 503 with the reason."""
    from streams.api.reads import _views as reads_views
    from streams.producer import PublishError

    with reads_views():
        try:
            yield
        except PublishError as exc:
            raise ApiError(503, f"the decision was not published ({exc}); the task is still pending: "
                                f"decide it again once the broker answers") from None


def _ms(t: datetime | None) -> int | None:
    return None if t is None else int(t.replace(tzinfo=timezone.utc).timestamp() * 1000)


def task_json(task: dict[str, Any]) -> dict[str, Any]:
    """A ``review_tasks`` row as the API shows it: times as UTC epoch ms (``created_at_ms``,
    ``decided_at_ms``), ``scores`` sorted highest first as ``[{"category", "score"}]``, and
    ``media_url`` (this API's media endpoint) when the task has media."""
    scores = sorted((task.get("scores") or {}).items(), key=lambda kv: -kv[1])
    return {
        "task_id": task["task_id"], "queue": task.get("queue") or "moderation", "post_id": task.get("post_id"),
        "comment_id": task.get("comment_id"), "author_id": task.get("author_id"),
        "priority": task.get("priority"), "suggested_action": task.get("suggested_action"),
        "scores": [{"category": k, "score": v} for k, v in scores], "reasons": list(task.get("reasons") or []),
        "text": task.get("text"), "media_uri": task.get("media_uri"),
        "media_url": f"/v1/review/tasks/{task['task_id']}/media" if task.get("media_uri") else None,
        "created_at_ms": _ms(task.get("created_at")), "status": task.get("status"),
        "decision": task.get("decision"), "decided_by": task.get("decided_by"),
        "decided_at_ms": _ms(task.get("decided_at")),
    }


@functools.lru_cache(maxsize=1)
def policy_categories() -> tuple[tuple[str, str], ...]:
    """``(name, description)`` of each category of the moderation policy Content Guard uses
    (``models/moderation/policy.v1.toml``)."""
    from models.moderation.policy import load_policy

    return tuple((name, c.description) for name, c in load_policy().categories.items())


@router.get("/categories", summary="The policy categories a decision may name.")
def get_categories(principal: Principal = Depends(moderator)) -> dict:
    return {"categories": [{"name": n, "description": d} for n, d in policy_categories()]}


@router.get("/tasks", summary="Pending review tasks, oldest first.")
def get_tasks(request: Request, queue: str | None = Query(None, description="moderation or copyright (default: both)"),
              limit: int = Query(50, ge=1, le=500), principal: Principal = Depends(moderator)) -> dict:
    """Each task with the models' scores (highest first), reasons, text and media URL
    (:func:`task_json`)."""
    from streams.query.review import ReviewError, pending_tasks

    with _views():
        try:
            tasks = pending_tasks(context(request).read_side, limit, queue)
        except ReviewError as exc:
            raise ApiError(422, f"queue: {exc}") from None
    return {"tasks": [task_json(t) for t in tasks]}


@router.post("/tasks/{task_id}/decision", summary="Decide a pending task (as `pulse review decide`).")
def post_decision(task_id: str, decision: Decision, request: Request,
                  principal: Principal = Depends(moderator)) -> dict:
    """Claims the task and publishes the decision; answers the published ``ReviewDecision``
    (times as epoch ms). 404 unknown task, 409 already decided, 422 a bad action or category."""
    from streams.query.review import DECISION_ACTIONS, AlreadyDecided, UnknownTask, decide

    action = decision.action.upper()
    if action not in DECISION_ACTIONS:
        raise ApiError(422, f"action: {decision.action!r} is not one of {', '.join(DECISION_ACTIONS)}")
    known = {n for n, _ in policy_categories()}
    unknown = [c for c in decision.categories if c not in known]
    if unknown:
        raise ApiError(422, f"categories: {unknown[0]!r} is not a policy category ({', '.join(sorted(known))})")
    with _views():
        try:
            published = decide(context(request).read_side, task_id, action, reviewer_id=principal.name,
                               categories=list(dict.fromkeys(decision.categories)), note=decision.note or None)
        except UnknownTask as exc:
            raise ApiError(404, str(exc)) from None
        except AlreadyDecided as exc:
            raise ApiError(409, str(exc)) from None
    return {k: (_ms(v) if isinstance(v, datetime) else v) for k, v in published.items()}


@router.get("/tasks/{task_id}/media", summary="A task's media file (only from the media roots).",
            response_class=FileResponse)
def get_media(task_id: str, request: Request, principal: Principal = Depends(moderator)) -> FileResponse:
    """The file the task's ``media_uri`` names, resolved through the media roots; 404 with the
    reason for a task without media, a URI outside the roots or a missing file, 415 for a file
    that is not an image, video or audio."""
    from streams.contracts.media import MediaRefused, MediaRoots
    from streams.query.review import read_task

    ctx = context(request)
    with _views():
        task = read_task(ctx.read_side, task_id)
    if task is None:
        raise ApiError(404, f"no review task {task_id!r}")
    if not task.get("media_uri"):
        raise ApiError(404, f"review task {task_id} has no media")
    try:
        path = MediaRoots.from_settings(ctx.settings).resolve(task["media_uri"])
    except MediaRefused as exc:
        raise ApiError(404, f"the media of review task {task_id} is not served: {exc}") from None
    if not path.is_file():
        raise ApiError(404, f"the media of review task {task_id} is not stored (any more)")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if not kind.startswith(MEDIA_TYPES):
        raise ApiError(415, f"the media of review task {task_id} is {kind}, not an image, video or audio")
    return FileResponse(path, media_type=kind, headers={"X-Content-Type-Options": "nosniff",
                                                        "Cache-Control": "private, max-age=300",
                                                        "Content-Security-Policy": "default-src 'none'; sandbox"})

"""Human review tasks shared by the gates: what a REVIEW verdict writes (a ``review-queue`` event
and the ``review_tasks`` / ``review_pending`` rows) and what a moderator's decision closes.

Each gate owns a queue (``moderation`` for Content Guard, ``copyright`` for Copyright Guard);
``pulse review decide`` copies the task's queue into the ``ReviewDecision``, and only the owning
gate turns the decision into its final verdict. Task ids start with the task's creation time
(``<epoch ms, 13 digits>-<12 hex>``): they sort by age and the queue row can be found from the
id alone.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from streams.contracts.effects import Delete, Effect, Emit, Upsert

from streams.contracts.agent import derived_event_id, dt_of, ms_of  # noqa: F401 - re-exported for the gates

#: ``model`` of verdicts that a human moderator decided (``model_version`` is the moderator id).
HUMAN_MODEL = "human-review"
#: How long a review task may wait before it is overdue (ReviewTask.deadline).
REVIEW_DEADLINE = timedelta(hours=24)
QUEUES = ("moderation", "copyright")


def review_task_id(agent: str, created_ms: int, cause_event_id: str) -> str:
    """``<created epoch ms, 13 digits>-<12 hex>``: sortable by age, deterministic per cause."""
    return f"{created_ms:013d}-{derived_event_id(agent, cause_event_id, 'review')[-12:]}"


def task_created_ms(task_id: str) -> int:
    """The creation time encoded in a review task id (epoch ms).

    Raises
    ------
    ValueError
        ``task_id`` is not a Pulse review task id.
    """
    head, sep, tail = task_id.partition("-")
    if not sep or len(head) != 13 or not head.isdigit() or len(tail) != 12:
        raise ValueError(f"{task_id!r} is not a review task id (<13-digit epoch ms>-<12 hex>)")
    return int(head)


def decision_queue(decision: dict[str, Any]) -> str:
    """The queue a ``ReviewDecision`` belongs to (null in older events: ``moderation``)."""
    return decision.get("queue") or "moderation"


def task_effects(*, agent: str, queue: str, cause: dict[str, Any], verdict_event_id: str,
                 model: str, model_version: str, post_id: str, author_id: str,
                 comment_id: str | None, scores: dict[str, float], reasons: list[str],
                 text: str | None, media_uri: str | None, priority: str,
                 suggested_action: str | None = None) -> tuple[str, list[Effect]]:
    """``(task_id, effects)`` for a REVIEW verdict caused by event ``cause``."""
    at = ms_of(cause["event_time"])
    task_id = review_task_id(agent, at, cause["event_id"])
    task = {
        "event_id": derived_event_id(agent, cause["event_id"], "review"), "event_time": dt_of(at),
        "producer": agent, "cause_event_id": verdict_event_id, "model": model,
        "model_version": model_version, "task_id": task_id, "queue": queue, "post_id": post_id,
        "author_id": author_id, "comment_id": comment_id, "priority": priority,
        "suggested_action": suggested_action, "scores": scores, "reasons": reasons, "text": text,
        "media_uri": media_uri, "deadline": dt_of(at) + REVIEW_DEADLINE,
    }
    ts = at * 1000
    return task_id, [
        Emit("review-queue", task),
        Upsert("review_tasks", {
            "task_id": task_id, "queue": queue, "post_id": post_id, "author_id": author_id,
            "comment_id": comment_id, "priority": priority, "suggested_action": suggested_action,
            "scores": scores, "reasons": reasons, "text": text, "media_uri": media_uri,
            "created_at": at, "status": "PENDING"}, ts),
        Upsert("review_pending", {"queue": queue, "created_at": at, "task_id": task_id,
                                  "post_id": post_id, "priority": priority}, ts),
    ]


def decision_reasons(d: dict[str, Any]) -> list[str]:
    """Human-readable reasons of a moderator's decision."""
    reasons = [f"moderator {d['reviewer_id']}: {d['action'].lower()}"]
    reasons += [f"category: {c}" for c in d.get("categories") or []]
    if d.get("note"):
        reasons.append(f"note: {d['note']}")
    return reasons


def close_task_effects(d: dict[str, Any]) -> list[Effect]:
    """The task of decision ``d`` marked DECIDED and removed from its pending queue."""
    at = ms_of(d["event_time"])
    ts = at * 1000
    return [
        Upsert("review_tasks", {"task_id": d["task_id"], "status": "DECIDED",
                                "decision": d["action"], "decided_by": d["reviewer_id"],
                                "decided_at": at, "note": d.get("note")}, ts),
        Delete("review_pending", {"queue": decision_queue(d), "created_at": task_created_ms(d["task_id"]),
                                  "task_id": d["task_id"]}, ts),
    ]

"""What a copyright verdict writes besides the verdict, shared by copyright_guard (at upload
time) and copyright_rescan (late matches): the ``copyright_matches`` rows and, for a REVIEW
verdict, the task in the ``copyright`` review queue."""
from __future__ import annotations

from typing import Any

from agents.shared.review_tasks import task_effects
from streams.contracts.effects import Effect, Upsert

#: The review queue Copyright Guard owns: its decisions come back to copyright_guard.
QUEUE = "copyright"


def match_rows(post_id: str, d, at_ms: int, timestamp_us: int) -> list[Effect]:
    """One ``copyright_matches`` row per match of decision ``d`` (a
    :class:`~models.copyright.CopyrightDecision`) for ``post_id``, matched at ``at_ms`` (UTC
    epoch ms), written with ``timestamp_us``; ``distance`` is the Hamming distance (bits) for
    PDQ, else the bit error rate."""
    from models.copyright import MODEL_VERSION

    rows: list[Effect] = []
    for m in d.matches:
        distance = m.hamming_distance if m.hamming_distance is not None else m.bit_error_rate
        span = None
        if m.matched_ms is not None:
            span = (f"upload {m.upload_offset_ms or 0} ms / reference "
                    f"{m.reference_offset_ms or 0} ms, {m.matched_ms} ms long")
        rows.append(Upsert("copyright_matches", {
            "post_id": post_id, "reference_id": m.reference_id,
            "modality": m.modality, "distance": None if distance is None else float(distance),
            "matched_span": span, "action": d.action, "matched_at": at_ms,
            "model_version": MODEL_VERSION}, timestamp_us))
    return rows


def review_effects(cause: dict[str, Any], verdict: dict[str, Any], d, *, agent: str,
                   text: str | None = None, media_uri: str | None = None) -> list[Effect]:
    """The ``copyright`` review task of a REVIEW ``verdict`` (a ``CopyrightVerdict`` record) whose
    decision is ``d``: scored by the best match's similarity. ``cause`` (``event_id``,
    ``event_time``) names the task and its creation time: one task per cause."""
    from models.copyright import MODEL_NAME, MODEL_VERSION

    best = d.matches[0] if d.matches else None
    scores = {} if best is None else {f"similarity:{best.reference_id}": float(best.similarity)}
    _, effects = task_effects(
        agent=agent, queue=QUEUE, cause=cause, verdict_event_id=verdict["event_id"],
        model=MODEL_NAME, model_version=MODEL_VERSION, post_id=verdict["post_id"],
        author_id=verdict["creator_id"], comment_id=None, scores=scores,
        reasons=list(d.reasons), text=text, media_uri=media_uri, priority="NORMAL")
    return effects

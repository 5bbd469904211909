"""Content Guard: tiered moderation of every upload and comment before it reaches distribution.

Consumes ``uploads`` (caption, title and hashtags; the image, or a video's keyframes),
``interactions`` (the text of COMMENT events: a comment is content too) and
``review-decisions`` (human moderators). Emits ``moderation-verdicts`` (the first gate the
publisher waits for) and ``review-queue`` tasks, and writes the ``moderation_log``,
``review_tasks`` and ``review_pending`` views.

Tiers (models in :mod:`models.moderation`, loaded once per worker by :func:`load`): an event's
text goes through the fast tier; only if the fast tier leaves it open (its calibrated
uncertainty band) does it go to the heavy tier; what the heavy tier cannot decide becomes a
REVIEW verdict plus a review task. Images go through open_nsfw, videos through their keyframes.
The runtime runs ``process`` in the agent's own thread (``blocking=True``): model inference never
blocks the worker's event loop.

Texts are moderated one per call (a batch of one), never batched across the events of a
consumed batch: batched transformer inference pads every text to the longest of its batch, which
changes the low bits of the scores with the batch's composition, and a replay (which batches
differently) could then flip a decision that sits at a threshold. A replay must reproduce every
verdict byte for byte, so throughput gives way to determinism here. For the same reason machine
verdicts carry no ``latency_ms`` (null, ``moderation_verdict.v2``): a measurement of the run is
not a fact about the content.

Bad media (unreadable, truncated, unsupported, over ``PULSE_MEDIA_MAX_BYTES``, a decompression
bomb, or a ``media_uri`` outside the media roots: another path, ``..``, a symlink out of a root,
another scheme, an internal address, :mod:`agents.shared.media`) gets a BLOCK verdict whose
reason says what is wrong with the file: the post cannot be
shown as uploaded, and nothing is lost (the upload stays on its topic; a fixed re-upload is a new
event).

Reports: when :data:`REPORT_THRESHOLD` distinct users have REPORTed a post (counted by the
``reports`` side input over ``interactions``, as of each report's time), the post goes to the
``moderation`` review queue (:func:`report_effects`); a moderator's BLOCK then takes a published
post down (the publisher's ``takedowns``).

A moderator's decision on a task of the ``moderation`` queue becomes the final HUMAN-tier verdict
for the post (or comment), marks the task DECIDED and removes it from the pending queue (see
:mod:`agents.shared.review_tasks`); its ``latency_ms`` is the review time (the decision's
``review_ms``, else its event time minus the task's creation time), a fact of the events.
Decisions on other queues belong to other gates and are ignored.

Ids come from the causes (a verdict's ``event_id`` from its cause's), event times from the
causes' event times, so re-delivery and replay give the same events and rows.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from agents.shared.media import MediaRoots, upload_media
from agents.shared.review_tasks import (HUMAN_MODEL, close_task_effects, decision_queue,
                                        decision_reasons, dt_of, ms_of, task_created_ms,
                                        task_effects)
from streams.contracts.agent import AgentSpec, Context, Event, SideInput, State, derived_event_id
from streams.contracts.effects import Effect, Emit, Upsert

NAME = "content_guard"
QUEUE = "moderation"
VERDICTS_TOPIC = "moderation-verdicts"
#: Distinct users whose REPORTs send a post to the review queue (the usual community-flag
#: threshold of a small platform; one report is often a disagreement, several rarely are).
REPORT_THRESHOLD = 3


class ReportLedger:
    """Who reported which post, and when (side state over ``interactions``; only REPORT events
    are kept). Thread-safe."""

    def __init__(self) -> None:
        self._reports: dict[str, dict[str, tuple[int, str, str | None]]] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``interactions`` record in (REPORTs only; a user's earliest report counts)."""
        if record.get("type") != "REPORT":
            return
        item = (ms_of(record["event_time"]), record["event_id"], record.get("report_reason"))
        with self._lock:
            users = self._reports.setdefault(record["post_id"], {})
            old = users.get(record["user_id"])
            if old is None or item[:2] < old[:2]:
                users[record["user_id"]] = item

    def first(self, post_id: str, n: int, as_of_ms: int,
              extra: tuple[str, tuple[int, str, str | None]] | None = None) -> list[tuple]:
        """The first ``n`` distinct reporters' ``(at, event_id, reason, user)`` at or before
        ``as_of_ms`` (with ``extra = (user, item)`` counted too), oldest first."""
        with self._lock:
            users = dict(self._reports.get(post_id, {}))
        if extra is not None and (extra[0] not in users or extra[1][:2] < users[extra[0]][:2]):
            users[extra[0]] = extra[1]
        items = sorted((at, eid, reason, u) for u, (at, eid, reason) in users.items() if at <= as_of_ms)
        return items[:n]


def _open_reports(config: Any, models: Any) -> ReportLedger:
    return ReportLedger()


def report_effects(record: dict[str, Any], ledger: ReportLedger | None) -> list[Effect]:
    """A REPORT interaction: once :data:`REPORT_THRESHOLD` distinct users have reported the post
    (as of this event), the post's review task (queue ``moderation``). The task is a function of
    the first reports alone (id from the post and the time the threshold was reached, cause the
    report that reached it), so every later report re-emits the identical task, which the views
    and consumers take once."""
    at = ms_of(record["event_time"])
    mine = (at, record["event_id"], record.get("report_reason"))
    if ledger is None:  # no side input (a test calling process alone): this report only
        ledger = ReportLedger()
    first = ledger.first(record["post_id"], REPORT_THRESHOLD, at, extra=(record["user_id"], mine))
    if len(first) < REPORT_THRESHOLD:
        return []
    reached_at, cause_id = first[-1][0], first[-1][1]
    reasons = [f"reported by {REPORT_THRESHOLD} distinct users"] + [
        f"report: {reason}" for _, _, reason, _ in first if reason]
    _, effects = task_effects(
        agent=NAME, queue=QUEUE, cause={"event_id": f"reports|{record['post_id']}", "event_time": reached_at},
        verdict_event_id=cause_id, model="community-reports", model_version=str(REPORT_THRESHOLD),
        post_id=record["post_id"], author_id="", comment_id=None, scores={}, reasons=reasons,
        text=None, media_uri=None, priority="HIGH")
    return effects


@dataclass(frozen=True)
class GuardModels:
    """What :func:`load` gives ``process`` (as ``ctx.models``).

    Attributes
    ----------
    moderator:
        A loaded :class:`models.moderation.Moderator` (or any object with its ``fast``,
        ``heavy``, ``moderate_image``, ``moderate_video`` and ``bad_media`` methods).
    max_media_bytes:
        ``PULSE_MEDIA_MAX_BYTES``: larger media is refused before decoding (bytes).
    """

    moderator: Any
    max_media_bytes: int


def load(config: Any) -> GuardModels:
    """Load the moderation model named by ``PULSE_MODERATION_MODEL`` (default: the shipped one).

    Raises
    ------
    models.moderation.ModelNotFound
        No such model version.
    """
    from models.moderation import load_moderator

    return GuardModels(load_moderator(config.moderation_model), config.media_max_bytes)


def upload_text(record: dict[str, Any]) -> str:
    """The text of an upload that is moderated: title, caption and hashtags (as ``#tag``)."""
    parts = [record.get("title") or "", record.get("caption") or ""]
    parts += [f"#{h.lstrip('#')}" for h in record.get("hashtags") or []]
    return "\n".join(p for p in parts if p)


def is_comment(record: dict[str, Any]) -> bool:
    """An interaction that is content: a COMMENT with non-blank text."""
    return record.get("type") == "COMMENT" and bool((record.get("comment_text") or "").strip())


# -- the core -----------------------------------------------------------------------------------

def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """One event -> its verdict (and review task) effects; see the module docstring.

    ``ctx.models`` is a :class:`GuardModels`. Raises what the models raise for one event (the
    runtime dead-letters it alone), and ``ValueError`` for a decision whose ``task_id`` is not a
    review task id.
    """
    record = event.record
    if event.topic == "review-decisions":
        return decision_effects(record)
    models: GuardModels = ctx.models
    if event.topic == "interactions":
        if record.get("type") == "REPORT":
            return report_effects(record, ctx.side.get("reports"))
        if not is_comment(record):
            return []
        verdict = moderate_text(models.moderator, record["comment_text"])
        return verdict_effects(record, verdict, post_id=record["post_id"],
                               author_id=record["user_id"], comment_id=record.get("comment_id"),
                               text=record.get("comment_text"), media_uri=None)
    if event.topic == "uploads":
        text = upload_text(record)
        verdict = moderate_text(models.moderator, text)
        media = moderate_media(models.moderator, record, models.max_media_bytes,
                               MediaRoots.from_settings(ctx.config))
        if media is not None:
            from models.moderation import combine

            verdict = combine([verdict, media])
        return verdict_effects(record, verdict, post_id=record["post_id"],
                               author_id=record["creator_id"], comment_id=None, text=text,
                               media_uri=record.get("media_uri"))
    return []


def moderate_text(moderator: Any, text: str):
    """The text tiers on one text (a batch of one): the fast tier, then the heavy tier only if
    the fast tier left it open. Returns a :class:`models.moderation.Verdict`."""
    verdict = moderator.fast([text])[0]
    if verdict is None:
        verdict = moderator.heavy([text])[0]
    return verdict


def moderate_media(moderator: Any, record: dict[str, Any], max_media_bytes: int, roots: MediaRoots):
    """The media verdict of an IMAGE or VIDEO upload (``None`` for other kinds); media that cannot
    be screened (no ``media_uri``, one outside the media ``roots``, over the size limit,
    unreadable) gets the moderator's ``bad_media`` verdict, whose reason says why."""
    kind = record.get("kind")
    if kind not in ("IMAGE", "VIDEO"):
        return None
    try:
        path = upload_media(record, max_media_bytes, roots)
        if kind == "IMAGE":
            return moderator.moderate_image(path)
        return moderator.moderate_video(path)
    except (ValueError, OSError) as exc:  # MediaError is a ValueError
        return moderator.bad_media(str(exc))


def verdict_effects(cause: dict[str, Any], v: Any, *, post_id: str, author_id: str,
                    comment_id: str | None, text: str | None,
                    media_uri: str | None) -> list[Effect]:
    """The machine verdict ``v`` on the content of event ``cause``: its ``moderation-verdicts``
    event (``latency_ms`` null), its ``moderation_log`` row and, for REVIEW, the review task's
    event and rows. A pure function of its arguments."""
    at = ms_of(cause["event_time"])
    scores = {k: float(s) for k, s in v.scores.items()}
    verdict = {
        "event_id": derived_event_id(NAME, cause["event_id"]), "event_time": dt_of(at),
        "producer": NAME, "cause_event_id": cause["event_id"], "model": v.model,
        "model_version": v.model_version, "post_id": post_id, "author_id": author_id,
        "comment_id": comment_id, "action": v.action, "tier": v.tier, "scores": scores,
        "reasons": list(v.reasons), "latency_ms": None, "review_task_id": None,
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
    return [Emit(VERDICTS_TOPIC, verdict), log_row(verdict, at)] + effects


def log_row(verdict: dict[str, Any], at: int) -> Upsert:
    """The ``moderation_log`` row of a verdict event decided at ``at`` (epoch ms)."""
    return Upsert("moderation_log", {
        "post_id": verdict["post_id"], "decided_at": at, "event_id": verdict["event_id"],
        "action": verdict["action"], "tier": verdict["tier"],
        "category_scores": verdict["scores"], "reasons": verdict["reasons"],
        "model": verdict["model"], "model_version": verdict["model_version"]}, at * 1000)


def decision_effects(d: dict[str, Any]) -> list[Effect]:
    """A moderator's decision on a ``moderation`` task -> the final HUMAN verdict; the task
    leaves the queue. Decisions on other queues belong to other gates (``[]``).

    Raises
    ------
    ValueError
        ``d["task_id"]`` is not a review task id.
    """
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
    return [Emit(VERDICTS_TOPIC, verdict), log_row(verdict, at)] + close_task_effects(d)


SPEC = AgentSpec(
    name=NAME,
    topics=("uploads", "interactions", "review-decisions"),
    process=process,
    outputs=("moderation-verdicts", "review-queue"),
    load=load,
    side_inputs=(SideInput("reports", "interactions", _open_reports),),
    doc="Tiered moderation of uploads and comments; review queue round trip (gate 1 of publishing).",
    batch_size=64,
    sinks=frozenset({"cassandra"}),
    blocking=True,
)

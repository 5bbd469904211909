"""The human review round trip, moderators' side: list the pending queue, decide a task.

Content Guard (queue ``moderation``) and Copyright Guard (queue ``copyright``) write every REVIEW
verdict's task into the ``review_tasks`` and ``review_pending`` views. :func:`pending_tasks` reads
the queue oldest first; :func:`decide` checks the task, claims it with a Cassandra lightweight
transaction (``INSERT ... IF NOT EXISTS`` on ``review_claims``: of two moderators deciding one
task at once, exactly one wins), then publishes the ``ReviewDecision`` on ``review-decisions``. The gate owning the task's queue
turns it into its final verdict, and the decision is a labelled row for the next training run
(``replay.training.review_labels``).

Every function takes the process's :class:`~streams.query.read_side.ReadSide` or the settings to
find it by; the tables read, and the claim written, are those of the read side's active keyspace
(the one ``pulse review list`` shows), pinned once per call.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from streams.producer import Publisher
from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings

#: Actions a moderator can take (GateAction without REVIEW: a human decision is final).
DECISION_ACTIONS = ("ALLOW", "RESTRICT", "BLOCK")
#: The review queues: one per gate that can ask a human (agents.review_tasks.QUEUES).
QUEUES = ("moderation", "copyright")


class ReviewError(ValueError):
    """A decision that cannot be taken (unknown task, already decided, bad action); the message
    says which and what to do."""


class UnknownTask(ReviewError):
    """No review task has this id (HTTP 404)."""


class AlreadyDecided(ReviewError):
    """The task was decided already, by this or another moderator (HTTP 409)."""


def _row(r) -> dict[str, Any]:
    return r._asdict()


def pending_tasks(settings: Settings | ReadSide, limit: int = 50, queue: str | None = None,
                  page_size: int | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` pending review tasks of ``queue`` (default: every queue), oldest first,
    each with its scores and reasons.

    Returns dicts with the ``review_tasks`` columns (``task_id``, ``post_id``, ``author_id``,
    ``comment_id``, ``priority``, ``scores``, ``reasons``, ``text``, ``media_uri``,
    ``created_at``, ``status``, ...). A task already claimed by a decision that its gate has not
    processed yet is left out.

    Reads ``review_pending`` one page at a time (each queue is one partition, clustered by
    creation time) and looks up each page's tasks and claims with concurrent prepared statements
    (``cassandra.concurrent``), so a page costs about one round trip, not two per task.
    ``page_size``: rows read per queue per page (default ``max(limit, 50)``).
    """
    if queue is not None and queue not in QUEUES:
        raise ReviewError(f"no review queue {queue!r}; the queues are {', '.join(QUEUES)}")
    if limit <= 0:
        return []
    page = page_size or max(limit, 50)
    rs = read_side_of(settings)
    ks = rs.active_keyspace()  # one keyspace for the whole listing, even across a swap
    get_page = ("SELECT created_at, task_id FROM {ks}.review_pending WHERE queue = ? "
                "AND (created_at, task_id) > (?, ?) LIMIT ?")

    def key(r) -> tuple:
        return (r.created_at, r.task_id)

    names = (queue,) if queue else QUEUES
    first = datetime(1970, 1, 1)  # naive UTC, as the driver returns timestamps
    last = {name: (first, "") for name in names}  # key of the last row read per queue
    more = set(names)  # queues that may hold rows after ``last``
    heads: dict[str, list] = {name: [] for name in names}  # read, not yet looked up
    out: list[dict[str, Any]] = []
    while len(out) < limit:
        for name in names:
            if not heads[name] and name in more:
                rows = list(rs.execute(get_page, (name, *last[name], page), keyspace=ks))
                if len(rows) < page:
                    more.discard(name)
                if rows:
                    heads[name], last[name] = rows, key(rows[-1])
        # merge oldest first; a queue with unread rows bounds how far the merge may go
        bound = min((last[name] for name in more), default=None)
        batch = sorted((r for name in names for r in heads[name]
                        if bound is None or key(r) <= bound), key=key)[:page]
        if not batch:
            break
        taken = {r.task_id for r in batch}
        for name in names:
            heads[name] = [r for r in heads[name] if r.task_id not in taken]
        ids = [(r.task_id,) for r in batch]
        tasks = rs.execute_concurrent("SELECT * FROM {ks}.review_tasks WHERE task_id = ?", ids,
                                      keyspace=ks)
        claims = rs.execute_concurrent("SELECT task_id FROM {ks}.review_claims WHERE task_id = ?",
                                       ids, keyspace=ks)
        for task_rows, claim_rows in zip(tasks, claims):
            task = task_rows.one()
            if task is None or task.status != "PENDING" or claim_rows.one() is not None:
                continue
            out.append(_row(task))
            if len(out) >= limit:
                break
    return out


def read_task(settings: Settings | ReadSide, task_id: str) -> dict[str, Any] | None:
    """The ``review_tasks`` row of ``task_id`` (pending or decided) as a dict, or None."""
    row = read_side_of(settings).execute("SELECT * FROM {ks}.review_tasks WHERE task_id = ?", (task_id,)).one()
    return None if row is None else _row(row)


#: Seconds :func:`decide` waits for the broker to acknowledge a decision.
ACK_TIMEOUT_S = 30.0


def decide(settings: Settings | ReadSide, task_id: str, action: str, *, reviewer_id: str,
           categories: list[str] | None = None, note: str | None = None,
           ack_timeout_s: float = ACK_TIMEOUT_S) -> dict[str, Any]:
    """Decide review task ``task_id``: claim it, then publish the ``ReviewDecision``.

    Returns the published decision event (a dict of the ReviewDecision schema). The event is
    published with the read side's settings (``settings`` itself, or ``ReadSide.settings``).
    When the broker has not acknowledged it within ``ack_timeout_s`` seconds (or refused it),
    the claim is released again, so that the task stays in the queue and can be decided once
    the broker is back, rather than staying claimed with no decision on its way.

    Raises
    ------
    ReviewError
        ``action`` is not ALLOW, RESTRICT or BLOCK; :class:`UnknownTask` when the task does not
        exist; :class:`AlreadyDecided` when it was decided already (by this or another
        moderator).
    streams.producer.PublishError
        The decision was not acknowledged (the claim was released).
    """
    action = action.upper()
    if action not in DECISION_ACTIONS:
        raise ReviewError(f"action {action!r} is not one of {', '.join(DECISION_ACTIONS)}")
    now = datetime.now(timezone.utc)
    rs = read_side_of(settings)
    settings = rs.settings
    ks = rs.active_keyspace()  # the claim goes where the task was read
    task = rs.execute("SELECT * FROM {ks}.review_tasks WHERE task_id = ?", (task_id,),
                      keyspace=ks).one()
    if task is None:
        raise UnknownTask(f"no review task {task_id!r}; `pulse review list` shows the pending ones")
    if task.status == "DECIDED":
        raise AlreadyDecided(f"review task {task_id} was already decided: {task.decision} by "
                          f"{task.decided_by} at {task.decided_at:%Y-%m-%d %H:%M:%S} UTC")
    claimed = rs.execute(
        "INSERT INTO {ks}.review_claims (task_id, reviewer_id, action, claimed_at) "
        "VALUES (?, ?, ?, ?) IF NOT EXISTS", (task_id, reviewer_id, action, now), keyspace=ks).one()
    if not claimed.applied:
        raise AlreadyDecided(f"review task {task_id} was already decided: {claimed.action} by "
                          f"{claimed.reviewer_id} at {claimed.claimed_at:%Y-%m-%d %H:%M:%S} UTC")
    created = task.created_at.replace(tzinfo=timezone.utc) if task.created_at else now
    decision = {
        "event_time": now, "producer": "pulse-review", "cause_event_id": None,
        "task_id": task_id, "queue": task.queue or "moderation", "post_id": task.post_id, "comment_id": task.comment_id,
        "author_id": task.author_id, "reviewer_id": reviewer_id, "action": action,
        "categories": list(categories or []), "note": note,
        "review_ms": max(0, int((now - created).total_seconds() * 1000)),
    }
    try:
        with Publisher(settings, producer_name="pulse-review") as pub:
            key, value = pub.encode("review-decisions", decision)
            pub.produce_raw("review-decisions", key, value)
            pub.flush(ack_timeout_s)
    except Exception:
        # not acknowledged: give the task back (only this moderator's claim of it)
        rs.execute("DELETE FROM {ks}.review_claims WHERE task_id = ? IF reviewer_id = ?", (task_id, reviewer_id),
                   keyspace=ks)
        raise
    return _as_consumed(settings, value)


def _as_consumed(settings: Settings, value: bytes) -> dict[str, Any]:
    """The published decision as consumers will see it (decoded from the bytes sent)."""
    from streams.contracts.codec import codec_for

    return codec_for(settings, "ReviewDecision", "review-decisions").decode(value)


def wait_decided(settings: Settings | ReadSide, task_id: str, timeout_s: float = 30.0) -> bool:
    """Poll until Content Guard has processed the decision of ``task_id`` (True) or time out."""
    rs = read_side_of(settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = rs.execute("SELECT status FROM {ks}.review_tasks WHERE task_id = ?", (task_id,)).one()
        if row is not None and row.status == "DECIDED":
            return True
        time.sleep(0.5)
    return False

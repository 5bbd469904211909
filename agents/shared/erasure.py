"""What every agent that takes part in an erasure shares (``docs/erasure.md``): the request
topic, forgetting a user's state entries, and the report rows in ``erasure_log``.

Stateful agents keyed by user (user_profiler, feed_ranker, notification_generator,
creator_analytics, timing_optimizer) consume ``erasure-requests`` (key user_id, co-partitioned with their other
sources, so the request reaches the partition, and the worker, that holds the user's entry) and
return :func:`forget_user`'s effects: a ``StateDelete`` of the user's entry in each of their
tables, and their report. A replay folds the same request at the same place in the log, so the
rebuilt state forgets the user too.
"""
from __future__ import annotations

import uuid
from typing import Any, Iterable

from streams.contracts.agent import Event, State
from streams.contracts.effects import Effect, StateDelete, Upsert

ERASURE_TOPIC = "erasure-requests"
REPORT = "erasure_log"
LEGAL_BASES = ("GDPR", "CCPA", "ACCOUNT_DELETION", "OTHER")
"""The ``LegalBasis`` symbols of ``schemas/avro/erasure_request.v1.avsc``."""


def erasure_request(user_id: str, *, post_id: str | None = None, basis: str = "GDPR",
                    request_id: str | None = None) -> dict[str, Any]:
    """An ``ErasureRequest`` record without its envelope (``event_id``, ``event_time`` and
    ``producer`` are the publisher's): scope USER, or POST with ``post_id``; ``request_id`` a new
    UUID unless given. Used by ``pulse erase`` and ``POST /v1/users/{user_id}/erasure``.

    Raises ``ValueError`` for a ``basis`` not in :data:`LEGAL_BASES`."""
    if basis not in LEGAL_BASES:
        raise ValueError(f"legal basis {basis!r}: use one of {', '.join(LEGAL_BASES)}")
    return {"request_id": request_id or str(uuid.uuid4()), "user_id": user_id,
            "scope": "POST" if post_id else "USER", "post_id": post_id, "legal_basis": basis,
            "deadline": None}


def report_rows(request: dict[str, Any], component: str, counts: dict[str, int], t: int,
                detail: str = "") -> list[Upsert]:
    """The ``erasure_log`` rows of one component for one request: one per item, and the
    component's ``done`` row (its total), all at the request's time ``t`` (UTC epoch ms, written
    at ``t * 1000`` µs) so a replay rewrites them identically."""
    ts = t * 1000
    base = {"request_id": request["request_id"], "component": component, "erased_at": t}
    rows = [Upsert(REPORT, {**base, "item": item, "count": n}, ts) for item, n in sorted(counts.items())]
    rows.append(Upsert(REPORT, {**base, "item": "done", "count": sum(counts.values()), "detail": detail}, ts))
    return rows


def forget_user(state: State, event: Event, component: str, tables: Iterable[str]) -> list[Effect]:
    """For an ``ErasureRequest`` of scope USER: delete the user's entry (key = user id) from each
    of ``tables`` where it has one, and report ``state:<table>`` counts; for scope POST: only the
    report (a post's entries are not keyed by its user). Always reports, so ``pulse erase
    --wait`` knows the component has seen the request."""
    r = event.record
    user, counts, out = r["user_id"], {}, []
    if str(r["scope"]) == "USER":
        for table in tables:
            held = state.get(table, user) is not None
            if held:
                out.append(StateDelete(table, user))
            counts[f"state:{table}"] = int(held)
    return out + report_rows(r, component, counts, event.event_time_ms,
                             "" if str(r["scope"]) == "USER" else "scope POST: no state keyed by the post's user")

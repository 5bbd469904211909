"""Live updates: ``GET /v1/users/{user_id}/live``, a server-sent-events stream (the HTML standard's
``text/event-stream``) of a user's new notifications and new feed entries as the agents
materialize them.

How: the endpoint reads the user's views through the query layer every :data:`POLL_S` seconds
(in a worker thread, never blocking the event loop) and sends what is new since the previous
read. The first read is the baseline, announced by a ``ready`` event; then

* ``event: notification`` for each notification row not seen before (oldest first), its id the
  notification id, its data the row as ``GET /v1/users/{id}/notifications`` gives it;
* ``event: feed`` when the materialized feed was ranked again (``generated_at`` changed) and
  holds posts it did not hold before: the data lists those entries (with source, score and
  reasons) and the new ``generated_at``;
* a comment line every :data:`KEEPALIVE_S` seconds, so proxies keep the connection open.

The stream ends after ``max_seconds`` (default 300); clients reconnect (``retry: 3000`` asks
browsers' ``EventSource`` to wait 3 s). Polling the views rather than consuming the topics keeps
the API stateless and every API process alike; a view row appears at most one poll after the
sink writes it. Access is that of the two reads it streams: a key granted ``notifications`` and
``feeds``, or the user's own token. Each connection holds one of the API process's worker
threads only while it reads, not while it waits.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from streams.api.app import authenticate, context
from streams.api.auth import GrantError, Principal
from streams.api.errors import ApiError

router = APIRouter(prefix="/v1", tags=["live"])

#: Seconds between two reads of a user's views.
POLL_S = 1.0
#: Seconds between keep-alive comments.
KEEPALIVE_S = 15.0
#: Newest notifications read per poll (more arriving within one poll are caught by the next).
NOTIFICATIONS_PER_POLL = 50
#: Feed entries compared per poll (the top of the materialized feed).
FEED_TOP = 50


def _sse(event: str, data: Any, event_id: str | None = None) -> str:
    """One server-sent event: ``event``, optional ``id``, JSON ``data``, blank line."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "")
    return head + f"data: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


class LiveState:
    """What a stream has sent: notification ids and the feed's ranking time and post ids.
    ``diff`` turns one poll's rows into the events to send. Pure (no I/O)."""

    def __init__(self) -> None:
        self.notifications: set[str] = set()
        self.generated_at: str | None = None
        self.feed_posts: set[str] = set()

    def diff(self, notifications: list[dict], feed: dict, *, first: bool = False) -> list[str]:
        """Events for the rows read now (``notifications`` newest first, ``feed`` a feed page as
        ``FeedPage.as_dict``); the first call only records the baseline."""
        out = []
        for n in reversed(notifications):  # oldest first
            nid = n["notification_id"]
            if nid not in self.notifications:
                self.notifications.add(nid)
                if not first:
                    out.append(_sse("notification", n, nid))
        generated = feed.get("generated_at")
        if generated != self.generated_at:
            posts = [i for i in feed.get("items", []) if i["post_id"] not in self.feed_posts]
            self.generated_at = generated
            self.feed_posts = {i["post_id"] for i in feed.get("items", [])}
            if posts and not first:
                out.append(_sse("feed", {"generated_at": generated, "new_entries": posts}))
        return out


@router.get("/users/{user_id}/live", summary="Server-sent events: the user's new notifications and feed entries.",
            response_class=StreamingResponse)
async def live(user_id: str, request: Request,
               max_seconds: float = Query(300.0, ge=1.0, le=3600.0, description="end the stream after this long"),
               principal: Principal = Depends(authenticate)) -> StreamingResponse:
    for read in ("notifications", "feeds"):
        try:
            principal.may_read(read, user_id)
        except GrantError as exc:
            raise ApiError(403, str(exc)) from None
    rs = context(request).read_side

    def poll() -> tuple[list[dict], dict]:
        from streams.query.feeds import read_feed
        from streams.query.notifications import read_notifications

        rows = [r.as_dict() for r in read_notifications(rs, user_id, limit=NOTIFICATIONS_PER_POLL)]
        return rows, read_feed(rs, user_id, limit=FEED_TOP, fresh=0).as_dict()

    try:  # the baseline read answers errors as errors, before the stream starts
        first = await run_in_threadpool(poll)
    except Exception as exc:  # noqa: BLE001 - the views' own errors become a 503
        from streams.stores.cassandra import ViewStoreError

        if isinstance(exc, ViewStoreError):
            raise ApiError(503, f"the views cannot be read now: {exc}") from None
        raise

    async def events() -> AsyncIterator[str]:
        state = LiveState()
        state.diff(*first, first=True)
        loop = asyncio.get_running_loop()
        ends = loop.time() + max_seconds
        quiet_since = loop.time()
        yield "retry: 3000\n\n"
        yield _sse("ready", {"user_id": user_id, "poll_s": POLL_S, "max_seconds": max_seconds})
        while loop.time() < ends:
            await asyncio.sleep(min(POLL_S, max(0.0, ends - loop.time())))
            if await request.is_disconnected():
                return
            try:
                out = state.diff(*await run_in_threadpool(poll))
            except Exception:  # noqa: BLE001 - a failed read is retried at the next poll
                out = []
            for chunk in out:
                yield chunk
            if out:
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= KEEPALIVE_S:
                quiet_since = loop.time()
                yield ": keep-alive\n\n"
        yield _sse("end", {"reason": f"max_seconds {max_seconds:g} reached; reconnect to continue"})

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

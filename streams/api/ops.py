"""The operator dashboard's endpoints (``pulse dashboard`` and ``pulse api`` both serve them):

* ``GET /dashboard``: the page (``streams/web/static/dashboard/``, served by :mod:`streams.web.pages`;
  public files, no data);
* ``GET /v1/ops/snapshot``: the collector's latest snapshot and the kept history (JSON);
* ``GET /v1/ops/stream``: server-sent events, ``history`` once, then one ``snapshot`` a second;
* ``GET /v1/ops/feeds/{user_id}``: the feed inspector, a user's feed entries (source, score,
  reasons, the post's kind and caption) beside their profile in words;
* ``GET /metrics``: every dashboard figure in the Prometheus text format
  (:mod:`streams.ops.exposition`).

Access: a user of role ``operator`` (the ``pulse_session`` cookie of ``POST /v1/session``, or an
operator's bearer token); ``/metrics`` also takes an API key granted the ``metrics`` read (for
Prometheus). The collector (:class:`streams.ops.collector.Collector`) starts on the first
request and stops after :data:`IDLE_S` seconds without one, so an API nobody watches reads
nothing; ``pulse dashboard`` keeps it running.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from streams.api.app import authenticate, context, require_role
from streams.api.auth import GrantError, Principal
from streams.api.errors import ApiError

router = APIRouter(tags=["ops"])
operator = require_role("operator")

#: Seconds without a request after which the collector stops (``pulse dashboard``: never).
IDLE_S = 120.0
#: Seconds between two looks at the collector's latest snapshot in a stream.
POLL_S = 0.25
#: Seconds without a snapshot after which a stream sends a keep-alive comment.
KEEPALIVE_S = 15.0
#: Entries the feed inspector shows.
INSPECT_ENTRIES = 50



def remote_workers(settings: Any) -> dict[str, Any]:
    """The collector's ``extra_targets`` and ``extra_groups`` for workers on other hosts: the
    ``PULSE_METRICS_TARGETS`` URLs, and the lag of consumer group ``PULSE_APP_ID`` over every
    registered agent's source topics (a remote worker's group and topics are not discoverable
    from here; every worker of one deployment shares ``PULSE_APP_ID``). Empty without targets."""
    targets = tuple(getattr(settings, "metrics_targets", ()) or ())
    if not targets:
        return {}
    from agents.registry import AGENTS

    topics = sorted({t for spec in AGENTS.values() for t in spec.topics})
    return {"extra_targets": targets, "extra_groups": {settings.app_id: topics}}

class OpsState:
    """The process's collector, started on demand and stopped when idle."""

    def __init__(self, settings: Any, read_side: Any, *, keep_running: bool = False):
        self.settings, self.read_side, self.keep_running = settings, read_side, keep_running
        self._lock = threading.Lock()
        self.collector = None
        self.last_used = time.monotonic()

    def get(self):
        from streams.ops.collector import Collector

        with self._lock:
            self.last_used = time.monotonic()
            if self.collector is None:
                self.collector = Collector(self.settings, self.read_side, **remote_workers(self.settings)).start()
                threading.Thread(target=self._reaper, daemon=True, name="pulse-ops-reaper").start()
            return self.collector

    def close(self) -> None:
        """Stop the collector now (the app's shutdown)."""
        with self._lock:
            collector, self.collector, self.keep_running = self.collector, None, False
        if collector is not None:
            collector.close()

    def _reaper(self) -> None:
        while True:
            time.sleep(5)
            with self._lock:
                if self.collector is None:
                    return  # closed
                if self.keep_running or time.monotonic() - self.last_used < IDLE_S:
                    continue
                collector, self.collector = self.collector, None
            if collector is not None:
                collector.close()
            return


def close_ops(app: Any) -> None:
    """Stop ``app``'s collector, if one runs (called at the app's shutdown)."""
    state = getattr(app.state, "ops", None)
    if state is not None:
        state.close()


def ops_state(request: Request) -> OpsState:
    state = getattr(request.app.state, "ops", None)
    if state is None:
        ctx = context(request)
        state = request.app.state.ops = OpsState(ctx.settings, ctx.read_side)
    return state


def _first_snapshot(collector) -> dict:
    snap = collector.latest()
    return snap if snap is not None else collector.tick()


@router.get("/v1/ops/snapshot", summary="The dashboard's latest snapshot and ~15 minutes of history.")
def get_snapshot(request: Request, _: Principal = Depends(operator)) -> dict:
    """``{"snapshot": ..., "history": [...]}``: shapes in :mod:`streams.ops.snapshot`."""
    collector = ops_state(request).get()
    return {"snapshot": _first_snapshot(collector), "history": collector.history()}


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


@router.get("/v1/ops/stream", summary="Server-sent events: one dashboard snapshot a second.",
            response_class=StreamingResponse)
async def stream(request: Request, max_seconds: float = Query(3600.0, ge=1.0, le=86400.0),
                 _: Principal = Depends(operator)) -> StreamingResponse:
    """``history`` (the kept history points) once, then ``snapshot`` each time the collector
    has a new one; ``end`` after ``max_seconds`` (browsers' ``EventSource`` reconnects)."""
    state = ops_state(request)
    collector = state.get()
    first = await run_in_threadpool(_first_snapshot, collector)

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + max_seconds
        yield "retry: 3000\n\n"
        yield _sse("history", collector.history())
        yield _sse("snapshot", first)
        at, quiet_since = first["at_ms"], loop.time()
        while loop.time() < ends:
            # the collector's latest, looked at 4 times a second: no thread held while waiting
            await asyncio.sleep(POLL_S)
            if await request.is_disconnected():
                return
            state.last_used = time.monotonic()
            snap = collector.latest()
            if snap is not None and snap["at_ms"] > at:
                at, quiet_since = snap["at_ms"], loop.time()
                yield _sse("snapshot", snap)
            elif loop.time() - quiet_since >= KEEPALIVE_S:
                quiet_since = loop.time()
                yield ": keep-alive\n\n"
        yield _sse("end", {"reason": "max_seconds reached; reconnect to continue"})

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/ops/feeds/{user_id}", summary="Feed inspector: a user's feed with each entry's source "
                                                 "and reasons, beside their profile in words.")
def inspect_feed(user_id: str, request: Request, limit: int = Query(INSPECT_ENTRIES, ge=1, le=200),
                 _: Principal = Depends(operator)) -> dict:
    """``{"user_id", "generated_at", "total", "items": [{rank, post_id, creator_id, score,
    source, reasons, published_at, kind, caption}], "profile": row | null, "profile_text":
    [sentences]}``; 503 when the views cannot be read."""
    from streams.query.feeds import describe_profile, read_feed, read_profile
    from streams.stores.cassandra import ViewStoreError

    rs = context(request).read_side
    try:
        page = read_feed(rs, user_id, limit=limit).as_dict()
        profile = read_profile(rs, user_id)
        posts = {}
        if page["items"]:
            rows = rs.execute_concurrent("SELECT post_id, kind, title, caption FROM {ks}.posts WHERE post_id = ?",
                                         [(i["post_id"],) for i in page["items"]])
            for result in rows:
                r = result.one()
                if r is not None:
                    posts[r.post_id] = r
    except ViewStoreError as exc:
        raise ApiError(503, f"the views cannot be read now: {exc}") from None
    for item in page["items"]:
        p = posts.get(item["post_id"])
        item["kind"] = p.kind if p is not None else None
        item["caption"] = ((p.title or p.caption or "")[:200]) if p is not None else None
    shown = None
    if profile is not None:
        shown = {k: _plain(v) for k, v in profile.items() if k not in ("interest_vector",)}
    return {**page, "profile": shown,
            "profile_text": describe_profile(profile) if profile is not None else
            [f"{user_id} has no profile yet (no sign-up or interaction folded by user_profiler)."]}


def _plain(value: Any) -> Any:
    """A Cassandra column value as JSON can carry it (the driver's map and set types become a
    dict and a list)."""
    from collections.abc import Mapping, Set

    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (Set, list, tuple)):
        return [_plain(v) for v in value]
    return value


def metrics_principal(principal: Principal = Depends(authenticate)) -> Principal:
    """An operator (token or session) or an API key granted ``metrics``."""
    if principal.kind == "app":
        try:
            principal.may_read("metrics")
        except GrantError as exc:
            raise ApiError(403, str(exc)) from None
        return principal
    if principal.role != "operator":
        raise ApiError(403, f"/metrics needs an operator or an API key granted the metrics read; "
                            f"{principal.name!r} has role {principal.role}")
    return principal


@router.get("/metrics", summary="Every dashboard figure in the Prometheus text format.",
            response_class=Response)
def metrics(request: Request, _: Principal = Depends(metrics_principal)) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from streams.ops.exposition import SnapshotCollector

    collector = ops_state(request).get()
    _first_snapshot(collector)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(collector.exposition))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

"""Reading through the API: the query layer (:mod:`streams.query`) behind each endpoint, the same
functions ``pulse feed``, ``pulse trends`` ... call, on the process's one read side.

Endpoints are plain functions: FastAPI runs them in its worker threads, so a Cassandra round trip
never blocks the event loop. A user token reads only its own user's data
(:meth:`~streams.api.auth.Principal.may_read`). Views that are not reachable answer 503, a
missing entity 404.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from fastapi import APIRouter, Depends, Query, Request

from streams.api.app import authenticate, context
from streams.api.auth import GrantError, Principal
from streams.api.errors import ApiError
from streams.api.responses import JSONBody

router = APIRouter(prefix="/v1", tags=["read"], default_response_class=JSONBody)


def _allow(principal: Principal, read: str, owner: str | None = None) -> None:
    try:
        principal.may_read(read, owner)
    except GrantError as exc:
        raise ApiError(403, str(exc)) from None


@contextmanager
def _views() -> Iterator[None]:
    """Turn the query layer's own errors into answers: unreachable views 503, bad input 400."""
    from streams.stores.cassandra import ViewStoreError

    try:
        yield
    except ViewStoreError as exc:
        raise ApiError(503, f"the views cannot be read now: {exc}") from None


@router.get("/feeds/{user_id}", summary="A page of a user's feed, ranked for now.")
async def get_feed(user_id: str, request: Request, limit: int = Query(20, ge=1, le=200),
             cursor: str | None = Query(None, max_length=64, description="next_cursor of the previous page"),
             principal: Principal = Depends(authenticate)) -> JSONBody:
    """Each post with its score, source and reasons; ``next_cursor`` continues at the same
    reading time (the cursor of ``pulse feed``). Served on the event loop
    (:func:`~streams.query.feeds.read_feed_async`): a worker thread per read cost the API a
    third of its throughput (docs/api.md)."""
    from streams.query.feeds import CursorError, read_feed_async

    _allow(principal, "feeds", user_id)
    with _views():
        try:
            page = await read_feed_async(context(request).read_side, user_id, limit=limit, cursor=cursor)
        except CursorError as exc:
            raise ApiError(400, str(exc)) from None
    return JSONBody(page.as_dict())


@router.get("/users/{user_id}/notifications", summary="A user's notifications, newest first.")
def get_notifications(user_id: str, request: Request, limit: int = Query(20, ge=1, le=500),
                      principal: Principal = Depends(authenticate)) -> JSONBody:
    """What notification_generator sent or held for a digest, with the policy's probability and
    the user's reaction (status)."""
    from streams.query.notifications import read_notifications

    _allow(principal, "notifications", user_id)
    with _views():
        rows = read_notifications(context(request).read_side, user_id, limit=limit)
    return JSONBody({"user_id": user_id, "notifications": [r.as_dict() for r in rows]})


@router.get("/golden-moments/{creator_id}", summary="A creator's best posting windows.")
def get_golden_moments(creator_id: str, request: Request,
                       content_type: str | None = Query(None, description="flash, memory or forever"),
                       principal: Principal = Depends(authenticate)) -> JSONBody:
    from streams.query.timing import UnknownContentType, UnknownCreator, read_golden_moments

    _allow(principal, "golden-moments", creator_id)
    with _views():
        try:
            rows = read_golden_moments(context(request).read_side, creator_id, content_type)
        except UnknownContentType as exc:
            raise ApiError(400, str(exc)) from None
        except UnknownCreator as exc:
            raise ApiError(404, str(exc)) from None
    hour_map = next((r.hour_map for r in rows if r.hour_map), None)
    return JSONBody({"creator_id": creator_id, "hour_map": hour_map, "moments": [r.as_dict() for r in rows]})


@router.get("/creators/{creator_id}/stats", summary="A creator's totals and posts: reach, engagement, predicted virality.")
def get_creator_stats(creator_id: str, request: Request,
                      sort: str = Query("virality", description="virality, reach, likes or recent"),
                      limit: int = Query(10, ge=1, le=200),
                      principal: Principal = Depends(authenticate)) -> JSONBody:
    from streams.query.analytics import UnknownCreator, UnknownSort, read_creator_stats

    _allow(principal, "creator-stats", creator_id)
    with _views():
        try:
            stats = read_creator_stats(context(request).read_side, creator_id, sort=sort, limit=limit)
        except UnknownSort as exc:
            raise ApiError(400, str(exc)) from None
        except UnknownCreator as exc:
            raise ApiError(404, str(exc)) from None
    return JSONBody({"creator_id": creator_id, **stats.as_dict()})


@router.get("/trends", summary="Trending hashtags and categories now.")
def get_trends(request: Request, kind: str | None = Query(None, description="hashtag or category"),
               limit: int = Query(10, ge=1, le=200), principal: Principal = Depends(authenticate)) -> JSONBody:
    from streams.query.trends import UnknownKind, read_heavy_hitters, read_trends

    _allow(principal, "trends")
    rs = context(request).read_side
    with _views():
        try:
            rows = read_trends(rs, kind, limit=limit)
            top = read_heavy_hitters(rs, kind or "hashtag", limit=limit)
        except UnknownKind as exc:
            raise ApiError(400, str(exc)) from None
    return JSONBody({"trends": [r.as_dict() for r in rows],
                     "heavy_hitters": [{"subject": s, "estimate": n} for s, n in top]})


@router.get("/search", summary="Semantic search over published posts.")
def get_search(request: Request, q: str = Query(..., min_length=1, max_length=500),
               kind: str | None = Query(None, pattern="^(image|video|text)$"),
               since_ms: int | None = Query(None, ge=0, description="only posts uploaded since (UTC epoch ms)"),
               limit: int = Query(10, ge=1, le=100), principal: Principal = Depends(authenticate)) -> JSONBody:
    """Only posts the gates published (what a user-facing surface shows)."""
    from streams.stores.vectors import CollectionNotFoundError, IndexLockedError

    _allow(principal, "search")
    if not q.strip():
        raise ApiError(422, "q: empty search query")
    try:
        hits = context(request).read_side.search.text(q, limit, kind=kind, since_ms=since_ms, published_only=True)
    except CollectionNotFoundError:
        return JSONBody({"query": q, "hits": []})  # nothing enriched yet
    except IndexLockedError as exc:
        raise ApiError(503, f"search is not available from this process: {exc}") from None
    return JSONBody({"query": q, "hits": [{"post_id": h.post_id, "score": h.score,
                                           "creator_id": h.payload.get("creator_id"), "kind": h.payload.get("kind"),
                                           "title": h.payload.get("title"), "caption": h.payload.get("caption")}
                                          for h in hits]})


@router.get("/posts/{post_id}", summary="A post's status and the gates' verdicts.")
def get_post(post_id: str, request: Request, principal: Principal = Depends(authenticate)) -> JSONBody:
    """The publisher's status and reasons, every moderation decision and copyright match. A user
    token reads its own posts (moderators: any)."""
    from streams.query.posts import read_post

    if principal.kind == "app":
        _allow(principal, "posts")
    with _views():
        post = read_post(context(request).read_side, post_id)
    if principal.kind == "user":
        _allow(principal, "posts", post["creator_id"] if post else None)
    if post is None:
        raise ApiError(404, f"no post {post_id!r} (not uploaded, or not materialized yet)")
    return JSONBody(post)

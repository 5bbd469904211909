"""The FastAPI application of ``pulse api``: :func:`create_app` builds it from the settings.

One process holds one :class:`ApiContext`: the read side (one pooled Cassandra session, shared by
every read endpoint's worker threads), the key store, the token secret, the rate limiter, the
event producer and the media store. Endpoints: :mod:`streams.api.ingest` (events, media) and
:mod:`streams.api.reads` (feeds, notifications, search, trends, golden moments, posts); errors:
:mod:`streams.api.errors`; who may call what: :mod:`streams.api.auth`.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from streams.api.auth import (AuthError, KeyStore, Principal, app_principal, token_secret,
                              user_principal, verify_token)
from streams.api.errors import ApiError, RequestIdMiddleware, install
from streams.api.limits import RateLimiter
from streams.settings import Settings

VERSION = "1"


@dataclass
class ApiContext:
    """What every request of one API process shares."""

    settings: Settings
    read_side: Any
    keys: KeyStore
    secret: bytes
    limiter: RateLimiter
    ingest: Any
    owns_read_side: bool


_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="An app's API key (`pulse keys create`).")
_bearer = HTTPBearer(auto_error=False, description="A user token (`pulse token USER_ID`).")


def context(request: Request) -> ApiContext:
    return request.app.state.pulse


def authenticate(request: Request, key: str | None = Depends(_api_key),
                 bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """The caller (an app key or a user token, exactly one), rate-limited.

    401 without a credential or with a bad one, 429 with ``Retry-After`` when its bucket is empty.
    """
    ctx = context(request)
    if key and bearer:
        raise ApiError(401, "send either X-API-Key (an app) or Authorization: Bearer (a user), not both")
    try:
        if key:
            principal = app_principal(ctx.keys.verify(key))
        elif bearer:
            principal = user_principal(*verify_token(ctx.secret, bearer.credentials))
        else:
            raise AuthError("credentials required: X-API-Key for apps, Authorization: Bearer <user token> for users")
    except AuthError as exc:
        raise ApiError(401, str(exc), {"WWW-Authenticate": 'Bearer realm="pulse"'}) from None
    wait = ctx.limiter.check(principal.limits_key)
    if wait:
        who = f"API key {principal.name!r}" if principal.kind == "app" else f"user {principal.name!r}"
        raise ApiError(429, f"rate limit of {who} reached; retry in {wait} s", {"Retry-After": str(wait)})
    return principal


def create_app(settings: Settings, *, read_side: Any = None) -> FastAPI:
    """The API for ``settings``. ``read_side``: a :class:`~streams.query.read_side.ReadSide` to
    share (default: one of its own, closed at shutdown). Kafka is reached on the first publish,
    Cassandra on the first read."""
    from streams.api.ingest import EventIngest, router as ingest_router
    from streams.api.live import router as live_router
    from streams.api.reads import router as reads_router
    from streams.query.read_side import ReadSide

    ctx = ApiContext(
        settings=settings, read_side=read_side or ReadSide(settings), keys=KeyStore.for_settings(settings),
        secret=token_secret(settings), ingest=EventIngest(settings), owns_read_side=read_side is None,
        limiter=RateLimiter({"key": (settings.api_key_rate, settings.api_key_burst),
                             "user": (settings.api_user_rate, settings.api_user_burst)}))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            ctx.ingest.close()
            if ctx.owns_read_side:
                ctx.read_side.close()

    app = FastAPI(title="Pulse API", version=VERSION, lifespan=lifespan, docs_url="/docs",
                  description="Publish events and media, read feeds and the other views. Auth: an app's "
                              "`X-API-Key`, or a user's `Authorization: Bearer` token. Errors: "
                              '`{"error": {"status", "code", "message", "request_id"}}`. See docs/api.md.')
    app.state.pulse = ctx
    install(app)
    if settings.api_cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.api_cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "X-API-Key", "Content-Type"],
                           expose_headers=["X-Request-ID", "Retry-After"])
    app.add_middleware(RequestIdMiddleware)

    @app.get("/v1/health", tags=["meta"], summary="Liveness: the process answers (no credentials).")
    def health() -> dict:
        return {"status": "ok"}

    app.include_router(ingest_router)
    app.include_router(reads_router)
    app.include_router(live_router)
    return app

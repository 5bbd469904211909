"""The FastAPI application of ``pulse api``: :func:`create_app` builds it from the settings.

One process holds one :class:`ApiContext`: the read side (one pooled Cassandra session, shared by
every read endpoint's worker threads), the key store, the token secret, the rate limiter, the
event producer and the media store. Endpoints: :mod:`streams.api.ingest` (events, media),
:mod:`streams.api.reads` (feeds, notifications, search, trends, golden moments, posts),
:mod:`streams.api.session` (moderators' and operators' logins), :mod:`streams.api.review` (the
review queue) and the pages of :mod:`streams.web`; errors: :mod:`streams.api.errors`; who may
call what: :mod:`streams.api.auth`, :func:`authenticate` and :func:`require_role`.

**Browser sessions.** Besides an app's key and a user's bearer token, :func:`authenticate`
accepts the ``pulse_session`` cookie that ``POST /v1/session`` sets for a moderator or operator
(an HttpOnly, SameSite=Strict user token of the account's role; the account must still exist
with that role). A request authenticated by the cookie that changes state (any method but GET,
HEAD and OPTIONS) must also send the header ``X-Pulse-CSRF`` equal to the ``pulse_csrf`` cookie
set with it: the double-submit defence against cross-site request forgery (OWASP CSRF
Prevention Cheat Sheet), on top of SameSite=Strict. A credential in a header wins over the
cookie.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import hmac
from typing import Callable

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from streams.api.accounts import AccountStore
from streams.api.auth import (AuthError, KeyStore, Principal, app_principal, token_secret,
                              user_principal, verify_token)
from streams.api.errors import ApiError, RequestIdMiddleware, install
from streams.api.limits import RateLimiter
from streams.settings import Settings

VERSION = "1"
SESSION_COOKIE = "pulse_session"
"""The browser session's cookie: a signed user token of the account's role (HttpOnly)."""
CSRF_COOKIE = "pulse_csrf"
"""The double-submit CSRF cookie (readable by the page's script), sent back as :data:`CSRF_HEADER`."""
CSRF_HEADER = "X-Pulse-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class ApiContext:
    """What every request of one API process shares."""

    settings: Settings
    read_side: Any
    keys: KeyStore
    accounts: AccountStore
    secret: bytes
    limiter: RateLimiter
    ingest: Any
    owns_read_side: bool


_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="An app's API key (`pulse keys create`).")
_bearer = HTTPBearer(auto_error=False, description="A user token (`pulse token USER_ID`).")
_session = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                        description="A moderator's or operator's browser session (`POST /v1/session`); "
                                    f"state-changing requests also need the {CSRF_HEADER} header.")


def context(request: Request) -> ApiContext:
    return request.app.state.pulse


def _session_principal(request: Request, ctx: ApiContext, cookie: str) -> Principal:
    """The account behind a session cookie; CSRF-checked when the request changes state.

    Raises :class:`AuthError` (401) for a bad or expired session or a removed account,
    :class:`ApiError` 403 for a missing or wrong CSRF header.
    """
    try:
        name, role = verify_token(ctx.secret, cookie)
    except AuthError:
        raise AuthError("your session has expired or is not valid; log in again (POST /v1/session)") from None
    account = ctx.accounts.get(name)
    if account is None or account.role != role:
        raise AuthError(f"account {name!r} no longer exists with role {role}; log in again")
    if request.method not in SAFE_METHODS:
        sent, expected = request.headers.get(CSRF_HEADER, ""), request.cookies.get(CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise ApiError(403, f"a request authenticated by the session cookie that changes state must send "
                                f"the {CSRF_HEADER} header equal to the {CSRF_COOKIE} cookie")
    return user_principal(name, role)


async def authenticate(request: Request, key: str | None = Depends(_api_key),
                       bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                       session: str | None = Depends(_session)) -> Principal:
    """The caller (an app key, a user token or a browser session), rate-limited.

    A coroutine, so FastAPI runs it on the event loop instead of handing it to a worker thread
    (its work is a hash, an HMAC and a bucket, microseconds, where a thread hop costs more).

    An app key and a user token together are a 401; either wins over a session cookie (module
    docstring). 401 without a credential or with a bad one, 403 for a session request without
    its CSRF header, 429 with ``Retry-After`` when the caller's bucket is empty.
    """
    ctx = context(request)
    if key and bearer:
        raise ApiError(401, "send either X-API-Key (an app) or Authorization: Bearer (a user), not both")
    try:
        if key:
            principal = app_principal(ctx.keys.verify(key))
        elif bearer:
            principal = user_principal(*verify_token(ctx.secret, bearer.credentials))
        elif session:
            principal = _session_principal(request, ctx, session)
        else:
            raise AuthError("credentials required: X-API-Key for apps, Authorization: Bearer <user token> for users, "
                            "or a moderator's login (POST /v1/session)")
    except AuthError as exc:
        raise ApiError(401, str(exc), {"WWW-Authenticate": 'Bearer realm="pulse"'}) from None
    wait = ctx.limiter.check(principal.limits_key)
    if wait:
        who = f"API key {principal.name!r}" if principal.kind == "app" else f"user {principal.name!r}"
        raise ApiError(429, f"rate limit of {who} reached; retry in {wait} s", {"Retry-After": str(wait)})
    return principal


def require_role(*roles: str) -> Callable[..., Principal]:
    """A dependency that lets through only users (a token or a session) of one of ``roles``.

    ``Depends(require_role("moderator"))`` on an endpoint: 401 as :func:`authenticate`, 403
    for an app key or a user of another role (the message names the roles needed).

    Examples
    --------
    >>> @router.get("/v1/review/tasks")                                  # doctest: +SKIP
    ... def tasks(principal: Principal = Depends(require_role("moderator"))): ...
    """
    needed = " or ".join(roles)

    def check(principal: Principal = Depends(authenticate)) -> Principal:
        if principal.kind != "user":
            raise ApiError(403, f"this endpoint is for a {needed}'s login or token, not an app's API key")
        if principal.role not in roles:
            raise ApiError(403, f"this endpoint needs role {needed}; {principal.name!r} has role {principal.role}")
        return principal

    return check


def create_app(settings: Settings, *, read_side: Any = None) -> FastAPI:
    """The API for ``settings``. ``read_side``: a :class:`~streams.query.read_side.ReadSide` to
    share (default: one of its own, closed at shutdown). Kafka is reached on the first publish,
    Cassandra on the first read."""
    from streams.api.erasure import router as erasure_router
    from streams.api.ingest import EventIngest, router as ingest_router
    from streams.api.live import router as live_router
    from streams.api.reads import router as reads_router
    from streams.api.review import router as review_router
    from streams.api.session import router as session_router
    from streams.web.pages import install as install_pages
    from streams.query.read_side import ReadSide

    ctx = ApiContext(
        settings=settings, read_side=read_side or ReadSide(settings), keys=KeyStore.for_settings(settings),
        accounts=AccountStore.for_settings(settings), secret=token_secret(settings), ingest=EventIngest(settings),
        owns_read_side=read_side is None,
        limiter=RateLimiter({"key": (settings.api_key_rate, settings.api_key_burst),
                             "user": (settings.api_user_rate, settings.api_user_burst),
                             "login": (settings.api_user_rate, settings.api_user_burst)}))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import anyio.to_thread

        # the synchronous endpoints' worker threads (PULSE_API_THREADS, streams/settings.py)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        try:
            yield
        finally:
            from streams.api.ops import close_ops

            close_ops(app)
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
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", CSRF_HEADER],
                           expose_headers=["X-Request-ID", "Retry-After"])
    app.add_middleware(RequestIdMiddleware)

    @app.get("/v1/health", tags=["meta"], summary="Liveness: the process answers (no credentials).")
    def health() -> dict:
        return {"status": "ok"}

    app.include_router(ingest_router)
    app.include_router(reads_router)
    app.include_router(live_router)
    app.include_router(session_router)
    app.include_router(review_router)
    app.include_router(erasure_router)
    install_pages(app)
    from streams.api.ops import router as ops_router

    app.include_router(ops_router)
    return app

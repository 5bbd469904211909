"""Moderators' and operators' logins to the API's pages: ``POST``, ``GET`` and ``DELETE
/v1/session``.

``POST /v1/session`` takes ``name`` and ``password`` (a form, ``application/x-www-form-urlencoded``,
or a JSON object), checks them against the accounts of ``pulse moderators``
(:class:`~streams.api.accounts.AccountStore`, scrypt, constant time) and sets two cookies, both
``SameSite=Strict``, ``Path=/`` and lasting ``PULSE_API_SESSION_TTL_S`` (default 8 h), with
``Secure`` when the request came over HTTPS:

- ``pulse_session``, ``HttpOnly``: a user token (:func:`~streams.api.auth.issue_token`) whose
  subject is the account name and whose role is the account's; :func:`~streams.api.app.authenticate`
  accepts it like a bearer token;
- ``pulse_csrf``, readable by the page's script: 32 random bytes the page sends back as
  ``X-Pulse-CSRF`` on every state-changing request (double-submit CSRF defence).

Each attempt takes a token from two rate-limit buckets (the name's and the client address's, of
the per-user size), so guessing passwords is as slow as the user rate; a wrong name or password
is a 401 that does not say which. ``GET /v1/session`` says who is logged in; ``DELETE
/v1/session`` clears both cookies.
"""
from __future__ import annotations

import json
import secrets
import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response

from streams.api.app import CSRF_COOKIE, SESSION_COOKIE, authenticate, context
from streams.api.auth import AuthError, Principal, issue_token
from streams.api.errors import ApiError

router = APIRouter(prefix="/v1", tags=["session"])

MAX_LOGIN_BODY_BYTES = 8192
"""Largest login body read (a name and a password)."""


async def _credentials(request: Request) -> tuple[str, str]:
    """``(name, password)`` from a form or JSON body; ApiError 400/413/415/422 otherwise."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY_BYTES:
            raise ApiError(413, f"a login body is at most {MAX_LOGIN_BODY_BYTES} bytes")
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise ApiError(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(422, 'send one JSON object: {"name": ..., "password": ...}')
    elif kind == "application/x-www-form-urlencoded":
        try:
            data = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), strict_parsing=False).items()}
        except UnicodeDecodeError:
            raise ApiError(400, "the form is not UTF-8") from None
    else:
        raise ApiError(415, "send the login as a form (application/x-www-form-urlencoded) or as JSON "
                            "(application/json) with name and password")
    name, password = data.get("name"), data.get("password")
    missing = [k for k, v in (("name", name), ("password", password)) if not isinstance(v, str) or not v]
    if missing:
        raise ApiError(422, f"{' and '.join(missing)}: a non-empty string is required")
    return name, password


def _limit(request: Request, name: str) -> None:
    limiter = context(request).limiter
    client = request.client.host if request.client else "unknown"
    wait = max(limiter.check(f"login:name:{name}"), limiter.check(f"login:addr:{client}"))
    if wait:
        raise ApiError(429, f"too many login attempts; retry in {wait} s", {"Retry-After": str(wait)})


@router.post("/session", summary="Log in a moderator or operator (sets the session cookies).")
async def login(request: Request, response: Response) -> dict:
    """Form or JSON ``{"name", "password"}`` -> 200 ``{"name", "role", "expires_at_ms", "csrf"}``
    and the ``pulse_session`` and ``pulse_csrf`` cookies (module docstring). 401 for a wrong name
    or password, 429 after too many attempts."""
    from starlette.concurrency import run_in_threadpool

    name, password = await _credentials(request)
    _limit(request, name)
    ctx = context(request)
    try:  # scrypt takes ~50 ms of CPU: off the event loop
        account = await run_in_threadpool(ctx.accounts.verify, name, password)
    except AuthError as exc:
        raise ApiError(401, f"{exc}; accounts are made with `pulse moderators add NAME`") from None
    ttl = ctx.settings.api_session_ttl_s
    now = time.time()
    token = issue_token(ctx.secret, account.name, ttl_s=ttl, role=account.role, now=now)
    csrf = secrets.token_urlsafe(32)
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, token, max_age=ttl, path="/", httponly=True, samesite="strict",
                        secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf, max_age=ttl, path="/", httponly=False, samesite="strict",
                        secure=secure)
    response.headers["Cache-Control"] = "no-store"
    return {"name": account.name, "role": account.role, "expires_at_ms": int((now + ttl) * 1000), "csrf": csrf}


@router.get("/session", summary="Who is logged in (or calling).")
def whoami(principal: Principal = Depends(authenticate)) -> dict:
    """``{"name", "kind", "role"}`` of the caller; 401 when not logged in."""
    return {"name": principal.name, "kind": principal.kind, "role": principal.role}


@router.delete("/session", summary="Log out (clears the session cookies).")
def logout(response: Response) -> dict:
    """Clears ``pulse_session`` and ``pulse_csrf``; answers 200 whether or not a session was
    open (the token itself stays valid until it expires if it was copied elsewhere)."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")
    return {"logged_out": True}

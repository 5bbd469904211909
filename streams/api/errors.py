"""The API's error format, and the handlers that make sure every failure uses it.

Every error is ``{"error": {"status": 413, "code": "payload_too_large", "message": "...",
"request_id": "..."}}`` with the HTTP status, and the same request id in the ``X-Request-ID``
header of every response. An unexpected exception never reaches the client: it is logged with
its traceback and the request id server-side, and the client gets a 500 with only the request id
to quote.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("pulse.api")

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
         415: "unsupported_media_type", 422: "invalid", 429: "rate_limited", 500: "internal",
         503: "unavailable"}


class ApiError(Exception):
    """An error answered as ``status`` with ``message`` (and extra ``headers``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def request_id(request: Request) -> str:
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = state["request_id"] = uuid.uuid4().hex
    return rid


def error_response(request: Request, status: int, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    rid = request_id(request)
    body = {"error": {"status": status, "code": CODES.get(status, "error"), "message": message,
                      "request_id": rid}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "X-Request-ID": rid})


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no endpoint {request.method} {request.url.path} (the API is described at /docs)"
    return error_response(request, exc.status_code, message, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Any) -> JSONResponse:
    problems = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body"))
        problems.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    return error_response(request, 422, "; ".join(problems) or "invalid request")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id(request)
    log.error("request %s %s %s failed", rid, request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, f"internal error; quote request id {rid} when reporting it")


def install(app: Any) -> None:
    """Register the handlers on a FastAPI ``app``."""
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


class RequestIdMiddleware:
    """Pure ASGI middleware: a request id per HTTP request (``scope["state"]["request_id"]``),
    returned in the ``X-Request-ID`` header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = scope.setdefault("state", {}).setdefault("request_id", uuid.uuid4().hex)

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": headers + [(b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)

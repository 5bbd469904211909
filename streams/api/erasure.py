"""Erasure through the API (GDPR art. 17, CCPA): a user asks for their own data to be erased,
or an app's privacy service asks for a user's, and either follows the request's report.

- ``POST /v1/users/{user_id}/erasure``: a user token for that same user, or an app key granted
  the ``erasure-requests`` topic. The body is optional: ``{"legal_basis": "GDPR" | "CCPA" |
  "ACCOUNT_DELETION" | "OTHER", "post_id": "..."}`` (``post_id``: erase only that post). The
  request is published on ``erasure-requests`` exactly as ``pulse erase`` publishes it (the
  producer is the app's key name, or ``user:<id>``) and answered 202 once the broker has it,
  with the ``request_id`` and the URL of its report.
- ``GET /v1/erasure-requests/{request_id}``: what the eraser and every agent that forgets users
  have removed so far (``erasure_log``, the report of ``pulse erasure-report``), with
  ``complete`` true once every component has reported. An app needs the ``erasure-reports``
  read; a user reads the report of their own request only. A request no component has reported
  on yet is 404 for a user (its subject is not known before the eraser writes it) and an empty
  report for an app.

Moderators and operators have no power here beyond a user's: erasure is the subject's right or
the platform's service decision, not a review action.
"""
from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request

from agents.shared.erasure import ERASURE_TOPIC, erasure_request
from streams.api.app import authenticate, context
from streams.api.auth import GrantError, Principal
from streams.api.errors import ApiError
from streams.api.ingest import read_body

router = APIRouter(prefix="/v1", tags=["erasure"])

MAX_BODY = 4096
"""Largest request body (the options object) read, bytes."""


def _may_request(principal: Principal, user_id: str) -> None:
    if principal.kind == "app":
        try:
            principal.may_publish(ERASURE_TOPIC)
        except GrantError as exc:
            raise ApiError(403, str(exc)) from None
    elif principal.role != "user":
        # moderator and operator logins are staff accounts, not data subjects
        raise ApiError(403, f"an erasure is requested with the user's own token (role user) or an app key "
                            f"granted {ERASURE_TOPIC!r}; role {principal.role} has no erasure power")
    elif principal.name != user_id:
        raise ApiError(403, f"a user token requests the erasure of its own user only (this token is for "
                            f"user {principal.name!r})")


@router.post("/users/{user_id}/erasure", status_code=202,
             summary="Request the erasure of a user's data (or one of their posts).",
             responses={202: {"description": "`{\"request_id\", \"user_id\", \"scope\", \"report\"}`"}})
async def post_erasure(user_id: str, request: Request, principal: Principal = Depends(authenticate)) -> dict:
    """Publishes an ``ErasureRequest`` (schemas/avro/erasure_request.v1.avsc); the eraser and the
    stateful agents carry it out as they reach it in the log (docs/erasure.md)."""
    ctx = context(request)
    _may_request(principal, user_id)
    if not user_id or len(user_id) > 200:
        raise ApiError(422, "user_id must be 1 to 200 characters")
    body = await read_body(request, MAX_BODY)
    options: dict = {}
    if body.strip():
        try:
            options = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(options, dict):
            raise ApiError(422, "the body must be a JSON object: {\"legal_basis\": ..., \"post_id\": ...}")
        unknown = set(options) - {"legal_basis", "post_id"}
        if unknown:
            raise ApiError(422, f"unknown field(s) {', '.join(sorted(unknown))}; the body takes legal_basis "
                                f"and post_id")
    post_id = options.get("post_id")
    if post_id is not None and (not isinstance(post_id, str) or not post_id or len(post_id) > 200):
        raise ApiError(422, "post_id must be a post id (a string of 1 to 200 characters) or null")
    basis = options.get("legal_basis", "GDPR")
    try:
        record = erasure_request(user_id, post_id=post_id, basis=str(basis))
    except ValueError as exc:
        raise ApiError(422, f"legal_basis: {exc}") from None
    record["producer"] = principal.name if principal.kind == "app" else f"user:{principal.name}"
    await ctx.ingest.publish(ERASURE_TOPIC, record)
    rid = record["request_id"]
    return {"request_id": rid, "user_id": user_id, "scope": record["scope"],
            "report": f"/v1/erasure-requests/{rid}"}


@router.get("/erasure-requests/{request_id}", summary="An erasure request's report: what was removed where.")
def get_erasure_report(request_id: str, request: Request, principal: Principal = Depends(authenticate)) -> dict:
    """Per component (the eraser, then each agent that forgets users) the items removed and
    their counts; ``done`` the components that have finished, ``pending`` the rest."""
    from agents.registry import erasure_components
    from streams.query.erasure import read_erasure_report
    from streams.stores.cassandra import ViewStoreError

    if len(request_id) > 200:
        raise ApiError(422, "request_id is at most 200 characters")
    if principal.kind == "app":
        try:
            principal.may_read("erasure-reports")
        except GrantError as exc:
            raise ApiError(403, str(exc)) from None
    elif principal.role != "user":
        raise ApiError(403, f"an erasure's report is read with the subject's own token or an app key "
                            f"granted the 'erasure-reports' read; role {principal.role} cannot")
    try:
        report = read_erasure_report(context(request).read_side, request_id)
    except ViewStoreError as exc:
        raise ApiError(503, f"the views cannot be read now: {exc}") from None
    if principal.kind != "app":
        if report.user_id is None:
            raise ApiError(404, f"no report for erasure request {request_id!r} yet (the eraser writes it "
                                f"when it reaches the request; retry shortly)")
        if report.user_id != principal.name:
            raise ApiError(403, f"a user token reads only the reports of its own user's erasure requests "
                                f"(this token is for user {principal.name!r})")
    expected = erasure_components()
    return {**report.as_dict(), "pending": report.missing(expected), "complete": not report.missing(expected)}

"""The pages' routes: ``/static/...`` serves ``streams/web/static/`` (every page's folder:
``moderation/``, ``dashboard/``), and each page has a short path to its ``index.html``.

Pages are public files (HTML, JavaScript, CSS; no data): what they show comes from the JSON API,
which checks the session cookie and role on every call. Responses carry a strict
Content-Security-Policy (scripts, styles and images from this origin only; media from this
origin; no framing) and ``X-Content-Type-Options: nosniff``.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The pages' files (package data, ``[tool.setuptools.package-data]`` in pyproject.toml)."""
STATIC_PREFIX = "/static"
PAGES = {"/moderation": "moderation/index.html", "/dashboard": "dashboard/index.html"}
"""Short path -> file under :data:`STATIC_DIR`."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _page(relative: str):
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / relative, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    return page


for _path, _file in PAGES.items():
    router.add_api_route(_path, _page(_file), methods=["GET"])
    router.add_api_route(_path + "/", _page(_file), methods=["GET"])


class _StaticFiles(StaticFiles):
    """StaticFiles with :data:`SECURITY_HEADERS` on every answer."""

    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Mount :data:`STATIC_DIR` at :data:`STATIC_PREFIX` and add the pages' short paths."""
    app.mount(STATIC_PREFIX, _StaticFiles(directory=STATIC_DIR, check_dir=True), name="static")
    app.include_router(router)

"""Browser tests' fixtures: Debian's Chromium driven by Playwright, and the API served by uvicorn
on a free loopback port, as ``pulse api`` serves it.

Use from a test module::

    from tests.integration.browser import browser, page, screenshot_dir, serve_api  # noqa: F401 (fixtures)

    def test_something(pipeline, page, screenshot_dir):
        with serve_api(pipeline) as base_url:
            page.goto(f"{base_url}/moderation")

- ``browser`` (module scope): headless Chromium from ``shutil.which("chromium")`` (installed by
  ``scripts/install-system-deps.sh``), ``--no-sandbox`` (tests may run as root in a container);
  the test is skipped with the reason when Chromium or Playwright is missing. Playwright's own
  browser downloads are never used: nothing here reaches the internet.
- ``page``: a fresh browser context (its own cookies) and page per test, 1366x900 (a laptop).
- ``screenshot_dir``: ``$PULSE_SCREENSHOT_DIR`` when set (created), else the test's ``tmp_path``.
- :func:`serve_api`: the app of :func:`streams.api.app.create_app` for the given settings under
  uvicorn in a daemon thread; yields ``http://127.0.0.1:<port>`` and stops the server after.
- :func:`shoot_moderation`: log in at ``/moderation`` and save ``moderation-queue.png``.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

VIEWPORT = {"width": 1366, "height": 900}
"""A common laptop screen, CSS pixels."""


def chromium_path() -> str | None:
    """The Chromium executable on ``PATH`` (Debian's ``chromium``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium under Playwright (a ``playwright.sync_api.Browser``); skips without it."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium on PATH: run scripts/install-system-deps.sh (Debian's chromium package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """A page in a fresh context (no cookies), laptop-sized; closed after the test."""
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where a test saves its screenshots: ``$PULSE_SCREENSHOT_DIR`` or ``tmp_path``."""
    out = Path(os.environ.get("PULSE_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_api(settings: Any, *, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve the API of ``settings`` on a free loopback port in a background thread.

    Yields the base URL (``http://127.0.0.1:PORT``). Raises RuntimeError when uvicorn has not
    started within ``timeout_s`` seconds. The server is stopped (open requests finish) on exit.
    """
    import uvicorn

    from streams.api.server import server_config

    port = free_port()
    server = uvicorn.Server(server_config(settings, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port} within {timeout_s:.0f} s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def login(page: Any, base_url: str, name: str, password: str, path: str = "/moderation") -> None:
    """Open ``path`` and log in through its form (``#login-form``); returns once the form is gone.

    Raises AssertionError with the page's message when the login is refused.
    """
    page.goto(f"{base_url}{path}")
    page.fill("#login-form [name=name]", name)
    page.fill("#login-form [name=password]", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => document.body.dataset.state !== 'login' || "
                           "document.querySelector('#login-error').textContent !== ''")
    state = page.evaluate("document.body.dataset.state")
    assert state != "login", f"login refused: {page.inner_text('#login-error')}"


def shoot_moderation(page: Any, base_url: str, name: str, password: str, out_dir: Path | str) -> Path:
    """Log in as moderator ``name`` at ``base_url``/moderation, wait for the queue to load, and
    save a full-page screenshot as ``out_dir/moderation-queue.png``; returns its path.

    ``page`` must be a fresh Playwright page (no session yet). Used by the moderation browser
    test and by the demo test to capture the page with live data.
    """
    login(page, base_url, name, password)
    page.wait_for_selector("body[data-state=queue]")
    page.wait_for_function("() => document.querySelector('#queue').dataset.loaded === 'true'")
    out = Path(out_dir) / "moderation-queue.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    return out

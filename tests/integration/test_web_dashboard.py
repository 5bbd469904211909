"""The operator dashboard in Debian's Chromium (Playwright): an operator logs in at /dashboard,
the page goes live (server-sent events), its events/s and events-in figures change while the
test publishes events through a running worker, and the feed inspector shows a user's feed
entries with their sources and reasons beside the profile in words. Screenshots:
``dashboard.png`` and ``feed-inspector.png`` in ``$PULSE_SCREENSHOT_DIR`` (default: the test's
tmp_path).

:func:`shoot_dashboard` is also what the demo test calls to capture the page with its live data.
"""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.producer import Publisher

from tests.integration.browser import VIEWPORT, browser, login, page, screenshot_dir, serve_api  # noqa: F401 (fixtures)
from tests.integration.conftest import unique, wait_until
from tests.integration.test_feeds import AGENTS, axis, follow, publish_post
from tests.integration.test_publish import upload_line


def shoot_dashboard(page: Any, base_url: str, name: str, password: str, out_dir: Path | str, *,
                    inspect_user: str | None = None, min_snapshots: int = 3) -> list[Path]:
    """Log in as operator ``name`` at ``base_url``/dashboard, wait for ``min_snapshots`` live
    snapshots (the charts need a few points), save a full-page ``dashboard.png``; with
    ``inspect_user``, also run the feed inspector on that user and save
    ``feed-inspector.png``. Returns the paths written.

    ``page`` must be a fresh Playwright page (no session yet), e.g. 1366x900.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    login(page, base_url, name, password, path="/dashboard")
    page.wait_for_selector("body[data-state=dashboard]", timeout=30_000)
    page.wait_for_function(f"() => Number(document.body.dataset.snapshots || 0) >= {min_snapshots}",
                           timeout=60_000)
    shots = [out / "dashboard.png"]
    page.screenshot(path=str(shots[0]), full_page=True)
    if inspect_user:
        page.fill("#inspect-form [name=user]", inspect_user)
        page.click("#inspect-form button[type=submit]")
        page.wait_for_function("() => document.querySelector('#feed').dataset.loaded", timeout=60_000)
        loaded = page.evaluate("document.querySelector('#feed').dataset.loaded")
        assert loaded == "true", f"the feed inspector failed: {page.inner_text('#inspect-status')}"
        page.locator("#inspector").scroll_into_view_if_needed()
        shots.append(out / "feed-inspector.png")
        page.locator("#inspector").screenshot(path=str(shots[1]))
    return shots


def _events_in(page) -> int:
    return int(page.evaluate("Number(document.body.dataset.eventsIn || 0)"))


@pytest.mark.timeout(900)
def test_dashboard_goes_live_numbers_move_and_feed_inspector_explains(pipeline, workers, browser, page,
                                                                    screenshot_dir):
    from streams.api.accounts import AccountStore
    from streams.query.feeds import read_feed
    from streams.query.read_side import ReadSide

    app_id, r = unique("dash"), unique("d")
    creator, reader = f"{r}-creator", f"{r}-reader"
    name, password = unique("op"), "correct horse battery staple"
    AccountStore.for_settings(pipeline).add(name, password, role="operator")
    now = int(time.time() * 1000)
    with Publisher(pipeline) as pub:
        pub.publish("follows", follow(reader, creator, now - 60_000))
        pub.flush()
        publish_post(pub, f"{r}-p0", creator, now - 30_000, axis(0))
    proc = workers.start(app_id, agents=AGENTS, PULSE_FEED_INTEREST_PUSH="0")
    diagnose = lambda: workers.log(proc)  # noqa: E731
    with ReadSide(pipeline) as rs:
        wait_until(lambda: read_feed(rs, reader, limit=10, fresh=0).items, 240, "the reader's feed",
                   diagnose=diagnose)

    with serve_api(pipeline) as base:
        login(page, base, name, password, path="/dashboard")
        page.wait_for_selector("body[data-state=dashboard]", timeout=30_000)
        page.wait_for_function("() => Number(document.body.dataset.snapshots || 0) >= 2", timeout=60_000)
        wait_until(lambda: page.evaluate("document.querySelectorAll('#agents tbody tr').length") >= 1, 60,
                   "the agents table", diagnose=diagnose)
        before = _events_in(page)

        stop = threading.Event()

        def publish_while_watched() -> None:
            i = 0
            with Publisher(pipeline) as pub:
                while not stop.is_set():
                    t = int(time.time() * 1000)
                    pub.publish("follows", follow(f"{r}-fan{i}", creator, t))
                    pub.publish("interactions", {"event_id": str(uuid.uuid4()), "event_time": t, "producer": "app",
                                                 "user_id": f"{r}-fan{i}", "post_id": f"{r}-p0", "type": "VIEW",
                                                 "dwell_ms": 1200, "comment_id": None, "comment_text": None,
                                                 "report_reason": None, "surface": "feed"})
                    if i % 5 == 0:
                        publish_post(pub, f"{r}-live{i}", creator, t, axis(1 + i % 5))
                    pub.flush()
                    i += 1
                    time.sleep(0.1)

        feeder = threading.Thread(target=publish_while_watched, daemon=True)
        feeder.start()
        try:
            wait_until(lambda: _events_in(page) > before, 120, "the events-in figure to grow", diagnose=diagnose)
            wait_until(lambda: float(page.evaluate("document.body.dataset.inPerS || 0")) > 0, 60,
                       "a non-zero events/s figure", diagnose=diagnose)
            shown = page.inner_text("#agents tbody")
            assert any(a in shown for a in AGENTS.split(","))
            time.sleep(5)  # a few more points on the charts
            # what the demo test does too: a fresh page logs in and shoots, while events flow
            fresh = browser.new_context(viewport=VIEWPORT)
            try:
                shots = shoot_dashboard(fresh.new_page(), base, name, password, screenshot_dir,
                                        inspect_user=reader)
                inspector = fresh.pages[0]
                text = inspector.inner_text("#feed tbody")
                assert f"{r}-p0" in text and "IN_NETWORK" in text  # the entry and its source
                assert inspector.locator("#feed tbody tr").count() >= 1
                assert inspector.inner_text("#profile").startswith(f"Profile of {reader}")
            finally:
                fresh.close()
        finally:
            stop.set()
            feeder.join(10)
    assert [p.name for p in shots] == ["dashboard.png", "feed-inspector.png"]
    assert (Path(screenshot_dir) / "dashboard.png").stat().st_size > 10_000
    assert (Path(screenshot_dir) / "feed-inspector.png").stat().st_size > 5_000


def test_dashboard_refuses_a_moderator_and_an_anonymous_stream(pipeline, page):
    from streams.api.accounts import AccountStore

    name, password = unique("mod"), "correct horse battery staple"
    AccountStore.for_settings(pipeline).add(name, password, role="moderator")
    with serve_api(pipeline) as base:
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/v1/ops/stream", timeout=10)
        assert err.value.code == 401
        login(page, base, name, password, path="/dashboard")
        page.wait_for_selector("body[data-state=forbidden]", timeout=30_000)
        assert "operator" in page.inner_text("#forbidden")

"""The moderators' page in a real browser (Debian's Chromium under Playwright) against the real
servers and a worker running Content Guard and the publisher: two uploads whose captions the
shipped models send to human review (one with a photo from the media store) wait in the queue; a
moderator account logs in at /moderation, sees the tasks oldest first with their scores,
reasons, text and photo, blocks the first with a category and a note and allows the second; each
task leaves the list with a confirmation, and the posts' status (``GET /v1/posts/{id}``) becomes
BLOCKED and PUBLISHED with the moderator's reasons. Screenshots ``moderation-queue.png`` and
``moderation-decided.png`` go to ``$PULSE_SCREENSHOT_DIR`` (default: the test's tmp_path). Also:
a wrong password shows the API's message on the form, and a user with another role is told the
page is for moderators."""
from __future__ import annotations

import time

import httpx
import pytest

from streams.api.accounts import AccountStore
from streams.api.auth import issue_token, token_secret
from streams.producer import Publisher
from streams.query.review import pending_tasks
from streams.stores.media import MediaStore
from tests.integration.browser import browser, page, screenshot_dir, serve_api, shoot_moderation  # noqa: F401
from tests.integration.conftest import unique, wait_until
from tests.integration.test_content_gate import COCO, DAVIDSON, texts  # noqa: F401 (fixture)
from tests.integration.test_publish import upload_line

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not COCO.is_dir(), reason=f"{COCO} (the COCO photos) is absent")]
PASSWORD = "moderation-page-password"
BORDERLINE = ("this referee should be shot for that call, absolute idiot",
              "my neighbour is a lazy idiot and I hope his car gets towed")
"""Figures of speech that read like a threat or an insult: what a human should look at. The
screenshots show them rather than the slurs of the Davidson set."""


@pytest.fixture(scope="module")
def review_captions(request) -> list[str]:
    """Two captions the shipped models send to human review, found by running the real tiers
    (as the agent moderates them: with the hashtag line) over :data:`BORDERLINE`, then, should a
    retrained model decide some of them, over Davidson rows (the ``texts`` fixture)."""
    from models.moderation import load_moderator

    verdicts = load_moderator().moderate_texts([t + "\n#qubits" for t in BORDERLINE])
    found = [t for t, v in zip(BORDERLINE, verdicts) if v.action == "REVIEW"]
    if len(found) < 2:
        if not DAVIDSON.is_file():
            pytest.skip(f"the models decide {2 - len(found)} of the borderline captions and {DAVIDSON} is absent")
        found += [request.getfixturevalue("texts")["REVIEW"]] * (2 - len(found))
    return found[:2]


def oldest_event_time_ms() -> int:
    """An upload time earlier than every earlier run's (it falls as the clock rises) and than the
    other tests' (2020 on), so this run's tasks are the oldest in the queue the page shows first."""
    return 1_000_000_000_000 + (2_000_000_000 - int(time.time())) * 1000


@pytest.mark.timeout(600)
def test_a_moderator_decides_tasks_in_the_browser_and_the_posts_follow(pipeline, workers, review_captions, page,  # noqa: F811
                                                                      screenshot_dir):
    creator = unique("c")
    blocked_post, allowed_post = unique("web-review"), unique("web-review")
    photo = MediaStore.from_settings(pipeline).put_file(sorted(COCO.glob("*.jpg"))[0])
    at = oldest_event_time_ms()
    with Publisher(pipeline) as pub:
        pub.publish("uploads", upload_line(blocked_post, creator, kind="IMAGE", caption=review_captions[0],
                                           media_uri=photo.uri, event_time=at))
        pub.publish("uploads", upload_line(allowed_post, creator, caption=review_captions[1], event_time=at + 60_000))
    proc = workers.start(unique("web"), agents="materializer,content_guard,publisher", PULSE_GATES="moderation")

    def both_tasks():
        mine = {t["post_id"]: t for t in pending_tasks(pipeline, 20000) if t["post_id"] in (blocked_post, allowed_post)}
        return mine if len(mine) == 2 else None

    tasks = wait_until(both_tasks, 420, "Content Guard's two review tasks", interval_s=2,
                       diagnose=lambda: workers.log(proc))
    first, second = tasks[blocked_post], tasks[allowed_post]
    name = unique("mod")
    AccountStore.for_settings(pipeline).add(name, PASSWORD)

    with serve_api(pipeline) as base:
        shot = shoot_moderation(page, base, name, PASSWORD, screenshot_dir)
        assert shot.is_file() and shot.stat().st_size > 10_000
        cards = page.locator("li.task")
        assert [cards.nth(i).get_attribute("data-task-id") for i in range(2)] == [first["task_id"], second["task_id"]]
        card = page.locator(f'li.task[data-task-id="{first["task_id"]}"]')
        assert review_captions[0] in card.locator(".text").inner_text()
        top = max(first["scores"], key=first["scores"].get)
        assert card.locator(".scores li").first.locator(".score-name").inner_text() == top  # highest first
        assert f"{first['scores'][top]:.2f}" in card.locator(".scores").inner_text()
        assert card.locator(".reasons li").count() == len(first["reasons"]) > 0
        assert card.locator(".media img").evaluate("img => img.complete && img.naturalWidth") > 0  # the photo
        assert "harassment" in card.locator(".categories").inner_text()

        card.locator("input[name=category][value=threat]").check()
        card.locator("textarea.note").fill("a threat, even as a joke")
        card.locator("button[data-action=BLOCK]").click()
        card.wait_for(state="detached")
        assert "Decided: BLOCK (threat)" in page.inner_text("#status")
        assert page.locator("li.task").first.get_attribute("data-task-id") == second["task_id"]
        page.screenshot(path=str(screenshot_dir / "moderation-decided.png"), full_page=True)

        other = page.locator(f'li.task[data-task-id="{second["task_id"]}"]')
        other.locator("button[data-action=ALLOW]").click()
        other.wait_for(state="detached")
        assert "Decided: ALLOW" in page.inner_text("#status")

        mod = {"Authorization": f"Bearer {issue_token(token_secret(pipeline), 'checker', ttl_s=600, role='moderator')}"}

        def status_of(post, expected):
            r = httpx.get(f"{base}/v1/posts/{post}", headers=mod)
            return r.json() if r.status_code == 200 and r.json()["status"] == expected else None

        blocked = wait_until(lambda: status_of(blocked_post, "BLOCKED"), 120, "the post blocked by the moderator",
                             interval_s=1, diagnose=lambda: workers.log(proc))
        human = [m for m in blocked["moderation"] if m["tier"] == "HUMAN"]
        assert human[0]["action"] == "BLOCK"
        assert human[0]["reasons"] == [f"moderator {name}: block", "category: threat", "note: a threat, even as a joke"]
        allowed = wait_until(lambda: status_of(allowed_post, "PUBLISHED"), 120, "the post the moderator allowed",
                             interval_s=1, diagnose=lambda: workers.log(proc))
        assert [m["action"] for m in allowed["moderation"] if m["tier"] == "HUMAN"] == ["ALLOW"]
        page.click("#refresh")
        page.wait_for_function("() => document.querySelector('#queue').dataset.loaded === 'true'")
        ids = page.locator("li.task").evaluate_all("els => els.map(e => e.dataset.taskId)")
        assert first["task_id"] not in ids and second["task_id"] not in ids  # gone for good
    assert proc.poll() is None


def test_the_page_refuses_a_wrong_password_and_other_roles(pipeline, page):  # noqa: F811
    store = AccountStore.for_settings(pipeline)
    operator = unique("op")
    store.add(operator, PASSWORD, role="operator")
    with serve_api(pipeline) as base:
        page.goto(f"{base}/moderation")
        page.fill("#login-form [name=name]", operator)
        page.fill("#login-form [name=password]", "not-the-password")
        page.click("#login-form button[type=submit]")
        page.wait_for_function("() => document.querySelector('#login-error').textContent !== ''")
        assert "wrong account name or password" in page.inner_text("#login-error")
        assert page.evaluate("document.body.dataset.state") == "login"
        assert page.context.cookies() == []  # nothing set by a refused login

        page.fill("#login-form [name=password]", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("body[data-state=forbidden]")
        assert "this page is for moderators" in page.inner_text("#forbidden")
        session = next(c for c in page.context.cookies() if c["name"] == "pulse_session")
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert page.evaluate("document.cookie").startswith("pulse_csrf=")  # the script sees only the CSRF cookie

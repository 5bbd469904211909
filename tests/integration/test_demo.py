"""The main job end to end on the real Stack Exchange dump: every event published through real
Kafka, the materializer catches up, and the views hold exactly what the dump says; then a
rebuild of every agent into a fresh keyspace, verified against the live run, differs in nothing.

The demo runs on servers of its own (not the session's, which other tests fill with partial
runs), so that the verified rebuild compares the whole log with the whole live run."""
from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from streams.demo.run import print_summary, run_demo
from streams.demo.sources.stackexchange import SAMPLE_DUMP

from tests.integration.browser import browser  # noqa: F401 (fixture)

DUMP = SAMPLE_DUMP  # the dump shipped in the repository (the same rows as ../shared/data's)


@pytest.fixture(scope="module")
def demo_servers(servers, tmp_path_factory):
    """A Kafka broker and a Cassandra node of the demo's own (started like the session's)."""
    from streams.servers.provision import provision
    from streams.servers.supervisor import down, up
    from streams.settings import Settings

    from tests.conftest import _watchdog, server_env

    if servers.external:
        pytest.skip("the demo's verified rebuild needs servers of its own (external servers set)")
    env = server_env(tmp_path_factory.mktemp("pulse-demo-home"))
    settings = Settings.from_env(env)
    watchdog = _watchdog(settings.home)
    try:
        up(settings)
        settings = Settings.from_env(env)
        provision(settings)
        yield settings
    finally:
        down(settings)
        watchdog.terminate()
        watchdog.wait()


@pytest.mark.timeout(2700)  # every agent (models included) over the whole dump on 2 cores, twice
def test_demo_publishes_the_dump_and_the_views_match_it(demo_servers, tmp_path: Path):
    settings = demo_servers.with_(app_id="demo-test")
    console = Console(file=open(tmp_path / "demo.out", "w"), width=120)
    result = run_demo(settings, stackexchange=DUMP, media=None, photos=True, timeout_s=1500,
                      console=console)
    print_summary(result, console)
    published = result.published
    assert published["signups"] == 3461 + 3  # the dump's users + the demo creators of the photos
    # questions and answers with an owner + 17 photos + the demo's disguised copy of a registered work
    assert published["uploads"] == 1667 + 17 + 1
    assert published["copyright-references"] == 1
    assert published["interactions"] == 14378 and published["follows"] == 1771
    # other tests share these topics and views, so the views hold at least the demo's rows
    assert result.views["users"] >= published["signups"]
    assert result.views["posts"] >= published["uploads"]
    assert result.views["following"] >= published["follows"]
    assert result.seconds["process_engagement"] > 0
    # the gates: every upload got a Content Guard verdict; the copy was caught, the owner's
    # upload allowed; most posts were published
    gates = result.gates
    auto_post_verdicts = sum(n for (tier, _, kind), n in gates["moderation"].items()
                             if kind == "post" and tier != "HUMAN")
    assert auto_post_verdicts == published["uploads"]
    caught = {post: (action, ref) for post, action, ref, *_ in gates["copyright_matches"]}
    assert caught["demo-repost-rocket"] == ("BLOCK", "demo-work-rocket")
    assert caught["skimage-rocket"][0] == "ALLOW" and gates["own_work"] == 1
    assert sum(gates["published"].values()) > 0.95 * published["uploads"]
    # delivery: notification decisions carry the probability the policy gave the action; the
    # best-followed creators have golden moments
    notes = result.delivery["notifications"]
    assert notes["rows"] > 0 and notes["users"]
    for u in notes["users"]:
        assert u["decisions"] and all(0 < d["propensity"] <= 1 for d in u["decisions"])
    assert result.delivery["golden_moments"]
    assert all(m["moments"][0]["windows"] for m in result.delivery["golden_moments"])
    assert result.delivery["creator_stats"]
    assert all(c["totals"]["reach"] >= 1 and c["posts"] for c in result.delivery["creator_stats"])

    # every agent rebuilt from the log into a fresh keyspace equals the live run: derived events
    # byte for byte, view rows, vector points
    from replay.rebuild import rebuild_views
    from replay.verify import verify_rebuild

    rebuilt = rebuild_views(settings, None, into="demo_verify", collect=True)
    assert rebuilt["events"] >= sum(published.values()) - published["copyright-references"]
    report = verify_rebuild(settings, rebuilt)
    assert report.events.get("posts-published", 0) > 0.95 * published["uploads"]
    assert report.rows.get("posts", 0) >= published["uploads"]
    assert not report.differences, "\n".join(d.line() for d in report.differences[:50])


@pytest.mark.timeout(900)
def test_the_web_pages_show_the_demos_live_data(demo_servers, browser, tmp_path: Path):
    """After the demo: a worker keeps running, people keep viewing the demo's posts, and an
    operator's dashboard and a moderator's queue are captured in Chromium with that live data
    (``$PULSE_SCREENSHOT_DIR``: dashboard.png, feed-inspector.png, moderation-queue.png)."""
    import json
    import os
    import secrets
    import threading
    import time
    import uuid

    from streams.api.accounts import AccountStore
    from streams.demo.run import start_worker, stop_worker
    from streams.producer import Publisher
    from streams.query.read_side import ReadSide

    from tests.integration.browser import VIEWPORT, login, serve_api
    from tests.integration.test_web_dashboard import shoot_dashboard

    settings = demo_servers.with_(app_id="demo-test")
    out = Path(os.environ.get("PULSE_SCREENSHOT_DIR") or tmp_path)
    password = secrets.token_urlsafe(12)
    accounts = AccountStore.for_settings(settings)
    accounts.add("demo-operator", password, "operator")
    accounts.add("demo-moderator", password, "moderator")
    with ReadSide(settings) as rs:
        ks = rs.active_keyspace()
        readers = [r.user_id for r in rs.execute("SELECT user_id FROM {ks}.user_feeds LIMIT 200", keyspace=ks)]
        posts = [r.post_id for r in rs.execute("SELECT post_id FROM {ks}.posts LIMIT 300", keyspace=ks)]
    assert readers and posts, "the demo left no feeds or posts to show"
    from streams.runtime.metrics import discovery_dir

    log = settings.home / "logs" / "demo-pages-worker.log"
    worker = start_worker(settings, log)
    deadline = time.monotonic() + 600  # every agent loads its models before the worker serves metrics
    while not any(discovery_dir(settings.home).glob(f"{worker.pid}.json")):
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1)
    stop = threading.Event()

    def people_keep_viewing() -> None:
        with Publisher(settings, producer_name="demo-live") as pub:
            i = 0
            while not stop.is_set():
                pub.publish("interactions", {"event_id": str(uuid.uuid4()), "event_time": int(time.time() * 1000),
                                             "producer": "demo-live", "user_id": readers[i % len(readers)],
                                             "post_id": posts[(i * 7) % len(posts)], "type": "VIEW",
                                             "dwell_ms": 2_000 + (i % 5) * 1_000, "surface": "feed"})
                pub.flush()
                i += 1
                stop.wait(0.1)

    viewer = threading.Thread(target=people_keep_viewing, daemon=True)
    viewer.start()
    try:
        # the worker restores its agents' state from the changelogs before it consumes: shoot once
        # its own metrics show the live views flowing through the agents
        url = json.loads(next(discovery_dir(settings.home).glob(f"{worker.pid}.json")).read_text())["url"]
        while _events_in(url) < 200:
            assert worker.poll() is None and time.monotonic() < deadline + 300, log.read_text()[-3000:]
            time.sleep(2)
        with serve_api(settings) as base:
            ctx = browser.new_context(viewport=VIEWPORT)
            try:
                shots = shoot_dashboard(ctx.new_page(), base, "demo-operator", password, out,
                                        inspect_user=readers[0], min_snapshots=30)
            finally:
                ctx.close()
            ctx = browser.new_context(viewport=VIEWPORT)
            try:  # the first screen of the queue (the whole page holds every pending task)
                page = ctx.new_page()
                login(page, base, "demo-moderator", password)
                page.wait_for_function("() => document.querySelector('#queue').dataset.loaded === 'true'")
                shots.append(out / "moderation-queue.png")
                page.screenshot(path=str(shots[-1]))
            finally:
                ctx.close()
    finally:
        stop.set()
        viewer.join(30)
        stop_worker(worker)
    assert all(p.stat().st_size > 10_000 for p in shots), shots


def _events_in(metrics_url: str) -> float:
    """The sum of ``pulse_agent_events_in_total`` over a worker's agents (its /metrics)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        text = r.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "pulse_agent_events_in_total")

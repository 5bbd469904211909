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

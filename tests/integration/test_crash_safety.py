"""Crash safety on the real broker and Cassandra: a worker SIGKILLed at each step of a batch
(``PULSE_CRASH_POINT``: after process, after sink writes, after emits, after state, i.e. before
the offset commit), then restarted, leaves the views and output topics a run without the fault
leaves. The run without the fault is the same agent's :class:`AgentRunner` over the same events,
in this process. Three agents: the stateless materializer, the stateful publisher (its gate table
and positions in changelogged Faust tables) and copyright_guard (the reference bank as a side
input)."""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from agents.registry import AGENTS
from replay.reader import read_topic
from replay.rebuild import read_merged
from replay.verify import _norm, primary_key
from streams.contracts.codec import codec_for
from streams.contracts.effects import Delete, Upsert
from streams.contracts.topics import topic_spec
from streams.producer import Publisher
from streams.runtime.engine import AgentRunner, RawMessage
from streams.runtime.faults import POINTS
from streams.stores.cassandra import connect

from tests.integration.conftest import unique, wait_until
from tests.integration.test_publish import upload_line
from tests.integration.test_publisher_gate import copyright_, moderation
from tests.integration.test_worker_views import caught_up

COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-captions" / "images"


def _full(topic: str, record: dict, at: int) -> dict:
    return {"event_id": str(uuid.uuid4()), "event_time": at, "producer": "crash-test", **record}


def _publish(settings, events: list[tuple[str, dict]]) -> None:
    with Publisher(settings) as pub:
        for topic, record in events:
            pub.publish(topic, record)


def _expected(settings, agent: str, events: list[tuple[str, dict]], side_events=()):
    """The fault-free outcome: the agent's runner over ``events`` in order."""
    spec = AGENTS[agent]
    codecs = {}

    def codec(topic):
        if topic not in codecs:
            codecs[topic] = codec_for(settings, topic_spec(topic).schema, topic)
        return codecs[topic]

    side = {}
    for si in spec.side_inputs:
        state = si.open(settings, None)
        for m in side_events:
            state.apply(codec(si.topic).decode(m.value))
        side[si.name] = state
    runner = AgentRunner(spec, codec, config=settings, models=spec.load(settings), side=side)
    out = runner.run([RawMessage(t, None, None, None, codec(t).encode(r)) for t, r in events])
    runner.apply_state(out.state)
    assert not out.dead_letters, [codec("dead-letters").decode(d.value)["reason"]
                                  for d in out.dead_letters]
    return out


def _check_views(settings, views) -> None:
    """Every row the fault-free run writes is in Cassandra with the same values."""
    final: dict = {}
    cluster, session = connect(settings, settings.cassandra_keyspace)
    try:
        for e in views:
            if not isinstance(e, (Upsert, Delete)):
                continue
            pk = primary_key(session, settings.cassandra_keyspace, e.table)
            cols = e.row if isinstance(e, Upsert) else e.key
            key = (e.table, tuple(cols[c] for c in pk))
            prev = final.get(key)
            if prev is None or prev[0] <= e.timestamp_us:
                merged = dict(prev[1]) if prev and isinstance(e, Upsert) and prev[1] else {}
                final[key] = (e.timestamp_us, {**merged, **cols} if isinstance(e, Upsert) else None, pk)
        for (table, key), (_, row, pk) in final.items():
            where = " AND ".join(f"{c} = %s" for c in pk)
            if row is None:
                assert session.execute(f"SELECT * FROM {table} WHERE {where}", key).one() is None
                continue
            cols = sorted(row)
            got = session.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {where}", key).one()
            assert got is not None, f"{table} {key}: row missing"
            for c, v in zip(cols, got):
                assert _norm(v) == _norm(row[c]), f"{table} {key} {c}: {v!r} != {row[c]!r}"
    finally:
        cluster.shutdown()


def _check_emits(settings, expected, ids: set[str], id_field: str) -> None:
    """The output topics hold exactly the fault-free run's events (by event id, byte for byte);
    a re-sent event is a byte-identical copy."""
    want: dict = {}
    for e in expected:
        want.setdefault(e.topic, {})[e.value] = None
    for topic, values in want.items():
        codec = codec_for(settings, topic_spec(topic).schema, topic)
        got: dict[str, set[bytes]] = {}
        for m in read_merged(settings, [topic]):
            if m.value is None:
                continue  # a tombstone on a compacted topic (another test's erasure)
            r = codec.decode(m.value)
            if r.get(id_field) in ids:
                got.setdefault(r["event_id"], set()).add(m.value)
        assert all(len(v) == 1 for v in got.values()), "copies of one event differ"
        assert {next(iter(v)) for v in got.values()} == set(values), f"{topic} differs"


def _crash_then_recover(pipeline, workers, agent: str, point: str, topics: list[str],
                        done, **env: str) -> None:
    app_id = unique(f"crash-{agent}")
    proc = workers.start(app_id, agents=agent, PULSE_CRASH_POINT=f"{agent}:{point}:1", **env)
    wait_until(lambda: proc.poll() is not None, 180, f"the worker to kill itself at {point}",
               diagnose=lambda: workers.log(proc))
    assert proc.returncode == -9, workers.log(proc)
    proc = workers.start(app_id, agents=agent, **env)
    wait_until(lambda: caught_up(pipeline, app_id, topics) and done(), 240,
               "the restarted worker to catch up", diagnose=lambda: workers.log(proc))


@pytest.mark.parametrize("point", POINTS)
def test_stateless_agent_survives_a_kill(pipeline, workers, point):
    creator, fan = unique("c"), unique("u")
    events = [("uploads", _full("uploads", upload_line(f"{creator}-p{i}", creator), 1_600_000_000_000 + i))
              for i in range(4)]
    events += [("follows", _full("follows", {"follower_id": fan, "followee_id": creator,
                                             "action": a}, 1_600_000_001_000 + i))
               for i, a in enumerate(("FOLLOW", "UNFOLLOW"))]
    _publish(pipeline, events)
    expected = _expected(pipeline, "materializer", events)

    def done():
        cluster, s = connect(pipeline, pipeline.cassandra_keyspace)
        try:
            return len(list(s.execute("SELECT post_id FROM posts_by_creator WHERE creator_id = %s",
                                      (creator,)))) == 4
        finally:
            cluster.shutdown()

    _crash_then_recover(pipeline, workers, "materializer", point, ["uploads", "signups", "follows"],
                        done)
    _check_views(pipeline, expected.views)


@pytest.mark.parametrize("point", POINTS)
def test_publisher_survives_a_kill(pipeline, workers, point):
    c = unique("c")
    posts = [f"{c}-{n}" for n in ("ok", "blocked", "review")]
    t0 = 1_600_000_000_000
    events = [("uploads", _full("uploads", upload_line(p, c), t0 + i)) for i, p in enumerate(posts)]
    for i, (p, action) in enumerate(zip(posts, ("ALLOW", "BLOCK", "REVIEW"))):
        events.append(("moderation-verdicts", moderation(p, action, t0 + 10 + i)))
        events.append(("copyright-verdicts", copyright_(p, "ALLOW", t0 + 20 + i)))
    _publish(pipeline, events)
    env = {"PULSE_GATES": "moderation,copyright"}
    expected = _expected(replace(pipeline, gates=("moderation", "copyright")), "publisher", events)
    assert len(expected.emits) == 1  # the allowed post

    def done():
        got = [r for _, r in read_topic(pipeline, "posts-published") if r["post_id"] in posts]
        return len(got) >= 1

    _crash_then_recover(pipeline, workers, "publisher", point,
                        ["uploads", "moderation-verdicts", "copyright-verdicts", "content-enriched"],
                        done, **env)
    _check_emits(pipeline, expected.emits, set(posts), "post_id")
    _check_views(pipeline, expected.views)


@pytest.mark.skipif(not COCO.is_dir(), reason=f"{COCO} is absent (shared data)")
@pytest.mark.parametrize("point", POINTS)
def test_side_input_agent_survives_a_kill(pipeline, workers, tmp_path, point):
    from models.copyright import reference_fingerprints
    from PIL import Image

    images = sorted(COCO.glob("*.jpg"))[:3]
    ref_id = unique("ref")
    modality, fps = reference_fingerprints(images[0])
    now = int(time.time() * 1000)
    ref = _full("copyright-references", {
        "reference_id": ref_id, "rights_holder_id": "studio", "action": "REGISTER",
        "title": "crash test work", "media_kind": modality, "media_uri": None, "fingerprints": fps,
        "policy": "BLOCK", "metadata": {}}, now)
    copy = tmp_path / "copy.jpg"
    Image.open(images[0]).convert("RGB").save(copy, quality=40)
    c = unique("c")
    posts = [f"{c}-copy", f"{c}-other"]
    events = [("uploads", _full("uploads", upload_line(p, c, kind="IMAGE", media_uri=path.resolve().as_uri()),
                                now + 1000 + i))
              for i, (p, path) in enumerate(zip(posts, (copy, images[1])))]
    _publish(pipeline, [("copyright-references", ref)])
    _publish(pipeline, events)
    side = list(read_merged(pipeline, ["copyright-references"]))
    expected = _expected(pipeline, "copyright_guard", events, side)
    actions = {codec_for(pipeline, topic_spec(e.topic).schema, e.topic).decode(e.value)["action"]
               for e in expected.emits if e.topic == "copyright-verdicts"}
    assert actions == {"BLOCK", "ALLOW"}

    def done():
        got = [r for _, r in read_topic(pipeline, "copyright-verdicts") if r["post_id"] in posts]
        return len({r["post_id"] for r in got}) == 2

    _crash_then_recover(pipeline, workers, "copyright_guard", point, ["uploads", "review-decisions"],
                        done)
    _check_emits(pipeline, expected.emits, set(posts), "post_id")
    _check_views(pipeline, expected.views)


def test_a_batch_lost_inside_the_worker_is_delivered_again(pipeline, workers):
    """``PULSE_CRASH_POINT=publisher:lose-batch:1`` drops the worker's first batch of the stateful
    publisher after processing, unwritten and unacknowledged, as a batch lost inside the worker
    would be: Faust then never commits past it. The consumer's commit watchdog
    (``PulseConsumer``, threshold ``PULSE_COMMIT_STALL_S``, 3 s here) must log the stall, rewind
    the partitions to their committed offsets (first offsets here), and the same worker must end
    with the views and output events of a run without the fault.

    The group is new, so the worker reads the topics from their first offsets (other tests'
    events included) and the lost batch comes before any commit: faust-streaming alone would
    then commit from the lowest acknowledged offset on and skip it, which
    ``PulseConsumer._new_offset`` prevents (docs/testing.md). The rewind of a partition with a
    committed offset is the one the kill tests' stalls took (unit-tested in
    tests/unit/test_commit_watchdog.py)."""
    app_id = unique("lost-batch")
    topics = ["uploads", "moderation-verdicts", "copyright-verdicts", "content-enriched"]
    c = unique("c")
    posts = [f"{c}-{n}" for n in ("ok", "blocked")]
    t0 = 1_600_000_000_000
    events = [("uploads", _full("uploads", upload_line(p, c), t0 + i)) for i, p in enumerate(posts)]
    for i, (p, action) in enumerate(zip(posts, ("ALLOW", "BLOCK"))):
        events.append(("moderation-verdicts", moderation(p, action, t0 + 10 + i)))
        events.append(("copyright-verdicts", copyright_(p, "ALLOW", t0 + 20 + i)))
    _publish(pipeline, events)
    env = {"PULSE_GATES": "moderation,copyright", "PULSE_COMMIT_STALL_S": "3"}
    expected = _expected(replace(pipeline, gates=("moderation", "copyright")), "publisher", events)
    assert len(expected.emits) == 1  # the allowed post
    proc = workers.start(app_id, agents="publisher", PULSE_CRASH_POINT="publisher:lose-batch:1", **env)

    def done():
        got = [r for _, r in read_topic(pipeline, "posts-published") if r["post_id"] in posts]
        return got and caught_up(pipeline, app_id, topics)

    wait_until(lambda: proc.poll() is not None or done(), 240,
               "the worker to deliver the lost batch again and catch up",
               diagnose=lambda: workers.log(proc))
    assert proc.poll() is None, workers.log(proc)
    log = Path(proc.log_path).read_text(errors="replace")
    # recovered by the watchdog's rewind, or sooner by the gap check when later events of the
    # lost batch's partitions came first (test below)
    assert "dropping batch 1 of publisher" in log and "rewound" in log, log
    assert "commit stalled" in log or "never reached the agent" in log, log
    _check_emits(pipeline, expected.emits, set(posts), "post_id")
    _check_views(pipeline, expected.views)


def test_a_batch_lost_mid_stream_is_applied_before_the_events_after_it(pipeline, workers):
    """A stateful agent's batch lost inside the worker *after* the partitions have positions,
    with later events of the same partitions behind it: applying those first would move the
    positions past the lost events, and the re-delivery would then skip them for good. The
    runner holds the partitions back at the gap (``AgentRunner.watch_gaps``), the consumer
    seeks them to their positions (``PulseConsumer.rewind_to``), and every event is applied in
    log order: the views and output events equal those of a run without the fault.

    A first worker of the group catches up on the topics (positions recorded, offsets
    committed) and stops; a second worker starts, and once it is ready the test's first posts are
    published; it drops its first batch (those posts' events); the second posts, on the same
    partitions, come after."""
    import signal as signals

    app_id = unique("lost-mid")
    topics = ["uploads", "moderation-verdicts", "copyright-verdicts", "content-enriched"]
    # the watchdog (which would rewind to the committed offset, too late: positions past the
    # lost events) kept out of it
    env = {"PULSE_GATES": "moderation,copyright", "PULSE_COMMIT_STALL_S": "600"}
    c = unique("c")
    t0 = 1_600_000_000_000

    def posts_events(names, at):
        out = [("uploads", _full("uploads", upload_line(p, c), at + i)) for i, p in enumerate(names)]
        for i, p in enumerate(names):
            out.append(("moderation-verdicts", moderation(p, "ALLOW", at + 100 + i)))
            out.append(("copyright-verdicts", copyright_(p, "ALLOW", at + 200 + i)))
        return out

    early_posts = [f"{c}-w{i}" for i in range(12)]
    lost_posts = [f"{c}-a{i}" for i in range(6)]
    later_posts = [f"{c}-b{i}" for i in range(24)]  # every partition of every topic, all but surely
    early = posts_events(early_posts, t0)
    events = early + posts_events(lost_posts, t0 + 1000) + posts_events(later_posts, t0 + 2000)
    expected = _expected(replace(pipeline, gates=("moderation", "copyright")), "publisher", events)
    assert len(expected.emits) == len(early_posts) + len(lost_posts) + len(later_posts)
    _publish(pipeline, early)
    first = workers.start(app_id, agents="publisher", **env)
    wait_until(lambda: first.poll() is not None or caught_up(pipeline, app_id, topics), 240,
               "the first worker to catch up", diagnose=lambda: workers.log(first))
    assert first.poll() is None, workers.log(first)
    first.send_signal(signals.SIGTERM)
    first.wait(60)
    # the lost posts are published once the second worker is ready: events fetched during its
    # start-up may be dropped by Faust's flow control and delivered again at once
    # (PulseConsumer.redeliver), which would bring the lost batch back before the gap check
    proc = workers.start(app_id, agents="publisher", loglevel="info",
                         PULSE_CRASH_POINT="publisher:lose-batch:1", **env)
    wait_until(lambda: proc.poll() is not None or workers.ready(proc), 120,
               "the second worker to be ready", diagnose=lambda: workers.log(proc))
    _publish(pipeline, events[len(early):len(early) + 3 * len(lost_posts)])
    wait_until(lambda: proc.poll() is not None or "dropping batch 1 of publisher" in
               Path(proc.log_path).read_text(errors="replace"),
               180, "the second worker to lose its first batch", diagnose=lambda: workers.log(proc))
    _publish(pipeline, events[len(early) + 3 * len(lost_posts):])
    posts = set(early_posts + lost_posts + later_posts)

    def done():
        got = {r["post_id"] for _, r in read_topic(pipeline, "posts-published") if r["post_id"] in posts}
        return got == posts and caught_up(pipeline, app_id, topics)

    wait_until(lambda: proc.poll() is not None or done(), 240,
               "the lost posts to be published and the worker to catch up",
               diagnose=lambda: workers.log(proc))
    assert proc.poll() is None, workers.log(proc)
    log = Path(proc.log_path).read_text(errors="replace")
    assert "never reached the agent" in log and "rewound" in log, log
    _check_emits(pipeline, expected.emits, posts, "post_id")
    _check_views(pipeline, expected.views)

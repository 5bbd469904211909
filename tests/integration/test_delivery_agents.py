"""The delivery agents' state survives a worker kill, on the real broker and Cassandra.

Input: the first 6,000 events of the shipped Stack Exchange sample (ids renamed as replica copy
7, so no other test's events share them; times shifted to end now), replayed in process through
the delivery chain (:func:`streams.bench.delivery.delivery_log`), which gives each agent the
records it reads in production: ``trend-mentions``, ``timing-audience``,
``notification-candidates``, ``post-engagements``, ``creator-engagements``, and the
``profiles`` its side inputs read.

For each stateful delivery agent: half its input is published and a worker started that SIGKILLs
itself at the second batch's crash point (a different step of the batch per agent), the other
half is published once the first batch is committed (so the kill lands mid-stream, with state
already committed), then a worker is restarted in the same consumer group and catches up. The
views and output events must equal a run without the fault: the agent's
:class:`~streams.runtime.engine.AgentRunner` over the same topic as the broker holds it (every
message, per partition in offset order: agent state is partitioned like the topic, so each
partition's results depend only on its own log) in this process.

The trend detector runs with constants fitted to the sample's pace (6 h slots, 1-day window,
lower thresholds), so that trends start and end within the slice.
"""
from __future__ import annotations

import time
from collections import defaultdict

import pytest

from agents.registry import AGENTS
from replay.rebuild import read_merged
from streams.bench.delivery import delivery_log
from streams.bench.ranking import TOPIC_OF
from streams.bench.replay import replica
from streams.contracts.agent import ms_of
from streams.contracts.codec import codec_for
from streams.contracts.topics import topic_spec
from streams.demo.run import group_lag
from streams.demo.sources.stackexchange import SAMPLE_DUMP, iter_events_in_time_order, load_dump
from streams.producer import Publisher
from streams.runtime.engine import AgentRunner

from tests.integration.conftest import unique, wait_until
from tests.integration.test_crash_safety import _check_emits, _check_views
from tests.integration.test_worker_views import caught_up

TREND_ENV = {"PULSE_TREND_SLOT_S": "21600", "PULSE_TREND_WINDOW_SLOTS": "4", "PULSE_TREND_HALF_LIFE_H": "72",
             "PULSE_TREND_MIN_COUNT": "2", "PULSE_TREND_Z_START": "2", "PULSE_TREND_BIAS": "1"}
COPY = 7

#: agent -> (crash point, the output topic's id field its emits are checked by, the least number
#: of events the fault-free run must emit for the test to mean something)
CASES = {
    "trend_detector": ("after-sinks", "subject", 5),
    "timing_optimizer": ("after-emits", "creator_id", 100),
    "notification_generator": ("after-state", "user_id", 100),
    "post_analytics": ("after-process", "creator_id", 100),
    "creator_analytics": ("after-sinks", "creator_id", 0),  # emits nothing: views only
}


@pytest.fixture(scope="module")
def delivery(pipeline):
    """``(settings, {topic: [record]})``: the sample's delivery log (module docstring); the
    side-input topics (``profiles``, ``posts-published``, ``follows``) already published."""
    history = list(iter_events_in_time_order(load_dump(SAMPLE_DUMP)))[:6_000]
    shift = int(time.time() * 1000) - ms_of(history[-1][1]["event_time"])
    renamed = []
    for event_type, record in history:
        r = replica(TOPIC_OF[event_type], record, COPY)
        renamed.append((event_type, {**r, "event_time": ms_of(r["event_time"]) + shift}))
    settings = pipeline.with_(trend_slot_s=21600.0, trend_window_slots=4, trend_half_life_h=72.0,
                              trend_min_count=2, trend_z_start=2.0, trend_bias=1.0)  # = TREND_ENV
    specs = [AGENTS[n] for n in ("trend_mentions", "trend_detector", "timing_audience", "timing_optimizer",
                                 "notification_candidates", "notification_generator", "analytics_signals",
                                 "post_analytics", "creator_analytics")]
    log = delivery_log(renamed, settings, specs)
    with Publisher(pipeline, producer_name="delivery-test") as pub:
        for topic in ("profiles", "posts-published", "follows"):
            for record in log[topic]:
                pub.publish(topic, record)
    return settings, log


def _expected(settings, agent: str):
    """The fault-free run: the agent's runner over its source topics as the broker holds them,
    partition by partition in offset order, side inputs from their whole topics."""
    spec = AGENTS[agent]
    codecs = {}

    def codec(topic):
        if topic not in codecs:
            codecs[topic] = codec_for(settings, topic_spec(topic).schema, topic)
        return codecs[topic]

    side = {}
    for si in spec.side_inputs:
        state = si.open(settings, None)
        for m in read_merged(settings, [si.topic]):
            if m.value is None:  # a tombstone (an erasure): forgotten, as SideInputReader does
                if hasattr(state, "forget") and m.key:
                    state.forget(m.key.decode(), m.timestamp_ms)
                continue
            state.apply(codec(si.topic).decode(m.value))
        side[si.name] = state
    by_partition = defaultdict(list)
    for m in read_merged(settings, list(spec.topics)):
        by_partition[m.partition].append(m)
    runner = AgentRunner(spec, codec, config=settings, models=spec.load(settings) if spec.load else None,
                         side=side)
    views, emits = [], []
    for p in sorted(by_partition):
        for m in sorted(by_partition[p], key=lambda m: (m.topic, m.offset)):
            out = runner.run([m])
            runner.apply_state(out.state)
            assert not out.dead_letters
            views += out.views
            emits += out.emits
    return views, emits


@pytest.mark.parametrize("agent", list(CASES))
def test_delivery_agent_state_survives_a_kill(delivery, pipeline, workers, agent):
    settings, log = delivery
    point, id_field, least = CASES[agent]
    spec = AGENTS[agent]
    records = [(t, r) for t in spec.topics for r in log.get(t, [])]
    assert len(records) > 100, f"{agent}: the slice gives it too little input"
    half = len(records) // 2
    env = dict(TREND_ENV)
    app_id = unique(f"delivery-{agent}")
    with Publisher(pipeline, producer_name="delivery-test") as pub:
        for topic, record in records[:half]:
            pub.publish(topic, record)
    proc = workers.start(app_id, agents=agent, PULSE_CRASH_POINT=f"{agent}:{point}:2", **env)
    wait_until(lambda: proc.poll() is not None or group_lag(pipeline, app_id, list(spec.topics))[0] > 0,
               180, f"{agent}'s first batch to be committed", diagnose=lambda: workers.log(proc))
    with Publisher(pipeline, producer_name="delivery-test") as pub:
        for topic, record in records[half:]:
            pub.publish(topic, record)
    wait_until(lambda: proc.poll() is not None, 180, f"{agent}'s worker to kill itself at {point}",
               diagnose=lambda: workers.log(proc))
    assert proc.returncode == -9, workers.log(proc)
    proc = workers.start(app_id, agents=agent, **env)
    wait_until(lambda: caught_up(pipeline, app_id, list(spec.topics)), 240,
               f"the restarted {agent} to catch up", diagnose=lambda: workers.log(proc))

    views, emits = _expected(settings, agent)
    assert len(emits) >= least, f"{agent}: the fault-free run emits only {len(emits)} events"
    assert len(views) >= 100, f"{agent}: the fault-free run writes only {len(views)} rows"
    if emits:
        ours = {codec_for(settings, topic_spec(e.topic).schema, e.topic).decode(e.value)[id_field]
                for e in emits}
        _check_emits(pipeline, emits, ours, id_field)
    _check_views(pipeline, views)


def test_the_demo_summary_reads_what_the_delivery_agents_wrote(delivery, pipeline):
    """Runs after the kill tests above (file order), whose restarted workers wrote the views."""
    from streams.demo.delivery import delivery_summary

    settings, log = delivery
    events = [("uploads", r) for r in log["posts-published"]] + [("follows", r) for r in log["follows"]]
    s = delivery_summary(pipeline, events)
    notes = s["notifications"]
    assert notes["rows"] > 0 and set(notes["by_action"]) <= {"send", "hold"}
    assert notes["users"] and all(0 < d["propensity"] <= 1 for u in notes["users"] for d in u["decisions"])
    assert [m["creator_id"] for m in s["golden_moments"]] == [c["creator_id"] for c in s["creator_stats"]]
    assert s["golden_moments"] and all(m["moments"][0]["windows"] for m in s["golden_moments"])
    from streams.query.timing import read_golden_moments

    for m in s["golden_moments"]:  # the audience map the windows came from (a static column)
        hour_map = read_golden_moments(settings, m["creator_id"], "forever")[0].hour_map
        assert len(hour_map) == 168 and abs(sum(hour_map) - 1) < 1e-3 and min(hour_map) >= 0
    for c in s["creator_stats"]:
        assert c["totals"]["posts"] >= 1 and c["totals"]["reach"] >= 1

"""trend_detector: the pure burst logic (models.trends), the frequent-items window sketch, and
both agents through the runtime's engine (tests/unit/agent_harness.py)."""
from __future__ import annotations

import random
import zlib

import pytest

from agents import trend_detector as T
from models.trends import burst as B
from models.trends.heavy import WindowSketch
from models.trends.subjects import subjects_of
from streams.contracts.effects import Emit, StateSet, Upsert
from tests.unit.agent_harness import Harness, full_record

MIN = 60_000
T0 = 1_700_000_000_000 // (5 * MIN) * (5 * MIN)
P = B.TrendParams()  # 5-minute slots, 1-hour window, 1-day half-life


def _poisson_times(rng, start, end, per_minute):
    t, out = start, []
    while True:
        t += rng.expovariate(per_minute / MIN)
        if t >= end:
            return out
        out.append(int(t))


def _run(times, st=None, p=P):
    """Feed mentions at ``times`` (sorted ms); the transitions, as (state, t)."""
    st = st if st is not None else B.new_state()
    out = []
    for i, t in enumerate(times):
        B.add_mention(st, t, t, p, f"m{t}-{i}", f"post{i}")
        tr = B.evaluate(st, t, p)
        if tr is not None:
            out.append((tr.state, t, tr))
    return st, out


def test_a_steady_stream_does_not_trend_and_its_baseline_learns_the_rate():
    rng = random.Random(1)
    times = _poisson_times(rng, T0, T0 + 3 * 86_400_000, per_minute=1.0)
    st, out = _run(times)
    assert [s for s, t, _ in out if t > T0 + 86_400_000] == []
    r = B.reading(st, times[-1], P)
    assert r.expected == pytest.approx(60.0, rel=0.15)  # 1 per minute * 60 minutes


def test_a_burst_starts_a_trend_within_the_window_and_it_ends_after():
    rng = random.Random(2)
    steady = _poisson_times(rng, T0, T0 + 2 * 86_400_000, per_minute=1.0)
    st, before = _run(steady)
    start = steady[-1]
    burst = _poisson_times(rng, start, start + 60 * MIN, per_minute=4.0)
    st, during = _run(burst, st)
    assert during and during[0][0] == B.STARTED
    assert during[0][1] - start < P.window_ms  # detected within one window
    assert during[0][2].reading.z >= P.z_start
    assert all(s == B.ONGOING for s, _, _ in during[1:])
    after = _poisson_times(rng, burst[-1], burst[-1] + 3 * 3_600_000, per_minute=1.0)
    st, later = _run(after, st)
    assert B.ENDED in [s for s, _, _ in later]
    assert st["trend"] is None


def test_lifecycle_numbers_transitions_and_an_ongoing_is_given_once_per_slot():
    st = B.new_state()
    t = T0 + P.window_ms  # past the first window: an empty baseline of zeros
    B.advance(st, t // P.slot_ms, P)
    B.advance(st, (t + 3 * P.window_ms) // P.slot_ms, P)
    t += 3 * P.window_ms
    states = []
    for i in range(40):  # 40 mentions in 4 minutes: one slot
        B.add_mention(st, t + i * 6000, t + i * 6000, P, f"id{i}")
        tr = B.evaluate(st, t + i * 6000, P)
        if tr:
            states.append((tr.state, tr.seq))
    assert states == [(B.STARTED, 1)]
    tr = B.evaluate(st, t + P.slot_ms, P)  # next slot, still far above the baseline
    assert (tr.state, tr.seq) == (B.ONGOING, 2)
    assert B.evaluate(st, t + P.slot_ms + 1000, P) is None
    tr = B.evaluate(st, t + 2 * P.window_ms, P)  # the burst left the window
    assert (tr.state, tr.seq) == (B.ENDED, 3)


def test_duplicates_and_late_mentions_are_not_counted():
    st = B.new_state()
    assert B.add_mention(st, T0, T0, P, "a")
    assert not B.add_mention(st, T0, T0, P, "a")
    assert not B.add_mention(st, T0 - 2 * P.window_ms, T0, P, "late")
    assert B.reading(st, T0, P).count == 1 and st["late"] == 1


def test_no_trend_starts_during_warm_up():
    st = B.new_state()
    for i in range(50):
        B.add_mention(st, T0 + i, T0 + i, P, f"x{i}")
    assert B.evaluate(st, T0 + 50, P, may_start=False) is None
    assert B.evaluate(st, T0 + 50, P).state == B.STARTED


def test_window_sketch_finds_heavy_hitters_and_survives_json():
    rng = random.Random(3)
    sk = WindowSketch()
    truth: dict[str, int] = {}
    for slot in range(12):
        for _ in range(500):
            item = f"t{int(rng.paretovariate(1.2))}" if rng.random() < 0.6 else f"rare{rng.randrange(10_000)}"
            truth[item] = truth.get(item, 0) + 1
            sk.update(slot, item)
    back = WindowSketch.from_json(sk.to_json())
    top = back.top(0, 11, n=3)
    expected = sorted(truth, key=lambda k: -truth[k])[:3]
    assert [h.item for h in top] == expected
    for h in top:
        assert h.lower <= truth[h.item] <= h.upper
    back.expire(6)
    assert back.top(0, 11, n=1)[0].estimate < top[0].estimate  # half the slots are gone


def test_subjects_are_normalised_and_bad_values_skipped():
    got = subjects_of(["#Cats", "cats", " dogs ", "", None, 7, "two words"], {"pets": 0.8, "food": 0.1,
                                                                             "bad": float("nan")})
    assert got == [("HASHTAG", "cats"), ("HASHTAG", "dogs"), ("CATEGORY", "pets")]
    assert subjects_of(None, None) == []


# --- the agents through the engine -------------------------------------------------------------


def _posts(n=400, burst_from=300):
    recs = []
    for i in range(n):
        tags = ["cats"] if i % 3 else ["dogs"]
        if i >= burst_from:
            tags.append("#Boom")
        recs.append(("posts-published", full_record(
            "posts-published", post_id=f"p{i}", creator_id="c1", event_time=T0 + i * MIN,
            hashtags=tags, categories={"pets": 0.9}, distribution="FULL",
            event_id=f"00000000-0000-4000-8000-{i:012d}")))
    return recs


def _run_both(tmp_path, posts, partitions=1):
    h1, h2 = Harness(T.MENTIONS_SPEC, tmp_path), Harness(T.SPEC, tmp_path)
    out1 = h1.feed(*posts)
    assert not out1.dead_letters
    msgs = [h2.message("trend-mentions", e.value, partition=zlib.crc32(e.key) % partitions)
            for e in out1.emits]
    out2 = h2.run(msgs)
    assert not out2.dead_letters
    return h1, h2, out1, out2


def test_mentions_are_keyed_by_subject_and_restricted_or_untagged_posts_give_none(tmp_path):
    h1 = Harness(T.MENTIONS_SPEC, tmp_path)
    out = h1.feed(("posts-published", full_record("posts-published", post_id="p1", creator_id="c",
                                                  hashtags=["#A", "b"], categories={"x": 0.5})),
                  ("posts-published", full_record("posts-published", post_id="p2", creator_id="c",
                                                  hashtags=["a"], distribution="RESTRICTED")),
                  ("posts-published", full_record("posts-published", post_id="p3", creator_id="c",
                                                  hashtags=[], categories={})))
    got = [(e.key, h1.decode(e)["subject_kind"], h1.decode(e)["post_id"]) for e in out.emits]
    assert got == [(b"a", "HASHTAG", "p1"), (b"b", "HASHTAG", "p1"), (b"x", "CATEGORY", "p1")]
    assert not out.dead_letters


def test_agent_detects_the_burst_and_writes_the_views(tmp_path):
    _, h2, _, out2 = _run_both(tmp_path, _posts())
    trends = [h2.decode(e) for e in out2.emits]
    started = [t for t in trends if t["state"] == "STARTED"]
    assert [(t["subject_kind"], t["subject"]) for t in started] == [("HASHTAG", "boom")]
    s = started[0]
    assert s["rank"] == 1 and s["count"] >= P.min_count and s["burst_score"] >= P.z_start
    assert s["sample_post_ids"][0].startswith("p") and len(s["sample_post_ids"]) <= P.samples
    assert (s["window_end"] - s["window_start"]).total_seconds() * 1000 == P.window_ms
    rows = [v for v in out2.views if isinstance(v, Upsert) and v.table == "trending"]
    assert {r.row["subject"] for r in rows} == {"boom"}
    hh = [v for v in out2.views if isinstance(v, Upsert) and v.table == "trend_heavy_hitters"
          and v.row["subject_kind"] == "HASHTAG"]
    assert hh[-1].row["counts"]["cats"] > hh[-1].row["counts"]["dogs"] > 0


def test_several_partitions_detect_the_same_trends_as_one(tmp_path):
    """Mentions are keyed by subject, so each subject's counts stay whole in one partition."""
    def started(out, h):
        return sorted((t["subject"], t["count"], t["event_time"]) for t in map(h.decode, out.emits)
                      if t["state"] == "STARTED")

    _, h_one, _, one = _run_both(tmp_path / "one", _posts(burst_from=250), partitions=1)
    _, h_three, _, three = _run_both(tmp_path / "three", _posts(burst_from=250), partitions=3)
    assert started(one, h_one) and started(one, h_one) == started(three, h_three)


def test_agent_is_deterministic_on_the_same_input_twice(tmp_path):
    a = _run_both(tmp_path / "a", _posts())[3]
    b = _run_both(tmp_path / "b", _posts())[3]
    assert [(e.key, e.value) for e in a.emits] == [(e.key, e.value) for e in b.emits]
    assert a.views == b.views
    assert a.state == b.state


def test_effects_shape_and_bad_input_is_skipped():
    state = _DictStateFor(T.SPEC)
    rec = full_record("trend-mentions", subject_kind="HASHTAG", subject="x", post_id="p", creator_id="c",
                      event_time=T0)
    from tests.unit.agent_harness import call

    effects = call(T.SPEC, state, "trend-mentions", rec)
    assert [type(e) for e in effects].count(StateSet) == 2
    assert {e.table for e in effects if isinstance(e, StateSet)} == {T.SUBJECTS, T.PARTITIONS}
    assert not [e for e in effects if isinstance(e, Emit)]  # one mention, in warm-up
    assert call(T.SPEC, state, "trend-mentions", {**rec, "subject": ""}) == []
    assert call(T.SPEC, state, "trend-mentions", {**rec, "subject_kind": "NOPE"}) == []


class _DictStateFor:
    def __init__(self, spec):
        self.tables = {t: {} for t in spec.tables}

    def get(self, table, key, default=None):
        return self.tables[table].get(key, default)


def test_settings_override_the_constants():
    from types import SimpleNamespace

    p = T.params_of(SimpleNamespace(trend_slot_s=60, trend_window_slots=10, trend_z_start=4.0))
    assert (p.slot_ms, p.window_ms, p.z_start, p.bias) == (60_000, 600_000, 4.0, B.TrendParams().bias)
    assert T.params_of(None) == B.TrendParams()

"""Timing Optimizer: the audience map's shrinkage, the prior-strength fit, windows per content
type, and both agents (timing_audience, timing_optimizer) through the runtime's engine
(tests/unit/agent_harness.py)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from agents import timing_optimizer as T
from agents.shared.activity import AudienceActivity
from agents.shared.posts import PublishedPosts
from models.timing import shrinkage as S
from models.timing import windows as W
from streams.contracts.effects import Emit, StateSet, Upsert
from tests.unit.agent_harness import DictState, Harness, call, full_record

DAY, HOUR = 86_400_000, 3_600_000
T0 = 1_700_006_400_000           # Wednesday 2023-11-15 00:00 UTC
POP_HOUR = 9                     # Monday 09:00: when the population is active
AUD_HOUR = 2 * 24 + 20           # Wednesday 20:00: when c1's audience is active


def one_hot(w: int) -> np.ndarray:
    h = np.zeros(S.HOURS)
    h[w] = 1.0
    return h


# --- pure logic --------------------------------------------------------------------------------


def test_a_tiny_audience_is_mostly_the_population_and_a_large_one_its_own():
    prior = S.population_map([one_hot(POP_HOUR)] * 9 + [one_hot(AUD_HOUR)])
    tiny = S.posterior([one_hot(AUD_HOUR)], prior, strength=4.0, bandwidth=0)
    assert tiny.audience_size == 1 and tiny.prior_weight == pytest.approx(0.8)
    assert tiny.hour_map[POP_HOUR] > tiny.hour_map[AUD_HOUR]          # the prior decides
    assert tiny.hour_map[AUD_HOUR] == pytest.approx((1 + 4 * 0.1) / 5)
    large = S.posterior([one_hot(AUD_HOUR)] * 500, prior, strength=4.0, bandwidth=0)
    assert large.prior_weight < 0.01 and large.hour_map[AUD_HOUR] > 0.99
    assert tiny.hour_map.sum() == pytest.approx(1) and large.hour_map.sum() == pytest.approx(1)
    # no usable member: the prior alone; zero strength: the audience alone
    empty = S.posterior([None, np.zeros(S.HOURS), [1.0, 2.0]], prior, strength=4.0, bandwidth=0)
    assert empty.audience_size == 0 and empty.prior_weight == 1.0
    np.testing.assert_allclose(empty.hour_map, prior)
    assert S.posterior([one_hot(3)], prior, strength=0.0, bandwidth=0).hour_map[3] == 1.0


def test_members_weigh_by_activity_and_the_map_pools_days():
    prior = np.full(S.HOURS, 1 / S.HOURS)
    # one member does 99 % of the activity: the map is theirs, the evidence about one member
    p = S.posterior([one_hot(5), one_hot(30)], prior, 1.0, weights=[99, 1], smoothing=0.0, bandwidth=0)
    assert p.hour_map[5] > 0.45 and p.hour_map[30] < 0.01
    assert p.prior_weight == pytest.approx(1 / (1 + 100 ** 2 / (99 ** 2 + 1)))
    # Monday 05:00 and Tuesday 06:00: the independence model also expects Monday 06:00
    f = S.factorized((one_hot(5) + one_hot(24 + 6)) / 2)
    assert f[6] == pytest.approx(0.25) and f[5] == pytest.approx(0.25) and f.sum() == pytest.approx(1)
    assert S.posterior([one_hot(5), one_hot(30)], prior, 0.0, smoothing=1.0, bandwidth=0).hour_map[6] == pytest.approx(0.25)
    assert S.posterior([one_hot(5), one_hot(30)], prior, 0.0, smoothing=0.0, bandwidth=0).hour_map[6] == 0.0


def test_the_map_is_averaged_over_adjacent_hours():
    # a broad evening (Tuesday 18:00-20:00, 0.2 each) beats one isolated busier hour (Monday
    # 03:00, 0.3) once each hour counts its neighbours: the evening's middle hour comes first
    m = np.zeros(S.HOURS)
    m[3] = 0.3
    m[24 + 18:24 + 21] = 0.2
    m[100] = 0.1
    assert int(np.argmax(m)) == 3
    smooth = S.hour_smoothed(m, 1)
    assert int(np.argmax(smooth)) == 24 + 19 and smooth[24 + 19] == pytest.approx(0.2)
    assert smooth[3] == pytest.approx(0.1) and smooth[2] == smooth[4] == pytest.approx(0.1)
    assert smooth.sum() == pytest.approx(1)
    # circular: Sunday 23:00 neighbours Monday 00:00; bandwidth 0 changes nothing
    assert S.hour_smoothed(one_hot(0), 1)[S.HOURS - 1] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(S.hour_smoothed(m, 0), m)
    with pytest.raises(ValueError):
        S.hour_smoothed(m, 12)
    # the posterior applies it by default (HOUR_BANDWIDTH), to the prior-only map too
    prior = np.full(S.HOURS, 1 / S.HOURS)
    p = S.posterior([one_hot(5)], prior, 0.0, smoothing=0.0)
    assert S.HOUR_BANDWIDTH == 1 and p.hour_map[4] == p.hour_map[5] == p.hour_map[6] == pytest.approx(1 / 3)
    np.testing.assert_allclose(S.posterior([], one_hot(7), 1.0).hour_map, S.hour_smoothed(one_hot(7), 1))


def test_fit_prior_strength_recovers_the_dirichlet_precision():
    rng = np.random.default_rng(7)
    prior = rng.dirichlet(np.full(S.HOURS, 5.0))
    for alpha in (5.0, 60.0):
        p = rng.dirichlet(alpha * prior, size=400)
        counts = np.array([rng.multinomial(30, q) for q in p], dtype=float)
        fitted = S.fit_prior_strength(counts, prior)
        assert alpha * 0.75 < fitted < alpha * 1.33, (alpha, fitted)
    with pytest.raises(ValueError):
        S.fit_prior_strength(np.ones((3, S.HOURS)) / S.HOURS, prior)


def test_top_windows_are_best_first_and_ties_go_to_the_earlier_hour():
    scores = np.zeros(S.HOURS)
    scores[[50, 7, 100]] = [0.2, 0.3, 0.2]
    assert W.top_windows(scores) == [(7, 0.3), (50, 0.2), (100, 0.2)]
    assert W.day_hour(AUD_HOUR) == (2, 20)


def _top_windows_reference(scores, n):
    rounded = [round(float(s), 9) for s in scores]
    order = sorted(range(len(rounded)), key=lambda w: (-rounded[w], w))
    return [(w, rounded[w]) for w in order[:n]]


@pytest.mark.parametrize("seed", range(30))
def test_top_windows_equal_rounding_and_sorting_every_score(seed):
    """The candidate cut changes nothing, also when many scores tie or differ only in the
    digits rounding removes."""
    rng = np.random.default_rng(seed)
    base = rng.dirichlet(np.ones(S.HOURS))
    scores = [base,
              np.round(base, 3) + rng.uniform(-6e-10, 6e-10, S.HOURS),  # ties after rounding
              np.full(S.HOURS, 1 / S.HOURS) + rng.choice([0, 1e-9, -1e-9, 4e-10], S.HOURS),
              np.zeros(S.HOURS)]
    for s in scores:
        for n in (1, 3, 5, S.HOURS, S.HOURS + 2):
            assert W.top_windows(s, n) == _top_windows_reference(s, n)
        assert W.top_windows(s, 0) == []
    assert W.next_start(AUD_HOUR, T0) == T0 + 20 * HOUR
    assert W.next_start(AUD_HOUR, T0 + 20 * HOUR) == T0 + 20 * HOUR
    assert W.next_start(AUD_HOUR, T0 + 20 * HOUR + 1) == T0 + 20 * HOUR + 7 * DAY


def test_content_type_sets_how_long_after_posting_the_audience_counts():
    m = one_hot(AUD_HOUR)
    for ct in (*W.CONTENT_TYPES, W.HOURLY):
        s = W.window_scores(m, ct)
        assert W.top_windows(s, 1)[0][0] == AUD_HOUR and s.sum() == pytest.approx(1.0)
    flash, forever = W.window_scores(m, "FLASH"), W.window_scores(m, "FOREVER")
    # posting the hour after the audience left: a Flash post is gone before they return a week
    # later, a Forever post is still there (a little)
    assert flash[AUD_HOUR + 1] == 0.0 and forever[AUD_HOUR + 1] > 0.0
    # a Flash post put up 10 h early still meets them, weighted by its decay
    assert flash[AUD_HOUR - 10] > 0 and flash[AUD_HOUR - 10] < flash[AUD_HOUR]
    # FOREVER is the smoothest, FLASH the sharpest, HOURLY the map itself
    assert W.window_scores(m, "FLASH").max() > W.window_scores(m, "MEMORY").max() > forever.max()
    with pytest.raises(KeyError):
        W.kernel("STORY")


def test_the_content_types_windows_at_once_equal_one_call_per_type():
    rng = np.random.default_rng(7)
    maps = [rng.random(168) for _ in range(50)] + [one_hot(AUD_HOUR), np.full(168, 1 / 168)]
    # ties within rounding: a flat map, and one whose best hours differ in the 12th decimal
    tied = np.full(168, 1 / 168)
    tied[[3, 50, 100]] += np.array([2e-12, 1e-12, 0.0]) + 1e-3
    for m in maps + [tied]:
        m = m / m.sum()
        for n in (1, 3, 5):
            assert W.content_type_windows(m, n) == {
                ct: W.top_windows(W.window_scores(m, ct), n) for ct in W.CONTENT_TYPES}


# --- the agents through the engine --------------------------------------------------------------


def _activity() -> AudienceActivity:
    """30 population users active on Monday 09:00, c1's 12 followers on Wednesday 20:00."""
    side = AudienceActivity()
    users = [(f"pop{i}", POP_HOUR) for i in range(30)] + [(f"fan{i}", AUD_HOUR) for i in range(12)]
    for u, w in users:
        side.apply({"user_id": u, "event_time": T0 - 2 * DAY, "sequence": 1,
                    "active_hours": one_hot(w).tolist()})
    return side


def _inputs():
    ev = []
    for i in range(12):  # c1: 12 followers active on Wednesday evening
        ev.append(("follows", full_record("follows", follower_id=f"fan{i}", followee_id="c1",
                                          action="FOLLOW", event_time=T0 + i * 60_000)))
    ev.append(("follows", full_record("follows", follower_id="fan0", followee_id="c2",
                                      action="FOLLOW", event_time=T0 + 20 * 60_000)))
    ev.append(("posts-published", full_record("posts-published", post_id="q1", creator_id="c3",
                                              event_time=T0 + 21 * 60_000)))
    ev.append(("interactions", full_record("interactions", user_id="fan5", post_id="q1", type="COMMENT",
                                           event_time=T0 + 22 * 60_000)))
    ev.append(("interactions", full_record("interactions", user_id="pop1", post_id="q1", type="SKIP",
                                           event_time=T0 + 23 * 60_000)))
    ev.append(("posts-published", full_record("posts-published", post_id="a1", creator_id="pop2",
                                              parent_post_id="q1", event_time=T0 + 24 * 60_000)))
    ev.append(("follows", full_record("follows", follower_id="fan3", followee_id="c1",
                                      action="UNFOLLOW", event_time=T0 + 25 * 60_000)))
    # fixed event ids: two runs of the same input must be the same input
    return [(topic, {**r, "event_id": f"00000000-0000-4000-8000-{i:012d}"}) for i, (topic, r) in enumerate(ev)]


def _run(tmp_path, partitions=1):
    published = PublishedPosts()
    for topic, r in _inputs():
        if topic == "posts-published":
            published.apply(r)
    h1 = Harness(T.AUDIENCE_SPEC, tmp_path, side={"published": published})
    h2 = Harness(T.SPEC, tmp_path, side={"activity": _activity()})
    out1 = h1.feed(*_inputs())
    assert not out1.dead_letters
    out2 = h2.run([h2.message("timing-audience", e.value, partition=zlib.crc32(e.key) % partitions)
                   for e in out1.emits])
    assert not out2.dead_letters
    return h1, h2, out1, out2


def _latest_rows(out):
    rows = {}
    for v in out.views:
        if isinstance(v, Upsert) and v.table == T.VIEW:
            k = (v.row["creator_id"], v.row["content_type"])
            if k not in rows or v.timestamp_us >= rows[k][0]:
                rows[k] = (v.timestamp_us, v.row)
    return {k: r for k, (_, r) in rows.items()}


def test_audience_signals_are_keyed_by_creator(tmp_path):
    h1, _, out1, _ = _run(tmp_path)
    got = [(e.key, h1.decode(e)["user_id"], h1.decode(e)["signal"]) for e in out1.emits]
    assert got[:12] == [(b"c1", f"fan{i}", "FOLLOWED") for i in range(12)]
    assert got[12:] == [(b"c2", "fan0", "FOLLOWED"), (b"c3", "c3", "POSTED"), (b"c3", "fan5", "ENGAGED"),
                        (b"pop2", "pop2", "POSTED"), (b"c3", "pop2", "ENGAGED"),
                        (b"c1", "fan3", "UNFOLLOWED")]  # the SKIP is no engagement


def test_agent_finds_the_audiences_hour_and_shrinks_a_one_follower_creator(tmp_path):
    _, h2, _, out2 = _run(tmp_path)
    rows = _latest_rows(out2)
    c1, c2 = rows[("c1", "FLASH")], rows[("c2", "FLASH")]
    # averaged over adjacent hours, the map expects the audience from 19:00 to 21:00 alike, so
    # a Flash post (freshest in its first hours) goes up at 19:00, meeting all three
    m1 = np.asarray(c1["hour_map"])
    assert set(np.argsort(-m1, kind="stable")[:3]) == {AUD_HOUR - 1, AUD_HOUR, AUD_HOUR + 1}
    assert m1[AUD_HOUR - 1] == m1[AUD_HOUR] == m1[AUD_HOUR + 1] > 0.3
    assert (c1["window_days"][0], c1["window_hours"][0]) == (2, 19)
    a = S.PRIOR_STRENGTH
    assert c1["audience_size"] == 11 and c1["prior_weight"] == pytest.approx(a / (11 + a), abs=1e-6)  # fan3 left
    assert c1["next_window_start"] == T0 + 19 * HOUR and len(c1["hour_map"]) == 168
    # one follower: the population (Monday 09:00, 30 of 42 users) takes the prior's share and
    # makes hours the follower never used the next best after the follower's evening
    order = list(np.argsort(-np.asarray(c2["hour_map"]), kind="stable"))
    assert set(order[:3]) == {AUD_HOUR - 1, AUD_HOUR, AUD_HOUR + 1}
    assert set(order[3:6]) == {POP_HOUR - 1, POP_HOUR, POP_HOUR + 1}
    assert c2["audience_size"] == 1 and c2["prior_weight"] == pytest.approx(a / (1 + a), abs=1e-6)
    assert c2["hour_map"][POP_HOUR] == pytest.approx(a / (1 + a) * 30 / 42 / 3, abs=1e-6)
    assert rows[("c3", "FOREVER")]["audience_size"] == 2                              # commenter, answerer
    events = [h2.decode(e) for e in out2.emits]
    assert {(e["creator_id"], e["content_type"]) for e in events} >= {("c1", ct) for ct in W.CONTENT_TYPES}
    first_c1 = [e for e in events if e["creator_id"] == "c1" and e["content_type"] == "FLASH"]
    # emitted when the windows change, not at every follow: c1's first follower already put
    # Wednesday 19:00 on top, later followers reorder only the rest
    assert 1 <= len(first_c1) < 12
    last = first_c1[-1]
    assert (last["windows"][0]["day_of_week"], last["windows"][0]["hour"]) == (2, 19)
    assert [(w["day_of_week"], w["hour"]) for w in last["windows"]] == list(zip(c1["window_days"], c1["window_hours"]))
    assert last["model"] == T.MODEL and last["producer"] == T.NAME


def test_several_partitions_give_the_same_golden_moments_as_one(tmp_path):
    _, h_one, _, one = _run(tmp_path / "one", partitions=1)
    _, h_three, _, three = _run(tmp_path / "three", partitions=3)
    decode = lambda h, out: sorted((e.key, e.value) for e in out.emits)  # noqa: E731
    assert decode(h_one, one) == decode(h_three, three)
    assert _latest_rows(one) == _latest_rows(three)


def test_agent_is_deterministic_on_the_same_input_twice(tmp_path):
    a = _run(tmp_path / "a")[3]
    b = _run(tmp_path / "b")[3]
    assert [(e.key, e.value) for e in a.emits] == [(e.key, e.value) for e in b.emits]
    assert a.views == b.views and a.state == b.state


def test_a_redelivered_signal_changes_nothing_and_bad_input_is_skipped(tmp_path):
    state = DictState(T.TABLE)
    rec = full_record("timing-audience", creator_id="c1", user_id="u1", signal="FOLLOWED",
                      event_time=T0)
    first = call(T.SPEC, state, "timing-audience", rec)
    assert [type(e) for e in first].count(StateSet) == 1 and any(isinstance(e, Emit) for e in first)
    state.apply(first)
    assert call(T.SPEC, state, "timing-audience", rec) == []
    assert call(T.SPEC, state, "timing-audience", {**rec, "creator_id": ""}) == []
    assert call(T.SPEC, state, "timing-audience", {**rec, "signal": "NOPE"}) == []
    # no side input: the uniform prior, no crash; the windows are the earliest hours
    assert [e for e in first if isinstance(e, Upsert)][0].row["window_hours"] == [0, 1, 2]
    # undecodable bytes and an unknown post: dead letter / nothing, the worker goes on
    h2 = Harness(T.SPEC, tmp_path, side={"activity": AudienceActivity()})
    out = h2.run([h2.message("timing-audience", b"\x00garbage")])
    assert len(out.dead_letters) == 1 and not out.emits
    h1 = Harness(T.AUDIENCE_SPEC, tmp_path, side={"published": PublishedPosts()})
    out = h1.feed(("interactions", full_record("interactions", user_id="u", post_id="nope", type="LIKE")),
                  ("follows", full_record("follows", follower_id="u", followee_id="u", action="FOLLOW")))
    assert not out.emits and not out.dead_letters


def test_settings_override_the_constants():
    from types import SimpleNamespace

    assert T.prior_strength(SimpleNamespace(timing_prior_strength=9)) == 9.0
    assert T.prior_strength(None) == S.PRIOR_STRENGTH
    assert T.hour_bandwidth(SimpleNamespace(timing_hour_bandwidth=2)) == 2
    assert T.hour_bandwidth(None) == S.HOUR_BANDWIDTH
    assert T.audience_days(SimpleNamespace(timing_audience_days=7)) == 7.0
    st = {"members": {"a": [0, "", 0, T0], "b": [0, "", 1, 0]}}
    assert T.audience_at(st, T0 + 10 * DAY, 7) == ["b"] and T.audience_at(st, T0, 7) == ["a", "b"]


# --- the active-hours histogram's half-life and the side input's weights --------------------------


def _profile_after(tmp_path, *times, **env):
    """The last profile user_profiler emits for comments by ``u`` at ``times``."""
    from agents import user_profiler
    from agents.shared.posts import PostVectors

    h = Harness(user_profiler.SPEC, tmp_path, side={"published": PublishedPosts(), "vectors": PostVectors(),
                                                    "population": user_profiler.InterestPopulation()}, **env)
    out = h.feed(*[("interactions", full_record("interactions", user_id="u", post_id="p", type="COMMENT",
                                                event_time=t, event_id=f"00000000-0000-4000-8000-{i:012d}"))
                   for i, t in enumerate(times)])
    return h.decode([e for e in out.emits if e.topic == "profiles"][-1])


def test_active_hours_decay_with_their_own_half_life_not_the_interests(tmp_path):
    from agents import user_profiler

    # a Monday 09:00 twelve weeks before a Wednesday 20:00: about one activity half-life (90
    # days), six interest half-lives (14 days)
    monday = T0 - 2 * DAY
    old, new = monday - 84 * DAY + POP_HOUR * HOUR, monday + AUD_HOUR * HOUR
    assert S.hour_of_week(old) == POP_HOUR and S.hour_of_week(new) == AUD_HOUR
    age_days = (new - old) / DAY
    p = _profile_after(tmp_path, old, new)
    share = 2 ** (-age_days / 90) / (1 + 2 ** (-age_days / 90))
    assert p["active_hours"][POP_HOUR] == pytest.approx(share, abs=1e-6)
    assert p["model_version"] == user_profiler.MODEL_VERSION == "3"
    # the interests' half-life no longer moves it; the activity half-life does
    assert _profile_after(tmp_path, old, new, PULSE_PROFILE_HALF_LIFE_DAYS="1")["active_hours"] == p["active_hours"]
    short = _profile_after(tmp_path, old, new, PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS="14")
    assert short["active_hours"][POP_HOUR] == pytest.approx(
        2 ** (-age_days / 14) / (1 + 2 ** (-age_days / 14)), abs=1e-6)


def test_activity_half_life_setting_defaults_to_90_days_and_refuses_nonsense(tmp_path):
    from models.profiles.interests import ACTIVITY_HALF_LIFE_DAYS
    from streams.settings import Settings, SettingsError

    home = {"PULSE_HOME": str(tmp_path)}
    assert Settings.from_env(home).profile_activity_half_life_days == ACTIVITY_HALF_LIFE_DAYS == 90.0
    assert Settings.from_env({**home, "PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS": "45"}).profile_activity_half_life_days == 45
    for bad in ("0", "-3", "soon"):
        with pytest.raises(SettingsError, match="PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS"):
            Settings.from_env({**home, "PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS": bad})
    side = T.SPEC.side_inputs[0].open(Settings.from_env({**home, "PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS": "7"}), None)
    assert side.half_life_days == 7.0


def test_a_profile_weighs_its_events_decayed_to_the_as_of_time():
    # "old" did 200 events but the last profile is one half-life old; "now" did 100 up to today.
    # Weighted by the all-time count, old's last habits outweighed now's two to one (the
    # population map of the Stack Exchange eval scored below uniform guessing that way).
    side = AudienceActivity(half_life_days=90)
    side.apply({"user_id": "old", "event_time": T0 - 90 * DAY, "sequence": 200,
                "active_hours": one_hot(POP_HOUR).tolist()})
    side.apply({"user_id": "now", "event_time": T0, "sequence": 100, "active_hours": one_hot(AUD_HOUR).tolist()})
    h_old, w_old = side.activity("old", T0 + HOUR)
    h_now, w_now = side.activity("now", T0 + HOUR)
    assert w_old == pytest.approx(200 * 2 ** (-(90 * DAY + HOUR) / (90 * DAY)))
    assert w_now == pytest.approx(100 * 2 ** (-HOUR / (90 * DAY)))
    pop = side.population(T0 + DAY)  # as of the start of the next day
    assert pop[POP_HOUR] == pytest.approx(pop[AUD_HOUR], rel=1e-6) and pop.sum() == pytest.approx(1)
    assert side.activity("now", T0) is None  # the profile's own hour is not complete yet


def test_a_profile_folded_after_a_read_is_what_the_next_read_of_that_hour_sees():
    # the as-of reads remember each user's last read (AudienceActivity._entry_of); a profile of
    # an earlier hour folded after it, or an erasure, must not leave the remembered answer
    side = AudienceActivity(half_life_days=90)
    side.apply({"user_id": "ada", "event_time": T0, "sequence": 3, "active_hours": one_hot(5).tolist()})
    at = T0 + 3 * HOUR
    assert side.histogram("ada", at).argmax() == 5
    side.apply({"user_id": "ada", "event_time": T0 + HOUR, "sequence": 4, "active_hours": one_hot(9).tolist()})
    assert side.histogram("ada", at).argmax() == 9
    maps, weights = side.audience(["ada", "nobody"], at)
    assert maps.shape == (1, S.HOURS) and maps[0].argmax() == 9 and maps[0].sum() == pytest.approx(1)
    assert weights[0] == pytest.approx(4 * 2 ** (-2 * HOUR / (90 * DAY)))
    # a histogram that is not a share vector is not folded: the earlier one still answers
    bad = one_hot(11)
    bad[0] = -1.0
    side.apply({"user_id": "ada", "event_time": T0 + 2 * HOUR, "sequence": 5, "active_hours": bad.tolist()})
    assert side.histogram("ada", at).argmax() == 9
    side.forget("ada", T0 + 2 * HOUR)
    assert side.histogram("ada", at) is None and side.audience(["ada"], at)[0].shape == (0, S.HOURS)


def test_the_hourly_map_is_written_once_per_update_on_the_first_content_type_row():
    """``hour_map`` is a static column (schema.cql: the audience's map, one per creator), so
    only the FLASH row carries it; every row carries its own windows."""
    state = DictState(T.TABLE)
    rec = full_record("timing-audience", creator_id="c1", user_id="u1", signal="FOLLOWED",
                      event_time=T0)
    rows = [e.row for e in call(T.SPEC, state, "timing-audience", rec) if isinstance(e, Upsert)]
    assert [r["content_type"] for r in rows] == ["FLASH", "MEMORY", "FOREVER"]
    assert len(rows[0]["hour_map"]) == 168 and abs(sum(rows[0]["hour_map"]) - 1) < 1e-4
    assert all("hour_map" not in r and len(r["window_hours"]) == 3 for r in rows[1:])
    from streams.stores.cassandra import cql_statements, declared_columns

    tables = dict(filter(None, (declared_columns(s) for s in cql_statements())))
    assert tables["golden_moments"]["hour_map"].endswith(" static")


def test_golden_moment_heatmaps_draw_each_content_type_and_refuse_rows_without_a_map(tmp_path):
    """``pulse golden-moment --plot``: one 7 x 24 panel for the audience and one per content type
    read (the hour map is a static column, so only one row need carry it)."""
    from PIL import Image

    from streams.cli.timing import NoHourMap, golden_moment_heatmaps
    from streams.query.timing import GoldenMomentRow

    post = S.posterior([one_hot(AUD_HOUR)], np.full(S.HOURS, 1.0 / S.HOURS), 0.5)
    tops = W.content_type_windows(post.hour_map)

    def rows(types, with_map=True):
        return [GoldenMomentRow("ada", ct, [(w // 24, w % 24, s) for w, s in tops[ct]], 1, post.prior_weight,
                                None, None, "m", hour_map=np.round(post.hour_map, 6).tolist()
                                if with_map and i == 0 else None)
                for i, ct in enumerate(types)]

    three = golden_moment_heatmaps(rows(W.CONTENT_TYPES), tmp_path / "all.png")
    one = golden_moment_heatmaps(rows(("MEMORY",)), tmp_path / "sub" / "memory.png")
    assert three.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and one.exists()
    assert Image.open(three).size[1] > 1.8 * Image.open(one).size[1]  # 4 panels against 2
    with pytest.raises(NoHourMap, match="no hourly map"):
        golden_moment_heatmaps(rows(W.CONTENT_TYPES, with_map=False), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_the_smoothed_map_and_windows_by_fft_equal_smoothing_then_scoring():
    """timing_optimizer's one-pass path (``smoothed_map_and_windows``) against the two steps it
    replaces: ``hour_smoothed`` of the posterior mean, then ``content_type_windows``."""
    rng = np.random.default_rng(7)
    for b in (0, 1, 3):
        for _ in range(100):
            mean = rng.random(S.HOURS) ** rng.integers(1, 6)
            mean /= mean.sum()
            hour_map, tops = W.smoothed_map_and_windows(mean, b)
            np.testing.assert_allclose(hour_map, S.hour_smoothed(mean, b), rtol=1e-12, atol=1e-16)
            two_step = W.content_type_windows(S.hour_smoothed(mean, b))
            assert {ct: [w for w, _ in v] for ct, v in tops.items()} == \
                {ct: [w for w, _ in v] for ct, v in two_step.items()}
            for ct in W.CONTENT_TYPES:
                assert [s for _, s in tops[ct]] == pytest.approx([s for _, s in two_step[ct]], abs=2e-9)
    with pytest.raises(ValueError, match="0 to 11"):
        W.smoothed_map_and_windows(mean, 12)

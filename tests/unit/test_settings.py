import json

import pytest

from streams.settings import Settings, SettingsError, cassandra_contact_points


def test_defaults_and_state_file(tmp_path):
    (tmp_path / "servers.json").write_text(json.dumps({
        "kafka": {"bootstrap": "127.0.0.1:39001"}, "cassandra": {"hosts": ["127.0.0.1:39002"]}}))
    s = Settings.from_env({"PULSE_HOME": str(tmp_path)})
    assert s.kafka_bootstrap == "127.0.0.1:39001"
    assert s.cassandra_hosts == ("127.0.0.1:39002",)
    assert s.external == frozenset()
    assert s.qdrant_path == tmp_path / "qdrant"


def test_environment_names_external_servers_over_the_state_file(tmp_path):
    (tmp_path / "servers.json").write_text(json.dumps({"kafka": {"bootstrap": "127.0.0.1:1"}}))
    s = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
                           "PULSE_CASSANDRA_HOSTS": "c1, c2:9142", "PULSE_QDRANT_URL": "http://q:6333"})
    assert s.kafka_bootstrap == "k1:9092,k2:9092"
    assert s.external == {"kafka", "cassandra", "qdrant"}
    assert cassandra_contact_points(s.cassandra_hosts) == (["c1", "c2"], 9142)


def test_bad_number_names_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="PULSE_PARTITIONS='many' is not an integer"):
        Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_PARTITIONS": "many"})
    with pytest.raises(SettingsError, match="PULSE_SESSION_TIMEOUT_S='soon' is not a number"):
        Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_SESSION_TIMEOUT_S": "soon"})


def test_gates_setting():
    from streams.settings import GATES, Settings, SettingsError

    assert Settings.from_env({}).gates == GATES
    assert Settings.from_env({"PULSE_GATES": " Copyright , moderation"}).gates == ("copyright", "moderation")
    assert Settings.from_env({"PULSE_GATES": "none"}).gates == ()
    with pytest.raises(SettingsError, match="unknown gate 'nsfw'"):
        Settings.from_env({"PULSE_GATES": "moderation,nsfw"})


def test_trend_settings_reach_the_detector_and_bad_values_are_refused(tmp_path):
    from agents.trend_detector import params_of
    from models.trends.burst import TrendParams

    s = Settings.from_env({"PULSE_HOME": str(tmp_path)})
    assert params_of(s) == params_of(object())  # the settings' defaults are the detector's
    s = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_TREND_SLOT_S": "60", "PULSE_TREND_WINDOW_SLOTS": "10",
                           "PULSE_TREND_Z_START": "2.5", "PULSE_TREND_MIN_COUNT": "3"})
    p = params_of(s)
    assert (p.slot_ms, p.window_slots, p.z_start, p.min_count) == (60_000, 10, 2.5, 3)
    assert isinstance(p, TrendParams)
    for name, bad in (("PULSE_TREND_SLOT_S", "0"), ("PULSE_TREND_WINDOW_SLOTS", "0"),
                      ("PULSE_TREND_MIN_COUNT", "-1"), ("PULSE_TREND_HALF_LIFE_H", "soon")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({"PULSE_HOME": str(tmp_path), name: bad})


def test_notification_and_timing_settings_reach_their_agents_unset_means_the_default(tmp_path):
    from agents import notification_generator as N, timing_optimizer as T

    s = Settings.from_env({"PULSE_HOME": str(tmp_path)})
    assert s.notification_daily_budget is None and s.timing_prior_strength is None
    assert N.params_of(s) == N.params_of(object())
    assert T.prior_strength(s) == T.prior_strength(object())
    s = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_NOTIFICATION_DAILY_BUDGET": "2",
                           "PULSE_NOTIFICATION_DIGEST_INTERVAL_H": "6", "PULSE_TIMING_PRIOR_STRENGTH": "4",
                           "PULSE_TIMING_AUDIENCE_DAYS": "30"})
    p = N.params_of(s)
    assert (p.daily_budget, p.digest_interval_ms) == (2, 6 * 3_600_000)
    assert (T.prior_strength(s), T.audience_days(s)) == (4.0, 30.0)
    for name, bad in (("PULSE_NOTIFICATION_EXPLORATION", "1.5"), ("PULSE_NOTIFICATION_MC_DRAWS", "64"),
                      ("PULSE_TIMING_SMOOTHING", "-0.1"), ("PULSE_NOTIFICATION_DAILY_BUDGET", "lots")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({"PULSE_HOME": str(tmp_path), name: bad})


def test_analytics_settings_reach_the_agents_unset_means_the_default(tmp_path):
    from agents import creator_analytics as A

    s = Settings.from_env({"PULSE_HOME": str(tmp_path)})
    assert (s.analytics_lg_k, s.analytics_horizon_h, s.analytics_maturity_h) == (None, None, None)
    assert (A.lg_k(s), A.horizon_ms(s), A.maturity_ms(s)) == (A.lg_k(object()), A.horizon_ms(object()),
                                                              A.maturity_ms(object()))
    s = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_ANALYTICS_LG_K": "14",
                           "PULSE_ANALYTICS_HORIZON_H": "6", "PULSE_ANALYTICS_MATURITY_H": "168"})
    assert (A.lg_k(s), A.horizon_ms(s), A.maturity_ms(s)) == (14, 6 * 3_600_000, 168 * 3_600_000)
    for name, bad in (("PULSE_ANALYTICS_LG_K", "3"), ("PULSE_ANALYTICS_LG_K", "22"),
                      ("PULSE_ANALYTICS_HORIZON_H", "0"), ("PULSE_ANALYTICS_MATURITY_H", "soon")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({"PULSE_HOME": str(tmp_path), name: bad})

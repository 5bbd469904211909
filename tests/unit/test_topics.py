"""The topic catalog agrees with the schema catalog: every topic carries a known event type and
is keyed by a field that event type has."""
from pathlib import Path

import pytest

from streams.contracts.schemas import default_catalog
from streams.contracts.topics import POLICY_CONFIGS, TopicError, load_topics, topic_catalog, topic_spec


def test_every_topic_names_a_schema_with_its_key_field():
    cat = default_catalog()
    for name, spec in topic_catalog().items():
        fields = {f["name"]: f["type"] for f in cat.current(spec.schema).schema["fields"]}
        assert spec.key in fields, f"{name}: key {spec.key!r} not a field of {spec.schema}"
        assert spec.partitions >= 1


def test_event_logs_keep_everything_and_state_topics_compact():
    specs = topic_catalog()
    for name in ("uploads", "interactions", "follows", "signups", "dead-letters"):
        assert specs[name].configs["retention.ms"] == "-1"
        assert specs[name].configs["cleanup.policy"] == "delete"
    for name in ("profiles", "feed-updates"):
        assert specs[name].configs["cleanup.policy"] == "compact"


def test_every_event_type_of_the_flow_has_a_topic():
    carried = {spec.schema for spec in topic_catalog().values()}
    assert carried == {et.name for et in default_catalog()}


def test_unknown_topic_is_a_clear_error():
    with pytest.raises(TopicError, match="unknown topic 'nope'; known topics: uploads"):
        topic_spec("nope")


def test_catalog_rejects_missing_key_and_bad_policy(tmp_path: Path):
    bad = tmp_path / "t.toml"
    bad.write_text('[topics.x]\nschema = "Upload"\n')
    with pytest.raises(TopicError, match="has no 'key'"):
        load_topics(bad)
    bad.write_text('[topics.x]\nschema = "Upload"\nkey = "post_id"\npolicy = "forever"\n')
    with pytest.raises(TopicError, match="unknown policy 'forever'"):
        load_topics(bad)
    assert set(POLICY_CONFIGS) == {"log", "compacted"}


def test_compacted_topics_bound_how_long_an_erased_keys_values_survive():
    """Erasure tombstones the user's keys on the compacted topics; ``max.compaction.lag.ms``
    makes the log cleaner remove the values they supersede within a day (docs/erasure.md)."""
    from streams.contracts.topics import ERASURE_COMPACTION_BOUND_MS

    for name, spec in topic_catalog().items():
        if spec.policy == "compacted":
            assert spec.configs["max.compaction.lag.ms"] == str(ERASURE_COMPACTION_BOUND_MS) == "86400000", name
            assert spec.configs["delete.retention.ms"] == "86400000", name
        else:
            assert "max.compaction.lag.ms" not in spec.configs, name

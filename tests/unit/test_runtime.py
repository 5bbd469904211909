"""The per-batch logic every worker runs: decode, dead-letter, process (no broker)."""
from streams.contracts.agent import AgentSpec, derived_event_id
from agents.materializer import SPEC as MATERIALIZER
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, Upsert
from streams.runtime.batch import RawMessage, RuntimeContext, process_batch
from streams.contracts.schemas import default_catalog
from streams.settings import Settings

from tests.unit.test_materializer import upload


def ctx(tmp_path):
    return RuntimeContext(Settings.from_env({"PULSE_HOME": str(tmp_path)}))


def test_good_events_become_effects_and_bad_bytes_dead_letters(tmp_path):
    c = ctx(tmp_path)
    good = AvroCodec(default_catalog(), "Upload").encode(upload())
    effects, emits = process_batch(c, MATERIALIZER, [
        RawMessage("uploads", 0, 7, b"p1", good),
        RawMessage("uploads", 1, 8, b"k", b"\xc3\x01garbage"),
        RawMessage("uploads", 2, 9, None, good[:-3]),
    ])
    assert [e.table for e in effects] == ["posts", "posts_by_creator"]
    assert all(isinstance(e, Upsert) for e in effects)
    assert [e.topic for e in emits] == ["dead-letters", "dead-letters"]
    dl = emits[0].record
    assert (dl["source_topic"], dl["partition"], dl["offset"], dl["key"]) == ("uploads", 1, 8, b"k")
    assert dl["value"] == b"\xc3\x01garbage" and dl["consumer"] == "materializer"
    assert dl["error_type"] == "CodecError" and dl["reason"]
    # the dead letter is itself a valid DeadLetter event, and re-delivery gives the same id
    decoded = AvroCodec(default_catalog(), "DeadLetter").decode(
        AvroCodec(default_catalog(), "DeadLetter").encode(dl))
    assert decoded["value"] == b"\xc3\x01garbage"
    _, again = process_batch(c, MATERIALIZER, [RawMessage("uploads", 1, 8, b"k", b"\xc3\x01garbage")])
    assert again[0].record["event_id"] == dl["event_id"]


def test_an_agent_exception_dead_letters_the_event_instead_of_stopping(tmp_path):
    def boom(topic, record):
        raise RuntimeError("model file missing")

    spec = AgentSpec(name="boom", topics=("uploads",), process=boom)
    good = AvroCodec(default_catalog(), "Upload").encode(upload())
    effects, emits = process_batch(ctx(tmp_path), spec, [RawMessage("uploads", 0, 1, None, good)])
    assert effects == []
    assert emits[0].record["reason"] == "boom failed: RuntimeError('model file missing')"
    assert emits[0].record["value"] == good


def test_emits_pass_through_and_keys_come_from_the_catalog(tmp_path):
    c = ctx(tmp_path)
    spec = AgentSpec(name="echo", topics=("uploads",), process=lambda t, r: [Emit("uploads", r)])
    good = AvroCodec(default_catalog(), "Upload").encode(upload())
    _, emits = process_batch(c, spec, [RawMessage("uploads", 0, 1, None, good)])
    assert c.key_of("uploads", emits[0].record) == b"p1"


def test_derived_event_ids_are_deterministic():
    assert derived_event_id("a", "e1") == derived_event_id("a", "e1") != derived_event_id("b", "e1")


def test_sink_outage_is_retried_until_written_and_config_errors_are_not(tmp_path, monkeypatch):
    import asyncio

    import pytest

    import streams.runtime.batch as runtime
    from streams.stores.cassandra import ViewStoreError
    from streams.sinks.writers import SinkError

    monkeypatch.setattr(runtime, "RETRY_FIRST_S", 0.001)
    calls = []

    class FlakySinks:
        def add(self, effects):
            calls.append(("add", len(effects)))

        def flush(self):
            calls.append(("flush",))
            if calls.count(("flush",)) < 3:
                raise SinkError("Cassandra did not answer")
            return 2

    c = ctx(tmp_path)
    opened = []

    def sinks(needs):
        opened.append(needs)
        if len(opened) == 1:
            raise ViewStoreError("Cassandra at 127.0.0.1:9 did not answer")
        return FlakySinks()

    c.sinks = sinks
    effects = [Upsert("posts", {"post_id": "p"}, 1), Upsert("users", {"user_id": "u"}, 1)]
    assert asyncio.run(runtime.write_with_retry(c, MATERIALIZER, effects)) == 2
    assert calls == [("add", 2), ("flush",), ("flush",), ("flush",)]  # buffered once, retried

    class Misconfigured:
        def add(self, effects):
            raise SinkError("effect on table 'posts' but no Cassandra is configured")

    c.sinks = lambda needs: Misconfigured()
    with pytest.raises(SinkError, match="no Cassandra is configured"):
        asyncio.run(runtime.write_with_retry(c, MATERIALIZER, effects))

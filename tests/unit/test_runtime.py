"""The per-batch logic every worker runs (RuntimeContext + AgentRunner): decode, dead-letter,
process, encode (no broker); the worker's retry of a store outage."""
import asyncio
from datetime import datetime, timezone

import pytest

from agents.materializer import SPEC as MATERIALIZER
from streams.contracts.agent import AgentSpec, derived_event_id
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, Upsert
from streams.contracts.schemas import default_catalog
from streams.runtime.binding import RuntimeContext
from streams.runtime.engine import RawMessage
from streams.settings import Settings

from tests.unit.test_materializer import upload


def ctx(tmp_path):
    c = RuntimeContext(Settings.from_env({"PULSE_HOME": str(tmp_path)}))
    c.sinks = lambda needs: None  # prepare opens the agent's stores: none in this tier
    return c


def letters(c, out):
    return [c.codec("dead-letters").decode(d.value) for d in out.dead_letters]


def test_good_events_become_effects_and_bad_bytes_dead_letters(tmp_path):
    c = ctx(tmp_path)
    good = AvroCodec(default_catalog(), "Upload").encode(upload())
    out = c.run_batch(MATERIALIZER, [
        RawMessage("uploads", 0, 7, b"p1", good),
        RawMessage("uploads", 1, 8, b"k", b"\xc3\x01garbage", (("h", b"1"),), 1234),
        RawMessage("uploads", 2, 9, None, good[:-3]),
        RawMessage("uploads", 2, 10, None, None),  # a tombstone is not an event either
    ])
    assert [e.table for e in out.views] == ["posts", "posts_by_creator"]
    assert all(isinstance(e, Upsert) for e in out.views)
    assert out.emits == [] and out.events == 4
    assert [d.topic for d in out.dead_letters] == ["dead-letters"] * 3
    assert [d.key for d in out.dead_letters] == [b"uploads"] * 3  # keyed by source topic
    dl, truncated, tombstone = letters(c, out)
    assert (dl["source_topic"], dl["partition"], dl["offset"], dl["key"]) == ("uploads", 1, 8, b"k")
    assert dl["value"] == b"\xc3\x01garbage" and dl["consumer"] == "materializer"
    assert dl["error_type"] == "CodecError" and dl["reason"]
    assert dl["headers"] == [{"key": "h", "value": b"1"}]
    assert dl["original_timestamp"] == datetime.fromtimestamp(1.234, tz=timezone.utc)
    assert truncated["value"] == good[:-3] and truncated["error_type"] == "CodecError"
    assert tombstone["value"] == b"" and "expected bytes" in tombstone["reason"]
    # re-delivery of the bad message gives the same dead-letter id
    again = c.run_batch(MATERIALIZER, [RawMessage("uploads", 1, 8, b"k", b"\xc3\x01garbage")])
    assert letters(c, again)[0]["event_id"] == dl["event_id"]


def test_an_agent_exception_dead_letters_the_event_instead_of_stopping(tmp_path):
    def boom(state, event, ctx):
        raise RuntimeError("model file missing")

    spec = AgentSpec(name="boom", topics=("uploads",), process=boom)
    good = AvroCodec(default_catalog(), "Upload").encode(upload())
    c = ctx(tmp_path)
    out = c.run_batch(spec, [RawMessage("uploads", 0, 1, None, good),
                             RawMessage("uploads", 0, 2, None, good)])
    assert out.views == [] and out.emits == []
    first, second = letters(c, out)
    assert first["reason"] == "boom failed: RuntimeError('model file missing')"
    assert first["error_type"] == "RuntimeError" and first["value"] == good
    assert second["offset"] == 2  # the batch goes on after a failure


def test_emits_pass_through_and_keys_come_from_the_catalog(tmp_path):
    c = ctx(tmp_path)
    spec = AgentSpec(name="echo", topics=("uploads",), outputs=("uploads",),
                     process=lambda s, e, cx: [Emit("uploads", e.record)])
    good = AvroCodec(default_catalog(), "Upload").encode(upload())
    (e,) = c.run_batch(spec, [RawMessage("uploads", 0, 1, None, good)]).emits
    assert (e.topic, e.key) == ("uploads", b"p1")
    assert e.value == good  # decoded and re-encoded with the same schema: the same bytes


def test_derived_event_ids_are_deterministic():
    assert derived_event_id("a", "e1") == derived_event_id("a", "e1") != derived_event_id("b", "e1")
    assert derived_event_id("a", "e1", "x") != derived_event_id("a", "e1", "y")


def test_prepare_builds_each_agents_runner_once_with_its_models(tmp_path):
    loads = []

    def load(config):
        loads.append(config)
        return {"model": len(loads)}

    seen = []
    spec = AgentSpec(name="loaded", topics=("uploads",), load=load, tables=("t",),
                     process=lambda s, e, cx: seen.append(cx.models) or [])
    c = ctx(tmp_path)
    runner = c.prepare(spec)
    assert c.prepare(spec) is runner and c.runners["loaded"] is runner
    assert loads == [c.settings] and runner.models == {"model": 1}
    assert runner.tables is c.tables["loaded"] and set(runner.tables) == {"t", "__positions__"}
    good = AvroCodec(default_catalog(), "Upload").encode(upload())
    c.run_batch(spec, [RawMessage("uploads", 0, 0, None, good)])
    assert seen == [{"model": 1}] and len(loads) == 1


def test_codecs_come_from_the_catalog_and_extra_schemas(tmp_path):
    c = RuntimeContext(Settings.from_env({"PULSE_HOME": str(tmp_path)}),
                       extra_schemas={"uploads-copy": "Upload"})
    assert c.codec("uploads") is c.codec("uploads")
    assert repr(c.codec("uploads-copy")).startswith("AvroCodec(")
    with pytest.raises(KeyError, match="carries no known event type"):
        c.codec("nope")


def test_a_bad_crash_point_fails_when_the_worker_starts(tmp_path):
    from streams.runtime.faults import CrashPointError

    with pytest.raises(CrashPointError, match="PULSE_CRASH_POINT"):
        RuntimeContext(Settings.from_env({"PULSE_HOME": str(tmp_path),
                                          "PULSE_CRASH_POINT": "publisher:sometime"}))


def test_sink_outage_is_retried_until_written_and_config_errors_are_not(tmp_path, monkeypatch):
    import streams.runtime.binding as runtime
    from streams.sinks.writers import SinkError
    from streams.stores.cassandra import ViewStoreError

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
    assert opened[0] == MATERIALIZER.sinks

    class Misconfigured:
        def add(self, effects):
            raise SinkError("effect on table 'posts' but no Cassandra is configured")

    c.sinks = lambda needs: Misconfigured()
    with pytest.raises(SinkError, match="no Cassandra is configured"):
        asyncio.run(runtime.write_with_retry(c, MATERIALIZER, effects))


def test_a_rebuild_context_writes_the_rebuilt_keyspaces_own_collections(tmp_path):
    # the base keyspace stays in the settings; the vectors of keyspace v2 go to v2__<collection>,
    # never into the live collections
    from streams.runtime.binding import RuntimeContext
    from streams.stores.vectors.prefixed import PrefixedIndex

    rebuild = RuntimeContext(Settings.from_env({"PULSE_HOME": str(tmp_path)}), keyspace="v2")
    try:
        index = rebuild.sinks({"vectors"}).vectors.index
        assert isinstance(index, PrefixedIndex) and index.prefix == "v2__"
    finally:
        rebuild.close()
    live = RuntimeContext(Settings.from_env({"PULSE_HOME": str(tmp_path)}), keyspace="pulse")
    try:
        assert not isinstance(live.sinks({"vectors"}).vectors.index, PrefixedIndex)
    finally:
        live.close()

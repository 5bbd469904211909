"""Replay and export without servers: the Avro -> Arrow mapping of every event type, Parquet
round trips, time parsing, the timestamp merge of partitions, and the replay's use of the
worker's per-batch code."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import KafkaError

import agents.registry as registry
import replay.rebuild as rebuild
from agents.materializer import process as materialize
from replay.export import (POSITION_COLUMNS, ExportError, arrow_schema, arrow_type, default_jobs,
                           plan_units, row_groups, write_parquet)
from replay.reader import Position
from replay.rebuild import (TimeRangeError, Written, check_range, parse_time_ms, read_merged,
                            rebuild_views)
from streams.contracts.agent import AgentSpec, Context, Event
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, StateSet, Upsert
from streams.contracts.schemas import default_catalog
from streams.runtime.binding import RuntimeContext
from streams.runtime.engine import RawMessage
from streams.settings import Settings

T = datetime(2018, 3, 12, 10, 0, 0, 123000, tzinfo=timezone.utc)
T_MS = 1520848800123
EVENT_TYPES = [et.name for et in default_catalog()]


# ------------------------------------------------------------------ samples from the contracts


def sample(avro, nulls: bool, named: dict | None = None, ns: str | None = None):
    """A valid value of Avro type ``avro``: optional fields null (``nulls``) or all filled."""
    named = {} if named is None else named
    if isinstance(avro, list):
        rest = [b for b in avro if b != "null"]
        return None if nulls and "null" in avro else sample(rest[0], nulls, named, ns)
    if isinstance(avro, str):
        prim = {"null": None, "boolean": True, "int": -7, "long": 1_234_567_890_123, "float": 0.5,
                "double": 0.25, "bytes": b"\x00\xff", "string": "s\u00e9"}
        if avro in prim:
            return prim[avro]
        return sample(named[avro if "." in avro else f"{ns}.{avro}"], nulls, named, ns)
    t, logical = avro["type"], avro.get("logicalType")
    if logical == "timestamp-millis":
        return T
    if logical == "uuid":
        return str(uuid.uuid4())
    if t in ("record", "enum", "fixed"):
        ns = avro.get("namespace", ns)
        named[f"{ns}.{avro['name']}"] = avro
    if t == "record":
        return {f["name"]: sample(f["type"], nulls, named, ns) for f in avro["fields"]}
    if t == "enum":
        return avro["symbols"][-1]
    if t == "array":
        return [] if nulls else [sample(avro["items"], nulls, named, ns)] * 2
    if t == "map":
        return {} if nulls else {"k1": sample(avro["values"], nulls, named, ns)}
    return sample(t, nulls, named, ns)


def arrowish(value, dt: pa.DataType):
    """``value`` as ``Table.to_pylist`` returns it for type ``dt`` (maps become key/value pairs)."""
    if value is None:
        return None
    if pa.types.is_map(dt):
        return [(k, arrowish(v, dt.item_type)) for k, v in value.items()]
    if pa.types.is_list(dt):
        return [arrowish(v, dt.value_type) for v in value]
    if pa.types.is_struct(dt):
        return {dt.field(i).name: arrowish(value[dt.field(i).name], dt.field(i).type)
                for i in range(dt.num_fields)}
    return value


# ----------------------------------------------------------------------------- Avro -> Arrow


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_maps_field_by_field(event_type):
    avro = default_catalog().current(event_type).schema
    schema = arrow_schema(event_type)
    assert schema.names == [f["name"] for f in avro["fields"]] + [c.name for c in POSITION_COLUMNS]
    for f in avro["fields"]:
        optional = isinstance(f["type"], list) and "null" in f["type"]
        assert schema.field(f["name"]).nullable == optional, f["name"]
    assert schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("event_id").type == pa.string()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_a_decoded_event_round_trips_through_parquet(event_type, tmp_path):
    codec = AvroCodec(default_catalog(), event_type)
    schema = arrow_schema(event_type)
    avro = default_catalog().current(event_type).schema
    records = [codec.decode(codec.encode(sample(avro, nulls))) for nulls in (False, True)]
    rows = [(Position("t", 3, 10 + i, T_MS + i), r) for i, r in enumerate(records)]
    n, groups = write_parquet(rows, schema, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert (n, groups, table.num_rows) == (2, 1, 2)
    assert table.schema.equals(schema, check_metadata=False)
    for got, want in zip(table.to_pylist(), records):
        expected = {name: arrowish(want[name], schema.field(name).type) for name in want}
        assert {k: got[k] for k in expected} == expected
    assert table.column("_offset").to_pylist() == [10, 11]
    assert table.column("_timestamp_ms").to_pylist() == [T_MS, T_MS + 1]


def test_upload_columns_have_the_analyst_facing_types():
    s = arrow_schema("Upload")
    assert s.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert s.field("hashtags").type.value_type == pa.string()
    assert pa.types.is_list(s.field("hashtags").type)
    assert s.field("kind").type == pa.string()
    assert s.field("kind").metadata[b"avro.symbols"] == b"TEXT,IMAGE,VIDEO"
    assert (s.field("width").type, s.field("duration_ms").type) == (pa.int32(), pa.int64())
    assert (s.field("_partition").type, s.field("_offset").type) == (pa.int32(), pa.int64())
    assert s.field("caption").metadata[b"doc"].startswith(b"The post's text")
    cats = arrow_schema("ContentEnrichment").field("categories").type
    assert pa.types.is_map(cats) and cats.item_type == pa.float64()
    headers = arrow_schema("DeadLetter").field("headers").type
    assert pa.types.is_struct(headers.value_type) and headers.value_type.field("value").type == pa.binary()


def test_named_types_resolve_by_reference_and_other_unions_are_refused():
    rec = {"type": "record", "name": "R", "namespace": "x", "fields": [
        {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
        {"name": "b", "type": ["null", "E"]},
        {"name": "c", "type": {"type": "fixed", "name": "F", "size": 8}},
        {"name": "d", "type": {"type": "int", "logicalType": "date"}},
        {"name": "e", "type": {"type": "long", "logicalType": "something-new"}}]}
    dt, nullable = arrow_type(rec)
    assert not nullable
    assert [dt.field(i).type for i in range(5)] == [pa.string(), pa.string(), pa.binary(8),
                                                    pa.date32(), pa.int64()]
    assert dt.field("b").nullable and dt.field("b").metadata[b"avro.symbols"] == b"A,B"
    with pytest.raises(ExportError, match=r"outer\.inner"):
        arrow_type({"type": "record", "name": "O", "fields": [{"name": "outer", "type": {
            "type": "record", "name": "I", "fields": [{"name": "inner", "type": ["int", "string"]}]}}]})


def test_rows_are_written_in_bounded_row_groups_and_a_bad_row_leaves_no_file(tmp_path):
    schema = arrow_schema("Follow")
    rec = {"event_id": str(uuid.uuid4()), "event_time": T, "producer": "p", "follower_id": "a",
           "followee_id": "b", "action": "FOLLOW"}
    rows = [(Position("follows", 0, i, T_MS), rec) for i in range(25)]
    seen = []
    n, groups = write_parquet(rows, schema, tmp_path / "f.parquet", row_group_size=10,
                              on_progress=seen.append)
    meta = pq.ParquetFile(tmp_path / "f.parquet").metadata
    assert (n, groups, meta.num_row_groups, meta.num_rows) == (25, 3, 3, 25)
    assert seen == [10, 20, 25]
    bad = rows[:3] + [(Position("follows", 0, 3, T_MS), dict(rec, follower_id=None))]
    with pytest.raises(ExportError):
        write_parquet(bad, schema, tmp_path / "bad.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]


# ------------------------------------------------------------------------------------- times


@pytest.mark.parametrize("text, ms", [
    ("2018-03-12T10:00:00.123Z", T_MS),
    ("2018-03-12T10:00:00.123+00:00", T_MS),
    ("2018-03-12T12:00:00.123+02:00", T_MS),
    ("2018-03-12T10:00:00.123", T_MS),  # no offset: UTC
    ("2018-03-12", 1520812800000),
    (" 1520848800123 ", T_MS),
])
def test_times_parse_to_utc_epoch_millis(text, ms):
    assert parse_time_ms(text) == ms


@pytest.mark.parametrize("text", ["yesterday", "", "2018-13-01", "12:00", "2018-03-12T25:00Z"])
def test_a_bad_time_is_a_clear_error(text):
    with pytest.raises(TimeRangeError, match="--from.*ISO-8601"):
        parse_time_ms(text, "--from")


def test_an_empty_range_is_refused():
    check_range(None, 5)
    check_range(1, 2)
    with pytest.raises(TimeRangeError, match="empty time range"):
        check_range(5, 5)


# ----------------------------------------------------------- merging partitions (fake consumer)


class FakeMessage:
    def __init__(self, topic, partition, offset, ts, value=b"v", eof=False):
        self._t, self._p, self._o, self._ts, self._v, self._eof = topic, partition, offset, ts, value, eof

    def topic(self): return self._t
    def partition(self): return self._p
    def offset(self): return self._o
    def key(self): return b"k"
    def value(self): return self._v
    def headers(self): return [("h", b"1")]
    def timestamp(self): return (1, self._ts)

    def error(self):
        if not self._eof:
            return None
        return type("Err", (), {"code": lambda self: KafkaError._PARTITION_EOF})()


class FakeConsumer:
    """Delivers one partition at a time (the worst case for a merge), honours pause/resume and,
    like librdkafka, may re-deliver a few messages after a resume."""

    def __init__(self, logs: dict[tuple[str, int], list[tuple[int, int]]]):
        self.logs = logs  # (topic, partition) -> [(offset, timestamp_ms)]
        self.pos, self.paused, self.ended, self.pauses, self.closed = {}, set(), set(), 0, False

    def assign(self, tps):
        self.pos = {(tp.topic, tp.partition): tp.offset for tp in tps}

    def pause(self, tps):
        self.pauses += 1
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, tps):
        for tp in tps:
            key = (tp.topic, tp.partition)
            self.paused.discard(key)
            self.pos[key] = max(0, self.pos[key] - 2)  # re-fetch a little

    def consume(self, num_messages, timeout):
        for key in sorted(self.pos):
            if key in self.paused or key in self.ended:
                continue
            log = [(o, ts) for o, ts in self.logs[key] if o >= self.pos[key]]
            if not log:
                self.ended.add(key)
                return [FakeMessage(*key, self.pos[key], 0, eof=True)]
            chunk = log[:min(num_messages, 3)]  # small fetches, so pauses bite mid-partition
            self.pos[key] = chunk[-1][0] + 1
            return [FakeMessage(*key, o, ts) for o, ts in chunk]
        return []

    def close(self):
        self.closed = True


def fake_kafka(monkeypatch, logs, starts=None):
    consumer = FakeConsumer(logs)
    monkeypatch.setattr(rebuild, "_consumer", lambda settings: consumer)
    monkeypatch.setattr(rebuild, "plan_partitions", lambda c, topics, start_ms, timeout_s=30.0: [
        (t, p, (starts or {}).get((t, p), 0), log[-1][0] + 1 if log else 0)
        for (t, p), log in sorted(logs.items()) if t in topics])
    monkeypatch.setattr(rebuild, "MAX_BUFFERED", 4)
    return consumer


def test_partitions_are_merged_by_timestamp_in_offset_order_with_bounded_buffers(monkeypatch):
    logs = {("uploads", 0): [(o, 10 * o) for o in range(30)],           # 0, 10, 20, ...
            ("uploads", 1): [(o, 10 * o + 5) for o in range(0, 40, 2)],  # gaps: a compacted topic
            ("follows", 0): [(o, 3 + 10 * o) for o in range(25)]}
    consumer = fake_kafka(monkeypatch, logs)
    totals = []
    got = list(read_merged(Settings.from_env({}), ["uploads", "follows"], on_total=totals.append))
    assert len(got) == 30 + 20 + 25
    assert [m.timestamp_ms for m in got] == sorted(m.timestamp_ms for m in got)
    for key in logs:
        assert [m.offset for m in got if (m.topic, m.partition) == key] == [o for o, _ in logs[key]]
    assert got[0] == RawMessage("uploads", 0, 0, b"k", b"v", (("h", b"1"),), 0)
    assert consumer.pauses > 0 and consumer.closed
    assert totals[0] == 30 + 39 + 25


def test_the_merge_stops_each_partition_at_end_ms(monkeypatch):
    logs = {("uploads", 0): [(o, 10 * o) for o in range(30)],
            ("follows", 0): [(o, 3 + 10 * o) for o in range(30)]}
    fake_kafka(monkeypatch, logs, starts={("uploads", 0): 5})
    got = list(read_merged(Settings.from_env({}), ["uploads", "follows"], end_ms=100))
    assert [(m.topic, m.offset) for m in got if m.topic == "uploads"] == [("uploads", o) for o in range(5, 10)]
    assert len([m for m in got if m.topic == "follows"]) == 10


# ------------------------------------------------------------ replay = the worker's batch code


def upload(i: int) -> dict:
    return {"event_id": str(uuid.UUID(int=i + 1)), "event_time": T_MS + i, "producer": "t",
            "post_id": f"p{i}", "creator_id": "c", "kind": "TEXT", "content_type": "FOREVER",
            "caption": f"post {i}", "hashtags": ["x"]}


class FakeSinks:
    def __init__(self):
        self.batches = []

    def write(self, effects):
        self.batches.append(list(effects))
        return len(effects)


def fake_log(monkeypatch, messages):
    monkeypatch.setattr(rebuild, "read_merged", lambda settings, topics, **kw: iter(
        [m for m in messages if m.topic in topics]))
    sinks = FakeSinks()
    monkeypatch.setattr(RuntimeContext, "sinks", lambda self, needs: sinks)
    return sinks


def materialized(record):
    """The materializer's rows for a decoded upload, as its ``process`` returns them."""
    ctx = Context(agent="materializer", event_id=record["event_id"], event_time_ms=T_MS)
    return materialize(None, Event("uploads", record), ctx)


def test_replay_writes_exactly_what_the_agent_returns_in_batches(monkeypatch, tmp_path):
    codec = AvroCodec(default_catalog(), "Upload")
    messages = [RawMessage("uploads", 0, i, b"k", codec.encode(upload(i)), (), T_MS + i) for i in range(7)]
    messages.insert(3, RawMessage("uploads", 0, 99, b"k", b"\xc3\x01junk", (), T_MS))
    spec = AgentSpec(name="views3", topics=("uploads",), batch_size=3, sinks=frozenset({"cassandra"}),
                     outputs=("uploads",), process=lambda s, e, c: materialize(s, e, c) + [Emit("uploads", e.record)])
    monkeypatch.setitem(registry.AGENTS, "views3", spec)
    sinks = fake_log(monkeypatch, messages)
    seen = []
    r = rebuild_views(Settings.from_env({"PULSE_HOME": str(tmp_path)}), ["views3"],
                      on_progress=lambda done, total: seen.append(done))
    expected = [e for i in range(7) for e in materialized(codec.decode(codec.encode(upload(i))))]
    assert [e for b in sinks.batches for e in b] == expected
    assert [len(b) for b in sinks.batches] == [6, 4, 4]  # batches of 3 messages; the 4th undecodable
    assert (r["events"], r["topics"], r["effects"]) == (8, {"uploads": 8}, 14)
    assert (r["emits_skipped"], r["emits_published"], r["dead_letters"]) == (7, 0, 1)
    dl = r["dead_letter_list"][0]
    assert (dl["topic"], dl["partition"], dl["offset"]) == ("uploads", 0, 99) and dl["reason"]
    assert seen[-1] == 8


def test_emit_publishes_derived_events_and_dead_letters_with_catalog_keys(monkeypatch, tmp_path):
    codec = AvroCodec(default_catalog(), "Upload")
    messages = [RawMessage("uploads", 1, 0, b"k", codec.encode(upload(0)), (), T_MS),
                RawMessage("uploads", 1, 1, b"k", b"junk", (), T_MS)]
    spec = AgentSpec(name="echo", topics=("uploads",), outputs=("uploads",),
                     process=lambda s, e, c: [Emit("uploads", e.record)])
    monkeypatch.setitem(registry.AGENTS, "echo", spec)
    fake_log(monkeypatch, messages)
    sent = []

    class FakePublisher:
        def __init__(self, settings, producer_name):
            pass

        def produce_raw(self, topic, key, value):
            sent.append((topic, key, value))

        def flush(self):
            sent.append("flushed")

    monkeypatch.setattr("streams.producer.Publisher", FakePublisher)
    r = rebuild_views(Settings.from_env({"PULSE_HOME": str(tmp_path)}), ["echo"], emit=True)
    assert (r["emits_published"], r["dead_letters_published"], r["emits_skipped"]) == (1, 1, 0)
    assert [(t, k) for t, k, _ in sent[:2]] == [("uploads", b"p0"), ("dead-letters", b"uploads")]  # key: source_topic
    assert codec.decode(sent[0][2])["post_id"] == "p0"
    assert sent[-1] == "flushed"


def test_unknown_agents_and_empty_ranges_fail_before_touching_kafka(tmp_path):
    s = Settings.from_env({"PULSE_HOME": str(tmp_path)})
    with pytest.raises(KeyError, match="registered agents"):
        rebuild_views(s, ["nope"])
    with pytest.raises(TimeRangeError):
        rebuild_views(s, None, start_ms=10, end_ms=10)


def count_uploads(state, event, ctx):
    key = event.record["creator_id"]
    n = state.get("counts", key, 0) + 1
    return [StateSet("counts", key, n),
            Upsert("creator_counts", {"creator_id": key, "uploads": n}, ctx.timestamp_us),
            Emit("uploads", dict(event.record, caption=f"upload {n} of {key}"))]


def test_state_is_rebuilt_from_the_log_across_batches_and_outputs_are_collected(monkeypatch, tmp_path):
    codec = AvroCodec(default_catalog(), "Upload")
    records = [dict(upload(i), creator_id="c" if i % 3 else "d") for i in range(7)]
    messages = [RawMessage("uploads", 0, i, b"k", codec.encode(r), (), T_MS + i)
                for i, r in enumerate(records)]
    messages.append(RawMessage("uploads", 0, 7, b"k", b"junk", (), T_MS + 7))
    spec = AgentSpec(name="counter", topics=("uploads",), batch_size=2, process=count_uploads,
                     tables=("counts",), sinks=frozenset({"cassandra"}), outputs=("uploads",))
    monkeypatch.setitem(registry.AGENTS, "counter", spec)
    sinks = fake_log(monkeypatch, messages)
    r = rebuild_views(Settings.from_env({"PULSE_HOME": str(tmp_path)}), ["counter"], collect=True)
    rows = [e.row for b in sinks.batches for e in b]
    assert [len(b) for b in sinks.batches] == [2, 2, 2, 1]  # batches of 2; the last ends in junk
    assert [(x["creator_id"], x["uploads"]) for x in rows] == [
        ("d", 1), ("c", 1), ("c", 2), ("d", 2), ("c", 3), ("c", 4), ("d", 3)]
    assert (r["events"], r["effects"], r["dead_letters"], r["emits_skipped"]) == (8, 7, 1, 7)
    assert r["outputs"] == ["uploads"]
    emitted = r["emitted"]["uploads"]
    assert set(emitted) == {x["event_id"] for x in records}
    assert codec.decode(emitted[records[6]["event_id"]])["caption"] == "upload 3 of d"
    written = r["written"]
    assert isinstance(written, Written) and written.columns == {
        "creator_counts": {"creator_id", "uploads"}}
    assert written.points == {} and "dead-letters" not in r["emitted"]


def test_when_one_agents_batch_fills_every_agent_processes_what_it_has_buffered(monkeypatch, tmp_path):
    codec = AvroCodec(default_catalog(), "Upload")
    messages = [RawMessage("uploads", 0, i, b"k", codec.encode(upload(i)), (), T_MS + i)
                for i in range(5)]
    seen = {"a": [], "b": []}

    def agent(name, size):
        def process(state, event, ctx):
            seen[name].append(event.offset)
            return [Upsert(name, {"post_id": event.record["post_id"]}, ctx.timestamp_us)]
        return AgentSpec(name=name, topics=("uploads",), batch_size=size, process=process,
                         sinks=frozenset({"cassandra"}))

    monkeypatch.setitem(registry.AGENTS, "a", agent("a", 2))
    monkeypatch.setitem(registry.AGENTS, "b", agent("b", 10))
    sinks = fake_log(monkeypatch, messages)
    r = rebuild_views(Settings.from_env({"PULSE_HOME": str(tmp_path)}), ["a", "b"])
    assert seen == {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3, 4]}
    # a's batch of 2 fills at offsets 1 and 3: b (batch size 10) catches up each time, after a
    # (neither feeds the other: registry order); the rest at the end of the log
    assert [(b[0].table, len(b)) for b in sinks.batches] == [
        ("a", 2), ("b", 2), ("a", 2), ("b", 2), ("a", 1), ("b", 1)]
    assert (r["agents"], r["events"], r["topics"], r["effects"]) == (["a", "b"], 5, {"uploads": 5}, 10)
    assert r["outputs"] == []


def test_an_upstream_agents_full_batch_runs_before_the_pending_batch_of_the_agent_it_feeds(
        monkeypatch, tmp_path):
    """``up`` emits ``uploads-copy``, which ``down`` consumes; ``down`` is registered first. When
    up's batch fills, down's pending message is processed in the same round, after up's batch."""
    codec = AvroCodec(default_catalog(), "Upload")
    log = [("uploads", 0), ("uploads-copy", 0), ("uploads", 1), ("uploads-copy", 1), ("uploads", 2)]
    messages = [RawMessage(t, 0, o, b"k", codec.encode(upload(o)), (), T_MS + i)
                for i, (t, o) in enumerate(log)]
    calls = []

    def recording(name, emits):
        def process(state, event, ctx):
            calls.append((name, event.topic, event.offset))
            return [Emit("uploads-copy", event.record)] if emits else []
        return process

    schemas = {"uploads-copy": "Upload"}
    monkeypatch.setitem(registry.AGENTS, "down", AgentSpec(
        name="down", topics=("uploads-copy",), batch_size=10, process=recording("down", False),
        topic_schemas=schemas))
    monkeypatch.setitem(registry.AGENTS, "up", AgentSpec(
        name="up", topics=("uploads",), batch_size=2, process=recording("up", True),
        outputs=("uploads-copy",), topic_schemas=schemas))
    fake_log(monkeypatch, messages)
    r = rebuild_views(Settings.from_env({"PULSE_HOME": str(tmp_path)}), ["down", "up"])
    assert calls == [
        ("up", "uploads", 0), ("up", "uploads", 1),   # up's batch fills at uploads[1] ...
        ("down", "uploads-copy", 0),                  # ... and down catches up, after up
        ("up", "uploads", 2),                         # the end of the log: up first again
        ("down", "uploads-copy", 1)]
    assert r["agents"] == ["down", "up"] and r["outputs"] == ["uploads-copy"]
    assert (r["events"], r["dead_letters"], r["emits_skipped"]) == (5, 0, 3)


def spec_of(name: str, topics: tuple[str, ...], outputs: tuple[str, ...] = ()) -> AgentSpec:
    return AgentSpec(name=name, topics=topics, outputs=outputs, process=lambda s, e, c: [])


def names(specs) -> list[str]:
    return [sp.name for sp in specs]


def test_upstream_first_orders_an_agent_before_the_agents_consuming_what_it_emits():
    # c consumes what b emits, b what a emits; registered downstream first
    c = spec_of("c", ("y",))
    b = spec_of("b", ("x",), outputs=("y",))
    a = spec_of("a", ("uploads",), outputs=("x",))
    assert names(rebuild.upstream_first([c, b, a])) == ["a", "b", "c"]
    # unrelated agents (and an agent emitting to its own source) keep the registry order
    solo = spec_of("solo", ("uploads",), outputs=("uploads",))
    other = spec_of("other", ("follows",))
    assert names(rebuild.upstream_first([other, c, solo, b, a])) == ["other", "solo", "a", "b", "c"]
    assert names(rebuild.upstream_first([])) == []
    # the registered agents: clip_ai's enrichments before the publisher, which consumes them
    order = names(rebuild.upstream_first(registry.select(None)))
    assert sorted(order) == sorted(registry.AGENTS)
    assert order.index("clip_ai") < order.index("publisher")
    assert order.index("content_guard") < order.index("publisher")
    assert order.index("copyright_guard") < order.index("publisher")


def test_upstream_first_keeps_the_registry_order_of_a_cycle():
    p = spec_of("p", ("x",), outputs=("y",))
    q = spec_of("q", ("y",), outputs=("x",))
    assert names(rebuild.upstream_first([p, q])) == ["p", "q"]
    assert names(rebuild.upstream_first([q, p])) == ["q", "p"]
    # after the cycle is broken, the order of what it feeds holds again
    r = spec_of("r", ("y",))
    assert names(rebuild.upstream_first([p, q, r])) == ["p", "q", "r"]


def test_a_time_range_is_refused_for_agents_with_state_and_passed_on_otherwise(monkeypatch, tmp_path):
    s = Settings.from_env({"PULSE_HOME": str(tmp_path)})
    spec = AgentSpec(name="counter", topics=("uploads",), process=count_uploads, tables=("counts",))
    monkeypatch.setitem(registry.AGENTS, "counter", spec)
    with pytest.raises(TimeRangeError, match=r"agents with state \(counter\).*drop --from/--to"):
        rebuild_views(s, ["counter"], start_ms=10)
    with pytest.raises(TimeRangeError, match="publisher"):
        rebuild_views(s, ["publisher"], end_ms=10)
    asked = []
    monkeypatch.setattr(rebuild, "read_merged", lambda settings, topics, **kw: asked.append(
        (topics, kw["start_ms"], kw["end_ms"])) or iter([]))
    monkeypatch.setattr(RuntimeContext, "sinks", lambda self, needs: FakeSinks())
    r = rebuild_views(s, ["materializer"], start_ms=10, end_ms=20)
    assert asked == [(["uploads", "signups", "follows"], 10, 20)] and r["events"] == 0


def test_only_the_first_dead_letters_are_listed_but_all_are_counted(monkeypatch, tmp_path):
    messages = [RawMessage("uploads", 0, i, b"k", b"junk", (), T_MS) for i in range(30)]
    spec = AgentSpec(name="echo", topics=("uploads",), process=lambda s, e, c: [])
    monkeypatch.setitem(registry.AGENTS, "echo", spec)
    fake_log(monkeypatch, messages)
    r = rebuild_views(Settings.from_env({"PULSE_HOME": str(tmp_path)}), ["echo"])
    assert r["dead_letters"] == 30
    assert [d["offset"] for d in r["dead_letter_list"]] == list(range(rebuild.MAX_LISTED_DEAD_LETTERS))


def test_an_agent_downstream_of_a_cycle_runs_after_its_feeder():
    from replay.rebuild import upstream_first

    f = lambda s, e, c: []  # noqa: E731
    p = AgentSpec(name="p", topics=("x",), outputs=("y",), process=f)
    q = AgentSpec(name="q", topics=("y",), outputs=("x",), process=f)
    r = AgentSpec(name="r", topics=("y",), process=f)  # consumes what p emits; not on the cycle
    order = [s.name for s in upstream_first([r, p, q])]
    assert order.index("p") < order.index("r")


def test_row_groups_name_the_positions_of_a_group_that_does_not_fit(tmp_path):
    schema = arrow_schema("Follow")
    rec = {"event_id": str(uuid.uuid4()), "event_time": T, "producer": "p", "follower_id": "a",
           "followee_id": "b", "action": "FOLLOW"}
    rows = [(Position("follows", 2, 40 + i, T_MS), rec) for i in range(4)]
    rows.append((Position("follows", 3, 7, T_MS), dict(rec, followee_id=None)))
    groups = row_groups(rows, schema, row_group_size=3)
    assert next(groups).num_rows == 3
    with pytest.raises(ExportError, match=r"rows 3\.\.4 \(follows\[2\]@43 to \[3\]@7\)"):
        next(groups)


@pytest.mark.parametrize("messages, partitions, cpus, jobs", [
    (1_000_000, 4, 2, 2),    # one per CPU
    (1_000_000, 4, 16, 4),   # at most one per partition
    (250_000, 4, 16, 2),     # one per 100,000 messages
    (99_999, 4, 16, 1),      # too few to pay for a second process
    (0, 0, 2, 1),            # an empty topic still has its one reader
])
def test_default_jobs_is_bounded_by_cpus_partitions_and_messages(messages, partitions, cpus, jobs):
    assert default_jobs(messages, partitions, cpus) == jobs


def test_export_units_are_the_non_empty_partitions_of_every_topic_largest_first():
    counts = {"signups": {0: 100, 1: 300, 2: 0}, "follows": {0: 300, 1: 50}}
    assert plan_units(counts) == [("signups", 1, 300), ("follows", 0, 300), ("signups", 0, 100),
                                  ("follows", 1, 50)]  # ties: the topics' order, then partition
    assert plan_units({"follows": {0: 0}}) == [] and plan_units({}) == []

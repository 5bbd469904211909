"""The agent engine (streams.runtime.engine.AgentRunner): what every worker, replay and test runs
per batch. State overlay and deletes, positions and skipped re-deliveries, effect validation,
the context's clock and random generator, and applying state."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from streams.contracts.agent import AgentSpec, Context, Event, SideInput
from streams.contracts.effects import (Delete, Emit, StateDelete, StateSet, Upsert, VectorDelete,
                                       VectorSetPayload, VectorUpsert)
from streams.runtime.engine import POSITIONS_TABLE, AgentRunner, TableState
from tests.unit.agent_harness import Harness, full_record, settings_for
from tests.unit.test_materializer import upload

T = 1_537_000_000_123


def up(i: int, creator: str = "c1", **kw) -> dict:
    return upload(event_id=str(uuid.UUID(int=i + 1)), post_id=f"p{i}", creator_id=creator,
                  event_time=T + i, **kw)


# --------------------------------------------------------------------------- a stateful agent


def count_process(state, event, ctx):
    """Counts uploads per creator; a caption ``forget`` deletes the count instead."""
    key = event.record["creator_id"]
    if event.record["caption"] == "forget":
        return [StateDelete("counts", key)]
    n = state.get("counts", key, 0) + 1
    return [StateSet("counts", key, n),
            Upsert("creator_counts", {"creator_id": key, "uploads": n}, ctx.timestamp_us)]


COUNTER = AgentSpec(name="counter", topics=("uploads",), process=count_process,
                    tables=("counts",), sinks=frozenset({"cassandra"}))


def counts_written(out) -> list[int]:
    return [v.row["uploads"] for v in out.views]


def test_a_second_event_of_the_batch_sees_the_first_ones_state_change(tmp_path):
    h = Harness(COUNTER, tmp_path)
    out = h.run([h.message("uploads", up(0)), h.message("uploads", up(1)),
                 h.message("uploads", up(2, creator="c2"))], apply=False)
    assert counts_written(out) == [1, 2, 1]
    assert h.table("counts") == {}  # nothing written to the backing table before apply_state
    changes = [c for c, _ in out.state if c.table == "counts"]
    assert changes == [StateSet("counts", "c1", 1), StateSet("counts", "c1", 2),
                       StateSet("counts", "c2", 1)]
    assert [cause.offset for c, cause in out.state if c.table == "counts"] == [0, 1, 2]
    h.runner.apply_state(out.state)
    assert h.table("counts") == {"c1": 2, "c2": 1}
    # the next batch reads the backing table
    assert counts_written(h.run([h.message("uploads", up(3))])) == [3]


def test_state_delete_is_seen_by_the_rest_of_the_batch_and_applied(tmp_path):
    h = Harness(COUNTER, tmp_path)
    h.run([h.message("uploads", up(0)), h.message("uploads", up(1))])
    assert h.table("counts") == {"c1": 2}
    out = h.run([h.message("uploads", up(2, caption="forget")), h.message("uploads", up(3))],
                apply=False)
    assert counts_written(out) == [1]  # the delete hid the backing value at once
    assert h.table("counts") == {"c1": 2}
    h.runner.apply_state(out.state)
    assert h.table("counts") == {"c1": 1}
    out = h.run([h.message("uploads", up(4, caption="forget"))])
    assert "c1" not in h.table("counts") and out.views == []


def test_a_state_set_to_none_reads_as_unset_within_the_batch_too(tmp_path):
    def process(state, event, ctx):
        key = event.record["creator_id"]
        if event.record["caption"] == "clear":
            return [StateSet("counts", key, None)]
        return [Upsert("seen", {"value": state.get("counts", key, "unset")}, 1)]

    spec = AgentSpec(name="clearer", topics=("uploads",), process=process, tables=("counts",),
                     sinks=frozenset({"cassandra"}))
    h = Harness(spec, tmp_path, tables={"counts": {"c1": 5}})
    out = h.run([h.message("uploads", up(0)), h.message("uploads", up(1, caption="clear")),
                 h.message("uploads", up(2))])
    assert [v.row["value"] for v in out.views] == [5, "unset"]
    assert [v.row["value"] for v in h.run([h.message("uploads", up(3))]).views] == ["unset"]


def test_state_of_an_undeclared_table_dead_letters_the_event(tmp_path):
    def process(state, event, ctx):
        return [Upsert("x", {"v": state.get("other", "k")}, 1)]

    spec = AgentSpec(name="reader", topics=("uploads",), process=process, tables=("counts",),
                     sinks=frozenset({"cassandra"}))
    h = Harness(spec, tmp_path)
    out = h.run([h.message("uploads", up(0))])
    (letter,) = [h.decode(d) for d in out.dead_letters]
    assert "'other' is not declared" in letter["reason"] and "counts" in letter["reason"]
    assert POSITIONS_TABLE not in letter["reason"]
    with pytest.raises(KeyError, match="not declared"):
        TableState({"counts": {}}, {}).get("other", "k")


# ---------------------------------------------------------------------------------- positions


def test_a_stateful_agent_records_every_messages_next_offset_dead_letters_included(tmp_path):
    h = Harness(COUNTER, tmp_path)
    messages = [h.message("uploads", up(0), partition=0, offset=5),
                h.message("uploads", b"\xc3\x01garbage", partition=0, offset=6),
                h.message("uploads", up(1), partition=3, offset=40),
                h.message("uploads", up(2), partition=0, offset=7)]
    out = h.run(messages, apply=False)
    positions = [(c.key, c.value, cause.offset) for c, cause in out.state
                 if c.table == POSITIONS_TABLE]
    assert positions == [("uploads:0", 6, 5), ("uploads:0", 7, 6), ("uploads:3", 41, 40),
                         ("uploads:0", 8, 7)]
    assert all(isinstance(c, StateSet) for c, _ in out.state)
    assert (out.events, out.skipped, len(out.dead_letters)) == (4, 0, 1)
    h.runner.apply_state(out.state)
    assert h.table(POSITIONS_TABLE) == {"uploads:0": 8, "uploads:3": 41}


def test_a_redelivered_message_below_its_position_is_skipped_without_effects(tmp_path):
    h = Harness(COUNTER, tmp_path)
    first = [h.message("uploads", up(0), offset=0), h.message("uploads", b"junk", offset=1),
             h.message("uploads", up(1), offset=2)]
    h.run(first)
    assert h.table("counts") == {"c1": 2}
    # the worker died after writing state, before committing: Kafka re-delivers the batch
    again = h.run(first + [h.message("uploads", up(2), offset=3)])
    assert (again.events, again.skipped) == (1, 3)
    assert counts_written(again) == [3] and again.dead_letters == [] and again.emits == []
    assert [cause.offset for _, cause in again.state] == [3, 3]
    assert h.table(POSITIONS_TABLE) == {"uploads:0": 4}
    # a message re-delivered within one batch is skipped too (the overlay holds the position)
    out = h.run([h.message("uploads", up(4), offset=4), h.message("uploads", up(4), offset=4)])
    assert (out.events, out.skipped, counts_written(out)) == (1, 1, [4])


def test_a_stateless_agent_keeps_no_positions_and_skips_nothing(tmp_path):
    spec = AgentSpec(name="plain", topics=("uploads",), sinks=frozenset({"cassandra"}),
                     process=lambda s, e, c: [Upsert("t", {"id": e.record["post_id"]}, 1)])
    h = Harness(spec, tmp_path)
    m = h.message("uploads", up(0), offset=9)
    out = h.run([m, m])
    assert (out.events, out.skipped, out.state, len(out.views)) == (2, 0, [], 2)
    assert h.runner.tables == {}


def test_messages_without_a_position_are_never_skipped(tmp_path):
    h = Harness(COUNTER, tmp_path)
    m = h.message("uploads", up(0))._replace(partition=None, offset=None)
    out = h.run([m, m])
    assert (out.events, out.skipped, counts_written(out)) == (2, 0, [1, 2])
    assert h.table(POSITIONS_TABLE) == {}


class Offsets:
    """What the worker's consumer knows (``streams.runtime.binding.ConsumerOffsets``)."""

    def __init__(self, starts=None, first=None):
        self.starts, self.first = starts or {}, first or {}

    def log_start(self, topic, partition):
        return self.starts.get((topic, partition))

    def first_delivered(self, topic, partition):
        return self.first.get((topic, partition))


def test_a_gap_holds_the_partition_back_and_is_reported_once(tmp_path):
    """A batch lost inside the worker: offsets 2-3 never reached the agent. Applying offset 4
    would move the position past them for good, so the partition is held back (the rest of it
    in the batch too) and the gap reported, while other partitions go on; once the seek
    re-delivers from offset 2, everything applies in order."""
    h = Harness(COUNTER, tmp_path)
    h.runner.watch_gaps(Offsets())
    h.run([h.message("uploads", up(0), offset=0), h.message("uploads", up(1), offset=1)])
    assert h.table(POSITIONS_TABLE) == {"uploads:0": 2}
    late = [h.message("uploads", up(4), offset=4), h.message("uploads", up(9, creator="c9"),
                                                             partition=1, offset=0),
            h.message("uploads", up(5), offset=5)]
    out = h.run(late)
    assert out.gaps == {("uploads", 0): 2} and out.held_back == [0, 2]
    assert (out.events, counts_written(out)) == (1, [1])  # partition 1 went on
    assert h.table(POSITIONS_TABLE) == {"uploads:0": 2, "uploads:1": 1}
    # messages fetched before the seek still arrive: held back again, the gap not re-reported
    again = h.run([h.message("uploads", up(5), offset=5)])
    assert (again.gaps, again.held_back, again.events) == ({}, [0], 0)
    # the seek re-delivers from the position: applied in log order
    out = h.run([h.message("uploads", up(i), offset=i) for i in range(2, 6)])
    assert (out.gaps, out.held_back, counts_written(out)) == ({}, [], [3, 4, 5, 6])
    assert h.table(POSITIONS_TABLE) == {"uploads:0": 6, "uploads:1": 1}


def test_with_no_position_yet_the_first_offset_delivered_is_the_next_to_apply(tmp_path):
    """A new group's first batch lost: nothing recorded for the partition, so the reference is
    the first offset the consumer delivered since the partition was assigned or sought."""
    h = Harness(COUNTER, tmp_path)
    first = {("uploads", 0): 3}
    h.runner.watch_gaps(Offsets(first=first))
    out = h.run([h.message("uploads", up(5), offset=5)])
    assert (out.gaps, out.held_back, out.events) == ({("uploads", 0): 3}, [0], 0)
    # the seek forgets the first delivered offset; messages fetched before it are still held
    del first[("uploads", 0)]
    out = h.run([h.message("uploads", up(6), offset=6)])
    assert (out.gaps, out.held_back, out.events) == ({}, [0], 0)
    first[("uploads", 0)] = 3
    out = h.run([h.message("uploads", up(i), offset=i) for i in (3, 4, 5)])
    assert (out.gaps, out.held_back, counts_written(out)) == ({}, [], [1, 2, 3])
    # the consumer started at offset 3 (its committed offset): 3 is not a gap
    h2 = Harness(COUNTER, tmp_path)
    h2.runner.watch_gaps(Offsets(first=first))
    assert counts_written(h2.run([h2.message("uploads", up(3), offset=3)])) == [1]


def test_without_watch_gaps_offsets_may_jump(tmp_path):
    """Replay, benchmarks and tests feed runners a selection of a topic's events: no gap check."""
    h = Harness(COUNTER, tmp_path)
    h.run([h.message("uploads", up(0), offset=0)])
    out = h.run([h.message("uploads", up(1), offset=7)])
    assert (out.gaps, out.held_back, counts_written(out)) == ({}, [], [2])


def test_gaps_below_the_log_start_and_on_compacted_topics_are_applied_over(tmp_path):
    spec = AgentSpec(name="counter2", topics=("uploads", "profiles"), process=count_process,
                     tables=("counts",), sinks=frozenset({"cassandra"}))
    h = Harness(spec, tmp_path)
    starts = {("uploads", 0): 10}
    h.runner.watch_gaps(Offsets(starts=starts))
    h.run([h.message("uploads", up(0), offset=0), h.message("profiles", None, offset=0)])
    # offsets 1-9 were deleted by retention: the log now starts at 10
    out = h.run([h.message("uploads", up(10), offset=10)])
    assert (out.gaps, out.held_back, counts_written(out)) == ({}, [], [2])
    # past the log start, a gap is a gap
    out = h.run([h.message("uploads", up(12), offset=12)])
    assert (out.gaps, out.held_back) == ({("uploads", 0): 11}, [0])
    # compaction leaves gaps in a compacted topic's offsets by design
    out = h.run([h.message("profiles", None, offset=7)])
    assert (out.gaps, out.held_back, out.tombstones) == ({}, [], 1)
    assert h.table(POSITIONS_TABLE)["profiles:0"] == 8


# -------------------------------------------------------------------------- effect validation


def returning(*effects, tables=(), sinks=(), outputs=("uploads",)):
    """An agent that, for the upload of ``p0``, returns a valid emit followed by ``effects``, and
    for any other upload only the valid emit (a copy of the upload); it declares ``outputs``."""
    def process(state, event, ctx):
        copy = Emit("uploads", dict(event.record))
        return [copy] + list(effects) if event.record["post_id"] == "p0" else [copy]

    return AgentSpec(name="bad", topics=("uploads",), process=process, outputs=outputs,
                     tables=tables, sinks=frozenset(sinks))


@pytest.mark.parametrize("spec, reason", [
    (returning(Upsert("posts", {"a": 1}, 1)),
     "Upsert needs the 'cassandra' sink, which agent bad does not declare"),
    (returning(Delete("posts", {"a": 1}, 1), sinks=("vectors",)),
     "Delete needs the 'cassandra' sink"),
    (returning(VectorUpsert("content", "p0", [0.0]), sinks=("cassandra",)),
     "VectorUpsert needs the 'vectors' sink"),
    (returning(VectorSetPayload("content", ("p0",), {}), sinks=("cassandra",)),
     "VectorSetPayload needs the 'vectors' sink"),
    (returning(VectorDelete("content", ("p0",))), "VectorDelete needs the 'vectors' sink"),
    (returning(StateSet("other", "k", 1), tables=("counts",)),
     "state change of undeclared table 'other'"),
    (returning(StateDelete("other", "k"), tables=("counts",)),
     "state change of undeclared table 'other'"),
    (returning(Emit("uploads", {"post_id": "p0"})), "emit to uploads:"),
    # declared, but the catalog has no such topic: the codec lookup fails
    (returning(Emit("no-such-topic", {"post_id": "p0"}), outputs=("uploads", "no-such-topic")),
     "emit to no-such-topic:"),
    # an event its topic's codec accepts, to a catalog topic the agent does not declare
    (returning(Emit("moderation-verdicts", full_record("moderation-verdicts"))),
     "emit to moderation-verdicts, which agent bad does not declare in outputs ('uploads',)"),
    (returning({"table": "posts"}), "not an effect: {'table': 'posts'}"),
    (returning("Upsert"), "not an effect: 'Upsert'"),
    (returning(None), "not an effect: None"),
])
def test_an_effect_the_runtime_cannot_apply_dead_letters_that_event_alone(tmp_path, spec, reason):
    h = Harness(spec, tmp_path)
    out = h.run([h.message("uploads", up(1)), h.message("uploads", up(0)),
                 h.message("uploads", up(2))])
    assert [e.key for e in out.emits] == [b"p1", b"p2"]  # nothing of p0's, not even its valid emit
    assert out.views == []
    (dl,) = out.dead_letters
    letter = h.decode(dl)
    assert reason in letter["reason"] and letter["reason"].startswith("bad failed: EffectError(")
    assert letter["error_type"] == "EffectError" and letter["offset"] == 1
    assert dl.cause.offset == 1 and letter["value"] == h.codec("uploads").encode(up(0))
    assert [c for c, _ in out.state if c.table != POSITIONS_TABLE] == []


def test_declared_tables_and_sinks_are_accepted(tmp_path):
    spec = returning(StateSet("counts", "k", 1), Upsert("posts", {"a": 1}, 1),
                     VectorDelete("content", ("p0",)), tables=("counts",),
                     sinks=("cassandra", "vectors"))
    h = Harness(spec, tmp_path)
    out = h.run([h.message("uploads", up(0))])
    assert out.dead_letters == [] and len(out.emits) == 1
    assert out.views == [Upsert("posts", {"a": 1}, 1), VectorDelete("content", ("p0",))]
    assert h.table("counts") == {"k": 1}


def test_a_valid_emit_is_encoded_with_the_catalog_key_and_its_cause(tmp_path):
    spec = AgentSpec(name="echo", topics=("uploads",), outputs=("uploads",),
                     process=lambda s, e, c: [Emit("uploads", dict(e.record, caption="copy"))])
    h = Harness(spec, tmp_path)
    m = h.message("uploads", up(7))
    (e,) = h.run([m]).emits
    assert (e.topic, e.key, e.cause) == ("uploads", b"p7", m)
    assert h.decode(e)["caption"] == "copy"


def test_an_exception_in_process_dead_letters_the_event_with_its_bytes(tmp_path):
    def boom(state, event, ctx):
        if event.record["post_id"] == "p0":
            raise RuntimeError("model file missing")
        return []

    h = Harness(AgentSpec(name="boom", topics=("uploads",), process=boom), tmp_path)
    good = h.codec("uploads").encode(up(0))
    out = h.run([h.message("uploads", good, key=b"p0"), h.message("uploads", up(1))])
    (dl,) = out.dead_letters
    letter = h.decode(dl)
    assert letter["reason"] == "boom failed: RuntimeError('model file missing')"
    assert (letter["value"], letter["key"], letter["error_type"]) == (good, b"p0", "RuntimeError")
    assert (letter["source_topic"], letter["consumer"], dl.key) == ("uploads", "boom", b"uploads")


def test_missing_side_inputs_are_refused_at_construction(tmp_path):
    spec = AgentSpec(name="side", topics=("uploads",), process=lambda s, e, c: [],
                     side_inputs=(SideInput("refs", "copyright-references", lambda c, m: None),))
    with pytest.raises(ValueError, match=r"side inputs \['refs'\] not provided"):
        AgentRunner(spec, lambda topic: None)
    AgentRunner(spec, lambda topic: None, side={"refs": object()})


def test_unknown_sinks_are_refused_by_the_spec():
    with pytest.raises(ValueError, match="unknown sinks"):
        AgentSpec(name="x", topics=("uploads",), process=lambda s, e, c: [],
                  sinks=frozenset({"redis"}))


# ------------------------------------------------------------------------ the context: clock, rng


def test_ctx_rng_depends_only_on_the_agent_and_the_event_id(tmp_path):
    def process(state, event, ctx):
        return [Upsert("draws", {"post_id": event.record["post_id"],
                                 "draws": [ctx.rng.random() for _ in range(3)]}, 1)]

    spec = AgentSpec(name="dice", topics=("uploads",), process=process,
                     sinks=frozenset({"cassandra"}))
    a, b = Harness(spec, tmp_path), Harness(spec, tmp_path)
    first = a.run([a.message("uploads", up(0)), a.message("uploads", up(1))]).views
    # another runner, another batch composition and position: the same draws for the same event
    second = b.run([b.message("uploads", up(1), offset=50)]).views
    assert first[1].row == second[0].row
    assert first[0].row["draws"] != first[1].row["draws"]
    assert len(set(first[0].row["draws"])) == 3  # one generator per event, advancing

    def ctx(agent, event_id):
        return Context(agent=agent, event_id=event_id, event_time_ms=T)

    e1, e2 = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    assert ctx("a", e1).rng.random() == ctx("a", e1).rng.random()
    assert ctx("a", e1).rng.random() != ctx("a", e2).rng.random()
    assert ctx("a", e1).rng.random() != ctx("b", e1).rng.random()
    c = ctx("a", e1)
    assert c.rng is c.rng  # cached: draws continue within one event


def test_ctx_now_is_the_event_time_never_the_wall_clock(tmp_path):
    seen = []

    def process(state, event, ctx):
        seen.append((ctx.now(), ctx.event_time_ms, ctx.timestamp_us, ctx.event_id, event))
        return []

    h = Harness(AgentSpec(name="clock", topics=("uploads",), process=process), tmp_path)
    record = up(3)
    m = h.message("uploads", record, partition=2, offset=11)
    h.run([m])
    ((now, ms, us, event_id, event),) = seen
    assert now == datetime.fromtimestamp((T + 3) / 1000, tz=timezone.utc) == event.record["event_time"]
    assert now.tzinfo is not None
    assert (ms, us, event_id) == (T + 3, (T + 3) * 1000, record["event_id"])
    assert (event.topic, event.partition, event.offset, event.event_time_ms) == ("uploads", 2, 11, T + 3)
    assert event.event_id == record["event_id"]


def test_ctx_derive_id_is_a_pure_function_of_agent_cause_and_part():
    c = Context(agent="a", event_id="e1", event_time_ms=T)
    assert c.derive_id("x") == Context(agent="a", event_id="e1", event_time_ms=T + 5).derive_id("x")
    assert len({c.derive_id("x"), c.derive_id("y"), c.derive_id("x", cause_event_id="e2"),
                Context(agent="b", event_id="e1", event_time_ms=T).derive_id("x")}) == 4


def test_ctx_carries_models_config_and_side_inputs(tmp_path):
    seen = []
    spec = AgentSpec(name="ctx", topics=("uploads",),
                     process=lambda s, e, c: seen.append((c.models, c.side, c.config)) or [])
    side = {"refs": object()}
    h = Harness(spec, tmp_path, models="the models", side=side)
    h.run([h.message("uploads", up(0))])
    assert seen == [("the models", side, h.settings)]


def test_event_of_a_hand_built_record():
    ev = Event("uploads", {"event_id": "e", "event_time": T})
    assert (ev.partition, ev.offset, ev.event_time_ms, ev.event_id) == (None, None, T, "e")


# ------------------------------------------------------------------------------ applying state


def test_apply_state_writes_sets_and_deletes_into_the_backing_tables(tmp_path):
    backing = {"counts": {"a": 1, "b": 2}}
    runner = AgentRunner(COUNTER, lambda topic: None, config=settings_for(tmp_path),
                         tables=backing)
    assert set(backing) == {"counts", POSITIONS_TABLE}  # the runner adds its missing tables
    runner.apply_state([(StateSet("counts", "a", 10), None), (StateDelete("counts", "b"), None),
                        (StateDelete("counts", "never"), None),
                        (StateSet(POSITIONS_TABLE, "uploads:0", 3), None),
                        (StateSet("counts", "c", {"nested": [1]}), None)])
    assert backing == {"counts": {"a": 10, "c": {"nested": [1]}},
                       POSITIONS_TABLE: {"uploads:0": 3}}


def test_held_state_is_read_by_the_next_batch_until_released(tmp_path):
    """The binding runs batch N + 1 while batch N is still being written: N's state changes are
    held in the runner (``hold``), read by N + 1 (positions included, so a re-delivered event of
    N is skipped), and dropped by ``release`` once the tables have them, except keys a later
    batch changed; ``discard_held`` drops everything (a failed write)."""
    h = Harness(COUNTER, tmp_path)
    first = [h.message("uploads", up(0)), h.message("uploads", up(1, creator="c2", caption="forget"))]
    out1 = h.run(first, apply=False)
    h.runner.hold(out1.state, 1)
    out2 = h.run([h.message("uploads", up(2)), h.message("uploads", up(3, creator="c3"))], apply=False)
    assert counts_written(out2) == [2, 1]            # read c1 = 1 from the held batch
    assert h.table("counts") == {}                  # nothing reached the backing table
    assert h.run(first, apply=False).skipped == 2     # batch 1's positions are held too
    h.runner.hold(out2.state, 2)
    h.runner.apply_state(out1.state)                # the binding wrote batch 1 ...
    h.runner.release(1)                             # ... and releases it
    out3 = h.run([h.message("uploads", up(4)), h.message("uploads", up(5, creator="c3"))], apply=False)
    assert counts_written(out3) == [3, 2]            # batch 2's values, still held, win
    h.runner.discard_held()                         # batch 2's write failed
    out4 = h.run([h.message("uploads", up(6, creator="c3"))], apply=False)
    assert counts_written(out4) == [1]               # only what the tables have

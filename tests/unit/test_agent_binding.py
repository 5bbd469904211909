"""Tier 2: Pulse's Faust binding of an agent, run with Faust's ``test_context`` (no broker).

Raw bytes go in through the agent's channel; the binding runs them through the agent's
AgentRunner (decode, ``process(state, event, ctx)``, dead letters for what it cannot decode),
hands emits to the producer (mocked: no broker here) and acknowledges the batch.
"""
from __future__ import annotations

import asyncio
import json
from streams.contracts.agent import AgentSpec
from streams.runtime.app import create_app
from streams.runtime.engine import RawMessage
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, StateDelete, StateSet
from streams.contracts.schemas import default_catalog
from streams.settings import Settings

from tests.unit.test_materializer import upload


def test_binding_decodes_processes_emits_and_dead_letters(tmp_path):
    seen = []

    def process(state, event, ctx):
        seen.append((event.topic, event.record["post_id"]))
        return [Emit("uploads-copy", event.record)]

    spec = AgentSpec(name="probe", topics=("uploads",), process=process, outputs=("uploads-copy",),
                     topic_schemas={"uploads-copy": "Upload"})
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app, ctx = create_app(settings, [spec])
    sent = []

    class RecordingEmitter:  # no broker in this tier: capture what the binding produces
        async def send_many(self, topic, items):
            sent.extend((topic, key, value) for key, value in items)

    ctx.emitter = RecordingEmitter()
    codec = AvroCodec(default_catalog(), "Upload")
    good = [codec.encode(upload(post_id=f"p{i}")) for i in range(3)]

    async def run():
        # the binding drains its channel itself, so the test wrapper's "wait for a yielded
        # value" does not apply: put without waiting, then wait for the runtime's counters
        async with app.agents["probe"].test_context() as test_agent:
            for value in (good[0], b"not avro at all", good[1], good[2]):
                await test_agent.put(value, key=b"k", wait=False)
            for _ in range(500):
                if ctx.counters["events"] >= 4:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert seen == [("uploads", "p0"), ("uploads", "p1"), ("uploads", "p2")]
    topics = [topic for topic, _, _ in sent]
    assert topics.count("uploads-copy") == 3 and topics.count("dead-letters") == 1
    assert ctx.counters == {"events": 4, "dead_letters": 1, "emitted": 3, "rows": 0, "skipped": 0}
    dead = next(value for topic, _, value in sent if topic == "dead-letters")
    letter = AvroCodec(default_catalog(), "DeadLetter").decode(dead)
    assert letter["value"] == b"not avro at all" and letter["consumer"] == "probe"
    assert letter["reason"]
    copy = next(value for topic, _, value in sent if topic == "uploads-copy")
    assert codec.decode(copy)["post_id"] == "p0"



def test_a_stateful_agent_sends_emits_before_it_writes_state(tmp_path, monkeypatch):
    """The binding's order (streams.runtime.binding.bind): nothing is sent before the batch is
    processed; the binding waits for the emits' delivery before it writes the state that says
    "applied", then for the delivery of every changelog record that state write sent (one per
    state change and one per position); the crash-point hook sees each step; state and positions
    land in the agent's Faust tables and carry over to the next batch."""
    import streams.runtime.binding as binding

    def process(state, event, ctx):
        key = event.record["creator_id"]
        n = state.get("counts", key, 0) + 1
        return [StateSet("counts", key, n), Emit("uploads-copy", dict(event.record, caption=str(n)))]

    spec = AgentSpec(name="counter", topics=("uploads",), process=process, tables=("counts",),
                     outputs=("uploads-copy",), topic_schemas={"uploads-copy": "Upload"})
    sent, steps = [], []
    tables = {}

    class RecordingCrash:  # PULSE_CRASH_POINT's hook: record what each step has done so far
        @classmethod
        def parse(cls, raw):
            return cls()

        def reached(self, agent, point):
            steps.append((point, len(sent), dict(tables["counts"]), dict(tables["__positions__"])))

        def loses(self, agent):
            return False

    monkeypatch.setattr(binding, "CrashPoints", RecordingCrash)
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app, ctx = create_app(settings, [spec])
    tables.update(ctx.tables["counter"])

    changelog = []

    class RecordingEmitter:
        async def send_many(self, topic, items):
            items = list(items)
            sent.extend((topic, key, value) for key, value in items)
            return [f"emit-future-{len(sent)}"]

        async def send_to_partition(self, topic, partition, items):
            items = list(items)
            changelog.extend((topic, partition, key, value) for key, value in items)
            return [f"changelog-future-{len(changelog)}-{i}" for i in range(len(items))]

    async def delivered(app_, futures):  # no broker: record what the binding waits for
        steps.append(("delivered", len(sent), list(futures)))

    ctx.emitter = RecordingEmitter()
    monkeypatch.setattr(binding, "delivered", delivered)
    codec = AvroCodec(default_catalog(), "Upload")

    async def run():
        async with app.agents["counter"].test_context() as test_agent:
            for i in range(3):
                await test_agent.put(codec.encode(upload(post_id=f"p{i}")), key=b"k", wait=False)
                await asyncio.sleep(0.05)  # most likely one batch each
            for _ in range(500):
                if ctx.counters["events"] >= 3:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert ctx.counters == {"events": 3, "dead_letters": 0, "emitted": 3, "rows": 0, "skipped": 0}
    assert [codec.decode(v)["caption"] for _, _, v in sent] == ["1", "2", "3"]  # state carried over
    assert dict(tables["counts"]) == {"u1": 3}
    assert dict(tables["__positions__"]) == {"uploads:0": 3}
    points = [s[0] for s in steps]
    assert points[:7] == ["after-process", "after-sinks", "delivered", "after-emits", "delivered",
                          "delivered", "after-state"]
    after_process, after_sinks, emits, after_emits, state_wait, positions_wait, after_state = steps[:7]
    assert after_process[1:] == after_sinks[1:] == (0, {}, {})      # nothing sent or written
    n = after_emits[1]
    assert emits[1:] == (n, [f"emit-future-{n}"])                   # waited for the emits' futures
    assert n >= 1 and after_emits[2:] == ({}, {})                   # sent, state not yet written
    assert after_state[1] == n and after_state[2] == {"u1": n} and after_state[3] == {"uploads:0": n}
    # one changelog record per key the batch changed (its last value) and one per position, on
    # the cause's partition, with the table's JSON key and value, each one's future waited for:
    # the state's first, and the positions' sent only after that wait (a crash in between must
    # not leave positions whose state did not land)
    assert len(state_wait[2]) == 1 and len(positions_wait[2]) == 1
    state_sent = {f for f in state_wait[2]}
    assert all(f.startswith("changelog-future-") for f in state_sent | set(positions_wait[2]))
    assert max(int(f.split("-")[2]) for f in state_sent) < min(int(f.split("-")[2])
                                                               for f in positions_wait[2])
    state_records = [r for r in changelog if r[0] == "pulse-counter-counts-changelog"]
    position_records = [r for r in changelog if r[0] == "pulse-counter-positions-changelog"]
    counts = [json.loads(v) for _, p, k, v in state_records if p == 0 and json.loads(k) == "u1"]
    assert counts[0] == n and counts[-1] == 3 and counts == sorted(set(counts))
    assert [json.loads(v) for _, _, k, v in position_records][-1] == 3


def test_a_batch_sends_each_key_s_last_change_once_per_changelog_partition(tmp_path, monkeypatch):
    """``_write_state``: of a batch's changes to one key only the last goes to the changelog
    (compacted and restored whole: the earlier ones would never be read), per changelog
    partition (a key changed by events of two partitions keeps a record in each), in the
    order of those last changes; deletes are tombstones; the in-memory tables end as if every
    change had been applied."""
    import streams.runtime.binding as binding

    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app, ctx = create_app(settings, [counter_spec(batch_size=10)])
    tables = ctx.tables["counter"]
    changelog, waits = [], []

    class RecordingEmitter:
        async def send_to_partition(self, topic, partition, items):
            changelog.extend((topic, partition, json.loads(k), v and json.loads(v)) for k, v in items)
            return [topic]

    async def delivered(app_, futures):
        waits.append(list(futures))

    monkeypatch.setattr(binding, "delivered", delivered)
    ctx.emitter = RecordingEmitter()
    cause = lambda p: RawMessage("uploads", p, 0, None, b"", ())  # noqa: E731
    pos = "__positions__"
    changes = [(StateSet("counts", "a", 1), cause(0)), (StateSet(pos, "uploads:0", 1), cause(0)),
               (StateSet("counts", "b", 1), cause(0)), (StateSet(pos, "uploads:0", 2), cause(0)),
               (StateSet("counts", "a", 2), cause(0)), (StateSet(pos, "uploads:0", 3), cause(0)),
               (StateSet("counts", "a", 9), cause(1)), (StateSet(pos, "uploads:1", 1), cause(1)),
               (StateDelete("counts", "b"), cause(0)), (StateSet(pos, "uploads:0", 4), cause(0))]
    asyncio.run(binding._write_state(ctx, app, tables, changes))
    state = "pulse-counter-counts-changelog"
    positions = "pulse-counter-positions-changelog"
    assert changelog == [(state, 0, "a", 2), (state, 0, "b", None), (state, 1, "a", 9),
                         (positions, 1, "uploads:1", 1), (positions, 0, "uploads:0", 4)]
    assert waits == [[state, state], [positions, positions]]        # state first, then positions
    assert dict(tables["counts"]) == {"a": 9}  # partition 1's change came last in the batch
    assert dict(tables[pos]) == {"uploads:0": 4, "uploads:1": 1}


def count_and_copy(state, event, ctx):
    """Counts uploads per creator and emits a copy captioned with the count."""
    key = event.record["creator_id"]
    n = state.get("counts", key, 0) + 1
    return [StateSet("counts", key, n), Emit("uploads-copy", dict(event.record, caption=str(n)))]


def counter_spec(**kw) -> AgentSpec:
    return AgentSpec(name="counter", topics=("uploads",), process=count_and_copy, tables=("counts",),
                     outputs=("uploads-copy",), topic_schemas={"uploads-copy": "Upload"}, **kw)


class ValueEmitter:
    """No broker in this tier: keeps the emitted values; every send answers a named future."""

    def __init__(self):
        self.sent = []

    async def send_many(self, topic, items):
        self.sent.extend(value for _, value in items)
        return ["emit"]

    async def send_to_partition(self, topic, partition, items):
        return [f"changelog:{topic}"]


async def put_uploads(test_agent, codec, n: int) -> None:
    """Put ``n`` uploads of user u1 (posts p0..) on a Faust test agent without waiting."""
    for i in range(n):
        await test_agent.put(codec.encode(upload(post_id=f"p{i}")), key=b"k", wait=False)


async def until(condition, tries: int = 300) -> None:
    """Poll ``condition`` every 10 ms, at most ``tries`` times."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.01)


def test_the_next_batch_is_processed_and_sent_while_the_previous_one_writes_its_state(tmp_path,
                                                                                     monkeypatch):
    """Pipelining (streams.runtime.binding.bind): while batch 1 waits for its changelog records,
    batch 2 is processed, reading the state batch 1 left (held in the runner), and its rows and
    emits go out; its own state is written only after batch 1's, and every event is
    acknowledged once."""
    import streams.runtime.binding as binding

    spec = counter_spec(batch_size=1)
    steps = []

    class RecordingCrash:
        @classmethod
        def parse(cls, raw):
            return cls()

        def reached(self, agent, point):
            steps.append(point)

        def loses(self, agent):
            return False

    monkeypatch.setattr(binding, "CrashPoints", RecordingCrash)
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app, ctx = create_app(settings, [spec])
    release = []
    ctx.emitter = emitter = ValueEmitter()
    sent = emitter.sent

    async def delivered(app_, futures):
        if futures and set(futures) == {"changelog:pulse-counter-counts-changelog"}:
            # the state table's records: hold the write until the test lets go
            steps.append("changelog-wait")
            gate = asyncio.Event()
            release.append(gate)
            await gate.wait()

    monkeypatch.setattr(binding, "delivered", delivered)
    codec = AvroCodec(default_catalog(), "Upload")

    async def run():
        async with app.agents["counter"].test_context() as test_agent:
            await put_uploads(test_agent, codec, 2)
            await until(lambda: steps.count("after-emits") == 2)
            await asyncio.sleep(0.05)  # room for a state write that must not start
            # batch 2 processed and its emits sent while batch 1 waits on its changelog; batch
            # 2's state waits for batch 1's
            assert steps == ["after-process", "after-sinks", "after-emits", "changelog-wait",
                             "after-process", "after-sinks", "after-emits"]
            assert [codec.decode(v)["caption"] for v in sent] == ["1", "2"]  # read batch 1's state
            assert ctx.counters["events"] == 0
            release[0].set()
            await until(lambda: len(release) == 2)
            release[1].set()
            await until(lambda: ctx.counters["events"] >= 2)

    asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert steps[7:] == ["after-state", "changelog-wait", "after-state"]
    assert ctx.counters["events"] == 2 and dict(ctx.tables["counter"]["counts"]) == {"u1": 2}
    assert ctx.runners["counter"]._unwritten == {}                     # both released


def test_a_failed_state_write_stops_the_next_batch_before_its_state(tmp_path, monkeypatch):
    """Batch 1's changelog write fails while batch 2's emits are out: batch 2's state is never
    written and neither batch is acknowledged (both re-delivered, as after a crash), and the
    state held for them is dropped."""
    import streams.runtime.binding as binding
    from streams.runtime.binding import DeliveryError

    spec = counter_spec(batch_size=1)
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app, ctx = create_app(settings, [spec])
    ctx.emitter = emitter = ValueEmitter()
    changelog_writes, gate = [], asyncio.Event()

    async def delivered(app_, futures):
        if futures and set(futures) == {"changelog:pulse-counter-counts-changelog"}:
            changelog_writes.append(1)
            await gate.wait()
            raise DeliveryError("the broker refused the changelog batch")

    monkeypatch.setattr(binding, "delivered", delivered)
    codec = AvroCodec(default_catalog(), "Upload")

    async def run():
        async with app.agents["counter"].test_context() as test_agent:
            await put_uploads(test_agent, codec, 2)
            await until(lambda: len(emitter.sent) == 2)
            gate.set()
            await asyncio.sleep(0.2)

    asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert len(emitter.sent) == 2            # batch 2's emits went out during batch 1's state
    assert changelog_writes == [1]           # batch 2's state was never written
    assert ctx.counters["events"] == 0       # nothing acknowledged
    assert ctx.runners["counter"]._unwritten == {}


def test_events_past_a_gap_are_held_back_unacknowledged_and_the_partition_sought_back(tmp_path,
                                                                                       monkeypatch):
    """A batch lost inside the worker (offsets 2-3 never reach the agent): the binding must not
    apply offset 4, whose position would make a later re-delivery skip 2-3 for good. It leaves
    4 unacknowledged, asks the consumer to seek the partition back to 2 once, and applies 2, 3
    and 4 in order when they come again."""
    import streams.runtime.binding as binding

    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app, ctx = create_app(settings, [counter_spec(batch_size=1)])
    seeks = []
    ctx.emitter = emitter = ValueEmitter()
    sent = emitter.sent

    async def delivered(app_, futures):
        pass

    monkeypatch.setattr(binding, "delivered", delivered)
    consumer = app.consumer
    monkeypatch.setattr(consumer, "rewind_to", lambda tp, offset: seeks.append((tp, offset)) or True,
                        raising=False)
    codec = AvroCodec(default_catalog(), "Upload")
    events = {}

    async def put(agent, offset):
        agent.sent_offset = offset
        events[offset] = await agent.put(codec.encode(upload(post_id=f"p{offset}")), key=b"k",
                                         wait=False)

    async def until(cond):
        for _ in range(300):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    async def run():
        async with app.agents["counter"].test_context() as test_agent:
            for offset in (0, 1, 4):
                await put(test_agent, offset)
            await until(lambda: seeks)
            await asyncio.sleep(0.1)
            first = {o: e.message.acked for o, e in events.items()}
            for offset in (2, 3, 4):  # what the seek delivers again
                await put(test_agent, offset)
            await until(lambda: ctx.counters["events"] >= 5)
            return first

    first = asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert first == {0: True, 1: True, 4: False}
    assert [(tp.topic, tp.partition, offset) for tp, offset in seeks] == [("uploads", 0, 2)]
    assert [codec.decode(v)["caption"] for v in sent] == ["1", "2", "3", "4", "5"]
    assert events[4].message.acked  # the second delivery of offset 4
    assert dict(ctx.tables["counter"]["__positions__"]) == {"uploads:0": 5}


class _Event:  # what the binding acknowledges: a Faust event's ack()
    def __init__(self):
        self.acked = 0

    def ack(self):
        self.acked += 1


def test_delivered_waits_for_every_send_and_raises_on_a_failed_one():
    import pytest

    from streams.runtime.binding import DeliveryError, delivered

    async def run():
        loop = asyncio.get_running_loop()
        ok = [loop.create_future() for _ in range(3)]
        waiting = asyncio.ensure_future(delivered(None, ok))
        await asyncio.sleep(0.01)
        assert not waiting.done()                  # not before the last future resolves
        for f in ok:
            f.set_result("metadata")
        await asyncio.wait_for(waiting, 1)
        bad = [loop.create_future(), loop.create_future()]
        bad[0].set_result("metadata")
        bad[1].set_exception(OSError("NOT_ENOUGH_REPLICAS"))
        with pytest.raises(DeliveryError, match="NOT_ENOUGH_REPLICAS"):
            await delivered(None, bad)
        await delivered(None, [])                  # nothing sent: nothing to wait for

    asyncio.run(run())


def test_a_stateless_batch_is_acknowledged_only_once_its_emits_are_delivered():
    from streams.runtime.binding import DeliveryError, ack_when_delivered

    async def run():
        loop = asyncio.get_running_loop()
        failed = []
        events = [_Event(), _Event()]
        futures = [loop.create_future(), loop.create_future()]
        ack_when_delivered(events, futures, failed)
        futures[0].set_result("metadata")
        await asyncio.sleep(0.01)
        assert [e.acked for e in events] == [0, 0]  # one send still in flight
        futures[1].set_result("metadata")
        await asyncio.sleep(0.01)
        assert [e.acked for e in events] == [1, 1] and failed == []

        lost = [_Event()]
        future = loop.create_future()
        ack_when_delivered(lost, [future], failed)
        future.set_exception(OSError("MESSAGE_TOO_LARGE"))
        await asyncio.sleep(0.01)
        assert lost[0].acked == 0 and len(failed) == 1 and isinstance(failed[0], DeliveryError)

        nothing_sent = [_Event()]
        ack_when_delivered(nothing_sent, [], failed)
        assert nothing_sent[0].acked == 1        # at once

    asyncio.run(run())


def test_a_batch_is_retried_while_the_key_store_is_down(monkeypatch):
    """KeyUnavailable fails the whole batch (streams.runtime.engine): the binding runs it again
    after a back-off, so the partition waits instead of losing the batch."""
    import streams.runtime.binding as binding
    from streams.contracts.personal import KeyUnavailable

    monkeypatch.setattr(binding, "RETRY_FIRST_S", 0.01)
    attempts = []

    class FlakyContext:
        runners = {"probe": object()}

        def run_batch(self, spec, messages):
            attempts.append(list(messages))
            if len(attempts) < 3:
                raise KeyUnavailable("key store unreachable")
            return "output"

    spec = AgentSpec(name="probe", topics=("uploads",), process=lambda s, e, c: [])
    out = asyncio.run(binding.process_with_retry(FlakyContext(), spec, ["m1", "m2"]))
    assert out == "output" and attempts == [["m1", "m2"]] * 3

"""Tier 2: Pulse's Faust binding of an agent, run with Faust's ``test_context`` (no broker).

Raw bytes go in through the agent's channel; the binding runs them through the agent's
AgentRunner (decode, ``process(state, event, ctx)``, dead letters for what it cannot decode),
hands emits to the producer (mocked: no broker here) and acknowledges the batch.
"""
from __future__ import annotations

import asyncio
from streams.contracts.agent import AgentSpec
from streams.runtime.app import create_app
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit, StateSet
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
    processed; emits are sent and flushed before the state that says "applied" is written; the
    crash-point hook sees each step; state and positions land in the agent's Faust tables and
    carry over to the next batch."""
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

    monkeypatch.setattr(binding, "CrashPoints", RecordingCrash)
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app, ctx = create_app(settings, [spec])
    tables.update(ctx.tables["counter"])

    class RecordingEmitter:
        async def send_many(self, topic, items):
            sent.extend((topic, key, value) for key, value in items)

    async def flush():  # no broker: record when the binding flushes the producer
        steps.append(("flush", len(sent)))

    ctx.emitter = RecordingEmitter()
    monkeypatch.setattr(app.producer, "flush", flush)
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
    assert points[:6] == ["after-process", "after-sinks", "flush", "after-emits", "flush",
                          "after-state"]
    after_process, after_sinks, _, after_emits, _, after_state = steps[:6]
    assert after_process[1:] == after_sinks[1:] == (0, {}, {})      # nothing sent or written
    n = after_emits[1]
    assert n >= 1 and after_emits[2:] == ({}, {})                   # sent, state not yet written
    assert after_state[1] == n and after_state[2] == {"u1": n} and after_state[3] == {"uploads:0": n}

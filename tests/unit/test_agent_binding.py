"""Tier 2: Pulse's Faust binding of an agent, run with Faust's ``test_context`` (no broker).

Raw bytes go in through the agent's channel; the binding decodes them, calls ``process``,
dead-letters what it cannot decode, hands emits to the producer (mocked: no broker here) and
acknowledges the batch.
"""
from __future__ import annotations

import asyncio
from streams.contracts.agent import AgentSpec
from streams.runtime.app import create_app
from streams.contracts.codec import AvroCodec
from streams.contracts.effects import Emit
from streams.contracts.schemas import default_catalog
from streams.settings import Settings

from tests.unit.test_materializer import upload


def test_binding_decodes_processes_emits_and_dead_letters(tmp_path):
    seen = []

    def process(topic, record):
        seen.append((topic, record["post_id"]))
        return [Emit("uploads-copy", record)]

    spec = AgentSpec(name="probe", topics=("uploads",), process=process,
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
    assert ctx.counters == {"events": 4, "dead_letters": 1, "emitted": 3, "rows": 0}
    dead = next(value for topic, _, value in sent if topic == "dead-letters")
    letter = AvroCodec(default_catalog(), "DeadLetter").decode(dead)
    assert letter["value"] == b"not avro at all" and letter["consumer"] == "probe"
    assert letter["reason"]
    copy = next(value for topic, _, value in sent if topic == "uploads-copy")
    assert codec.decode(copy)["post_id"] == "p0"

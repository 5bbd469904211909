"""Tier 2: Pulse's Faust binding of an agent, run with Faust's ``test_context`` (no broker).

Raw bytes go in through the agent's channel; the binding decodes them, calls ``process``,
dead-letters what it cannot decode, hands emits to the producer (mocked: no broker here) and
acknowledges the batch.
"""
from __future__ import annotations

import asyncio
from unittest.mock import AsyncMock

from agents.base import AgentSpec
from streams.app import create_app
from streams.codec import AvroCodec
from streams.effects import Emit
from streams.schemas import default_catalog
from streams.settings import Settings

from .test_materializer import upload


def test_binding_decodes_processes_emits_and_dead_letters(tmp_path):
    seen = []

    def process(topic, record):
        seen.append((topic, record["post_id"]))
        return [Emit("uploads-copy", record)]

    spec = AgentSpec(name="probe", topics=("uploads",), process=process,
                     topic_schemas={"uploads-copy": "Upload"})
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app, ctx = create_app(settings, [spec])
    sent = AsyncMock()
    app.producer.send = sent  # no broker in this tier: capture what the binding produces
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
    topics = [call.args[0] for call in sent.await_args_list]
    assert topics.count("uploads-copy") == 3 and topics.count("dead-letters") == 1
    assert ctx.counters == {"events": 4, "dead_letters": 1, "emitted": 3, "rows": 0}
    dead = next(c for c in sent.await_args_list if c.args[0] == "dead-letters")
    letter = AvroCodec(default_catalog(), "DeadLetter").decode(dead.args[2])
    assert letter["value"] == b"not avro at all" and letter["consumer"] == "probe"
    assert letter["reason"]
    copy = next(c for c in sent.await_args_list if c.args[0] == "uploads-copy")
    assert codec.decode(copy.args[2])["post_id"] == "p0"

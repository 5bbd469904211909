"""The event codecs registered as Faust codecs, and what Faust does with a CodecError.

faust-streaming 0.15.3 wraps any exception from a value codec's ``loads`` as
``faust.exceptions.ValueDecodeError(str(exc))`` raised ``from`` it (serializers/registry.py).
In a worker, the conductor then acks the message and throws the error into the channel, so the
agent's ``async for`` raises it and the actor crashes (and is restarted by its supervisor); the
message is not redelivered. The last test shows the agent side with ``test_context``.
"""
from __future__ import annotations

import asyncio
import uuid

import faust
import pytest
from faust.exceptions import ValueDecodeError
from faust.serializers import codecs as faust_codecs

from streams.contracts.codec import AvroCodec, CodecError, faust_codec_name, register_faust_codecs
from streams.contracts.schemas import default_catalog

CATALOG = default_catalog()
REGISTERED = register_faust_codecs(CATALOG)


def follow() -> dict:
    return {"event_id": str(uuid.uuid4()), "event_time": 1_700_000_000_000, "producer": "web-app",
            "follower_id": "u1", "followee_id": "u2", "action": "FOLLOW"}


def test_one_codec_per_event_type_named_pulse_snake_name():
    assert set(REGISTERED) == {f"pulse.{et.snake_name}" for et in CATALOG}
    assert faust_codec_name(CATALOG.event_type("UserSignup")) == "pulse.user_signup"
    for name, codec in REGISTERED.items():
        assert faust_codecs.get_codec(name) is codec


def test_faust_dumps_and_loads_by_codec_name_use_single_object_encoding():
    data = faust_codecs.dumps("pulse.follow", follow())
    assert data[:2] == b"\xc3\x01"
    assert faust_codecs.loads("pulse.follow", data)["followee_id"] == "u2"
    assert AvroCodec(CATALOG, "follow").decode(data)["action"] == "FOLLOW"


def test_invalid_records_fail_on_dumps():
    with pytest.raises(CodecError, match="field 'action'"):
        faust_codecs.dumps("pulse.follow", {**follow(), "action": "BLOCK"})


def test_faust_wraps_codec_errors_as_value_decode_error():
    app = faust.App("pulse-codec-test", store="memory://", autodiscover=False)
    with pytest.raises(ValueDecodeError, match=r"bad single-object marker b'\\x00\\x01'") as info:
        app.serializers.loads_value(None, b"\x00\x01garbage", serializer="pulse.follow")
    assert isinstance(info.value.__cause__, CodecError)


def test_an_agent_sees_value_decode_error_in_its_stream():
    app = faust.App("pulse-codec-test-agent", store="memory://", autodiscover=False)
    topic = app.topic("follows", value_serializer="pulse.follow")

    @app.agent(topic)
    async def followees(stream):
        async for event in stream:
            yield event["followee_id"]

    async def scenario():
        good = AvroCodec(CATALOG, "follow").encode(follow())
        async with followees.test_context(channel=app.topic("follows", value_serializer="pulse.follow")) as agent:
            await agent.put(good)
            assert agent.results == {0: "u2"}
            with pytest.raises(ValueDecodeError, match="unknown schema fingerprint"):
                await agent.put(b"\xc3\x01" + bytes(8) + b"\x00")

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))

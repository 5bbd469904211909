"""Pass-through agent: decode, validate, re-emit. The runtime's own overhead, measured by
``pulse bench backbone`` against a plain confluent-kafka consume-produce loop.
"""
from __future__ import annotations

from streams.contracts.effects import Effect, Emit

from streams.contracts.agent import AgentSpec, Context, Event, State


def make_spec(source: str, sink: str, schema: str, batch_size: int = 1000) -> AgentSpec:
    """A pass-through agent re-emitting every ``schema`` event of ``source`` to ``sink``."""

    def process(state: State, event: Event, ctx: Context) -> list[Effect]:
        return [Emit(sink, event.record)]

    return AgentSpec(name="passthrough", topics=(source,), process=process, outputs=(sink,),
                     doc="Re-emits every event unchanged (benchmark baseline of the runtime).",
                     batch_size=batch_size, topic_schemas={source: schema, sink: schema})

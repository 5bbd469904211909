"""Helpers for unit tests that run agents the way the worker and replay do: through an
:class:`~streams.runtime.engine.AgentRunner` over encoded messages, or through ``spec.process``
directly with a dict-backed state. No broker, no store."""
from __future__ import annotations

import uuid
from typing import Any, Iterable

from streams.contracts.agent import AgentSpec, Context, Event, ms_of
from streams.contracts.effects import STATE_EFFECTS, StateDelete
from streams.contracts.schemas import default_catalog
from streams.contracts.topics import topic_catalog
from streams.runtime.binding import RuntimeContext
from streams.runtime.engine import AgentRunner, RawMessage
from streams.settings import Settings
from tests.media_roots import TEST_MEDIA_READ_ROOTS, TEST_MEDIA_ROOTS


def settings_for(tmp_path, **env: str) -> Settings:
    """Settings of an empty ``PULSE_HOME`` (nothing configured, no servers; media readable from
    :data:`TEST_MEDIA_READ_ROOTS` unless ``PULSE_MEDIA_READ_ROOTS`` is given)."""
    return Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_MEDIA_READ_ROOTS": TEST_MEDIA_READ_ROOTS,
                              **env})


def media_roots_for_tests():
    """The :class:`~agents.shared.media.MediaRoots` of :data:`TEST_MEDIA_READ_ROOTS` (no store)."""
    from streams.contracts.media import MediaRoots

    return MediaRoots(None, TEST_MEDIA_ROOTS)


class Harness:
    """One agent's :class:`AgentRunner` with the worker's codecs (``RuntimeContext.codec``) and
    dict tables; ``feed`` encodes records into messages with increasing offsets."""

    def __init__(self, spec: AgentSpec, tmp_path, *, models: Any = None, tables=None, side=None,
                 **env: str):
        self.settings = settings_for(tmp_path, **env)
        self.rctx = RuntimeContext(self.settings, extra_schemas=dict(spec.topic_schemas))
        if models is None:
            models = spec.load(self.settings)
        self.runner = AgentRunner(spec, self.codec, config=self.settings, models=models,
                                  tables=tables, side=side)
        self.offsets: dict[tuple[str, int], int] = {}

    def codec(self, topic: str):
        return self.rctx.codec(topic)

    def message(self, topic: str, record_or_bytes, *, partition: int = 0,
                offset: int | None = None, key: bytes | None = None) -> RawMessage:
        """A consumed message: ``record_or_bytes`` encoded with ``topic``'s codec (bytes as is)."""
        if offset is None:
            offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        value = (record_or_bytes if isinstance(record_or_bytes, (bytes, type(None)))
                 else self.codec(topic).encode(record_or_bytes))
        return RawMessage(topic, partition, offset, key, value)

    def run(self, messages, apply: bool = True):
        """Run one batch; apply its state changes to the tables (as the binding and replay do)."""
        out = self.runner.run(messages)
        if apply:
            self.runner.apply_state(out.state)
        return out

    def feed(self, *events: tuple[str, dict], apply: bool = True):
        """Encode ``(topic, record)`` pairs and run them as one batch."""
        return self.run([self.message(t, r) for t, r in events], apply=apply)

    def decode(self, encoded) -> dict:
        """An :class:`~streams.runtime.engine.Encoded` emit or dead letter, decoded."""
        return self.codec(encoded.topic).decode(encoded.value)

    def table(self, name: str) -> dict:
        return self.runner.tables[name]


class DictState:
    """A :class:`~streams.contracts.agent.State` over plain dicts, for calling ``process``
    directly; ``apply`` folds an effect list's state changes in."""

    def __init__(self, *tables: str):
        self.tables: dict[str, dict] = {t: {} for t in tables}

    def get(self, table: str, key: str, default: Any = None) -> Any:
        value = self.tables[table].get(key)
        return default if value is None else value

    def apply(self, effects: Iterable[Any]) -> list:
        """Apply the state changes of ``effects``; return the other effects."""
        rest = []
        for e in effects:
            if isinstance(e, STATE_EFFECTS):
                if isinstance(e, StateDelete):
                    self.tables[e.table].pop(e.key, None)
                else:
                    self.tables[e.table][e.key] = e.value
            else:
                rest.append(e)
        return rest


def context_for(agent: str, record: dict, models: Any = None, side=None, config=None) -> Context:
    """The :class:`Context` the runner would build for ``record``."""
    return Context(agent=agent, event_id=record["event_id"],
                   event_time_ms=ms_of(record["event_time"]), models=models, side=side or {},
                   config=config)


def call(spec: AgentSpec, state, topic: str, record: dict, models: Any = None) -> list:
    """``spec.process(state, Event(topic, record), ctx)`` as the runner calls it."""
    return list(spec.process(state, Event(topic, record), context_for(spec.name, record, models)))


def full_record(topic: str, **fields: Any) -> dict:
    """A valid record of ``topic``'s current event type: ``fields``, and for every other field
    its schema default, else a placeholder of its type (enums: the first symbol)."""
    schema = default_catalog().current(topic_catalog()[topic].schema).schema
    rec = {}
    for f in schema["fields"]:
        name = f["name"]
        if name in fields:
            rec[name] = fields[name]
        elif "default" in f:
            rec[name] = f["default"]
        else:
            rec[name] = _placeholder(name, f["type"])
    unknown = set(fields) - set(rec)
    if unknown:
        raise KeyError(f"{topic}: no fields {sorted(unknown)}")
    return rec


def _placeholder(name: str, avro: Any) -> Any:
    if isinstance(avro, list):
        return None if "null" in avro else _placeholder(name, avro[0])
    if isinstance(avro, dict):
        t = avro["type"]
        if avro.get("logicalType") == "uuid" or name.endswith("event_id"):
            return str(uuid.uuid4())
        if avro.get("logicalType") == "timestamp-millis":
            return 1_700_000_000_000
        if t == "enum":
            return avro["symbols"][0]
        if t == "array":
            return []
        if t == "map":
            return {}
        if t == "record":
            return {f["name"]: _placeholder(f["name"], f["type"]) for f in avro["fields"]}
        return _placeholder(name, t)
    return {"string": name, "long": 0, "int": 0, "double": 0.0, "float": 0.0, "boolean": False,
            "bytes": b"", "null": None}[avro]

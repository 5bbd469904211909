"""The SDK upstream apps publish with: validate against the topic's schema, encode, produce.

>>> with Publisher(Settings.from_env()) as pub:          # doctest: +SKIP
...     pub.publish("follows", {"follower_id": "u1", "followee_id": "u2", "action": "FOLLOW"})

A producer of many events publishes them in batches with :meth:`Publisher.publish_many` (or
calls :meth:`Publisher.prepare` per batch): personal fields are sealed with their subjects' keys,
and a batch's new subjects' keys are then made together instead of one round trip each.

``event_id`` (a random UUID), ``event_time`` (now, epoch ms) and ``producer`` are filled in when a
record lacks them. Records that fail validation raise :class:`~streams.contracts.codec.CodecError` before
anything is sent; :func:`publish_jsonl` instead reports such lines and dead-letters them.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from streams.contracts.codec import CodecError, codec_for
from streams.contracts.deadletters import DEAD_LETTER_TOPIC, dead_letter
from streams.settings import Settings
from streams.contracts.topics import TopicError, require_bootstrap, topic_spec


#: librdkafka's own log lines (e.g. retried "Coordinator load in progress" warnings) go here.
LIBRDKAFKA_LOG = logging.getLogger("pulse.librdkafka")


class PublishError(RuntimeError):
    """The broker did not acknowledge some events (the message says how many and why)."""


class Publisher:
    """Validating, Avro-encoding Kafka producer (confluent-kafka) for Pulse topics.

    Parameters
    ----------
    settings:
        Where Kafka is and which wire format to use.
    producer_name:
        Goes into each event's ``producer`` field when the record has none.
    config:
        Extra librdkafka producer settings (e.g. ``{"linger.ms": 20}``).
    keys:
        The data subjects' keys that encrypt personal fields (``streams/contracts/personal.py``):
        by default :func:`streams.stores.keys.subject_keys` of ``settings`` (``None`` when
        ``PULSE_PERSONAL_DATA_ENCRYPTION`` is off); pass ``None`` to publish them as they are.
        A subject's key is made on its first personal field (one Cassandra lightweight
        transaction), then cached.
    """

    def __init__(self, settings: Settings, producer_name: str = "pulse-sdk",
                 config: dict[str, Any] | None = None, keys: Any = "from settings"):
        from confluent_kafka import Producer

        from streams.stores.keys import subject_keys

        self.settings = settings
        self.keys = subject_keys(settings) if isinstance(keys, str) else keys
        self.producer_name = producer_name
        self._codecs: dict[str, Any] = {}
        self._errors: list[str] = []
        self.sent = 0
        # murmur2_random: the Java client's and aiokafka's partitioner, so Pulse's publisher,
        # Faust agents and JVM apps put one key in the same partition (librdkafka's default,
        # consistent_random, hashes with CRC32 instead)
        conf = {"bootstrap.servers": require_bootstrap(settings), "linger.ms": 10,
                "compression.type": "lz4", "enable.idempotence": True, "acks": "all",
                "partitioner": "murmur2_random", "queue.buffering.max.messages": 1_000_000,
                "logger": LIBRDKAFKA_LOG}
        conf.update(config or {})
        self._producer = Producer(conf)

    def _codec(self, topic: str):
        c = self._codecs.get(topic)
        if c is None:
            c = self._codecs[topic] = codec_for(self.settings, topic_spec(topic).schema, topic,
                                                keys=self.keys)
        return c

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err}")

    def complete(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with ``event_id``/``event_time``/``producer`` filled in where missing;
        an ISO-8601 ``event_time`` string becomes epoch milliseconds."""
        out = dict(record)
        out.setdefault("event_id", str(uuid.uuid4()))
        out.setdefault("event_time", int(time.time() * 1000))
        out.setdefault("producer", self.producer_name)
        if isinstance(out["event_time"], str):
            try:
                out["event_time"] = int(datetime.fromisoformat(
                    out["event_time"].replace("Z", "+00:00")).timestamp() * 1000)
            except ValueError:
                raise CodecError(f"field 'event_time': {out['event_time']!r} is neither epoch "
                                 f"milliseconds nor an ISO-8601 time") from None
        return out

    def encode(self, topic: str, record: dict[str, Any]) -> tuple[bytes | None, bytes]:
        """Validate and encode ``record`` for ``topic``: ``(key, value)``.

        Raises
        ------
        TopicError
            Unknown topic.
        CodecError
            The record does not match the topic's schema (the message names the field).
        """
        spec = topic_spec(topic)
        record = self.complete(record)
        value = self._codec(topic).encode(record)
        key = record.get(spec.key)
        return (None if key is None else str(key).encode()), value

    def prepare(self, topic: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Make the data subjects' keys that encoding ``records`` on ``topic`` will need, all at
        once (:meth:`streams.contracts.personal.PersonalCodec.prepare`): a producer of many
        events about new users calls it per batch, so each new subject costs a share of a few
        round trips instead of a read and a lightweight transaction of its own, one after
        another. Optional; nothing happens for a topic without personal fields or with
        encryption off. Invalid records are left for :meth:`encode` to report.

        Raises
        ------
        TopicError
            Unknown topic.
        KeyUnavailable
            The key store cannot be reached.
        """
        topic_spec(topic)
        prepare = getattr(self._codec(topic), "prepare", None)
        if prepare is not None:
            prepare([r for r in records if isinstance(r, Mapping)])

    def prepare_events(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """:meth:`prepare` for a batch of ``(topic, record)`` of several topics (one call per
        topic); for producers that interleave topics, such as a replayed history."""
        by_topic: dict[str, list[Mapping[str, Any]]] = {}
        for topic, record in events:
            by_topic.setdefault(topic, []).append(record)
        for topic, records in by_topic.items():
            self.prepare(topic, records)

    def publish_many(self, topic: str, records: Sequence[dict[str, Any]]) -> None:
        """:meth:`prepare` then :meth:`publish` each record (stops at the first invalid one,
        raising what :meth:`encode` raises; the ones before it are enqueued)."""
        self.prepare(topic, records)
        for record in records:
            self.publish(topic, record)

    def publish(self, topic: str, record: dict[str, Any]) -> None:
        """Validate, encode and enqueue one event (asynchronous; :meth:`flush` waits)."""
        key, value = self.encode(topic, record)
        self.produce_raw(topic, key, value)

    def produce_raw(self, topic: str, key: bytes | None, value: bytes,
                    on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Enqueue already-encoded bytes (waits for queue space when librdkafka's queue is full).

        ``on_delivery(err, msg)``: called from :meth:`poll` or :meth:`flush` once the broker has
        acknowledged (``err`` None) or refused the event, instead of collecting the error for
        :meth:`flush` (the HTTP API answers each request from it)."""
        while True:
            try:
                self._producer.produce(topic, value=value, key=key,
                                       on_delivery=on_delivery or self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)
        self.sent += 1

    def poll(self, timeout_s: float) -> None:
        """Serve delivery callbacks for up to ``timeout_s`` seconds."""
        self._producer.poll(timeout_s)

    def dead_letter(self, source_topic: str, value: bytes, reason: str, error_type: str,
                    consumer: str = "pulse-publish") -> None:
        """Publish ``value`` (the original bytes) to ``dead-letters`` with ``reason``."""
        self.publish(DEAD_LETTER_TOPIC, dead_letter(
            source_topic=source_topic, value=value, reason=reason, error_type=error_type,
            consumer=consumer, producer=self.producer_name))

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every enqueued event is acknowledged.

        Raises
        ------
        PublishError
            Events remain unacknowledged after ``timeout_s`` seconds, or the broker refused some.
        """
        left = self._producer.flush(timeout_s)
        if left:
            raise PublishError(f"{left} events not acknowledged by {self.settings.kafka_bootstrap} "
                               f"after {timeout_s:.0f} s; is the broker up (`pulse status`)?")
        if self._errors:
            errors, self._errors = self._errors, []
            raise PublishError(f"{len(errors)} events were refused; first: {errors[0]}")

    def close(self) -> None:
        """Flush and release the producer (and the key store's connection)."""
        try:
            self.flush()
        finally:
            if self.keys is not None and hasattr(self.keys, "close"):
                self.keys.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


JSONL_CHUNK = 500
"""Lines :func:`publish_jsonl` parses before encoding them, so their keys are made together."""


@dataclass
class JsonlReport:
    """Outcome of :func:`publish_jsonl`: counts and ``(line number, reason)`` per bad line."""

    published: int = 0
    invalid: int = 0
    dead_lettered: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def publish_jsonl(publisher: Publisher, path: Path, topic: str,
                  on_line: Callable[[int], None] | None = None) -> JsonlReport:
    """Publish each line of a JSON Lines file as one event on ``topic``.

    Blank lines are skipped. A line that is not a JSON object, or does not validate against the
    topic's schema, is reported with its 1-based line number and reason and published to
    ``dead-letters`` with its original text as the value; the rest are published.

    Raises
    ------
    TopicError
        ``topic`` is not in the catalog (checked before reading the file).
    FileNotFoundError
        ``path`` does not exist.
    """
    topic_spec(topic)
    report = JsonlReport()

    def publish_chunk(chunk: list[tuple[int, bytes, Any]]) -> None:
        # the keys of the chunk's new subjects made together (Publisher.prepare)
        publisher.prepare(topic, [record for _, _, record in chunk])
        for n, raw, record in chunk:
            try:
                if isinstance(record, CodecError):
                    raise record
                if not isinstance(record, dict):
                    raise CodecError(f"expected a JSON object, got {type(record).__name__}")
                key, value = publisher.encode(topic, record)
            except (ValueError, CodecError) as exc:
                report.invalid += 1
                report.errors.append((n, str(exc)))
                publisher.dead_letter(topic, raw.rstrip(b"\r\n"), f"line {n}: {exc}", "CodecError")
                report.dead_lettered += 1
                continue
            publisher.produce_raw(topic, key, value)
            report.published += 1

    chunk: list[tuple[int, bytes, Any]] = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if on_line:
                on_line(n)
            if not raw.strip():
                continue
            try:
                record: Any = json.loads(raw)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                record = CodecError(f"not valid JSON: {exc}")
            chunk.append((n, raw, record))
            if len(chunk) >= JSONL_CHUNK:
                publish_chunk(chunk)
                chunk = []
    if chunk:
        publish_chunk(chunk)
    publisher.flush()
    return report


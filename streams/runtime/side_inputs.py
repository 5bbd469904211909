"""Side inputs: a topic every worker reads whole, folded into an agent's read-only side state.

As Kafka Streams does for a GlobalKTable, each worker reads every partition of the topic from the
beginning with its own group-less consumer (no offsets committed), whatever source partitions it
owns. :meth:`SideInputReader.catch_up` applies every event up to the end offsets the topic has
when it is called; the runtime calls it before each batch, so an event published before a batch
started is in the side state when the batch runs. The agent answers as of each event's time (see
:class:`streams.contracts.agent.SideState`), so a replay, which reads the whole topic first,
decides as the live run did.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable

from streams.contracts.codec import CodecError
from streams.contracts.topics import require_bootstrap
from streams.settings import Settings

log = logging.getLogger("pulse.side_inputs")


class SideInputReader:
    """Keeps ``apply`` fed with every event of ``topic`` (decoded with ``codec``).

    An undecodable event is logged with its position and skipped (it stays on the topic); an
    exception in ``apply`` likewise. Thread-safe.
    """

    def __init__(self, settings: Settings, topic: str, apply: Callable[[dict[str, Any]], None],
                 codec: Any, *, name: str = "", poll_s: float = 0.2,
                 forget: Callable[[str, int], None] | None = None):
        from confluent_kafka import Consumer

        self.topic = topic
        self.apply = apply
        #: ``forget(key, at_ms)`` for each tombstone (a null value with a key, as the eraser
        #: publishes on compacted topics) with its Kafka timestamp; tombstones are skipped
        #: without it
        self.forget = forget
        self.codec = codec
        self.name = name or topic
        config = {"bootstrap.servers": require_bootstrap(settings),
                  "group.id": f"{settings.app_id}-side-{self.name}-{uuid.uuid4()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": False}
        #: fetches continuously in the background, so a catch-up finds the new events already
        #: fetched
        self.consumer = Consumer(config)
        #: asks for end offsets only: on the fetching consumer's connection they would wait
        #: behind its outstanding fetch (up to ``fetch.wait.max.ms``, once per partition), and
        #: pausing the partitions between catch-ups instead cost about 1 s per catch-up to
        #: resume fetching (measured: librdkafka re-schedules a resumed partition's fetch
        #: slowly), about 2 s per agent hop on the upload-to-feed path
        self.offsets = Consumer(config)
        self.poll_s = poll_s
        self.applied = 0
        self._lock = threading.Lock()
        self.partitions: list[int] | None = None

    def _assign(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        md = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        if md.error is not None:
            raise RuntimeError(f"side input {self.name}: topic {self.topic!r} is not on the "
                               f"cluster ({md.error}); run `pulse topics create`")
        self.partitions = sorted(md.partitions)
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                              for p in self.partitions])

    def catch_up(self, timeout_s: float = 60.0) -> int:
        """Apply events up to the topic's current end offsets; returns how many were applied.

        The end offsets come from a second client (:attr:`offsets`), so the request never waits
        behind the fetching consumer's outstanding fetch; the consumer keeps fetching between
        calls (an idle topic costs one fetch request per ``fetch.wait.max.ms``), so the events a
        call needs are usually fetched already.
        """
        from confluent_kafka import TopicPartition

        with self._lock:
            if self.partitions is None:
                self._assign()
            tps = [TopicPartition(self.topic, p) for p in self.partitions]
            ends = {p: self.offsets.get_watermark_offsets(TopicPartition(self.topic, p),
                                                          timeout=10)[1] for p in self.partitions}
            done = 0
            deadline = time.monotonic() + timeout_s
            try:
                while True:
                    positions = {tp.partition: tp.offset for tp in self.consumer.position(tps)}
                    behind = [p for p in self.partitions
                              if ends[p] > 0 and positions.get(p, -1) < ends[p]]
                    if not behind:
                        return done
                    if time.monotonic() > deadline:
                        log.warning("side input %s: not caught up after %.0f s", self.name,
                                    timeout_s)
                        return done
                    # ask for what is missing: consume() returns once it has that many (it
                    # would otherwise wait the whole poll time for a full batch of 500)
                    missing = sum(ends[p] - max(positions.get(p, 0), 0) for p in behind)
                    for msg in self.consumer.consume(max(1, min(500, missing)), self.poll_s):
                        if msg.error() is not None:
                            continue
                        if msg.value() is None:
                            if self.forget is not None and msg.key():
                                self._forget(msg)
                            continue
                        try:
                            self.apply(self.codec.decode(msg.value()))
                            done += 1
                        except CodecError as exc:
                            log.error("side input %s: %s[%s]@%s undecodable, skipped: %s",
                                      self.name, self.topic, msg.partition(), msg.offset(), exc)
                        except Exception as exc:  # noqa: BLE001 - one bad event must not stop it
                            log.error("side input %s: %s[%s]@%s skipped: %r", self.name,
                                      self.topic, msg.partition(), msg.offset(), exc)
            finally:
                self.applied += done

    def _forget(self, msg: Any) -> None:
        try:
            self.forget(msg.key().decode("utf-8"), msg.timestamp()[1])
        except Exception as exc:  # noqa: BLE001 - one bad tombstone must not stop it
            log.error("side input %s: tombstone %s[%s]@%s skipped: %r", self.name, self.topic,
                      msg.partition(), msg.offset(), exc)

    def close(self) -> None:
        self.consumer.close()
        self.offsets.close()

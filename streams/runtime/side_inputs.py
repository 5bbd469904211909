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
                 codec: Any, *, name: str = "", poll_s: float = 0.2):
        from confluent_kafka import Consumer

        self.topic = topic
        self.apply = apply
        self.codec = codec
        self.name = name or topic
        self.consumer = Consumer({
            "bootstrap.servers": require_bootstrap(settings),
            "group.id": f"{settings.app_id}-side-{self.name}-{uuid.uuid4()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": False})
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
        self.consumer.pause([TopicPartition(self.topic, p) for p in self.partitions])

    def catch_up(self, timeout_s: float = 60.0) -> int:
        """Apply events up to the topic's current end offsets; returns how many were applied.

        Between calls the partitions are paused: with a fetch outstanding, the broker answers the
        end-offset request only after the fetch's wait (``fetch.wait.max.ms``, 500 ms), once per
        partition; paused, a call that finds nothing new costs one round trip per partition.
        """
        from confluent_kafka import TopicPartition

        with self._lock:
            if self.partitions is None:
                self._assign()
            tps = [TopicPartition(self.topic, p) for p in self.partitions]
            ends = {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                           timeout=10)[1] for p in self.partitions}
            done = 0
            deadline = time.monotonic() + timeout_s
            resumed = False
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
                    if not resumed:
                        self.consumer.resume(tps)
                        resumed = True
                    for msg in self.consumer.consume(500, self.poll_s):
                        if msg.error() is not None or msg.value() is None:
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
                self.consumer.pause(tps)

    def close(self) -> None:
        self.consumer.close()

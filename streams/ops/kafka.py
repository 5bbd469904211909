"""What the dashboard reads from Kafka itself: consumer lag, and tallies of the topics no view
aggregates (moderation verdicts, copyright verdicts, dead letters).

**Lag** (:class:`LagReader`): per consumer group, topic and partition, the committed offset
(``AdminClient.list_consumer_group_offsets``) against the end offset (``list_offsets`` latest),
in messages, and in seconds: now minus the Kafka timestamp of the first unconsumed record
(the one at the committed offset). That timestamp is read with one ``assign`` + ``poll`` for
all lagging partitions together and cached while the committed offset stays, so a group that
is stuck costs nothing after the first read and a moving one one read per partition per tick.

**Tallies** (:class:`TopicTally`): a consumer with no group reads the topic from its first
offset on and keeps counting new records at every tick (bounded work per tick), decoding each
with the topic's codec and counting by the fields the dashboard groups by. Counts are since
the start of the retained log, like a Prometheus ``_total``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from streams.contracts.topics import require_bootstrap
from streams.settings import Settings

log = logging.getLogger("pulse.ops")

#: Seconds the topics' partition lists are reused before being read again.
METADATA_TTL_S = 30.0
#: Seconds a tick may spend reading first unconsumed records / tallying a topic.
PEEK_BUDGET_S = 0.5
TALLY_BUDGET_S = 0.3
TALLY_MAX_RECORDS = 50_000


class LagReader:
    """Consumer lag of groups on their topics (module docstring). Not thread-safe: one collector
    thread calls :meth:`read`.

    ``clock``: wall clock, seconds (tests pass a fixed one).
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time):
        from confluent_kafka.admin import AdminClient

        self.settings = settings
        self._bootstrap = require_bootstrap(settings)
        self.admin = AdminClient({"bootstrap.servers": self._bootstrap})
        self._clock = clock
        self._partitions: dict[str, int] = {}
        self._partitions_at = float("-inf")
        self._first_ts: dict[tuple[str, int, int], int] = {}
        self._peeker = None

    def close(self) -> None:
        if self._peeker is not None:
            self._peeker.close()
            self._peeker = None

    def _topic_partitions(self) -> dict[str, int]:
        if time.monotonic() - self._partitions_at > METADATA_TTL_S:
            md = self.admin.list_topics(timeout=5)
            self._partitions = {t: len(m.partitions) for t, m in md.topics.items() if m.error is None}
            self._partitions_at = time.monotonic()
        return self._partitions

    def read(self, groups: dict[str, Iterable[str]]) -> list[dict[str, Any]]:
        """``[{"group", "topic", "partition", "committed", "end", "messages", "seconds"}]`` for
        every partition of every topic each group consumes (``{group: topics}``). A partition
        the group never committed counts from offset 0. ``seconds`` is None when the first
        unconsumed record could not be read within the tick's budget.

        Raises ``confluent_kafka.KafkaException`` when the cluster does not answer.
        """
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        parts = self._topic_partitions()
        wanted = {g: sorted({t for t in topics if t in parts}) for g, topics in groups.items()}
        all_tps = {(t, p) for topics in wanted.values() for t in topics for p in range(parts[t])}
        if not all_tps:
            return []
        ends_f = self.admin.list_offsets({TopicPartition(t, p): OffsetSpec.latest() for t, p in all_tps},
                                         request_timeout=5)
        ends = {(tp.topic, tp.partition): f.result().offset for tp, f in ends_f.items()}
        rows = []
        for group, topics in wanted.items():
            tps = [TopicPartition(t, p) for t in topics for p in range(parts[t])]
            if not tps:
                continue
            fut = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)],
                                                         request_timeout=5)[group]
            committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in fut.result().topic_partitions}
            for t in topics:
                for p in range(parts[t]):
                    c, e = committed.get((t, p), 0), ends[(t, p)]
                    rows.append({"group": group, "topic": t, "partition": p, "committed": c, "end": e,
                                 "messages": max(0, e - c), "seconds": None})
        self._fill_seconds(rows)
        return rows

    def _fill_seconds(self, rows: list[dict[str, Any]]) -> None:
        from streams.ops.snapshot import lag_seconds

        now_ms = int(self._clock() * 1000)
        missing = {(r["topic"], r["partition"], r["committed"]) for r in rows
                   if r["committed"] < r["end"] and (r["topic"], r["partition"], r["committed"]) not in self._first_ts}
        if missing:
            self._first_ts.update(self._peek(missing))
        live = {(r["topic"], r["partition"], r["committed"]) for r in rows}
        for k in [k for k in self._first_ts if k not in live]:
            del self._first_ts[k]  # the group moved on: forget the old position
        for r in rows:
            ts = self._first_ts.get((r["topic"], r["partition"], r["committed"]))
            r["seconds"] = lag_seconds(now_ms, r["committed"], r["end"], ts)

    def _peek(self, positions: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], int]:
        """``{(topic, partition, offset): Kafka timestamp ms}`` of the records at ``positions``
        (those read within :data:`PEEK_BUDGET_S`)."""
        from confluent_kafka import Consumer, TopicPartition

        if self._peeker is None:
            self._peeker = Consumer({"bootstrap.servers": self._bootstrap, "group.id": "pulse-ops-peek",
                                     "enable.auto.commit": False, "enable.partition.eof": False,
                                     "fetch.wait.max.ms": 50})
        by_tp = {(t, p): o for t, p, o in positions}
        self._peeker.assign([TopicPartition(t, p, o) for (t, p), o in by_tp.items()])
        found: dict[tuple[str, int, int], int] = {}
        deadline = time.monotonic() + PEEK_BUDGET_S
        while len(found) < len(by_tp) and time.monotonic() < deadline:
            for msg in self._peeker.consume(num_messages=len(by_tp) * 4, timeout=0.05):
                if msg.error() is not None:
                    continue
                key = (msg.topic(), msg.partition())
                want = by_tp.get(key)
                if want is not None and msg.offset() >= want and (msg.topic(), msg.partition(), want) not in found:
                    found[(msg.topic(), msg.partition(), want)] = msg.timestamp()[1]
        self._peeker.unassign()
        return found


class TopicTally:
    """Counts of one topic's records by ``key(record) -> hashable`` (module docstring)."""

    def __init__(self, settings: Settings, topic: str, key: Callable[[dict], Any],
                 sample: Callable[[dict], dict] | None = None, keep: int = 5):
        from collections import deque

        from streams.contracts.codec import codec_for
        from streams.contracts.topics import topic_spec

        self.settings, self.topic, self.key = settings, topic, key
        self.codec = codec_for(settings, topic_spec(topic).schema, topic)
        self.counts: dict[Any, int] = {}
        self.sample = sample
        self.recent: deque[dict] = deque(maxlen=keep)
        """``sample(record)`` of the newest ``keep`` records (when ``sample`` is given), oldest first."""
        self.undecodable = 0
        self._consumer = None

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def poll(self) -> dict[Any, int]:
        """Read what arrived since the last call (bounded by :data:`TALLY_BUDGET_S` and
        :data:`TALLY_MAX_RECORDS`); returns the counts so far."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        if self._consumer is None:
            c = Consumer({"bootstrap.servers": require_bootstrap(self.settings), "group.id": "pulse-ops-tally",
                          "enable.auto.commit": False, "fetch.wait.max.ms": 50})
            md = c.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if md is None or md.error is not None:
                c.close()
                return self.counts
            c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in md.partitions])
            self._consumer = c
        deadline, n = time.monotonic() + TALLY_BUDGET_S, 0
        while time.monotonic() < deadline and n < TALLY_MAX_RECORDS:
            batch = self._consumer.consume(num_messages=5000, timeout=0.05)
            if not batch:
                break
            for msg in batch:
                if msg.error() is not None or msg.value() is None:
                    continue
                n += 1
                try:
                    record = self.codec.decode(msg.value())
                    k = self.key(record)
                    if self.sample is not None:
                        self.recent.append(self.sample(record))
                except Exception:  # noqa: BLE001 - an undecodable record is counted, not fatal
                    self.undecodable += 1
                    continue
                for one in (k if isinstance(k, list) else [k]):
                    self.counts[one] = self.counts.get(one, 0) + 1
        return self.counts


def moderation_key(record: dict) -> tuple[str, str]:
    """A moderation verdict's ``(tier, action)``."""
    return str(record.get("tier") or "UNKNOWN"), str(record.get("action") or "UNKNOWN")


def copyright_key(record: dict) -> list[tuple[str, str]]:
    """A copyright verdict's ``("verdict", action)`` and one ``("match", fingerprint kind)`` per
    matched reference (CHROMAPRINT, PDQ, PHASH, DHASH, ORB)."""
    out = [("verdict", str(record.get("action") or "UNKNOWN"))]
    for m in record.get("matches") or []:
        out.append(("match", str((m or {}).get("kind") or "unknown")))
    return out


def dead_letter_sample(record: dict) -> dict:
    """What the dashboard lists of a recent dead letter: where it came from and why (the reason
    text is shown to operators only, never used as a metric label)."""
    from streams.contracts.agent import ms_of

    return {"at_ms": ms_of(record["event_time"]), "consumer": record.get("consumer") or "unknown",
            "error_type": record.get("error_type") or "unknown", "source_topic": record.get("source_topic"),
            "partition": record.get("partition"), "offset": record.get("offset"),
            "reason": str(record.get("reason") or "")[:300]}


def dead_letter_key(record: dict) -> tuple[str, str]:
    """A dead letter's ``(consumer, error type)``."""
    return str(record.get("consumer") or "unknown"), str(record.get("error_type") or "unknown")

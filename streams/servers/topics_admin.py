"""Kafka topic administration: create the catalog's topics, list what the cluster has (I/O on
the cluster, used by ``pulse up``, ``pulse topics`` and the tests; the catalog itself lives in
:mod:`streams.contracts.topics`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from streams.contracts.topics import TopicError, TopicSpec, replication_for, require_bootstrap, topic_catalog
from streams.settings import Settings


def admin_client(settings: Settings):
    """A confluent-kafka ``AdminClient`` for the configured cluster."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": require_bootstrap(settings)})


def create_topics(settings: Settings, specs: Iterable[TopicSpec] | None = None,
                  timeout_s: float = 30.0) -> dict[str, str]:
    """Create every missing topic of ``specs`` (default: the catalog); idempotent.

    ``settings.topic_partitions`` > 0 overrides each topic's partition count. New topics get
    :func:`~streams.contracts.topics.replication_for` the brokers the cluster reports now (and
    ``PULSE_KAFKA_REPLICATION``): 3 replicas with ``min.insync.replicas`` 2 on three brokers or
    more, one replica on one broker.

    An existing topic whose policy configs differ from the catalog's (a deployment made before
    a config was added, such as the compacted topics' erasure bound) gets them set with an
    incremental alter; its partition count is never changed.

    Returns
    -------
    dict
        ``{topic: "created" | "exists" | "exists (N partitions; catalog says M)"}``, with
        ``"; configs set: a, b"`` appended where existing configs were brought in line.

    Raises
    ------
    TopicError
        The cluster is unreachable within ``timeout_s`` seconds or refuses a topic.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    specs = list(topic_catalog().values() if specs is None else specs)
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicError(f"Kafka at {settings.kafka_bootstrap} did not answer: {exc}") from None
    existing = metadata.topics
    result: dict[str, str] = {}
    new = []
    for spec in specs:
        partitions = settings.topic_partitions or spec.partitions
        if spec.name in existing:
            have = len(existing[spec.name].partitions)
            result[spec.name] = "exists" if have == partitions else \
                f"exists ({have} partitions; catalog says {partitions})"
        else:
            factor, min_isr = replication_for(len(metadata.brokers), spec.replication_factor,
                                              settings.kafka_replication)
            new.append(NewTopic(spec.name, num_partitions=partitions, replication_factor=factor,
                                config={**spec.configs, "min.insync.replicas": str(min_isr)}))
    stale = [spec for spec in specs if spec.name in existing]
    for name, keys in _align_configs(admin, stale, timeout_s).items():
        result[name] += f"; configs set: {', '.join(keys)}"
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout=timeout_s)
                result[name] = "created"
            except KafkaException as exc:
                err = exc.args[0]
                if getattr(err, "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                    result[name] = "exists"
                else:
                    raise TopicError(f"creating topic {name!r} failed: {err}") from None
    return result


def _align_configs(admin, specs: list[TopicSpec], timeout_s: float) -> dict[str, list[str]]:
    """Set the catalog's policy configs where existing topics differ; ``{topic: [keys set]}``.

    Raises :class:`TopicError` when the cluster refuses to describe or alter a topic."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    if not specs:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    changes: dict[str, list[str]] = {}
    alters = []
    try:
        described = {r.name: fut.result(timeout=timeout_s)
                     for r, fut in admin.describe_configs(resources, request_timeout=timeout_s).items()}
    except KafkaException as exc:
        raise TopicError(f"describing the topics' configs failed: {exc.args[0]}") from None
    for spec in specs:
        have = described.get(spec.name, {})
        wrong = {k: v for k, v in spec.configs.items() if getattr(have.get(k), "value", None) != v}
        if wrong:
            changes[spec.name] = sorted(wrong)
            alters.append(ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sorted(wrong.items())]))
    if alters:
        for res, fut in admin.incremental_alter_configs(alters, request_timeout=timeout_s).items():
            try:
                fut.result(timeout=timeout_s)
            except KafkaException as exc:
                raise TopicError(f"setting configs of topic {res.name!r} failed: {exc.args[0]}") from None
    return changes


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the cluster reports it: partition count and the sum of its end offsets."""

    name: str
    partitions: int
    end_offsets: tuple[int, ...]
    in_catalog: bool

    @property
    def messages(self) -> int:
        """Sum of end offsets: the number of messages ever written (compaction not subtracted)."""
        return sum(self.end_offsets)


def list_topics(settings: Settings, include_internal: bool = False,
                timeout_s: float = 30.0) -> list[TopicInfo]:
    """Every topic on the cluster with its partition count and end offsets (high watermarks).

    Raises
    ------
    TopicError
        The cluster is unreachable.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    bootstrap = require_bootstrap(settings)
    try:
        md = admin_client(settings).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicError(f"Kafka at {bootstrap} did not answer: {exc}") from None
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pulse-topics-list",
                         "enable.auto.commit": False})
    out = []
    try:
        for name in sorted(md.topics):
            if name.startswith("__") and not include_internal:
                continue
            ends = tuple(consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)[1]
                         for p in sorted(md.topics[name].partitions))
            out.append(TopicInfo(name, len(ends), ends, name in topic_catalog()))
    finally:
        consumer.close()
    return out

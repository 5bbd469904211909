"""The topic catalog (``infra/kafka/topics.toml``) and applying it to a Kafka cluster.

Each topic carries exactly one Avro event type (``schemas/avro``) and is keyed by one field of it.
``create_topics`` is idempotent: existing topics are left as they are (and reported), missing ones
are created with their partitions and configs through confluent-kafka's ``AdminClient``.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from streams.settings import REPO_ROOT, Settings

TOPICS_FILE = REPO_ROOT / "infra" / "kafka" / "topics.toml"

#: Longest time (ms) an erased key's earlier values stay on a compacted topic: Kafka's
#: ``max.compaction.lag.ms`` (KIP-354) makes a segment holding a value older than this eligible
#: for compaction (its active segment is rolled), so the log cleaner removes every value a
#: tombstone supersedes within about a day instead of whenever the segment fills (1 GiB) or
#: ages out (``segment.ms``, 7 days). One day also keeps each tombstone (``delete.retention.ms``)
#: for consumers and replays that lag (docs/erasure.md).
ERASURE_COMPACTION_BOUND_MS = 86_400_000

#: Topic configs per policy. ``log``: keep every event forever (replay needs the whole history).
#: ``compacted``: keep the latest value per key; a null value (tombstone) deletes the key, and
#: the values it supersedes are compacted away within :data:`ERASURE_COMPACTION_BOUND_MS`.
POLICY_CONFIGS: dict[str, dict[str, str]] = {
    "log": {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
    "compacted": {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                  "max.compaction.lag.ms": str(ERASURE_COMPACTION_BOUND_MS),
                  "delete.retention.ms": str(ERASURE_COMPACTION_BOUND_MS)},
}


class TopicError(RuntimeError):
    """The topic catalog is invalid, or the cluster refused or could not be reached."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the catalog.

    ``schema`` is the short event-type name (``Upload``); ``key`` the record field whose value is
    the message key; ``policy`` one of :data:`POLICY_CONFIGS`; ``replication_factor`` the most
    replicas the topic asks for (the effective factor depends on the cluster:
    :func:`replication_for`).
    """

    name: str
    schema: str
    key: str
    partitions: int
    replication_factor: int
    policy: str
    doc: str = ""

    @property
    def configs(self) -> dict[str, str]:
        """Kafka topic configs for this topic's policy."""
        return dict(POLICY_CONFIGS[self.policy])


def load_topics(path: Path = TOPICS_FILE) -> dict[str, TopicSpec]:
    """Parse the topic catalog into ``{name: TopicSpec}`` (in file order).

    Raises
    ------
    TopicError
        A topic lacks ``schema`` or ``key``, or names an unknown policy.
    """
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    defaults = raw.get("defaults", {})
    specs: dict[str, TopicSpec] = {}
    for name, t in raw.get("topics", {}).items():
        merged = {**defaults, **t}
        for required in ("schema", "key"):
            if required not in merged:
                raise TopicError(f"{path}: topic {name!r} has no {required!r}")
        if merged.get("policy", "log") not in POLICY_CONFIGS:
            raise TopicError(f"{path}: topic {name!r} has unknown policy {merged['policy']!r}; "
                             f"use one of {sorted(POLICY_CONFIGS)}")
        specs[name] = TopicSpec(
            name=name, schema=merged["schema"], key=merged["key"],
            partitions=int(merged.get("partitions", 1)),
            replication_factor=int(merged.get("replication_factor", 3)),
            policy=merged.get("policy", "log"), doc=merged.get("doc", ""),
        )
    return specs


@lru_cache(maxsize=1)
def topic_catalog() -> dict[str, TopicSpec]:
    """The repository's topic catalog, parsed once."""
    return load_topics()


def topic_spec(name: str) -> TopicSpec:
    """The spec of topic ``name``.

    Raises
    ------
    TopicError
        No such topic in the catalog (the message lists the known ones).
    """
    try:
        return topic_catalog()[name]
    except KeyError:
        raise TopicError(f"unknown topic {name!r}; known topics: {', '.join(topic_catalog())}") from None


def replication_for(brokers: int, wanted: int = 3, override: int = 0) -> tuple[int, int]:
    """``(replication factor, min.insync.replicas)`` of a topic created on a cluster of ``brokers``.

    The factor is ``override`` (``PULSE_KAFKA_REPLICATION``) when set, else ``min(wanted,
    brokers)`` (``wanted``: the catalog's ``replication_factor``, 3), so one broker gives 1 and
    three give 3. ``min.insync.replicas`` is 2 from three replicas up (with ``acks=all`` a write
    then survives the loss of any one broker, and the partition stays writable while one is
    down), else 1 (two replicas with a minimum of 2 would stop writes whenever either is down).
    """
    factor = override or max(1, min(wanted, brokers))
    return factor, 2 if factor >= 3 else 1


def require_bootstrap(settings: Settings) -> str:
    """The Kafka bootstrap servers, or a :class:`TopicError` telling the user how to get one."""
    if not settings.kafka_bootstrap:
        raise TopicError("no Kafka cluster configured: run `pulse up` to start the embedded one, "
                         "or set PULSE_KAFKA_BOOTSTRAP=host:port")
    return settings.kafka_bootstrap

"""Effects: what an agent's pure ``process`` core returns instead of doing I/O.

The runtime hands them to the sinks, which batch and write them (Cassandra rows, Qdrant points,
Kafka events, the agent's own state tables) before the consumed offsets are committed. Effects are plain frozen values, so
tests can assert on them without any server.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Upsert:
    """Write ``row`` (column -> value) into Cassandra table ``table``.

    ``timestamp_us`` is the write timestamp (microseconds since the epoch), normally the source
    event's ``event_time``: replays write identical cells, and older events never overwrite newer.
    """

    table: str
    row: dict[str, Any]
    timestamp_us: int


@dataclass(frozen=True)
class Delete:
    """Delete the row of ``table`` whose primary key is ``key``, at ``timestamp_us``.

    ``key`` may also be a prefix of the primary key: the partition key columns alone delete the
    whole partition (one partition tombstone), the partition key plus leading clustering columns
    a range of rows (CQL ``DELETE ... WHERE`` on a key prefix). Rows written later with a greater
    timestamp are not affected.
    """

    table: str
    key: dict[str, Any]
    timestamp_us: int


@dataclass(frozen=True)
class Emit:
    """Publish ``record`` (an event of the topic's schema) to ``topic``; the key comes from the catalog."""

    topic: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Tombstone:
    """Publish a tombstone (the key with a null value) to the compacted ``topic``: log compaction
    then removes every earlier value of ``key`` (Kafka documentation, "Log Compaction").

    Only for topics whose catalog policy is ``compacted`` (``infra/kafka/topics.toml``); the
    eraser (``agents/eraser.py``) writes them for an erased user's profile and feed and for their
    posts' fingerprints. Consumers never see a tombstone as an event: the runtime, side inputs,
    the replay reader and exports skip null values.
    """

    topic: str
    key: str


@dataclass(frozen=True)
class MediaDelete:
    """Delete the media store's file ``uri`` (a ``media:sha256/...`` URI,
    ``streams/stores/media.py``) for good. Only the eraser returns it, for an erased user's
    uploads whose content no other upload and no registered work references (the store is
    content-addressed: identical uploads share one file). Idempotent: a missing file is fine.
    Written by the media sink; a rebuild into a scratch keyspace only counts it."""

    uri: str


@dataclass(frozen=True)
class ShredKey:
    """Delete data subject ``subject``'s encryption key for good (crypto-shredding,
    ``streams/contracts/personal.py``): every personal field encrypted under it becomes
    unreadable in the log, its replays and exports. Written by the Cassandra sink (the keys live
    in Cassandra, ``streams/stores/keys.py``); idempotent. Only the eraser returns it.
    """

    subject: str


@dataclass(frozen=True)
class VectorUpsert:
    """Upsert a point into a vector-index collection (see ``streams.stores.vectors``).

    The upsert replaces the point's payload, except ``keep``: payload keys another writer owns
    (e.g. the publisher's search marks on clip_ai's points). Where the point already exists, or a
    payload update of the id is buffered, their values are carried over unless ``payload`` sets
    them, so a re-run of the writer does not erase the other writer's keys.
    """

    collection: str
    id: str
    vector: Any
    payload: dict[str, Any] = field(default_factory=dict)
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class VectorDelete:
    """Delete points by id from a vector-index collection."""

    collection: str
    ids: tuple[str, ...]


@dataclass(frozen=True)
class VectorSetPayload:
    """Merge ``payload`` into the payloads of existing points ``ids`` of a vector-index collection.

    Keys of ``payload`` overwrite or add those keys; the points' other keys and their vectors are
    kept; ids with no point are ignored (``VectorIndex.set_payload``). E.g. the publisher's
    ``VectorSetPayload("content", (post_id,), {"published": True, "moderation_action": "ALLOW"})``.
    Idempotent, so re-delivery and replay give the same payloads.
    """

    collection: str
    ids: tuple[str, ...]
    payload: dict[str, Any]


@dataclass(frozen=True)
class StateSet:
    """Set ``key`` of the agent's state table ``table`` to ``value`` (JSON-serialisable).

    Applied by the runtime after the event's view writes and emits are durable (see
    ``docs/agent-contract.md``), and visible to the next events of the same batch at once.
    """

    table: str
    key: str
    value: Any


@dataclass(frozen=True)
class StateDelete:
    """Remove ``key`` from the agent's state table ``table``."""

    table: str
    key: str


Effect = Union[Upsert, Delete, Emit, Tombstone, ShredKey, MediaDelete, VectorUpsert, VectorDelete,
               VectorSetPayload, StateSet, StateDelete]
#: Effects that write a store through the sinks (Cassandra rows and keys, vector points, media
#: files).
VIEW_EFFECTS = (Upsert, Delete, ShredKey, MediaDelete, VectorUpsert, VectorDelete, VectorSetPayload)
#: Effects on the agent's own state tables.
STATE_EFFECTS = (StateSet, StateDelete)


def event_time_us(record: dict[str, Any]) -> int:
    """``record['event_time']`` (epoch ms int or aware datetime) as epoch microseconds."""
    t = record["event_time"]
    if isinstance(t, int):
        return t * 1000
    return int(round(t.timestamp() * 1_000_000))

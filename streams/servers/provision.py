"""Provisioning: apply the topic catalog, the CQL views and the Qdrant collections (idempotent).

`pulse up` and `pulse demo` call :func:`provision` once the servers answer; against external
clusters it is what makes them ready for Pulse.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from streams.settings import Settings


@dataclass
class Provisioned:
    """What :func:`provision` did: topic outcomes, CQL statements applied, collections ensured."""

    topics: dict[str, str] = field(default_factory=dict)
    cql_statements: int = 0
    collections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def provision(settings: Settings) -> Provisioned:
    """Create missing topics, the keyspace and view tables, and the vector collections.

    The embedded vector index (qdrant-edge) is single-process: while a worker holds it, the
    collections are left as they are and a note says so.

    Raises
    ------
    TopicError, ViewStoreError
        Kafka or Cassandra is unreachable or refuses a definition.
    """
    from streams.stores.cassandra import apply_schema
    from streams.servers.topics_admin import create_topics
    from streams.stores.vectors import IndexLockedError, load_collection_specs, open_vector_index

    out = Provisioned()
    out.topics = create_topics(settings)
    out.cql_statements = apply_schema(settings)
    try:
        index = open_vector_index(settings)
    except IndexLockedError:
        out.notes.append(f"vector index at {settings.qdrant_path} is open in a running worker; "
                         "collections left unchanged")
        return out
    try:
        for name, spec in load_collection_specs().items():
            if name in MODEL_SIZED:
                continue  # the first upsert creates it at the width of the vectors written
            index.ensure_collection(spec)
            out.collections.append(spec.name)
    finally:
        index.close()
    return out


#: Collections whose width is the content-embedding width of the configured model (384 with the
#: MiniLM bridge, the CLIP width with a checkpoint), known only once a vector is written: the
#: vector sink creates them from their definition at the first upsert (sized from the vectors).
MODEL_SIZED = ("user_interests",)

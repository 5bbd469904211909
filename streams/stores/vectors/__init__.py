"""Pulse's vector index: Qdrant collections behind one interface, on two engines.

>>> from streams.stores.vectors import load_collection_specs, open_vector_index   # doctest: +SKIP
>>> index = open_vector_index(settings)            # server if PULSE_QDRANT_URL, else qdrant-edge
>>> index.ensure_collection(load_collection_specs()["content"])
>>> index.upsert("content", [Point("se-1", vector, {"creator_id": "u7", "published": True})])
>>> index.search("content", query, limit=20, must={"published": True}, must_not={"_id": seen})

See :mod:`streams.stores.vectors.base` for ids, scores and filters; ``infra/qdrant/collections.toml``
for the collections. The engines are imported lazily by :func:`open_vector_index`.
"""
from streams.stores.vectors.base import (COLLECTIONS_TOML, CollectionNotFoundError, CollectionSpec,
                                  CollectionSpecMismatchError, Hit, IndexLockedError, Point,
                                  VectorIndex, VectorIndexError, load_collection_specs,
                                  open_vector_index, point_uuid)

__all__ = [
    "COLLECTIONS_TOML", "CollectionNotFoundError", "CollectionSpec", "CollectionSpecMismatchError",
    "Hit", "IndexLockedError", "Point", "VectorIndex", "VectorIndexError", "load_collection_specs",
    "open_vector_index", "point_uuid",
]

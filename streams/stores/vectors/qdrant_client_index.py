"""``VectorIndex`` on qdrant-client: a Qdrant server (production), or qdrant-client's local mode.

Server: ``QdrantClientIndex(url="http://host:6333")`` (``PULSE_QDRANT_URL``); any number of
processes share it; payload indexes are created as the spec says; the server optimizes and builds
HNSW in the background, so :meth:`optimize` is a no-op.

Local mode: ``QdrantClientIndex(path=dir)`` or ``path=":memory:"``. It is the server's API in pure
Python: every search is a brute-force scan (exact; about 100 ms per query at 100k x 512), it warns
above 20k points, and payload indexes have no effect (so they are not created: creating them only
logs a warning). A ``path`` is locked to one client object at a time (qdrant-client's own lock);
a second opener gets :class:`IndexLockedError`. Data under ``path`` survives close and reopen.
"""
from __future__ import annotations

from pathlib import Path

from qdrant_client import QdrantClient, models

from streams.stores.vectors.base import (ID_FIELD, CollectionNotFoundError, CollectionSpec,
                                  CollectionSpecMismatchError, Condition, Distance, IndexLockedError,
                                  VectorIndex)

_DISTANCE = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT,
             "euclid": models.Distance.EUCLID, "manhattan": models.Distance.MANHATTAN}
_DISTANCE_NAME = {v: k for k, v in _DISTANCE.items()}
_SCHEMA = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER,
           "float": models.PayloadSchemaType.FLOAT, "bool": models.PayloadSchemaType.BOOL,
           "datetime": models.PayloadSchemaType.DATETIME}


class QdrantClientIndex(VectorIndex):
    """Collections on a Qdrant server (``url``) or in qdrant-client local mode (``path``).

    Give exactly one of ``url`` and ``path``; other keyword arguments (``api_key``, ``timeout``,
    ...) go to :class:`qdrant_client.QdrantClient`. Raises :class:`IndexLockedError` when
    ``path`` is open in another client.
    """

    def __init__(self, url: str | None = None, *, path: Path | str | None = None, **client_kwargs) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (a Qdrant server) and path (local mode, or ':memory:')")
        self.local = url is None
        try:
            if url is not None:
                self.client = QdrantClient(url=url, **client_kwargs)
            elif str(path) == ":memory:":
                self.client = QdrantClient(location=":memory:", **client_kwargs)
            else:
                self.client = QdrantClient(path=str(path), **client_kwargs)
        except RuntimeError as e:
            if "already accessed" in str(e):
                raise IndexLockedError(f"qdrant-client local storage {path} is open in another client "
                                       f"(one at a time; share vectors through a Qdrant server): {e}") from e
            raise
        self._dims_cache: dict[str, tuple[int, Distance]] = {}

    # ---- engine hooks
    def drop_collection(self, name: str) -> bool:
        self._dims_cache.pop(name, None)
        if not self.client.collection_exists(name):
            return False
        self.client.delete_collection(name)
        return True

    def _create(self, spec: CollectionSpec) -> None:
        name = spec.name
        if not self.client.collection_exists(name):
            try:
                if isinstance(spec.size, dict):
                    config = {n: models.VectorParams(size=sz, distance=_DISTANCE[spec.distance])
                              for n, sz in spec.size.items()}
                else:
                    config = models.VectorParams(size=spec.size, distance=_DISTANCE[spec.distance])
                self.client.create_collection(name, vectors_config=config)
            except Exception:  # created concurrently by another process: check it below
                if not self.client.collection_exists(name):
                    raise
        self._dims_cache.pop(name, None)
        size, distance = self._dims(name)
        if (size, distance) != (spec.size, spec.distance):
            raise CollectionSpecMismatchError(
                f"collection {name!r} holds ({size},) {distance} vectors, the spec says ({spec.size},) "
                f"{spec.distance}; rebuild it (recreate the collection and replay)")
        if self.local:
            return  # local mode ignores payload indexes and warns on each one
        existing = self.client.get_collection(name).payload_schema
        for field, kind in {ID_FIELD: "keyword", **spec.payload_indexes}.items():
            if field in existing and existing[field].data_type == _SCHEMA[kind]:
                continue
            if field in existing:
                self.client.delete_payload_index(name, field, wait=True)
            self.client.create_payload_index(name, field, field_schema=_SCHEMA[kind], wait=True)

    def _dims(self, collection: str) -> tuple[int | dict[str, int], Distance]:
        if collection not in self._dims_cache:
            if not self.client.collection_exists(collection):
                raise CollectionNotFoundError(f"no vector collection {collection!r}; call ensure_collection() first")
            params = self.client.get_collection(collection).config.params.vectors
            if isinstance(params, models.VectorParams):
                self._dims_cache[collection] = (params.size, _DISTANCE_NAME[params.distance])
            else:
                distances = {_DISTANCE_NAME[p.distance] for p in params.values()}
                if len(distances) != 1:
                    raise CollectionSpecMismatchError(f"collection {collection!r} mixes distances {sorted(distances)}; "
                                                      f"Pulse collections use one")
                self._dims_cache[collection] = ({n: p.size for n, p in sorted(params.items())}, distances.pop())
        return self._dims_cache[collection]

    def _upsert(self, collection, ids, vectors, payloads) -> None:
        if isinstance(vectors, list):  # named vectors: a point may lack some, so one PointStruct each
            points = [models.PointStruct(id=i, vector={n: x.tolist() for n, x in v.items()}, payload=p)
                      for i, v, p in zip(ids, vectors, payloads)]
            self.client.upsert(collection, wait=True, points=points)
            return
        self.client.upsert(collection, wait=True,
                           points=models.Batch(ids=ids, vectors=vectors.tolist(), payloads=payloads))

    def _delete(self, collection, ids) -> None:
        self.client.delete(collection, points_selector=models.PointIdsList(points=ids), wait=True)

    def _set_payload(self, collection, ids, payload) -> None:
        self.client.set_payload(collection, payload=payload, points=ids, wait=True)

    def _existing(self, collection, ids):
        return [str(r.id) for r in self.client.retrieve(collection, ids, with_payload=False, with_vectors=False)]

    def _retrieve_payloads(self, collection, ids):
        return [(r.id, r.payload) for r in self.client.retrieve(collection, ids, with_payload=True,
                                                                with_vectors=False)]

    def _retrieve(self, collection, ids):
        records = self.client.retrieve(collection, ids, with_payload=True, with_vectors=True)
        return [(r.id, r.vector, r.payload) for r in records]

    def _count(self, collection) -> int:
        return self.client.count(collection, exact=True).count

    def _search(self, collection, queries, limit, must, must_not, exact, using=None):
        flt = None
        if must or must_not:
            flt = models.Filter(must=[_condition(c) for c in must] or None,
                                must_not=[_condition(c) for c in must_not] or None)
        params = models.SearchParams(exact=True) if exact and not self.local else None  # local mode is always exact
        if len(queries) == 1:
            responses = [self.client.query_points(collection, query=queries[0].tolist(), limit=limit, using=using,
                                                  query_filter=flt, search_params=params, with_payload=True)]
        else:
            responses = self.client.query_batch_points(collection, requests=[
                models.QueryRequest(query=q.tolist(), limit=limit, filter=flt, params=params, with_payload=True,
                                    using=using)
                for q in queries])
        return [[(p.id, p.score, p.payload) for p in r.points] for r in responses]

    def optimize(self) -> None:
        """No-op: a server optimizes in the background; local mode has nothing to optimize."""

    def close(self) -> None:
        self.client.close()


def _condition(c: Condition) -> models.FieldCondition:
    if c.op == "equals":
        return models.FieldCondition(key=c.field, match=models.MatchValue(value=c.value))
    if c.op == "any_of":
        return models.FieldCondition(key=c.field, match=models.MatchAny(any=list(c.value)))
    if all(isinstance(v, str) for v in c.value.values()):
        return models.FieldCondition(key=c.field, range=models.DatetimeRange(**c.value))
    return models.FieldCondition(key=c.field, range=models.Range(**c.value))

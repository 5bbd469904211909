"""``VectorIndex`` on qdrant-edge-py: Qdrant's own engine in-process, persisted on local disk.

Layout: one EdgeShard directory per collection, ``<root>/<collection>/`` (the engine's
``edge_config.json``, ``segments/``, ``wal/``), plus ``<root>/<collection>.lock`` holding the PID of
the process that has it open.

One process per shard directory. qdrant-edge takes an exclusive lock on the shard's write-ahead log
and has no server to share it through, so two processes (or two ``EdgeIndex`` objects in one
process) cannot open the same collection at once. Pulse takes its own ``flock`` on the ``.lock``
file first, so the second opener gets :class:`IndexLockedError` naming the holder's PID instead of
the engine's ``Can't init WAL: Kind(WouldBlock)``. Processes that must share a collection (say
clip_ai writing ``content`` while feed_ranker searches it) need a Qdrant server
(``PULSE_QDRANT_URL``), or one process owning the collection. Collections are opened lazily, so a
process locks only the collections it touches.

Engine quirks handled here (qdrant-edge-py 0.9.0):

- ``MatchValue(True)`` is converted to the integer 1 and matches no bool payload; ``MatchValue``
  of a ``numpy.bool_`` keeps the bool, so bools are passed as ``numpy.bool_``.
- Errors are bare ``Exception("Service runtime error: ...")``; they are re-raised as this
  package's errors where Pulse can say more.
- ``create`` fails on a directory that already has segments, and ``load`` on one without; which
  one to call is decided by the presence of ``edge_config.json``.
- A cosine collection stores vectors unit-normalised (as the Qdrant server does).
- Search is an exact scan until :meth:`EdgeIndex.optimize` builds HNSW segments; afterwards it is
  approximate unless ``exact=True``. ``optimize`` blocks: 100 to 220 s for 100k x 512 on 2 cores,
  then about 2 ms per query (8 to 9 ms before). HNSW recall@10 measured after it: 1.0 on clustered,
  embedding-like vectors, but 0.12 on i.i.d. Gaussian ones (their worst case); see
  ``streams.bench.vectors``.
- HNSW parameters: qdrant-edge's defaults (m=16, ef_construct=100, search ef = ef_construct)
  give poor recall on high-dimensional data without cluster structure. :class:`EdgeIndex` takes
  ``hnsw_m``, ``hnsw_ef_construct`` (used when a collection is created) and ``search_ef`` (every
  approximate search); ``pulse bench clip`` measures recall@10 and latency for a choice of them.
  A collection's HNSW parameters are fixed at creation (``edge_config.json``).
- Named vectors (a :class:`CollectionSpec` whose ``size`` is a mapping) are one
  ``EdgeVectorParams`` per name; a point may lack some, and a search names one (``using``).
- Calls from several threads are safe but not faster (the engine runs its own search pool);
  ``search_batch`` is about twice the throughput of one query at a time.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from streams.stores.vectors.base import (ID_FIELD, CollectionNotFoundError, CollectionSpec,
                                  CollectionSpecMismatchError, Condition, Distance, IndexLockedError,
                                  VectorIndex, VectorIndexError)

_DISTANCE = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot,
             "euclid": qe.Distance.Euclid, "manhattan": qe.Distance.Manhattan}
_DISTANCE_NAME = {"Cosine": "cosine", "Dot": "dot", "Euclid": "euclid", "Manhattan": "manhattan"}
_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
           "float": qe.PayloadSchemaType.Float, "bool": qe.PayloadSchemaType.Bool,
           "datetime": qe.PayloadSchemaType.Datetime}


@dataclass
class _Shard:
    shard: qe.EdgeShard
    lock_fd: int
    size: int | dict[str, int]
    distance: Distance


class EdgeIndex(VectorIndex):
    """Collections as qdrant-edge shards under ``root`` (created if missing). See the module docstring.

    ``hnsw_m`` / ``hnsw_ef_construct`` (default: the engine's, 16 / 100) configure the HNSW graph
    of collections this object creates; ``search_ef`` (default: the engine's) is the candidate
    list size of every approximate search (Qdrant's ``hnsw_ef``): larger is slower and more exact.
    """

    def __init__(self, root: Path | str, *, hnsw_m: int | None = None, hnsw_ef_construct: int | None = None,
                 search_ef: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, _Shard] = {}
        self.hnsw = None
        if hnsw_m is not None or hnsw_ef_construct is not None:
            self.hnsw = qe.HnswIndexConfig(m=hnsw_m or 16, ef_construct=hnsw_ef_construct or 100,
                                           full_scan_threshold=10_000)
        self.search_ef = search_ef

    # ---- opening, locking
    def _lock(self, name: str) -> int:
        path = self.root / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise IndexLockedError(
                f"qdrant-edge collection {name!r} at {self.root / name} is open in another process "
                f"(PID {holder}) or another index object; qdrant-edge allows one process per shard "
                f"directory: close that one, or share vectors through a Qdrant server (PULSE_QDRANT_URL)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _shard(self, name: str, spec: CollectionSpec | None = None) -> _Shard:
        if name in self._open:
            s = self._open[name]
            if spec is not None and (s.size, s.distance) != (spec.size, spec.distance):
                raise CollectionSpecMismatchError(_mismatch(name, self.root / name, s.size, s.distance, spec))
            return s
        path = self.root / name
        config_file = path / "edge_config.json"
        if spec is None and not config_file.exists():
            raise CollectionNotFoundError(f"no vector collection {name!r} under {self.root}; "
                                          f"call ensure_collection() first")
        fd = self._lock(name)
        try:
            if config_file.exists():
                size, distance = _read_config(config_file)
                if spec is not None and (size, distance) != (spec.size, spec.distance):
                    raise CollectionSpecMismatchError(_mismatch(name, path, size, distance, spec))
                shard = _engine_call(qe.EdgeShard.load, str(path), where=path)
            else:
                size, distance = spec.size, spec.distance
                if isinstance(size, dict):
                    vectors = {n: qe.EdgeVectorParams(size=s, distance=_DISTANCE[distance]) for n, s in size.items()}
                else:
                    vectors = qe.EdgeVectorParams(size=size, distance=_DISTANCE[distance])
                config = qe.EdgeConfig(vectors=vectors, hnsw_config=self.hnsw)
                shard = _engine_call(qe.EdgeShard.create, str(path), config, where=path)
        except BaseException:
            os.close(fd)
            raise
        self._open[name] = _Shard(shard, fd, size, distance)
        return self._open[name]

    # ---- engine hooks
    def _create(self, spec: CollectionSpec) -> None:
        s = self._shard(spec.name, spec)
        existing = {field: info.data_type for field, info in s.shard.info().payload_schema.items()}
        for field, kind in {ID_FIELD: "keyword", **spec.payload_indexes}.items():
            if existing.get(field) == _SCHEMA[kind]:
                continue
            if field in existing:
                s.shard.update(qe.UpdateOperation.delete_field_index(field))
            s.shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA[kind]))

    def _dims(self, collection: str) -> tuple[int | dict[str, int], Distance]:
        s = self._shard(collection)
        return s.size, s.distance

    def _upsert(self, collection, ids, vectors, payloads) -> None:
        points = [qe.Point(i, {n: x.tolist() for n, x in v.items()} if isinstance(v, dict) else v, p)
                  for i, v, p in zip(ids, vectors, payloads)]
        self._shard(collection).shard.update(qe.UpdateOperation.upsert_points(points))

    def _delete(self, collection, ids) -> None:
        self._shard(collection).shard.update(qe.UpdateOperation.delete_points(ids))

    def _set_payload(self, collection, ids, payload) -> None:
        self._shard(collection).shard.update(qe.UpdateOperation.set_payload(ids, payload))

    def _existing(self, collection, ids):
        records = self._shard(collection).shard.retrieve(ids, with_payload=False, with_vector=False)
        return [str(r.id) for r in records]

    def _retrieve_payloads(self, collection, ids):
        records = self._shard(collection).shard.retrieve(ids, with_payload=True, with_vector=False)
        return [(r.id, r.payload) for r in records]

    def _retrieve(self, collection, ids):
        records = self._shard(collection).shard.retrieve(ids, with_payload=True, with_vector=True)
        return [(r.id, r.vector, r.payload) for r in records]

    def _count(self, collection) -> int:
        return self._shard(collection).shard.count(qe.CountRequest(exact=True))

    def _search(self, collection, queries, limit, must, must_not, exact, using=None):
        shard = self._shard(collection).shard
        flt = None
        if must or must_not:
            flt = qe.Filter(must=[_condition(c) for c in must] or None,
                            must_not=[_condition(c) for c in must_not] or None)
        if exact:
            params = qe.SearchParams(exact=True)
        else:
            params = qe.SearchParams(hnsw_ef=self.search_ef) if self.search_ef else None
        requests = [qe.QueryRequest(limit=limit, query=qe.Query.Nearest(q.tolist(), using=using), filter=flt,
                                    params=params, with_payload=True, with_vector=False) for q in queries]
        if len(requests) == 1:
            results = [shard.query(requests[0])]
        else:
            results = shard.query_batch(qe.QueryBatchRequest(requests))
        return [[(p.id, p.score, p.payload) for p in rows] for rows in results]

    def optimize(self) -> None:
        """Run qdrant-edge's optimizers on every collection under ``root`` (blocking; opens and locks them)."""
        for path in sorted(self.root.iterdir()):
            if (path / "edge_config.json").exists():
                self._shard(path.name).shard.optimize()

    def drop_collection(self, name: str) -> bool:
        import shutil

        path = self.root / name
        if not (path / "edge_config.json").exists():
            return False
        s = self._open.pop(name, None)
        fd = s.lock_fd if s is not None else self._lock(name)
        try:
            if s is not None:
                s.shard.close()
            shutil.rmtree(path)
        finally:
            os.close(fd)
        (self.root / f"{name}.lock").unlink(missing_ok=True)
        return True

    def close(self) -> None:
        while self._open:
            name, s = self._open.popitem()
            try:
                s.shard.flush()
                s.shard.close()
            finally:
                os.close(s.lock_fd)


def _mismatch(name: str, path: Path, size: int, distance: str, spec: CollectionSpec) -> str:
    return (f"collection {name!r} at {path} holds ({size},) {distance} vectors, the spec says "
            f"({spec.size},) {spec.distance}; rebuild it (delete the directory and replay)")


def _read_config(path: Path) -> tuple[int | dict[str, int], Distance]:
    """``(size, distance)`` from a shard's ``edge_config.json``: the unnamed vector's size, or
    ``{name: size}`` for named vectors (all of one distance in Pulse's collections)."""
    vectors = json.loads(path.read_text())["vectors"]
    if "" in vectors:
        return int(vectors[""]["size"]), _DISTANCE_NAME[vectors[""]["distance"]]
    distances = {_DISTANCE_NAME[p["distance"]] for p in vectors.values()}
    if len(distances) != 1:
        raise VectorIndexError(f"{path}: named vectors with several distances {sorted(distances)}")
    return {n: int(p["size"]) for n, p in sorted(vectors.items())}, distances.pop()


def _condition(c: Condition) -> qe.FieldCondition:
    if c.op == "equals":
        value = np.bool_(c.value) if isinstance(c.value, bool) else c.value  # MatchValue(True) would become 1
        return qe.FieldCondition(c.field, match=qe.MatchValue(value))
    if c.op == "any_of":
        return qe.FieldCondition(c.field, match=qe.MatchAny(list(c.value)))
    if all(isinstance(v, str) for v in c.value.values()):
        return qe.FieldCondition(c.field, range=qe.RangeDateTime(**c.value))
    return qe.FieldCondition(c.field, range=qe.RangeFloat(**c.value))


def _engine_call(fn, *args, where: Path):
    """Call qdrant-edge; turn its bare ``Exception`` into IndexLockedError / VectorIndexError."""
    try:
        return fn(*args)
    except Exception as e:  # the engine raises plain Exception("Service runtime error: ...")
        if "WouldBlock" in str(e):
            raise IndexLockedError(f"qdrant-edge shard {where} is locked by another process "
                                   f"(one process per shard directory): {e}") from e
        raise VectorIndexError(f"qdrant-edge shard {where}: {e}") from e

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
- Search is an exact scan until the engine's optimizer builds HNSW segments (in the background,
  see below, or by :meth:`EdgeIndex.optimize`); afterwards it is approximate unless
  ``exact=True``. ``EdgeShard.optimize()`` blocks and holds the GIL: 100 to 220 s for 100k x 512
  on 2 cores, then about 2 ms per query (8 to 9 ms before). HNSW recall@10 measured after it: 1.0 on clustered,
  embedding-like vectors, but 0.12 on i.i.d. Gaussian ones (their worst case); see
  ``streams.bench.vectors``.
- HNSW parameters: qdrant-edge's defaults (m=16, ef_construct=100, search ef = ef_construct)
  give poor recall on high-dimensional data without cluster structure. :class:`EdgeIndex` takes
  ``hnsw_m``, ``hnsw_ef_construct`` (used when a collection is created) and ``search_ef`` (every
  approximate search); ``pulse bench clip`` measures recall@10 and latency for a choice of them.
  A collection's HNSW parameters are fixed at creation (``edge_config.json``).
- Named vectors (a :class:`CollectionSpec` whose ``size`` is a mapping) are one
  ``EdgeVectorParams`` per name; a point may lack some, and a search names one (``using``).
- Calls from several threads are safe but not faster (the engine runs its own search pool; each
  call holds its collection's lock, so a swap never runs under a search); ``search_batch`` is
  about twice the throughput of one query at a time.

Background index builds (``build_after_points``, setting ``PULSE_VECTOR_INDEX_BUILD_POINTS``),
so that content and user-interest collections get HNSW as points stream in, without the worker
ever running the GIL-holding optimizer (:mod:`streams.stores.vectors.edge_build`):

1. Trigger: an upsert brings the points upserted into a collection since its last build started
   (at open: its points not yet indexed) to ``build_after_points``, and no build of it runs.
2. Start, under the collection's lock: flush; copy ``<name>/`` to ``.<name>.build/``; start
   ``python -m streams.stores.vectors.edge_build`` on the copy (``nice`` +10; it dies with its
   parent on Linux), which loads it, runs the optimizers, flushes and exits 0. Loading the copy
   while the original is open works: the engine's WAL lock is per directory. Copy and swap stall
   the upsert that does them: streaming 100k x 384 points, the longest batch took 0.36 s.
3. Meanwhile every mutation applied to the collection (upsert, delete, set-payload, payload-index
   create/delete) is also kept, in order, in memory.
4. Swap: every call on the collection first checks ``Popen.poll()`` (so do :meth:`EdgeIndex.poll_builds`
   and :meth:`EdgeIndex.wait_builds`). On exit 0, under the lock: flush and close the live shard,
   rename ``<name>/`` to ``.<name>.old/`` and ``.<name>.build/`` to ``<name>/``, load it, re-apply
   the kept mutations, flush, delete ``.<name>.old/``; Pulse's flock (``<name>.lock``) stays held.
   If as many points arrived during the build, the next build starts at once. Each build after
   the first indexes mostly the new points (the engine keeps indexed segments). On failure (any
   other exit, or an error while installing): log it with the child's stderr, delete the copy,
   drop the kept mutations and go on with the live shard; the next try comes after
   ``build_after_points`` more points.
5. Recovery, when a collection is opened (flock held): a ``.<name>.old/`` means the process died
   mid-swap, after the old shard was closed and before the new one was complete, so the live
   directory (if any) is deleted and ``.old`` renamed back: it has every mutation in its WAL, as
   none is applied between the start and the end of a swap. A ``.<name>.build/`` is a build
   that never finished: deleted.

:meth:`EdgeIndex.close` stops running builds and deletes their copies; :meth:`EdgeIndex.optimize`
(blocking, for benchmarks) abandons a running build and optimizes in process. Searches after the
builds: see ``pulse bench clip`` ("live") in docs/clip-ai.md.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import qdrant_edge as qe

from streams.stores.vectors.base import (ID_FIELD, CollectionNotFoundError, CollectionSpec,
                                  CollectionSpecMismatchError, Condition, Distance, IndexLockedError,
                                  VectorIndex, VectorIndexError)
from streams.stores.vectors.edge_build import ShadowBuild, log, old_path, recover

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
    lock: threading.RLock
    pending: int = 0
    """Points upserted since the last background build started (at open: the unindexed points)."""
    build: ShadowBuild | None = None


class EdgeIndex(VectorIndex):
    """Collections as qdrant-edge shards under ``root`` (created if missing). See the module docstring.

    ``hnsw_m`` / ``hnsw_ef_construct`` (default: the engine's, 16 / 100) configure the HNSW graph
    of collections this object creates; ``search_ef`` (default: the engine's) is the candidate
    list size of every approximate search (Qdrant's ``hnsw_ef``): larger is slower and more exact.
    ``indexing_threshold_kb`` (default: the engine's, Qdrant's 10,000 KB) is the vector storage
    size under which the optimizer leaves a segment without HNSW, and ``full_scan_threshold_kb``
    (default 10,000) the size under which a search scans an HNSW segment exactly anyway (both for
    collections this object creates; tests lower them to exercise HNSW on small data).

    ``build_after_points`` (default 10,000; ``None`` or 0: never) starts a background index build
    of a collection once that many points were upserted into it since its last build started (or,
    at open, are not indexed); see the module docstring. :meth:`poll_builds` / :meth:`wait_builds`
    install finished builds at once (every call on a collection does that for it anyway).
    """

    def __init__(self, root: Path | str, *, hnsw_m: int | None = None, hnsw_ef_construct: int | None = None,
                 search_ef: int | None = None, indexing_threshold_kb: int | None = None,
                 full_scan_threshold_kb: int | None = None, build_after_points: int | None = 10_000) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, _Shard] = {}
        self._opening = threading.Lock()
        self.hnsw = None
        if hnsw_m is not None or hnsw_ef_construct is not None or full_scan_threshold_kb is not None:
            self.hnsw = qe.HnswIndexConfig(m=hnsw_m or 16, ef_construct=hnsw_ef_construct or 100,
                                           full_scan_threshold=full_scan_threshold_kb or 10_000)
        self.optimizers = None
        if indexing_threshold_kb is not None:
            self.optimizers = qe.EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb)
        self.search_ef = search_ef
        self.build_after_points = build_after_points or 0
        self.builds = {"started": 0, "installed": 0, "failed": 0}
        """Background builds of this object's collections so far."""

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
        s = self._open.get(name)
        if s is None:
            with self._opening:
                s = self._open.get(name) or self._load(name, spec)
        if spec is not None and (s.size, s.distance) != (spec.size, spec.distance):
            raise CollectionSpecMismatchError(_mismatch(name, self.root / name, s.size, s.distance, spec))
        return s

    def _load(self, name: str, spec: CollectionSpec | None) -> _Shard:
        """Lock, recover (edge_build.recover), then load or create collection ``name``."""
        path = self.root / name
        config_file = path / "edge_config.json"
        not_found = CollectionNotFoundError(f"no vector collection {name!r} under {self.root}; "
                                            f"call ensure_collection() first")
        if spec is None and not config_file.exists() and not old_path(self.root, name).exists():
            raise not_found
        fd = self._lock(name)
        try:
            recover(self.root, name)
            if config_file.exists():
                size, distance = _read_config(config_file)
                if spec is not None and (size, distance) != (spec.size, spec.distance):
                    raise CollectionSpecMismatchError(_mismatch(name, path, size, distance, spec))
                shard = _engine_call(qe.EdgeShard.load, str(path), where=path)
            elif spec is None:
                raise not_found
            else:
                size, distance = spec.size, spec.distance
                if isinstance(size, dict):
                    vectors = {n: qe.EdgeVectorParams(size=s, distance=_DISTANCE[distance]) for n, s in size.items()}
                else:
                    vectors = qe.EdgeVectorParams(size=size, distance=_DISTANCE[distance])
                config = qe.EdgeConfig(vectors=vectors, hnsw_config=self.hnsw, optimizers=self.optimizers)
                shard = _engine_call(qe.EdgeShard.create, str(path), config, where=path)
        except BaseException:
            os.close(fd)
            raise
        info = shard.info()
        names = len(size) if isinstance(size, dict) else 1
        unindexed = max(0, info.points_count - info.indexed_vectors_count // names)
        self._open[name] = _Shard(shard, fd, size, distance, threading.RLock(), pending=unindexed)
        return self._open[name]

    @contextmanager
    def _using(self, name: str, spec: CollectionSpec | None = None) -> Iterator[_Shard]:
        """The open collection, its lock held; a finished background build is installed first."""
        s = self._shard(name, spec)
        with s.lock:
            self._poll(name, s)
            yield s

    def _poll(self, name: str, s: _Shard) -> None:
        if s.build is not None and s.build.poll() is not None:
            self._finish_build(name, s)

    def _apply(self, name: str, op: qe.UpdateOperation, points: int = 0) -> None:
        """Apply one mutation (``points`` upserted) to the live shard and to a running build's record."""
        with self._using(name) as s:
            s.shard.update(op)
            if s.build is not None:
                s.build.record(op)
            s.pending += points
            if points and s.build is None and self.build_after_points and s.pending >= self.build_after_points:
                self._start_build(name, s)

    # ---- background index builds (edge_build)
    def _start_build(self, name: str, s: _Shard) -> None:
        s.pending = 0
        s.shard.flush()
        try:
            s.build = ShadowBuild.start(self.root, name)
            self.builds["started"] += 1
        except OSError as e:
            log.error("qdrant-edge collection %r: background index build not started: %s", name, e)

    def _finish_build(self, name: str, s: _Shard) -> None:
        build, s.build = s.build, None
        t0 = time.perf_counter()
        if build.poll() != 0:
            log.error("qdrant-edge collection %r: background index build failed (%s); the live shard "
                      "stays as it is, the next build starts after %d more points", name, build.failure(),
                      self.build_after_points)
            build.abort()
            s.pending = 0
            self.builds["failed"] += 1
            return

        def close_live() -> None:
            s.shard.flush()
            s.shard.close()

        path = self.root / name
        replayed = len(build.ops)
        try:
            s.shard = build.swap(close_live, lambda p: _engine_call(qe.EdgeShard.load, str(p), where=p),
                                 lambda shard, op: shard.update(op))
        except Exception:
            log.exception("qdrant-edge collection %r: installing the background index build failed; "
                          "the live shard was put back", name)
            s.shard = _engine_call(qe.EdgeShard.load, str(path), where=path)
            s.pending = 0
            self.builds["failed"] += 1
            return
        self.builds["installed"] += 1
        log.info("qdrant-edge collection %r: background index build installed (%d operations "
                 "re-applied, %.2f s)", name, replayed, time.perf_counter() - t0)
        if self.build_after_points and s.pending >= self.build_after_points:
            self._start_build(name, s)

    def shard_info(self, collection: str):
        """The engine's ``ShardInfo`` (``points_count``, ``indexed_vectors_count``, ``segments_count``)."""
        with self._using(collection) as s:
            return s.shard.info()

    def poll_builds(self) -> int:
        """Install the background builds that finished; the number still running."""
        running = 0
        for name, s in list(self._open.items()):
            with s.lock:
                self._poll(name, s)
                running += s.build is not None
        return running

    def wait_builds(self, timeout: float | None = None) -> bool:
        """Wait until no background build runs (installing each as it ends, and any it chains to);
        False if some still runs after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll_builds():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # ---- engine hooks
    def _create(self, spec: CollectionSpec) -> None:
        with self._using(spec.name, spec) as s:
            existing = {field: info.data_type for field, info in s.shard.info().payload_schema.items()}
            for field, kind in {ID_FIELD: "keyword", **spec.payload_indexes}.items():
                if existing.get(field) == _SCHEMA[kind]:
                    continue
                if field in existing:
                    self._apply(spec.name, qe.UpdateOperation.delete_field_index(field))
                self._apply(spec.name, qe.UpdateOperation.create_field_index(field, _SCHEMA[kind]))

    def _dims(self, collection: str) -> tuple[int | dict[str, int], Distance]:
        with self._using(collection) as s:
            return s.size, s.distance

    def _upsert(self, collection, ids, vectors, payloads) -> None:
        points = [qe.Point(i, {n: x.tolist() for n, x in v.items()} if isinstance(v, dict) else v, p)
                  for i, v, p in zip(ids, vectors, payloads)]
        self._apply(collection, qe.UpdateOperation.upsert_points(points), points=len(points))

    def _delete(self, collection, ids) -> None:
        self._apply(collection, qe.UpdateOperation.delete_points(ids))

    def _set_payload(self, collection, ids, payload) -> None:
        self._apply(collection, qe.UpdateOperation.set_payload(ids, payload))

    def _existing(self, collection, ids):
        with self._using(collection) as s:
            records = s.shard.retrieve(ids, with_payload=False, with_vector=False)
        return [str(r.id) for r in records]

    def _retrieve_payloads(self, collection, ids):
        with self._using(collection) as s:
            records = s.shard.retrieve(ids, with_payload=True, with_vector=False)
        return [(r.id, r.payload) for r in records]

    def _retrieve(self, collection, ids):
        with self._using(collection) as s:
            records = s.shard.retrieve(ids, with_payload=True, with_vector=True)
        return [(r.id, r.vector, r.payload) for r in records]

    def _count(self, collection) -> int:
        with self._using(collection) as s:
            return s.shard.count(qe.CountRequest(exact=True))

    def _search(self, collection, queries, limit, must, must_not, exact, using=None):
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
        with self._using(collection) as s:
            if len(requests) == 1:
                results = [s.shard.query(requests[0])]
            else:
                results = s.shard.query_batch(qe.QueryBatchRequest(requests))
        return [[(p.id, p.score, p.payload) for p in rows] for rows in results]

    def optimize(self) -> None:
        """Run qdrant-edge's optimizers on every collection under ``root`` (blocking, in this
        process; opens and locks them; a running background build of one is abandoned)."""
        for path in sorted(self.root.iterdir()):
            if not path.name.startswith(".") and (path / "edge_config.json").exists():
                with self._using(path.name) as s:
                    if s.build is not None:
                        s.build.abort()
                        s.build = None
                    s.shard.optimize()
                    s.pending = 0

    def drop_collection(self, name: str) -> bool:
        import shutil

        path = self.root / name
        if not (path / "edge_config.json").exists() and not old_path(self.root, name).exists():
            return False
        s = self._open.pop(name, None)
        fd = s.lock_fd if s is not None else self._lock(name)
        try:
            if s is not None:
                with s.lock:
                    if s.build is not None:
                        s.build.abort()
                    s.shard.close()
            recover(self.root, name)
            shutil.rmtree(path)
        finally:
            os.close(fd)
        (self.root / f"{name}.lock").unlink(missing_ok=True)
        return True

    def close(self) -> None:
        """Stop running background builds (their copies are deleted), flush and close every
        collection, release the locks. Idempotent."""
        while self._open:
            name, s = self._open.popitem()
            with s.lock:
                try:
                    if s.build is not None:
                        s.build.abort()
                        s.build = None
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

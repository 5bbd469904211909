"""Sinks: batch the effects agents return and write them idempotently.

A sink collects effects with :meth:`add` and writes them with :meth:`flush`. The runtime flushes
every sink after each batch of consumed events and *before* those events are acknowledged, so
Faust only commits offsets whose effects are durable (at-least-once). Writes are keyed by ids
from the events and stamped with the event time (``USING TIMESTAMP``), so re-delivery and replay
produce the same rows (see ``infra/cassandra/schema.cql``).
"""
from __future__ import annotations

import json
import logging
import threading
import tomllib
from collections import defaultdict
from dataclasses import replace
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Mapping

from streams.contracts.effects import (Delete, MediaDelete, ShredKey, Upsert, VectorDelete, VectorSetPayload,
                                       VectorUpsert)

log = logging.getLogger("pulse.sinks")


class SinkError(RuntimeError):
    """A batch could not be written; nothing of it is acknowledged, so it will be re-delivered."""


BATCH_ROWS = 20
"""Rows per unlogged batch of :class:`CassandraSink` (measured: 20 rows, 8 in flight wrote
17.7k rows/s where one request per row wrote 5.0k/s; 50 rows were slower again)."""
BATCH_BYTES = 4_000
"""A batch's estimated size limit: under Cassandra's ``batch_size_warn_threshold`` (5 KiB)."""
ROW_OVERHEAD = 40
CELL_OVERHEAD = 12
"""Bytes a row and each of its cells add to a mutation beyond their values (key, timestamp,
flags: an estimate that kept the batches of the materializer's views under the warning)."""
BATCH_CONCURRENCY = 8
"""Batches in flight."""


def _size(v: Any) -> int:
    """A value's rough serialized size in bytes (strings by characters, numbers 8, 4 more per
    collection element).

    A collection whose first element is a number is sized as all numbers without visiting the
    rest: CQL collections are homogeneous, and a 168-hour map visited element by element cost
    more CPU than the driver's whole write of its row (``golden_moments``, measured)."""
    if v is None:
        return 0
    if isinstance(v, (str, bytes, bytearray)):
        return len(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        if not v:
            return 0
        if isinstance(next(iter(v)), (int, float)):
            return 12 * len(v)
        return sum(_size(x) + 4 for x in v)
    if isinstance(v, dict):
        return sum(_size(k) + _size(x) + 8 for k, x in v.items())
    return 8


def batch_groups(items: Iterable[tuple[Any, int, Any]], max_rows: int, max_bytes: int) -> list[list[Any]]:
    """``(group, size, item)`` triples as lists of items of one group each, in arrival order
    within a group, each list at most ``max_rows`` items and ``max_bytes`` in summed size; an
    item larger than ``max_bytes`` makes a list of its own. Every item is in exactly one list."""
    out: list[list[Any]] = []
    open_: dict[Any, tuple[list[Any], list[int]]] = {}
    for group, size, item in items:
        if size > max_bytes:
            out.append([item])
            continue
        rows, total = open_.setdefault(group, ([], [0]))
        if rows and (len(rows) >= max_rows or total[0] + size > max_bytes):
            out.append(list(rows))
            rows.clear()
            total[0] = 0
        rows.append(item)
        total[0] += size
    out.extend(list(rows) for rows, _ in open_.values() if rows)
    return out


def _unlogged(rows: list) -> Any:
    from cassandra.query import BatchStatement, BatchType

    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for bound in rows:
        batch.add(bound)
    return batch


class CassandraSink:
    """Batched, idempotent Cassandra writer for :class:`Upsert` and :class:`Delete` effects.

    Statements are prepared once per (table, column set). A flush sends the rows in unlogged
    batches of rows with the same primary replica (:meth:`_batches`, ``batch_rows`` rows at most,
    :data:`BATCH_CONCURRENCY` in flight); with ``batch_rows=1``, or when the driver has no token
    map, each row is its own request, ``concurrency`` in flight.
    Not thread-safe for concurrent ``add``/``flush`` from several threads (one per agent).

    :class:`ShredKey` effects delete subjects' keys through ``keys`` (a
    :class:`~streams.stores.keys.CassandraSubjectKeys`), after the batch's rows; a sink without
    one refuses them (:class:`SinkError`).
    """

    def __init__(self, session, concurrency: int = 64, keys=None, batch_rows: int = BATCH_ROWS):
        self.session = session
        self.batch_rows = batch_rows
        self.keys = keys
        self._shred: list[str] = []
        self.concurrency = concurrency
        self._prepared: dict[tuple, Any] = {}
        # per statement key: an upsert's (row, timestamp), or a delete's bound values
        self._pending: dict[tuple, list[tuple]] = defaultdict(list)
        # per statement key: primary-key values -> (timestamp, index in _pending[key])
        self._latest: dict[tuple, dict[tuple, tuple[int, int]]] = defaultdict(dict)
        self._keys: dict[str, tuple[str, ...]] = {}
        # (table, a row's columns in its own order) -> (statement key, the row's values in the
        # statement's column order, its primary-key values or None): what add() needs of a row,
        # worked out once per row shape
        self._shapes: dict[tuple, tuple[tuple, Any, Any]] = {}
        self._values: dict[tuple, Any] = {}  # statement key -> a row's values in its order
        self.rows_written = 0
        self.rows_coalesced = 0

    def _primary_key(self, table: str) -> tuple[str, ...]:
        """The table's primary-key columns from the driver's schema metadata (empty when the
        session has none, e.g. a test double: then nothing is coalesced)."""
        pk = self._keys.get(table)
        if pk is None:
            try:
                meta = self.session.cluster.metadata.keyspaces[self.session.keyspace].tables[table]
                pk = tuple(c.name for c in meta.primary_key)
            except Exception:  # no metadata for it: do not coalesce
                pk = ()
            self._keys[table] = pk
        return pk

    def __len__(self) -> int:
        return sum(len(v) for v in self._pending.values()) + len(self._shred)

    def _statement(self, key: tuple):
        stmt = self._prepared.get(key)
        if stmt is None:
            kind, table, cols = key
            if kind == "upsert":
                cql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                       f"({', '.join('?' for _ in cols)}) USING TIMESTAMP ?")
            else:
                where = " AND ".join(f"{c} = ?" for c in cols)
                cql = f"DELETE FROM {table} USING TIMESTAMP ? WHERE {where}"
            stmt = self._prepared[key] = self.session.prepare(cql)
        return stmt

    def _shape(self, table: str, row: Mapping[str, Any]) -> tuple[tuple, Any, Any]:
        cols = tuple(sorted(row))
        pk = self._primary_key(table)
        getter = itemgetter(*cols) if len(cols) > 1 else (lambda r, c=cols[0]: (r[c],))
        ident = None
        if pk and all(c in row for c in pk):
            ident = itemgetter(*pk)
        key = ("upsert", table, cols)
        self._values.setdefault(key, getter)
        self._shapes[(table, tuple(row))] = shape = (key, getter, ident)
        return shape

    def add(self, effect: Upsert | Delete) -> None:
        """Buffer one effect (no I/O). An upsert's values are read from its row when the buffer
        is flushed (effects are immutable), and only for the rows that are written."""
        if isinstance(effect, Upsert):
            row = effect.row
            shape = self._shapes.get((effect.table, tuple(row)))
            key, _, ident_of = shape if shape is not None else self._shape(effect.table, row)
            ts = effect.timestamp_us
            if ident_of is not None:
                # coalesce: of several upserts of the same columns of one row in this flush,
                # only the newest can survive (last write wins by timestamp on every cell it
                # writes), so only it is sent; equal timestamps are all sent (Cassandra breaks
                # those ties by value)
                ident = ident_of(row)
                latest = self._latest[key]
                prev = latest.get(ident)
                if prev is not None and prev[0] != ts:
                    self.rows_coalesced += 1
                    if ts > prev[0]:
                        self._pending[key][prev[1]] = (row, ts)
                        latest[ident] = (ts, prev[1])
                    return
                latest[ident] = (ts, len(self._pending[key]))
            self._pending[key].append((row, ts))
        elif isinstance(effect, ShredKey):
            if self.keys is None:
                raise SinkError("a ShredKey effect, but this Cassandra sink was opened without the "
                                "subject key store (streams.stores.keys)")
            self._shred.append(effect.subject)
        elif isinstance(effect, Delete):
            cols = tuple(sorted(effect.key))
            self._pending[("delete", effect.table, cols)].append(
                (effect.timestamp_us,) + tuple(effect.key[c] for c in cols))
        else:
            raise TypeError(f"CassandraSink cannot write {type(effect).__name__}")

    def _batches(self, stmt: Any, params: list[tuple]) -> list[Any] | None:
        """``params`` bound to ``stmt`` and grouped into unlogged batches of rows whose partitions
        have the same primary replica, at most :attr:`batch_rows` rows and about
        :data:`BATCH_BYTES` bytes each (a row alone is sent as its bound statement); ``None``
        when the driver has no token map to group by (then every row is its own request).

        Why: each request costs the driver about 0.2 ms of Python, which bounded the sinks at
        about 5k rows/s on the 2-core machine; grouped 20 to a batch they wrote 3.5 times as many
        in a microbenchmark, and the materializer's rebuild ran about 20 % faster (docs/replay.md).
        An unlogged batch is not atomic across partitions and is no slower for the cluster when
        its rows share replicas (the primary replica fixes the replica set): grouping by replica
        set is what the Spark Cassandra connector does
        (``spark.cassandra.output.batch.grouping.key = replica_set``). Every row keeps its own
        ``USING TIMESTAMP``, so the rows written are the same as one request per row.
        """
        try:
            token_map = self.session.cluster.metadata.token_map
            keyspace = self.session.keyspace
        except AttributeError:
            return None
        if token_map is None or not keyspace:
            return None

        def tagged():
            for p in params:
                bound = stmt.bind(p)
                routing = bound.routing_key
                replicas = token_map.get_replicas(keyspace, token_map.token_class.from_key(routing)) \
                    if routing is not None else ()
                yield (replicas[0] if replicas else None,
                       ROW_OVERHEAD + sum(_size(v) + CELL_OVERHEAD for v in p), bound)

        return [_unlogged(rows) if len(rows) > 1 else rows[0]
                for rows in batch_groups(tagged(), self.batch_rows, BATCH_BYTES)]

    def flush(self) -> int:
        """Write every buffered effect; returns the number of statements executed.

        Raises
        ------
        SinkError
            Any write failed (the buffer is kept, so the caller may retry or crash and be re-delivered).
        """
        from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args

        done = 0
        for key in list(self._pending):
            params = self._pending[key]
            if key[0] == "upsert":
                values = self._values[key]
                params = [values(row) + (ts,) for row, ts in params]
            try:
                stmt = self._statement(key)
                batches = self._batches(stmt, params) if self.batch_rows > 1 and len(params) > 1 else None
                if batches is None:
                    execute_concurrent_with_args(self.session, stmt, params,
                                                 concurrency=self.concurrency, raise_on_first_error=True)
                else:
                    execute_concurrent(self.session, [(b, None) for b in batches],
                                       concurrency=BATCH_CONCURRENCY, raise_on_first_error=True)
            except Exception as exc:
                raise SinkError(f"writing {len(params)} rows to {key[1]} failed: {exc}") from exc
            done += len(params)
            del self._pending[key]
            self._latest.pop(key, None)
        if self._shred:
            try:
                for subject in list(self._shred):
                    self.keys.shred(subject)
                    self._shred.remove(subject)
                    done += 1
            except Exception as exc:
                raise SinkError(f"shredding subject keys failed: {exc}") from exc
        self.rows_written += done
        return done


class VectorSink:
    """Batched writer of :class:`VectorUpsert` / :class:`VectorDelete` / :class:`VectorSetPayload`
    effects to a ``VectorIndex``.

    Upserts by id are idempotent. Within one batch the effects on an id apply in the order they
    were added, folded so each id costs one write: the last upsert or delete of an id wins; a
    payload update after an upsert of the same id is merged into that upsert's payload; one before
    an upsert is overwritten by it (an upsert replaces the whole payload, as in Qdrant); one after a
    delete is dropped (missing ids are ignored). The remaining payload updates are sent after the
    upserts and deletes, one ``set_payload`` call per distinct payload. An upsert's ``keep`` keys
    survive it: from a buffered update or upsert of the id, else from the stored point (its payload
    read once per collection at flush, without its vectors).

    Collections: before its first upsert into a collection, the sink checks that the collection
    exists and, where it does not, creates it from its definition in ``collections`` (default
    ``infra/qdrant/collections.toml``, :func:`~streams.stores.vectors.load_collection_specs`).
    A width the file gives by name (``size = "embedding_dim"``, ``image = "image_dim"``) is
    taken from the lengths of the vectors being upserted, so the collection fits the model that
    wrote them; a named width none of them carries keeps the file's value. An existing collection
    is left as it is (``pulse up`` provisions and checks collections). Each collection is checked
    once per sink. A collection the file does not define is not created (its upserts fail).
    """

    def __init__(self, index, collections: str | Path | None = None):
        self.index = index
        self._collections_toml = collections
        self._ensured: set[str] = set()
        self._upserts: dict[str, dict[str, Any]] = defaultdict(dict)
        self._deletes: dict[str, set[str]] = defaultdict(set)
        self._payloads: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.points_written = 0

    def __len__(self) -> int:
        return sum(len(v) for store in (self._upserts, self._deletes, self._payloads) for v in store.values())

    def add(self, effect: VectorUpsert | VectorDelete | VectorSetPayload) -> None:
        """Buffer one effect (no I/O)."""
        c = effect.collection
        if isinstance(effect, VectorUpsert):
            deleted = effect.id in self._deletes[c]
            self._deletes[c].discard(effect.id)
            pending = self._payloads[c].pop(effect.id, None) or {}
            if effect.keep:
                # where the kept keys' values come from: an earlier upsert of the id in this batch
                # (its payload, plus what it still reads from storage), else the buffered payload
                # updates and the stored point, unless the id was deleted in this batch
                earlier = self._upserts[c].get(effect.id)
                if earlier is not None:
                    source, storable = earlier.payload, set(earlier.keep)
                else:
                    source, storable = pending, set() if deleted else set(effect.keep)
                kept = {k: source[k] for k in effect.keep if k in source and k not in effect.payload}
                effect = replace(effect, payload={**kept, **effect.payload}, keep=tuple(
                    k for k in effect.keep if k in storable and k not in kept and k not in effect.payload))
            self._upserts[c][effect.id] = effect
        elif isinstance(effect, VectorDelete):
            for i in effect.ids:
                self._upserts[c].pop(i, None)
                self._payloads[c].pop(i, None)
                self._deletes[c].add(i)
        elif isinstance(effect, VectorSetPayload):
            if isinstance(effect.ids, str):  # a lone id would iterate as characters
                raise TypeError(f"VectorSetPayload.ids is a tuple of ids, not the string {effect.ids!r}")
            for i in effect.ids:
                if i in self._upserts[c]:
                    u = self._upserts[c][i]
                    self._upserts[c][i] = replace(u, payload={**u.payload, **effect.payload})
                elif i not in self._deletes[c]:
                    self._payloads[c].setdefault(i, {}).update(effect.payload)
        else:
            raise TypeError(f"VectorSink cannot write {type(effect).__name__}")

    def _stored_keys(self, collection: str, upserts: list[VectorUpsert]) -> dict[str, dict[str, Any]]:
        """id -> the stored values of each upsert's ``keep`` keys (one payload read per
        collection, vectors not fetched)."""
        if not upserts or not self._exists(collection):
            return {}
        keep = {e.id: e.keep for e in upserts}
        return {i: {k: payload[k] for k in keep[i] if k in payload}
                for i, payload in self.index.payloads(collection, list(keep)).items()}

    def _ensure(self, collection: str, upserts: list[VectorUpsert]) -> None:
        """Create ``collection`` from its definition if it does not exist (once per sink; see the
        class docstring).

        Raises
        ------
        ValueError
            Two upserted vectors give one named width different lengths.
        """
        if collection in self._ensured:
            return
        if not self._exists(collection):
            spec = self._spec(collection, upserts)
            if spec is None:
                return  # not Pulse's to define: the upsert reports the missing collection
            self.index.ensure_collection(spec)
            log.info("vector collection %r created (%s)", collection, spec.size)
        self._ensured.add(collection)

    def _spec(self, collection: str, upserts: list[VectorUpsert]):
        """The collection's spec from the collections file, its named widths inferred from
        ``upserts``' vectors; ``None`` when the file does not define the collection."""
        from streams.stores.vectors import COLLECTIONS_TOML, load_collection_specs

        path = self._collections_toml or COLLECTIONS_TOML
        with open(path, "rb") as f:
            table = tomllib.load(f).get("collections", {}).get(collection)
        if table is None:
            return None
        # vector name (None: the one unnamed vector) -> the top-level constant naming its width
        named = {v: size for v, size in (table.get("vectors") or {None: table.get("size")}).items()
                 if isinstance(size, str)}
        dims: dict[str, int] = {}
        for e in upserts:
            for vector_name, constant in named.items():
                if vector_name is None:
                    v = None if isinstance(e.vector, Mapping) else e.vector
                else:
                    v = e.vector.get(vector_name) if isinstance(e.vector, Mapping) else None
                if v is None:
                    continue
                n = len(v)
                if dims.setdefault(constant, n) != n:
                    raise ValueError(f"collection {collection!r}: vectors of width {constant!r} "
                                     f"have lengths {dims[constant]} and {n} (point {e.id!r})")
        return load_collection_specs(path, dims=dims)[collection]

    def _exists(self, collection: str) -> bool:
        from streams.stores.vectors import CollectionNotFoundError

        try:
            self.index.dims(collection)
            return True
        except CollectionNotFoundError:
            return False

    def flush(self) -> int:
        """Write buffered effects; returns how many points were upserted, deleted or updated
        (a payload update of an id that has no point counts too: the engine ignores it).

        Raises
        ------
        SinkError
            A write failed; what was not written stays buffered for the next flush.
        """
        from streams.stores.vectors import Point

        done = 0
        try:
            for coll, effects in list(self._upserts.items()):
                if effects:
                    self._ensure(coll, list(effects.values()))
                    stored = self._stored_keys(coll, [e for e in effects.values() if e.keep])
                    self.index.upsert(coll, [Point(e.id, e.vector, {**stored.get(e.id, {}), **e.payload})
                                             for e in effects.values()])
                    done += len(effects)
                del self._upserts[coll]
            for coll, ids in list(self._deletes.items()):
                if ids and self._exists(coll):  # no collection: no point to delete (erasure)
                    self.index.delete(coll, sorted(ids))
                    done += len(ids)
                del self._deletes[coll]
            for coll, by_id in list(self._payloads.items()):
                if not self._exists(coll):
                    # no collection, so no point to update: like a missing id, nothing to do
                    log.warning("payload updates of %d point(s) dropped: no collection %r yet",
                                len(by_id), coll)
                    del self._payloads[coll]
                    continue
                groups: dict[str, list[str]] = defaultdict(list)
                for i, payload in by_id.items():
                    groups[json.dumps(payload, sort_keys=True, default=str)].append(i)
                for ids in groups.values():
                    self.index.set_payload(coll, ids, by_id[ids[0]])
                    for i in ids:
                        del by_id[i]
                    done += len(ids)
                del self._payloads[coll]
        except Exception as exc:  # the engines raise many types; what is not written stays buffered
            raise SinkError(f"writing vectors failed: {exc}") from exc
        self.points_written += done
        return done


class MediaSink:
    """Deletes media store files for :class:`MediaDelete` effects (the eraser's), after the
    batch's rows and points are written (:meth:`SinkSet.flush` flushes it last).

    ``store``: a :class:`streams.stores.media.MediaStore`. ``dry``: only count (a rebuild into a
    scratch keyspace must not touch the live store). A URI that is not a store name is logged
    and skipped (the eraser only emits store names), never retried.
    """

    def __init__(self, store: Any, dry: bool = False) -> None:
        self.store = store
        self.dry = dry
        self._pending: list[str] = []
        self.deleted = 0
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, effect: MediaDelete) -> None:
        """Buffer one deletion (no I/O)."""
        self._pending.append(effect.uri)

    def flush(self) -> int:
        """Delete every buffered file; returns how many deletions were handled.

        Raises
        ------
        SinkError
            A file exists but cannot be deleted (the rest stays buffered, so a retry repeats it).
        """
        done = 0
        while self._pending:
            uri = self._pending[0]
            if not self.dry:
                try:
                    if self.store.delete(uri):
                        self.deleted += 1
                except ValueError as exc:
                    log.error("media deletion skipped: %s", exc)
                    self.skipped += 1
                except OSError as exc:
                    raise SinkError(f"deleting media {uri} failed: {exc}") from exc
            self._pending.pop(0)
            done += 1
        return done


class SinkSet:
    """The sinks one worker process writes through; routes each effect to its sink.

    ``flush`` is called from an executor thread, so a lock serialises agents sharing the set.
    """

    def __init__(self, cassandra: CassandraSink | None = None, vectors: VectorSink | None = None,
                 media: MediaSink | None = None):
        self.cassandra = cassandra
        self.vectors = vectors
        self.media = media
        self._lock = threading.Lock()

    def add(self, effects: Iterable[Upsert | Delete | VectorUpsert | VectorDelete | VectorSetPayload]) -> None:
        """Buffer ``effects`` in their sinks (no I/O).

        Raises
        ------
        SinkError
            An effect needs a store this worker has not opened (a configuration error).
        """
        with self._lock:
            for e in effects:
                if isinstance(e, (Upsert, Delete, ShredKey)):
                    if self.cassandra is None:
                        raise SinkError(f"{type(e).__name__} effect but no Cassandra is configured")
                    self.cassandra.add(e)
                elif isinstance(e, MediaDelete):
                    if self.media is None:
                        raise SinkError("MediaDelete effect but no media sink is open")
                    self.media.add(e)
                else:
                    if self.vectors is None:
                        raise SinkError(f"effect on collection {e.collection!r} but no vector index is open")
                    self.vectors.add(e)

    def flush(self) -> int:
        """Write everything buffered (blocking; run it in an executor). Returns rows/points written.

        Raises
        ------
        SinkError
            A store refused or could not be reached; unwritten effects stay buffered, so calling
            ``flush`` again retries exactly them.
        """
        with self._lock:
            n = 0
            if self.cassandra is not None:
                n += self.cassandra.flush()
            if self.vectors is not None:
                n += self.vectors.flush()
            if self.media is not None:  # last: files go once the rows naming them are gone
                n += self.media.flush()
            return n

    def write(self, effects: Iterable[Upsert | Delete | VectorUpsert | VectorDelete | VectorSetPayload]) -> int:
        """:meth:`add` then :meth:`flush`."""
        self.add(effects)
        return self.flush()

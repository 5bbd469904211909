"""Exporting a topic to Parquet for analysts: one column per event field, plus its position.

The Arrow schema is derived from the event type's current Avro schema (the data contract,
``schemas/avro``), never written by hand. Mapping (Avro 1.11 specification types):

==============================  ========================================================
Avro                            Arrow
==============================  ========================================================
string, string/uuid             ``string``
int / long                      ``int32`` / ``int64``
float / double                  ``float32`` / ``float64``
boolean, bytes, fixed(n)        ``bool``, ``binary``, ``fixed_size_binary(n)``
long/timestamp-millis           ``timestamp[ms, tz=UTC]`` (``-micros``: ``timestamp[us, tz=UTC]``)
int/date                        ``date32``
enum                            ``string`` (symbols in the field metadata ``avro.symbols``)
array<T>                        ``list<T>``
map<T>                          ``map<string, T>``
record                          ``struct`` of its fields
["null", T]                     ``T``, nullable (every other field is non-nullable)
==============================  ========================================================

Other unions have no Arrow counterpart here and raise :class:`ExportError`. Field ``doc`` strings
travel as field metadata (``doc``). Four columns locate each row in the log: ``_topic``
(string), ``_partition`` (int32), ``_offset`` (int64) and ``_timestamp_ms`` (int64, the Kafka
timestamp in UTC epoch ms).
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import pickle
import queue
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from streams.contracts.schemas import default_catalog
from streams.settings import Settings
from streams.contracts.topics import topic_spec

from replay.reader import (OWN_KEYS, Position, message_counts, read_topic_batches, reader_keys,
                           scan_into, scan_limit)

ROW_GROUP_SIZE = 10_000
"""Rows per Parquet row group: also how many rows the exporter holds in memory at once."""

POSITION_COLUMNS = (pa.field("_topic", pa.string(), nullable=False),
                    pa.field("_partition", pa.int32(), nullable=False),
                    pa.field("_offset", pa.int64(), nullable=False),
                    pa.field("_timestamp_ms", pa.int64()))

_POSITION_NAMES = frozenset(f.name for f in POSITION_COLUMNS)

_PRIMITIVES = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
               "double": pa.float64(), "boolean": pa.bool_(), "bytes": pa.binary(), "null": pa.null()}
_LOGICAL = {("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
            ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
            ("int", "date"): pa.date32(), ("string", "uuid"): pa.string()}


class ExportError(ValueError):
    """An Avro type has no Arrow mapping here, or the output cannot be written; the message names
    the field path."""


def arrow_type(avro: Any, named: dict[str, tuple[pa.DataType, Any]] | None = None, path: str = "",
               namespace: str | None = None) -> tuple[pa.DataType, bool]:
    """``(arrow_type, nullable)`` of one Avro type (JSON form). ``named`` collects the named types
    met so far (records, enums, fixed) as ``{full or short name: (arrow_type, avro_definition)}``
    so that later references by name resolve.

    Raises
    ------
    ExportError
        A union other than ``["null", T]``, or an unknown type reference.
    """
    named = {} if named is None else named
    where = path or "<root>"
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise ExportError(f"{where}: union {avro} has no Arrow mapping (only [\"null\", T] has)")
        return arrow_type(branches[0], named, path, namespace)[0], len(branches) < len(avro)
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro], avro == "null"
        found = _named(avro, named, namespace)
        if found is None:
            raise ExportError(f"{where}: unknown named type {avro!r}")
        return found[0], False
    t = avro.get("type")
    logical = _LOGICAL.get((t, avro.get("logicalType")))
    if logical is not None:
        return logical, False
    if t in ("record", "error", "enum", "fixed"):
        name = avro["name"]
        ns = name.rpartition(".")[0] if "." in name else avro.get("namespace", namespace)
        full = name if "." in name else f"{ns}.{name}" if ns else name
        if t == "enum":
            dt = pa.string()
        elif t == "fixed":
            dt = pa.binary(int(avro["size"]))
        else:
            dt = pa.struct([arrow_field(f, named, f"{path}.{f['name']}" if path else f["name"], ns)
                            for f in avro["fields"]])
        named[full] = named[full.rpartition(".")[2]] = (dt, avro)
        return dt, False
    if t == "array":
        item, nullable = arrow_type(avro["items"], named, f"{path}[]", namespace)
        return pa.list_(pa.field("item", item, nullable=nullable)), False
    if t == "map":
        value, nullable = arrow_type(avro["values"], named, f"{path}{{}}", namespace)
        return pa.map_(pa.string(), pa.field("value", value, nullable=nullable)), False
    return arrow_type(t, named, path, namespace)  # {"type": "long"} and unknown logical types


def _named(ref: str, named: dict, namespace: str | None):
    full = ref if "." in ref else f"{namespace}.{ref}" if namespace else ref
    return named.get(full) or named.get(ref)


def arrow_field(field: Mapping[str, Any], named: dict[str, tuple[pa.DataType, Any]], path: str,
                namespace: str | None) -> pa.Field:
    """The Arrow field of one Avro record field, with its ``doc`` (and enum symbols) as metadata."""
    dt, nullable = arrow_type(field["type"], named, path, namespace)
    meta = {"doc": field["doc"]} if field.get("doc") else {}
    for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
        if isinstance(branch, str) and branch not in _PRIMITIVES:
            branch = (_named(branch, named, namespace) or (None, None))[1]
        if isinstance(branch, dict) and branch.get("type") == "enum":
            meta["avro.symbols"] = ",".join(branch["symbols"])
    return pa.field(field["name"], dt, nullable=nullable, metadata=meta or None)


def arrow_schema(event_type: str) -> pa.Schema:
    """The Arrow schema of ``event_type``'s current Avro schema plus :data:`POSITION_COLUMNS`.

    Raises
    ------
    KeyError
        Unknown event type.
    ExportError
        A field has no Arrow mapping, or is named like a position column.
    """
    version = default_catalog().current(event_type)
    avro = version.schema
    named: dict[str, tuple[pa.DataType, Any]] = {}
    fields = [arrow_field(f, named, f["name"], avro.get("namespace")) for f in avro["fields"]]
    clash = {f.name for f in fields} & {c.name for c in POSITION_COLUMNS}
    if clash:
        raise ExportError(f"{version.full_name}: fields {sorted(clash)} clash with the position columns")
    return pa.schema(fields + list(POSITION_COLUMNS),
                     metadata={"avro.schema": version.full_name, "avro.version": str(version.version)})


def row_group_table(records: list[dict[str, Any]], positions: list[Position], schema: pa.Schema,
                    first_row: int = 0) -> pa.Table:
    """One row group's decoded records and their positions as an Arrow table of ``schema``, built
    column by column (one ``pa.array`` per field over the group's values, not a dict per row).
    ``first_row`` only numbers the rows in an error message, which also names the first and
    last row's position in the log.

    Raises
    ------
    ExportError
        A record does not fit ``schema`` (e.g. a null in a non-nullable column).
    """
    topics, partitions, offsets, stamps = zip(*positions) if positions else ((), (), (), ())
    if stamps and min(stamps) < 0:  # no timestamp (librdkafka's -1)
        stamps = [t if t >= 0 else None for t in stamps]
    columns = {"_topic": topics, "_partition": partitions, "_offset": offsets, "_timestamp_ms": stamps}
    try:
        # one C-level pass per column (map of dict.get), not a Python loop per row
        arrays = {f.name: pa.array(list(map(dict.get, records, itertools.repeat(f.name))), type=f.type)
                  for f in schema if f.name not in _POSITION_NAMES}
        arrays.update({name: pa.array(values, type=schema.field(name).type)
                       for name, values in columns.items()})
        nulls = [f.name for f in schema if not f.nullable and arrays[f.name].null_count]
        if nulls:  # Arrow builds such a table; the Parquet writer would refuse it
            raise pa.ArrowInvalid(f"null in the non-nullable column(s) {', '.join(nulls)}")
        return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        last = first_row + len(records) - 1
        where = (f" ({positions[0].topic}[{positions[0].partition}]@{positions[0].offset} to "
                 f"[{positions[-1].partition}]@{positions[-1].offset})" if positions else "")
        raise ExportError(f"rows {first_row}..{last}{where} do not fit the Arrow schema: {exc}") from exc


def row_groups(rows: Iterable[tuple[Position, dict[str, Any]]], schema: pa.Schema,
               row_group_size: int = ROW_GROUP_SIZE) -> Iterator[pa.Table]:
    """Decoded ``(Position, record)`` pairs as Arrow tables of ``row_group_size`` rows (the last
    one shorter): :func:`row_group_table` of each group, so memory stays bounded.

    Raises
    ------
    ExportError
        A record does not fit ``schema``.
    """
    rows = iter(rows)

    def batches() -> Iterator[tuple[list[Position], list[dict[str, Any]]]]:
        while chunk := list(itertools.islice(rows, row_group_size)):
            yield [pos for pos, _ in chunk], [record for _, record in chunk]

    return row_groups_of_batches(batches(), schema, row_group_size)


def row_groups_of_batches(batches: Iterable[tuple[list[Position], list[dict[str, Any]]]],
                          schema: pa.Schema, row_group_size: int = ROW_GROUP_SIZE
                          ) -> Iterator[pa.Table]:
    """:func:`row_groups` of ``(positions, records)`` batches (as
    :func:`replay.reader.read_topic_batches` yields them): tables of ``row_group_size`` rows,
    the last one shorter."""
    positions: list[Position] = []
    records: list[dict[str, Any]] = []
    n = 0
    for batch_positions, batch_records in batches:
        positions.extend(batch_positions)
        records.extend(batch_records)
        while len(records) >= row_group_size:
            yield row_group_table(records[:row_group_size], positions[:row_group_size], schema,
                                  first_row=n)
            n += row_group_size
            del records[:row_group_size], positions[:row_group_size]
    if records:
        yield row_group_table(records, positions, schema, first_row=n)


class _ParquetFiles:
    """One Parquet file (zstd) per topic, each written row group by row group to a temporary
    file beside it and moved into place by :meth:`commit`, so a failed export leaves no partial
    file. ``on_progress(topic, rows)`` is told each topic's rows written so far after each of
    its tables, and ``0`` once at the commit for a topic that had none."""

    def __init__(self, outputs: Mapping[str, Path], schemas: Mapping[str, pa.Schema],
                 on_progress: Callable[[str, int], None] | None = None) -> None:
        self.paths = dict(outputs)
        self.schemas = dict(schemas)
        self.rows = dict.fromkeys(self.paths, 0)
        self.groups = dict.fromkeys(self.paths, 0)
        self._tmp = {t: p.with_name(f".{p.name}.{os.getpid()}.tmp") for t, p in self.paths.items()}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._on_progress = on_progress

    def __enter__(self) -> "_ParquetFiles":
        try:
            for topic, tmp in self._tmp.items():
                self._writers[topic] = pq.ParquetWriter(tmp, self.schemas[topic], compression="zstd")
        except BaseException:
            self._discard()
            raise
        return self

    def write(self, topic: str, table: pa.Table) -> None:
        """Write ``table`` as one row group of ``topic``'s file.

        Raises
        ------
        ExportError
            ``table`` does not fit the schema as the Parquet writer checks it.
        """
        n = self.rows[topic]
        try:
            self._writers[topic].write_table(table, row_group_size=max(1, table.num_rows))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # e.g. a null nested deeper
            where = f"{topic}: " if topic else ""
            raise ExportError(f"{where}rows {n}..{n + table.num_rows - 1} do not fit the Arrow "
                              f"schema: {exc}") from exc
        self.rows[topic] = n + table.num_rows
        self.groups[topic] += 1
        if self._on_progress:
            self._on_progress(topic, self.rows[topic])

    def commit(self) -> None:
        """Close every file and move it to its path."""
        while self._writers:
            topic, writer = self._writers.popitem()
            writer.close()
            os.replace(self._tmp[topic], self.paths[topic])
            if self._on_progress and not self.groups[topic]:
                self._on_progress(topic, 0)

    def _discard(self) -> None:
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the export's own error is the one raised
                pass
        self._writers.clear()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)

    def __exit__(self, *exc: Any) -> None:
        self._discard()


def write_tables(tables: Iterable[pa.Table], schema: pa.Schema, out_path: Path, *,
                 on_progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write Arrow ``tables`` of ``schema`` to a Parquet file (zstd), one row group per table.
    Writes ``out_path`` via a temporary file, so a failed export leaves no partial file.
    ``on_progress(rows)`` is told the rows written so far after each table (``0`` once if there
    was none). Returns
    ``(rows, row_groups)``.

    Raises
    ------
    ExportError
        A table does not fit ``schema`` as the Parquet writer checks it.
    """
    progress = None if on_progress is None else (lambda _topic, n: on_progress(n))
    with _ParquetFiles({"": Path(out_path)}, {"": schema}, progress) as files:
        for table in tables:
            files.write("", table)
        files.commit()
    return files.rows[""], files.groups[""]


def write_parquet(rows: Iterable[tuple[Position, dict[str, Any]]], schema: pa.Schema, out_path: Path, *,
                  row_group_size: int = ROW_GROUP_SIZE,
                  on_progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write decoded ``(Position, record)`` pairs to a Parquet file (zstd), ``row_group_size``
    rows per row group (:func:`row_groups` into :func:`write_tables`). Returns
    ``(rows, row_groups)``.

    Raises
    ------
    ExportError
        A record does not fit ``schema`` (e.g. a null in a non-nullable column).
    """
    return write_tables(row_groups(rows, schema, row_group_size), schema, out_path,
                        on_progress=on_progress)


PARALLEL_MIN_MESSAGES = 100_000
"""Messages each export process must have to read before :func:`default_jobs` starts another.
A process costs about half a second to start (a fresh interpreter importing pyarrow, the
codecs and the Kafka and Cassandra clients, and connecting), and one process exports tens of
thousands of messages a second here: below this many a second reader saves little, and where
the servers share the cores it can lose (docs/replay.md: `signups`, 162,667 messages, was
slower in two processes on 2 cores)."""


def default_jobs(messages: int, partitions: int, cpus: int | None = None) -> int:
    """How many processes export ``messages`` messages in ``partitions`` non-empty partitions (of
    one topic or of several exported together): one per CPU (``cpus``, default
    ``os.cpu_count()``), at most one per partition (a partition is read by one process, which
    keeps its offset order), and one per
    :data:`PARALLEL_MIN_MESSAGES` messages; at least 1."""
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    return max(1, min(cpus, partitions, messages // PARALLEL_MIN_MESSAGES))


def plan_units(counts: Mapping[str, Mapping[int, int]]) -> list[tuple[str, int, int]]:
    """The units of a parallel export: ``(topic, partition, messages)`` for every non-empty
    partition of ``counts`` (``{topic: {partition: messages}}``, as
    :func:`replay.reader.message_counts` gives them), largest first (ties: the topics' order in
    ``counts``, then the partition). Each partition is read by one process, in offset order;
    processes take the units in this order as each becomes free: list scheduling in LPT order,
    within 4/3 of the shortest possible makespan (Graham 1969)."""
    order = {topic: i for i, topic in enumerate(counts)}
    units = [(topic, p, m) for topic, parts in counts.items() for p, m in parts.items() if m > 0]
    return sorted(units, key=lambda u: (-u[2], order[u[0]], u[1]))


def _topic_tables(settings: Settings, topic: str, partitions: list[int] | None, start_ms: int | None,
                  end_ms: int | None, on_error: str, row_group_size: int, keys: Any = OWN_KEYS
                  ) -> Iterator[pa.Table]:
    """The row groups of ``partitions`` of ``topic`` (``None``: all), read and decoded here."""
    batches = read_topic_batches(settings, topic, start_ms=start_ms, end_ms=end_ms,
                                 on_error=on_error, partitions=partitions, keys=keys)
    return row_groups_of_batches(batches, arrow_schema(topic_spec(topic).schema), row_group_size)


def _claim(counter: Any) -> int:
    """The index of the next unit for this process (``counter``: a shared ``multiprocessing``
    integer, taken and advanced under its lock)."""
    with counter.get_lock():
        i = counter.value
        counter.value = i + 1
    return i


def _claimed_tables(settings: Settings, units: list[tuple[str, int, int]], counter: Any,
                    start_ms: int | None, end_ms: int | None, on_error: str, row_group_size: int,
                    scan_keys: int = 0) -> Iterator[tuple[str, pa.Table]]:
    """``(topic, row group)`` of the units this process claims (:func:`_claim`) one after
    another until none is left, with one connection and key cache for every unit's personal
    fields (:func:`replay.reader.reader_keys`)."""
    keys = reader_keys(settings, scan_keys)
    try:
        while (i := _claim(counter)) < len(units):
            topic, partition, _ = units[i]
            for table in _topic_tables(settings, topic, [partition], start_ms, end_ms, on_error,
                                       row_group_size, keys=keys):
                yield topic, table
    finally:
        if keys is not None:
            keys.close()


def _export_worker(settings: Settings, units: list[tuple[str, int, int]], counter: Any,
                   start_ms: int | None, end_ms: int | None, on_error: str, row_group_size: int,
                   scan_keys: int, out: Any) -> None:
    """In an export process: put each claimed unit's row groups on ``out`` as
    ``("table", topic, table)``, then ``("done", None, None)``; an exception is put as
    ``("error", None, exc)`` (one that cannot be pickled as a :class:`ExportError` with its
    text)."""
    try:
        for topic, table in _claimed_tables(settings, units, counter, start_ms, end_ms, on_error,
                                            row_group_size, scan_keys):
            out.put(("table", topic, table))
        out.put(("done", None, None))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001
            exc = ExportError(f"{type(exc).__name__}: {exc}")
        out.put(("error", None, exc))


def _tables_from_processes(settings: Settings, units: list[tuple[str, int, int]], jobs: int,
                           start_ms: int | None, end_ms: int | None, on_error: str,
                           row_group_size: int, scan_keys: int = 0
                           ) -> Iterator[tuple[str, pa.Table]]:
    """``(topic, row group)`` of every unit, yielded as they arrive, read by ``jobs`` processes:
    this one and ``jobs - 1`` started for the export (``spawn``: a fresh interpreter, no threads
    inherited from this one), each claiming the next unit when it is free. This process also
    hands on every row group (to the writer), so it takes part in the reading rather than wait
    beside N readers: one process fewer competing for the cores. The other processes' row
    groups are taken between this one's, and once it has no unit left. An error in any process
    is raised here, and the other processes are stopped; so are they all when the caller stops
    early."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    out = ctx.Queue(maxsize=4 * jobs)  # bounded: the readers wait for the writer
    procs = [ctx.Process(target=_export_worker, name=f"pulse-export-{i}", daemon=True,
                         args=(settings, units, counter, start_ms, end_ms, on_error, row_group_size,
                               scan_keys, out))
             for i in range(1, jobs)]
    for proc in procs:
        proc.start()
    running = len(procs)

    def take(block: bool) -> Iterator[tuple[str, pa.Table]]:
        """The tables the other processes have sent: those ready now, or (``block``) at least
        one message, waiting for it."""
        nonlocal running
        while running:
            try:
                kind, topic, value = out.get(timeout=1.0) if block else out.get_nowait()
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise ExportError(f"export process {dead[0].name} exited with code "
                                      f"{dead[0].exitcode} before it finished") from None
                if not block:
                    return
                continue
            if kind == "table":
                yield topic, value
            elif kind == "done":
                running -= 1
            else:
                raise value
            if block:
                return

    try:
        for item in _claimed_tables(settings, units, counter, start_ms, end_ms, on_error,
                                    row_group_size, scan_keys):
            yield item
            yield from take(block=False)
        while running:
            yield from take(block=True)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
        out.close()


def export_topics(settings: Settings, outputs: Mapping[str, Path | str], *,
                  start_ms: int | None = None, end_ms: int | None = None,
                  on_progress: Callable[[str, int], None] | None = None,
                  row_group_size: int = ROW_GROUP_SIZE, skip_undecodable: bool = False,
                  jobs: int | None = 1, counts: Mapping[str, Mapping[int, int]] | None = None
                  ) -> list[dict]:
    """Decode each topic of ``outputs`` (``{topic: Parquet path}``; messages with Kafka
    timestamp in ``[start_ms, end_ms)``, epoch ms) as :func:`replay.reader.read_topic` reads
    it, and write it to its Parquet file. ``on_progress(topic, rows)`` is told each topic's
    rows written so far. ``counts``: the topics' ``{partition: messages}`` from ``start_ms``
    (:func:`replay.reader.message_counts`), when the caller has read them already (for its
    progress totals); read here otherwise.

    ``skip_undecodable`` leaves out messages that do not decode (they are in ``dead-letters``
    already); by default such a message stops the export with a :class:`CodecError` naming it.

    ``jobs`` processes read and decode side by side, the topics together: every non-empty
    partition of every topic is a unit (:func:`plan_units`), read in offset order by whichever
    process claims it, largest first; this process reads units too and writes every row group
    to its topic's file as it comes, so partitions interleave in a file as they do in a
    one-process export, where the broker interleaves them. Exporting the topics together keeps
    the cores busy where one topic at a time would leave one waiting (the end of a topic, a
    topic whose personal fields wait on Cassandra for keys). ``None`` chooses
    :func:`default_jobs` over all the units (what ``pulse export`` does); ``1``, the default
    here, reads the topics one after another in this process. Decoding Avro and opening
    personal fields is Python work, so on a machine with more than one core more processes make
    an export faster (docs/replay.md has the figures). The processes are started with
    ``spawn``, which imports the caller's main module again: a script that asks for more than
    one must keep its top level under ``if __name__ == "__main__":``, as every program that
    starts processes with :mod:`multiprocessing` must; hence the default.

    Returns
    -------
    list of dict
        One per topic, in the order of ``outputs``: ``topic``, ``path``, ``rows``,
        ``row_groups``, ``bytes`` (file size), ``seconds`` (the whole export's), ``jobs``
        (processes that read), ``keys_scanned`` (whether the subjects' keys were read in one
        scan first, :func:`replay.reader.scan_limit`).

    Raises
    ------
    TopicError
        Unknown topic, or Kafka not configured.
    FileNotFoundError
        An output's directory does not exist.
    CodecError
        An undecodable message (unless ``skip_undecodable``).
    ExportError
        An event type has no Arrow mapping, a record does not fit it, two topics share a path,
        ``jobs`` is below 1, or an export process died.
    """
    paths = {topic: Path(path) for topic, path in outputs.items()}
    schemas = {topic: arrow_schema(topic_spec(topic).schema) for topic in paths}
    for path in paths.values():
        if not path.parent.is_dir():
            raise FileNotFoundError(f"{path.parent}: no such directory")
    if len({p.resolve() for p in paths.values()}) < len(paths):
        raise ExportError("two topics would be written to the same file")
    if jobs is not None and jobs < 1:
        raise ExportError(f"jobs must be 1 or more, not {jobs}")
    on_error = "skip" if skip_undecodable else "raise"
    began = time.perf_counter()
    if counts is None or set(counts) != set(paths):
        counts = {topic: message_counts(settings, topic, start_ms) for topic in paths}
    units = plan_units(counts)
    wanted = 1 if jobs == 1 else min(jobs or default_jobs(sum(m for *_, m in units), len(units)),
                                     len(units))
    # one process reads with its own key store, which also answers the size estimate; the
    # processes side by side each open their own, so the estimate opens one here
    keys = reader_keys(settings) if wanted <= 1 else None
    try:
        scanned = scan_into(settings, keys, counts) if keys is not None else scan_limit(settings, counts)
        with _ParquetFiles(paths, schemas, on_progress) as files:
            if wanted > 1:
                for topic, table in _tables_from_processes(settings, units, wanted, start_ms, end_ms,
                                                           on_error, row_group_size, scanned):
                    files.write(topic, table)
            else:
                for topic in paths:
                    for table in _topic_tables(settings, topic, None, start_ms, end_ms, on_error,
                                               row_group_size, keys=keys):
                        files.write(topic, table)
            files.commit()
    finally:
        if keys is not None:
            keys.close()
    seconds = round(time.perf_counter() - began, 3)
    return [{"topic": topic, "path": str(path), "rows": files.rows[topic],
             "row_groups": files.groups[topic], "bytes": path.stat().st_size, "seconds": seconds,
             "jobs": max(1, wanted), "keys_scanned": scanned > 0} for topic, path in paths.items()]


def export_topic(settings: Settings, topic: str, out_path: Path | str, *, start_ms: int | None = None,
                 end_ms: int | None = None, on_progress: Callable[[int], None] | None = None,
                 row_group_size: int = ROW_GROUP_SIZE, skip_undecodable: bool = False,
                 jobs: int | None = 1) -> dict:
    """:func:`export_topics` of one topic to the Parquet file ``out_path``;
    ``on_progress(rows)``. With ``jobs`` above 1, each process reads whole partitions of the
    topic. Returns that topic's dict; raises as :func:`export_topics`."""
    progress = None if on_progress is None else (lambda _topic, n: on_progress(n))
    return export_topics(settings, {topic: out_path}, start_ms=start_ms, end_ms=end_ms,
                         on_progress=progress, row_group_size=row_group_size,
                         skip_undecodable=skip_undecodable, jobs=jobs)[0]

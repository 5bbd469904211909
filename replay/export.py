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

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from streams.contracts.schemas import default_catalog
from streams.settings import Settings
from streams.contracts.topics import topic_spec

from replay.reader import Position, read_topic

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


def write_parquet(rows: Iterable[tuple[Position, dict[str, Any]]], schema: pa.Schema, out_path: Path, *,
                  row_group_size: int = ROW_GROUP_SIZE,
                  on_progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write decoded ``(Position, record)`` pairs to a Parquet file (zstd), ``row_group_size``
    rows per row group, so memory stays bounded. Writes ``out_path`` via a temporary file, so a
    failed export leaves no partial file. Returns ``(rows, row_groups)``.

    Raises
    ------
    ExportError
        A record does not fit ``schema`` (e.g. a null in a non-nullable column).
    """
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    n = groups = 0
    records: list[dict[str, Any]] = []
    positions: list[Position] = []
    event_fields = [f for f in schema if f.name not in _POSITION_NAMES]

    def flush(writer) -> None:
        # column by column: one pa.array per field over the group's values, not a dict per row
        nonlocal groups
        columns = {"_topic": [p.topic for p in positions], "_partition": [p.partition for p in positions],
                   "_offset": [p.offset for p in positions],
                   "_timestamp_ms": [p.timestamp_ms if p.timestamp_ms >= 0 else None for p in positions]}
        try:
            arrays = {f.name: pa.array([r.get(f.name) for r in records], type=f.type) for f in event_fields}
            arrays.update({name: pa.array(values, type=schema.field(name).type)
                           for name, values in columns.items()})
            table = pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)
            writer.write_table(table, row_group_size=row_group_size)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ExportError(f"rows {n - len(records)}..{n - 1} do not fit the Arrow schema: {exc}") from exc
        groups += 1
        records.clear()
        positions.clear()

    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for pos, record in rows:
                records.append(record)
                positions.append(pos)
                n += 1
                if len(records) >= row_group_size:
                    flush(writer)
                    if on_progress:
                        on_progress(n)
            if records:
                flush(writer)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    if on_progress:
        on_progress(n)
    return n, groups


def export_topic(settings: Settings, topic: str, out_path: Path | str, *, start_ms: int | None = None,
                 end_ms: int | None = None, on_progress: Callable[[int], None] | None = None,
                 row_group_size: int = ROW_GROUP_SIZE, skip_undecodable: bool = False) -> dict:
    """Decode ``topic`` (messages with Kafka timestamp in ``[start_ms, end_ms)``, epoch ms) with
    :func:`replay.reader.read_topic` and write them to the Parquet file ``out_path``.

    ``skip_undecodable`` leaves out messages that do not decode (they are in ``dead-letters``
    already); by default such a message stops the export with a :class:`CodecError` naming it.

    Returns
    -------
    dict
        ``topic``, ``path``, ``rows``, ``row_groups``, ``bytes`` (file size), ``seconds``.

    Raises
    ------
    TopicError
        Unknown topic, or Kafka not configured.
    CodecError
        An undecodable message (unless ``skip_undecodable``).
    ExportError
        The event type has no Arrow mapping, or a record does not fit it.
    """
    schema = arrow_schema(topic_spec(topic).schema)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"{out_path.parent}: no such directory")
    began = time.perf_counter()
    rows = read_topic(settings, topic, start_ms=start_ms, end_ms=end_ms,
                      on_error="skip" if skip_undecodable else "raise")
    n, groups = write_parquet(rows, schema, out_path, row_group_size=row_group_size,
                              on_progress=on_progress)
    return {"topic": topic, "path": str(out_path), "rows": n, "row_groups": groups,
            "bytes": out_path.stat().st_size, "seconds": round(time.perf_counter() - began, 3)}

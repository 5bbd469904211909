"""Event codecs: validate an event dict against its Avro contract and turn it into bytes, and back.

Two wire formats (DESIGN.md "Events and schemas"):

* Avro **single-object encoding** (:class:`AvroCodec`, the default): ``C3 01`` + the 8-byte
  little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form + the Avro
  binary body (Avro 1.11 specification, "Single object encoding"). The writer schema is found in
  the local :class:`~streams.schemas.SchemaCatalog` by fingerprint; no registry server is needed.
* **Confluent wire format** (:class:`ConfluentCodec`, when ``PULSE_SCHEMA_REGISTRY_URL`` is set):
  magic byte ``00`` + the 4-byte big-endian schema id from a Confluent Schema Registry + the Avro
  binary body.

Either way, a message written with any version of an event type is resolved (Avro schema
resolution) to the event type's *current* schema, so consumers see one shape.

Python representation of an event (what ``encode`` takes and ``decode`` returns): a plain ``dict``
keyed by field name, with ``str``, ``int``, ``float``, ``bool``, ``bytes``, ``None``, ``list`` and
``dict`` values; enum symbols as ``str``. Two logical types are mapped:

* ``timestamp-millis`` (``event_time`` and every other ``*_at`` / window / deadline field) decodes
  to a timezone-aware ``datetime`` in UTC (fastavro's default). ``encode`` accepts either that or
  an ``int`` of UTC epoch milliseconds; a naive ``datetime`` is rejected, never guessed.
* ``uuid`` (``event_id``) decodes to ``str`` (canonical lowercase text), so it compares equal to
  the plain-string ``cause_event_id`` of derived events. ``encode`` accepts a canonical UUID
  string or a ``uuid.UUID``.

Every failure to encode or decode is a :class:`CodecError`; a consumer routes such a message to
``dead-letters`` with the error message as the reason.
"""
from __future__ import annotations

import functools
import json
import numbers
import re
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from io import BytesIO
from typing import Any, Callable, Optional, Protocol, Union
from urllib.parse import quote

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form

from streams.schemas import EventType, SchemaCatalog, SchemaVersion, check_backward_compatible, default_catalog

Record = dict[str, Any]

SINGLE_OBJECT_MARKER = b"\xc3\x01"
"""The two marker bytes of Avro single-object encoding."""
CONFLUENT_MAGIC = 0
"""First byte of the Confluent wire format."""


class CodecError(ValueError):
    """An event that cannot be encoded (it breaks its schema) or a message that cannot be decoded
    (bad header, unknown schema, truncated or malformed body, trailing bytes).

    The message is a human-readable reason, fit for a dead letter's ``reason``; ``field`` is the
    path of the offending field (``"kind"``, ``"items[2].score"``) for validation errors, else
    ``None``.
    """

    def __init__(self, message: str, *, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


class SchemaRegistryError(RuntimeError):
    """The Schema Registry could not be reached or answered with an unexpected error. Not a
    :class:`CodecError`: the message itself may be fine, so retry rather than dead-letter it."""


class EventCodec(Protocol):
    """What every codec offers; agents and sinks depend on this, not on a wire format."""

    event_type: EventType

    def encode(self, record: Mapping[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> Record: ...

    def validate(self, record: Mapping[str, Any]) -> None: ...


# --------------------------------------------------------------------------------------------
# Validation: a checker closure per schema node, compiled once per schema.


class _Invalid(Exception):
    """Raised by checkers; parents append their path segment while it propagates."""

    __slots__ = ("problem", "path")

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str] = []


_MISSING = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
# timestamp-millis values that decode to a datetime (years 1..9999), in UTC epoch milliseconds.
_MIN_TS_MS = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) // _MS
_MAX_TS_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - _EPOCH) // _MS
_FLT_MAX = 3.4028234663852886e38
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _got(v: Any) -> str:
    return f"got {type(v).__name__} {_show(v)}"


def _check_null(v: Any) -> None:
    if v is not None:
        raise _Invalid(f"expected null, {_got(v)}")


def _check_boolean(v: Any) -> None:
    if v is not True and v is not False:
        raise _Invalid(f"expected boolean, {_got(v)}")


def _integer_checker(bits: int, tname: str) -> Callable[[Any], None]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def check(v: Any) -> None:
        if type(v) is not int and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
            raise _Invalid(f"expected {tname}, {_got(v)}")
        if not lo <= v <= hi:
            raise _Invalid(f"{v} is out of range for {tname} ({bits}-bit)")

    return check


_check_int = _integer_checker(32, "int")
_check_long = _integer_checker(64, "long")


def _check_double(v: Any) -> None:
    if type(v) is not float and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
        raise _Invalid(f"expected double, {_got(v)}")


def _check_float(v: Any) -> None:
    if type(v) is not float and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
        raise _Invalid(f"expected float, {_got(v)}")
    if abs(v) > _FLT_MAX and abs(v) != float("inf"):
        raise _Invalid(f"{v} is out of range for float (32-bit)")


def _check_bytes(v: Any) -> None:
    if not isinstance(v, (bytes, bytearray)):
        raise _Invalid(f"expected bytes, {_got(v)}")


def _check_string(v: Any) -> None:
    if type(v) is not str and not isinstance(v, str):
        raise _Invalid(f"expected string, {_got(v)}")
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise _Invalid(f"{_show(v)} cannot be encoded as UTF-8 (lone surrogate)") from None


def _check_uuid(v: Any) -> None:
    if isinstance(v, uuid.UUID):
        return
    if not isinstance(v, str):
        raise _Invalid(f"expected a UUID string, {_got(v)}")
    if not _UUID_RE.match(v):
        raise _Invalid(f"{_show(v)} is not a UUID in canonical form (lowercase 8-4-4-4-12 hex)")


def _check_timestamp_millis(v: Any) -> None:
    if type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool)):
        if not _MIN_TS_MS <= v <= _MAX_TS_MS:
            raise _Invalid(f"{v} ms is outside the years 1-9999")
        return
    if isinstance(v, datetime):
        if v.tzinfo is None or v.utcoffset() is None:
            raise _Invalid(f"naive datetime {v.isoformat()} (give it a timezone, e.g. timezone.utc)")
        if not _MIN_TS_MS <= (v - _EPOCH) // _MS <= _MAX_TS_MS:
            raise _Invalid(f"{v.isoformat()} is outside the years 1-9999 in UTC")
        return
    raise _Invalid(f"expected UTC epoch milliseconds (int) or an aware datetime, {_got(v)}")


_PRIMITIVE_CHECKS: dict[str, Callable[[Any], None]] = {
    "null": _check_null, "boolean": _check_boolean, "int": _check_int, "long": _check_long,
    "float": _check_float, "double": _check_double, "bytes": _check_bytes, "string": _check_string,
}
_LOGICAL_CHECKS = {("long", "timestamp-millis"): _check_timestamp_millis, ("string", "uuid"): _check_uuid}


def _full_name(s: Mapping[str, Any], ns: Optional[str]) -> str:
    name = s["name"]
    if "." in name:
        return name
    ns = s.get("namespace", ns)
    return f"{ns}.{name}" if ns else name


class _Compiler:
    """Compiles a schema (raw JSON) into one checker per node; named types by reference."""

    def __init__(self) -> None:
        self.named: dict[str, Callable[[Any], None]] = {}

    def compile(self, s: Any, ns: Optional[str]) -> Callable[[Any], None]:
        if isinstance(s, str):
            if s in _PRIMITIVES:
                return _PRIMITIVE_CHECKS[s]
            full = s if "." in s else (f"{ns}.{s}" if ns else s)
            full = full if full in self.named else s
            named = self.named
            return lambda v: named[full](v)  # late-bound: supports recursive types
        if isinstance(s, list):
            return self._union(s, ns)
        t = s["type"]
        if t in _PRIMITIVES:
            return _LOGICAL_CHECKS.get((t, s.get("logicalType")), _PRIMITIVE_CHECKS[t])
        if t == "array":
            return self._array(s["items"], ns)
        if t == "map":
            return self._map(s["values"], ns)
        if t in ("record", "error"):
            return self._record(s, ns)
        if t == "enum":
            return self._enum(s, ns)
        if t == "fixed":
            return self._fixed(s, ns)
        return self.compile(t, ns)  # {"type": "string"} style or {"type": {...}}

    def _union(self, branches: list, ns: Optional[str]) -> Callable[[Any], None]:
        if len(branches) == 2 and branches[0] == "null":
            other = self.compile(branches[1], ns)

            def check_optional(v: Any) -> None:
                if v is not None:
                    other(v)

            return check_optional
        checks = [self.compile(b, ns) for b in branches]
        names = ", ".join(b if isinstance(b, str) else str(b.get("name", b.get("type"))) for b in branches)

        def check_union(v: Any) -> None:
            for c in checks:
                try:
                    c(v)
                    return
                except _Invalid:
                    pass
            raise _Invalid(f"{_show(v)} matches no branch of the union [{names}]")

        return check_union

    def _array(self, items: Any, ns: Optional[str]) -> Callable[[Any], None]:
        item_check = self.compile(items, ns)
        numeric = items if items in ("float", "double") else None

        def check_array(v: Any) -> None:
            if type(v) is not list and not isinstance(v, (list, tuple)):
                raise _Invalid(f"expected an array (list), {_got(v)}")
            if numeric is not None:  # fast path for embeddings: plain in-range floats
                for x in v:
                    if type(x) is not float or not -_FLT_MAX <= x <= _FLT_MAX:
                        break
                else:
                    return
            i = 0
            try:
                for i, item in enumerate(v):
                    item_check(item)
            except _Invalid as e:
                e.path.append(f"[{i}]")
                raise

        return check_array

    def _map(self, values: Any, ns: Optional[str]) -> Callable[[Any], None]:
        value_check = self.compile(values, ns)

        def check_map(v: Any) -> None:
            if not isinstance(v, Mapping):
                raise _Invalid(f"expected a map (dict), {_got(v)}")
            key = None
            try:
                for key, item in v.items():
                    if type(key) is not str:
                        raise _Invalid(f"map key {_show(key)} is not a string")
                    value_check(item)
            except _Invalid as e:
                e.path.append(f"[{key!r}]")
                raise

        return check_map

    def _enum(self, s: Mapping[str, Any], ns: Optional[str]) -> Callable[[Any], None]:
        symbols = frozenset(s["symbols"])
        listed = ", ".join(s["symbols"])

        def check_enum(v: Any) -> None:
            if type(v) is not str or v not in symbols:
                raise _Invalid(f"{_show(v)} is not one of {listed}")

        self.named[_full_name(s, ns)] = check_enum
        return check_enum

    def _fixed(self, s: Mapping[str, Any], ns: Optional[str]) -> Callable[[Any], None]:
        size = s["size"]

        def check_fixed(v: Any) -> None:
            if not isinstance(v, (bytes, bytearray)) or len(v) != size:
                raise _Invalid(f"expected {size} bytes (fixed), {_got(v)}")

        self.named[_full_name(s, ns)] = check_fixed
        return check_fixed

    def _record(self, s: Mapping[str, Any], ns: Optional[str]) -> Callable[[Any], None]:
        full = _full_name(s, ns)
        record_ns = full.rpartition(".")[0] or None
        fields: list[tuple[str, Callable[[Any], None], bool]] = []
        names = frozenset(f["name"] for f in s["fields"])

        def check_record(v: Any) -> None:
            if type(v) is not dict and not isinstance(v, Mapping):
                raise _Invalid(f"expected a {full} record (dict), {_got(v)}")
            if not names.issuperset(v):
                unknown = next(k for k in v if k not in names)
                e = _Invalid(f"not a field of {full}")
                e.path.append(f".{unknown}")
                raise e
            name = ""
            try:
                for name, check, required in fields:
                    value = v.get(name, _MISSING)
                    if value is _MISSING:
                        if required:
                            raise _Invalid("missing (required, no default)")
                    else:
                        check(value)
            except _Invalid as e:
                e.path.append(f".{name}")
                raise

        self.named[full] = check_record  # before the fields: a field may refer back to it
        for f in s["fields"]:
            fields.append((f["name"], self.compile(f["type"], record_ns), "default" not in f))
        return check_record


def compile_validator(schema: Mapping[str, Any]) -> Callable[[Any], None]:
    """A function ``check(record)`` that raises :class:`CodecError` naming the offending field
    when ``record`` does not fit ``schema`` (raw Avro schema JSON).

    Stricter than Avro's writer in three ways that protect consumers: unknown keys are rejected
    (a misspelt optional field would otherwise vanish as null), ``timestamp-millis`` needs an int
    or an *aware* datetime within the years 1-9999, and ``uuid`` strings must be canonical.
    """
    check = _Compiler().compile(schema, None)

    def validate(record: Any) -> None:
        try:
            check(record)
        except _Invalid as e:
            path = "".join(reversed(e.path)).lstrip(".")
            if path:
                raise CodecError(f"field '{path}': {e.problem}", field=path) from None
            raise CodecError(e.problem) from None

    return validate


# --------------------------------------------------------------------------------------------
# Reading bodies.


def _strip_uuid(s: Any) -> Any:
    """The schema without ``logicalType: uuid`` (so fastavro returns ``str``, not ``uuid.UUID``)."""
    if isinstance(s, list):
        return [_strip_uuid(b) for b in s]
    if isinstance(s, dict):
        if s.get("logicalType") == "uuid" and s.get("type") == "string":
            return "string"
        return {k: _strip_uuid(v) if k in ("type", "items", "values", "fields") else v for k, v in s.items()}
    return s


@functools.lru_cache(maxsize=None)
def _decoding_schema(version: SchemaVersion) -> dict:
    """``version``'s schema as parsed for reading (uuid as str); once per version and process."""
    return parse_schema(_strip_uuid(version.schema), named_schemas={})


_BYTESIO_RE = re.compile(r"\s*(from|in)\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def _read_body(data: bytes, offset: int, writer: dict, reader: Optional[dict], what: str) -> Record:
    """Decode the Avro binary body at ``data[offset:]``; it must end exactly at the end of ``data``."""
    buf = BytesIO(data)
    buf.seek(offset)
    try:
        record = schemaless_reader(buf, writer, reader)
    except MemoryError:
        raise
    except EOFError as exc:
        detail = _BYTESIO_RE.sub("", str(exc)) or "unexpected end of data"
        raise CodecError(f"truncated body: {detail} ({what}, {len(data)} bytes in all)") from exc
    except Exception as exc:  # UnicodeDecodeError, IndexError (enum/union index), OverflowError, ...
        detail = _BYTESIO_RE.sub("", str(exc))
        raise CodecError(f"malformed {what} body: {type(exc).__name__}: {detail}") from exc
    end = buf.tell()
    if end != len(data):
        raise CodecError(f"{len(data) - end} trailing bytes after the {what} record")
    return record


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise CodecError(f"expected bytes, got {type(data).__name__}")


# --------------------------------------------------------------------------------------------
# Single-object encoding.


class AvroCodec:
    """Avro single-object encoding of one event type, resolved against the local catalog.

    Parameters
    ----------
    catalog:
        Where the writer schemas are found by fingerprint.
    event_type:
        Full, short or snake name (``"pulse.events.Upload"``, ``"Upload"``, ``"upload"``).

    ``encode`` writes the *current* version. ``decode`` reads any version of this event type
    (looked up by fingerprint) and resolves it to the current version; messages of another event
    type, or with a fingerprint the catalog does not know, raise :class:`CodecError`.

    Examples
    --------
    >>> codec = AvroCodec(default_catalog(), "follow")
    >>> data = codec.encode({"event_id": "0b6c2f7e-4f5a-4c1e-9a43-2b8f0c9d1e77",
    ...                      "event_time": 1_700_000_000_000, "producer": "ios-app",
    ...                      "follower_id": "u1", "followee_id": "u2", "action": "FOLLOW"})
    >>> data[:2] == SINGLE_OBJECT_MARKER, codec.decode(data)["action"]
    (True, 'FOLLOW')
    """

    def __init__(self, catalog: SchemaCatalog, event_type: str) -> None:
        self.catalog = catalog
        self.event_type = catalog.event_type(event_type)
        current = self.event_type.current
        self._writer = current.parsed
        self._header = SINGLE_OBJECT_MARKER + current.fingerprint
        self._validate = compile_validator(current.schema)
        reader = _decoding_schema(current)
        # fingerprint -> (writer schema for reading, reader schema or None when identical, label)
        self._readers: dict[bytes, tuple[dict, Optional[dict], str]] = {
            v.fingerprint: (_decoding_schema(v), None if v is current else reader, f"{v.name} v{v.version}")
            for v in self.event_type.versions
        }

    def validate(self, record: Mapping[str, Any]) -> None:
        """Raise :class:`CodecError` naming the field when ``record`` breaks the current schema."""
        self._validate(record)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Validate ``record`` and return its single-object encoding (current schema version).

        Raises
        ------
        CodecError
            The record breaks the schema; the message and ``.field`` name the field.
        """
        self._validate(record)
        buf = BytesIO()
        buf.write(self._header)
        try:
            schemaless_writer(buf, self._writer, record)
        except Exception as exc:  # not expected after validation; keep the one error type
            raise CodecError(f"cannot encode {self.event_type.name}: {type(exc).__name__}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> Record:
        """Decode a single-object-encoded message into a dict shaped by the current schema.

        Raises
        ------
        CodecError
            Not bytes, too short, bad marker, unknown fingerprint, another event type's schema,
            a truncated or malformed body, or trailing bytes after the record.
        """
        data = _as_bytes(data)
        if len(data) < 10:
            if data[:2] != SINGLE_OBJECT_MARKER[: len(data[:2])]:
                raise CodecError(f"bad single-object marker {data[:2]!r} (expected C3 01)")
            raise CodecError(f"truncated header: {len(data)} bytes (single-object encoding needs 10 before the body)")
        if data[:2] != SINGLE_OBJECT_MARKER:
            raise CodecError(f"bad single-object marker {data[:2]!r} (expected C3 01)")
        fp = data[2:10]
        entry = self._readers.get(fp)
        if entry is None:
            raise CodecError(self._unknown_fingerprint(fp))
        writer, reader, label = entry
        return _read_body(data, 10, writer, reader, label)

    def _unknown_fingerprint(self, fp: bytes) -> str:
        value = f"0x{int.from_bytes(fp, 'little'):016x}"
        other = self.catalog.by_fingerprint(fp)
        if other is None:
            return f"unknown schema fingerprint {value} (not in the local catalog)"
        return (f"schema fingerprint {value} is {other.full_name} v{other.version}, "
                f"not a version of {self.event_type.full_name}")

    def __repr__(self) -> str:
        return f"AvroCodec({self.event_type.full_name} v{self.event_type.current.version})"


# --------------------------------------------------------------------------------------------
# Confluent wire format.


class RegistryClient:
    """The few Confluent Schema Registry REST calls the codec needs (httpx, synchronous).

    ``confluent_kafka.schema_registry`` is not used: in confluent-kafka 2.16 it imports
    ``authlib`` (and ``cachetools``), which Pulse does not install.

    Raises
    ------
    SchemaRegistryError
        Connection failures and unexpected HTTP statuses.
    """

    CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

    def __init__(self, url: str, *, timeout_s: float = 10.0, client: Any = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._httpx = httpx
        self._client = client or httpx.Client(timeout=timeout_s, headers={"Accept": self.CONTENT_TYPE})

    def _call(self, method: str, path: str, body: Optional[dict] = None) -> tuple[int, Any]:
        try:
            resp = self._client.request(method, self.url + path, json=body,
                                        headers={"Content-Type": self.CONTENT_TYPE} if body is not None else None)
        except self._httpx.HTTPError as exc:
            raise SchemaRegistryError(f"schema registry {self.url} unreachable: {exc}") from exc
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code >= 500 or (resp.status_code >= 400 and resp.status_code != 404):
            raise SchemaRegistryError(f"schema registry {method} {path}: HTTP {resp.status_code} {payload or resp.text!r}")
        return resp.status_code, payload

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` (Avro JSON text) under ``subject``; its id (existing or new)."""
        status, payload = self._call("POST", f"/subjects/{quote(subject, safe='')}/versions", {"schema": schema})
        if status != 200 or not isinstance(payload, dict) or "id" not in payload:
            raise SchemaRegistryError(f"schema registry did not register {subject}: HTTP {status} {payload!r}")
        return int(payload["id"])

    def lookup(self, subject: str, schema: str) -> Optional[int]:
        """The id of ``schema`` under ``subject``, or ``None`` when it is not registered there."""
        status, payload = self._call("POST", f"/subjects/{quote(subject, safe='')}", {"schema": schema})
        if status == 404:
            return None
        return int(payload["id"])

    def schema_by_id(self, schema_id: int) -> Optional[tuple[str, str]]:
        """``(schema text, schema type)`` for this id (type ``"AVRO"`` unless the registry says
        ``JSON`` or ``PROTOBUF``), or ``None`` when the registry has no such id."""
        status, payload = self._call("GET", f"/schemas/ids/{schema_id}")
        if status == 404:
            return None
        return payload["schema"], payload.get("schemaType", "AVRO")


class ConfluentCodec:
    """Confluent wire format (``00`` + 4-byte big-endian schema id + Avro body) for one event type.

    ``encode`` writes the catalog's current version under ``subject`` (TopicNameStrategy:
    ``"<topic>-value"``), registering it on first use when ``auto_register`` (else looking it
    up: a registry with auto-registration disabled must already hold it). ``decode`` fetches a
    writer schema by id once and caches it; a writer schema that is a known catalog version is
    read with the catalog's parse, an unknown one (e.g. a newer producer's) is parsed from the
    registry's text, and either is resolved to the current reader schema.

    Raises
    ------
    CodecError
        Invalid records, bad magic byte, unknown schema id, a schema of another record type,
        undecodable bodies.
    SchemaRegistryError
        The registry is unreachable or fails (retry; the message is not at fault).
    """

    def __init__(self, registry_url: str, subject: str, catalog: SchemaCatalog, event_type: str,
                 *, auto_register: bool = True, client: Optional[RegistryClient] = None) -> None:
        self.registry = client or RegistryClient(registry_url)
        self.subject = subject
        self.catalog = catalog
        self.event_type = catalog.event_type(event_type)
        self.auto_register = auto_register
        current = self.event_type.current
        self._writer = current.parsed
        self._schema_text = json.dumps(current.schema, separators=(",", ":"), ensure_ascii=False)
        self._reader = _decoding_schema(current)
        self._validate = compile_validator(current.schema)
        self._prefix: Optional[bytes] = None
        self._by_id: dict[int, tuple[dict, Optional[dict], str]] = {}
        self._lock = threading.Lock()

    def validate(self, record: Mapping[str, Any]) -> None:
        """Raise :class:`CodecError` naming the field when ``record`` breaks the current schema."""
        self._validate(record)

    @property
    def schema_id(self) -> int:
        """The registry id of the current schema under ``subject`` (registered or looked up once)."""
        if self._prefix is None:
            with self._lock:
                if self._prefix is None:
                    if self.auto_register:
                        sid = self.registry.register(self.subject, self._schema_text)
                    else:
                        sid = self.registry.lookup(self.subject, self._schema_text)
                        if sid is None:
                            raise SchemaRegistryError(
                                f"{self.event_type.full_name} v{self.event_type.current.version} is not registered "
                                f"under subject {self.subject!r} and auto_register is off")
                    self._prefix = bytes([CONFLUENT_MAGIC]) + sid.to_bytes(4, "big")
        return int.from_bytes(self._prefix[1:5], "big")

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Validate ``record`` and return ``00`` + schema id + Avro body."""
        self._validate(record)
        if self._prefix is None:
            self.schema_id  # noqa: B018 - registers / looks up once
        buf = BytesIO()
        buf.write(self._prefix)
        try:
            schemaless_writer(buf, self._writer, record)
        except Exception as exc:
            raise CodecError(f"cannot encode {self.event_type.name}: {type(exc).__name__}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> Record:
        """Decode a Confluent-framed message into a dict shaped by the current schema."""
        data = _as_bytes(data)
        if len(data) < 5:
            raise CodecError(f"truncated header: {len(data)} bytes (the Confluent wire format needs 5 before the body)")
        if data[0] != CONFLUENT_MAGIC:
            raise CodecError(f"bad Confluent magic byte 0x{data[0]:02x} (expected 00)")
        schema_id = int.from_bytes(data[1:5], "big")
        entry = self._by_id.get(schema_id) or self._fetch(schema_id)
        writer, reader, label = entry
        return _read_body(data, 5, writer, reader, label)

    def _fetch(self, schema_id: int) -> tuple[dict, Optional[dict], str]:
        found = self.registry.schema_by_id(schema_id)
        if found is None:
            raise CodecError(f"unknown schema id {schema_id} (not in the registry at {self.registry.url})")
        text, schema_type = found
        if schema_type != "AVRO":
            raise CodecError(f"schema id {schema_id} is a {schema_type} schema, not Avro")
        try:
            schema = json.loads(text)
            full = _full_name(schema, None) if isinstance(schema, dict) and "name" in schema else None
        except (ValueError, KeyError, TypeError) as exc:
            raise CodecError(f"schema id {schema_id} is not an Avro record schema: {exc}") from exc
        if full != self.event_type.full_name:
            raise CodecError(f"schema id {schema_id} is {full or 'not a named record'}, not {self.event_type.full_name}")
        try:
            fp = bytes.fromhex(_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        except Exception as exc:
            raise CodecError(f"schema id {schema_id} does not parse: {exc}") from exc
        known = self.catalog.by_fingerprint(fp)
        current = self.event_type.current
        if known is not None and known.full_name == current.full_name:
            entry = (_decoding_schema(known), None if known is current else self._reader,
                     f"{known.name} v{known.version} (schema id {schema_id})")
        else:
            problems = check_backward_compatible(schema, current.schema)
            if problems:
                raise CodecError(f"schema id {schema_id} cannot be resolved to {current.name} v{current.version}: "
                                 + "; ".join(problems))
            try:
                writer = parse_schema(_strip_uuid(schema), named_schemas={})
            except Exception as exc:
                raise CodecError(f"schema id {schema_id} does not parse: {exc}") from exc
            entry = (writer, self._reader, f"{current.name} (schema id {schema_id}, not in the local catalog)")
        self._by_id[schema_id] = entry
        return entry

    def __repr__(self) -> str:
        return f"ConfluentCodec({self.event_type.full_name}, subject={self.subject!r}, registry={self.registry.url!r})"


# --------------------------------------------------------------------------------------------
# Choosing a codec, and Faust.


def codec_for(settings: Any, event_type: str, topic: str, *, catalog: Optional[SchemaCatalog] = None) -> EventCodec:
    """The codec for ``event_type`` values on ``topic``: :class:`ConfluentCodec` (subject
    ``"<topic>-value"``) when ``settings.schema_registry_url`` is set, else :class:`AvroCodec`.
    ``catalog`` defaults to :func:`~streams.schemas.default_catalog`."""
    catalog = catalog or default_catalog()
    if settings.schema_registry_url:
        return ConfluentCodec(settings.schema_registry_url, f"{topic}-value", catalog, event_type)
    return AvroCodec(catalog, event_type)


def faust_codec_name(event_type: EventType) -> str:
    """``"pulse.upload"``: the Faust codec name of an event type."""
    return f"pulse.{event_type.snake_name}"


@functools.lru_cache(maxsize=None)
def _faust_codec_class() -> type:
    from faust.serializers import codecs as faust_codecs  # imported on demand: Faust is heavy

    class FaustEventCodec(faust_codecs.Codec):
        """A Faust codec around an :class:`EventCodec`; ``loads`` raises :class:`CodecError`,
        which Faust re-raises as ``faust.exceptions.ValueDecodeError`` (or ``KeyDecodeError``)
        with the CodecError as ``__cause__``."""

        def __init__(self, children: Any = None, *, codec: EventCodec, **kwargs: Any) -> None:
            super().__init__(children, codec=codec, **kwargs)
            self.event_codec = codec

        def _dumps(self, obj: Any) -> bytes:
            return self.event_codec.encode(obj)

        def _loads(self, s: bytes) -> Any:
            return self.event_codec.decode(s)

    return FaustEventCodec


def faust_codec(codec: EventCodec) -> Any:
    """Wrap ``codec`` as a ``faust.serializers.codecs.Codec`` (e.g. to register a
    :class:`ConfluentCodec` for one topic under a name of your choice)."""
    return _faust_codec_class()(codec=codec)


def register_faust_codecs(catalog: Optional[SchemaCatalog] = None) -> dict[str, Any]:
    """Register one Faust codec per event type, named ``pulse.<snake_name>`` (``pulse.upload``),
    using single-object encoding; use the name as a topic's ``value_serializer``.

    Idempotent: a name already registered for the same catalog keeps its codec object.

    Returns
    -------
    dict[str, faust Codec]
        The registered codecs by name.
    """
    from faust.serializers import codecs as faust_codecs

    catalog = catalog or default_catalog()
    registered = {}
    for et in catalog:
        name = faust_codec_name(et)
        existing = faust_codecs.codecs.get(name)
        inner = getattr(existing, "event_codec", None)
        if inner is not None and getattr(inner, "catalog", None) is catalog:
            registered[name] = existing
            continue
        codec = faust_codec(AvroCodec(catalog, et.full_name))
        faust_codecs.register(name, codec)
        registered[name] = codec
    return registered

"""Record validation: check an event dict against its raw Avro schema before it is encoded.

:func:`compile_validator` compiles a schema once into one checker closure per schema node (named
types by reference, so recursive types work) and returns a function that raises
:class:`~streams.contracts.codec.CodecError` naming the offending field path (``"items[2].score"``).
Used by both codecs (:class:`~streams.contracts.codec.AvroCodec`, :class:`~streams.contracts.codec.ConfluentCodec`);
import it from :mod:`streams.contracts.codec`.
"""
from __future__ import annotations

import numbers
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional

from streams.contracts.codec_errors import CodecError

__all__ = ["compile_validator", "full_name"]


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


def full_name(s: Mapping[str, Any], ns: Optional[str]) -> str:
    """The full name of the named schema ``s`` (record, enum, fixed) declared inside namespace
    ``ns`` (Avro 1.11 specification, "Names"): a dotted name is already full, else its own
    ``namespace`` or the enclosing one is prefixed."""
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

        self.named[full_name(s, ns)] = check_enum
        return check_enum

    def _fixed(self, s: Mapping[str, Any], ns: Optional[str]) -> Callable[[Any], None]:
        size = s["size"]

        def check_fixed(v: Any) -> None:
            if not isinstance(v, (bytes, bytearray)) or len(v) != size:
                raise _Invalid(f"expected {size} bytes (fixed), {_got(v)}")

        self.named[full_name(s, ns)] = check_fixed
        return check_fixed

    def _record(self, s: Mapping[str, Any], ns: Optional[str]) -> Callable[[Any], None]:
        full = full_name(s, ns)
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

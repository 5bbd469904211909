"""Reading the Avro binary body of a message, shared by both wire formats.

Both :class:`~streams.contracts.codec.AvroCodec` (single-object encoding) and
:class:`~streams.contracts.codec.ConfluentCodec` (Confluent wire format) strip their header, then hand the
body to :func:`read_body` with the writer schema and the reader schema to resolve it to (Avro
schema resolution). ``uuid`` fields are read as ``str`` (see :func:`strip_uuid`). Every failure is
a :class:`~streams.contracts.codec.CodecError`.
"""
from __future__ import annotations

import functools
import re
from io import BytesIO
from typing import Any, Optional

from fastavro import parse_schema, schemaless_reader

from streams.contracts.schemas import SchemaVersion

from streams.contracts.codec_errors import CodecError

__all__ = ["Record", "strip_uuid", "decoding_schema", "read_body", "as_bytes"]

Record = dict[str, Any]


def strip_uuid(s: Any) -> Any:
    """The schema without ``logicalType: uuid`` (so fastavro returns ``str``, not ``uuid.UUID``)."""
    if isinstance(s, list):
        return [strip_uuid(b) for b in s]
    if isinstance(s, dict):
        if s.get("logicalType") == "uuid" and s.get("type") == "string":
            return "string"
        return {k: strip_uuid(v) if k in ("type", "items", "values", "fields") else v for k, v in s.items()}
    return s


@functools.lru_cache(maxsize=None)
def decoding_schema(version: SchemaVersion) -> dict:
    """``version``'s schema as parsed for reading (uuid as str); once per version and process."""
    return parse_schema(strip_uuid(version.schema), named_schemas={})


_BYTESIO_RE = re.compile(r"\s*(from|in)\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def read_body(data: bytes, offset: int, writer: dict, reader: Optional[dict], what: str) -> Record:
    """Decode the Avro binary body at ``data[offset:]``; it must end exactly at the end of ``data``.

    ``writer`` and ``reader`` are parsed schemas (``reader`` ``None`` when it is the writer);
    ``what`` names the schema in error messages (``"Upload v2"``).

    Raises
    ------
    CodecError
        Truncated or malformed body, or trailing bytes after the record.
    """
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


def as_bytes(data: Any) -> bytes:
    """``data`` as ``bytes`` (``bytearray`` and ``memoryview`` are copied); else :class:`CodecError`."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise CodecError(f"expected bytes, got {type(data).__name__}")

"""Event codecs: validate an event dict against its Avro contract and turn it into bytes, and back.

Two wire formats (DESIGN.md "Events and schemas"):

* Avro **single-object encoding** (:class:`AvroCodec`, the default): ``C3 01`` + the 8-byte
  little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form + the Avro
  binary body (Avro 1.11 specification, "Single object encoding"). The writer schema is found in
  the local :class:`~streams.contracts.schemas.SchemaCatalog` by fingerprint; no registry server is needed.
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

Modules: this one holds the single-object codec, :func:`codec_for` and the Faust glue, and is
where every codec name is imported from; :mod:`streams.contracts.validation` compiles the record
validators, :mod:`streams.contracts.schema_registry` holds the Confluent wire format and its registry
client, :mod:`streams.contracts.avro_body` reads Avro bodies for both formats, and
:mod:`streams.contracts.codec_errors` defines :class:`CodecError`.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from io import BytesIO
from typing import Any, Optional, Protocol

from fastavro import schemaless_writer

from streams.contracts.schemas import EventType, SchemaCatalog, default_catalog

from streams.contracts.avro_body import Record, as_bytes, decoding_schema, read_body
from streams.contracts.codec_errors import CodecError
from streams.contracts.schema_registry import CONFLUENT_MAGIC, ConfluentCodec, RegistryClient, SchemaRegistryError
from streams.contracts.validation import compile_validator

__all__ = [
    "Record", "SINGLE_OBJECT_MARKER", "CONFLUENT_MAGIC", "CodecError", "SchemaRegistryError", "EventCodec",
    "compile_validator", "AvroCodec", "RegistryClient", "ConfluentCodec", "codec_for", "faust_codec_name",
    "faust_codec", "register_faust_codecs",
]

SINGLE_OBJECT_MARKER = b"\xc3\x01"
"""The two marker bytes of Avro single-object encoding."""


class EventCodec(Protocol):
    """What every codec offers; agents and sinks depend on this, not on a wire format."""

    event_type: EventType

    def encode(self, record: Mapping[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> Record: ...

    def validate(self, record: Mapping[str, Any]) -> None: ...


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
        reader = decoding_schema(current)
        # fingerprint -> (writer schema for reading, reader schema or None when identical, label)
        self._readers: dict[bytes, tuple[dict, Optional[dict], str]] = {
            v.fingerprint: (decoding_schema(v), None if v is current else reader, f"{v.name} v{v.version}")
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
        data = as_bytes(data)
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
        return read_body(data, 10, writer, reader, label)

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
# Choosing a codec, and Faust.


def codec_for(settings: Any, event_type: str, topic: str, *, catalog: Optional[SchemaCatalog] = None,
              keys: Any = None) -> EventCodec:
    """The codec for ``event_type`` values on ``topic``: :class:`ConfluentCodec` (subject
    ``"<topic>-value"``) when ``settings.schema_registry_url`` is set, else :class:`AvroCodec`.
    ``catalog`` defaults to :func:`~streams.contracts.schemas.default_catalog`.

    ``keys`` (a :class:`~streams.contracts.personal.SubjectKeys`, e.g.
    ``streams.stores.keys.subject_keys(settings)``): the event type's personal fields are
    encrypted on encode and decrypted on decode (:class:`~streams.contracts.personal.PersonalCodec`);
    ``None`` reads and writes them as they are."""
    from streams.contracts.personal import with_personal_data

    catalog = catalog or default_catalog()
    if settings.schema_registry_url:
        codec: EventCodec = ConfluentCodec(settings.schema_registry_url, f"{topic}-value", catalog, event_type)
    else:
        codec = AvroCodec(catalog, event_type)
    return with_personal_data(codec, keys)


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

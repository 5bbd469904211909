"""Confluent wire format: a Confluent Schema Registry client and :class:`ConfluentCodec`.

Used when ``PULSE_SCHEMA_REGISTRY_URL`` is set (see :func:`streams.contracts.codec.codec_for`). A message
is magic byte ``00`` + the 4-byte big-endian schema id from the registry + the Avro binary body;
the writer schema is fetched by id once, and resolved (Avro schema resolution) to the event
type's *current* schema. Import these names from :mod:`streams.contracts.codec`.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from io import BytesIO
from typing import Any, Optional
from urllib.parse import quote

from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form

from streams.contracts.schemas import SchemaCatalog, check_backward_compatible

from streams.contracts.avro_body import Record, as_bytes, decoding_schema, read_body, strip_uuid
from streams.contracts.codec_errors import CodecError
from streams.contracts.validation import compile_validator, full_name

__all__ = ["CONFLUENT_MAGIC", "SchemaRegistryError", "RegistryClient", "ConfluentCodec"]

CONFLUENT_MAGIC = 0
"""First byte of the Confluent wire format."""


class SchemaRegistryError(RuntimeError):
    """The Schema Registry could not be reached or answered with an unexpected error. Not a
    :class:`CodecError`: the message itself may be fine, so retry rather than dead-letter it."""


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
        self._reader = decoding_schema(current)
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
        data = as_bytes(data)
        if len(data) < 5:
            raise CodecError(f"truncated header: {len(data)} bytes (the Confluent wire format needs 5 before the body)")
        if data[0] != CONFLUENT_MAGIC:
            raise CodecError(f"bad Confluent magic byte 0x{data[0]:02x} (expected 00)")
        schema_id = int.from_bytes(data[1:5], "big")
        entry = self._by_id.get(schema_id) or self._fetch(schema_id)
        writer, reader, label = entry
        return read_body(data, 5, writer, reader, label)

    def _fetch(self, schema_id: int) -> tuple[dict, Optional[dict], str]:
        found = self.registry.schema_by_id(schema_id)
        if found is None:
            raise CodecError(f"unknown schema id {schema_id} (not in the registry at {self.registry.url})")
        text, schema_type = found
        if schema_type != "AVRO":
            raise CodecError(f"schema id {schema_id} is a {schema_type} schema, not Avro")
        try:
            schema = json.loads(text)
            full = full_name(schema, None) if isinstance(schema, dict) and "name" in schema else None
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
            entry = (decoding_schema(known), None if known is current else self._reader,
                     f"{known.name} v{known.version} (schema id {schema_id})")
        else:
            problems = check_backward_compatible(schema, current.schema)
            if problems:
                raise CodecError(f"schema id {schema_id} cannot be resolved to {current.name} v{current.version}: "
                                 + "; ".join(problems))
            try:
                writer = parse_schema(strip_uuid(schema), named_schemas={})
            except Exception as exc:
                raise CodecError(f"schema id {schema_id} does not parse: {exc}") from exc
            entry = (writer, self._reader, f"{current.name} (schema id {schema_id}, not in the local catalog)")
        self._by_id[schema_id] = entry
        return entry

    def __repr__(self) -> str:
        return f"ConfluentCodec({self.event_type.full_name}, subject={self.subject!r}, registry={self.registry.url!r})"


"""Event codecs: single-object encoding against the local catalog, and the Confluent wire format.

Records are generated from the parsed schemas themselves (:func:`avro_values`), so a new event
type or a new schema version is covered without touching this file.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contracts.codec import (SINGLE_OBJECT_MARKER, AvroCodec, CodecError, ConfluentCodec, RegistryClient,
                           SchemaRegistryError, codec_for)
from streams.contracts.schemas import default_catalog
from tests.unit.test_schemas import avro_values, crc64_avro

CATALOG = default_catalog()
EVENT_TYPES = [et.full_name for et in CATALOG]
OLD_VERSIONS = [v for et in CATALOG for v in et.versions[:-1]]
CODECS = {name: AvroCodec(CATALOG, name) for name in EVENT_TYPES}
SLOW = settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def short(name: str) -> str:
    return name.rpartition(".")[2]


def upload(**changes) -> dict:
    record = {
        "event_id": "0b6c2f7e-4f5a-4c1e-9a43-2b8f0c9d1e77", "event_time": 1_700_000_000_123, "producer": "ios-app/5.2.0",
        "post_id": "p1", "creator_id": "u1", "kind": "IMAGE", "content_type": "FLASH", "media_uri": "file:///m/p1.jpg",
        "caption": "sunset #beach", "title": None, "hashtags": ["beach"], "duration_ms": None, "size_bytes": 52_113,
        "width": 1080, "height": 1350, "parent_post_id": None,
    }
    record.update(changes)
    return record


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EVENT_TYPES, ids=short)
@SLOW
@given(data=st.data())
def test_every_event_type_round_trips(name, data):
    codec = CODECS[name]
    record = data.draw(avro_values(codec.event_type.current.schema))
    encoded = codec.encode(record)
    assert encoded[:2] == SINGLE_OBJECT_MARKER and encoded[2:10] == codec.event_type.current.fingerprint
    assert codec.decode(encoded) == record


@pytest.mark.parametrize("name", EVENT_TYPES, ids=short)
@settings(max_examples=5, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_wire_bytes_follow_the_single_object_spec(name, data):
    """Marker C3 01, the CRC-64-AVRO of the canonical form little-endian, then the plain Avro body."""
    codec = CODECS[name]
    current = codec.event_type.current
    record = data.draw(avro_values(current.schema))
    body = BytesIO()
    schemaless_writer(body, current.parsed, record)
    expected = b"\xc3\x01" + crc64_avro(current.canonical_form.encode()).to_bytes(8, "little") + body.getvalue()
    assert codec.encode(record) == expected


def test_timestamps_encode_from_millis_or_aware_datetime_and_decode_to_utc_datetime():
    codec = CODECS["pulse.events.Upload"]
    as_millis = codec.decode(codec.encode(upload(event_time=1_700_000_000_123)))
    cet = timezone(timedelta(hours=1))
    as_datetime = codec.decode(codec.encode(upload(event_time=datetime(2023, 11, 14, 23, 13, 20, 123000, tzinfo=cet))))
    assert as_millis["event_time"] == as_datetime["event_time"] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)
    assert as_millis["event_time"].tzinfo == timezone.utc


@given(ms=st.integers(-(10**13), 10**14))
def test_event_time_millis_round_trip_exactly(ms):
    codec = CODECS["pulse.events.Follow"]
    record = {"event_id": str(uuid.uuid4()), "event_time": ms, "producer": "t", "follower_id": "a",
              "followee_id": "b", "action": "FOLLOW"}
    decoded = codec.decode(codec.encode(record))["event_time"]
    assert (decoded - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1) == ms


def test_event_id_accepts_uuid_objects_and_decodes_to_str():
    codec = CODECS["pulse.events.Upload"]
    eid = uuid.uuid4()
    decoded = codec.decode(codec.encode(upload(event_id=eid)))
    assert decoded["event_id"] == str(eid) and type(decoded["event_id"]) is str


def test_omitted_optional_fields_decode_as_their_defaults():
    codec = CODECS["pulse.events.Upload"]
    record = {k: v for k, v in upload().items() if k not in ("title", "media_uri", "width", "parent_post_id")}
    decoded = codec.decode(codec.encode(record))
    assert decoded["title"] is decoded["media_uri"] is decoded["width"] is decoded["parent_post_id"] is None


def test_codec_accepts_short_and_snake_names():
    assert AvroCodec(CATALOG, "upload").event_type is AvroCodec(CATALOG, "Upload").event_type
    with pytest.raises(KeyError):
        AvroCodec(CATALOG, "Nope")


# --- old versions ---------------------------------------------------------------------------------


def single_object(version, record) -> bytes:
    buf = BytesIO()
    buf.write(SINGLE_OBJECT_MARKER + version.fingerprint)
    schemaless_writer(buf, version.parsed, record)
    return buf.getvalue()


def test_there_is_at_least_one_old_version():
    assert any(v.full_name == "pulse.events.Upload" and v.version == 1 for v in OLD_VERSIONS)


@pytest.mark.parametrize("old", OLD_VERSIONS, ids=lambda v: v.path.name)
@SLOW
@given(data=st.data())
def test_old_versions_decode_under_the_current_schema(old, data):
    codec = CODECS[old.full_name]
    record = data.draw(avro_values(old.schema))
    decoded = codec.decode(single_object(old, record))
    for field in codec.event_type.current.schema["fields"]:
        name = field["name"]
        expected = record[name] if name in record else field["default"]
        assert _written_part(decoded[name], expected) == expected, name
    assert set(decoded) == {f["name"] for f in codec.event_type.current.schema["fields"]}


def _written_part(decoded, written):
    """``decoded`` cut down to what the old writer wrote: a newer reader adds nested record
    fields (with their defaults) inside arrays and maps of records."""
    if isinstance(written, dict) and isinstance(decoded, dict):
        return {k: _written_part(decoded[k], v) for k, v in written.items() if k in decoded}
    if isinstance(written, list) and isinstance(decoded, list) and len(written) == len(decoded):
        return [_written_part(d, w) for d, w in zip(decoded, written)]
    return decoded


def test_upload_v1_bytes_decode_with_v2_fields_null():
    v1 = CATALOG.event_type("upload").version(1)
    record = {k: v for k, v in upload().items() if k not in ("title", "width", "height", "parent_post_id")}
    decoded = CODECS["pulse.events.Upload"].decode(single_object(v1, record))
    assert decoded["caption"] == "sunset #beach"
    assert decoded["title"] is decoded["width"] is decoded["height"] is decoded["parent_post_id"] is None


# --- undecodable input ----------------------------------------------------------------------------


@given(data=st.binary(max_size=200))
def test_random_bytes_raise_codec_error(data):
    with pytest.raises(CodecError):
        CODECS["pulse.events.Upload"].decode(data)


@pytest.mark.parametrize("name", EVENT_TYPES, ids=short)
@SLOW
@given(body=st.binary(max_size=120))
def test_random_body_after_a_valid_header_decodes_or_raises_codec_error(name, body):
    codec = CODECS[name]
    try:
        decoded = codec.decode(SINGLE_OBJECT_MARKER + codec.event_type.current.fingerprint + body)
    except CodecError:
        return
    assert isinstance(decoded, dict)  # random bytes may happen to be a valid body; never another error


@pytest.mark.parametrize("name", EVENT_TYPES, ids=short)
@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_truncation_raises_codec_error(name, data):
    codec = CODECS[name]
    encoded = codec.encode(data.draw(avro_values(codec.event_type.current.schema)))
    for n in range(len(encoded)):
        with pytest.raises(CodecError):
            codec.decode(encoded[:n])


def test_trailing_bytes_are_rejected():
    codec = CODECS["pulse.events.Upload"]
    with pytest.raises(CodecError, match="2 trailing bytes after the Upload v2 record"):
        codec.decode(codec.encode(upload()) + b"\x00\x00")


@pytest.mark.parametrize("data, message", [
    (b"", "truncated header: 0 bytes"),
    (b"\xc3\x01\x00", "truncated header: 3 bytes"),
    (b"\x00\x01" + bytes(20), r"bad single-object marker b'\\x00\\x01' \(expected C3 01\)"),
    (b"\xc3\x01" + bytes(8) + b"\x02", r"unknown schema fingerprint 0x0000000000000000 \(not in the local catalog\)"),
    ("text", "expected bytes, got str"),
    (None, "expected bytes, got NoneType"),
])
def test_header_errors_say_what_is_wrong(data, message):
    with pytest.raises(CodecError, match=message):
        CODECS["pulse.events.Upload"].decode(data)


def test_another_event_types_message_is_rejected_by_name():
    follow = CODECS["pulse.events.Follow"].encode(
        {"event_id": str(uuid.uuid4()), "event_time": 0, "producer": "t", "follower_id": "a", "followee_id": "b",
         "action": "UNFOLLOW"})
    with pytest.raises(CodecError, match=r"is pulse\.events\.Follow v1, not a version of pulse\.events\.Upload"):
        CODECS["pulse.events.Upload"].decode(follow)


def test_truncated_body_error_names_the_schema():
    encoded = CODECS["pulse.events.Upload"].encode(upload())
    with pytest.raises(CodecError, match=r"^truncated body: .*\(Upload v2, 30 bytes in all\)$"):
        CODECS["pulse.events.Upload"].decode(encoded[:30])


def test_bytearray_and_memoryview_are_accepted():
    codec = CODECS["pulse.events.Upload"]
    encoded = codec.encode(upload())
    assert codec.decode(bytearray(encoded)) == codec.decode(memoryview(encoded)) == codec.decode(encoded)


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, field, message", [
    ({"kind": "GIF"}, "kind", "field 'kind': 'GIF' is not one of TEXT, IMAGE, VIDEO"),
    ({"post_id": None}, "post_id", "field 'post_id': expected string, got NoneType None"),
    ({"hashtags": ["ok", 5]}, "hashtags[1]", "field 'hashtags[1]': expected string, got int 5"),
    ({"hashtags": "beach"}, "hashtags", "field 'hashtags': expected an array (list), got str 'beach'"),
    ({"width": 2**31}, "width", "field 'width': 2147483648 is out of range for int (32-bit)"),
    ({"size_bytes": 1.5}, "size_bytes", "field 'size_bytes': expected long, got float 1.5"),
    ({"size_bytes": True}, "size_bytes", "field 'size_bytes': expected long, got bool True"),
    ({"event_id": "not-a-uuid"}, "event_id", "field 'event_id': 'not-a-uuid' is not a UUID in canonical form"),
    ({"event_id": "0B6C2F7E-4F5A-4C1E-9A43-2B8F0C9D1E77"}, "event_id", "is not a UUID in canonical form"),
    ({"event_time": datetime(2024, 1, 1)}, "event_time", "field 'event_time': naive datetime 2024-01-01T00:00:00"),
    ({"event_time": "2024-01-01"}, "event_time", "expected UTC epoch milliseconds (int) or an aware datetime"),
    ({"event_time": 2**62}, "event_time", "is outside the years 1-9999"),
    ({"caption": "\ud800"}, "caption", "cannot be encoded as UTF-8"),
    ({"captoin": "typo"}, "captoin", "field 'captoin': not a field of pulse.events.Upload"),
])
def test_validation_errors_name_the_field(changes, field, message):
    codec = CODECS["pulse.events.Upload"]
    with pytest.raises(CodecError, match=re.escape(message)) as info:
        codec.encode(upload(**changes))
    assert info.value.field == field
    with pytest.raises(CodecError):
        codec.validate(upload(**changes))


def test_missing_required_field_is_named():
    record = upload()
    del record["creator_id"]
    with pytest.raises(CodecError, match=r"^field 'creator_id': missing \(required, no default\)$"):
        CODECS["pulse.events.Upload"].encode(record)


def test_nested_fields_are_named_with_their_path():
    codec = CODECS["pulse.events.FeedUpdate"]
    record = {"event_id": str(uuid.uuid4()), "event_time": 0, "producer": "feed_ranker", "model": "m", "model_version": "1",
              "user_id": "u1", "candidate_count": 2,
              "items": [{"post_id": "p1", "creator_id": "c1", "score": 0.9, "source": "INTEREST", "reasons": []},
                        {"post_id": "p2", "creator_id": "c2", "score": "high", "source": "INTEREST", "reasons": []}]}
    with pytest.raises(CodecError, match=r"^field 'items\[1\]\.score': expected double, got str 'high'$"):
        codec.encode(record)
    record["items"][1]["score"] = 0.5
    record["items"][1]["source"] = "ADS"
    with pytest.raises(CodecError, match=r"field 'items\[1\]\.source': 'ADS' is not one of IN_NETWORK, INTEREST"):
        codec.encode(record)


def test_map_values_and_float32_range_are_checked():
    codec = CODECS["pulse.events.ContentEnrichment"]
    record = {"event_id": str(uuid.uuid4()), "event_time": 0, "producer": "clip_ai", "model": "m", "model_version": "1",
              "post_id": "p", "creator_id": "c", "image_embedding": [0.1, 0.2], "categories": {"cooking": "high"},
              "quality_score": 0.5, "suggested_hashtags": [], "latency_ms": 12}
    with pytest.raises(CodecError, match=r"field 'categories\['cooking'\]': expected double"):
        codec.encode(record)
    record["categories"] = {"cooking": 0.7}
    record["image_embedding"] = [0.1, 1e39]
    with pytest.raises(CodecError, match=r"field 'image_embedding\[1\]': 1e\+39 is out of range for float \(32-bit\)"):
        codec.encode(record)
    record["image_embedding"] = [0.1, float("inf"), 3]
    assert codec.decode(codec.encode(record))["image_embedding"] == [pytest.approx(0.1), float("inf"), 3.0]


def test_non_dict_record_is_rejected():
    with pytest.raises(CodecError, match=r"expected a pulse\.events\.Upload record \(dict\), got list"):
        CODECS["pulse.events.Upload"].encode([1, 2])


def test_codec_error_is_a_value_error():
    assert issubclass(CodecError, ValueError)


# --- Confluent wire format --------------------------------------------------------------------------


class FakeSchemaRegistry:
    """A test double of the Confluent Schema Registry REST API, serving only the endpoints the
    codec calls (POST /subjects/{s}/versions, POST /subjects/{s}, GET /schemas/ids/{id}), because
    no registry server can run here. Ids are global and start at 1, as in the real registry."""

    def __init__(self) -> None:
        self.schemas: list[str] = []
        self.types: dict[int, str] = {}  # schemaType of non-Avro schemas
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                registry.requests.append(("GET", self.path))
                m = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
                if m and 1 <= int(m[1]) <= len(registry.schemas):
                    text = registry.schemas[int(m[1]) - 1]
                    kind = registry.types.get(int(m[1]))
                    return self._reply(200, {"schema": text, **({"schemaType": kind} if kind else {})})
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})

            def do_POST(self):
                registry.requests.append(("POST", self.path))
                text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["schema"]
                m = re.fullmatch(r"/subjects/([^/]+)(/versions)?", self.path)
                if not m:
                    return self._reply(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
                subject, register = unquote(m[1]), bool(m[2])
                sid = registry.id_of(text)
                if register:
                    if sid is None:
                        registry.schemas.append(text)
                        sid = len(registry.schemas)
                    if sid not in registry.subjects.setdefault(subject, []):
                        registry.subjects[subject].append(sid)
                    return self._reply(200, {"id": sid})
                if subject not in registry.subjects:
                    return self._reply(404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})
                if sid is None or sid not in registry.subjects[subject]:
                    return self._reply(404, {"error_code": 40403, "message": "Schema not found"})
                return self._reply(200, {"subject": subject, "id": sid, "schema": text,
                                         "version": registry.subjects[subject].index(sid) + 1})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def id_of(self, text: str) -> int | None:
        for i, existing in enumerate(self.schemas, start=1):
            if json.loads(existing) == json.loads(text):
                return i
        return None

    def add(self, subject: str, schema: dict) -> int:
        self.schemas.append(json.dumps(schema))
        self.subjects.setdefault(subject, []).append(len(self.schemas))
        return len(self.schemas)


@pytest.fixture
def registry():
    fake = FakeSchemaRegistry()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def confluent(registry, event_type="upload", **kwargs) -> ConfluentCodec:
    return ConfluentCodec(registry.url, "uploads-value", CATALOG, event_type, **kwargs)


def test_confluent_round_trip_registers_once_and_frames_the_body(registry):
    codec = confluent(registry)
    first, second = codec.encode(upload()), codec.encode(upload(post_id="p2"))
    assert first[0] == 0 and int.from_bytes(first[1:5], "big") == codec.schema_id == 1
    assert registry.requests.count(("POST", "/subjects/uploads-value/versions")) == 1
    body = BytesIO()
    schemaless_writer(body, CATALOG.current("upload").parsed, upload())
    assert first[5:] == body.getvalue()
    # a fresh consumer fetches the writer schema by id once, then uses its cache
    reader = confluent(registry)
    assert reader.decode(first) == CODECS["pulse.events.Upload"].decode(CODECS["pulse.events.Upload"].encode(upload()))
    assert reader.decode(second)["post_id"] == "p2"
    assert registry.requests.count(("GET", "/schemas/ids/1")) == 1


def test_confluent_decodes_old_and_unknown_compatible_writer_schemas(registry):
    v1 = CATALOG.event_type("upload").version(1)
    old_id = registry.add("uploads-value", v1.schema)
    # A newer producer's v3, unknown to this checkout: one extra field with a default.
    v3 = json.loads(json.dumps(CATALOG.current("upload").schema))
    v3["fields"].append({"name": "location", "type": ["null", "string"], "default": None, "doc": "new"})
    new_id = registry.add("uploads-value", v3)
    codec = confluent(registry)
    for sid, schema, record in [
        (old_id, v1.parsed, {k: v for k, v in upload().items() if k not in ("title", "width", "height", "parent_post_id")}),
        (new_id, parse_schema(v3, named_schemas={}), upload(location="Lisbon")),
    ]:
        buf = BytesIO(b"\x00" + sid.to_bytes(4, "big"))
        buf.seek(5)
        schemaless_writer(buf, schema, record)
        decoded = codec.decode(buf.getvalue())
        assert set(decoded) == {f["name"] for f in CATALOG.current("upload").schema["fields"]}
        assert decoded["caption"] == "sunset #beach"


def test_confluent_rejects_bad_frames_and_foreign_schemas(registry):
    codec = confluent(registry)
    follow_id = registry.add("follows-value", CATALOG.current("follow").schema)
    with pytest.raises(CodecError, match="bad Confluent magic byte 0xc3"):
        codec.decode(CODECS["pulse.events.Upload"].encode(upload()))
    with pytest.raises(CodecError, match="truncated header: 3 bytes"):
        codec.decode(b"\x00\x00\x00")
    with pytest.raises(CodecError, match="unknown schema id 99"):
        codec.decode(b"\x00" + (99).to_bytes(4, "big") + b"\x00")
    with pytest.raises(CodecError, match=f"schema id {follow_id} is pulse.events.Follow, not pulse.events.Upload"):
        codec.decode(b"\x00" + follow_id.to_bytes(4, "big") + b"\x00")
    proto_id = registry.add("uploads-value", {"syntax": "proto3"})
    registry.types[proto_id] = "PROTOBUF"
    with pytest.raises(CodecError, match=f"schema id {proto_id} is a PROTOBUF schema, not Avro"):
        codec.decode(b"\x00" + proto_id.to_bytes(4, "big") + b"\x00")
    encoded = codec.encode(upload())
    for n in range(len(encoded)):
        with pytest.raises(CodecError):
            codec.decode(encoded[:n])
    with pytest.raises(CodecError, match="field 'kind'"):
        codec.encode(upload(kind="GIF"))


def test_confluent_without_auto_register_looks_the_schema_up(registry):
    codec = confluent(registry, auto_register=False)
    with pytest.raises(SchemaRegistryError, match="not registered under subject 'uploads-value'"):
        codec.encode(upload())
    sid = registry.add("uploads-value", CATALOG.current("upload").schema)
    assert confluent(registry, auto_register=False).schema_id == sid


def test_unreachable_registry_is_not_a_codec_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    codec = ConfluentCodec(f"http://127.0.0.1:{port}", "uploads-value", CATALOG, "upload",
                           client=RegistryClient(f"http://127.0.0.1:{port}", timeout_s=2))
    with pytest.raises(SchemaRegistryError, match="unreachable"):
        codec.encode(upload())
    assert not issubclass(SchemaRegistryError, CodecError)


def test_codec_for_picks_the_wire_format_from_settings(registry):
    single = codec_for(SimpleNamespace(schema_registry_url=None), "upload", "uploads")
    assert isinstance(single, AvroCodec)
    framed = codec_for(SimpleNamespace(schema_registry_url=registry.url), "upload", "uploads")
    assert isinstance(framed, ConfluentCodec) and framed.subject == "uploads-value"
    assert framed.decode(framed.encode(upload())) == single.decode(single.encode(upload()))

"""The event contracts in schemas/avro/ and the catalog that loads them.

Also home of :func:`avro_values`, the hypothesis strategy generated from a schema, which the
codec tests import.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contracts.schemas import (NAMESPACE, SchemaCatalog, SchemaCatalogError, check_backward_compatible,
                             default_catalog, snake_name)
from streams.settings import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "schemas" / "avro"
CATALOG = default_catalog()
ALL_VERSIONS = [v for et in CATALOG for v in et.versions]
CURRENT = [et.current for et in CATALOG]
OLD_VERSIONS = [v for et in CATALOG for v in et.versions[:-1]]

# Which event types are derived from other events (carry cause_event_id) and which are AI outputs
# (also carry model and model_version). Upstream events (apps, rights holders, legal) are neither.
DERIVED = {"ModerationVerdict", "ReviewTask", "ReviewDecision", "CopyrightVerdict", "ContentEnrichment",
           "PostPublished", "ProfileUpdate", "FeedUpdate", "Notification", "GoldenMoment", "Trend",
           "CreatorStats", "DeadLetter", "FeedCandidate", "Takedown", "ContentFingerprint", "TrendMention",
           "AudienceSignal", "NotificationCandidate", "PostEngagement", "CreatorEngagement"}
AI_OUTPUTS = {"ModerationVerdict", "ReviewTask", "CopyrightVerdict", "ContentEnrichment", "ProfileUpdate",
              "FeedUpdate", "FeedCandidate", "Notification", "GoldenMoment", "Trend", "CreatorStats",
              "ContentFingerprint"}
EXPECTED_TYPES = {"Upload", "Interaction", "Follow", "UserSignup"} | DERIVED | AI_OUTPUTS | {
    "CopyrightReference", "NotificationFeedback", "ErasureRequest"}


# --- hypothesis strategies generated from a schema -----------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MIN_TS_MS = (datetime(1, 1, 1, tzinfo=timezone.utc) - EPOCH) // timedelta(milliseconds=1)
MAX_TS_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - EPOCH) // timedelta(milliseconds=1)

_PRIMITIVES = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=24),
    "string": st.text(max_size=24),
}
_LOGICAL = {
    # What the codec returns for these logical types: aware UTC datetimes (millisecond precision)
    # and canonical UUID strings, so generated records compare equal after a round trip.
    ("long", "timestamp-millis"): st.integers(MIN_TS_MS, MAX_TS_MS).map(lambda ms: EPOCH + timedelta(milliseconds=ms)),
    ("string", "uuid"): st.uuids().map(str),
}


def avro_values(schema, names: dict | None = None, ns: str | None = None) -> st.SearchStrategy:
    """A strategy for Python values of the Avro ``schema`` (raw JSON): records as dicts with every
    field, enums as symbols, unions as any branch, logical types as the codec represents them."""
    names = {} if names is None else names
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        full = schema if "." in schema else (f"{ns}.{schema}" if ns else schema)
        full = full if full in names else schema
        return st.deferred(lambda: names[full])
    if isinstance(schema, list):
        return st.one_of([avro_values(b, names, ns) for b in schema])
    t = schema["type"]
    if (t, schema.get("logicalType")) in _LOGICAL:
        return _LOGICAL[(t, schema["logicalType"])]
    if t in _PRIMITIVES:
        return _PRIMITIVES[t]
    if t == "array":
        return st.lists(avro_values(schema["items"], names, ns), max_size=4)
    if t == "map":
        return st.dictionaries(st.text(max_size=8), avro_values(schema["values"], names, ns), max_size=4)
    full = schema["name"] if "." in schema["name"] else ".".join(filter(None, [schema.get("namespace", ns), schema["name"]]))
    inner_ns = full.rpartition(".")[0] or None
    if t == "enum":
        strategy = st.sampled_from(schema["symbols"])
    elif t == "fixed":
        strategy = st.binary(min_size=schema["size"], max_size=schema["size"])
    elif t in ("record", "error"):
        names[full] = st.nothing()  # placeholder while the fields are built (recursive types)
        strategy = st.fixed_dictionaries({f["name"]: avro_values(f["type"], names, inner_ns) for f in schema["fields"]})
    else:
        raise ValueError(f"no strategy for {schema!r}")
    names[full] = strategy
    return strategy


# --- the catalog --------------------------------------------------------------------------------


def test_catalog_holds_every_event_type_of_the_design():
    assert {et.name for et in CATALOG} == EXPECTED_TYPES
    assert len(list(SCHEMA_DIR.glob("*.avsc"))) == len(ALL_VERSIONS)


def test_each_file_is_named_after_its_record_and_version():
    for v in ALL_VERSIONS:
        assert v.path.name == f"{v.snake_name}.v{v.version}.avsc"
        assert v.full_name == f"{NAMESPACE}.{v.name}"
        assert v.name[0].isupper() and "_" not in v.name


def test_event_types_are_found_by_full_short_and_snake_name():
    et = CATALOG.event_type("pulse.events.UserSignup")
    assert CATALOG.event_type("UserSignup") is et and CATALOG.event_type("user_signup") is et
    assert "user_signup" in CATALOG and "nope" not in CATALOG
    with pytest.raises(KeyError, match="unknown event type 'nope'"):
        CATALOG.event_type("nope")


def test_current_version_is_the_highest_and_upload_has_two():
    upload = CATALOG.event_type("upload")
    assert [v.version for v in upload.versions] == [1, 2]
    assert upload.current is upload.version(2) is CATALOG.current("Upload")
    for et in CATALOG:
        assert et.current.version == max(v.version for v in et.versions)


def test_upload_v2_adds_exactly_four_nullable_fields():
    v1, v2 = CATALOG.versions("upload")
    added = [f for f in v2.schema["fields"] if f["name"] not in {g["name"] for g in v1.schema["fields"]}]
    assert [f["name"] for f in added] == ["title", "width", "height", "parent_post_id"]
    assert all(f["type"][0] == "null" and f["default"] is None for f in added)


def test_default_catalog_is_loaded_once():
    assert default_catalog() is default_catalog()


def test_lookup_by_fingerprint_as_bytes_or_int():
    for v in ALL_VERSIONS:
        assert CATALOG.by_fingerprint(v.fingerprint) is v
        assert CATALOG.by_fingerprint(v.fingerprint_int) is v
    assert CATALOG.by_fingerprint(b"\0" * 8) is None


@pytest.mark.parametrize("name, content, problem", [
    ("upload.avsc", "{}", "file name must be"),
    ("upload.v1.avsc", "not json", "cannot read JSON"),
    ("upload.v1.avsc", json.dumps({"type": "record", "name": "Upload", "namespace": "other", "fields": []}), "namespace"),
    ("post.v1.avsc", json.dumps({"type": "record", "name": "Upload", "namespace": NAMESPACE, "fields": []}), "belongs in upload.v1.avsc"),
    ("upload.v1.avsc", json.dumps({"type": "record", "name": "Upload", "namespace": NAMESPACE,
                                   "fields": [{"name": "x", "type": "nosuchtype"}]}), "invalid Avro schema"),
])
def test_catalog_rejects_broken_files(tmp_path: Path, name: str, content: str, problem: str):
    (tmp_path / name).write_text(content)
    with pytest.raises(SchemaCatalogError, match=problem):
        SchemaCatalog(tmp_path)


def test_catalog_loads_a_copy_of_the_repo_schemas(tmp_path: Path):
    for p in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(p, tmp_path)
    copy = SchemaCatalog(tmp_path)
    assert [v.fingerprint for et in copy for v in et.versions] == [v.fingerprint for v in ALL_VERSIONS]


# --- the contract rules (DESIGN.md "Events and schemas") -----------------------------------------


@pytest.mark.parametrize("v", ALL_VERSIONS, ids=lambda v: v.path.name)
def test_common_fields_come_first(v):
    fields = v.schema["fields"]
    assert fields[0] == {**fields[0], "name": "event_id", "type": {"type": "string", "logicalType": "uuid"}}
    assert fields[1]["name"] == "event_time" and fields[1]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields[2]["name"] == "producer" and fields[2]["type"] == "string"
    names = [f["name"] for f in fields]
    if v.name in DERIVED:
        assert fields[3]["name"] == "cause_event_id"
        assert fields[3]["type"] == ["null", "string"] and fields[3]["default"] is None
    else:
        assert "cause_event_id" not in names
    if v.name in AI_OUTPUTS:
        assert names[4:6] == ["model", "model_version"]
        assert fields[4]["type"] == fields[5]["type"] == "string"
    else:
        assert "model" not in names and "model_version" not in names


def _walk(schema, path=""):
    """Yield (path, node) for every field definition and type node of a raw schema."""
    if isinstance(schema, list):
        for b in schema:
            yield from _walk(b, path)
    elif isinstance(schema, dict):
        yield path, schema
        if schema.get("type") in ("record", "error"):
            for f in schema["fields"]:
                yield f"{path}.{f['name']}", f
                yield from _walk(f["type"], f"{path}.{f['name']}")
        elif schema.get("type") == "array":
            yield from _walk(schema["items"], path + "[]")
        elif schema.get("type") == "map":
            yield from _walk(schema["values"], path + "{}")


@pytest.mark.parametrize("v", ALL_VERSIONS, ids=lambda v: v.path.name)
def test_every_field_and_named_type_has_a_doc(v):
    for path, node in _walk(v.schema):
        is_field = "name" in node and "type" in node and node.get("type") not in ("record", "enum", "fixed")
        if is_field or node.get("type") in ("record", "enum", "fixed"):
            assert node.get("doc", "").strip(), f"{v.path.name}: {path or node.get('name')} has no doc"


@pytest.mark.parametrize("v", ALL_VERSIONS, ids=lambda v: v.path.name)
def test_optional_fields_are_null_first_unions_defaulting_to_null(v):
    for path, node in _walk(v.schema):
        t = node.get("type")
        if isinstance(t, list) and "null" in t:  # a field whose type is a union with null
            assert t[0] == "null", f"{path}: null must be the first branch"
            assert "default" in node and node["default"] is None, f"{path}: optional fields default to null"


@pytest.mark.parametrize("v", ALL_VERSIONS, ids=lambda v: v.path.name)
def test_enums_have_upper_case_symbols_and_camel_case_names(v):
    for path, node in _walk(v.schema):
        if node.get("type") == "enum":
            assert node["name"][0].isupper() and "_" not in node["name"]
            assert all(s.isupper() or s.replace("_", "").isupper() for s in node["symbols"])
            assert len(set(node["symbols"])) == len(node["symbols"])


@pytest.mark.parametrize("v", ALL_VERSIONS, ids=lambda v: v.path.name)
def test_no_array_or_map_item_encodes_in_zero_bytes(v):
    """A zero-byte item type (null, an empty record) would let a 12-byte message claim 2**60 items
    and stall the decoder; every item must consume input."""
    for path, node in _walk(v.schema):
        item = node.get("items") if node.get("type") == "array" else node.get("values") if node.get("type") == "map" else ...
        if item is not ...:
            assert item != "null" and item != {"type": "null"}, path
            assert not (isinstance(item, dict) and item.get("type") == "record" and not item["fields"]), path


def test_named_types_shared_between_files_are_defined_identically():
    """Every file is self-contained, so shared enums are repeated; the current versions must agree."""
    seen: dict[str, tuple[str, str]] = {}
    for v in CURRENT:
        for _, node in _walk(v.schema):
            if node.get("type") in ("enum", "record", "fixed") and node is not v.schema:
                full = node["name"] if "." in node["name"] else f"{NAMESPACE}.{node['name']}"
                canonical = to_parsing_canonical_form(node)
                if full in seen:
                    assert seen[full][1] == canonical, f"{full} differs between {seen[full][0]} and {v.path.name}"
                else:
                    seen[full] = (v.path.name, canonical)
    assert "pulse.events.ContentType" in seen and "pulse.events.GateAction" in seen


# --- fingerprints (Avro specification: "Schema Fingerprints", CRC-64-AVRO) -----------------------

_CRC64_EMPTY = 0xC15D213AA4D7A795  # the spec's EMPTY constant
_CRC64_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_CRC64_EMPTY & -(_fp & 1))
    _CRC64_TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint exactly as the Avro specification's reference code computes it."""
    fp = _CRC64_EMPTY
    for b in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ b) & 0xFF]
    return fp


# Published by the Avro project (share/test/data/schema-tests.txt) as signed Java longs.
AVRO_TEST_VECTORS = [
    ('"null"', '"null"', 7195948357588979594),
    ('"int"', '"int"', 8247732601305521295),
    ('{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}', '{"name":"x.y.foo","type":"record","fields":[]}',
     5916914534497305771),
    ('{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}',
     '{"name":"foo","type":"record","fields":[]}', -4824392279771201922),
    ('{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
     '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}', -4448647247586288245),
    ('{"name":"PigValue","type":"record","fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
     '{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
     -1759257747318642341),
]


@pytest.mark.parametrize("schema, canonical, signed", AVRO_TEST_VECTORS)
def test_crc64_avro_and_canonical_form_match_the_avro_test_vectors(schema, canonical, signed):
    assert to_parsing_canonical_form(json.loads(schema)) == canonical
    assert crc64_avro(canonical.encode()) == signed % (1 << 64)


@pytest.mark.parametrize("v", ALL_VERSIONS, ids=lambda v: v.path.name)
def test_catalog_fingerprint_is_crc64_avro_of_the_canonical_form_little_endian(v):
    assert v.canonical_form == to_parsing_canonical_form(v.schema)
    assert v.fingerprint == crc64_avro(v.canonical_form.encode("utf-8")).to_bytes(8, "little")


def test_fingerprint_ignores_docs_and_defaults_but_not_structure():
    v = CATALOG.current("follow")
    edited = json.loads(json.dumps(v.schema))
    edited["doc"] = "changed"
    edited["fields"][0]["doc"] = "changed too"
    assert crc64_avro(to_parsing_canonical_form(edited).encode()) == v.fingerprint_int
    edited["fields"].append({"name": "extra", "type": ["null", "string"], "default": None})
    assert crc64_avro(to_parsing_canonical_form(edited).encode()) != v.fingerprint_int


# --- backward compatibility ---------------------------------------------------------------------


@pytest.mark.parametrize("old", OLD_VERSIONS, ids=lambda v: v.path.name)
def test_current_version_can_read_every_older_version(old):
    current = CATALOG.current(old.full_name)
    assert check_backward_compatible(old, current) == []


def test_structure_check_passes_identical_versions():
    for v in CURRENT:
        assert check_backward_compatible(v, v) == []


@pytest.mark.parametrize("old", OLD_VERSIONS, ids=lambda v: v.path.name)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fastavro_resolves_old_version_data_to_the_current_schema(old, data):
    current = CATALOG.current(old.full_name)
    record = data.draw(avro_values(old.schema))
    buf = BytesIO()
    schemaless_writer(buf, old.parsed, record)
    buf.seek(0)
    resolved = schemaless_reader(buf, old.parsed, current.parsed)
    assert set(resolved) == {f["name"] for f in current.schema["fields"]}


def _record(*fields, name="R"):
    return {"type": "record", "name": name, "namespace": "t", "fields": list(fields)}


@pytest.mark.parametrize("old, new, problem", [
    (_record({"name": "a", "type": "int"}), _record({"name": "a", "type": "int"}, {"name": "b", "type": "string"}),
     "b: reader field is missing in the writer and has no default"),
    (_record({"name": "a", "type": "string"}), _record({"name": "a", "type": "int"}),
     "a: writer type string cannot be read as int"),
    (_record({"name": "a", "type": "long"}), _record({"name": "a", "type": "int"}), "a: writer type long cannot be read as int"),
    (_record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}),
     _record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}), "writer enum symbols ['B']"),
    (_record({"name": "a", "type": ["null", "string"], "default": None}), _record({"name": "a", "type": "string"}),
     "a<branch 0>: writer type null cannot be read as string"),
    (_record({"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}),
     _record({"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}}), "logicalType changed"),
    (_record({"name": "a", "type": "int"}, name="R"), _record({"name": "a", "type": "int"}, name="S"),
     "writer type record t.R cannot be read as record t.S"),
    (_record({"name": "xs", "type": {"type": "array", "items": "string"}}),
     _record({"name": "xs", "type": {"type": "array", "items": "int"}}), "xs[]: writer type string cannot be read as int"),
])
def test_structure_check_reports_breaking_changes(old, new, problem):
    problems = check_backward_compatible(old, new)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("old, new", [
    (_record({"name": "a", "type": "int"}), _record({"name": "a", "type": "long"})),  # promotion
    (_record({"name": "a", "type": "int"}), _record({"name": "a", "type": ["null", "double"], "default": None})),
    (_record({"name": "a", "type": "int"}, {"name": "gone", "type": "string"}), _record({"name": "a", "type": "int"})),
    (_record({"name": "a", "type": "int"}), _record({"name": "a", "type": "int"}, {"name": "n", "type": ["null", "int"], "default": None})),
    (_record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}),
     _record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}})),
    (_record({"name": "old_name", "type": "string"}), _record({"name": "new_name", "aliases": ["old_name"], "type": "string"})),
    (_record({"name": "s", "type": "string"}), _record({"name": "s", "type": "bytes"})),
])
def test_structure_check_accepts_compatible_changes(old, new):
    assert check_backward_compatible(old, new) == []
    # and fastavro agrees on a sample datum
    sample = {f["name"]: {"int": 7, "string": "x", "long": 7}.get(f["type"] if isinstance(f["type"], str) else "", "A")
              for f in old["fields"]}
    buf = BytesIO()
    schemaless_writer(buf, parse_schema(old, named_schemas={}), sample)
    buf.seek(0)
    schemaless_reader(buf, parse_schema(old, named_schemas={}), parse_schema(new, named_schemas={}))


def test_snake_name():
    assert snake_name("UserSignup") == "user_signup" and snake_name("Upload") == "upload"

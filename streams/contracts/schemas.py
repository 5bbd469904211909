"""The schema catalog: every event contract in ``schemas/avro/``, parsed once, addressable by name,
version and fingerprint.

File layout (the data contract, DESIGN.md "Events and schemas"): one self-contained Avro record
schema per file, ``schemas/avro/<snake_name>.v<N>.avsc``, record ``pulse.events.<CamelName>``.
Old versions stay next to the new ones; the highest ``N`` is the current version, the one writers
use and readers resolve to.

Fingerprints are the Avro single-object-encoding fingerprints: CRC-64-AVRO (Rabin) of the schema's
Parsing Canonical Form (Avro 1.11 specification, "Schema Fingerprints" and "Single object
encoding"), as ``fastavro.schema.fingerprint`` computes them. The canonical form drops ``doc``,
``default``, ``logicalType`` and aliases, so a doc-only edit does not change a fingerprint.

Each file is parsed with its own named-type table, so an enum such as ``pulse.events.ContentType``
may be defined in several files (every file stays self-contained); the unit tests check that the
current versions define a shared name identically.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Union

from fastavro import parse_schema
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

NAMESPACE = "pulse.events"
"""Namespace of every event record."""

_FILE_RE = re.compile(r"^(?P<snake>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")


class SchemaCatalogError(ValueError):
    """A schema file breaks the catalog's rules (name, namespace, version, parse error); the
    message names the file."""


def snake_name(name: str) -> str:
    """``"UserSignup"`` -> ``"user_signup"`` (the file-name stem of a record name)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Named:
    """``name`` and ``snake_name`` derived from a ``full_name`` like ``"pulse.events.Upload"``."""

    @property
    def name(self) -> str:
        """Short record name, ``"Upload"``."""
        return self.full_name.rpartition(".")[2]

    @property
    def snake_name(self) -> str:
        """``"upload"``."""
        return snake_name(self.name)


@dataclass(frozen=True, eq=False)
class SchemaVersion(_Named):
    """One version of one event type, loaded from one ``.avsc`` file.

    Attributes
    ----------
    full_name:
        ``"pulse.events.Upload"``.
    version:
        ``N`` of ``upload.vN.avsc``.
    path:
        The file it was read from.
    schema:
        The schema JSON exactly as written in the file (a dict; treat it as read-only).
    parsed:
        ``fastavro.parse_schema(schema)``: what fastavro's writer and reader take.
    canonical_form:
        The Parsing Canonical Form (str).
    fingerprint:
        8 bytes: the CRC-64-AVRO fingerprint of ``canonical_form``, little-endian, exactly as it
        appears after the ``C3 01`` marker of a single-object-encoded message.
    """

    full_name: str
    version: int
    path: Path
    schema: Mapping[str, Any] = field(repr=False)
    parsed: Mapping[str, Any] = field(repr=False)
    canonical_form: str = field(repr=False)
    fingerprint: bytes

    @property
    def fingerprint_int(self) -> int:
        """The fingerprint as an unsigned 64-bit integer (the CRC-64-AVRO value)."""
        return int.from_bytes(self.fingerprint, "little")

    @property
    def fingerprint_hex(self) -> str:
        """``"0x…"``: the fingerprint value in hex, as error messages print it."""
        return f"0x{self.fingerprint_int:016x}"


@dataclass(frozen=True, eq=False)
class EventType(_Named):
    """All versions of one event type, oldest first; ``current`` is the newest."""

    full_name: str
    versions: tuple[SchemaVersion, ...]

    @property
    def current(self) -> SchemaVersion:
        """The highest version: what writers use and what readers resolve to."""
        return self.versions[-1]

    def version(self, n: int) -> SchemaVersion:
        """Version ``n``; ``KeyError`` when there is no such file."""
        for v in self.versions:
            if v.version == n:
                return v
        raise KeyError(f"{self.full_name} has no version {n} (have {[v.version for v in self.versions]})")


def _load_file(path: Path) -> SchemaVersion:
    m = _FILE_RE.match(path.name)
    if not m:
        raise SchemaCatalogError(f"{path}: file name must be <snake_name>.v<N>.avsc")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaCatalogError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaCatalogError(f"{path}: the top level must be a record schema")
    name, namespace = schema.get("name", ""), schema.get("namespace")
    if "." in name:
        namespace, _, name = name.rpartition(".")
    if namespace != NAMESPACE:
        raise SchemaCatalogError(f"{path}: namespace must be {NAMESPACE!r}, not {namespace!r}")
    if snake_name(name) != m["snake"]:
        raise SchemaCatalogError(f"{path}: record {name!r} belongs in {snake_name(name)}.v{m['version']}.avsc")
    try:
        # A fresh named-type table per file: every file is self-contained, and the same enum may
        # be defined in several files without "redefined named type" errors.
        parsed = parse_schema(schema, named_schemas={})
        canonical = to_parsing_canonical_form(schema)
    except Exception as exc:  # fastavro raises SchemaParseError, ValueError, KeyError, TypeError
        raise SchemaCatalogError(f"{path}: invalid Avro schema: {exc}") from exc
    fp = bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))  # little-endian bytes
    return SchemaVersion(f"{NAMESPACE}.{name}", int(m["version"]), path, schema, parsed, canonical, fp)


class SchemaCatalog:
    """Every event schema under one directory, loaded and parsed once.

    Look an event type up by full name (``"pulse.events.Upload"``), short name (``"Upload"``) or
    snake name (``"upload"``); look a writer schema up by its 8-byte fingerprint.

    Raises
    ------
    SchemaCatalogError
        At construction, for a file that breaks the naming rules or does not parse, or for two
        event types whose versions share a fingerprint.

    Examples
    --------
    >>> catalog = default_catalog()
    >>> catalog.event_type("upload").current.version >= 2
    True
    >>> v = catalog.current("Upload"); catalog.by_fingerprint(v.fingerprint) is v
    True
    """

    def __init__(self, schema_dir: Union[str, Path]) -> None:
        self.schema_dir = Path(schema_dir)
        paths = sorted(self.schema_dir.glob("*.avsc"))
        if not paths:
            raise SchemaCatalogError(f"{self.schema_dir}: no .avsc files")
        by_type: dict[str, list[SchemaVersion]] = {}
        for path in paths:
            v = _load_file(path)
            by_type.setdefault(v.full_name, []).append(v)
        self._types: dict[str, EventType] = {}
        self._aliases: dict[str, EventType] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for full_name, versions in sorted(by_type.items()):
            versions.sort(key=lambda v: v.version)
            et = EventType(full_name, tuple(versions))
            self._types[full_name] = et
            for alias in (full_name, et.name, et.snake_name):
                self._aliases[alias] = et
            for v in versions:
                other = self._by_fingerprint.get(v.fingerprint)
                if other is not None and other.full_name != v.full_name:  # cannot happen: names are in the form
                    raise SchemaCatalogError(f"{v.path} and {other.path} share fingerprint {v.fingerprint_hex}")
                # Two versions of one type with the same canonical form (a doc-only change) are
                # interchangeable for decoding; the newer one wins.
                self._by_fingerprint[v.fingerprint] = v

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._aliases

    @property
    def event_types(self) -> tuple[EventType, ...]:
        """All event types, sorted by full name."""
        return tuple(self._types.values())

    def event_type(self, name: str) -> EventType:
        """The event type called ``name`` (full, short or snake name).

        Raises
        ------
        KeyError
            No such event type in this catalog.
        """
        try:
            return self._aliases[name]
        except KeyError:
            raise KeyError(f"unknown event type {name!r} (known: {', '.join(et.name for et in self)})") from None

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        """All versions of ``name``, oldest first."""
        return self.event_type(name).versions

    def current(self, name: str) -> SchemaVersion:
        """The current (highest) version of ``name``."""
        return self.event_type(name).current

    def by_fingerprint(self, fingerprint: Union[bytes, int]) -> SchemaVersion | None:
        """The schema version with this fingerprint (8 little-endian bytes, or the unsigned 64-bit
        value), or ``None`` when it is not in the catalog."""
        if isinstance(fingerprint, int):
            fingerprint = fingerprint.to_bytes(8, "little")
        return self._by_fingerprint.get(bytes(fingerprint))

    def __repr__(self) -> str:
        return f"SchemaCatalog({str(self.schema_dir)!r}, {len(self)} event types)"


@functools.lru_cache(maxsize=None)
def default_catalog() -> SchemaCatalog:
    """The catalog of the checkout Pulse runs from (``REPO_ROOT/schemas/avro``), loaded once per
    process."""
    from streams.settings import REPO_ROOT

    return SchemaCatalog(REPO_ROOT / "schemas" / "avro")


# --- Backward compatibility (Avro schema resolution, specification section "Schema Resolution") ---

SchemaLike = Union[SchemaVersion, Mapping[str, Any], str, list]

_PROMOTIONS = {  # writer type -> reader types it may be read as
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_NAMED = {"record", "enum", "fixed", "error"}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def check_backward_compatible(old: SchemaLike, new: SchemaLike) -> list[str]:
    """Can a reader using ``new`` read every datum written with ``old``?

    A structural check of the Avro specification's resolution rules, with ``old`` as the writer
    schema and ``new`` as the reader schema: named types must have the same unqualified name (or
    the reader lists the writer's name among its aliases); every reader field must exist in the writer or have a
    default; writer-only fields are skipped; enum symbols the writer may send must exist in the
    reader (unless the reader enum has a default); primitives may be promoted (int -> long ->
    float -> double, string <-> bytes); a writer union branch must resolve to some reader branch.
    It also reports a changed ``logicalType`` (e.g. millis -> micros), which Avro would resolve
    silently while changing the meaning.

    Parameters
    ----------
    old, new:
        :class:`SchemaVersion` objects or schema JSON (dict, list or primitive name).

    Returns
    -------
    list[str]
        Every incompatibility found, as ``"<path>: <problem>"``; empty when ``new`` can read
        ``old``'s data.
    """
    w = old.schema if isinstance(old, SchemaVersion) else old
    r = new.schema if isinstance(new, SchemaVersion) else new
    problems: list[str] = []
    _Resolver(problems).resolve(w, r, "", None, None)
    return problems


class _Resolver:
    """Walks a writer and a reader schema together (raw JSON, names resolved on the fly)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.w_names: dict[str, Any] = {}
        self.r_names: dict[str, Any] = {}
        self.seen: set[tuple[str, str]] = set()

    def _deref(self, s: Any, ns: str | None, table: dict[str, Any]) -> tuple[Any, str | None]:
        """Register named definitions; turn references into their definitions."""
        if isinstance(s, str) and s not in _PRIMITIVES:
            full = s if "." in s else (f"{ns}.{s}" if ns else s)
            if full not in table and s in table:
                full = s
            return table.get(full, {"type": "__unknown__", "name": full}), ns
        if isinstance(s, dict) and s.get("type") in _NAMED:
            full = _full_name(s, ns)
            table.setdefault(full, s)
            return s, full.rpartition(".")[0] or None
        if isinstance(s, dict) and s.get("type") in _PRIMITIVES and "logicalType" not in s:
            return s["type"], ns
        return s, ns

    def resolve(self, w: Any, r: Any, path: str, w_ns: str | None, r_ns: str | None) -> None:
        w, w_ns = self._deref(w, w_ns, self.w_names)
        r, r_ns = self._deref(r, r_ns, self.r_names)
        where = path or "<root>"
        if isinstance(w, list):  # writer union: every branch must be readable
            for i, branch in enumerate(w):
                self.resolve(branch, r, f"{path}<branch {i}>", w_ns, r_ns)
            return
        if isinstance(r, list):  # reader union, writer not: the first matching branch reads it
            for branch in r:
                rb, rb_ns = self._deref(branch, r_ns, self.r_names)
                if _matches(w, rb, w_ns, rb_ns):
                    self.resolve(w, rb, path, w_ns, rb_ns)
                    return
            self.problems.append(f"{where}: writer type {_type_name(w, w_ns)} matches no branch of the reader union")
            return
        wt, rt = _type_of(w), _type_of(r)
        if wt == "__unknown__" or rt == "__unknown__":
            self.problems.append(f"{where}: unresolvable named type reference")
            return
        if not _matches(w, r, w_ns, r_ns):
            self.problems.append(f"{where}: writer type {_type_name(w, w_ns)} cannot be read as {_type_name(r, r_ns)}")
            return
        w_logical = w.get("logicalType") if isinstance(w, dict) else None
        r_logical = r.get("logicalType") if isinstance(r, dict) else None
        if wt == rt and w_logical != r_logical and w_logical and r_logical:
            self.problems.append(f"{where}: logicalType changed from {w_logical} to {r_logical}")
        if rt in ("record", "error"):
            key = (_full_name(w, w_ns), _full_name(r, r_ns))
            if key in self.seen:  # recursive types
                return
            self.seen.add(key)
            w_fields = {f["name"]: f for f in w.get("fields", [])}
            for rf in r.get("fields", []):
                names = [rf["name"], *rf.get("aliases", [])]
                wf = next((w_fields[n] for n in names if n in w_fields), None)
                fpath = f"{path}.{rf['name']}" if path else rf["name"]
                if wf is None:
                    if "default" not in rf:
                        self.problems.append(f"{fpath}: reader field is missing in the writer and has no default")
                    continue
                self.resolve(wf["type"], rf["type"], fpath, w_ns, r_ns)
        elif rt == "enum":
            missing = [s for s in w.get("symbols", []) if s not in r.get("symbols", [])]
            if missing and "default" not in r:
                self.problems.append(f"{where}: writer enum symbols {missing} are unknown to the reader (and it has no default)")
        elif rt == "fixed":
            if w.get("size") != r.get("size"):
                self.problems.append(f"{where}: fixed size changed from {w.get('size')} to {r.get('size')}")
        elif rt == "array":
            self.resolve(w["items"], r["items"], f"{path}[]", w_ns, r_ns)
        elif rt == "map":
            self.resolve(w["values"], r["values"], f"{path}{{}}", w_ns, r_ns)


def _full_name(s: Mapping[str, Any], ns: str | None) -> str:
    name = s["name"]
    if "." in name:
        return name
    ns = s.get("namespace", ns)
    return f"{ns}.{name}" if ns else name


def _type_of(s: Any) -> str:
    if isinstance(s, str):
        return s
    if isinstance(s, dict):
        t = s.get("type")
        return t if isinstance(t, str) else "__unknown__"
    return "union"


def _type_name(s: Any, ns: str | None) -> str:
    t = _type_of(s)
    return f"{t} {_full_name(s, ns)}" if t in _NAMED else t


def _matches(w: Any, r: Any, w_ns: str | None, r_ns: str | None) -> bool:
    """Whether writer type ``w`` can be read as reader type ``r`` (both non-union, dereferenced)."""
    wt, rt = _type_of(w), _type_of(r)
    if wt in _NAMED or rt in _NAMED:
        if wt != rt and {wt, rt} != {"record", "error"}:
            return False
        # The specification matches named types by unqualified name; reader aliases also match.
        w_short = _full_name(w, w_ns).rpartition(".")[2]
        r_names = {_full_name(r, r_ns), *r.get("aliases", [])}
        return w_short in {n.rpartition(".")[2] for n in r_names}
    if wt in ("array", "map"):
        return wt == rt
    return rt in _PROMOTIONS.get(wt, {wt})

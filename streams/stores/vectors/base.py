"""The vector-index contract: collection specs, points, hits, filters and the ``VectorIndex`` ABC.

Two engines implement it (DESIGN.md, "Qdrant"): :class:`~streams.stores.vectors.qdrant_client_index.QdrantClientIndex`
(a Qdrant server, or qdrant-client's pure-Python local mode) and
:class:`~streams.stores.vectors.edge_index.EdgeIndex` (Qdrant's own engine in-process, qdrant-edge-py).
``tests/unit/test_vector_index_contract.py`` runs one suite against both.

Ids. Pulse ids are strings (``"se-123"``, user ids); Qdrant point ids are uint64 or UUIDs. A Pulse
id maps to ``uuid5(PULSE_ID_NAMESPACE, id)`` (RFC 4122 name-based UUID, so the same id is the same
point on every engine and every replay) and the original string is kept in the payload under
``"_id"``. Callers never see ``"_id"`` in payloads; ``Point.id`` and ``Hit.id`` are the strings.

Scores are the engine's own (Qdrant's convention): ``cosine`` -> cosine similarity in [-1, 1] and
``dot`` -> dot product, best first (descending); ``euclid`` -> Euclidean distance and
``manhattan`` -> L1 distance, best first (ascending). On 0/1 vectors the Manhattan distance is the
Hamming distance (an integer-valued float).

Filters (``must`` / ``must_not``) are dicts from payload field to a condition:

- ``{"kind": "video"}``, ``{"published": True}``, ``{"frame": 3}`` -- equality on a keyword, bool or
  integer field; on an array field (``categories``) it matches when any element equals.
- ``{"creator_id": ["u1", "u2"]}`` -- any-of (strings, or integers). Empty: in ``must`` nothing
  matches; in ``must_not`` nothing is excluded.
- ``{"created_at": {"gte": t0, "lt": t1}}`` -- range (``gt``/``gte``/``lt``/``lte``) on numbers, or on
  RFC 3339 strings for a ``datetime`` field.
- ``"_id"`` names the Pulse id, e.g. ``must_not={"_id": seen_post_ids}``.

``must`` requires every condition; ``must_not`` excludes a point that matches *any* of its
conditions.
"""
from __future__ import annotations

import abc
import math
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from streams.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS_TOML = REPO_ROOT / "infra" / "qdrant" / "collections.toml"
PULSE_ID_NAMESPACE = uuid.UUID("abcd20bb-d7ad-5f95-a01f-06558fc75178")
"""uuid5(NAMESPACE_URL, "https://pulse.events/vector-point-ids"). Never change it: every stored point id derives from it."""
ID_FIELD = "_id"
DISTANCES = ("cosine", "dot", "euclid", "manhattan")
PAYLOAD_INDEX_TYPES = ("keyword", "integer", "float", "bool", "datetime")
RANGE_OPS = ("gt", "gte", "lt", "lte")
Distance = Literal["cosine", "dot", "euclid", "manhattan"]


class VectorIndexError(RuntimeError):
    """Base class of the vector layer's own errors."""


class CollectionNotFoundError(VectorIndexError, KeyError):
    """The collection does not exist: call ``ensure_collection`` first."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CollectionSpecMismatchError(VectorIndexError, ValueError):
    """The collection exists with another vector size or distance (a rebuild is needed)."""


class IndexLockedError(VectorIndexError):
    """The on-disk index is opened by another process (or another index object in this one)."""


@dataclass(frozen=True)
class CollectionSpec:
    """One Qdrant collection: ``size``-d vectors compared by ``distance``, with payload indexes.

    ``size`` is an integer (one unnamed vector per point) or a mapping ``{vector name: size}``
    (Qdrant's named vectors, e.g. ``{"image": 1280, "text": 384}``, all compared by ``distance``;
    a point may lack some of them, and a search names the one it uses). ``payload_indexes`` maps
    a payload field to one of :data:`PAYLOAD_INDEX_TYPES`.
    """

    name: str
    size: int | Mapping[str, int]
    distance: Distance
    payload_indexes: dict[str, str] = field(default_factory=dict)
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"bad collection name {self.name!r}")
        if isinstance(self.size, Mapping):
            if not self.size or not all(isinstance(k, str) and k and _positive(v) for k, v in self.size.items()):
                raise ValueError(f"collection {self.name!r}: named vector sizes must map non-empty names "
                                 f"to positive integers, got {dict(self.size)!r}")
            object.__setattr__(self, "size", dict(sorted(self.size.items())))
        elif not _positive(self.size):
            raise ValueError(f"collection {self.name!r}: size must be a positive integer, got {self.size!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"collection {self.name!r}: distance must be one of {DISTANCES}, got {self.distance!r}")
        for name, kind in self.payload_indexes.items():
            if kind not in PAYLOAD_INDEX_TYPES:
                raise ValueError(f"collection {self.name!r}: payload index {name!r} has type {kind!r}, "
                                 f"not one of {PAYLOAD_INDEX_TYPES}")


    @property
    def named(self) -> bool:
        """True when points carry named vectors (``size`` is a mapping)."""
        return isinstance(self.size, dict)


def _positive(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True, eq=False)
class Point:
    """A vector with its Pulse id and payload. ``vector`` becomes a ``(size,) float32`` array, or,
    for a collection of named vectors, a dict ``{name: (size,) float32}`` of some of its vectors.

    ``payload`` must be JSON-like (str, int, float, bool, None, lists, dicts) and must not use
    the reserved key ``"_id"``.
    """

    id: str
    vector: np.ndarray | dict[str, np.ndarray]
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.vector, Mapping):
            object.__setattr__(self, "vector", {str(k): np.asarray(v, dtype=np.float32)
                                                for k, v in self.vector.items()})
        else:
            object.__setattr__(self, "vector", np.asarray(self.vector, dtype=np.float32))

    def __repr__(self) -> str:
        if isinstance(self.vector, dict):
            shapes = ", ".join(f"{k}: {v.shape}" for k, v in self.vector.items())
            return f"Point(id={self.id!r}, vector={{{shapes}}}, payload={self.payload!r})"
        return f"Point(id={self.id!r}, vector=<{self.vector.shape} float32>, payload={self.payload!r})"


@dataclass(frozen=True)
class Hit:
    """One search result: Pulse id, engine score (see the module docstring) and payload."""

    id: str
    score: float
    payload: dict[str, Any]


def load_collection_specs(path: Path | str = COLLECTIONS_TOML, *, embedding_dim: int | None = None,
                          dims: Mapping[str, int] | None = None) -> dict[str, CollectionSpec]:
    """Read ``infra/qdrant/collections.toml`` into ``{name: CollectionSpec}``.

    ``size = "embedding_dim"`` in a collection refers to the top-level integer of that name;
    ``embedding_dim`` (when given) overrides the file's value, for an embedding model of another
    width; ``dims`` overrides any top-level integer by name (e.g. ``{"image_dim": 512}`` for a
    CLIP image tower). A ``[collections.<name>.vectors]`` table instead of ``size`` declares
    named vectors (name -> size or constant name). Raises ``ValueError`` on a malformed file,
    ``OSError`` when it cannot be read.
    """
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    constants = {k: v for k, v in doc.items() if isinstance(v, int) and not isinstance(v, bool)}
    if embedding_dim is not None:
        constants["embedding_dim"] = int(embedding_dim)
    constants.update({k: int(v) for k, v in (dims or {}).items()})

    def resolve(name: str, size: Any) -> Any:
        if isinstance(size, str):
            if size not in constants:
                raise ValueError(f"{path}: collection {name!r} has size {size!r}, not a top-level integer")
            return constants[size]
        return size

    specs = {}
    for name, table in doc.get("collections", {}).items():
        if "vectors" in table:
            size = {v: resolve(name, s) for v, s in table["vectors"].items()}
        else:
            size = resolve(name, table.get("size"))
        specs[name] = CollectionSpec(name=name, size=size, distance=table.get("distance"),
                                     payload_indexes=dict(table.get("payload_indexes", {})),
                                     doc=table.get("doc", ""))
    return specs


def point_uuid(pulse_id: str) -> str:
    """The Qdrant point id of a Pulse id: ``str(uuid5(PULSE_ID_NAMESPACE, pulse_id))``."""
    if not isinstance(pulse_id, str) or not pulse_id:
        raise ValueError(f"a Pulse id is a non-empty string, got {pulse_id!r}")
    return str(uuid.uuid5(PULSE_ID_NAMESPACE, pulse_id))


# --------------------------------------------------------------------------- filters

@dataclass(frozen=True)
class Condition:
    """One parsed filter condition; the engines translate it to their own classes.

    ``op`` is ``"equals"`` (value: str | int | bool), ``"any_of"`` (value: tuple of str, or of
    int) or ``"range"`` (value: ``{"gte": 1.0, ...}`` of floats, or of RFC 3339 strings).
    """

    field: str
    op: Literal["equals", "any_of", "range"]
    value: Any


def _scalar(field_: str, v: Any) -> str | int | bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (float, np.floating)):
        raise ValueError(f"filter on {field_!r}: equality on a float is not supported, use a range")
    raise ValueError(f"filter on {field_!r}: {v!r} is not a string, integer or bool")


def parse_filter(conditions: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    """Parse a ``must`` / ``must_not`` dict (module docstring); ``ValueError`` on anything else."""
    parsed = []
    for name, v in (conditions or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"filter field names are non-empty strings, got {name!r}")
        if isinstance(v, Mapping):
            bad = set(v) - set(RANGE_OPS)
            if bad or not v:
                raise ValueError(f"range filter on {name!r} takes keys {RANGE_OPS}, got {sorted(v)}")
            if all(isinstance(x, str) for x in v.values()):
                bounds = dict(v)
            elif all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))
                     and math.isfinite(x) for x in v.values()):
                bounds = {k: float(x) for k, x in v.items()}
            else:
                raise ValueError(f"range filter on {name!r}: bounds must be all finite numbers or all "
                                 f"RFC 3339 strings, got {dict(v)!r}")
            parsed.append(Condition(name, "range", bounds))
        elif isinstance(v, (list, tuple, set, frozenset, np.ndarray)):
            values = tuple(_scalar(name, x) for x in v)
            if any(isinstance(x, bool) for x in values) or len({type(x) for x in values}) > 1:
                raise ValueError(f"any-of filter on {name!r} takes only strings or only integers, got {list(v)!r}")
            parsed.append(Condition(name, "any_of", values))
        else:
            parsed.append(Condition(name, "equals", _scalar(name, v)))
    return tuple(parsed)


# --------------------------------------------------------------------------- the contract

class VectorIndex(abc.ABC):
    """A set of named vector collections; one implementation per engine.

    The public methods below validate their input, map Pulse ids to point UUIDs and back, and
    call the engine's hooks (``_create``, ``_upsert``, ...), so every engine behaves the same.
    Errors: ``ValueError`` for bad input (wrong vector width, non-finite values, bad filters,
    reserved payload keys), :class:`CollectionNotFoundError` for an unknown collection,
    :class:`IndexLockedError` when the storage is held by another process. Use it as a context
    manager, or call :meth:`close`.
    """

    upsert_batch_size = 512
    """Points sent to the engine per call."""

    # ---- engine hooks
    @abc.abstractmethod
    def _create(self, spec: CollectionSpec) -> None:
        """Create the collection, or check the existing one (size, distance) and add missing payload indexes."""

    @abc.abstractmethod
    def _dims(self, collection: str) -> tuple[int | dict[str, int], Distance]:
        """``(size, distance)`` of an existing collection (size: ``{name: size}`` for named
        vectors); CollectionNotFoundError otherwise."""

    @abc.abstractmethod
    def _upsert(self, collection: str, ids: list[str], vectors: np.ndarray | list[dict[str, np.ndarray]],
                payloads: list[dict]) -> None:
        """Write vectors under point UUIDs ``ids``: a ``(n, size) float32`` matrix, or (named vectors)
        one ``{name: (size,) float32}`` dict per point; returns when durable/visible."""

    @abc.abstractmethod
    def _delete(self, collection: str, ids: list[str]) -> None: ...

    @abc.abstractmethod
    def _set_payload(self, collection: str, ids: list[str], payload: dict) -> None:
        """Merge ``payload``'s keys into the payloads of the points with UUIDs ``ids`` (all of them
        exist: see :meth:`_existing`); vectors and other keys untouched; returns when visible."""

    def _existing(self, collection: str, ids: list[str]) -> list[str]:
        """The UUIDs among ``ids`` that are points of the collection (engines override this to
        skip fetching vectors)."""
        return [str(uid) for uid, _, _ in self._retrieve(collection, ids)]

    def _retrieve_payloads(self, collection: str, ids: list[str]) -> list[tuple[Any, dict]]:
        """``(point id, payload)`` of each existing point among UUIDs ``ids`` (engines override
        this to skip fetching vectors)."""
        return [(uid, payload) for uid, _, payload in self._retrieve(collection, ids)]

    @abc.abstractmethod
    def _retrieve(self, collection: str, ids: list[str]) -> list[tuple[Any, Any, dict]]:
        """``(point id, vector, payload)`` of each existing point among UUIDs ``ids``, any order
        (vector: a list of floats, or ``{name: list}`` for named vectors)."""

    @abc.abstractmethod
    def _count(self, collection: str) -> int: ...

    @abc.abstractmethod
    def _search(self, collection: str, queries: np.ndarray, limit: int, must: tuple[Condition, ...],
                must_not: tuple[Condition, ...], exact: bool, using: str | None = None
                ) -> list[list[tuple[Any, float, dict]]]:
        """Per ``(q, size)`` query row, up to ``limit`` ``(point id, score, payload)``, best first.
        ``using`` names the vector searched in a collection of named vectors (else ``None``)."""

    @abc.abstractmethod
    def optimize(self) -> None:
        """Build indexes / merge segments now (blocking); a no-op where the engine does it itself."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the storage (locks, files, connections). Idempotent."""

    @abc.abstractmethod
    def drop_collection(self, name: str) -> bool:
        """Delete collection ``name`` and its points; False when it did not exist.

        Raises :class:`IndexLockedError` (edge) when another process holds it."""

    # ---- public API
    def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create ``spec`` if absent, else check it matches; add missing payload indexes. Idempotent.

        Raises :class:`CollectionSpecMismatchError` when the collection exists with another size
        or distance (or other vector names).
        """
        self._create(spec)

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or overwrite points by id (the same id replaces vector and whole payload).

        Raises ``ValueError`` for a vector that is not ``(size,)`` or not finite, a non-string id or
        a payload using ``"_id"``; in a collection of named vectors, for a point whose vector is not
        a non-empty dict of known names; the batch is validated before anything is written.
        """
        size, _ = self._dims(collection)
        points = list(points)
        if not points:
            return
        ids, payloads = [], []
        for p in points:
            if ID_FIELD in p.payload:
                raise ValueError(f"point {p.id!r}: payload key {ID_FIELD!r} is reserved for the Pulse id")
            ids.append(point_uuid(p.id))
            payloads.append({**p.payload, ID_FIELD: p.id})
        if isinstance(size, dict):
            vectors = [_named_vectors(p, size, collection) for p in points]
        else:
            for p in points:
                if not isinstance(p.vector, np.ndarray) or p.vector.shape != (size,):
                    shape = f"shape {p.vector.shape}" if isinstance(p.vector, np.ndarray) else "named vectors"
                    raise ValueError(f"{collection!r} holds ({size},) vectors; point {p.id!r} has {shape}")
            vectors = _as_matrix([p.vector for p in points], size, collection, what="point vectors")
        for start in range(0, len(points), self.upsert_batch_size):
            stop = start + self.upsert_batch_size
            self._upsert(collection, ids[start:stop], vectors[start:stop], payloads[start:stop])

    def delete(self, collection: str, ids: Iterable[str]) -> None:
        """Delete points by Pulse id; ids that are not there are ignored."""
        self._dims(collection)
        uuids = [point_uuid(i) for i in _id_list(ids)]
        if uuids:
            self._delete(collection, uuids)

    def set_payload(self, collection: str, ids: Iterable[str], payload: Mapping[str, Any]) -> None:
        """Merge ``payload`` into the payloads of existing points (Qdrant's ``set_payload``).

        Each key of ``payload`` overwrites or adds that key on every point among ``ids``; the
        point's other payload keys and its vectors are unchanged. Ids that are not in the
        collection are ignored (no point is created). An empty ``ids`` or ``payload`` is a no-op.
        Used, for example, by the publisher to mark posts ``published`` / ``moderation_action``
        after the gates decide, without re-sending their vectors.

        Raises ``ValueError`` for the reserved key ``"_id"``, a non-string key, or a lone string
        as ``ids``; :class:`CollectionNotFoundError` for an unknown collection.
        """
        self._dims(collection)
        payload = dict(payload)
        for key in payload:
            if not isinstance(key, str) or not key:
                raise ValueError(f"payload keys are non-empty strings, got {key!r}")
        if ID_FIELD in payload:
            raise ValueError(f"payload key {ID_FIELD!r} is reserved for the Pulse id")
        wanted = list(dict.fromkeys(_id_list(ids)))
        if not wanted or not payload:
            return
        # Both engines reject a missing id (qdrant-edge after updating the ids before it; the
        # server and local mode with an error), so ids are narrowed to existing points first.
        for start in range(0, len(wanted), self.upsert_batch_size):
            chunk = [point_uuid(i) for i in wanted[start:start + self.upsert_batch_size]]
            present = self._existing(collection, chunk)
            if present:
                self._set_payload(collection, present, payload)

    def payloads(self, collection: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{id: payload}`` of the stored points among ``ids`` (missing ids are absent), without
        reading their vectors.

        Raises :class:`CollectionNotFoundError` for an unknown collection.
        """
        self._dims(collection)
        wanted = list(dict.fromkeys(_id_list(ids)))
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), self.upsert_batch_size):
            chunk = [point_uuid(i) for i in wanted[start:start + self.upsert_batch_size]]
            for uid, payload in self._retrieve_payloads(collection, chunk):
                pid, payload = _split_payload(payload, uid)
                out[pid] = payload
        return out

    def get(self, collection: str, ids: Iterable[str]) -> list[Point]:
        """The stored points among ``ids``, in the order asked (missing ids are skipped).

        The vector is as the engine stores it: unit-normalised in a cosine collection; a dict of
        the point's named vectors in a collection of named vectors.
        """
        self._dims(collection)
        wanted = list(dict.fromkeys(_id_list(ids)))
        found = {}
        for uid, vector, payload in self._retrieve(collection, [point_uuid(i) for i in wanted]):
            pid, payload = _split_payload(payload, uid)
            if isinstance(vector, Mapping):
                vector = {k: np.asarray(v, dtype=np.float32) for k, v in vector.items()}
            else:
                vector = np.asarray(vector, dtype=np.float32)
            found[pid] = Point(pid, vector, payload)
        return [found[i] for i in wanted if i in found]

    def dims(self, collection: str) -> int | dict[str, int]:
        """The collection's vector width, or ``{name: width}`` of its named vectors."""
        return self._dims(collection)[0]

    def count(self, collection: str) -> int:
        """Exact number of points in the collection."""
        self._dims(collection)
        return self._count(collection)

    def search(self, collection: str, vector: np.ndarray | Sequence[float], limit: int = 10,
               must: Mapping[str, Any] | None = None, must_not: Mapping[str, Any] | None = None,
               *, exact: bool = False, using: str | None = None) -> list[Hit]:
        """The ``limit`` nearest points to a ``(size,)`` vector, best first, among those passing the filters.

        ``exact=True`` forces a brute-force scan where the engine has built an approximate (HNSW)
        index. ``using`` names the vector to search in a collection of named vectors (required
        there; points without that vector are not found). Scores and filters: see the module
        docstring.
        """
        q = np.asarray(vector, dtype=np.float32)
        if q.ndim != 1:
            raise ValueError(f"search on {collection!r}: query must be one vector, got shape {q.shape}")
        return self.search_batch(collection, q[None, :], limit, must, must_not, exact=exact, using=using)[0]

    def search_batch(self, collection: str, vectors: np.ndarray | Sequence[Sequence[float]], limit: int = 10,
                     must: Mapping[str, Any] | None = None, must_not: Mapping[str, Any] | None = None,
                     *, exact: bool = False, using: str | None = None) -> list[list[Hit]]:
        """:meth:`search` for each row of ``(q, size)`` vectors with the same filters, in one engine call."""
        size, _ = self._dims(collection)
        if isinstance(size, dict):
            if using not in size:
                raise ValueError(f"{collection!r} holds named vectors {sorted(size)}; pass using= one of them, "
                                 f"got {using!r}")
            size = size[using]
        elif using is not None:
            raise ValueError(f"{collection!r} holds one unnamed vector; using={using!r} is not allowed")
        queries = _as_matrix(vectors, size, collection, what="query vectors")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        must_c, must_not_c = parse_filter(must), parse_filter(must_not)
        if len(queries) == 0 or any(c.op == "any_of" and not c.value for c in must_c):
            return [[] for _ in range(len(queries))]
        must_not_c = tuple(c for c in must_not_c if not (c.op == "any_of" and not c.value))
        results = self._search(collection, queries, int(limit), must_c, must_not_c, exact, using=using)
        hits = []
        for rows in results:
            hits.append([])
            for uid, score, payload in rows:
                pid, payload = _split_payload(payload, uid)
                hits[-1].append(Hit(pid, float(score), payload))
        return hits

    def __enter__(self) -> "VectorIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _id_list(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, str):  # a lone id would iterate as characters
        raise ValueError(f"pass a list of ids, not the string {ids!r}")
    return list(ids)


def _split_payload(payload: dict | None, point_id: Any) -> tuple[str, dict]:
    """``(pulse id, payload without "_id")``; a point written without ``"_id"`` keeps its UUID as id."""
    payload = dict(payload or {})
    return str(payload.pop(ID_FIELD, point_id)), payload


def _named_vectors(p: Point, sizes: dict[str, int], collection: str) -> dict[str, np.ndarray]:
    """Validate one point's named vectors: a non-empty dict of known names, right widths, finite."""
    if not isinstance(p.vector, dict) or not p.vector:
        raise ValueError(f"{collection!r} holds named vectors {sorted(sizes)}; point {p.id!r} must give a "
                         f"non-empty dict of some of them")
    out = {}
    for name, v in p.vector.items():
        if name not in sizes:
            raise ValueError(f"{collection!r} has no vector named {name!r} (point {p.id!r}); it has {sorted(sizes)}")
        if v.ndim != 1:
            raise ValueError(f"vector {name!r} of point {p.id!r} must be one ({sizes[name]},) vector, got {v.shape}")
        out[name] = _as_matrix(v[None, :], sizes[name], collection, what=f"vector {name!r} of point {p.id!r}")[0]
    return out


def _as_matrix(vectors: Any, size: int, collection: str, what: str) -> np.ndarray:
    """``(n, size)`` C-contiguous float32 from vectors; ValueError on another width or NaN/inf."""
    try:
        m = np.asarray(vectors, dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{collection!r}: {what} are not numeric ({size},) arrays: {e}") from None
    if m.shape == (0,):
        m = m.reshape(0, size)
    if m.ndim != 2 or m.shape[1] != size:
        raise ValueError(f"{collection!r} holds ({size},) vectors; {what} have shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{collection!r}: {what} contain NaN or infinity")
    return np.ascontiguousarray(m)


def open_vector_index(settings: "Settings", *, backend: Literal["auto", "server", "edge", "local"] = "auto",
                      path: Path | str | None = None) -> VectorIndex:
    """The vector index Pulse uses, from settings.

    ``backend="auto"``: a Qdrant server when ``settings.qdrant_url`` is set, else the embedded
    qdrant-edge engine under ``settings.qdrant_path`` (one shard directory per collection; one
    process per directory; HNSW built in the background every ``settings.vector_index_build_points``
    upserted points). ``"server"`` / ``"edge"`` force one; ``"local"`` is qdrant-client's
    local mode at ``path`` (default ``$PULSE_HOME/qdrant-local``; ``":memory:"`` for RAM only).
    ``path`` also overrides the edge root. Raises :class:`IndexLockedError` when the storage is
    held by another process.
    """
    if backend == "auto":
        backend = "server" if settings.qdrant_url else "edge"
    if backend == "server":
        from streams.stores.vectors.qdrant_client_index import QdrantClientIndex
        if not settings.qdrant_url:
            raise ValueError("backend='server' needs PULSE_QDRANT_URL (settings.qdrant_url)")
        return QdrantClientIndex(url=settings.qdrant_url)
    if backend == "local":
        from streams.stores.vectors.qdrant_client_index import QdrantClientIndex
        return QdrantClientIndex(path=path if path is not None else settings.home / "qdrant-local")
    if backend == "edge":
        from streams.stores.vectors.edge_index import EdgeIndex
        return EdgeIndex(path if path is not None else settings.qdrant_path,
                         build_after_points=settings.vector_index_build_points)
    raise ValueError(f"unknown vector backend {backend!r}: auto, server, edge or local")

"""Verifying a rebuild: the replayed views, vector points and derived events against the live ones.

After ``rebuild_views(..., into=KEYSPACE, collect=True)`` (``pulse replay rebuild --into KEYSPACE
--verify``), :func:`verify_rebuild` compares

* **derived events**: every event the replay emitted, by ``event_id``, with the events of the
  same agents (``producer``) on the live output topics, byte for byte (the Avro single-object
  encoding, schema fingerprint included). Live duplicates of one ``event_id`` (a re-delivery
  after a crash re-sends identical events) must be identical too;
* **views**: for each table the replay wrote, the columns it wrote (other agents may own other
  columns of the same rows), row by row by primary key, live keyspace against the rebuilt one;
  live rows in which none of those columns is set belong to other writers and are ignored;
* **vector points**: for each collection the replay wrote, the points it wrote: every named
  vector element for element, and the payload keys it set.

Dead letters are not compared (they record the run, e.g. when a store was down). Every
difference is listed; the CLI prints them all and exits non-zero when there is one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import numpy as np

from streams.contracts.deadletters import DEAD_LETTER_TOPIC
from streams.settings import Settings


@dataclass
class Difference:
    """One difference: ``kind`` (``event`` | ``row`` | ``point``), where (topic, table or
    collection), the id or key, and what differs."""

    kind: str
    where: str
    key: str
    detail: str

    def line(self) -> str:
        return f"{self.kind} {self.where} {self.key}: {self.detail}"


@dataclass
class Report:
    """The outcome: counts compared per topic / table / collection, and every difference."""

    events: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    points: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What could not be compared, and why (not differences)."""

    def as_dict(self) -> dict[str, Any]:
        return {"events_compared": self.events, "rows_compared": self.rows,
                "points_compared": self.points, "differences": len(self.differences),
                "difference_list": [d.line() for d in self.differences], "notes": self.notes}


def verify_rebuild(settings: Settings, rebuilt: dict, *, live_keyspace: str | None = None,
                   on_step: Callable[[str], None] | None = None) -> Report:
    """Compare a rebuild (the dict :func:`replay.rebuild.rebuild_views` returned with
    ``collect=True``) with the live topics, keyspace (default: the active one) and collections.

    Raises
    ------
    TopicError, ViewStoreError, VectorIndexError
        A store cannot be read (the vector index may be held by a running worker: stop it, or use
        a Qdrant server).
    """
    from streams.query.pointer import active_keyspace
    from streams.stores.cassandra import connect

    report = Report()
    step = on_step or (lambda s: None)
    step("derived events")
    emitted = {t: {} for t in rebuilt.get("outputs", ())}
    emitted.update(rebuilt["emitted"])
    compare_events(settings, rebuilt["agents"], emitted, report)
    cluster, session = connect(settings)
    try:
        live = live_keyspace or active_keyspace(session, settings.cassandra_keyspace)
        step("views")
        for table, columns in sorted(rebuilt["written"].columns.items()):
            compare_table(session, live, rebuilt["keyspace"], table, columns, report)
    finally:
        cluster.shutdown()
    if rebuilt["written"].points:
        step("vector points")
        compare_points(settings, live, rebuilt["keyspace"], rebuilt["written"], report)
    return report


# -- derived events -------------------------------------------------------------------------------


def compare_events(settings: Settings, agents: Iterable[str], emitted: dict[str, dict[str, bytes]],
                   report: Report) -> None:
    """Replayed events against the live topics' events of the same producers (see module)."""
    from replay.rebuild import read_merged
    from streams.contracts.codec import codec_for
    from streams.contracts.topics import topic_spec

    agents = set(agents)
    for topic in sorted(emitted):
        if topic == DEAD_LETTER_TOPIC:
            continue
        codec = codec_for(settings, topic_spec(topic).schema, topic)
        live: dict[str, bytes] = {}
        for message in read_merged(settings, [topic]):
            value = message.value
            if value is None:
                continue
            record = codec.decode(value)
            if record.get("producer") not in agents:
                continue
            eid = record["event_id"]
            if eid in live and live[eid] != value:
                report.differences.append(Difference(
                    "event", topic, eid, "two live copies of this event differ"))
            live[eid] = value
        replayed = emitted[topic]
        report.events[topic] = len(replayed)
        for eid in sorted(set(live) | set(replayed)):
            a, b = live.get(eid), replayed.get(eid)
            if a is None:
                report.differences.append(Difference("event", topic, eid, "emitted by the replay, "
                                                     "not on the live topic"))
            elif b is None:
                report.differences.append(Difference("event", topic, eid, "on the live topic, "
                                                     "not emitted by the replay"))
            elif a != b:
                report.differences.append(Difference("event", topic, eid, _event_diff(codec, a, b)))


def _event_diff(codec: Any, live: bytes, replayed: bytes) -> str:
    a, b = codec.decode(live), codec.decode(replayed)
    fields = [k for k in a if a.get(k) != b.get(k)]
    if not fields:
        return "same fields, different bytes (writer schema differs)"
    k = fields[0]
    return f"fields {', '.join(fields)} differ, e.g. {k}: live {a.get(k)!r} vs replay {b.get(k)!r}"


# -- views -------------------------------------------------------------------------------------------


def _norm(v: Any) -> Any:
    """A driver value as plain Python (frozen collections as lists / sorted dicts, sets as sorted
    lists, since two equal sets may iterate in different orders; timestamps as UTC epoch ms)."""
    if v is None:
        return None
    if isinstance(v, (str, bytes, int, float, bool)):
        return v
    if isinstance(v, datetime):  # the driver's timestamps are naive UTC: as epoch ms
        return int(round(v.replace(tzinfo=v.tzinfo or timezone.utc).timestamp() * 1000))
    if hasattr(v, "items"):
        return {str(k): _norm(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (set, frozenset)) or hasattr(v, "isdisjoint"):  # also the driver's SortedSet
        items = [_norm(x) for x in v]
        try:
            return sorted(items)
        except TypeError:  # elements of different types
            return sorted(items, key=repr)
    if isinstance(v, (list, tuple)) or hasattr(v, "__iter__"):
        return [_norm(x) for x in v]
    return v


def primary_key(session: Any, keyspace: str, table: str) -> list[str]:
    """The primary-key columns of ``keyspace.table`` in order (partition key, then clustering)."""
    rows = session.execute("SELECT column_name, kind, position FROM system_schema.columns "
                           "WHERE keyspace_name = %s AND table_name = %s", (keyspace, table))
    keys = [(0 if r.kind == "partition_key" else 1, r.position, r.column_name) for r in rows
            if r.kind in ("partition_key", "clustering")]
    return [c for *_, c in sorted(keys)]


def compare_table(session: Any, live: str, rebuilt: str, table: str, columns: set[str],
                  report: Report) -> None:
    """Rows of ``table`` in the two keyspaces, on ``columns`` (see module)."""
    pk = primary_key(session, rebuilt, table)
    values = sorted(set(columns) - set(pk))
    cols = ", ".join(pk + values)

    def rows(ks: str) -> dict[tuple, tuple]:
        out = {}
        for r in session.execute(f"SELECT {cols} FROM {ks}.{table}"):
            r = tuple(r)
            key, vals = r[:len(pk)], tuple(_norm(x) for x in r[len(pk):])
            if values and all(v is None for v in vals):
                continue  # a row only other writers set
            out[key] = vals
        return out

    a, b = rows(live), rows(rebuilt)
    report.rows[table] = len(b)
    for key in sorted(set(a) | set(b), key=repr):
        label = "/".join(str(k) for k in key)
        if key not in b:
            report.differences.append(Difference("row", table, label, "in the live view only"))
        elif key not in a:
            report.differences.append(Difference("row", table, label, "in the rebuilt view only"))
        elif a[key] != b[key]:
            diff = [f"{c}: live {x!r} vs rebuilt {y!r}" for c, x, y in zip(values, a[key], b[key])
                    if x != y]
            report.differences.append(Difference("row", table, label, "; ".join(diff)))


# -- vector points ------------------------------------------------------------------------------------


def compare_points(settings: Settings, live: str, rebuilt: str, written: Any, report: Report) -> None:
    """The points the replay wrote, live collections against the rebuilt ones (see module)."""
    from streams.stores.vectors import open_vector_index
    from streams.stores.vectors.prefixed import PrefixedIndex, collection_prefix

    base = settings.cassandra_keyspace
    index = open_vector_index(settings)
    try:
        views = {name: PrefixedIndex(index, collection_prefix(ks, base)) for name, ks in
                 (("live", live), ("rebuilt", rebuilt))}
        for collection, ids in sorted(written.points.items()):
            if collection not in written.vectors and not _exists(views["rebuilt"], collection):
                report.notes.append(
                    f"{collection}: not compared; the replay only updated payloads of points that "
                    f"agents not in this rebuild write (rebuild them together, e.g. clip_ai with "
                    f"the publisher)")
                continue
            ids = sorted(ids)
            keys = written.payload_keys.get(collection, set())
            got = {name: {p.id: p for p in v.get(collection, ids)} for name, v in views.items()}
            report.points[collection] = len(got["rebuilt"])
            for i in ids:
                a, b = got["live"].get(i), got["rebuilt"].get(i)
                if (a is None) != (b is None):
                    where = "live" if b is None else "rebuilt"
                    report.differences.append(Difference("point", collection, i,
                                                         f"in the {where} collection only"))
                    continue
                if a is None:
                    continue
                detail = _point_diff(a, b, keys, collection in written.vectors)
                if detail:
                    report.differences.append(Difference("point", collection, i, detail))
    finally:
        index.close()


def _exists(index: Any, collection: str) -> bool:
    from streams.stores.vectors import CollectionNotFoundError

    try:
        index.dims(collection)
        return True
    except CollectionNotFoundError:
        return False


def _point_diff(a: Any, b: Any, keys: set[str], with_vectors: bool) -> str:
    out = []
    for k in sorted(keys):
        if _norm(a.payload.get(k)) != _norm(b.payload.get(k)):
            out.append(f"payload {k}: live {a.payload.get(k)!r} vs rebuilt {b.payload.get(k)!r}")
    if with_vectors:
        va = a.vector if isinstance(a.vector, dict) else {"": a.vector}
        vb = b.vector if isinstance(b.vector, dict) else {"": b.vector}
        for name in sorted(set(va) | set(vb)):
            x, y = va.get(name), vb.get(name)
            if x is None or y is None or not np.array_equal(np.asarray(x), np.asarray(y)):
                out.append(f"vector {name or '(unnamed)'} differs")
    return "; ".join(out)

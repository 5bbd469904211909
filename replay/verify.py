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

**Erased subjects.** After an erasure (``erasure-requests``, scope USER) a rebuild must differ
from the live run for that user: their personal fields read as erased, their key is shredded,
and the eraser removed their rows and points from the live stores. A difference that involves an
erased user (an event, row or point that names them in an id field or its key) is therefore not
a difference: it is counted in :attr:`Report.erased` and named in a note.

Order-sensitive agents (``AgentSpec.order_sensitive``: they join live streams through side
inputs without a watermark) are held to what they can promise: their differences from the live
run are counted as *divergence*, and they are rebuilt a second time, into a scratch keyspace that
is dropped afterwards, and the two rebuilds must be equal (events byte for byte, rows, points).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import numpy as np

from agents.registry import AGENTS
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
    subjects: frozenset = frozenset()
    """User ids the event, row or point names (see :data:`SUBJECT_FIELDS`): what lets a
    difference of an erased user be told apart."""
    producer: str | None = None
    """For an event: the agent that emitted it (its ``producer`` field, live or replayed)."""

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
    erased: int = 0
    """Differences that involve an erased user (module docstring): expected, not counted."""
    divergence: list[Difference] = field(default_factory=list)
    """Differences between the live run and the rebuild in the outputs of order-sensitive agents
    (``AgentSpec.order_sensitive``): measured, not errors."""
    rechecked: dict[str, int] = field(default_factory=dict)
    """Order-sensitive agents' outputs compared between two rebuilds: what -> count."""

    def as_dict(self) -> dict[str, Any]:
        by_where: dict[str, int] = {}
        for d in self.divergence:
            by_where[f"{d.kind} {d.where}"] = by_where.get(f"{d.kind} {d.where}", 0) + 1
        return {"events_compared": self.events, "rows_compared": self.rows,
                "points_compared": self.points, "differences": len(self.differences),
                "difference_list": [d.line() for d in self.differences], "notes": self.notes,
                "erased_subject_differences": self.erased,
                "live_divergence": len(self.divergence), "live_divergence_by_output": by_where,
                "live_divergence_examples": [d.line() for d in self.divergence[:MAX_DIVERGENCE_LISTED]],
                "rebuilt_twice_compared": self.rechecked}


MAX_DIVERGENCE_LISTED = 20
"""Live-divergence lines a report lists (all are counted)."""


def verify_rebuild(settings: Settings, rebuilt: dict, *, live_keyspace: str | None = None,
                   on_step: Callable[[str], None] | None = None, recheck: bool = True) -> Report:
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
    erased = erased_subjects(settings)
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
    if erased:
        _drop_erased(report, erased)
    sensitive = [a for a in rebuilt["agents"] if AGENTS[a].order_sensitive]
    if sensitive:
        _split_divergence(report, sensitive, rebuilt["written"], rebuilt.get("emitted_by", {}),
                          [a for a in rebuilt["agents"] if a not in sensitive])
        if recheck:
            step("rebuilding " + ", ".join(sensitive) + " again")
            _recheck(settings, sensitive, rebuilt, report)
    return report


#: Record fields that name a user (the subject of an erasure) in Pulse's events.
SUBJECT_FIELDS = ("user_id", "creator_id", "author_id", "follower_id", "followee_id", "actor_id")


def erased_subjects(settings: Settings) -> set[str]:
    """User ids of every scope-USER request on ``erasure-requests`` (empty without the topic)."""
    from replay.reader import read_topic
    from streams.contracts.codec import CodecError
    from streams.contracts.topics import TopicError

    try:
        return {r["user_id"] for _pos, r in read_topic(settings, "erasure-requests", on_error="skip")
                if str(r.get("scope")) == "USER"}
    except (CodecError, TopicError):
        return set()


def _drop_erased(report: Report, erased: set[str]) -> None:
    """Move the differences that name an erased user out of ``report.differences``."""
    kept = [d for d in report.differences if not (d.subjects & erased)]
    dropped = len(report.differences) - len(kept)
    if dropped:
        report.erased += dropped
        report.differences = kept
        report.notes.append(f"{dropped} difference(s) involve erased users ({len(erased)} erased: "
                            f"their data must not come back) and are not counted")


def _split_divergence(report: Report, sensitive: list[str], written: Any,
                      emitted_by: dict[str, dict[str, str]] | None = None,
                      others: list[str] = ()) -> None:
    """Move the differences in order-sensitive agents' outputs to ``report.divergence``.

    A topic that an order-sensitive agent shares with another rebuilt agent (copyright_rescan
    and copyright_guard both emit ``copyright-verdicts``) is split by event: the rebuild records
    which agent emitted each event (``emitted_by``), and an event only the live run has by its
    ``producer`` field (the eraser shares ``feed-updates`` with feed_ranker, but writes only
    tombstones there)."""
    emitted_by = emitted_by or {}
    outputs = {t for a in sensitive for t in AGENTS[a].outputs}
    shared = outputs & {t for a in others for t in AGENTS[a].outputs}
    # a table another agent also writes (copyright_matches) cannot be split by row: its
    # differences stay errors
    stores = ({w for a in sensitive for w in written.by_agent.get(a, ())}
              - {w for a in others for w in written.by_agent.get(a, ())})
    keep = []
    for d in report.differences:
        if d.kind != "event":
            ours = d.where in stores
        elif d.where in shared:
            ours = (emitted_by.get(d.where, {}).get(d.key) or d.producer) in sensitive
        else:
            ours = d.where in outputs
        (report.divergence if ours else keep).append(d)
    report.differences = keep


def _recheck(settings: Settings, sensitive: list[str], first: dict, report: Report) -> None:
    """Rebuild the order-sensitive agents a second time into a scratch keyspace and require the
    result to equal the first rebuild: their events byte for byte, their rows and points (the
    replay is deterministic even where the live run diverged). The scratch keyspace is dropped."""
    from replay.rebuild import drop_rebuild, rebuild_views
    from streams.stores.cassandra import connect

    scratch = f"{first['keyspace']}_again"[:48]
    drop_rebuild(settings, scratch)
    again = rebuild_views(settings, sensitive, into=scratch, collect=True)
    try:
        by = first.get("emitted_by", {})
        for topic in sorted({t for a in sensitive for t in AGENTS[a].outputs}):
            # the first rebuild ran every agent: compare only what the order-sensitive ones
            # emitted (a topic may be shared with another agent, as copyright-verdicts is)
            a = {eid: v for eid, v in first["emitted"].get(topic, {}).items()
                 if by.get(topic, {}).get(eid, sensitive[0]) in sensitive}
            b = again["emitted"].get(topic, {})
            report.rechecked[f"events {topic}"] = len(b)
            for eid in sorted(set(a) | set(b)):
                if a.get(eid) != b.get(eid):
                    report.differences.append(Difference(
                        "event", topic, eid, "two rebuilds differ" if eid in a and eid in b else
                        f"emitted by {'the first' if eid in a else 'the second'} rebuild only"))
        # a table the first rebuild also filled from other agents (copyright_matches: the
        # gate's rows beside the rescan's) is not compared row by row; the agent's events are
        shared = {w for ag in first["agents"] if ag not in sensitive
                  for w in first["written"].by_agent.get(ag, ())}
        stores = {w for ag in sensitive for w in again["written"].by_agent.get(ag, ())}
        for table in sorted(stores & shared):
            report.notes.append(f"{table}: rows not compared between the two rebuilds (also written "
                                f"by agents rebuilt once); the order-sensitive agents' events are")
        stores -= shared
        cluster, session = connect(settings)
        try:
            for table, columns in sorted(again["written"].columns.items()):
                if table in stores:
                    sub = Report()
                    compare_table(session, first["keyspace"], scratch, table, columns, sub)
                    report.rechecked[f"rows {table}"] = sub.rows.get(table, 0)
                    report.differences.extend(_relabel(sub.differences))
        finally:
            cluster.shutdown()
        if again["written"].points:
            sub = Report()
            compare_points(settings, first["keyspace"], scratch, again["written"], sub)
            for c, n in sub.points.items():
                report.rechecked[f"points {c}"] = n
            report.differences.extend(_relabel(sub.differences))
    finally:
        drop_rebuild(settings, scratch)


def _relabel(diffs: list[Difference]) -> list[Difference]:
    """Differences between two rebuilds, worded as such (``live`` is the first rebuild there)."""
    return [Difference(d.kind, d.where, d.key, "two rebuilds differ: " +
                       d.detail.replace("live", "first rebuild").replace("rebuilt", "second rebuild"))
            for d in diffs]


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

        def named(value: bytes) -> tuple[frozenset, str | None]:
            record = codec.decode(value)
            return (frozenset(str(record[f]) for f in SUBJECT_FIELDS if record.get(f) is not None),
                    record.get("producer"))

        for eid in sorted(set(live) | set(replayed)):
            a, b = live.get(eid), replayed.get(eid)
            if a is None:
                report.differences.append(Difference("event", topic, eid, "emitted by the replay, "
                                                     "not on the live topic", *named(b)))
            elif b is None:
                report.differences.append(Difference("event", topic, eid, "on the live topic, "
                                                     "not emitted by the replay", *named(a)))
            elif a != b:
                subjects, producer = named(a)
                report.differences.append(Difference("event", topic, eid, _event_diff(codec, a, b),
                                                     subjects | named(b)[0], producer))


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

    def subjects(key: tuple) -> frozenset:  # every text value of the row, either side
        return frozenset(str(v) for v in key + a.get(key, ()) + b.get(key, ()) if isinstance(v, str))

    for key in sorted(set(a) | set(b), key=repr):
        label = "/".join(str(k) for k in key)
        if key not in b:
            report.differences.append(Difference("row", table, label, "in the live view only", subjects(key)))
        elif key not in a:
            report.differences.append(Difference("row", table, label, "in the rebuilt view only", subjects(key)))
        elif a[key] != b[key]:
            diff = [f"{c}: live {x!r} vs rebuilt {y!r}" for c, x, y in zip(values, a[key], b[key])
                    if x != y]
            report.differences.append(Difference("row", table, label, "; ".join(diff), subjects(key)))


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
                named = frozenset([str(i)] + [str(p.payload[f]) for p in (a, b) if p is not None
                                              for f in SUBJECT_FIELDS if p.payload.get(f) is not None])
                if (a is None) != (b is None):
                    where = "live" if b is None else "rebuilt"
                    report.differences.append(Difference("point", collection, i,
                                                         f"in the {where} collection only", named))
                    continue
                if a is None:
                    continue
                detail = _point_diff(a, b, keys, collection in written.vectors)
                if detail:
                    report.differences.append(Difference("point", collection, i, detail, named))
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

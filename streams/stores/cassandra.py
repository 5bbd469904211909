"""Connecting to Cassandra and applying the view schema (``infra/cassandra/schema.cql``)."""
from __future__ import annotations

import re
from pathlib import Path

from streams.settings import REPO_ROOT, Settings, cassandra_contact_points

SCHEMA_FILE = REPO_ROOT / "infra" / "cassandra" / "schema.cql"


class ViewStoreError(RuntimeError):
    """Cassandra is not configured, unreachable, or refused a statement; the message says which."""


def cql_statements(path: Path = SCHEMA_FILE) -> list[str]:
    """The CQL statements of ``path``: ``--`` comments removed, split on ``;``."""
    text = re.sub(r"--[^\n]*", "", path.read_text())
    return [s.strip() for s in text.split(";") if s.strip()]


#: The execution profile whose results :func:`named_rows` makes (registered by :func:`connect`):
#: the default profile keeps the driver's own factory, which lightweight transactions need
#: (``ResultSet.was_applied`` accepts only the driver's factories).
ROWS_PROFILE = "pulse-named-rows"
#: Row types made by :func:`named_rows`, by column names (bounded: statements are finite).
_ROW_TYPES: dict[tuple[str, ...], type] = {}
_ROW_TYPES_MAX = 1024


def named_rows(colnames: list[str], rows: list) -> list:
    """The driver's default row factory (``cassandra.query.named_tuple_factory``: rows as named
    tuples) with each column list's ``Row`` type made once: the driver makes a new
    ``namedtuple`` class for every result, about 0.1 ms of CPU, 5 % of an API feed read
    (py-spy of ``pulse api`` under ``pulse bench api``, 2026-12-06). Column names that are not
    identifiers (``system.count(*)``) go to the driver's factory, which renames them. The row
    factory of :data:`ROWS_PROFILE`; not for lightweight transactions."""
    key = tuple(colnames)
    row_type = _ROW_TYPES.get(key)
    if row_type is None:
        from collections import namedtuple

        try:
            row_type = namedtuple("Row", key)
        except ValueError:
            from cassandra.query import named_tuple_factory

            return named_tuple_factory(colnames, rows)
        if len(_ROW_TYPES) >= _ROW_TYPES_MAX:
            _ROW_TYPES.clear()
        _ROW_TYPES[key] = row_type
    return [row_type(*row) for row in rows]


def connect(settings: Settings, keyspace: str | None = None, timeout_s: float = 30.0):
    """A cassandra-driver ``(Cluster, Session)`` for the configured contact points.

    ``keyspace`` defaults to none (use :func:`apply_schema` first, or pass
    ``settings.cassandra_keyspace``). The protocol version comes from
    ``PULSE_CASSANDRA_PROTOCOL`` (5 for Cassandra 4/5; 4 for older clusters).

    Every request of the session runs at ``settings.cassandra_consistency``
    (``PULSE_CASSANDRA_CONSISTENCY``: QUORUM on a keyspace of three replicas, so the sinks'
    writes and every read survive one node down and a read sees every acknowledged write).
    Requests go round-robin over the nodes the driver sees up; a node that goes away (a closed
    connection) is marked down at once and a request in flight on it is retried on the next
    node (the driver's default retry policy: ``RETRY_NEXT_HOST`` on a connection error), which
    is safe because every Pulse write is idempotent (keyed by ids, ``USING TIMESTAMP``).

    Raises
    ------
    ViewStoreError
        No contact points are configured, or none answers within ``timeout_s`` seconds.
    """
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import RoundRobinPolicy

    if not settings.cassandra_hosts:
        raise ViewStoreError("no Cassandra configured: run `pulse up` to start the embedded node, "
                             "or set PULSE_CASSANDRA_HOSTS=host[:port],...")
    points, port = cassandra_contact_points(settings.cassandra_hosts)
    def profile(**extra):
        return ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout_s,
                                consistency_level=getattr(ConsistencyLevel, settings.cassandra_consistency),
                                **extra)

    cluster = Cluster(points, port=port, protocol_version=settings.cassandra_protocol_version,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile(),
                                          ROWS_PROFILE: profile(row_factory=named_rows)},
                      connect_timeout=timeout_s)
    try:
        session = cluster.connect(keyspace)
    except NoHostAvailable as exc:
        cluster.shutdown()
        raise ViewStoreError(f"Cassandra at {','.join(settings.cassandra_hosts)} did not answer: "
                             f"{exc}") from None
    return cluster, session


def apply_schema(settings: Settings, session=None) -> int:
    """Create the keyspace (SimpleStrategy, ``PULSE_CASSANDRA_REPLICATION``) and every view table.

    Idempotent. Returns the number of statements applied.

    Raises
    ------
    ViewStoreError
        Cassandra is unreachable or rejects a statement (the statement is named).

    Columns that ``schema.cql`` declares and an existing table lacks (a view that gained a
    column in a newer version) are added with ``ALTER TABLE ... ADD``; keys cannot change that
    way, and a changed key needs a rebuild (drop the table and ``pulse replay``).
    """
    own = session is None
    cluster = None
    if own:
        cluster, session = connect(settings)
    ks = settings.cassandra_keyspace
    try:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {settings.cassandra_replication}}}")
        _use_keyspace(session, ks)
        statements = cql_statements()
        for stmt in statements:
            _execute(session, stmt)
        added = _add_missing_columns(session, ks, statements)
        return len(statements) + 1 + added
    finally:
        if own:
            cluster.shutdown()


def _use_keyspace(session, ks: str, timeout_s: float = 60.0) -> None:
    """``session.set_keyspace(ks)`` once every node knows the keyspace just created: on a new
    ring a node may still lack it when the driver's schema-agreement wait (10 s) has given up
    on a loaded machine, and ``set_keyspace`` sets it on every connection (seen once in a test
    run: "Keyspace 'pulse' does not exist" from one of three nodes)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            session.set_keyspace(ks)
            return
        except Exception as exc:  # noqa: BLE001 - the driver's ConnectionException wraps the reply
            if "does not exist" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _execute(session, stmt: str) -> None:
    try:
        session.execute(stmt)
    except Exception as exc:  # driver raises many types; name the statement
        head = " ".join(stmt.split())[:80]
        raise ViewStoreError(f"Cassandra rejected `{head}...`: {exc}") from None


_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\(", re.S)
_COLUMN = re.compile(r"^\s*(\w+)\s+([\w<>, ]+?)(?:\s+PRIMARY KEY)?\s*$")


def declared_columns(stmt: str) -> tuple[str, dict[str, str]] | None:
    """``(table, {column: cql type})`` of a ``CREATE TABLE IF NOT EXISTS`` statement, else None."""
    m = _TABLE.match(stmt)
    if m is None:
        return None
    cols: dict[str, str] = {}
    depth, part = 0, ""
    for ch in stmt[m.end():]:  # split on top-level commas (types hold commas in <>, keys in ())
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
            if depth < 0:  # the table definition's closing parenthesis
                ch = ","
        if ch == "," and depth <= 0:
            c = _COLUMN.match(part)
            if c and c.group(1).upper() != "PRIMARY":
                cols[c.group(1)] = c.group(2).strip()
            part = ""
            if depth < 0:
                break
        else:
            part += ch
    return m.group(1), cols


def _add_missing_columns(session, keyspace: str, statements: list[str]) -> int:
    added = 0
    for stmt in statements:
        parsed = declared_columns(stmt)
        if parsed is None:
            continue
        table, cols = parsed
        have = {r.column_name for r in session.execute(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, table))}
        for name, cql_type in cols.items():
            if name not in have:
                _execute(session, f"ALTER TABLE {table} ADD {name} {cql_type}")
                added += 1
    return added

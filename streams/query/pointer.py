"""The active-keyspace pointer: which keyspace every reader of the views uses.

A rebuild (``pulse replay``) can fill a fresh keyspace while readers keep using the old one;
:func:`swap_keyspace` then points every reader at the new one, and :func:`reset_keyspace` points
them back at the base keyspace (``PULSE_CASSANDRA_KEYSPACE``). The pointer is one row of the
``view_pointer`` table *in the base keyspace* (``infra/cassandra/schema.cql``)::

    name = 'views' | keyspace_name | swapped_at (UTC) | previous

No row (or no table, on a schema older than the pointer) means the base keyspace. Because the row
lives in Cassandra, readers on every machine see a swap: each
:class:`~streams.query.read_side.ReadSide` re-reads it at most every ``PULSE_VIEW_POINTER_TTL_S``
seconds (default 2). The pointer is read and written at consistency QUORUM, and written only with
lightweight transactions (compare-and-set on ``keyspace_name``), so of two concurrent swaps one
fails with :class:`SwapError` instead of silently undoing the other.

Readers follow the pointer at once (within the TTL); a worker's sinks resolve it when they open
(``streams.runtime.binding.RuntimeContext``), so workers started after a swap write the new keyspace.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, NamedTuple

from streams.settings import Settings
from streams.stores.cassandra import ViewStoreError, connect, cql_statements, declared_columns

POINTER_TABLE = "view_pointer"
"""The pointer's table, in the base keyspace."""
POINTER_NAME = "views"
"""The pointer row that the materialized views follow."""

_KEYSPACE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")  # an unquoted CQL keyspace name


class SwapError(ViewStoreError):
    """A swap that cannot be made (bad name, no such keyspace, missing view tables, or another
    swap in between); the message says which and what to do."""


class Pointer(NamedTuple):
    """The pointer row: the active ``keyspace``, when it was set (naive UTC ``datetime``, as the
    driver returns timestamps) and the keyspace active before it (None for the first swap)."""

    keyspace: str
    swapped_at: datetime | None
    previous: str | None


def view_tables() -> tuple[str, ...]:
    """The view tables ``schema.cql`` declares (every table but the pointer), in file order."""
    tables = (declared_columns(s) for s in cql_statements())
    return tuple(t[0] for t in tables if t is not None and t[0] != POINTER_TABLE)


def keyspace_name(name: str) -> str:
    """``name`` as Cassandra stores an unquoted keyspace name (lower case).

    Raises
    ------
    SwapError
        ``name`` is not a letter followed by at most 47 letters, digits or underscores.
    """
    if not _KEYSPACE_NAME.match(name or ""):
        raise SwapError(f"{name!r} is not a keyspace name: a letter, then up to 47 letters, "
                        "digits or underscores")
    return name.lower()


def _statement(cql: str):
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    return SimpleStatement(cql, consistency_level=ConsistencyLevel.QUORUM)


def read_pointer(session: Any, base: str, name: str = POINTER_NAME) -> Pointer | None:
    """The pointer row ``name`` of keyspace ``base``, or None when there is none (never
    swapped, reset by deleting, or a schema without the ``view_pointer`` table).

    ``session``: a cassandra-driver ``Session`` (any default keyspace: names are qualified).
    """
    from cassandra import InvalidRequest

    try:
        row = _pointer_row(session, keyspace_name(base), name)
    except InvalidRequest:  # no view_pointer table (schema older than the pointer): no swap yet
        return None
    if row is None or not row.keyspace_name:
        return None
    return Pointer(row.keyspace_name, row.swapped_at, row.previous)


def _pointer_row(session: Any, base: str, name: str):
    return session.execute(_statement(
        f"SELECT keyspace_name, swapped_at, previous FROM {base}.{POINTER_TABLE} WHERE name = %s"),
        (name,)).one()


def active_keyspace(session: Any, base: str, name: str = POINTER_NAME) -> str:
    """The keyspace readers use: the pointer's, else ``base`` (lower case)."""
    pointer = read_pointer(session, base, name)
    return pointer.keyspace if pointer is not None else keyspace_name(base)


def missing_view_tables(session: Any, keyspace: str) -> list[str]:
    """The view tables of :func:`view_tables` that ``keyspace`` lacks (all of them when the
    keyspace does not exist)."""
    have = {r.table_name for r in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))}
    return [t for t in view_tables() if t not in have]


def keyspace_exists(session: Any, keyspace: str) -> bool:
    return session.execute("SELECT keyspace_name FROM system_schema.keyspaces "
                           "WHERE keyspace_name = %s", (keyspace,)).one() is not None


def swap_keyspace(settings: Settings, keyspace: str, *, session: Any = None,
                  name: str = POINTER_NAME) -> str:
    """Point every reader at ``keyspace``; returns the keyspace active before.

    Readers see the swap within ``PULSE_VIEW_POINTER_TTL_S`` seconds (this process's read sides
    at once). Swapping to the active keyspace changes nothing but ``swapped_at``.

    ``session``: a driver session to use (default: a connection of its own, closed after).

    Raises
    ------
    SwapError
        ``keyspace`` is not a valid name, does not exist, or lacks view tables (they are named:
        rebuild into it with the schema applied first); the base keyspace has no ``view_pointer``
        table (run ``pulse up`` to apply the schema); or another swap changed the pointer while
        this one ran (the message names the keyspace now active).
    ViewStoreError
        Cassandra is not configured or does not answer.
    """
    keyspace = keyspace_name(keyspace)
    base = keyspace_name(settings.cassandra_keyspace)
    return _set_pointer(settings, keyspace, session=session, name=name,
                        check=keyspace != base)


def reset_keyspace(settings: Settings, *, session: Any = None, name: str = POINTER_NAME) -> str:
    """Point every reader back at the base keyspace (``settings.cassandra_keyspace``); returns the
    keyspace active before. Raises as :func:`swap_keyspace` does (the base is not checked)."""
    return _set_pointer(settings, keyspace_name(settings.cassandra_keyspace), session=session,
                        name=name, check=False)


def _set_pointer(settings: Settings, keyspace: str, *, session: Any, name: str, check: bool) -> str:
    own = session is None
    cluster = None
    if own:
        cluster, session = connect(settings)
    try:
        previous = _compare_and_set(session, keyspace_name(settings.cassandra_keyspace), keyspace,
                                    name, check)
    finally:
        if own:
            cluster.shutdown()
    from streams.query.read_side import expire_pointers

    expire_pointers(settings)  # this process's read sides see the swap at once
    return previous


def _compare_and_set(session: Any, base: str, keyspace: str, name: str, check: bool) -> str:
    if check:
        if not keyspace_exists(session, keyspace):
            raise SwapError(f"keyspace {keyspace!r} does not exist: rebuild the views into it "
                            "first (its schema applied), then swap")
        missing = missing_view_tables(session, keyspace)
        if missing:
            raise SwapError(f"keyspace {keyspace!r} lacks view tables {', '.join(missing)}: apply "
                            "the view schema to it and rebuild the views there before swapping")
    if POINTER_TABLE not in {r.table_name for r in session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (base,))}:
        raise SwapError(f"keyspace {base!r} has no {POINTER_TABLE} table: apply the schema "
                        "(`pulse up`) before swapping")
    row = _pointer_row(session, base, name)
    previous = (row.keyspace_name if row is not None else None) or base
    now = datetime.now(timezone.utc)
    table = f"{base}.{POINTER_TABLE}"
    if row is None:
        result = session.execute(_statement(
            f"INSERT INTO {table} (name, keyspace_name, swapped_at, previous) "
            "VALUES (%s, %s, %s, %s) IF NOT EXISTS"), (name, keyspace, now, previous))
    else:  # compare with the value read, null included
        result = session.execute(_statement(
            f"UPDATE {table} SET keyspace_name = %s, swapped_at = %s, previous = %s "
            "WHERE name = %s IF keyspace_name = %s"),
            (keyspace, now, previous, name, row.keyspace_name))
    if not result.was_applied:
        now_active = getattr(result.one(), "keyspace_name", None) or base
        raise SwapError(f"another swap changed the view pointer meanwhile (now {now_active!r}); "
                        "check it and swap again")
    return previous

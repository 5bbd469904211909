"""The read side: one pooled Cassandra session, prepared statements and the vector index, shared
by every reader in a process (the CLI, the HTTP API, the dashboard).

>>> rs = get_read_side(settings)                                         # doctest: +SKIP
>>> rs.execute("SELECT * FROM {ks}.posts WHERE post_id = ?", ("p1",)).one()
>>> hits = rs.search.text("sunset at the beach")

Ownership. :func:`get_read_side` returns the process's :class:`ReadSide` for a settings object,
creating it on first call; it is closed by :func:`close_read_side` or at interpreter exit. That
is what the ``pulse`` commands use, through the query functions (``streams.query.views``,
``streams.query.review``), which accept a ``ReadSide`` wherever they accept ``Settings``. An entry
point that manages lifetimes itself (an HTTP server's startup and shutdown hooks, a test) may
instead build ``ReadSide(settings)``, pass it to those functions, and close it (or use it as a
context manager).

Keyspace. Statements name their tables ``{ks}.table``; the read side substitutes the *active*
keyspace, which the pointer in Cassandra names (:mod:`streams.query.pointer`): resolved on open
and re-read at most every ``PULSE_VIEW_POINTER_TTL_S`` seconds, so a ``pulse replay swap`` reaches
every reader on every machine without a restart. A query that runs several statements pins one
keyspace (``ks = rs.active_keyspace()``, then ``keyspace=ks``) so a swap cannot split it. The
driver session's own default keyspace is the base keyspace (``PULSE_CASSANDRA_KEYSPACE``), for
unqualified statements (writes, tests), which therefore never follow the pointer.

Threads. One instance serves any number of threads: the cassandra-driver ``Session`` is
thread-safe and pools its connections; connecting, the pointer cache, the statement cache and
opening the vector index are guarded by a lock (one Cluster, one index, each statement prepared
once per keyspace even under contention, bar a harmless duplicate prepare).
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Sequence

from streams.settings import Settings
from streams.stores.cassandra import ROWS_PROFILE, ViewStoreError, connect

log = logging.getLogger(__name__)

KEYSPACE_PLACEHOLDER = "{ks}"
"""Written in a statement where the active keyspace goes: ``SELECT * FROM {ks}.posts``."""
MAX_STATEMENTS = 512
"""Prepared statements kept (least recently used dropped): the read queries times a few keyspaces."""


def connect_base(settings: Settings) -> tuple[Any, Any]:
    """``(Cluster, Session)`` with the base keyspace as the session's default.

    Raises
    ------
    ViewStoreError
        No Cassandra is configured or none answers (:func:`streams.stores.cassandra.connect`), or
        the base keyspace does not exist (the views were never created: ``pulse up``).
    """
    cluster, session = connect(settings)
    try:
        session.set_keyspace(settings.cassandra_keyspace)
    except Exception as exc:  # the driver raises InvalidRequest for a missing keyspace
        cluster.shutdown()
        raise ViewStoreError(f"Cassandra has no keyspace {settings.cassandra_keyspace!r} ({exc}): "
                             "run `pulse up` to create the views") from None
    return cluster, session


class ReadSide:
    """One Cassandra ``Cluster``/``Session`` with a prepared-statement cache and the active
    keyspace, plus the vector index and content search on first use (module docstring).

    Parameters
    ----------
    settings:
        Contact points, base keyspace, ``view_pointer_ttl_s`` (seconds; negative counts as 0),
        and the vector index's configuration.
    connector:
        ``settings -> (cluster, session)``; default :func:`connect_base`. Called once.
    resolve:
        ``(session, base keyspace) -> active keyspace``; default
        :func:`streams.query.pointer.active_keyspace`.
    clock:
        Monotonic seconds for the pointer's age (default ``time.monotonic``).

    Nothing connects until the first query (or :meth:`open`).
    """

    def __init__(self, settings: Settings, *, connector: Callable[[Settings], tuple[Any, Any]] | None = None,
                 resolve: Callable[[Any, str], str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if resolve is None:
            from streams.query.pointer import active_keyspace as resolve
        self.settings = settings
        self.base_keyspace = settings.cassandra_keyspace.lower()
        self.pointer_ttl_s = max(0.0, float(settings.view_pointer_ttl_s))
        self._connector = connector or connect_base
        self._resolve = resolve
        self._clock = clock
        self._lock = threading.RLock()
        self._cluster: Any = None
        self._session: Any = None
        self._keyspace: str | None = None
        self._keyspace_read_at = float("-inf")
        self._refreshing = False
        self._statements: OrderedDict[str, Any] = OrderedDict()
        self._vectors: Any = None
        self._search: Any = None
        self._closed = False

    # ------------------------------------------------------------------------------ session

    @property
    def session(self) -> Any:
        """The cassandra-driver ``Session`` (connects on first use; one ``Cluster`` for the life
        of this read side). Raises ViewStoreError when closed or when Cassandra is unusable."""
        with self._lock:
            self._check_open()
            if self._session is None:
                self._cluster, self._session = self._connector(self.settings)
            return self._session

    def open(self) -> "ReadSide":
        """Connect and resolve the active keyspace now (else the first query does); returns self."""
        self.active_keyspace()
        return self

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ViewStoreError("the read side is closed")

    # ----------------------------------------------------------------------- active keyspace

    def active_keyspace(self) -> str:
        """The keyspace readers use now: the pointer's value, read again when it is older than
        ``pointer_ttl_s`` seconds. While one thread re-reads it, the others use the value it
        replaces rather than wait."""
        session = self.session
        with self._lock:
            fresh = self._clock() - self._keyspace_read_at < self.pointer_ttl_s
            if self._keyspace is not None and (fresh or self._refreshing):
                return self._keyspace
            self._refreshing = True
        try:
            keyspace = self._resolve(session, self.base_keyspace)
        finally:
            with self._lock:
                self._refreshing = False
        from streams.query.pointer import keyspace_name

        keyspace = keyspace_name(keyspace)  # never substitute an arbitrary string into CQL
        with self._lock:
            if keyspace != self._keyspace and self._keyspace is not None:
                log.info("views now read from keyspace %s (was %s)", keyspace, self._keyspace)
            self._keyspace, self._keyspace_read_at = keyspace, self._clock()
        return keyspace

    def expire_pointer(self) -> None:
        """Make the next query re-read the pointer (after a swap made by this process)."""
        with self._lock:
            self._keyspace_read_at = float("-inf")

    # ---------------------------------------------------------------------------- statements

    def qualify(self, cql: str, keyspace: str | None = None) -> str:
        """``cql`` with ``{ks}`` replaced by ``keyspace`` (default: the active keyspace)."""
        if KEYSPACE_PLACEHOLDER not in cql:
            return cql
        return cql.replace(KEYSPACE_PLACEHOLDER, keyspace or self.active_keyspace())

    def prepare(self, cql: str, *, keyspace: str | None = None) -> Any:
        """The prepared statement of ``cql`` (``?`` markers; ``{ks}`` qualified as in
        :meth:`qualify`), prepared once per resulting CQL string and cached."""
        text = self.qualify(cql, keyspace)
        with self._lock:
            stmt = self._statements.get(text)
            if stmt is not None:
                self._statements.move_to_end(text)
                return stmt
        stmt = self.session.prepare(text)  # outside the lock: a round trip
        with self._lock:
            stmt = self._statements.setdefault(text, stmt)
            self._statements.move_to_end(text)
            while len(self._statements) > MAX_STATEMENTS:
                self._statements.popitem(last=False)
        return stmt

    @property
    def prepared_count(self) -> int:
        """How many prepared statements the cache holds."""
        with self._lock:
            return len(self._statements)

    def execute(self, cql: str, params: Sequence[Any] = (), *, keyspace: str | None = None,
                timeout: float | None = None) -> Any:
        """Run ``cql`` as a cached prepared statement with ``params``; returns the driver's
        ``ResultSet`` (rows as named tuples). ``timeout``: seconds (default: the session's)."""
        stmt = self.prepare(cql, keyspace=keyspace)
        if timeout is None:
            return self.session.execute(stmt, tuple(params))
        return self.session.execute(stmt, tuple(params), timeout=timeout)

    async def fetch(self, cql: str, params: Sequence[Any] = (), *, keyspace: str | None = None) -> list[Any]:
        """:meth:`execute` for an event loop: the rows of ``cql`` (every page), awaited instead of
        blocking the calling thread. The driver's I/O thread answers; its callbacks hand the
        rows to the loop (``call_soon_threadsafe``); rows are named tuples of a type made once per
        column list (:func:`streams.stores.cassandra.named_rows`), so a lightweight transaction,
        whose ``was_applied`` needs the driver's own factory, goes through :meth:`execute`. The
        first use of a statement prepares it (one blocking round trip); errors are the driver's,
        as :meth:`execute` raises them."""
        stmt = self.prepare(cql, keyspace=keyspace)
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        rows: list[Any] = []
        response = self.session.execute_async(stmt, tuple(params), execution_profile=ROWS_PROFILE)

        def settle(result: list[Any] | None, error: BaseException | None) -> None:
            if done.done():  # the awaiting request went away
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

        def page(got: list[Any]) -> None:
            rows.extend(got)
            if response.has_more_pages:
                response.start_fetching_next_page()
            else:
                loop.call_soon_threadsafe(settle, rows, None)

        response.add_callbacks(page, lambda exc: loop.call_soon_threadsafe(settle, None, exc))
        return await done

    def execute_concurrent(self, cql: str, params: Iterable[Sequence[Any]], *,
                           keyspace: str | None = None, concurrency: int = 64) -> list[Any]:
        """One ``ResultSet`` per parameter tuple, in order, with up to ``concurrency`` requests in
        flight (``cassandra.concurrent``); the first failing request's error is raised."""
        from cassandra.concurrent import execute_concurrent_with_args

        stmt = self.prepare(cql, keyspace=keyspace)
        results = execute_concurrent_with_args(self.session, stmt, list(params),
                                               concurrency=concurrency, raise_on_first_error=True)
        return [result for _ok, result in results]

    # ------------------------------------------------------------------------------- vectors

    @property
    def vectors(self) -> Any:
        """The vector index (:func:`streams.stores.vectors.open_vector_index`), opened on first use.

        Raises IndexLockedError while another process holds the embedded engine's storage.
        """
        with self._lock:
            self._check_open()
            if self._vectors is None:
                from streams.stores.vectors import open_vector_index

                self._vectors = open_vector_index(self.settings)
            return self._vectors

    @property
    def search(self) -> Any:
        """A :class:`~streams.query.search.ContentSearch` over :attr:`vectors`, built on first use
        and kept (its query encoder loads once)."""
        with self._lock:
            if self._search is None:
                from streams.query.search import ContentSearch

                self._search = ContentSearch.from_read_side(self)
            return self._search

    # ------------------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the vector index and shut the Cluster down. Idempotent; later use raises
        ViewStoreError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            vectors, cluster = self._vectors, self._cluster
            self._vectors = self._search = self._session = self._cluster = None
            self._statements.clear()
        if vectors is not None:
            vectors.close()
        if cluster is not None:
            cluster.shutdown()

    def __enter__(self) -> "ReadSide":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------ per process

_registry: dict[Settings, ReadSide] = {}
_registry_lock = threading.Lock()
_atexit_registered = False


def get_read_side(settings: Settings) -> ReadSide:
    """The process's read side for ``settings`` (equal settings share one), created on first call
    without connecting; closed at interpreter exit unless :func:`close_read_side` does it first."""
    global _atexit_registered
    with _registry_lock:
        rs = _registry.get(settings)
        if rs is None or rs.closed:
            rs = _registry[settings] = ReadSide(settings)
            if not _atexit_registered:
                atexit.register(close_read_side)
                _atexit_registered = True
        return rs


def close_read_side(settings: Settings | None = None) -> None:
    """Close the process's read side for ``settings`` (default: every one)."""
    with _registry_lock:
        if settings is None:
            closing = list(_registry.values())
            _registry.clear()
        else:
            closing = [rs for rs in (_registry.pop(settings, None),) if rs is not None]
    for rs in closing:
        try:
            rs.close()
        except Exception:  # closing is best effort (at exit the cluster may be gone already)
            log.exception("closing a read side failed")


def read_side_of(source: Settings | ReadSide) -> ReadSide:
    """``source`` itself when it is a read side, else the process's one for those settings."""
    return source if isinstance(source, ReadSide) else get_read_side(source)


def expire_pointers(settings: Settings) -> None:
    """Make this process's read sides on the same cluster and base keyspace as ``settings``
    re-read the pointer at their next query (called after a swap)."""
    with _registry_lock:
        sides = list(_registry.values())
    for rs in sides:
        if (rs.settings.cassandra_hosts == settings.cassandra_hosts
                and rs.base_keyspace == settings.cassandra_keyspace.lower()):
            rs.expire_pointer()

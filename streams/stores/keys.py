"""The data subjects' keys for crypto-shredding (``streams/contracts/personal.py``), in Cassandra.

Table ``<PULSE_CASSANDRA_KEYSPACE>_keys.subject_keys`` (``pulse_keys.subject_keys`` by default):
one 256-bit key per subject (user id), in a keyspace of its own that view rebuilds never create,
swap or drop, so replays decrypt with the keys the live run used. The keyspace and table are
created on first use (same replication as the views' keyspace).

* A key is created get-or-create with a lightweight transaction (``INSERT ... IF NOT EXISTS``,
  Paxos): producers that see a new subject at once all end up with the key that won.
* Keys are cached in each process for ``PULSE_SUBJECT_KEY_CACHE_S`` seconds (default 60). That is
  the **window** after an erasure during which a running process may still decrypt the
  subject's fields (a process that shredded a key drops it from its own cache at once).
  Absent keys are never cached, so a key made by another process is seen at once, also after
  a scan of every key (:meth:`CassandraSubjectKeys.load_all`, for an export of whole topics):
  a subject the scan did not see is read as ever.
* :meth:`CassandraSubjectKeys.shred` deletes a key (the eraser's ``ShredKey`` effect, through the
  Cassandra sink). Deleting is final: nothing can decrypt the subject's fields afterwards.

:func:`subject_keys` is what the producer, the runtime and the readers call: ``None`` when
``PULSE_PERSONAL_DATA_ENCRYPTION`` is off (personal fields then travel as plaintext, and a value
encrypted earlier is read as its ciphertext text).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from streams.contracts.personal import KeyUnavailable
from streams.settings import Settings

log = logging.getLogger("pulse.keys")

KEY_BYTES = 32
READ_CHUNK = 100
"""Subjects per ``IN`` read of :meth:`CassandraSubjectKeys.prefetch` (measured best of 50-500)."""
READ_CONCURRENCY = 8
"""``IN`` reads in flight."""
CREATE_CONCURRENCY = 16
"""Key-creating lightweight transactions in flight (measured best of 1, 16 and 64)."""
SCAN_PAGE = 5_000
"""Rows per page of :meth:`CassandraSubjectKeys.load_all`'s scan."""


class KeyStoreError(KeyUnavailable):
    """The subjects' keys cannot be read or written (Cassandra unreachable or refusing); the
    event is not broken, so it must not be dead-lettered: the batch fails and is retried."""


def keys_keyspace(settings: Settings) -> str:
    """The keyspace of the subjects' keys: ``<PULSE_CASSANDRA_KEYSPACE>_keys``."""
    return f"{settings.cassandra_keyspace}_keys"


class CassandraSubjectKeys:
    """:class:`~streams.contracts.personal.SubjectKeys` over Cassandra (module docstring).
    Thread-safe; connects on first use; ``close`` shuts the connection."""

    def __init__(self, settings: Settings, *, session: Any = None) -> None:
        self.settings = settings
        self.keyspace = keys_keyspace(settings)
        self.ttl_s = settings.subject_key_cache_s
        self._session = session
        self._cluster = None
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._prepared: dict[str, Any] = {}
        self.lookups = 0
        self._scanned_at: float | None = None  # when a load_all to make again cached every key
        self._scan_limit: int | None = None  # its limit

    def _connect(self) -> Any:
        with self._lock:
            if self._session is None:
                from streams.stores.cassandra import ViewStoreError, connect

                try:
                    self._cluster, self._session = connect(self.settings)
                except ViewStoreError as exc:
                    raise KeyStoreError(f"subject keys: {exc}") from None
            if not self._prepared:
                self._ensure_schema(self._session)
                ks = self.keyspace
                self._prepared = {
                    "get": self._session.prepare(f"SELECT key FROM {ks}.subject_keys WHERE subject = ?"),
                    "get_many": self._session.prepare(
                        f"SELECT subject, key FROM {ks}.subject_keys WHERE subject IN ?"),
                    "put": self._session.prepare(f"INSERT INTO {ks}.subject_keys (subject, key, created_at) "
                                                 f"VALUES (?, ?, toTimestamp(now())) IF NOT EXISTS"),
                    "del": self._session.prepare(f"DELETE FROM {ks}.subject_keys WHERE subject = ?"),
                }
            return self._session

    def _ensure_schema(self, session: Any) -> None:
        session.execute(f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = "
                        f"{{'class': 'SimpleStrategy', 'replication_factor': {self.settings.cassandra_replication}}}")
        session.execute(f"CREATE TABLE IF NOT EXISTS {self.keyspace}.subject_keys "
                        f"(subject text PRIMARY KEY, key blob, created_at timestamp)")

    def _run(self, name: str, params: tuple) -> Any:
        session = self._connect()
        try:
            return session.execute(self._prepared[name], params)
        except Exception as exc:  # the driver raises many types
            raise self._store_error(exc) from None

    def _store_error(self, exc: Exception) -> KeyStoreError:
        return KeyStoreError(f"subject keys in {self.keyspace}: {type(exc).__name__}: {exc}; is Cassandra "
                             f"up (`pulse status`)?")

    def key(self, subject: str, *, create: bool) -> bytes | None:
        """``subject``'s key (see :class:`~streams.contracts.personal.SubjectKeys`).

        Raises
        ------
        KeyStoreError
            Cassandra cannot be reached or refuses.
        """
        now = self._rescan_if_due(time.monotonic())
        hit = self._cache.get(subject)
        if hit is not None and now - hit[1] < self.ttl_s:
            return hit[0]
        self.lookups += 1
        row = self._run("get", (subject,)).one()
        key = bytes(row.key) if row is not None and row.key else None
        if key is None and create:
            fresh = os.urandom(KEY_BYTES)
            rs = self._run("put", (subject, fresh))
            # applied: ours won; not applied: the result row carries the key that won
            key = fresh if rs.was_applied else bytes(rs.one().key)
        if key is not None:
            self._cache[subject] = (key, now)
        return key

    def _fresh(self, subjects: Any, now: float) -> list[str]:
        """The distinct non-empty ``subjects`` without a cached key younger than the TTL, sorted."""
        return sorted({s for s in subjects if s and not (
            (hit := self._cache.get(s)) is not None and now - hit[1] < self.ttl_s)})

    def prefetch(self, subjects: Any) -> int:
        """Read the keys of ``subjects`` that are not cached, and cache those that exist, as
        :meth:`key` would one by one (absent keys are not cached). Readers and the runtime call
        it once per batch of messages.

        The reads are ``SELECT ... WHERE subject IN ?`` of :data:`READ_CHUNK` subjects each,
        :data:`READ_CONCURRENCY` in flight (the driver's ``execute_concurrent_with_args``).
        Measured on one local node (2 cores): 108k keys/s, against 4.9k/s for one prepared
        point read per subject with 64 in flight, the driver's per-request cost in Python being
        the bound (docs/replay.md). On a large cluster an ``IN`` is fanned out by its
        coordinator, which costs the cluster a little more than point reads; a chunk of 100
        bounds that fan-out. Returns the number of keys found.

        Raises
        ------
        KeyStoreError
            Cassandra cannot be reached or refuses.
        """
        from cassandra.concurrent import execute_concurrent_with_args

        now = self._rescan_if_due(time.monotonic())
        missing = self._fresh(subjects, now)
        if not missing:
            return 0
        session = self._connect()
        chunks = [(missing[i:i + READ_CHUNK],) for i in range(0, len(missing), READ_CHUNK)]
        try:
            results = execute_concurrent_with_args(session, self._prepared["get_many"], chunks,
                                                   concurrency=READ_CONCURRENCY, raise_on_first_error=True)
            found = 0
            for _ok, rows in results:
                for row in rows:
                    if row.key:
                        self._cache[row.subject] = (bytes(row.key), now)
                        found += 1
        except Exception as exc:  # the driver raises many types
            raise self._store_error(exc) from None
        self.lookups += len(missing)
        return found

    def _rescan_if_due(self, now: float) -> float:
        """Make the last :meth:`load_all` again (same limit) once the keys it cached have outlived
        the TTL, if it read every key and took under a tenth of the TTL: a long export keeps
        both the scan's economy and the erasure window. Returns the time to judge the cache by
        (``now``, or the rescan's start)."""
        if self._scanned_at is None or now - self._scanned_at < self.ttl_s:
            return now
        limit, self._scanned_at = self._scan_limit, None
        self.load_all(limit)
        return time.monotonic()

    def estimated_subjects(self) -> int | None:
        """How many subjects have a key, as Cassandra estimates it (``system.size_estimates``,
        which each node refreshes every few minutes from its SSTables: keys still only in a
        memtable are not counted), or ``None`` when it has no estimate yet.

        Raises
        ------
        KeyStoreError
            Cassandra cannot be reached or refuses.
        """
        session = self._connect()
        try:
            rows = session.execute("SELECT partitions_count FROM system.size_estimates "
                                   "WHERE keyspace_name = %s AND table_name = 'subject_keys'",
                                   (self.keyspace,))
            total = sum(r.partitions_count for r in rows)
        except Exception as exc:  # the driver raises many types
            raise self._store_error(exc) from None
        return total if total > 0 else None

    def load_all(self, limit: int | None = None) -> bool:
        """Read the keys with one paged scan of the table (:data:`SCAN_PAGE` rows a page) and
        cache them: for a reader that will need most of them (an export of whole topics). At
        most ``limit`` keys are read (``None``: no limit); returns whether the scan read every
        key (the table had no more than ``limit``).

        A subject the scan did not cache is read as before (:meth:`prefetch`, :meth:`key`):
        one erased, or one whose key was made after the scan by a producer still writing to the
        topics being read (a miss is never taken for an erasure: a reader's end offsets are
        taken after its scan). When the cached keys outlive the TTL the scan is made again, if
        it read every key and took under a tenth of the TTL, so a subject erased meanwhile is
        seen within the same window as with reads batch by batch. After a scan cut short by
        ``limit``, the keys it read are cached and the others are read batch by batch.

        Measured on one local node (2 cores): 162,667 keys in about 1 s, where reading them
        with :meth:`prefetch` cost Cassandra 4.6 s of CPU (docs/replay.md).

        Raises
        ------
        KeyStoreError
            Cassandra cannot be reached or refuses.
        """
        from cassandra.query import SimpleStatement

        session = self._connect()
        now = time.monotonic()
        cql = f"SELECT subject, key FROM {self.keyspace}.subject_keys"
        if limit is not None:
            cql += f" LIMIT {int(limit) + 1}"  # one more: whether the table holds more
        rows = 0
        try:
            for row in session.execute(SimpleStatement(cql, fetch_size=SCAN_PAGE)):
                rows += 1
                if limit is not None and rows > limit:
                    break
                if row.key:
                    self._cache[row.subject] = (bytes(row.key), now)
        except Exception as exc:  # the driver raises many types
            raise self._store_error(exc) from None
        complete = limit is None or rows <= limit
        if complete and time.monotonic() - now < self.ttl_s / 10:
            self._scanned_at, self._scan_limit = now, limit
        return complete

    def ensure(self, subjects: Any) -> int:
        """Make sure every subject of ``subjects`` has a key, cached: the batch form of
        ``key(subject, create=True)``, for producers of many events. The existing keys are read
        as :meth:`prefetch` does; each missing one is then created with its own lightweight
        transaction (a conditional ``BATCH`` must stay in one partition, so LWTs cannot be
        grouped), :data:`CREATE_CONCURRENCY` in flight: 2.4k keys/s on one local node against
        1.2k/s one after another (docs/replay.md). A subject another producer created meanwhile
        gets the key that won, as in :meth:`key`. Returns the number of keys created.

        Raises
        ------
        KeyStoreError
            Cassandra cannot be reached or refuses.
        """
        from cassandra.concurrent import execute_concurrent_with_args

        self.prefetch(subjects)
        now = time.monotonic()
        missing = self._fresh(subjects, now)
        if not missing:
            return 0
        fresh = [(s, os.urandom(KEY_BYTES)) for s in missing]
        try:
            results = execute_concurrent_with_args(self._connect(), self._prepared["put"], fresh,
                                                   concurrency=CREATE_CONCURRENCY, raise_on_first_error=True)
            created = 0
            for (subject, key), (_ok, rs) in zip(fresh, results):
                # applied: ours won; not applied: the result row carries the key that won
                if rs.was_applied:
                    created += 1
                else:
                    key = bytes(rs.one().key)
                self._cache[subject] = (key, now)
        except Exception as exc:  # the driver raises many types
            raise self._store_error(exc) from None
        self.lookups += len(missing)
        return created

    def shred(self, subject: str) -> None:
        """Delete ``subject``'s key for good (idempotent).

        Raises
        ------
        KeyStoreError
            Cassandra cannot be reached or refuses.
        """
        self._cache.pop(subject, None)
        self._run("del", (subject,))

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None
            self._session = None
            self._prepared = {}


_warned = False


def subject_keys(settings: Settings) -> CassandraSubjectKeys | None:
    """The subjects' keys for this process, or ``None`` when ``PULSE_PERSONAL_DATA_ENCRYPTION``
    is off, or no Cassandra is configured (no ``pulse up`` state and no
    ``PULSE_CASSANDRA_HOSTS``: unit tests, a machine without servers; a warning is logged once,
    as personal fields then travel as plaintext). Nothing connects until a personal field is
    encoded or an encrypted one decoded."""
    global _warned
    if not settings.personal_data_encryption:
        return None
    if not settings.cassandra_hosts:
        if not _warned:
            log.warning("personal fields are not encrypted: no Cassandra holds the subjects' keys "
                        "(run `pulse up`, or set PULSE_CASSANDRA_HOSTS)")
            _warned = True
        return None
    return CassandraSubjectKeys(settings)

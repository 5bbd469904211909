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
  Absent keys are never cached, so a key made by another process is seen at once.
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
        now = time.monotonic()
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

    def prefetch(self, subjects: Any, concurrency: int = 64) -> int:
        """Read the keys of ``subjects`` that are not cached, ``concurrency`` reads in flight
        (the driver's ``execute_concurrent_with_args``), and cache those that exist, as
        :meth:`key` would one by one (absent keys are not cached). A reader of many subjects
        calls it once per batch: one round trip per subject, taken one message at a time, made
        exports ten times slower (docs/replay.md). Returns the number of keys read.

        Raises
        ------
        KeyStoreError
            Cassandra cannot be reached or refuses.
        """
        from cassandra.concurrent import execute_concurrent_with_args

        now = time.monotonic()
        missing = sorted({s for s in subjects if s and not (
            (hit := self._cache.get(s)) is not None and now - hit[1] < self.ttl_s)})
        if not missing:
            return 0
        session = self._connect()
        try:
            results = execute_concurrent_with_args(session, self._prepared["get"], [(s,) for s in missing],
                                                   concurrency=concurrency, raise_on_first_error=True)
        except Exception as exc:  # the driver raises many types
            raise self._store_error(exc) from None
        found = 0
        for subject, (_ok, rows) in zip(missing, results):
            row = rows.one()
            if row is not None and row.key:
                self._cache[subject] = (bytes(row.key), now)
                found += 1
        self.lookups += len(missing)
        return found

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

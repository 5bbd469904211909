"""Connecting to Cassandra and applying the view schema (``infra/cassandra/schema.cql``)."""
from __future__ import annotations

import re
from pathlib import Path

from .settings import REPO_ROOT, Settings, cassandra_contact_points

SCHEMA_FILE = REPO_ROOT / "infra" / "cassandra" / "schema.cql"


class ViewStoreError(RuntimeError):
    """Cassandra is not configured, unreachable, or refused a statement; the message says which."""


def cql_statements(path: Path = SCHEMA_FILE) -> list[str]:
    """The CQL statements of ``path``: ``--`` comments removed, split on ``;``."""
    text = re.sub(r"--[^\n]*", "", path.read_text())
    return [s.strip() for s in text.split(";") if s.strip()]


def connect(settings: Settings, keyspace: str | None = None, timeout_s: float = 30.0):
    """A cassandra-driver ``(Cluster, Session)`` for the configured contact points.

    ``keyspace`` defaults to none (use :func:`apply_schema` first, or pass
    ``settings.cassandra_keyspace``). The protocol version comes from
    ``PULSE_CASSANDRA_PROTOCOL`` (5 for Cassandra 4/5; 4 for older clusters).

    Raises
    ------
    ViewStoreError
        No contact points are configured, or none answers within ``timeout_s`` seconds.
    """
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import RoundRobinPolicy

    if not settings.cassandra_hosts:
        raise ViewStoreError("no Cassandra configured: run `pulse up` to start the embedded node, "
                             "or set PULSE_CASSANDRA_HOSTS=host[:port],...")
    points, port = cassandra_contact_points(settings.cassandra_hosts)
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout_s)
    cluster = Cluster(points, port=port, protocol_version=settings.cassandra_protocol_version,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=timeout_s)
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
        session.set_keyspace(ks)
        statements = cql_statements()
        for stmt in statements:
            try:
                session.execute(stmt)
            except Exception as exc:  # driver raises many types; name the statement
                head = " ".join(stmt.split())[:80]
                raise ViewStoreError(f"Cassandra rejected `{head}...`: {exc}") from None
        return len(statements) + 1
    finally:
        if own:
            cluster.shutdown()

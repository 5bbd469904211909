"""The read side on real Cassandra: one Cluster serves every read of a process, and a swap of the
active keyspace reaches an already-open read side within the pointer's TTL (and a reset brings it
back), while a swap to a keyspace that does not exist or lacks the view tables is refused.

The swap test uses a base keyspace of its own, so the pointer of the session's shared keyspace
(which the other tests read) never moves."""
from __future__ import annotations

import time
from datetime import datetime

import cassandra.cluster
import pytest

from streams.query.pointer import SwapError, read_pointer, reset_keyspace, swap_keyspace
from streams.query.read_side import ReadSide, close_read_side, get_read_side
from streams.query.review import pending_tasks
from streams.query.views import follow_summary, posts_by_creator
from streams.stores.cassandra import apply_schema, connect

from tests.integration.conftest import unique, wait_until


def test_one_cluster_serves_every_read_of_a_process(pipeline, monkeypatch):
    created = []

    class CountingCluster(cassandra.cluster.Cluster):
        def __init__(self, *args, **kwargs):
            created.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(cassandra.cluster, "Cluster", CountingCluster)
    settings = pipeline.with_(app_id=unique("read-side"))  # a read side of its own in the registry
    creator, fan = unique("c"), unique("u")
    rs = get_read_side(settings)
    s = rs.session
    try:
        s.execute("INSERT INTO posts_by_creator (creator_id, uploaded_at, post_id, kind) "
                  "VALUES (%s, %s, %s, 'text')", (creator, datetime(2024, 1, 1), f"{creator}-p0"))
        s.execute("INSERT INTO following (follower_id, followee_id, since) VALUES (%s, %s, %s)",
                  (fan, creator, datetime(2024, 1, 2)))
        for _ in range(30):
            assert [r["post_id"] for r in posts_by_creator(settings, creator)] == [f"{creator}-p0"]
            assert follow_summary(settings, fan)["following"] == 1
            pending_tasks(settings, limit=3)
        assert len(created) == 1
        assert get_read_side(settings) is rs and rs.session is s
        assert rs.prepared_count <= 8  # every statement prepared once, not once per call
    finally:
        s.execute("DELETE FROM posts_by_creator WHERE creator_id = %s", (creator,))
        s.execute("DELETE FROM following WHERE follower_id = %s", (fan,))
        close_read_side(settings)
    assert rs.closed


def test_a_swap_reaches_an_open_read_side_within_the_ttl_and_a_reset_brings_it_back(pipeline):
    ttl = 1.0
    base = unique("rs").replace("-", "_")
    alt, empty = f"{base}_b", f"{base}_e"
    settings = pipeline.with_(cassandra_keyspace=base, view_pointer_ttl_s=ttl)
    apply_schema(settings)
    apply_schema(settings.with_(cassandra_keyspace=alt))
    cluster, admin = connect(settings)
    creator = unique("c")
    try:
        admin.execute(f"CREATE KEYSPACE {empty} WITH replication = "
                      "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        for ks in (base, alt):
            admin.execute(f"INSERT INTO {ks}.posts_by_creator (creator_id, uploaded_at, post_id) "
                          "VALUES (%s, %s, %s)", (creator, datetime(2024, 1, 1), f"in-{ks}"))
        admin.execute(f"INSERT INTO {alt}.review_pending (queue, created_at, task_id, post_id) "
                      "VALUES ('moderation', %s, 't-alt', 'p')", (datetime(2024, 1, 1),))
        admin.execute(f"INSERT INTO {alt}.review_tasks (task_id, queue, post_id, created_at, status) "
                      "VALUES ('t-alt', 'moderation', 'p', %s, 'PENDING')", (datetime(2024, 1, 1),))

        def posts(rs):
            return [r["post_id"] for r in posts_by_creator(rs, creator)]

        with ReadSide(settings) as rs:  # not in the registry: only the pointer's TTL tells it
            session = rs.session
            assert rs.active_keyspace() == base and posts(rs) == [f"in-{base}"]
            assert read_pointer(admin, base) is None
            assert pending_tasks(rs) == []

            with pytest.raises(SwapError, match=f"'{base}_nope' does not exist"):
                swap_keyspace(settings, f"{base}_nope")
            with pytest.raises(SwapError, match=f"'{empty}' lacks view tables users, posts,"):
                swap_keyspace(settings, empty)
            with pytest.raises(SwapError, match="not a keyspace name"):
                swap_keyspace(settings, "x; DROP KEYSPACE pulse")
            assert read_pointer(admin, base) is None  # nothing refused moved the pointer

            assert swap_keyspace(settings, alt) == base
            swapped = time.monotonic()
            wait_until(lambda: posts(rs) == [f"in-{alt}"], ttl + 5, "the read side to see the swap",
                       interval_s=0.05)
            assert time.monotonic() - swapped < ttl + 1.0
            pointer = read_pointer(admin, base)
            assert (pointer.keyspace, pointer.previous) == (alt, base)
            assert [t["task_id"] for t in pending_tasks(rs)] == ["t-alt"]

            assert reset_keyspace(settings) == alt
            reset = time.monotonic()
            wait_until(lambda: posts(rs) == [f"in-{base}"], ttl + 5, "the read side to see the reset",
                       interval_s=0.05)
            assert time.monotonic() - reset < ttl + 1.0
            assert read_pointer(admin, base).keyspace == base
            assert rs.session is session  # the same Cluster throughout
    finally:
        for ks in (base, alt, empty):
            admin.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=120)
        cluster.shutdown()

"""The read side's own logic without a server: one connection, statements prepared once per
keyspace, the pointer re-read only after its TTL (stale value served while one thread re-reads),
closing, the per-process registry, and the pointer module's name checks.

The Cassandra session here is a recording fake: these tests cover the bookkeeping around the
driver; tests/integration/test_read_side.py runs the same paths on a real node."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from streams.query.pointer import SwapError, keyspace_name, view_tables
from streams.query.read_side import (ReadSide, close_read_side, expire_pointers, get_read_side,
                                     read_side_of)
from streams.settings import Settings
from streams.stores.cassandra import ViewStoreError


class FakeResult(list):
    def one(self):
        return self[0] if self else None


class FakeSession:
    def __init__(self):
        self.prepared: list[str] = []
        self.executed: list[tuple] = []
        self.lock = threading.Lock()

    def prepare(self, cql):
        with self.lock:
            self.prepared.append(cql)
        return ("prepared", cql)

    def execute(self, stmt, params=(), timeout=None):
        with self.lock:
            self.executed.append((stmt, params, timeout))
        return FakeResult([(stmt[1], params)])


class FakeCluster:
    def __init__(self):
        self.shutdowns = 0

    def shutdown(self):
        self.shutdowns += 1


class World:
    """A fake Cassandra: the pointer's value, a clock, and counts of what the read side did."""

    def __init__(self, keyspace="pulse", connect_delay_s=0.0):
        self.keyspace = keyspace
        self.now = 0.0
        self.connects = 0
        self.resolves = 0
        self.connect_delay_s = connect_delay_s
        self.session = FakeSession()
        self.cluster = FakeCluster()

    def connector(self, settings):
        time.sleep(self.connect_delay_s)
        self.connects += 1
        return self.cluster, self.session

    def resolve(self, session, base):
        assert session is self.session and base == "pulse"
        self.resolves += 1
        return self.keyspace

    def read_side(self, ttl=2.0) -> ReadSide:
        settings = Settings(home=Path("/nonexistent"), cache_dir=Path("/nonexistent"),
                            cassandra_hosts=("127.0.0.1:9042",), view_pointer_ttl_s=ttl)
        return ReadSide(settings, connector=self.connector, resolve=self.resolve,
                        clock=lambda: self.now)


POSTS = "SELECT * FROM {ks}.posts WHERE post_id = ?"
USERS = "SELECT * FROM {ks}.users WHERE user_id = ?"


def test_one_connection_serves_every_query_and_each_statement_is_prepared_once_per_keyspace():
    w = World()
    rs = w.read_side()
    assert w.connects == 0  # nothing connects before the first query
    for i in range(50):
        rs.execute(POSTS, (f"p{i}",))
        rs.execute(USERS, (f"u{i}",))
    assert w.connects == 1
    assert w.session.prepared == ["SELECT * FROM pulse.posts WHERE post_id = ?",
                                  "SELECT * FROM pulse.users WHERE user_id = ?"]
    assert w.session.executed[-1] == (("prepared", "SELECT * FROM pulse.users WHERE user_id = ?"),
                                      ("u49",), None)
    w.keyspace, w.now = "pulse_r2", 5.0  # swapped; the TTL has passed
    rs.execute(POSTS, ("p",))
    rs.execute(POSTS, ("q",))
    assert w.session.prepared[2:] == ["SELECT * FROM pulse_r2.posts WHERE post_id = ?"]
    assert rs.prepared_count == 3 and w.connects == 1


def test_the_pointer_is_read_again_only_after_its_ttl():
    w = World()
    rs = w.read_side(ttl=2.0)
    assert rs.active_keyspace() == "pulse" and w.resolves == 1
    w.keyspace = "pulse_r2"  # a swap somewhere else
    for t in (0.5, 1.0, 1.99):
        w.now = t
        assert rs.execute(POSTS, ("p",)).one()[0] == "SELECT * FROM pulse.posts WHERE post_id = ?"
    assert w.resolves == 1
    w.now = 2.0
    assert rs.execute(POSTS, ("p",)).one()[0] == "SELECT * FROM pulse_r2.posts WHERE post_id = ?"
    assert w.resolves == 2
    w.now = 3.0
    rs.active_keyspace()
    assert w.resolves == 2  # fresh again until 4.0


def test_ttl_zero_reads_the_pointer_before_every_query_and_a_pinned_keyspace_reads_none():
    w = World()
    rs = w.read_side(ttl=0.0)
    for _ in range(3):
        rs.execute(POSTS, ("p",))
    assert w.resolves == 3
    rs.execute(POSTS, ("p",), keyspace="other")
    assert w.resolves == 3
    assert w.session.prepared[-1] == "SELECT * FROM other.posts WHERE post_id = ?"
    rs.execute("SELECT now() FROM system.local")  # nothing to qualify: no pointer read
    assert w.resolves == 3


def test_expire_pointer_forces_a_read_before_the_ttl():
    w = World()
    rs = w.read_side(ttl=60.0)
    rs.active_keyspace()
    w.keyspace = "pulse_r2"
    rs.expire_pointer()
    assert rs.active_keyspace() == "pulse_r2" and w.resolves == 2


def test_while_one_thread_rereads_the_pointer_the_others_use_the_previous_keyspace():
    w = World()
    rs = w.read_side(ttl=1.0)
    rs.active_keyspace()
    entered, release = threading.Event(), threading.Event()

    def slow(session, base):
        entered.set()
        release.wait(5)
        return "pulse_r2"

    rs._resolve = slow
    w.now = 10.0
    got = []
    t = threading.Thread(target=lambda: got.append(rs.active_keyspace()))
    t.start()
    assert entered.wait(5)
    assert rs.active_keyspace() == "pulse"  # not blocked behind the re-read
    release.set()
    t.join(5)
    assert got == ["pulse_r2"] and rs.active_keyspace() == "pulse_r2"


def test_a_failed_pointer_read_raises_and_the_next_query_tries_again():
    w = World()
    rs = w.read_side(ttl=1.0)

    def down(session, base):
        raise ViewStoreError("timed out")

    rs._resolve = down
    with pytest.raises(ViewStoreError, match="timed out"):
        rs.execute(POSTS, ("p",))
    rs._resolve = w.resolve
    assert rs.active_keyspace() == "pulse"


def test_a_pointer_value_that_is_not_a_keyspace_name_is_refused():
    w = World(keyspace="pulse; DROP KEYSPACE pulse")
    rs = w.read_side()
    with pytest.raises(SwapError, match="not a keyspace name"):
        rs.execute(POSTS, ("p",))
    assert w.session.prepared == []


def test_many_threads_share_one_connection_and_one_prepared_statement():
    w = World(connect_delay_s=0.05)
    rs = w.read_side(ttl=0.0)
    errors = []

    def reader():
        try:
            for i in range(100):
                rs.execute(POSTS, (f"p{i}",))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert w.connects == 1
    assert rs.prepared_count == 1
    assert len(w.session.executed) == 1600


def test_close_shuts_the_cluster_and_the_vector_index_once_and_refuses_later_use():
    w = World()

    class Index:
        closes = 0

        def close(self):
            Index.closes += 1

    with w.read_side() as rs:
        rs.execute(POSTS, ("p",))
        rs._vectors = Index()  # as `vectors` would have opened it
    assert w.cluster.shutdowns == 1 and Index.closes == 1 and rs.closed
    rs.close()
    assert w.cluster.shutdowns == 1
    with pytest.raises(ViewStoreError, match="closed"):
        rs.execute(POSTS, ("p",))
    with pytest.raises(ViewStoreError, match="closed"):
        rs.vectors


def test_content_search_from_a_read_side_leaves_the_shared_index_open():
    from streams.query.search import ContentSearch

    class Index:
        closed = False

        def close(self):
            self.closed = True

    class Side:
        vectors = Index()
        settings = None

    with ContentSearch.from_read_side(Side()) as search:
        assert search.index is Side.vectors
    assert not Side.vectors.closed
    own = ContentSearch(Index())
    own.close()
    assert own.index.closed


def test_table_counts_refuses_a_name_that_is_not_a_table_before_any_query():
    from streams.query.views import table_counts

    w = World()
    with pytest.raises(ValueError, match="not a table name"):
        table_counts(w.read_side(), ("users", "users; DROP TABLE posts"))
    assert w.connects == 0


def test_one_read_side_per_settings_in_a_process(tmp_path):
    a = Settings(home=tmp_path, cache_dir=tmp_path)
    b = Settings(home=tmp_path, cache_dir=tmp_path)  # equal settings
    other = a.with_(cassandra_keyspace="elsewhere")
    try:
        rs = get_read_side(a)
        assert get_read_side(b) is rs and read_side_of(b) is rs and read_side_of(rs) is rs
        assert get_read_side(other) is not rs
        rs._keyspace, rs._keyspace_read_at = "pulse", 0.0
        expire_pointers(b)
        assert rs._keyspace_read_at == float("-inf")
        close_read_side(a)
        assert rs.closed and get_read_side(a) is not rs
    finally:
        close_read_side()


def test_pointer_names_and_view_tables():
    assert keyspace_name("Pulse_R2") == "pulse_r2"
    for bad in ("", "2pulse", "pulse-r2", "a" * 49, "pulse;"):
        with pytest.raises(SwapError, match="not a keyspace name"):
            keyspace_name(bad)
    tables = view_tables()
    assert {"posts", "posts_by_creator", "following", "followers", "review_tasks",
            "review_pending", "review_claims"} <= set(tables)
    assert "view_pointer" not in tables


def test_pointer_ttl_setting():
    assert Settings.from_env({}).view_pointer_ttl_s == 2.0
    assert Settings.from_env({"PULSE_VIEW_POINTER_TTL_S": "0.5"}).view_pointer_ttl_s == 0.5

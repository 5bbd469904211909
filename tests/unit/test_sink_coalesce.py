"""CassandraSink sends only the newest of several upserts of one row's columns in a flush."""
from __future__ import annotations

from types import SimpleNamespace

from streams.contracts.effects import Delete, Upsert
from streams.sinks.writers import CassandraSink


class FakeSession:
    """Records executed parameter lists; its schema metadata names ``feeds``' primary key."""

    keyspace = "ks"

    def __init__(self):
        table = SimpleNamespace(primary_key=[SimpleNamespace(name="user_id")])
        self.cluster = SimpleNamespace(metadata=SimpleNamespace(
            keyspaces={"ks": SimpleNamespace(tables={"user_feeds": table})}))
        self.sent: list[tuple[str, list]] = []

    def prepare(self, cql):
        return cql


def test_only_the_newest_upsert_of_a_row_is_sent(monkeypatch):
    session = FakeSession()
    sent = []
    monkeypatch.setattr("cassandra.concurrent.execute_concurrent_with_args",
                        lambda s, stmt, params, **kw: sent.append((stmt, list(params))))
    sink = CassandraSink(session)
    for ts, items in ((10, "a"), (30, "c"), (20, "b")):
        sink.add(Upsert("user_feeds", {"user_id": "u", "items": items}, ts))
    sink.add(Upsert("user_feeds", {"user_id": "v", "items": "x"}, 5))
    sink.add(Upsert("user_feeds", {"user_id": "v", "items": "y"}, 5))  # a tie: both go
    sink.add(Upsert("other", {"k": "u", "n": 1}, 1))   # no metadata: never coalesced
    sink.add(Upsert("other", {"k": "u", "n": 2}, 2))
    sink.add(Delete("user_feeds", {"user_id": "u"}, 25))
    assert sink.flush() == 6 and sink.rows_coalesced == 2
    by_table = {stmt.split()[2]: params for stmt, params in sent if stmt.startswith("INSERT")}
    assert sorted(by_table["user_feeds"]) == [("c", "u", 30), ("x", "v", 5), ("y", "v", 5)]
    assert len(by_table["other"]) == 2
    # after a flush the next one starts afresh
    sink.add(Upsert("user_feeds", {"user_id": "u", "items": "d"}, 1))
    assert sink.flush() == 1


def test_rows_are_batched_by_replica_within_row_and_size_limits():
    """batch_groups (the sink's unlogged batches): one replica per batch, at most max_rows rows
    and max_bytes, an oversized row alone, every row exactly once, arrival order kept."""
    from streams.sinks.writers import batch_groups

    items = [("a" if i % 3 else "b", 100, i) for i in range(50)] + [("a", 5_000, "big")]
    groups = batch_groups(items, max_rows=20, max_bytes=1_000)
    flat = [x for g in groups for x in g]
    assert sorted(map(str, flat)) == sorted(str(i) for _, _, i in items)
    assert ["big"] in groups
    for g in groups:
        if g != ["big"]:
            assert len({i % 3 == 0 for i in g}) == 1  # one replica
            assert len(g) <= 10 and g == sorted(g)  # 10 rows of 100 bytes fill 1,000
    assert max(len(g) for g in batch_groups(items[:50], max_rows=4, max_bytes=10**6)) == 4
    assert batch_groups([], 20, 1_000) == []


def test_a_numeric_collection_is_sized_without_visiting_every_element():
    """``_size``'s short cut for a collection of numbers (CQL collections are homogeneous)
    gives what sizing each element gives: 8 bytes a number, 4 an element."""
    from streams.sinks.writers import _size

    def slow(v):
        if v is None:
            return 0
        if isinstance(v, (str, bytes)):
            return len(v)
        if isinstance(v, (list, tuple, set, frozenset)):
            return sum(slow(x) + 4 for x in v)
        if isinstance(v, dict):
            return sum(slow(k) + slow(x) + 8 for k, x in v.items())
        return 8

    for value in ([0.5] * 168, (1, 2, 3), {4, 5}, frozenset({1.5}), [], ["ab", "c"], [[1, 2], [3]],
                  {"a": [1.0, 2.0]}, [True, False], "text", 7, None):
        assert _size(value) == slow(value), value
